#include "strata/net/connection.h"

#include <cerrno>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "strata/common/assert.h"
#include "strata/common/log.h"

namespace strata::net {
namespace {

// SSL_get_error() reads the thread's error queue, so it must hold nothing stale. Peeking is a
// fraction of ERR_clear_error()'s cost (callgrind: ~840 instructions a call in OpenSSL 3), and
// the queue is empty on almost every read and write.
void clearStaleErrors() {
    if (ERR_peek_error() != 0) {
        ERR_clear_error();
    }
}

// One read call fills at most this much; two iovecs let evbuffer use its tail space first.
constexpr std::size_t kReadChunk = 32 * 1024;
// A TLS record holds at most 16 KiB of plaintext: one SSL_read returns at most that, and one
// SSL_write of that much is one record and one write().
constexpr std::size_t kTlsChunk = 16 * 1024;

std::string describeHandshakeFailure(SSL* ssl) {
    long verify = SSL_get_verify_result(ssl);
    std::string detail;
    if (unsigned long e = ERR_peek_error(); e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        detail = buf;
    }
    ERR_clear_error();
    if (verify != X509_V_OK) {
        return std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    }
    if (detail.empty()) {
        detail =
            errno != 0 ? std::string("connection closed during handshake") : "handshake failed";
    }
    return detail;
}

}  // namespace

Connection::Connection(event::Loop& loop, int fd, SSL* ssl, std::atomic<std::uint32_t>* handshakes)
    : loop_(loop),
      fd_(fd),
      input_(evbuffer_new()),
      output_(evbuffer_new()),
      handshaking_(ssl != nullptr),
      ssl_(ssl),
      handshakes_(ssl != nullptr ? handshakes : nullptr) {
    if (handshakes_ != nullptr) {
        handshakes_->fetch_add(1, std::memory_order_relaxed);
    }
    if (ssl_ != nullptr) {
        // Our own socket BIO in place of the one SSL_set_fd() made (freed by SSL_set_bio).
        if (BIO* bio = BIO_new(socketBioMethod())) {
            BIO_set_data(bio, this);
            BIO_set_init(bio, 1);
            SSL_set_bio(ssl_, bio, bio);
        }
    }
    // Registered once for the connection's life: edge-triggered, so no epoll_ctl later.
    // EV_CLOSED (EPOLLRDHUP) tells a FIN that came with the last bytes apart from those bytes
    // alone: with one edge for both, the short-read shortcut below would never see that EOF.
    event_ = event_new(loop_.base(), fd_, EV_READ | EV_WRITE | EV_CLOSED | EV_PERSIST | EV_ET,
                       &Connection::onEvent, this);
    event_add(event_, nullptr);
}

Connection::~Connection() {
    close();
    if (ssl_ != nullptr) {
        SSL_free(ssl_);
    }
    evbuffer_free(input_);
    evbuffer_free(output_);
}

std::unique_ptr<Connection> Connection::connectTo(event::Loop& loop, const SocketAddress& address,
                                                  SslFactory make_ssl, void* arg) {
    int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return nullptr;
    }
    setNoDelay(fd);
    int rc = ::connect(fd, address.get(), address.length);
    if (rc != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return nullptr;
    }
    SSL* ssl = nullptr;
    if (make_ssl != nullptr) {
        ssl = make_ssl(fd, address, arg);
        if (ssl == nullptr) {
            ::close(fd);
            return nullptr;
        }
    }
    auto connection = std::make_unique<Connection>(loop, fd, ssl);
    connection->connecting_ = (rc != 0);
    return connection;
}

const char* Connection::tlsVersion() const {
    return ssl_ != nullptr && !handshaking_ ? SSL_get_version(ssl_) : "";
}

const char* Connection::tlsCipher() const {
    return ssl_ != nullptr && !handshaking_ ? SSL_get_cipher_name(ssl_) : "";
}

std::string_view Connection::alpn() const {
    if (ssl_ == nullptr || handshaking_) {
        return {};
    }
    const unsigned char* data = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(ssl_, &data, &length);
    return data != nullptr ? std::string_view(reinterpret_cast<const char*>(data), length)
                           : std::string_view();
}

