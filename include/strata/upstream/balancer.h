// Upstream groups as the data path sees them: servers with shared health state and one balancer
// for all workers (DESIGN.md: "round-robin cursors, health state" are shared).
//
// ServerState outlives config snapshots: a reload that keeps a server keeps its state (and the
// pooled connections to it), found through ServerRegistry by upstream name and address.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "strata/config/config.h"
#include "strata/net/socket.h"
#include "strata/net/tls_context.h"
#include "strata/upstream/protection.h"

namespace strata::upstream {

class ServerState {
public:
    ServerState(std::string upstream_name, net::SocketAddress address, std::string label);

    const std::string& upstreamName() const { return upstream_name_; }
    const net::SocketAddress& address() const { return address_; }
    // "127.0.0.1:8000", as configured; used in logs and metric labels.
    const std::string& label() const { return label_; }

    // Passive health: a failed connect or a broken exchange.
    void recordFailure(std::chrono::steady_clock::time_point now,
                       std::chrono::milliseconds backoff);
    void recordSuccess();
    bool isAvailable(std::chrono::steady_clock::time_point now) const;
    std::uint32_t consecutiveFailures() const { return consecutive_failures_.load(); }

    // Active health (set by health checks; true until a checker says otherwise).
    // Coming back up starts the slow-start ramp (upstreams.<name>.slow_start).
    void setHealthy(bool healthy,
                    std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) {
        if (!healthy_.exchange(healthy, std::memory_order_relaxed) && healthy) {
            startRamp(now);
        }
    }
    bool healthy() const { return healthy_.load(std::memory_order_relaxed); }

    std::atomic<std::int64_t> in_flight{0};

    // Slow start: when the server came back; 0 = it never went away (full weight).
    void startRamp(std::chrono::steady_clock::time_point now);
    // Its weight x kWeightScale, reduced while it ramps up after startRamp().
    std::uint64_t effectiveWeight(std::uint32_t weight, std::chrono::steady_clock::time_point now,
                                  std::chrono::milliseconds slow_start) const;

    // max_connections: requests holding a slot on this server, all workers. Used only by
    // servers with a limit.
    bool tryAcquireSlot(std::uint32_t limit);
    void releaseSlot() { slots_.fetch_sub(1); }
    std::int64_t slotsInUse() const { return slots_.load(std::memory_order_relaxed); }
    // Series of this server in metrics::global() (upstream + address).
    std::uint16_t metricsSlot() const { return metrics_slot_; }

private:
    std::string upstream_name_;
    net::SocketAddress address_;
    std::string label_;
    std::atomic<std::int64_t> down_until_ns_{0};  // steady_clock epoch nanoseconds
    std::atomic<std::uint32_t> consecutive_failures_{0};
    std::atomic<bool> healthy_{true};
    std::atomic<std::int64_t> ramp_start_ns_{0};
    std::atomic<std::int64_t> slots_{0};
    std::uint16_t metrics_slot_ = 0;
};

using ServerStatePtr = std::shared_ptr<ServerState>;

// Keeps ServerState alive across reloads. Thread-safe; used at snapshot build time only.
class ServerRegistry {
public:
    // A server new to an upstream that served before (a reload added it) starts its slow-start
    // ramp at `now`.
    ServerStatePtr get(
        const std::string& upstream_name, const config::Endpoint& address,
        std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
    // The upstream's wait queue (max_connections), the same one across reloads while any
    // snapshot uses it, so a slot freed under the old snapshot wakes a waiter of the new one.
    ConnectionQueuePtr queue(const std::string& upstream_name);
    // The upstream has served in a snapshot: servers added to it from now on ramp up.
    void markBuilt(const std::string& upstream_name);

private:
    std::mutex mutex_;
    std::map<std::string, std::weak_ptr<ServerState>> states_;
    std::map<std::string, std::weak_ptr<ConnectionQueue>> queues_;
    std::map<std::string, bool> upstreams_seen_;
};

// The servers one request has tried, by index into UpstreamGroup::servers(). Any number of
// servers (indexes are not folded into a 64-bit mask), no allocation: a request tries at most
// upstreams.<name>.max_tries (<= 10) servers, so the set holds up to kCapacity indexes inline.
class TriedServers {
public:
    static constexpr std::size_t kCapacity = 16;
    bool contains(std::size_t index) const {
        for (std::size_t i = 0; i < size_; ++i) {
            if (indexes_[i] == index) {
                return true;
            }
        }
        return false;
    }
    // Adds `index` once; beyond kCapacity (more tries than the schema allows) it is not kept.
    void add(std::size_t index) {
        if (!contains(index) && size_ < kCapacity) {
            indexes_[size_++] = static_cast<std::uint32_t>(index);
        }
    }
    std::size_t size() const { return size_; }

private:
    std::array<std::uint32_t, kCapacity> indexes_{};
    std::size_t size_ = 0;
};

// What a balancer knows about one pick. Borrowed for the duration of pick() only.
struct PickContext {
    const TriedServers& tried;  // never picked again for this request
    std::chrono::steady_clock::time_point now;
    std::string_view hash_key;  // taken from the request; empty when the algorithm needs none
};

// Chooses a server of one UpstreamGroup (Envoy's LoadBalancer::chooseHost). One class per
// algorithm; the group holds the one its config names. pick() runs on every worker at once, so
// an implementation keeps its mutable state in atomics and never allocates or locks.
//
// Contract shared by all algorithms: never return a server in `tried`; prefer servers that are
// available (healthy, not backing off); when every untried server is down, still return one
// rather than failing the request; return -1 only when every server was tried.
class Balancer {
public:
    virtual ~Balancer() = default;
    virtual int pick(const PickContext& context) = 0;
};

using BalancerPtr = std::unique_ptr<Balancer>;

// Smooth weighted round robin over one cursor shared by all workers.
class RoundRobinBalancer final : public Balancer {
public:
    // `servers` is borrowed from the owning UpstreamGroup and outlives the balancer.
    RoundRobinBalancer(const std::vector<ServerStatePtr>& servers,
                       const std::vector<std::uint32_t>& weights,
                       std::chrono::milliseconds slow_start = {});
    int pick(const PickContext& context) override;

private:
    // Slow start: a ramping server takes its turn in only effective/full of the laps, spread
    // evenly (lap L is taken when floor((L+1)f) > floor(Lf)), so its share is exact.
    bool takesTurn(std::size_t index, std::uint64_t position,
                   std::chrono::steady_clock::time_point now) const;

