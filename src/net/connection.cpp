#include "strata/net/connection.h"

#include <cerrno>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "strata/common/log.h"

namespace strata::net {
namespace {

// One read call fills at most this much; two iovecs let evbuffer use its tail space first.
constexpr std::size_t kReadChunk = 32 * 1024;

}  // namespace

Connection::Connection(event::Loop& loop, int fd)
    : loop_(loop), fd_(fd), input_(evbuffer_new()), output_(evbuffer_new()) {
    // Registered once for the connection's life: edge-triggered, so no epoll_ctl later.
    event_ = event_new(loop_.base(), fd_, EV_READ | EV_WRITE | EV_PERSIST | EV_ET,
                       &Connection::onEvent, this);
    event_add(event_, nullptr);
}

Connection::~Connection() {
    close();
    evbuffer_free(input_);
    evbuffer_free(output_);
}

std::unique_ptr<Connection> Connection::connectTo(event::Loop& loop, const SocketAddress& address) {
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
    auto connection = std::make_unique<Connection>(loop, fd);
    connection->connecting_ = (rc != 0);
    return connection;
}

std::size_t Connection::outputLength() const {
    return evbuffer_get_length(output_);
}

void Connection::close() {
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

void Connection::fail(int err) {
    failed_ = true;
    error_ = err;
}

void Connection::onEvent(int, short what, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    if (self->connecting_) {
        if ((what & (EV_WRITE | EV_READ)) == 0) {
            return;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
        self->connecting_ = false;
        if (err != 0) {
            self->fail(err);
        }
        if (self->callbacks_ != nullptr) {
            self->callbacks_->onConnected(err == 0);
        }
        if (err != 0 || self->closed()) {
            return;
        }
    }
    if ((what & EV_WRITE) != 0 && !self->closed()) {
        self->write_blocked_ = false;
        self->handleWrite();
    }
    if ((what & EV_READ) != 0 && !self->closed()) {
        self->read_pending_ = true;
        self->handleRead();
    }
}

bool Connection::readSome() {
    bool progressed = false;
    while (read_pending_ && !peer_closed_ && !failed_) {
        std::size_t buffered = evbuffer_get_length(input_);
        if (input_limit_ != 0 && buffered >= input_limit_) {
            break;  // read_pending_ stays set: resumeReading()/the owner draining reads more
        }
        evbuffer_iovec vec[2];
        int n_vec = evbuffer_reserve_space(input_, static_cast<ev_ssize_t>(kReadChunk), vec, 2);
        if (n_vec <= 0) {
            fail(ENOMEM);
            break;
        }
        ssize_t n = ::readv(fd_, reinterpret_cast<iovec*>(vec), n_vec);
        if (n > 0) {
            std::size_t remaining = static_cast<std::size_t>(n);
            for (int i = 0; i < n_vec; ++i) {
                std::size_t used = std::min(remaining, vec[i].iov_len);
                vec[i].iov_len = used;
                remaining -= used;
            }
            evbuffer_commit_space(input_, vec, n_vec);
            progressed = true;
            if (static_cast<std::size_t>(n) < kReadChunk) {
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
    if (closed() || connecting_ || write_blocked_) {
        return;  // the write edge (or connect completion) will send it
    }
    handleWrite();
}

void Connection::handleWrite() {
    if (connecting_ || failed_) {
        return;
    }
    while (evbuffer_get_length(output_) > 0) {
        int n = evbuffer_write(output_, fd_);
        if (n > 0) {
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
    if (above_low_water_ && evbuffer_get_length(output_) <= output_low_water_) {
        above_low_water_ = false;
        if (callbacks_ != nullptr) {
            callbacks_->onWritable();
        }
    }
}

}  // namespace strata::net
