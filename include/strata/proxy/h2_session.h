// The HTTP/2 codec's client side (RFC 9113), beside the HTTP/1 one in downstream_session.h.
// libnghttp2 does the framing, HPACK and flow control; this file maps its callbacks onto
// strata's request path. The DownstreamSession stays the connection's owner and hands the
// connection to an H2Session once ALPN chose h2 or a plain h2 listener saw the preface.
//
//   connection ─▶ H2Session (one nghttp2 server session) ─▶ H2Stream per request
//                                                              └─▶ Transaction (ClientStream)
//
// Memory per connection is bounded by the windows: a request body is buffered at most
// http2.window_bytes per stream (the stream's window is reopened only as the transaction takes
// data), a response at most the transaction's high watermark per stream (the stream's own
// buffer, not the connection's), and the connection's output stops taking frames above
// kOutputHighWater until the socket drains. A slow stream so pauses only its own upstream.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "strata/event/loop.h"
#include "strata/http/h2_mapping.h"
#include "strata/proxy/client_stream.h"
#include "strata/proxy/downstream_session.h"

struct evbuffer;
struct nghttp2_session;

namespace strata::proxy {

class H2Stream;
class Transaction;

class H2Session {
public:
    // `owner` owns the connection and this session; bytes read before the switch (the
    // preface on a plain listener) are still in the connection's input.
    explicit H2Session(DownstreamSession& owner);
    ~H2Session();
    H2Session(const H2Session&) = delete;
    H2Session& operator=(const H2Session&) = delete;

    // Sends the server preface (SETTINGS) and processes what is already buffered.
    void start();
    void onReadable();
    void onWritable();
    // Graceful: GOAWAY with the last stream id processed; open streams finish, then close.
    void drain();
    // The connection is going away: every stream ends now.
    void closeAll();
    bool idle() const { return streams_.empty(); }

private:
    friend class H2Stream;
    struct Callbacks;

    DownstreamSession& owner() { return owner_; }
    WorkerContext& worker() { return owner_.worker_; }
    // Hands nghttp2's pending frames to the connection and flushes it; closes when done.
    void send();
    // A connection error (an nghttp2 error code): GOAWAY if possible, then close.
    void fatal(int nghttp2_error);
    void maybeFinish();
    void scheduleTimer();
    void onTimer();
    void streamClosed(H2Stream* stream);
    // One client RST_STREAM against the http2.reset_burst/reset_rate bucket; false: too many.
    bool allowClientReset();

    DownstreamSession& owner_;
    nghttp2_session* session_ = nullptr;
    std::map<std::int32_t, H2Stream*> streams_;  // open streams (owned: deleted deferred)
    std::vector<std::int32_t> wake_;  // streams whose output drained below the low watermark
    event::Timer timer_;
    std::chrono::steady_clock::time_point idle_deadline_;
    std::chrono::steady_clock::time_point send_deadline_;
    double reset_tokens_ = 0;  // client resets still allowed now
    std::chrono::steady_clock::time_point reset_refilled_;
    bool in_recv_ = false;
    bool in_send_ = false;
    bool send_again_ = false;
    // A send callback refused a frame because the connection's output was full: once a flush
    // empties it, send again (a flush that drains at once brings no writable event).
    bool output_blocked_ = false;
    bool draining_ = false;
    bool finishing_ = false;  // nghttp2 is done: flush the output, then close
    bool closed_ = false;
};

// One request/response exchange on an HTTP/2 connection.
class H2Stream final : public event::DeferredDeletable, public ClientStream {
public:
    H2Stream(H2Session& session, std::int32_t id);
    ~H2Stream() override;

    std::int32_t id() const { return id_; }

