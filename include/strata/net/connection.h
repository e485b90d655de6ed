// A non-blocking TCP connection with input/output evbuffers, registered once with the loop as
// edge-triggered read+write. Compared with a bufferevent it issues no epoll_ctl per exchange
// and takes no locks: bytes are written straight away when the socket accepts them, and the
// write edge is only waited for when the kernel buffer is full. Measured on the core benchmark:
// bufferevents cost about 8 epoll_ctl calls per proxied request, this costs none.
//
// Owners get callbacks on the loop thread; a callback may close the connection but must not
// destroy the object (use Loop::deferredDelete). Timeouts are the owner's business (Timer).
#pragma once

#include <cstddef>
#include <cstdint>

#include "strata/event/loop.h"
#include "strata/net/socket.h"

struct evbuffer;
struct event;

namespace strata::net {

class ConnectionCallbacks {
public:
    virtual ~ConnectionCallbacks() = default;
    // New bytes are in input(), or the peer closed (peerClosed()).
    virtual void onReadable() = 0;
    // output() drained to at most the low-water mark after having been above it, or fully.
    virtual void onWritable() = 0;
    // A connect() started with connectTo() finished, successfully or not (then error()).
    virtual void onConnected(bool ok) = 0;
    // Reading or writing failed (reset, broken pipe). The connection is unusable.
    virtual void onError() = 0;
};

class Connection {
public:
    // Takes ownership of a connected (or connecting) non-blocking socket.
    Connection(event::Loop& loop, int fd);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Starts a non-blocking connect; onConnected() reports the result. Null on immediate failure.
    static std::unique_ptr<Connection> connectTo(event::Loop& loop, const SocketAddress& address);

    void setCallbacks(ConnectionCallbacks* callbacks) { callbacks_ = callbacks; }
    evbuffer* input() { return input_; }
    evbuffer* output() { return output_; }
    std::size_t outputLength() const;
    int fd() const { return fd_; }

    // Writes as much of output() as the socket takes now; the rest goes out as it drains.
    // Call after appending to output().
    void flush();
    // Stops reading from the socket once `limit` bytes are buffered in input() (0: no limit).
    void setInputLimit(std::size_t limit) { input_limit_ = limit; }
    // Reads more into input() when the socket may hold bytes that were left unread because the
    // input limit was reached. No callback; returns true when bytes (or EOF) arrived. Owners
    // call it after consuming input, from their own loop, so a fast sender cannot recurse.
    bool readMore();
    // While paused nothing is read: the kernel's receive window throttles the peer.
    void pauseReading();
    void resumeReading();
    bool readingPaused() const { return reading_paused_; }
    void setOutputLowWater(std::size_t bytes) { output_low_water_ = bytes; }

    bool peerClosed() const { return peer_closed_; }
    bool failed() const { return failed_; }
    int error() const { return error_; }
    bool connecting() const { return connecting_; }

    // Drops pending output and closes the socket now; no more callbacks.
    void close();
    bool closed() const { return fd_ < 0; }

private:
    static void onEvent(int fd, short what, void* arg);
    void handleRead();
    void handleWrite();
    // Reads until EAGAIN, EOF or the input limit. Returns true when bytes arrived or EOF.
    bool readSome();
    void fail(int err);

    event::Loop& loop_;
    int fd_;
    ::event* event_ = nullptr;
    evbuffer* input_;
    evbuffer* output_;
    ConnectionCallbacks* callbacks_ = nullptr;
    std::size_t input_limit_ = 64 * 1024;
    std::size_t output_low_water_ = 0;
    bool reading_paused_ = false;
    bool read_pending_ = false;   // the kernel may hold unread bytes (edge seen, limit reached)
    bool write_blocked_ = false;  // last write hit EAGAIN: wait for the write edge
    bool above_low_water_ = false;
    bool peer_closed_ = false;
    bool failed_ = false;
    bool connecting_ = false;
    int error_ = 0;
};

using ConnectionPtr = std::unique_ptr<Connection>;

}  // namespace strata::net
