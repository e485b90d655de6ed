// A non-blocking TCP connection with input/output evbuffers, registered once with the loop as
// edge-triggered read+write. Compared with a bufferevent it issues no epoll_ctl per exchange
// and takes no locks: bytes are written straight away when the socket accepts them, and the
// write edge is only waited for when the kernel buffer is full. Measured on the core benchmark:
// bufferevents cost about 8 epoll_ctl calls per proxied request, this costs none.
//
// Owners get callbacks on the loop thread; a callback may close the connection but must not
// destroy the object (use Loop::deferredDelete). Timeouts are the owner's business (Timer).
//
// TLS is a transport mode of the same object, not a subclass: with an SSL, reads are SSL_read
// into the input evbuffer's reserved space and flush() is SSL_write from the output evbuffer,
// so owners keep the same API. The handshake is a state before data:
//
//   [connecting] ──tcp up──▶ handshaking ──done──▶ open (onConnected(true) on both sides)
//                                 └──failed──▶ failed (client: onConnected(false); server: onError)
//
// Output queued while handshaking goes out once the handshake is done. The plain path pays one
// predictable branch per read and write.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "strata/event/loop.h"
#include "strata/net/socket.h"

struct evbuffer;
struct event;
struct ssl_st;
struct bio_st;
struct bio_method_st;

namespace strata::net {

class ConnectionCallbacks {
public:
    virtual ~ConnectionCallbacks() = default;
    // New bytes are in input(), or the peer closed (peerClosed()).
    virtual void onReadable() = 0;
    // output() drained to at most the low-water mark after having been above it, or fully.
    virtual void onWritable() = 0;
    // A connect() started with connectTo() finished, successfully or not (then error()); with
    // TLS, once the handshake is done. A TLS server connection reports its handshake too.
    virtual void onConnected(bool ok) = 0;
    // Reading or writing failed (reset, broken pipe). The connection is unusable.
    virtual void onError() = 0;
};

class Connection {
public:
    // Takes ownership of a connected (or connecting) non-blocking socket, and of `ssl` (set up
    // on that fd in accept or connect state) when not null. `handshakes`, if given, counts this
    // connection while its handshake is in progress.
    Connection(event::Loop& loop, int fd, ssl_st* ssl = nullptr,
               std::atomic<std::uint32_t>* handshakes = nullptr);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Starts a non-blocking connect; onConnected() reports the result. Null on immediate failure.
    // `make_ssl`, if given, makes the client SSL for the new socket (TLS after the connect).
    using SslFactory = ssl_st* (*)(int fd, const SocketAddress& peer, void* arg);
    static std::unique_ptr<Connection> connectTo(event::Loop& loop, const SocketAddress& address,
                                                 SslFactory make_ssl = nullptr,
                                                 void* arg = nullptr);

    void setCallbacks(ConnectionCallbacks* callbacks) { callbacks_ = callbacks; }
    // Bytes that go out first, on the raw socket, ahead of the TLS handshake when there is one
    // (a PROXY protocol header). Before anything else is written; once per connection.
    void setPreamble(std::string bytes);
    evbuffer* input() { return input_; }
    evbuffer* output() { return output_; }
    std::size_t outputLength() const;
    std::size_t inputLength() const;
    // Bytes taken from output() by the socket (plaintext, before TLS) since the connection began.
    std::uint64_t bytesSent() const { return bytes_sent_; }
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

    // TLS: null for plain connections.
    ssl_st* ssl() const { return ssl_; }
    bool handshaking() const { return handshaking_; }
    // Why the handshake failed ("certificate verify failed: self-signed certificate"), or "".
    const std::string& tlsError() const { return tls_error_; }
    // "TLSv1.3", "TLS_AES_128_GCM_SHA256"; "" when plain or not yet negotiated.
    const char* tlsVersion() const;
    const char* tlsCipher() const;
    // The protocol ALPN selected ("h2", "http/1.1"); "" when plain, none, or not yet known.
    std::string_view alpn() const;
    // The client certificate's subject (RFC 2253) when one was presented and verified, else "".
    std::string peerSubject() const;
    bool sessionReused() const;

    // Half-close: no more output once what is queued has been sent (TLS: close_notify, then a
    // TCP FIN); reading goes on. For tunnels, which pass each side's end on to the other.
    void shutdownWrite();
    bool writeShutdown() const { return write_shut_; }

    // Drops pending output and closes the socket now; no more callbacks.
    void close();
    // Plain connections only: stops watching the socket and hands it over open (an idle
    // keep-alive connection that parks); the connection is closed() from then on.
    int releaseSocket();
    // The socket is known to hold bytes or an EOF (a parked connection woke): the next
    // readMore() reads it without waiting for an edge.
    void assumeReadable() { read_pending_ = true; }
    bool closed() const { return fd_ < 0; }

private:
    static void onEvent(int fd, short what, void* arg);
    void dispatch(short what);
    void failFromException();
    void handleRead();
    void handleWrite();
    // Reads until EAGAIN, EOF or the input limit. Returns true when bytes arrived or EOF.
    bool readSome();
    bool readSomeTls();
    // onWritable() once output fell to the low-water mark after having been above it.
    void notifyIfDrained();
    // The socket BIO under the SSL (see connection.cpp).
    static bio_method_st* socketBioMethod();
    static int bioRead(bio_st* bio, char* out, std::size_t length, std::size_t* read_bytes);
    static int bioWrite(bio_st* bio, const char* data, std::size_t length, std::size_t* written);
    static long bioCtrl(bio_st* bio, int command, long number, void* ptr);
    void writeTls();
    void handshake();
    // Writes what is left of preamble_; false while it is not all out (or on failure).
    bool sendPreamble();
    void releaseHandshakeSlot();
    void fail(int err);
    void shutdownIfDrained();

    event::Loop& loop_;
    int fd_;
    ::event* event_ = nullptr;
    evbuffer* input_;
    evbuffer* output_;
    ConnectionCallbacks* callbacks_ = nullptr;
    std::size_t input_limit_ = 64 * 1024;
    std::size_t output_low_water_ = 0;
    std::uint64_t bytes_sent_ = 0;
    bool reading_paused_ = false;
    bool read_pending_ = false;   // the kernel may hold unread bytes (edge seen, limit reached)
    bool write_blocked_ = false;  // last write hit EAGAIN: wait for the write edge
    bool above_low_water_ = false;
    bool peer_closed_ = false;
    bool shutdown_pending_ = false;
    bool write_shut_ = false;
    bool failed_ = false;
    bool connecting_ = false;
    bool handshaking_ = false;
    bool read_wants_write_ = false;  // SSL_read needs the write edge (TLS post-handshake data)
    bool socket_drained_ = false;    // OpenSSL's last socket read came back short
    bool peer_shut_ = false;         // EV_CLOSED seen: read on to the EOF, never stop short
    bool socket_eof_ = false;        // a socket read returned 0 (end of stream)
    bool write_wants_read_ = false;  // SSL_write needs the read edge
    int error_ = 0;
    ssl_st* ssl_ = nullptr;
    std::atomic<std::uint32_t>* handshakes_ = nullptr;  // the TLS context's; set while counted
    std::string tls_error_;
    std::string preamble_;  // TLS only: plain connections queue it in output_
    std::size_t preamble_sent_ = 0;
};

using ConnectionPtr = std::unique_ptr<Connection>;

}  // namespace strata::net
