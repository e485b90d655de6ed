// Reads the PROXY protocol header that opens a connection on a listener with proxy_protocol,
// before anything else touches the socket (TLS, the HTTP/1.1 or HTTP/2 codec).
//
// It peeks (MSG_PEEK) and takes off the socket only the header's own bytes, so whatever follows
// (a TLS ClientHello, a request) is still in the kernel for the connection that comes next: no
// leftover buffer has to be handed over, and a TLS handshake starts on a clean socket.
//
//   start ─▶ waiting ─header complete─▶ done(Ok, header): the fd is the caller's
//               ├──bad/oversized/EOF──▶ done(Malformed): fd closed
//               └──timeout────────────▶ done(Timeout): fd closed
//
// `done` runs once, from a socket or timer callback; the owner then frees the reader with
// Loop::deferredDelete (never inside `done`'s own call stack).
#pragma once

#include <chrono>
#include <functional>

#include "strata/event/loop.h"
#include "strata/net/proxy_protocol.h"

struct event;

namespace strata::net {

class ProxyHeaderReader final : public event::DeferredDeletable {
public:
    enum class Outcome { Ok, Malformed, Timeout };
    // On Ok the caller owns `fd`; otherwise it is already closed. `error` is static text.
    using Done = std::function<void(ProxyHeaderReader& reader, Outcome outcome, int fd,
                                    const proxy_protocol::Header& header, const char* error)>;

    // Takes ownership of `fd` (connected, non-blocking).
    ProxyHeaderReader(event::Loop& loop, int fd, std::chrono::milliseconds timeout, Done done);
    ~ProxyHeaderReader() override;
    ProxyHeaderReader(const ProxyHeaderReader&) = delete;
    ProxyHeaderReader& operator=(const ProxyHeaderReader&) = delete;

    void start();
    // Closes the socket without calling `done` (worker shutdown or drain).
    void cancel();

private:
    static void onEvent(int fd, short what, void* arg);
    void readHeader();
    void finish(Outcome outcome, const proxy_protocol::Header& header, const char* error);

    int fd_;
    ::event* event_ = nullptr;
    event::Timer timer_;
    std::chrono::milliseconds timeout_;
    Done done_;
    bool peer_closed_ = false;  // EV_CLOSED seen: no more bytes will come
};

}  // namespace strata::net
