#include "strata/net/listener.h"

#include <cstring>

#include <event2/listener.h>
#include <event2/util.h>

#include "strata/common/log.h"

namespace strata::net {

Listener::Listener(event::Loop& loop, int listen_fd, AcceptCallback on_accept)
    : on_accept_(std::move(on_accept)) {
    listener_ = evconnlistener_new(loop.base(), &Listener::onAccept, this,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
    if (listener_ != nullptr) {
        evconnlistener_set_error_cb(listener_, &Listener::onError);
    }
}

Listener::~Listener() {
    close();
}

void Listener::close() {
    if (listener_ != nullptr) {
        evconnlistener_free(listener_);
        listener_ = nullptr;
    }
}

void Listener::onAccept(evconnlistener*, int fd, sockaddr* addr, int len, void* arg) {
    event::LoopTimeScope time_scope;
    auto* self = static_cast<Listener*>(arg);
    try {
        self->on_accept_(fd, SocketAddress::fromSockaddr(addr, static_cast<socklen_t>(len)));
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception while accepting a connection");
    }
}

void Listener::onError(evconnlistener*, void*) {
    // EMFILE/ENFILE and friends: libevent keeps the listener; log so operators see fd exhaustion.
    LOG_WARN("accept failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

}  // namespace strata::net