    const std::vector<ServerStatePtr>& servers_;
    std::vector<std::uint32_t> weights_;
    std::chrono::milliseconds slow_start_;
    std::vector<std::uint16_t> schedule_;  // server indexes, interleaved by weight
    std::atomic<std::uint64_t> cursor_{0};
};

// Active requests per unit of weight decides; ties go round robin (by weight), as nginx's
// least_conn and HAProxy's leastconn do, so an idle group still spreads by weight.
class LeastConnectionsBalancer final : public Balancer {
public:
    LeastConnectionsBalancer(const std::vector<ServerStatePtr>& servers,
                             const std::vector<std::uint32_t>& weights,
                             std::chrono::milliseconds slow_start = {});
    int pick(const PickContext& context) override;

private:
    const std::vector<ServerStatePtr>& servers_;
    std::vector<std::uint32_t> weights_;
    std::chrono::milliseconds slow_start_;
    std::vector<std::uint16_t> schedule_;
    std::atomic<std::uint64_t> cursor_{0};
};

// Power of two choices: two servers drawn at random (by weight), the less loaded one wins. No
// shared cursor to contend on; each thread has its own generator.
class RandomTwoBalancer final : public Balancer {
public:
    RandomTwoBalancer(const std::vector<ServerStatePtr>& servers,
                      const std::vector<std::uint32_t>& weights,
                      std::chrono::milliseconds slow_start = {});
    int pick(const PickContext& context) override;

private:
    int draw(const PickContext& context) const;

    const std::vector<ServerStatePtr>& servers_;
    std::vector<std::uint32_t> weights_;
    std::chrono::milliseconds slow_start_;
    std::vector<std::uint64_t> cumulative_;  // running sum of weights_, for weighted draws
};

// A hash ring with virtual nodes (kPointsPerWeight per unit of weight) placed by server address,
// so removing one of n servers moves only the keys it held (about 1/n). Bounded load (Mirrokni
// et al., "Consistent Hashing with Bounded Loads"): a server already holding more than
// kLoadFactor times its weighted share of the active requests is passed over for the next one
// on the ring, so a hot key cannot overload one server. A request without a key (the header or
// cookie absent) is balanced round robin.
class ConsistentHashBalancer final : public Balancer {
public:
    static constexpr std::uint32_t kPointsPerWeight = 100;
    static constexpr double kLoadFactor = 1.25;

    ConsistentHashBalancer(const std::vector<ServerStatePtr>& servers,
                           const std::vector<std::uint32_t>& weights);
    int pick(const PickContext& context) override;

private:
    struct Point {
        std::uint64_t hash;
        std::uint32_t server;
    };
    bool overloaded(std::size_t index, std::int64_t total, std::uint64_t total_weight) const;

