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
#include "strata/upstream/balancer.h"

struct bufferevent;

namespace strata::upstream {

class ConnectionPool;

class UpstreamConnection {
public:
    UpstreamConnection(bufferevent* bev, ServerStatePtr server);
    ~UpstreamConnection();
    UpstreamConnection(const UpstreamConnection&) = delete;
    UpstreamConnection& operator=(const UpstreamConnection&) = delete;

    bufferevent* bev() { return bev_; }
    ServerState& server() { return *server_; }
    const ServerStatePtr& serverPtr() const { return server_; }
    // Exchanges completed on this connection; > 0 means it was reused from the pool, and a
    // failure before any response byte may be the server closing an idle connection (retryable).
    std::uint32_t exchanges = 0;

private:
    friend class ConnectionPool;
    bufferevent* bev_;
    ServerStatePtr server_;
    ConnectionPool* idle_in_ = nullptr;  // set while parked in a pool
};

using UpstreamConnectionPtr = std::unique_ptr<UpstreamConnection>;

class ConnectionPool {
public:
    explicit ConnectionPool(event::Loop& loop) : loop_(loop) {}
    ~ConnectionPool();
    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    // The most recently parked idle connection to `server`, or null. Its callbacks are cleared;
    // the caller installs its own.
    UpstreamConnectionPtr takeIdle(const ServerState& server);

    // Starts a non-blocking connect. The caller installs callbacks and learns the outcome from
    // BEV_EVENT_CONNECTED or an error event. Null when the socket could not even be created.
    UpstreamConnectionPtr connect(const ServerStatePtr& server);

    // Parks a connection whose last exchange ended cleanly (response complete, keep-alive).
    void release(UpstreamConnectionPtr connection, std::uint32_t max_idle,
                 std::chrono::milliseconds idle_timeout);

    // Closes every idle connection (drain, shutdown).
    void closeAll();
    std::size_t idleCount() const;

private:
    static void onIdleRead(bufferevent* bev, void* arg);
    static void onIdleEvent(bufferevent* bev, short what, void* arg);
    void discard(UpstreamConnection* connection);

    event::Loop& loop_;
    std::unordered_map<const ServerState*, std::vector<UpstreamConnection*>> idle_;
};

}  // namespace strata::upstream
