#include "strata/upstream/pool.h"

#include <algorithm>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "strata/common/log.h"
#include "strata/net/socket.h"

namespace strata::upstream {

UpstreamConnection::UpstreamConnection(bufferevent* bev, ServerStatePtr server)
    : bev_(bev), server_(std::move(server)) {}

UpstreamConnection::~UpstreamConnection() {
    if (bev_ != nullptr) {
        bufferevent_free(bev_);
    }
}

ConnectionPool::~ConnectionPool() {
    closeAll();
}

UpstreamConnectionPtr ConnectionPool::takeIdle(const ServerState& server) {
    auto it = idle_.find(&server);
    if (it == idle_.end() || it->second.empty()) {
        return nullptr;
    }
    UpstreamConnection* connection = it->second.back();
    it->second.pop_back();
    connection->idle_in_ = nullptr;
    bufferevent_setcb(connection->bev(), nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(connection->bev(), EV_READ);
    bufferevent_set_timeouts(connection->bev(), nullptr, nullptr);
    return UpstreamConnectionPtr(connection);
}

UpstreamConnectionPtr ConnectionPool::connect(const ServerStatePtr& server) {
    const net::SocketAddress& address = server->address();
    bufferevent* bev = bufferevent_socket_new(loop_.base(), -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
        return nullptr;
    }
    auto connection = std::make_unique<UpstreamConnection>(bev, server);
    if (bufferevent_socket_connect(bev, address.get(), static_cast<int>(address.length)) != 0) {
        // Immediate failure (e.g. no route); the caller sees a null connection and fails over.
        return nullptr;
    }
    int fd = bufferevent_getfd(bev);
    if (fd >= 0) {
        net::setNoDelay(fd);
    }
    return connection;
}

void ConnectionPool::release(UpstreamConnectionPtr connection, std::uint32_t max_idle,
                             std::chrono::milliseconds idle_timeout) {
    auto& list = idle_[&connection->server()];
    if (list.size() >= max_idle) {
        return;  // connection closes as it goes out of scope
    }
    UpstreamConnection* raw = connection.release();
    raw->idle_in_ = this;
    raw->exchanges++;
    // An idle connection must stay silent: any byte or EOF means the server gave up on it.
    struct timeval tv = event::toTimeval(idle_timeout);
    bufferevent_set_timeouts(raw->bev(), &tv, nullptr);
    bufferevent_setcb(raw->bev(), &ConnectionPool::onIdleRead, nullptr,
                      &ConnectionPool::onIdleEvent, raw);
    bufferevent_enable(raw->bev(), EV_READ);
    list.push_back(raw);
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
    delete connection;
}

void ConnectionPool::onIdleRead(bufferevent*, void* arg) {
    auto* connection = static_cast<UpstreamConnection*>(arg);
    connection->idle_in_->discard(connection);
}

void ConnectionPool::onIdleEvent(bufferevent*, short, void* arg) {
    auto* connection = static_cast<UpstreamConnection*>(arg);
    connection->idle_in_->discard(connection);
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
