#include "strata/proxy/tunnel.h"

#include <event2/buffer.h>

namespace strata::proxy {
namespace {

// A side is not read while the other side's output holds this much; reading resumes once it
// drained to the low watermark. With the 64 KiB input limit this bounds a tunnel's buffers.
constexpr std::size_t kHighWater = 256 * 1024;
constexpr std::size_t kLowWater = 64 * 1024;
constexpr std::size_t kInputLimit = 64 * 1024;

}  // namespace

Tunnel::Tunnel(event::Loop& loop, net::Connection& client, upstream::UpstreamConnectionPtr upstream,
               std::chrono::milliseconds idle_timeout, std::function<void(End)> on_end)
    : client_(client),
      upstream_(std::move(upstream)),
      timer_(
          loop, [this] { end(End::IdleTimeout); }, [this] { end(End::Error); }),
      idle_timeout_(idle_timeout),
      on_end_(std::move(on_end)) {}

Tunnel::~Tunnel() {
    close();
}

void Tunnel::close() {
    ended_ = true;
    timer_.cancel();
    if (upstream_) {
        upstream_->connection().setCallbacks(nullptr);
        upstream_->connection().close();
    }
}

void Tunnel::start() {
    net::Connection& up = upstream_->connection();
    up.setCallbacks(this);
    up.setInputLimit(kInputLimit);
    up.setOutputLowWater(kLowWater);
    client_.setInputLimit(kInputLimit);
    client_.setOutputLowWater(kLowWater);
    timer_.arm(idle_timeout_);
    if (client_.readingPaused()) {
        client_.resumeReading();
    }
    pump(client_, up, up_, client_eof_passed_);
    if (!ended_) {
        pump(up, client_, down_, upstream_eof_passed_);
    }
}

void Tunnel::onClientReadable() {
    pump(client_, upstream_->connection(), up_, client_eof_passed_);
}

void Tunnel::onReadable() {
    pump(upstream_->connection(), client_, down_, upstream_eof_passed_);
}

void Tunnel::onClientWritable() {
    // The client took bytes: read the upstream again.
    net::Connection& up = upstream_->connection();
    if (up.readingPaused()) {
        up.resumeReading();
    }
    pump(up, client_, down_, upstream_eof_passed_);
}

void Tunnel::onWritable() {
    if (client_.readingPaused()) {
        client_.resumeReading();
    }
    pump(client_, upstream_->connection(), up_, client_eof_passed_);
}

void Tunnel::pump(net::Connection& src, net::Connection& dst, std::uint64_t& count,
                  bool& passed_eof) {
    if (ended_) {
        return;
    }
    evbuffer* in = src.input();
    for (;;) {
        const std::size_t n = evbuffer_get_length(in);
        if (n > 0) {
            count += n;
            evbuffer_add_buffer(dst.output(), in);
            dst.flush();
            if (ended_) {
                return;  // the flush failed and ended the tunnel
            }
            if (dst.failed()) {
                return end(End::Error);
            }
            timer_.arm(idle_timeout_);  // lazily kept: cheap on every read
        }
        if (dst.outputLength() >= kHighWater) {
            src.pauseReading();  // the kernel's window now throttles the sender
            break;
        }
        if (!src.readMore()) {
            break;
        }
    }
    if (src.failed()) {
        return end(End::Error);
    }
    if (src.peerClosed() && !passed_eof && evbuffer_get_length(in) == 0) {
        passed_eof = true;
        dst.shutdownWrite();  // sent once dst's queued output has left
        dst.setOutputLowWater(0);
    }
    checkDone();
}

void Tunnel::checkDone() {
    if (!ended_ && client_eof_passed_ && upstream_eof_passed_ && client_.outputLength() == 0 &&
        upstream_->connection().outputLength() == 0) {
        end(End::Closed);
    }
}

void Tunnel::end(End how) {
    if (ended_) {
        return;
    }
    ended_ = true;
    timer_.cancel();
    if (on_end_) {
        auto done = std::move(on_end_);
        on_end_ = nullptr;
        done(how);
    }
}

}  // namespace strata::proxy
