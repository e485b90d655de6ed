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
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/event/loop.h"
#include "strata/http/parser.h"
#include "strata/net/connection.h"
#include "strata/net/tls_context.h"
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
    // Kept with the connection so each exchange on it reuses the parser's buffers instead of
    // allocating a new one; the exchange using the connection retargets its callbacks.
    std::unique_ptr<http::ResponseParser> response_parser;
    // Likewise the exchange's deadline timer: a timer re-armed for each exchange on the same
    // connection costs no libevent heap operation (event::Timer keeps deadlines lazily).
    std::unique_ptr<event::Timer> exchange_timer;
    // The PROXY protocol header this connection opened with ("" = none). It describes one
    // client connection, so the pool hands the connection only to requests with the same one.
    std::string proxy_header;

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
    // own callbacks. `tls`: whether the caller wants a TLS connection; a parked connection of
    // the other kind (the upstream's tls setting changed on reload) is closed, never reused.
    // `proxy_header`: only a connection opened with exactly this PROXY header (or none) fits.
    UpstreamConnectionPtr takeIdle(const ServerState& server, bool tls = false,
                                   std::string_view proxy_header = {});

    // Starts a non-blocking connect; the outcome arrives as onConnected() (with `tls`, after
    // the handshake, which offers the last session seen with this server for resumption).
    // Null when the socket could not even be created or the connect failed at once.
    // `proxy_header`, when not empty, is written first, ahead of any TLS.
    UpstreamConnectionPtr connect(const ServerStatePtr& server,
                                  const net::TlsClientContext* tls = nullptr,
                                  std::string proxy_header = {});

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

    // Remembers `connection`'s TLS session for the next connect to its server.
    void keepSession(UpstreamConnection& connection);

    event::Loop& loop_;
    std::unordered_map<const ServerState*, std::vector<UpstreamConnection*>> idle_;
    // Last TLS session per server (this worker's): new connections resume it. The ServerStatePtr
    // keeps the key alive.
    struct Session {
        ServerStatePtr server;
        SSL_SESSION* session = nullptr;
    };
    std::unordered_map<const ServerState*, Session> sessions_;
    event::Timer sweep_timer_;  // closes connections idle past their timeout, once a second
};

}  // namespace strata::upstream
