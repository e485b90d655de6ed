#include "strata/upstream/balancer.h"

#include <algorithm>
#include <numeric>

#include "strata/metrics/metrics.h"

namespace strata::upstream {
namespace {

std::int64_t toNanos(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

HashKeySource parseHashKeySource(std::string_view text) {
    // Config validation admits exactly these forms (upstreams.<name>.hash.key).
    HashKeySource out;
    if (text == "uri") {
        out.kind = HashKeySource::Kind::Uri;
    } else if (text == "client") {
        out.kind = HashKeySource::Kind::Client;
    } else if (text.starts_with("header:")) {
        out.kind = HashKeySource::Kind::Header;
        out.name = std::string(text.substr(7));
    } else if (text.starts_with("cookie:")) {
        out.kind = HashKeySource::Kind::Cookie;
        out.name = std::string(text.substr(7));
    }
    return out;
}

ServerState::ServerState(std::string upstream_name, net::SocketAddress address, std::string label)
    : upstream_name_(std::move(upstream_name)),
      address_(address),
      label_(std::move(label)),
      metrics_slot_(metrics::global().serverSlot(upstream_name_, label_)) {}

void ServerState::recordFailure(std::chrono::steady_clock::time_point now,
                                std::chrono::milliseconds backoff) {
    // The back-off doubles with each consecutive failure (1x, 2x, 4x ... 32x), so a server that
    // stays down is probed ever more rarely by real requests, and one that flapped once returns
    // quickly. A success (or an active check passing) resets it.
    std::uint32_t failures = consecutive_failures_.fetch_add(1, std::memory_order_relaxed);
    auto scaled = backoff * (std::int64_t{1} << std::min<std::uint32_t>(failures, 5));
    down_until_ns_.store(toNanos(now + scaled), std::memory_order_relaxed);
}

void ServerState::recordSuccess() {
    if (consecutive_failures_.load(std::memory_order_relaxed) != 0) {
        consecutive_failures_.store(0, std::memory_order_relaxed);
        down_until_ns_.store(0, std::memory_order_relaxed);
    }
}

bool ServerState::isAvailable(std::chrono::steady_clock::time_point now) const {
    return healthy() && down_until_ns_.load(std::memory_order_relaxed) <= toNanos(now);
}

ServerStatePtr ServerRegistry::get(const std::string& upstream_name,
                                   const config::Endpoint& address) {
    std::string key = upstream_name + "/" + address.text;
    std::lock_guard lock(mutex_);
    auto& slot = states_[key];
    if (auto existing = slot.lock()) {
        return existing;
    }
    auto resolved = net::SocketAddress::fromEndpoint(address);
    // Config validation admits numeric addresses only, so this cannot fail for a loaded config.
    auto state = std::make_shared<ServerState>(
        upstream_name, resolved.ok() ? resolved.value() : net::SocketAddress{}, address.text);
    slot = state;
    return state;
}

std::vector<std::uint16_t> buildSchedule(const std::vector<std::uint32_t>& weights) {
    std::int64_t total = std::accumulate(weights.begin(), weights.end(), std::int64_t{0});
    std::vector<std::int64_t> current(weights.size(), 0);
    std::vector<std::uint16_t> schedule;
    schedule.reserve(static_cast<std::size_t>(total));
    for (std::int64_t step = 0; step < total; ++step) {
        std::size_t best = 0;
        for (std::size_t i = 0; i < weights.size(); ++i) {
            current[i] += weights[i];
            if (current[i] > current[best]) {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push_back(static_cast<std::uint16_t>(best));
    }
    return schedule;
}

RoundRobinBalancer::RoundRobinBalancer(const std::vector<ServerStatePtr>& servers,
                                       const std::vector<std::uint32_t>& weights)
    : servers_(servers), schedule_(buildSchedule(weights)) {}

int RoundRobinBalancer::pick(const PickContext& context) {
    if (schedule_.empty()) {
        return -1;
    }
    const std::size_t n = schedule_.size();
    int fallback = -1;
    for (std::size_t step = 0; step < n; ++step) {
        // Each probe advances the shared cursor, so when a server is skipped the healthy ones
        // still share its load evenly instead of its successor taking all of it.
        std::uint64_t position = cursor_.fetch_add(1, std::memory_order_relaxed);
        int index = schedule_[position % n];
        if (context.tried.contains(static_cast<std::size_t>(index))) {
            continue;
        }
        if (servers_[index]->isAvailable(context.now)) {
            return index;
        }
        if (fallback < 0) {
            fallback = index;
        }
    }
    if (fallback < 0) {
        // Every probe hit a tried server; look for any untried one directly.
        for (std::size_t i = 0; i < servers_.size(); ++i) {
            if (!context.tried.contains(i)) {
                return static_cast<int>(i);
            }
        }
    }
    return fallback;
}

UpstreamGroup::UpstreamGroup(const config::Upstream& config, ServerRegistry& registry)
    : config_(config) {
    for (const auto& server : config_.servers) {
        servers_.push_back(registry.get(config_.name, server.address));
    }
    balancer_ = makeBalancer(config_, servers_);
    if (config_.balance == "consistent_hash") {
        hash_source_ = parseHashKeySource(config_.hash.key);
    }
}

}  // namespace strata::upstream
