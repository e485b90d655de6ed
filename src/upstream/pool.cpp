#include "strata/upstream/pool.h"

#include <algorithm>

#include <openssl/ssl.h>

#include "strata/common/log.h"
#include "strata/metrics/metrics.h"

namespace strata::upstream {
namespace {
constexpr std::chrono::milliseconds kSweepInterval{1000};
}

UpstreamConnection::UpstreamConnection(net::ConnectionPtr connection, ServerStatePtr server)
    : connection_(std::move(connection)), server_(std::move(server)) {
    metrics::global().upstreamConnectionOpened();  // a connect, not per request: atomic is fine
}

UpstreamConnection::~UpstreamConnection() {
    metrics::global().upstreamConnectionClosed();
}

void UpstreamConnection::onReadable() {
    if (idle_in_ != nullptr) {
        idle_in_->discard(this);
    }
}

void UpstreamConnection::onError() {
    if (idle_in_ != nullptr) {
        idle_in_->discard(this);
    }
}

ConnectionPool::ConnectionPool(event::Loop& loop)
    : loop_(loop), sweep_timer_(loop, [this] { sweep(); }) {}

ConnectionPool::~ConnectionPool() {
    closeAll();
    for (auto& [server, entry] : sessions_) {
        SSL_SESSION_free(entry.session);
    }
}

UpstreamConnectionPtr ConnectionPool::takeIdle(const ServerState& server, bool tls,
                                               std::string_view proxy_header) {
    auto it = idle_.find(&server);
    if (it == idle_.end()) {
        return nullptr;
    }
    auto& list = it->second;
    // Newest first. Connections of other clients (PROXY headers) are skipped and stay parked;
    // without PROXY upstreams every header is "" and the first one fits.
    for (std::size_t i = list.size(); i-- > 0;) {
        UpstreamConnection* connection = list[i];
        if (connection->proxy_header != proxy_header) {
            continue;
        }
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
        if ((connection->connection().ssl() != nullptr) != tls) {
            delete connection;
            continue;
        }
        connection->idle_in_ = nullptr;
        connection->connection().setCallbacks(nullptr);
        return UpstreamConnectionPtr(connection);
    }
    return nullptr;
}

UpstreamConnectionPtr ConnectionPool::connect(const ServerStatePtr& server,
                                              const net::TlsClientContext* tls,
                                              std::string proxy_header) {
    net::ConnectionPtr connection;
    if (tls == nullptr) {
        connection = net::Connection::connectTo(loop_, server->address());
    } else {
        auto found = sessions_.find(server.get());
        connection = tls->connect(loop_, server->address(),
                                  found == sessions_.end() ? nullptr : found->second.session);
    }
    if (!connection) {
        return nullptr;
    }
    if (!proxy_header.empty()) {
        connection->setPreamble(proxy_header);
    }
    auto upstream = std::make_unique<UpstreamConnection>(std::move(connection), server);
    upstream->proxy_header = std::move(proxy_header);
    return upstream;
}

void ConnectionPool::keepSession(UpstreamConnection& connection) {
    SSL* ssl = connection.connection().ssl();
    if (ssl == nullptr || connection.connection().handshaking() || SSL_session_reused(ssl) == 1) {
        return;  // a resumed session is the one already kept
    }
    SSL_SESSION* session = SSL_get1_session(ssl);
    if (session == nullptr) {
        return;
    }
    if (SSL_SESSION_is_resumable(session) != 1) {
        SSL_SESSION_free(session);
        return;
    }
    auto& entry = sessions_[&connection.server()];
    SSL_SESSION_free(entry.session);
    entry.server = connection.serverPtr();
    entry.session = session;
}

void ConnectionPool::release(UpstreamConnectionPtr connection, std::uint32_t max_idle,
                             std::chrono::milliseconds idle_timeout) {
    auto& list = idle_[&connection->server()];
    if (connection->connection().closed()) {
        return;  // closes as it goes out of scope
    }
    if (list.size() >= max_idle) {
        if (connection->proxy_header.empty() || list.empty()) {
            return;
        }
        // PROXY upstreams park one connection per client connection, and the oldest most
        // likely belongs to a client that has gone: it makes room, not the one in hand.
        delete list.front();
        list.erase(list.begin());
    }
    keepSession(*connection);
    UpstreamConnection* raw = connection.release();
    raw->idle_in_ = this;
    raw->exchanges++;
    raw->idle_since_ = event::loopTime();
    raw->idle_timeout_ = idle_timeout;
    raw->connection().setCallbacks(raw);
    raw->connection().resumeReading();
    list.push_back(raw);
    if (!sweep_timer_.armed()) {
        sweep_timer_.arm(kSweepInterval);
    }
}

void ConnectionPool::discard(UpstreamConnection* connection) {
    auto it = idle_.find(&connection->server());
    if (it != idle_.end()) {
        auto& list = it->second;
        list.erase(std::remove(list.begin(), list.end(), connection), list.end());
        if (list.empty()) {
            idle_.erase(it);
        }
    }
    connection->connection().close();
    // Called from the connection's own callback: free it on a later loop iteration.
    loop_.deferredDelete(event::deferrable(UpstreamConnectionPtr(connection)));
}

void ConnectionPool::sweep() {
    auto now = event::loopTime();
    for (auto it = idle_.begin(); it != idle_.end();) {
        auto& list = it->second;
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [now](UpstreamConnection* c) {
                                      if (now - c->idle_since_ < c->idle_timeout_) {
                                          return false;
                                      }
                                      delete c;
                                      return true;
                                  }),
                   list.end());
        it = list.empty() ? idle_.erase(it) : std::next(it);
    }
    if (!idle_.empty()) {
        sweep_timer_.arm(kSweepInterval);
    }
}

void ConnectionPool::closeAll() {
    for (auto& [server, list] : idle_) {
        for (UpstreamConnection* connection : list) {
            delete connection;
        }
    }
    idle_.clear();
}

std::size_t ConnectionPool::idleCount() const {
    std::size_t n = 0;
    for (const auto& [server, list] : idle_) {
        n += list.size();
    }
    return n;
}

}  // namespace strata::upstream