    const std::vector<ServerStatePtr>& servers_;
    std::vector<std::uint32_t> weights_;
    std::vector<Point> ring_;  // sorted by hash
    RoundRobinBalancer keyless_;
};

// Fills servers in config order: the first available untried one takes every request, the next
// ones only when it is down (HAProxy's balance first, for spare capacity kept cold).
class FirstBalancer final : public Balancer {
public:
    explicit FirstBalancer(const std::vector<ServerStatePtr>& servers);
    int pick(const PickContext& context) override;

private:
    const std::vector<ServerStatePtr>& servers_;
};

// Where the proxy takes a request's hash key from (upstreams.<name>.hash.key).
struct HashKeySource {
    enum class Kind : std::uint8_t { None, Uri, Client, Header, Cookie };
    Kind kind = Kind::None;  // None: the balancer needs no key
    std::string name;        // Header, Cookie
};

// "uri", "client", "header:NAME", "cookie:NAME"; anything else is Kind::None.
HashKeySource parseHashKeySource(std::string_view text);

// The balancer named by config.balance over `servers` (borrowed; they outlive it).
BalancerPtr makeBalancer(const config::Upstream& config,
                         const std::vector<ServerStatePtr>& servers);

// A stable 64-bit hash (FNV-1a, then a murmur3 finalizer), the same in every process and build,
// so several strata instances map a key to the same server.
std::uint64_t hashKey(std::string_view key);

// One configured upstream within a snapshot. Immutable except for its balancer's state.
class UpstreamGroup {
public:
    UpstreamGroup(const config::Upstream& config, ServerRegistry& registry);

    const config::Upstream& config() const { return config_; }
    const std::vector<ServerStatePtr>& servers() const { return servers_; }

    // Asks the configured balancer (upstreams.<name>.balance) for a server; see Balancer for
    // what every algorithm guarantees. -1 when every server was tried.
    int pick(const PickContext& context) const { return balancer_->pick(context); }
    int pick(const TriedServers& tried, std::chrono::steady_clock::time_point now) const {
        return pick(PickContext{tried, now, {}});
    }

    // pick() for upstreams with servers[].max_connections: a server at its limit is passed
    // over (and its slot taken for the caller when not). Busy: every available untried server
    // is at its limit; the caller queues. Servers without a limit never make it Busy.
    struct LimitedPick {
        enum class Result { Picked, Busy, None } result = Result::None;
        int index = -1;
        bool holds_slot = false;  // the caller must releaseSlot(index) when done with it
    };
    LimitedPick pickWithLimits(const PickContext& context) const;
    // Gives back a slot taken by pickWithLimits and wakes a waiter (any worker's).
    void releaseSlot(std::size_t index) const;
    bool limitsConnections() const { return queue_ != nullptr; }
    const ConnectionQueuePtr& queue() const { return queue_; }
    // Null without upstreams.<name>.retry_budget.
    RetryBudget* retryBudget() const { return retry_budget_.get(); }
    std::uint16_t metricsSlot() const { return metrics_slot_; }

    // TLS to the servers (upstreams.<name>.tls); null = plain TCP. Set while the snapshot is
    // built, before any worker sees the group.
    void setTls(net::TlsClientContextPtr tls) { tls_ = std::move(tls); }
    const net::TlsClientContext* tls() const { return tls_.get(); }
    const net::TlsClientContextPtr& tlsContext() const { return tls_; }

    // What the proxy must compute for pick()'s hash key; Kind::None for most algorithms.
    const HashKeySource& hashKeySource() const { return hash_source_; }

private:
    config::Upstream config_;
    HashKeySource hash_source_;
    net::TlsClientContextPtr tls_;
    std::vector<ServerStatePtr> servers_;
    // The one mutable part (cursors, shared by workers) lives in the balancer; the pointer is
    // const, the pointee is not.
    BalancerPtr balancer_;
    std::vector<std::uint32_t> max_connections_;  // by server; 0 = unlimited
    ConnectionQueuePtr queue_;                    // set when any server has a limit
    std::unique_ptr<RetryBudget> retry_budget_;   // mutable counters behind a const group
    std::uint16_t metrics_slot_ = 0;
};

using UpstreamGroupPtr = std::shared_ptr<UpstreamGroup>;

// Builds the interleaved weighted schedule (smooth weighted round robin): weights {5,1,1} give
// a,a,b,a,c,a,a rather than a,a,a,a,a,b,c. Exposed for tests.
std::vector<std::uint16_t> buildSchedule(const std::vector<std::uint32_t>& weights);

}  // namespace strata::upstream