bool Connection::sessionReused() const {
    return ssl_ != nullptr && SSL_session_reused(ssl_) == 1;
}

std::string Connection::peerSubject() const {
    if (ssl_ == nullptr || handshaking_ || SSL_get_verify_result(ssl_) != X509_V_OK) {
        return {};
    }
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (cert == nullptr) {
        return {};
    }
    BIO* bio = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
}

void Connection::releaseHandshakeSlot() {
    if (handshakes_ != nullptr) {
        handshakes_->fetch_sub(1, std::memory_order_relaxed);
        handshakes_ = nullptr;
    }
}

std::size_t Connection::outputLength() const {
    return evbuffer_get_length(output_);
}

std::size_t Connection::inputLength() const {
    return evbuffer_get_length(input_);
}

void Connection::close() {
    releaseHandshakeSlot();
    if (ssl_ != nullptr && fd_ >= 0 && !handshaking_ && !failed_) {
        // One non-blocking close_notify, as a courtesy; nothing waits for the peer's.
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
    }
    if (event_ != nullptr) {
        event_free(event_);
        event_ = nullptr;
    }
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    callbacks_ = nullptr;
}

int Connection::releaseSocket() {
    STRATA_ASSERT(ssl_ == nullptr);
    if (event_ != nullptr) {
        event_free(event_);
        event_ = nullptr;
    }
    const int fd = fd_;
    fd_ = -1;
    callbacks_ = nullptr;
    return fd;
}

void Connection::shutdownWrite() {
    shutdown_pending_ = true;
    shutdownIfDrained();
}

void Connection::shutdownIfDrained() {
    if (!shutdown_pending_ || write_shut_ || fd_ < 0 || failed_ || connecting_ || handshaking_ ||
        evbuffer_get_length(output_) > 0) {
        return;
    }
    write_shut_ = true;
    if (ssl_ != nullptr) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
    }
    ::shutdown(fd_, SHUT_WR);
}

void Connection::fail(int err) {
    failed_ = true;
    error_ = err;
}

// The one entry from libevent into a connection and its owner: every owner callback
// (readable, writable, connected, error) runs below it, so this is where an exception stops.
void Connection::onEvent(int, short what, void* arg) {
    event::LoopTimeScope time_scope;
    auto* self = static_cast<Connection*>(arg);
    try {
        self->dispatch(what);
    } catch (...) {
        self->failFromException();
    }
}

// An owner's callback threw: its state is unknown, so this connection ends here and the rest of
// the worker keeps serving. The owner still hears onError() (once, callbacks off by then) so it
// can release what it holds; a second throw is only counted.
void Connection::failFromException() {
    log::countInternalError();
    LOG_ERROR("exception in connection callback (fd %d): closing the connection", fd_);
    ConnectionCallbacks* owner = callbacks_;
    fail(EPROTO);
    close();
    if (owner == nullptr) {
        return;
    }
    try {
        owner->onError();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in connection error callback");
    }
}

