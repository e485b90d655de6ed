#include "strata/proxy/parked_connection.h"

#include <cstring>
#include <unistd.h>

#include <event2/event.h>

#include "strata/common/log.h"
#include "strata/metrics/metrics.h"
#include "strata/proxy/downstream_session.h"

namespace strata::proxy {

bool ParkedConnection::fits(const net::SocketAddress& address) {
    return address.length <= sizeof(sockaddr_in6);
}

ParkedConnection::CompactAddress ParkedConnection::compact(const net::SocketAddress& address) {
    CompactAddress out;
    out.length = address.length;
    std::memcpy(&out.bytes, &address.storage, address.length);
    return out;
}

net::SocketAddress ParkedConnection::expand(const CompactAddress& address) {
    net::SocketAddress out;
    out.length = address.length;
    std::memcpy(&out.storage, &address.bytes, address.length);
    return out;
}

ParkedConnection::ParkedConnection(WorkerContext& worker, Identity&& identity)
    : worker_(worker),
      id_(identity.id),
      fd_(identity.fd),
      holds_client_slot_(identity.holds_client_slot),
      peer_(compact(identity.peer)),
      local_(compact(identity.local)),
      listener_(std::move(identity.listener)) {}

void ParkedConnection::park(WorkerContext& worker, Identity identity,
                            std::chrono::milliseconds idle_left) {
    auto* parked = new ParkedConnection(worker, std::move(identity));
    // Level-triggered and one-shot: a byte that arrived while the session was being taken
    // down still wakes it, and the woken session registers the socket afresh.
    event_assign(&parked->event_, worker.loop.base(), parked->fd_, EV_READ, &onEvent, parked);
    const auto ms = std::max<std::chrono::milliseconds::rep>(idle_left.count(), 0);
    const timeval timeout{static_cast<time_t>(ms / 1000),
                          static_cast<suseconds_t>((ms % 1000) * 1000)};
    if (event_add(&parked->event_, &timeout) != 0) {
        LOG_ERROR("cannot watch a parked connection; closing it");
        release(worker, parked->fd_, parked->expand(parked->peer_), parked->holds_client_slot_);
        delete parked;
        return;
    }
    parked->next_ = worker.parked_;
    if (worker.parked_ != nullptr) {
        worker.parked_->prev_ = parked;
    }
    worker.parked_ = parked;
    metrics::global().clientConnectionParked();
}

void ParkedConnection::unlink() {
    event_del(&event_);
    if (prev_ != nullptr) {
        prev_->next_ = next_;
    } else {
        worker_.parked_ = next_;
    }
    if (next_ != nullptr) {
        next_->prev_ = prev_;
    }
    metrics::global().clientConnectionUnparked();
}

ParkedConnection::Identity ParkedConnection::unpark() {
    unlink();
    Identity identity{
        fd_, id_, expand(peer_), expand(local_), std::move(listener_), holds_client_slot_};
    delete this;
    return identity;
}

void ParkedConnection::close() {
    unlink();
    release(worker_, fd_, expand(peer_), holds_client_slot_);
    delete this;
}

void ParkedConnection::release(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                               bool holds_client_slot) {
    ::close(fd);
    if (holds_client_slot && worker.client_connections != nullptr) {
        worker.client_connections->release(peer);
    }
    worker.process_connections.fetch_sub(1, std::memory_order_relaxed);
}

void ParkedConnection::onEvent(int /*fd*/, short what, void* arg) {
    auto* parked = static_cast<ParkedConnection*>(arg);
    if ((what & EV_READ) == 0) {
        parked->close();  // limits.client_idle_timeout, as for a session
        return;
    }
    WorkerContext& worker = parked->worker_;
    Identity identity = parked->unpark();
    try {
        DownstreamSession::resume(worker, identity);
    } catch (...) {
        // Only making the session can throw (out of memory), before it owns the socket.
        log::countInternalError();
        LOG_ERROR("cannot resume a parked connection; closing it");
        release(worker, identity.fd, identity.peer, identity.holds_client_slot);
    }
}

void ParkedConnection::closeAll(WorkerContext& worker) {
    while (worker.parked_ != nullptr) {
        worker.parked_->close();
    }
}

}  // namespace strata::proxy
