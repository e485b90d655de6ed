// A worker's keep-alive connections to upstream servers. Never shared between workers: a
// connection lives and dies on the worker that opened it.
//
// Lifecycle of an UpstreamConnection:
//
//   connect() ──▶ busy (owned by a Transaction) ──release()──▶ idle (owned by the pool)
//                      ▲                                          │
//                      └────────────── takeIdle() ◀───────────────┘
//   idle connections die on EOF, unexpected bytes, the idle timeout, or when over max_idle.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "strata/event/loop.h"
#include "strata/net/connection.h"
#include "strata/upstream/balancer.h"

namespace strata::upstream {

class ConnectionPool;

class UpstreamConnection final : private net::ConnectionCallbacks {
public:
    UpstreamConnection(net::ConnectionPtr connection, ServerStatePtr server);
    ~UpstreamConnection() override;
    UpstreamConnection(const UpstreamConnection&) = delete;
    UpstreamConnection& operator=(const UpstreamConnection&) = delete;

    net::Connection& connection() { return *connection_; }
    ServerState& server() { return *server_; }
    const ServerStatePtr& serverPtr() const { return server_; }
    // Exchanges completed on this connection; > 0 means it was reused from the pool, and a
    // failure before any response byte may be the server closing an idle connection (retryable).
    std::uint32_t exchanges = 0;

private:
    friend class ConnectionPool;
    // net::ConnectionCallbacks, while parked in the pool: an idle connection must stay silent,
    // so any byte, EOF or error means the server gave up on it.
    void onReadable() override;
    void onWritable() override {}
    void onConnected(bool) override {}
    void onError() override;

    net::ConnectionPtr connection_;
    ServerStatePtr server_;
    ConnectionPool* idle_in_ = nullptr;  // set while parked
    std::chrono::steady_clock::time_point idle_since_;
    std::chrono::milliseconds idle_timeout_{0};
};

using UpstreamConnectionPtr = std::unique_ptr<UpstreamConnection>;

class ConnectionPool {
public:
    explicit ConnectionPool(event::Loop& loop);
    ~ConnectionPool();
    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    // The most recently parked idle connection to `server`, or null. The caller installs its
    // own callbacks.
    UpstreamConnectionPtr takeIdle(const ServerState& server);

    // Starts a non-blocking connect; the outcome arrives as onConnected(). Null when the socket
    // could not even be created or the connect failed at once.
    UpstreamConnectionPtr connect(const ServerStatePtr& server);

    // Parks a connection whose last exchange ended cleanly (response complete, keep-alive).
    void release(UpstreamConnectionPtr connection, std::uint32_t max_idle,
                 std::chrono::milliseconds idle_timeout);

    // Closes every idle connection (drain, shutdown).
    void closeAll();
    std::size_t idleCount() const;

private:
    friend class UpstreamConnection;
    void discard(UpstreamConnection* connection);
    void sweep();

    event::Loop& loop_;
    std::unordered_map<const ServerState*, std::vector<UpstreamConnection*>> idle_;
    event::Timer sweep_timer_;  // closes connections idle past their timeout, once a second
};

}  // namespace strata::upstream