void Connection::dispatch(short what) {
    if (connecting_) {
        if ((what & (EV_WRITE | EV_READ)) == 0) {
            return;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
        connecting_ = false;
        if (err != 0) {
            fail(err);
        }
        if (handshaking_ && err == 0) {
            if (sendPreamble()) {
                handshake();  // onConnected() once the handshake is done
            }
            return;
        }
        if (callbacks_ != nullptr) {
            callbacks_->onConnected(err == 0);
        }
        if (err != 0 || closed()) {
            return;
        }
    }
    if (handshaking_) {
        if (!failed_ && sendPreamble()) {
            handshake();
        }
        return;
    }
    if ((what & EV_WRITE) != 0 && !closed()) {
        write_blocked_ = false;
        if (read_wants_write_) {
            read_wants_write_ = false;
            what |= EV_READ;
        }
        handleWrite();
    }
    if ((what & EV_CLOSED) != 0) {
        peer_shut_ = true;
        what |= EV_READ;
    }
    if ((what & EV_READ) != 0 && !closed()) {
        if (write_wants_read_) {
            write_wants_read_ = false;
            write_blocked_ = false;
            handleWrite();
            if (closed()) {
                return;
            }
        }
        read_pending_ = true;
        handleRead();
    }
}

void Connection::setPreamble(std::string bytes) {
    if (ssl_ == nullptr) {
        evbuffer_prepend(output_, bytes.data(), bytes.size());
        return;
    }
    preamble_ = std::move(bytes);
    preamble_sent_ = 0;
}

bool Connection::sendPreamble() {
    while (preamble_sent_ < preamble_.size()) {
        const ssize_t n = ::send(fd_, preamble_.data() + preamble_sent_,
                                 preamble_.size() - preamble_sent_, MSG_NOSIGNAL);
        if (n > 0) {
            preamble_sent_ += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return false;  // the write edge brings us back here
        }
        fail(n < 0 ? errno : EPIPE);
        tls_error_ = "connection failed while sending the PROXY header";
        releaseHandshakeSlot();
        if (callbacks_ != nullptr) {
            callbacks_->onConnected(false);
        }
        return false;
    }
    if (!preamble_.empty()) {
        std::string().swap(preamble_);
    }
    return true;
}

void Connection::handshake() {
    ERR_clear_error();
    errno = 0;
    const int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
        handshaking_ = false;
        releaseHandshakeSlot();
        if (callbacks_ != nullptr) {
            callbacks_->onConnected(true);
        }
        if (closed()) {
            return;
        }
        write_blocked_ = false;
        handleWrite();  // output queued during the handshake
        if (closed()) {
            return;
        }
        // The peer may have sent data right behind its Finished (a TLS 1.3 client's request).
        read_pending_ = true;
        handleRead();
        return;
    }
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        return;  // the next edge continues it
    }
    tls_error_ = describeHandshakeFailure(ssl_);
    fail(EPROTO);
    releaseHandshakeSlot();
    if (callbacks_ == nullptr) {
        return;
    }
    if (SSL_is_server(ssl_) == 1) {
        callbacks_->onError();
    } else {
        callbacks_->onConnected(false);
    }
}

// The BIO OpenSSL reads and writes the socket through. Like OpenSSL's socket BIO, but it
// notes whether a read came back short (the socket is empty, see readSomeTls()) and uses
// send(MSG_NOSIGNAL). Doing this with a BIO callback instead costs more than the read it
// saves: OpenSSL calls back on every BIO_ctrl, about 28 times per request.
int Connection::bioRead(BIO* bio, char* out, std::size_t length, std::size_t* read_bytes) {
    auto* self = static_cast<Connection*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    const ssize_t n = ::recv(self->fd_, out, length, 0);
    if (n > 0) {
        *read_bytes = static_cast<std::size_t>(n);
        // OpenSSL reads ahead as much as fits: a short read emptied the socket.
        self->socket_drained_ = static_cast<std::size_t>(n) < length;
        return 1;
    }
    self->socket_drained_ = true;
    *read_bytes = 0;
    if (n == 0) {
        self->socket_eof_ = true;  // BIO_CTRL_EOF tells OpenSSL
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        BIO_set_retry_read(bio);
    }
    return 0;
}

int Connection::bioWrite(BIO* bio, const char* data, std::size_t length, std::size_t* written) {
    auto* self = static_cast<Connection*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    const ssize_t n = ::send(self->fd_, data, length, MSG_NOSIGNAL);
    if (n >= 0) {
        *written = static_cast<std::size_t>(n);
        return 1;
    }
    *written = 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        BIO_set_retry_write(bio);
    }
    return 0;
}

long Connection::bioCtrl(BIO* bio, int command, long, void* ptr) {
    auto* self = static_cast<Connection*>(BIO_get_data(bio));
    switch (command) {
        case BIO_CTRL_FLUSH:
        case BIO_CTRL_DUP:
            return 1;
        case BIO_CTRL_EOF:
            return self != nullptr && self->socket_eof_ ? 1 : 0;
        case BIO_C_GET_FD:
            if (self == nullptr) {
                return -1;
            }
            if (ptr != nullptr) {
                *static_cast<int*>(ptr) = self->fd_;
            }
            return self->fd_;
        default:
            return 0;  // pending counts, kTLS queries, push/pop: nothing to report
    }
}