    // ClientStream
    WorkerContext& worker() override { return worker_; }
    const std::string& clientAddress() const override;
    const net::SocketAddress& peerAddress() const override;
    const net::SocketAddress& localAddress() override;
    void setRealClient(std::string_view address) override { access_.client.assign(address); }
    const ListenerInfo& listener() const override;
    std::uint64_t connectionId() const override { return connection_id_; }
    const std::string& forwardSubjectHeader() const override;
    std::string clientSubject() const override;
    void sendInterim(const http::OutgoingResponse& head) override;
    void sendHead(const http::OutgoingResponse& head) override;
    void sendBody(std::string_view data) override;
    using ClientStream::sendBody;
    void sendBody(const cache::BodyPtr& body, std::uint64_t offset, std::uint64_t length) override;
    void flush() override;
    void endResponse() override;
    void sendError(int status, std::string_view detail, std::string_view cache_status) override;
    void abortResponse() override;
    std::size_t outputPending() const override;
    void pauseRequestBody() override { body_paused_ = true; }
    void resumeRequestBody() override;
    void setCacheResult(metrics::CacheResult result) override { access_.cache_result = result; }
    void logAccess(std::string_view method, std::string_view target, std::string_view host,
                   int version_minor, int status, std::uint64_t bytes, std::string_view referer,
                   std::string_view user_agent, std::string_view upstream, double upstream_s,
                   std::chrono::steady_clock::time_point started) override;
    std::string_view requestId() const override {
        return access_.adopted_request_id.empty() ? view(request_id_)
                                                  : std::string_view(access_.adopted_request_id);
    }
    void adoptRequestId(std::string_view id) override { access_.adopted_request_id.assign(id); }
    // RFC 8441: answers the extended CONNECT with 200, then bridges the stream's DATA to the
    // upstream's upgraded connection both ways.
    void startTunnel(const http::ResponseHead& upstream_head, std::string http1_head,
                     upstream::UpstreamConnectionPtr upstream,
                     std::chrono::milliseconds idle_timeout) override;

private:
    friend class H2Session;
    class Tunnel;
    friend struct H2Session::Callbacks;
    enum class State { ReadingHead, Running, Answered, Closed };

    // From the session's nghttp2 callbacks.
    void onHeader(std::string_view name, std::string_view value);
    void onHeadersEnd(bool end_stream);
    void onData(std::string_view data);
    void onRequestEnd();
    void onClosed(std::uint32_t error_code);
    // Answers locally (no transaction, or instead of it).
    void answer(int status, std::string_view detail, std::string_view cache_status);
    void submitHead(const http::OutgoingResponse& head, bool with_body);
    // HEADERS with `status` and `fields` (lowercase names), then DATA from buffer_ when
    // `with_body`.
    void submitResponse(std::string_view status, const std::vector<http::Field>& fields,
                        bool with_body);
    void reset(std::uint32_t error_code);
    void dropTransaction();
    void resumeData();
    // nghttp2's data provider: body bytes leave from buffer_ without a copy.
    long readData(std::size_t length, std::uint32_t* flags);
    void sendData(const std::uint8_t* frame_head, std::size_t length, std::size_t padding);
    void consumed(std::size_t length);
    // The tunnel broke (upstream error, idle timeout): the client learns it from a reset.
    void tunnelFailed(std::uint32_t error_code);

    H2Session* session_;  // null once the connection is gone
    WorkerContext& worker_;
    std::int32_t id_;
    std::uint64_t connection_id_;
    State state_ = State::ReadingHead;
    http::H2RequestBuilder builder_;
    std::unique_ptr<Transaction> transaction_;
    evbuffer* buffer_;  // response body bytes not yet framed
    bool head_sent_ = false;
    bool body_done_ = false;  // the last body byte is in buffer_
    bool deferred_ = false;   // nghttp2 waits for resumeData()
    bool request_complete_ = false;
    bool body_paused_ = false;
    bool reset_sent_ = false;
    std::size_t unconsumed_ = 0;  // request body bytes received but not yet taken
    std::uint64_t body_bytes_ = 0;
    // A stream with buffered output that nghttp2 cannot send (the client's window is shut)
    // is reset once this passes (limits.send_timeout); moved on by every DATA frame sent.
    std::chrono::steady_clock::time_point stall_deadline_;
    std::chrono::steady_clock::time_point head_deadline_;  // limits.client_header_timeout
    RequestIdGenerator::Id request_id_{};
    std::string_view route_name_;  // into the snapshot the transaction holds; empty: no route
    DownstreamSession::PendingAccess access_;
    bool access_pending_ = false;
    std::uint64_t framed_bytes_ = 0;  // HEADERS and DATA frames of this stream, as sent
    // An extended CONNECT (early_ is made for it alone): its DATA are tunnel bytes, held in
    // early_ (and the window kept shut) until the upstream's 101, then moved by tunnel_.
    bool isTunnelStream() const { return early_ != nullptr; }
    bool early_end_ = false;  // the client ended its side before the tunnel opened
    evbuffer* early_ = nullptr;
    std::unique_ptr<Tunnel> tunnel_;
};

}  // namespace strata::proxy
