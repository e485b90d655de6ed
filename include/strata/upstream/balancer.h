// Upstream groups as the data path sees them: servers with shared health state and one
// round-robin cursor for all workers (DESIGN.md: "round-robin cursors, health state" are shared).
//
// ServerState outlives config snapshots: a reload that keeps a server keeps its state (and the
// pooled connections to it), found through ServerRegistry by upstream name and address.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "strata/config/config.h"
#include "strata/net/socket.h"
#include "strata/net/tls_context.h"

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
    void setHealthy(bool healthy) { healthy_.store(healthy, std::memory_order_relaxed); }
    bool healthy() const { return healthy_.load(std::memory_order_relaxed); }

    std::atomic<std::int64_t> in_flight{0};
    // Series of this server in metrics::global() (upstream + address).
    std::uint16_t metricsSlot() const { return metrics_slot_; }

private:
    std::string upstream_name_;
    net::SocketAddress address_;
    std::string label_;
    std::atomic<std::int64_t> down_until_ns_{0};  // steady_clock epoch nanoseconds
    std::atomic<std::uint32_t> consecutive_failures_{0};
    std::atomic<bool> healthy_{true};
    std::uint16_t metrics_slot_ = 0;
};

using ServerStatePtr = std::shared_ptr<ServerState>;

// Keeps ServerState alive across reloads. Thread-safe; used at snapshot build time only.
class ServerRegistry {
public:
    ServerStatePtr get(const std::string& upstream_name, const config::Endpoint& address);

private:
    std::mutex mutex_;
    std::map<std::string, std::weak_ptr<ServerState>> states_;
};

// One configured upstream within a snapshot. Immutable except for the cursor.
class UpstreamGroup {
public:
    UpstreamGroup(const config::Upstream& config, ServerRegistry& registry);

    const config::Upstream& config() const { return config_; }
    const std::vector<ServerStatePtr>& servers() const { return servers_; }

    // Picks the next server in (smooth weighted) round-robin order, skipping servers in
    // `tried` (a bitmask by server index) and, when possible, servers that are unhealthy or
    // backing off. When every untried server is down it still returns one rather than failing
    // everything. Returns -1 when every server was tried.
    int pick(std::uint64_t tried, std::chrono::steady_clock::time_point now) const;

    // TLS to the servers (upstreams.<name>.tls); null = plain TCP. Set while the snapshot is
    // built, before any worker sees the group.
    void setTls(net::TlsClientContextPtr tls) { tls_ = std::move(tls); }
    const net::TlsClientContext* tls() const { return tls_.get(); }
    const net::TlsClientContextPtr& tlsContext() const { return tls_; }  // keeps it alive

private:
    config::Upstream config_;
    net::TlsClientContextPtr tls_;
    std::vector<ServerStatePtr> servers_;
    std::vector<std::uint16_t> schedule_;           // server indexes, interleaved by weight
    mutable std::atomic<std::uint64_t> cursor_{0};  // the one mutable part, shared by workers
};

using UpstreamGroupPtr = std::shared_ptr<UpstreamGroup>;

// Builds the interleaved weighted schedule (smooth weighted round robin): weights {5,1,1} give
// a,a,b,a,c,a,a rather than a,a,a,a,a,b,c. Exposed for tests.
std::vector<std::uint16_t> buildSchedule(const std::vector<std::uint32_t>& weights);

}  // namespace strata::upstream
