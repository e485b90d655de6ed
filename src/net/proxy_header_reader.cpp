#include "strata/net/proxy_header_reader.h"

#include <array>
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "strata/common/log.h"

namespace strata::net {

ProxyHeaderReader::ProxyHeaderReader(event::Loop& loop, int fd, std::chrono::milliseconds timeout,
                                     Done done)
    : fd_(fd),
      timer_(
          loop, [this] { finish(Outcome::Timeout, {}, "no complete PROXY header in time"); },
          [this] { cancel(); }),
      timeout_(timeout),
      done_(std::move(done)) {
    // EV_CLOSED: a FIN behind a partial header shows up although the peeked bytes stay.
    // Edge-triggered: a peek leaves the bytes in the socket, so a level-triggered read event
    // would fire again at once; each new segment brings a new edge instead.
    event_ = event_new(loop.base(), fd_, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET,
                       &ProxyHeaderReader::onEvent, this);
}

ProxyHeaderReader::~ProxyHeaderReader() {
    cancel();
}

void ProxyHeaderReader::start() {
    if (event_ == nullptr) {
        finish(Outcome::Malformed, {}, "out of memory");
        return;
    }
    event_add(event_, nullptr);
    timer_.arm(timeout_);
    // The header often arrives with the connection itself.
    readHeader();
}

void ProxyHeaderReader::cancel() {
    timer_.cancel();
    if (event_ != nullptr) {
        event_free(event_);
        event_ = nullptr;
    }
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    done_ = nullptr;
}

void ProxyHeaderReader::onEvent(int, short what, void* arg) {
    event::LoopTimeScope time_scope;
    auto* self = static_cast<ProxyHeaderReader*>(arg);
    if ((what & EV_CLOSED) != 0) {
        self->peer_closed_ = true;
    }
    try {
        self->readHeader();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception while reading a PROXY protocol header");
        self->cancel();
    }
}

void ProxyHeaderReader::readHeader() {
    if (fd_ < 0) {
        return;
    }
    std::array<char, proxy_protocol::kMaxHeaderBytes> buffer;
    ssize_t n = 0;
    do {
        n = ::recv(fd_, buffer.data(), buffer.size(), MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        }
        finish(Outcome::Malformed, {}, "connection failed before the PROXY header");
        return;
    }
    const auto result =
        proxy_protocol::parse(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    if (result.status == proxy_protocol::Status::Error) {
        finish(Outcome::Malformed, {}, result.error);
        return;
    }
    if (result.status == proxy_protocol::Status::NeedMore) {
        if (n == 0 || peer_closed_) {
            finish(Outcome::Malformed, {}, "connection closed inside the PROXY header");
        }
        return;  // the next segment brings a new edge
    }
    // Take exactly the header off the socket; the peek showed those bytes are there.
    std::size_t left = result.consumed;
    while (left > 0) {
        const ssize_t got = ::recv(fd_, buffer.data(), left, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            finish(Outcome::Malformed, {}, "connection failed inside the PROXY header");
            return;
        }
        left -= static_cast<std::size_t>(got);
    }
    finish(Outcome::Ok, result.header, "");
}

void ProxyHeaderReader::finish(Outcome outcome, const proxy_protocol::Header& header,
                               const char* error) {
    timer_.cancel();
    if (event_ != nullptr) {
        event_free(event_);
        event_ = nullptr;
    }
    int fd = fd_;
    fd_ = -1;
    if (outcome != Outcome::Ok && fd >= 0) {
        ::close(fd);
        fd = -1;
    }
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) {
        done(*this, outcome, fd, header, error);
    }
}

}  // namespace strata::net
