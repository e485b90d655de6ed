#pragma once

#include <chrono>
#include <cstdint>
#include <netinet/in.h>

#include <event2/event_struct.h>

#include "strata/net/socket.h"
#include "strata/proxy/worker_context.h"

namespace strata::proxy {

// A plain HTTP/1.1 keep-alive connection between exchanges, held without its session: the
// socket, who is on it and its idle deadline in under 300 bytes, where a DownstreamSession with
// its buffers and timer takes about 1.4 KiB. Most keep-alive connections of a busy site are
// idle most of the time, so this is what 10,000 of them cost. A session parks once it has been
// idle for DownstreamSession's park delay; the next byte or the close makes it a session again,
// with the same connection id, so logs and limits see one connection throughout.
class ParkedConnection {
public:
    struct Identity {
        int fd = -1;
        std::uint64_t id = 0;
        net::SocketAddress peer;
        net::SocketAddress local;
        ListenerInfo listener;
        bool holds_client_slot = false;
    };

    // Whether an address fits the compact form parked connections keep (IPv4 and IPv6 do).
    static bool fits(const net::SocketAddress& address);
    // Takes the socket; closes it if it stays silent for `idle_left`.
    static void park(WorkerContext& worker, Identity identity, std::chrono::milliseconds idle_left);
    // Closes every parked connection of the worker at once (drain, shutdown).
    static void closeAll(WorkerContext& worker);

    ParkedConnection(const ParkedConnection&) = delete;
    ParkedConnection& operator=(const ParkedConnection&) = delete;

private:
    struct CompactAddress {
        sockaddr_in6 bytes{};  // large enough for sockaddr_in too
        socklen_t length = 0;
    };

    ParkedConnection(WorkerContext& worker, Identity&& identity);
    static void onEvent(int fd, short what, void* arg);
    void unlink();      // off the event loop and the worker's list
    Identity unpark();  // unlinks and frees this; the caller owns the socket
    void close();       // unlinks, closes the socket and frees this
    // What closing a connection that has no session undoes: the socket, the per-client slot,
    // the process's connection count.
    static void release(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                        bool holds_client_slot);

    static CompactAddress compact(const net::SocketAddress& address);
    static net::SocketAddress expand(const CompactAddress& address);

    ::event event_{};
    WorkerContext& worker_;
    ParkedConnection* prev_ = nullptr;
    ParkedConnection* next_ = nullptr;
    std::uint64_t id_;
    int fd_;
    bool holds_client_slot_;
    CompactAddress peer_;
    CompactAddress local_;
    ListenerInfo listener_;
};

}  // namespace strata::proxy
