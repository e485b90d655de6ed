// A worker's accept loop on one listening socket (each worker has its own SO_REUSEPORT socket).
#pragma once

#include <functional>

#include "strata/event/loop.h"
#include "strata/net/socket.h"

struct evconnlistener;

namespace strata::net {

class Listener {
public:
    // on_accept gets a connected non-blocking fd it now owns, and the peer address.
    using AcceptCallback = std::function<void(int fd, const SocketAddress& peer)>;

    // Takes ownership of listen_fd.
    Listener(event::Loop& loop, int listen_fd, AcceptCallback on_accept);
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    // Stops accepting (drain); the socket is closed so the kernel stops queueing connections here.
    void close();

private:
    static void onAccept(evconnlistener*, int fd, sockaddr* addr, int len, void* arg);
    static void onError(evconnlistener*, void* arg);

    evconnlistener* listener_ = nullptr;
    AcceptCallback on_accept_;
};

}  // namespace strata::net