BIO_METHOD* Connection::socketBioMethod() {
    static BIO_METHOD* method = [] {
        BIO_METHOD* m = BIO_meth_new(
            BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "strata socket");
        BIO_meth_set_read_ex(m, &Connection::bioRead);
        BIO_meth_set_write_ex(m, &Connection::bioWrite);
        BIO_meth_set_ctrl(m, &Connection::bioCtrl);
        return m;
    }();
    return method;
}

bool Connection::readSomeTls() {
    bool progressed = false;
    while (read_pending_ && !peer_closed_ && !failed_) {
        if (input_limit_ != 0 && evbuffer_get_length(input_) >= input_limit_) {
            break;  // read_pending_ stays set, as for plain reads
        }
        evbuffer_iovec vec[1];
        if (evbuffer_reserve_space(input_, static_cast<ev_ssize_t>(kTlsChunk), vec, 1) != 1) {
            fail(ENOMEM);
            break;
        }
        clearStaleErrors();
        std::size_t got = 0;
        const int rc = SSL_read_ex(ssl_, vec[0].iov_base, vec[0].iov_len, &got);
        if (rc == 1) {
            vec[0].iov_len = got;
            evbuffer_commit_space(input_, vec, 1);
            progressed = true;
            if (socket_drained_ && SSL_has_pending(ssl_) == 0 && !peer_shut_) {
                // Nothing buffered in OpenSSL and the socket was emptied: the next arrival
                // brings a new edge, so skip the read that would only say EAGAIN.
                read_pending_ = false;
                break;
            }
            continue;  // records may wait in OpenSSL's read-ahead buffer: read to WANT_READ
        }
        evbuffer_commit_space(input_, vec, 0);
        switch (SSL_get_error(ssl_, rc)) {
            case SSL_ERROR_WANT_READ:
                read_pending_ = false;
                break;
            case SSL_ERROR_WANT_WRITE:
                read_pending_ = false;
                read_wants_write_ = true;
                break;
            case SSL_ERROR_ZERO_RETURN:  // close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF)
                peer_closed_ = true;
                read_pending_ = false;
                progressed = true;
                break;
            case SSL_ERROR_SYSCALL:
                read_pending_ = false;
                fail(errno != 0 ? errno : EPROTO);
                break;
            default:
                read_pending_ = false;
                tls_error_ = describeHandshakeFailure(ssl_);
                fail(EPROTO);
                break;
        }
        break;
    }
    return progressed;
}

bool Connection::readSome() {
    if (ssl_ != nullptr) {
        return readSomeTls();
    }
    bool progressed = false;
    while (read_pending_ && !peer_closed_ && !failed_) {
        std::size_t buffered = evbuffer_get_length(input_);
        if (input_limit_ != 0 && buffered >= input_limit_) {
            break;  // read_pending_ stays set: resumeReading()/the owner draining reads more
        }
        // One contiguous extent and recv(): cheaper in the kernel than readv() over two (and
        // than read(), which goes through the file layer). The input is drained after almost
        // every read, so the extent is a fresh chain anyway.
        evbuffer_iovec vec[1];
        if (evbuffer_reserve_space(input_, static_cast<ev_ssize_t>(kReadChunk), vec, 1) != 1) {
            fail(ENOMEM);
            break;
        }
        ssize_t n = ::recv(fd_, vec[0].iov_base, kReadChunk, 0);
        if (n > 0) {
            vec[0].iov_len = static_cast<std::size_t>(n);
            evbuffer_commit_space(input_, vec, 1);
            progressed = true;
            if (static_cast<std::size_t>(n) < kReadChunk && !peer_shut_) {
                // A short read almost always means the socket is empty; with edge triggering
                // the next arrival brings a new edge, so skip the EAGAIN round trip.
                read_pending_ = false;
            }
            continue;
        }
        evbuffer_commit_space(input_, vec, 0);
        if (n == 0) {
            peer_closed_ = true;
            read_pending_ = false;
            progressed = true;
            break;
        }
        if (errno == EINTR) {
            continue;
        }
        read_pending_ = false;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fail(errno);
        }
        break;
    }
    return progressed;
}

