// The byte tunnel an HTTP/1.1 connection becomes after a 101 (WebSocket, or an Upgrade token a
// route allows). Bytes are moved between the client's and the upstream's connection as they
// arrive; each side stops being read while the other side's output holds more than a high
// watermark, so memory per tunnel is bounded whatever the speed of either peer. A peer's EOF
// is passed on as a half-close; the tunnel ends when both directions have ended, on an error,
// or when no byte moved either way for the idle timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "strata/event/loop.h"
#include "strata/net/connection.h"
#include "strata/upstream/pool.h"

namespace strata::proxy {

class Tunnel final : private net::ConnectionCallbacks {
public:
    enum class End { Closed, Error, IdleTimeout };
    // `client` stays owned by the session, which forwards its callbacks here. `on_end` runs
    // once; the owner then closes the client connection and frees the tunnel later.
    Tunnel(event::Loop& loop, net::Connection& client, upstream::UpstreamConnectionPtr upstream,
           std::chrono::milliseconds idle_timeout, std::function<void(End)> on_end);
    ~Tunnel() override;
    Tunnel(const Tunnel&) = delete;
    Tunnel& operator=(const Tunnel&) = delete;

    // Moves what each side already buffered (bytes behind the 101, or pipelined by the client).
    void start();
    void onClientReadable();
    void onClientWritable();
    void onClientError() { end(End::Error); }
    // Closes the upstream side now (the owner is closing); no on_end.
    void close();

    std::uint64_t bytesUp() const { return up_; }
    std::uint64_t bytesDown() const { return down_; }

private:
    // net::ConnectionCallbacks, for the upstream connection.
    void onReadable() override;
    void onWritable() override;
    void onConnected(bool) override {}
    void onError() override { end(End::Error); }

    // Moves src's input to dst's output until src is drained or dst is full.
    void pump(net::Connection& src, net::Connection& dst, std::uint64_t& count, bool& passed_eof);
    void checkDone();
    void end(End how);

    net::Connection& client_;
    upstream::UpstreamConnectionPtr upstream_;
    event::Timer timer_;
    std::chrono::milliseconds idle_timeout_;
    std::function<void(End)> on_end_;
    std::uint64_t up_ = 0;
    std::uint64_t down_ = 0;
    bool client_eof_passed_ = false;
    bool upstream_eof_passed_ = false;
    bool ended_ = false;
};

}  // namespace strata::proxy
