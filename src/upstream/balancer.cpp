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

void ServerState::startRamp(std::chrono::steady_clock::time_point now) {
    // 0 means "not ramping"; a clock at its epoch is nudged by 1ns.
    ramp_start_ns_.store(std::max<std::int64_t>(1, toNanos(now)), std::memory_order_relaxed);
}

std::uint64_t ServerState::effectiveWeight(std::uint32_t weight,
                                           std::chrono::steady_clock::time_point now,
                                           std::chrono::milliseconds slow_start) const {
    const std::int64_t start = ramp_start_ns_.load(std::memory_order_relaxed);
    if (start == 0 || slow_start.count() <= 0) {
        return std::uint64_t{weight} * kWeightScale;
    }
    return slowStartWeight(weight, std::chrono::nanoseconds(toNanos(now) - start), slow_start);
}

bool ServerState::tryAcquireSlot(std::uint32_t limit) {
    std::int64_t used = slots_.load();
    for (;;) {
        if (used >= static_cast<std::int64_t>(limit)) {
            return false;
        }
        if (slots_.compare_exchange_weak(used, used + 1)) {
            return true;
        }
    }
}

ServerStatePtr ServerRegistry::get(const std::string& upstream_name,
                                   const config::Endpoint& address,
                                   std::chrono::steady_clock::time_point now) {
    std::string key = upstream_name + "/" + address.text;
    std::lock_guard lock(mutex_);
    auto& slot = states_[key];
    if (auto existing = slot.lock()) {
        return existing;
    }
    // Only a server joining servers already taking traffic ramps; a new upstream has nobody to
    // spare it, and neither has the first snapshot.
    auto seen = upstreams_seen_.find(upstream_name);
    const bool ramp = seen != upstreams_seen_.end() && seen->second;
    auto resolved = net::SocketAddress::fromEndpoint(address);
    // Config validation admits numeric addresses only, so this cannot fail for a loaded config.
    auto state = std::make_shared<ServerState>(
        upstream_name, resolved.ok() ? resolved.value() : net::SocketAddress{}, address.text);
    if (ramp) {
        state->startRamp(now);
    }
    slot = state;
    return state;
}

ConnectionQueuePtr ServerRegistry::queue(const std::string& upstream_name) {
    std::lock_guard lock(mutex_);
    auto& slot = queues_[upstream_name];
    if (auto existing = slot.lock()) {
        return existing;
    }
    auto created = std::make_shared<ConnectionQueue>();
    slot = created;
    return created;
}

void ServerRegistry::markBuilt(const std::string& upstream_name) {
    std::lock_guard lock(mutex_);
    upstreams_seen_[upstream_name] = true;
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
                                       const std::vector<std::uint32_t>& weights,
                                       std::chrono::milliseconds slow_start)
    : servers_(servers),
      weights_(weights),
      slow_start_(slow_start),
      schedule_(buildSchedule(weights)) {}

bool RoundRobinBalancer::takesTurn(std::size_t index, std::uint64_t position,
                                   std::chrono::steady_clock::time_point now) const {
    if (slow_start_.count() == 0) {
        return true;
    }
    const std::uint64_t full = std::uint64_t{weights_[index]} * kWeightScale;
    const std::uint64_t effective =
        servers_[index]->effectiveWeight(weights_[index], now, slow_start_);
    if (effective >= full) {
        return true;
    }
    // The pattern repeats every `full` laps, so the lap is reduced first (no overflow).
    const std::uint64_t lap = (position / schedule_.size()) % full;
    return (lap + 1) * effective / full > lap * effective / full;
}

int RoundRobinBalancer::pick(const PickContext& context) {
    if (schedule_.empty()) {
        return -1;
    }
    const std::size_t n = schedule_.size();
    int fallback = -1;
    int ramping = -1;  // an available server that let its turn pass (slow start)
    for (std::size_t step = 0; step < n; ++step) {
        // Each probe advances the shared cursor, so when a server is skipped the healthy ones
        // still share its load evenly instead of its successor taking all of it.
        std::uint64_t position = cursor_.fetch_add(1, std::memory_order_relaxed);
        int index = schedule_[position % n];
        if (context.tried.contains(static_cast<std::size_t>(index))) {
            continue;
        }
        if (servers_[index]->isAvailable(context.now)) {
            if (takesTurn(static_cast<std::size_t>(index), position, context.now)) {
                return index;
            }
            if (ramping < 0) {
                ramping = index;
            }
            continue;
        }
        if (fallback < 0) {
            fallback = index;
        }
    }
    if (ramping >= 0) {
        return ramping;  // only ramping servers are up: better a ramping one than a down one
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
    registry.markBuilt(config_.name);
    balancer_ = makeBalancer(config_, servers_);
    if (config_.balance == "consistent_hash") {
        hash_source_ = parseHashKeySource(config_.hash.key);
    }
    bool limited = false;
    for (const auto& server : config_.servers) {
        max_connections_.push_back(server.max_connections);
        limited = limited || server.max_connections > 0;
    }
    if (limited) {
        queue_ = registry.queue(config_.name);
    }
    if (config_.retry_budget.enabled) {
        retry_budget_ = std::make_unique<RetryBudget>(config_.retry_budget.ratio,
                                                      config_.retry_budget.min_retries);
    }
    if (limited || retry_budget_) {
        metrics_slot_ = metrics::global().upstreamSlot(config_.name);
    }
}

UpstreamGroup::LimitedPick UpstreamGroup::pickWithLimits(const PickContext& context) const {
    TriedServers skip = context.tried;
    bool skipped_full = false;
    for (std::size_t attempt = 0; attempt <= servers_.size(); ++attempt) {
        const int index = balancer_->pick(PickContext{skip, context.now, context.hash_key});
        if (index < 0) {
            break;
        }
        const std::uint32_t limit = max_connections_[static_cast<std::size_t>(index)];
        if (limit == 0) {
            return {LimitedPick::Result::Picked, index, false};
        }
        ServerState& server = *servers_[static_cast<std::size_t>(index)];
        if (skipped_full && !server.isAvailable(context.now)) {
            break;  // waiting for a live server beats trying a down one
        }
        if (server.tryAcquireSlot(limit)) {
            return {LimitedPick::Result::Picked, index, true};
        }
        skip.add(static_cast<std::size_t>(index));
        skipped_full = true;
    }
    return {skipped_full ? LimitedPick::Result::Busy : LimitedPick::Result::None, -1, false};
}

void UpstreamGroup::releaseSlot(std::size_t index) const {
    servers_[index]->releaseSlot();
    if (queue_ && queue_->hasWaiters()) {
        queue_->wake();
    }
}

}  // namespace strata::upstream