void Connection::handleRead() {
    if (reading_paused_ || closed()) {
        return;
    }
    bool progressed = readSome();
    if (failed_) {
        if (callbacks_ != nullptr) {
            callbacks_->onError();
        }
        return;
    }
    if (progressed && callbacks_ != nullptr) {
        callbacks_->onReadable();
    }
}

bool Connection::readMore() {
    if (reading_paused_ || closed() || !read_pending_) {
        return false;
    }
    return readSome();
}

void Connection::pauseReading() {
    reading_paused_ = true;
}

void Connection::resumeReading() {
    if (!reading_paused_) {
        return;
    }
    reading_paused_ = false;
    // With edge triggering no new event comes for bytes that arrived while paused.
    if (!closed()) {
        read_pending_ = true;
        handleRead();
    }
}

void Connection::flush() {
    if (closed() || connecting_ || handshaking_ || write_blocked_) {
        return;  // the write edge (or connect completion) will send it
    }
    handleWrite();
}

void Connection::writeTls() {
    while (std::size_t length = evbuffer_get_length(output_)) {
        // One record per call: a response head and a small body leave in one record and one
        // write(), at the price of copying them together (pullup is free within one chunk).
        std::size_t n = std::min(length, kTlsChunk);
        unsigned char* data = evbuffer_pullup(output_, static_cast<ev_ssize_t>(n));
        if (data == nullptr) {
            fail(ENOMEM);
            break;
        }
        clearStaleErrors();
        std::size_t written = 0;
        const int rc = SSL_write_ex(ssl_, data, n, &written);
        if (rc == 1) {
            evbuffer_drain(output_, written);
            bytes_sent_ += written;
            continue;
        }
        const int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            // Retried later with the same bytes at the front of output_ (moving buffer mode).
            write_blocked_ = true;
            write_wants_read_ = err == SSL_ERROR_WANT_READ;
            above_low_water_ = true;
            return;
        }
        ERR_clear_error();
        fail(err == SSL_ERROR_SYSCALL && errno != 0 ? errno : EPIPE);
        break;
    }
    if (failed_) {
        if (callbacks_ != nullptr) {
            callbacks_->onError();
        }
        return;
    }
    shutdownIfDrained();
    notifyIfDrained();
}

void Connection::notifyIfDrained() {
    if (above_low_water_ && evbuffer_get_length(output_) <= output_low_water_) {
        above_low_water_ = false;
        if (callbacks_ != nullptr) {
            callbacks_->onWritable();
        }
    }
}

void Connection::handleWrite() {
    if (connecting_ || failed_ || handshaking_) {
        return;
    }
    if (ssl_ != nullptr) {
        writeTls();
        return;
    }
    std::size_t queued = evbuffer_get_length(output_);
    while (queued > 0) {
        // Usually the whole answer sits in one chain: send() it, cheaper in the kernel than
        // the writev() evbuffer_write() makes.
        // (With a negative length evbuffer_peek() counts only the extents it fills in, so ask
        // for the whole length to learn whether one chain holds it all.)
        evbuffer_iovec first;
        ssize_t n = 0;
        if (evbuffer_peek(output_, static_cast<ev_ssize_t>(queued), nullptr, &first, 1) == 1) {
            n = ::send(fd_, first.iov_base, first.iov_len, MSG_NOSIGNAL);
            if (n > 0) {
                evbuffer_drain(output_, static_cast<std::size_t>(n));
            }
        } else {
            n = evbuffer_write(output_, fd_);
        }
        if (n > 0) {
            queued -= static_cast<std::size_t>(n);
            bytes_sent_ += static_cast<std::uint64_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            write_blocked_ = true;
            above_low_water_ = true;
            return;
        }
        fail(n < 0 ? errno : EPIPE);
        if (callbacks_ != nullptr) {
            callbacks_->onError();
        }
        return;
    }
    shutdownIfDrained();
    notifyIfDrained();
}

}  // namespace strata::net
