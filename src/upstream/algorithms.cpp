// The balancing algorithms other than round robin (balancer.cpp), one class each. See Balancer
// in balancer.h for the contract they share: tried servers never again, available servers
// first, a down server rather than none, -1 only when everything was tried.
#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include "strata/upstream/balancer.h"

namespace strata::upstream {
namespace {

std::int64_t activeOf(const ServerState& server) {
    // Decrements may briefly overtake increments across workers; never let that read as spare.
    return std::max<std::int64_t>(0, server.in_flight.load(std::memory_order_relaxed));
}

bool eligible(const PickContext& context, const std::vector<ServerStatePtr>& servers,
              std::size_t index) {
    return !context.tried.contains(index) && servers[index]->isAvailable(context.now);
}

// The last resort of every algorithm: some untried server, even a down one.
int firstUntried(const PickContext& context, const std::vector<ServerStatePtr>& servers) {
    for (std::size_t i = 0; i < servers.size(); ++i) {
        if (!context.tried.contains(i)) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

// The weight (x kWeightScale) a load comparison uses: reduced while the server ramps up.
std::uint64_t weightOf(const ServerState& server, std::uint32_t weight,
                       std::chrono::steady_clock::time_point now,
                       std::chrono::milliseconds slow_start) {
    if (slow_start.count() == 0) {
        return std::uint64_t{weight} * kWeightScale;
    }
    return server.effectiveWeight(weight, now, slow_start);
}

// a/wa < b/wb without division: scaled weights are at most 10^6 and active counts far below
// 2^40.
bool lessLoaded(std::int64_t a, std::uint64_t wa, std::int64_t b, std::uint64_t wb) {
    return static_cast<std::uint64_t>(a) * wb < static_cast<std::uint64_t>(b) * wa;
}

// splitmix64: one 64-bit state per thread, so random_two never contends on a shared generator.
std::uint64_t nextRandom() {
    thread_local std::uint64_t state = [] {
        std::random_device device;
        return (static_cast<std::uint64_t>(device()) << 32) ^ device() ^
               std::hash<std::thread::id>{}(std::this_thread::get_id());
    }();
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace

std::uint64_t hashKey(std::string_view key) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : key) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    // FNV-1a alone leaves similar keys ("/a1", "/a2") close together on the ring.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

// ---- least_connections ------------------------------------------------------------------------

LeastConnectionsBalancer::LeastConnectionsBalancer(const std::vector<ServerStatePtr>& servers,
                                                   const std::vector<std::uint32_t>& weights,
                                                   std::chrono::milliseconds slow_start)
    : servers_(servers),
      weights_(weights),
      slow_start_(slow_start),
      schedule_(buildSchedule(weights)) {}

int LeastConnectionsBalancer::pick(const PickContext& context) {
    auto weight = [&](std::size_t i) {
        return weightOf(*servers_[i], weights_[i], context.now, slow_start_);
    };
    int best = -1;
    std::int64_t best_active = 0;
    std::uint64_t best_weight = 1;
    for (std::size_t i = 0; i < servers_.size(); ++i) {
        if (!eligible(context, servers_, i)) {
            continue;
        }
        std::int64_t active = activeOf(*servers_[i]);
        const std::uint64_t w = weight(i);
        if (best < 0 || lessLoaded(active, w, best_active, best_weight)) {
            best = static_cast<int>(i);
            best_active = active;
            best_weight = w;
        }
    }
    if (best < 0) {
        return firstUntried(context, servers_);
    }
    // Among the servers as lightly loaded as `best`, the weighted round-robin order decides;
    // each probe advances the shared cursor, as in RoundRobinBalancer, so skipped servers'
    // turns spread evenly. Loads move under us (other workers): after one lap, take `best`.
    for (std::size_t step = 0; step < schedule_.size(); ++step) {
        std::uint64_t position = cursor_.fetch_add(1, std::memory_order_relaxed);
        std::size_t index = schedule_[position % schedule_.size()];
        if (!eligible(context, servers_, index)) {
            continue;
        }
        std::int64_t active = activeOf(*servers_[index]);
        if (!lessLoaded(best_active, best_weight, active, weight(index))) {
            return static_cast<int>(index);
        }
    }
    return best;
}

// ---- random_two -------------------------------------------------------------------------------

RandomTwoBalancer::RandomTwoBalancer(const std::vector<ServerStatePtr>& servers,
                                     const std::vector<std::uint32_t>& weights,
                                     std::chrono::milliseconds slow_start)
    : servers_(servers), weights_(weights), slow_start_(slow_start) {
    std::uint64_t sum = 0;
    for (auto w : weights_) {
        sum += w;
        cumulative_.push_back(sum);
    }
}

int RandomTwoBalancer::draw(const PickContext& context) const {
    // Rejection sampling: a few draws find an eligible server unless most are tried or down,
    // and then the caller scans instead.
    for (int attempt = 0; attempt < 8; ++attempt) {
        std::uint64_t r = nextRandom() % cumulative_.back();
        auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), r);
        auto index = static_cast<std::size_t>(it - cumulative_.begin());
        if (!eligible(context, servers_, index)) {
            continue;
        }
        if (slow_start_.count() > 0) {
            // A ramping server is kept with probability effective/full, which makes the draw
            // proportional to effective weights.
            const std::uint64_t full = std::uint64_t{weights_[index]} * kWeightScale;
            const std::uint64_t effective =
                servers_[index]->effectiveWeight(weights_[index], context.now, slow_start_);
            if (effective < full && nextRandom() % full >= effective) {
                continue;
            }
        }
        return static_cast<int>(index);
    }
    return -1;
}

int RandomTwoBalancer::pick(const PickContext& context) {
    if (servers_.empty()) {
        return -1;
    }
    int a = draw(context);
    if (a < 0) {
        // Few eligible servers left: the least loaded of them, scanning from a random start.
        const std::size_t n = servers_.size();
        const std::size_t start = nextRandom() % n;
        int best = -1;
        for (std::size_t k = 0; k < n; ++k) {
            std::size_t i = (start + k) % n;
            if (eligible(context, servers_, i) &&
                (best < 0 ||
                 lessLoaded(activeOf(*servers_[i]),
                            weightOf(*servers_[i], weights_[i], context.now, slow_start_),
                            activeOf(*servers_[best]),
                            weightOf(*servers_[best], weights_[best], context.now, slow_start_)))) {
                best = static_cast<int>(i);
            }
        }
        return best >= 0 ? best : firstUntried(context, servers_);
    }
    int b = -1;
    for (int attempt = 0; attempt < 8 && (b < 0 || b == a); ++attempt) {
        b = draw(context);
    }
    if (b < 0 || b == a) {
        return a;
    }
    // The first draw wins ties, so an idle group spreads by weight (both draws are weighted).
    const auto wa = weightOf(*servers_[a], weights_[a], context.now, slow_start_);
    const auto wb = weightOf(*servers_[b], weights_[b], context.now, slow_start_);
    return lessLoaded(activeOf(*servers_[b]), wb, activeOf(*servers_[a]), wa) ? b : a;
}

// ---- consistent_hash --------------------------------------------------------------------------

ConsistentHashBalancer::ConsistentHashBalancer(const std::vector<ServerStatePtr>& servers,
                                               const std::vector<std::uint32_t>& weights)
    : servers_(servers), weights_(weights), keyless_(servers, weights) {
    std::uint64_t points = 0;
    for (auto w : weights_) {
        points += std::uint64_t{kPointsPerWeight} * w;
    }
    // Bounded memory for large weights: the shares stay proportional, the ring gets coarser.
    constexpr std::uint64_t kMaxPoints = 1u << 20;
    const double scale =
        points > kMaxPoints ? static_cast<double>(kMaxPoints) / static_cast<double>(points) : 1.0;
    ring_.reserve(std::min(points, kMaxPoints) + servers_.size());
    for (std::size_t i = 0; i < servers_.size(); ++i) {
        const auto n = std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(kPointsPerWeight * weights_[i] * scale));
        // Placed by address, not by position in the list: reordering or removing other servers
        // leaves this server's points where they were.
        std::string name = servers_[i]->label() + "#";
        const std::size_t base = name.size();
        for (std::uint64_t p = 0; p < n; ++p) {
            name.resize(base);
            name += std::to_string(p);
            ring_.push_back({hashKey(name), static_cast<std::uint32_t>(i)});
        }
    }
    std::sort(ring_.begin(), ring_.end(), [](const Point& x, const Point& y) {
        return x.hash != y.hash ? x.hash < y.hash : x.server < y.server;
    });
}

bool ConsistentHashBalancer::overloaded(std::size_t index, std::int64_t total,
                                        std::uint64_t total_weight) const {
    // The paper's capacity ceil(c * (m + 1) / n) with m active requests, weighted: the +1 counts
    // this request, so an idle group never looks full.
    const double capacity = std::ceil(kLoadFactor * static_cast<double>(total + 1) *
                                      weights_[index] / static_cast<double>(total_weight));
    return static_cast<double>(activeOf(*servers_[index])) >= capacity;
}

int ConsistentHashBalancer::pick(const PickContext& context) {
    if (ring_.empty()) {
        return -1;
    }
    if (context.hash_key.empty()) {
        return keyless_.pick(context);
    }
    std::int64_t total = 0;
    std::uint64_t total_weight = 0;
    for (std::size_t i = 0; i < servers_.size(); ++i) {
        if (servers_[i]->isAvailable(context.now)) {
            total += activeOf(*servers_[i]);
            total_weight += weights_[i];
        }
    }
    const std::uint64_t h = hashKey(context.hash_key);
    auto start = std::lower_bound(ring_.begin(), ring_.end(), h,
                                  [](const Point& p, std::uint64_t v) { return p.hash < v; });
    const std::size_t first = static_cast<std::size_t>(start - ring_.begin());
    int owner = -1;  // the key's first eligible server, when all are over their bound
    int down = -1;   // the key's first untried server, when none is available
    for (std::size_t k = 0; k < ring_.size(); ++k) {
        const std::size_t index = ring_[(first + k) % ring_.size()].server;
        if (context.tried.contains(index)) {
            continue;
        }
        if (!servers_[index]->isAvailable(context.now)) {
            if (down < 0) {
                down = static_cast<int>(index);
            }
            continue;
        }
        if (!overloaded(index, total, total_weight)) {
            return static_cast<int>(index);
        }
        if (owner < 0) {
            owner = static_cast<int>(index);
        }
    }
    return owner >= 0 ? owner : down;
}

// ---- first ------------------------------------------------------------------------------------

FirstBalancer::FirstBalancer(const std::vector<ServerStatePtr>& servers) : servers_(servers) {}

int FirstBalancer::pick(const PickContext& context) {
    for (std::size_t i = 0; i < servers_.size(); ++i) {
        if (eligible(context, servers_, i)) {
            return static_cast<int>(i);
        }
    }
    return firstUntried(context, servers_);
}

// ---- factory ----------------------------------------------------------------------------------

BalancerPtr makeBalancer(const config::Upstream& config,
                         const std::vector<ServerStatePtr>& servers) {
    std::vector<std::uint32_t> weights;
    for (const auto& server : config.servers) {
        weights.push_back(server.weight == 0 ? 1 : server.weight);
    }
    const std::string& name = config.balance;
    const std::chrono::milliseconds slow_start = config.slow_start;
    if (name == "least_connections") {
        return std::make_unique<LeastConnectionsBalancer>(servers, weights, slow_start);
    }
    if (name == "random_two") {
        return std::make_unique<RandomTwoBalancer>(servers, weights, slow_start);
    }
    if (name == "consistent_hash") {
        return std::make_unique<ConsistentHashBalancer>(servers, weights);
    }
    if (name == "first") {
        return std::make_unique<FirstBalancer>(servers);
    }
    // "round_robin", and anything else config validation let through (it lets nothing else).
    return std::make_unique<RoundRobinBalancer>(servers, weights, slow_start);
}

}  // namespace strata::upstream
