#include "strata/proxy/h2_session.h"

#include <algorithm>
#include <iterator>
#include <nghttp2/nghttp2.h>
#include <vector>

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "strata/common/assert.h"
#include "strata/common/log.h"
#include "strata/http/message.h"
#include "strata/net/connection.h"
#include "strata/proxy/real_client.h"
#include "strata/proxy/transaction.h"
#include "strata/proxy/upgrade.h"

#include "client_limits.h"

namespace strata::proxy {
namespace {

// A response's header block for nghttp2: :status, then the fields; it points into both.
std::vector<nghttp2_nv> responseHeaderBlock(std::string_view status,
                                            const std::vector<http::Field>& fields) {
    std::vector<nghttp2_nv> nv;
    nv.reserve(fields.size() + 1);
    auto add = [&nv](std::string_view name, std::string_view value) {
        nv.push_back(nghttp2_nv{
            const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(name.data())),
            const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(value.data())),
            name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
    };
    add(":status", status);
    for (const auto& field : fields) {
        add(field.name, field.value);
    }
    return nv;
}

// The connection's output takes no more frames above this until the socket drains: with the
// client's windows (up to 2 GiB each) as the only other bound, a client that stops reading
// could otherwise pile every stream's body into it.
constexpr std::size_t kOutputHighWater = 64 * 1024;
constexpr std::size_t kOutputLowWater = 16 * 1024;
// A stream's upstream is resumed once its own buffer drains below this (the transaction stops
// reading the upstream above its high watermark, 256 KiB).
constexpr std::size_t kStreamLowWater = 64 * 1024;
constexpr auto kNever = std::chrono::steady_clock::time_point::max();
// A tunnel stops reading its upstream while the stream's buffer holds this much, and holds the
// client's window shut while the upstream's output does; 64 KiB reads in between.
constexpr std::size_t kTunnelHighWater = 256 * 1024;
constexpr std::size_t kTunnelInputLimit = 64 * 1024;

const config::Config& config(WorkerContext& worker) {
    return *worker.snapshot->config;
}

// RFC 6455 4.1: the nonce strata sends upstream for a client that spoke RFC 8441, which has
// none. Only the upstream sees it; the client's stream never carries an Accept.
std::string webSocketNonce() {
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
        std::fill(std::begin(bytes), std::end(bytes), 0);  // a nonce, not a secret
    }
    unsigned char encoded[25];  // 24 base64 characters and EVP_EncodeBlock's NUL
    const int n = EVP_EncodeBlock(encoded, bytes, sizeof bytes);
    return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
}

}  // namespace

// ---- RFC 8441 tunnel --------------------------------------------------------------------------

// The upstream side of a WebSocket stream: bytes from the client's DATA go to the upgraded
// connection, bytes from it go out as DATA, each side throttled by the other's buffer (the
// stream's window towards the client, reading paused towards the upstream). An EOF from the
// upstream ends the stream's DATA (END_STREAM), the client's END_STREAM half-closes the
// upstream; nghttp2 closes the stream once both ended.
class H2Stream::Tunnel final : private net::ConnectionCallbacks {
public:
    Tunnel(H2Stream& stream, upstream::UpstreamConnectionPtr upstream,
           std::chrono::milliseconds idle_timeout)
        : stream_(stream),
          upstream_(std::move(upstream)),
          idle_timeout_(idle_timeout),
          timer_(
              stream.worker_.loop, [this] { idle(); },
              [this] { stream_.tunnelFailed(NGHTTP2_INTERNAL_ERROR); }) {}
    ~Tunnel() override { finish(); }
    Tunnel(const Tunnel&) = delete;
    Tunnel& operator=(const Tunnel&) = delete;

    void start() {
        net::Connection& up = upstream_->connection();
        up.setCallbacks(this);
        up.setInputLimit(kTunnelInputLimit);
        timer_.arm(idle_timeout_);
        // What the client sent behind its CONNECT waited for the 101.
        if (evbuffer_get_length(stream_.early_) > 0) {
            up_ += evbuffer_get_length(stream_.early_);
            evbuffer_add_buffer(up.output(), stream_.early_);
            up.flush();
        }
        pumpDown();
    }

    // The client's DATA; false when the upstream's output is full (keep the window shut).
    bool fromClient(std::string_view data) {
        if (finished_) {
            return true;
        }
        net::Connection& up = upstream_->connection();
        up_ += data.size();
        evbuffer_add(up.output(), data.data(), data.size());
        up.flush();
        timer_.arm(idle_timeout_);
        return up.outputLength() < kTunnelHighWater;
    }
    void clientEnded() {
        if (!finished_ && !client_ended_) {
            client_ended_ = true;
            upstream_->connection().shutdownWrite();  // once its queued output has left
        }
    }
    // The stream's buffer drained: read the upstream again.
    void onClientWritable() {
        if (finished_) {
            return;
        }
        net::Connection& up = upstream_->connection();
        if (up.readingPaused()) {
            up.resumeReading();
        }
        pumpDown();
    }
    // The stream closed (both sides ended, a reset, the connection went): counts, closes.
    void finish() {
        if (finished_) {
            return;
        }
        finished_ = true;
        timer_.cancel();
        if (stream_.worker_.metrics != nullptr) {
            stream_.worker_.metrics->tunnelClosed(up_, down_);
        }
        stream_.access_.tunnel = true;
        stream_.access_.tunnel_up = up_;
        stream_.access_.tunnel_down = down_;
        stream_.access_.bytes = down_;
        upstream_->connection().setCallbacks(nullptr);
        upstream_->connection().close();
    }

private:
    // net::ConnectionCallbacks, for the upstream connection.
    void onReadable() override { pumpDown(); }
    void onWritable() override {
        if (!finished_ && upstream_->connection().outputLength() < kTunnelHighWater) {
            stream_.resumeRequestBody();  // reopens the client's window for what it held
        }
    }
    void onConnected(bool) override {}
    void onError() override { stream_.tunnelFailed(NGHTTP2_CONNECT_ERROR); }

    void idle() {
        LOG_DEBUG("[c%llu] h2 stream %d tunnel idle timeout",
                  static_cast<unsigned long long>(stream_.connection_id_), stream_.id_);
        stream_.tunnelFailed(NGHTTP2_CANCEL);
    }

    void pumpDown() {
        if (finished_) {
            return;
        }
        net::Connection& up = upstream_->connection();
        evbuffer* in = up.input();
        for (;;) {
            const std::size_t n = evbuffer_get_length(in);
            if (n > 0) {
                down_ += n;
                evbuffer_add_buffer(stream_.buffer_, in);
                stream_.resumeData();
                timer_.arm(idle_timeout_);
            }
            if (evbuffer_get_length(stream_.buffer_) >= kTunnelHighWater) {
                up.pauseReading();  // onClientWritable() resumes it
                break;
            }
            if (!up.readMore()) {
                break;
            }
        }
        if (up.failed()) {
            stream_.tunnelFailed(NGHTTP2_CONNECT_ERROR);
            return;
        }
        if (up.peerClosed() && evbuffer_get_length(in) == 0 && !stream_.body_done_) {
            stream_.body_done_ = true;  // END_STREAM behind the last byte
            stream_.resumeData();
        }
        stream_.flush();
    }

    H2Stream& stream_;
    upstream::UpstreamConnectionPtr upstream_;
    std::chrono::milliseconds idle_timeout_;
    event::Timer timer_;
    std::uint64_t up_ = 0;
    std::uint64_t down_ = 0;
    bool client_ended_ = false;
    bool finished_ = false;
};

// ---- nghttp2 callbacks ------------------------------------------------------------------------

struct H2Session::Callbacks {
    static H2Session& self(void* user) { return *static_cast<H2Session*>(user); }
    static H2Stream* stream(nghttp2_session* session, std::int32_t id) {
        return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, id));
    }

    static ssize_t send(nghttp2_session*, const std::uint8_t* data, std::size_t length, int,
                        void* user) {
        H2Session& h = self(user);
        evbuffer* out = h.owner_.connection_.output();
        if (evbuffer_get_length(out) >= kOutputHighWater) {
            h.output_blocked_ = true;  // send() or onWritable() sends again
            return NGHTTP2_ERR_WOULDBLOCK;
        }
        evbuffer_add(out, data, length);
        return static_cast<ssize_t>(length);
    }

    static int sendData(nghttp2_session*, nghttp2_frame* frame, const std::uint8_t* frame_head,
                        std::size_t length, nghttp2_data_source* source, void* user) {
        H2Session& h = self(user);
        if (evbuffer_get_length(h.owner_.connection_.output()) >= kOutputHighWater) {
            h.output_blocked_ = true;
            return NGHTTP2_ERR_WOULDBLOCK;
        }
        static_cast<H2Stream*>(source->ptr)->sendData(frame_head, length, frame->data.padlen);
        return 0;
    }

    static ssize_t readData(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t length,
                            std::uint32_t* flags, nghttp2_data_source* source, void*) {
        return static_cast<H2Stream*>(source->ptr)->readData(length, flags);
    }

    static int beginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        H2Session& h = self(user);
        if (h.closed_ || frame->hd.type != NGHTTP2_HEADERS ||
            frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            return 0;
        }
        if (auto* m = h.worker().metrics) {
            m->http2(metrics::H2Event::StreamOpened);
        }
        auto* st = new H2Stream(h, frame->hd.stream_id);
        nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, st);
        h.streams_[frame->hd.stream_id] = st;
        h.idle_deadline_ = kNever;
        return 0;
    }

    static int header(nghttp2_session* session, const nghttp2_frame* frame,
                      const std::uint8_t* name, std::size_t name_length, const std::uint8_t* value,
                      std::size_t value_length, std::uint8_t, void* user) {
        if (self(user).closed_ || frame->hd.type != NGHTTP2_HEADERS ||
            frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
            return 0;  // trailers are not forwarded (nor are they in HTTP/1.1)
        }
        H2Stream* st = stream(session, frame->hd.stream_id);
        if (st == nullptr) {
            return 0;
        }
        if (!st->builder_.add(
                std::string_view(reinterpret_cast<const char*>(name), name_length),
                std::string_view(reinterpret_cast<const char*>(value), value_length)) &&
            st->builder_.error() == http::H2RequestBuilder::Error::Malformed) {
            // RFC 9113 8.1.1: a malformed request is a stream error, never forwarded.
            LOG_DEBUG("[c%llu] h2 stream %d malformed: %s",
                      static_cast<unsigned long long>(st->connection_id_), st->id_,
                      st->builder_.detail().c_str());
            st->reset_sent_ = true;
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                      NGHTTP2_PROTOCOL_ERROR);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return 0;  // too large or unsupported: answered when the block ends
    }

    static int frameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        if (self(user).closed_) {
            return 0;
        }
        if (frame->hd.type == NGHTTP2_RST_STREAM) {
            if (auto* m = self(user).worker().metrics) {
                m->http2(metrics::H2Event::ClientReset);
            }
            if (!self(user).allowClientReset()) {
                // Rapid reset (CVE-2023-44487): ENHANCE_YOUR_CALM, as RFC 9113 5.4.1 and 7
                // say for a peer generating excessive load; open streams still finish.
                nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
                return 0;
            }
        }
        H2Stream* st = stream(session, frame->hd.stream_id);
        if (st == nullptr) {
            return 0;
        }
        const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            st->onHeadersEnd(end_stream);
        } else if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                   end_stream) {
            st->onRequestEnd();
        }
        return 0;
    }

    static int dataChunk(nghttp2_session* session, std::uint8_t, std::int32_t id,
                         const std::uint8_t* data, std::size_t length, void* user) {
        // The connection's window is reopened at once: a paused stream holds back only its own
        // window, never the other streams'.
        nghttp2_session_consume_connection(session, length);
        H2Stream* st = self(user).closed_ ? nullptr : stream(session, id);
        if (st == nullptr) {
            return 0;
        }
        st->onData(std::string_view(reinterpret_cast<const char*>(data), length));
        return 0;
    }

    static int streamClose(nghttp2_session* session, std::int32_t id, std::uint32_t error_code,
                           void* user) {
        H2Session& h = self(user);
        H2Stream* st = h.closed_ ? nullptr : stream(session, id);
        if (st != nullptr) {
            st->onClosed(error_code);
            h.streamClosed(st);
        }
        return 0;
    }

    static int frameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
        H2Session& h = self(user);
        if (auto* m = h.worker().metrics; m != nullptr) {
            if (frame->hd.type == NGHTTP2_GOAWAY) {
                const std::uint32_t code = frame->goaway.error_code;
                m->http2Goaway(code == NGHTTP2_NO_ERROR         ? metrics::H2Goaway::NoError
                               : code == NGHTTP2_PROTOCOL_ERROR ? metrics::H2Goaway::ProtocolError
                               : code == NGHTTP2_INTERNAL_ERROR ? metrics::H2Goaway::InternalError
                               : code == NGHTTP2_FLOW_CONTROL_ERROR ? metrics::H2Goaway::FlowControl
                               : code == NGHTTP2_ENHANCE_YOUR_CALM
                                   ? metrics::H2Goaway::EnhanceYourCalm
                                   : metrics::H2Goaway::Other);
            } else if (frame->hd.type == NGHTTP2_RST_STREAM &&
                       frame->rst_stream.error_code != NGHTTP2_NO_ERROR) {
                const std::uint32_t code = frame->rst_stream.error_code;
                m->http2(code == NGHTTP2_REFUSED_STREAM   ? metrics::H2Event::RefusedStream
                         : code == NGHTTP2_PROTOCOL_ERROR ? metrics::H2Event::ProtocolError
                                                          : metrics::H2Event::OtherReset);
            }
        }
        if (frame->hd.type == NGHTTP2_GOAWAY) {
            LOG_DEBUG("[w%u][c%llu] h2 GOAWAY sent: %s", h.worker().id,
                      static_cast<unsigned long long>(h.owner_.id_),
                      nghttp2_http2_strerror(frame->goaway.error_code));
            return 0;
        }
        if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) {
            return 0;
        }
        H2Stream* st = h.closed_ ? nullptr : stream(session, frame->hd.stream_id);
        if (st != nullptr && frame->hd.type == NGHTTP2_HEADERS) {
            st->framed_bytes_ += 9 + frame->hd.length;  // DATA is counted in sendData()
        }
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
            return 0;
        }
        if (st != nullptr && !st->request_complete_ && !st->reset_sent_ && !st->tunnel_) {
            // The answer is complete but the request body is not (an early error answer):
            // RFC 9113 8.1 lets the server end the stream without reading the rest. A tunnel's
            // END_STREAM is a half-close: the client's direction goes on.
            st->reset_sent_ = true;
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                      NGHTTP2_NO_ERROR);
        }
        return 0;
    }
};

// ---- H2Stream ---------------------------------------------------------------------------------

H2Stream::H2Stream(H2Session& session, std::int32_t id)
    : session_(&session),
      worker_(session.worker()),
      id_(id),
      connection_id_(session.owner_.id_),
      builder_(config(worker_).limits.max_header_bytes, config(worker_).limits.max_headers),
      buffer_(evbuffer_new()),
      stall_deadline_(kNever),
      head_deadline_(event::loopTime() + config(worker_).limits.client_header_timeout) {
    access_.version_major = 2;
    access_.version_minor = 0;
    request_id_ = worker_.request_ids.next();
}

H2Stream::~H2Stream() {
    // The transaction was aborted or finished before: its destructor does not touch us.
    transaction_.reset();
    tunnel_.reset();
    evbuffer_free(buffer_);
    if (early_ != nullptr) {
        evbuffer_free(early_);
    }
}

const std::string& H2Stream::clientAddress() const {
    static const std::string kNone;
    return session_ != nullptr ? session_->owner_.client_address_ : kNone;
}

const net::SocketAddress& H2Stream::peerAddress() const {
    return session_ != nullptr ? session_->owner_.peer_ : noAddress();
}

const net::SocketAddress& H2Stream::localAddress() {
    return session_ != nullptr ? session_->owner_.localAddress() : noAddress();
}

const ListenerInfo& H2Stream::listener() const {
    static const ListenerInfo kNone;
    return session_ != nullptr ? session_->owner_.listener_ : kNone;
}

const std::string& H2Stream::forwardSubjectHeader() const {
    static const std::string kNone;
    return session_ != nullptr ? session_->owner_.forwardSubjectHeader() : kNone;
}

std::string H2Stream::clientSubject() const {
    return session_ != nullptr ? session_->owner_.clientSubject() : std::string();
}

void H2Stream::onHeadersEnd(bool end_stream) {
    head_deadline_ = kNever;
    request_complete_ = end_stream;
    http::RequestHead head;
    if (builder_.error() != http::H2RequestBuilder::Error::None ||
        !builder_.finish(end_stream, head)) {
        switch (builder_.error()) {
            case http::H2RequestBuilder::Error::HeadersTooLarge:
                logAccess("-", "-", {}, 0, 431, 0, {}, {}, {}, -1, event::loopTime());
                answer(431, builder_.detail(), "strata; fwd=bypass");
                return;
            case http::H2RequestBuilder::Error::Unsupported:
                logAccess("-", "-", {}, 0, 501, 0, {}, {}, {}, -1, event::loopTime());
                answer(501, builder_.detail(), "strata; fwd=bypass");
                return;
            default:
                LOG_DEBUG("[c%llu] h2 stream %d malformed: %s",
                          static_cast<unsigned long long>(connection_id_), id_,
                          builder_.detail().c_str());
                reset(NGHTTP2_PROTOCOL_ERROR);
                return;
        }
    }
    const auto started = event::loopTime();
    const auto& limits = config(worker_).limits;
    // The same rule for '_' in field names as HTTP/1's parser applies (issue #10 item 9).
    const http::UnderscoreResult underscore =
        http::applyUnderscorePolicy(head.fields, underscoreMode(limits));
    if (underscore.refused != nullptr) {
        if (worker_.metrics != nullptr) {
            worker_.metrics->underscoreFields(metrics::UnderscoreAction::Rejected);
        }
        logAccess(head.method, head.target, head.host, 0, 400, 0, {}, {}, {}, -1, started);
        answer(400, underscore.refused, "strata; fwd=bypass");
        return;
    }
    if (underscore.dropped > 0 && worker_.metrics != nullptr) {
        worker_.metrics->underscoreFields(metrics::UnderscoreAction::Dropped, underscore.dropped);
    }
    if (head.framing == http::BodyFraming::Length &&
        head.content_length > limits.max_request_body_bytes) {
        logAccess(head.method, head.target, head.host, 0, 413, 0, {}, {}, {}, -1, started);
        answer(413, "request body too large", "strata; fwd=bypass");
        return;
    }
    SnapshotPtr snapshot = worker_.snapshot;
    const net::SocketAddress client = requestClient(
        peerAddress(), head.fields,
        snapshot->any_trusted_proxies ? snapshot->listenerConfig(listener().name) : nullptr);
    int route = snapshot->router.match(routeRequest(head, listener().name, &client));
    if (route < 0) {
        logAccess(head.method, head.target, head.host, 0, 404, 0, {}, {}, {}, -1, started);
        answer(404, "no route", "strata; fwd=bypass");
        return;
    }
    access_.route_slot = snapshot->route(route).metric_slot;
    route_name_ = snapshot->route(route).name;
    UpgradeDecision upgrade;
    if (head.extended_connect) {
        early_ = evbuffer_new();
        head.fields.add("sec-websocket-key", webSocketNonce());
        upgrade = classifyUpgrade(head, *snapshot->route(route).config);
        if (upgrade.verdict != UpgradeDecision::Verdict::Tunnel) {
            const bool refused = upgrade.verdict == UpgradeDecision::Verdict::Refused;
            if (worker_.metrics != nullptr) {
                worker_.metrics->tunnel(access_.route_slot, refused
                                                                ? metrics::TunnelResult::Refused
                                                                : metrics::TunnelResult::Invalid);
            }
            const int status = refused ? 403 : 400;
            logAccess(head.method, head.target, head.host, 0, status, 0, {}, {}, {}, -1, started);
            answer(status, upgrade.detail.empty() ? "not a WebSocket handshake" : upgrade.detail,
                   "strata; fwd=bypass");
            return;
        }
    }
    state_ = State::Running;
    transaction_ =
        std::make_unique<Transaction>(*this, std::move(snapshot), route, std::move(head));
    if (upgrade.verdict == UpgradeDecision::Verdict::Tunnel) {
        transaction_->setUpgrade(std::move(upgrade.protocol));
    }
    transaction_->start();
    if (end_stream && transaction_) {
        transaction_->onClientBodyComplete();
    }
}

void H2Stream::onData(std::string_view data) {
    if (isTunnelStream()) {
        // Tunnel bytes, not a body: no body limit; the stream's window bounds what waits.
        if (tunnel_) {
            if (tunnel_->fromClient(data) && !body_paused_) {
                consumed(data.size());
            } else {
                body_paused_ = true;
                unconsumed_ += data.size();
            }
        } else if (transaction_) {
            evbuffer_add(early_, data.data(), data.size());  // until the 101
            unconsumed_ += data.size();
        } else {
            consumed(data.size());  // answered without a tunnel: dropped
        }
        return;
    }
    body_bytes_ += data.size();
    if (body_bytes_ > config(worker_).limits.max_request_body_bytes && !reset_sent_) {
        if (transaction_ && !transaction_->canSendError()) {
            reset(NGHTTP2_CANCEL);
        } else if (state_ != State::Answered) {
            logAccess("-", "-", {}, 0, 413, 0, {}, {}, {}, -1, event::loopTime());
            answer(413, "request body too large", "strata; fwd=bypass");
        }
    }
    if (!transaction_) {
        consumed(data.size());  // answered locally: the body is read and dropped
        return;
    }
    transaction_->onClientBody(data);
    if (transaction_ && !transaction_->wantsMoreBody()) {
        body_paused_ = true;
    }
    if (body_paused_ && transaction_) {
        // The stream's window stays shut until the upstream takes what it has.
        unconsumed_ += data.size();
    } else {
        consumed(data.size());
    }
}

void H2Stream::consumed(std::size_t length) {
    if (session_ != nullptr && length > 0) {
        nghttp2_session_consume_stream(session_->session_, id_, length);
    }
}

void H2Stream::resumeRequestBody() {
    body_paused_ = false;
    if (unconsumed_ > 0 && session_ != nullptr) {
        consumed(unconsumed_);
        unconsumed_ = 0;
        session_->send();
    }
}

void H2Stream::onRequestEnd() {
    request_complete_ = true;
    if (isTunnelStream()) {
        if (tunnel_) {
            tunnel_->clientEnded();
        } else {
            early_end_ = true;
        }
        return;
    }
    if (transaction_) {
        transaction_->onClientBodyComplete();
    }
}

void H2Stream::onClosed(std::uint32_t error_code) {
    if (error_code != NGHTTP2_NO_ERROR && !reset_sent_) {
        LOG_DEBUG("[c%llu] h2 stream %d reset by the client: %s",
                  static_cast<unsigned long long>(connection_id_), id_,
                  nghttp2_http2_strerror(error_code));
    }
    state_ = State::Closed;
    dropTransaction();  // the client reset the stream or the connection ended
    if (tunnel_) {
        tunnel_->finish();
    }
    if (access_pending_ && session_ != nullptr) {
        access_pending_ = false;
        access_.sent_bytes = framed_bytes_;
        session_->owner_.writeAccess(access_);
    }
}

void H2Stream::dropTransaction() {
    if (transaction_) {
        transaction_->abort();  // a no-op once it finished; then it never touches us again
        worker_.loop.deferredDelete(event::deferrable(std::move(transaction_)));
    }
}

void H2Stream::reset(std::uint32_t error_code) {
    dropTransaction();
    if (session_ != nullptr && !reset_sent_ && state_ != State::Closed) {
        reset_sent_ = true;
        nghttp2_submit_rst_stream(session_->session_, NGHTTP2_FLAG_NONE, id_, error_code);
        session_->send();
    }
}

void H2Stream::submitHead(const http::OutgoingResponse& head, bool with_body) {
    if (session_ == nullptr || state_ == State::Closed) {
        return;
    }
    std::vector<http::Field> fields;
    fields.reserve(16);
    http::h2ResponseFields(head, fields);
    submitResponse(std::to_string(head.status), fields, with_body);
}

void H2Stream::submitResponse(std::string_view status, const std::vector<http::Field>& fields,
                              bool with_body) {
    const std::vector<nghttp2_nv> nv = responseHeaderBlock(status, fields);
    nghttp2_data_provider provider;
    provider.source.ptr = this;
    provider.read_callback = &H2Session::Callbacks::readData;
    head_sent_ = true;
    stall_deadline_ = event::loopTime() + config(worker_).limits.send_timeout;
    nghttp2_submit_response(session_->session_, id_, nv.data(), nv.size(),
                            with_body ? &provider : nullptr);
}

void H2Stream::startTunnel(const http::ResponseHead& upstream_head, std::string /*http1_head*/,
                           upstream::UpstreamConnectionPtr upstream,
                           std::chrono::milliseconds idle_timeout) {
    dropTransaction();  // finished: it touches nothing after this call
    if (session_ == nullptr || state_ == State::Closed) {
        return;  // the upstream connection closes with `upstream`
    }
    if (worker_.metrics != nullptr) {
        worker_.metrics->tunnel(access_.route_slot, metrics::TunnelResult::Opened);
    }
    // RFC 8441 5: a 2xx opens the tunnel. What the upstream chose of the client's offer
    // (subprotocol, extensions) is the client's to know; the rest of the 101 is HTTP/1's.
    std::vector<http::Field> fields;
    for (const char* name : {"sec-websocket-protocol", "sec-websocket-extensions"}) {
        if (const std::string* value = upstream_head.fields.get(name)) {
            fields.push_back(http::Field{name, *value});
        }
    }
    state_ = State::Answered;
    access_.status = 200;  // what the client saw (the upstream's 101 is HTTP/1.1's)
    submitResponse("200", fields, /*with_body=*/true);
    tunnel_ = std::make_unique<Tunnel>(*this, std::move(upstream), idle_timeout);
    tunnel_->start();
    // The early bytes went upstream: the client's window reopens for them.
    resumeRequestBody();
    if (early_end_) {
        tunnel_->clientEnded();
    }
    flush();
}

void H2Stream::tunnelFailed(std::uint32_t error_code) {
    tunnel_->finish();
    reset(error_code);
}

void H2Stream::sendInterim(const http::OutgoingResponse& head) {
    if (session_ == nullptr || state_ == State::Closed || head_sent_) {
        return;
    }
    std::vector<http::Field> fields;
    http::h2ResponseFields(head, fields);
    const std::string status = std::to_string(head.status);
    const std::vector<nghttp2_nv> nv = responseHeaderBlock(status, fields);
    // A HEADERS frame without END_STREAM and before the response's: an interim answer
    // (RFC 9113 8.1).
    nghttp2_submit_headers(session_->session_, NGHTTP2_FLAG_NONE, id_, nullptr, nv.data(),
                           nv.size(), nullptr);
    session_->send();
}

void H2Stream::sendHead(const http::OutgoingResponse& head) {
    const bool with_body = !head.head_only && head.body != http::ResponseBody::None &&
                           !(head.body == http::ResponseBody::Length && head.content_length == 0);
    if (!with_body) {
        body_done_ = true;  // HEADERS carries END_STREAM; later body calls are dropped
    }
    submitHead(head, with_body);
    if (!with_body) {
        evbuffer_drain(buffer_, evbuffer_get_length(buffer_));
    }
}

void H2Stream::sendBody(std::string_view data) {
    if (body_done_ || data.empty()) {
        return;
    }
    evbuffer_add(buffer_, data.data(), data.size());
    resumeData();
}

void H2Stream::sendBody(const cache::BodyPtr& body, std::uint64_t offset, std::uint64_t length) {
    STRATA_ASSERT(offset <= body->size() && length <= body->size() - offset);  // the planner's
    if (body_done_ || length == 0) {
        return;
    }
    // The evbuffer holds a reference to the stored body until its last DATA frame is out:
    // sendData() moves the slice's chain into DATA frames by reference.
    evbuffer_add_reference(buffer_, body->data() + offset, static_cast<std::size_t>(length),
                           &cache::releaseBody, cache::retainBody(body));
    resumeData();
}

void H2Stream::resumeData() {
    if (deferred_ && session_ != nullptr) {
        deferred_ = false;
        nghttp2_session_resume_data(session_->session_, id_);
    }
}

void H2Stream::flush() {
    if (session_ != nullptr) {
        session_->send();
    }
}

void H2Stream::endResponse() {
    body_done_ = true;
    state_ = state_ == State::Closed ? State::Closed : State::Answered;
    resumeData();
    dropTransaction();
    flush();
}

void H2Stream::sendError(int status, std::string_view detail, std::string_view cache_status) {
    answer(status, detail, cache_status);
}

void H2Stream::abortResponse() {
    // Part of the answer went out: only the stream ending abnormally tells the client.
    reset(NGHTTP2_INTERNAL_ERROR);
}

void H2Stream::answer(int status, std::string_view detail, std::string_view cache_status) {
    LOG_DEBUG("[c%llu] h2 stream %d answered %d: %.*s",
              static_cast<unsigned long long>(connection_id_), id_, status,
              static_cast<int>(detail.size()), detail.data());
    const http::ErrorAnswer error(status, cache_status);
    submitHead(error.head(),
               true);  // before the transaction goes: `cache_status` may point into it
    dropTransaction();
    state_ = state_ == State::Closed ? State::Closed : State::Answered;
    evbuffer_add(buffer_, error.body().data(), error.body().size());
    body_done_ = true;
    if (access_pending_) {
        access_.bytes = error.body().size();
    }
    resumeData();
    flush();
}

std::size_t H2Stream::outputPending() const {
    return evbuffer_get_length(buffer_);
}

long H2Stream::readData(std::size_t length, std::uint32_t* flags) {
    const std::size_t available = evbuffer_get_length(buffer_);
    if (available == 0) {
        if (body_done_) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        deferred_ = true;  // resumeData() once the transaction sends more
        return NGHTTP2_ERR_DEFERRED;
    }
    const std::size_t n = std::min(length, available);
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (body_done_ && n == available) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<long>(n);
}

void H2Stream::sendData(const std::uint8_t* frame_head, std::size_t length, std::size_t padding) {
    evbuffer* out = session_->owner_.connection_.output();
    framed_bytes_ += 9 + length + padding;
    evbuffer_add(out, frame_head, 9);
    if (padding > 0) {
        const auto pad_length = static_cast<std::uint8_t>(padding - 1);
        evbuffer_add(out, &pad_length, 1);
    }
    const std::size_t before = evbuffer_get_length(buffer_);
    // Moves whole chains (a stored body's reference among them) where the frame ends on one.
    evbuffer_remove_buffer(buffer_, out, length);
    if (padding > 1) {
        static constexpr std::uint8_t kZeros[256] = {};
        evbuffer_add(out, kZeros, padding - 1);
    }
    stall_deadline_ = event::loopTime() + config(worker_).limits.send_timeout;
    const std::size_t after = evbuffer_get_length(buffer_);
    if ((transaction_ || tunnel_) && before >= kStreamLowWater && after < kStreamLowWater) {
        session_->wake_.push_back(id_);
    }
}

void H2Stream::logAccess(std::string_view method, std::string_view target, std::string_view host,
                         int, int status, std::uint64_t bytes, std::string_view referer,
                         std::string_view user_agent, std::string_view upstream, double upstream_s,
                         std::chrono::steady_clock::time_point started) {
    // Written when the stream closes, once its last frame went to the connection. The route
    // slot, cache result and version were set on access_ already; recordAccess() keeps them.
    const bool logged = worker_.access_log.enabled();
    DownstreamSession::recordAccess(access_, logged, method, target, host, 0, status, bytes,
                                    referer, user_agent, upstream, upstream_s, started);
    access_.sent_settled = true;  // sent_bytes: the stream's frames, once it closes
    access_.request_id = request_id_;
    if (logged) {
        access_.route.assign(route_name_);
    }
    access_pending_ = true;
}

// ---- H2Session --------------------------------------------------------------------------------

H2Session::H2Session(DownstreamSession& owner)
    : owner_(owner),
      timer_(
          owner.worker_.loop, [this] { onTimer(); }, [this] { owner_.abortConnection(); }),
      idle_deadline_(kNever),
      send_deadline_(kNever) {
    metrics::global().h2ConnectionOpened();
}

H2Session::~H2Session() {
    metrics::global().h2ConnectionClosed();
    closeAll();
    if (session_ != nullptr) {
        nghttp2_session_del(session_);
    }
}

void H2Session::start() {
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_send_callback(callbacks, &Callbacks::send);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, &Callbacks::sendData);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &Callbacks::beginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::frameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::dataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::streamClose);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &Callbacks::frameSend);

    const config::Config& cfg = config(worker());
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    // Request bodies reopen their window only as the upstream takes them.
    nghttp2_option_set_no_auto_window_update(option, 1);
    nghttp2_option_set_max_settings(option, cfg.http2.max_settings);
    nghttp2_option_set_max_continuations(option, cfg.http2.max_continuations);
    // strata's own limiter (allowClientReset) answers first with ENHANCE_YOUR_CALM; nghttp2's
    // (which picks INTERNAL_ERROR) stays behind it as a backstop.
    nghttp2_option_set_stream_reset_rate_limit(option, std::uint64_t{cfg.http2.reset_burst} * 2,
                                               std::uint64_t{cfg.http2.reset_rate} * 2);
    reset_tokens_ = cfg.http2.reset_burst;
    reset_refilled_ = event::loopTime();
    const int rv = nghttp2_session_server_new2(&session_, callbacks, this, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(callbacks);
    if (rv != 0) {
        session_ = nullptr;
        owner_.abortConnection();
        return;
    }
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.http2.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg.http2.window_bytes},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg.limits.max_header_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        // RFC 8441: WebSocket over HTTP/2 with extended CONNECT.
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
    owner_.connection_.setOutputLowWater(kOutputLowWater);
    idle_deadline_ = event::loopTime() + cfg.limits.client_idle_timeout;
    if (worker().draining()) {
        drain();
    }
    onReadable();  // the preface (h2c) or the first frames may already be buffered
}

void H2Session::onReadable() {
    if (closed_ || session_ == nullptr) {
        return;
    }
    net::Connection& connection = owner_.connection_;
    evbuffer* in = connection.input();
    in_recv_ = true;
    while (!finishing_) {
        while (evbuffer_get_length(in) > 0 && !finishing_) {
            evbuffer_iovec chunk;
            if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) {
                break;
            }
            const ssize_t rv = nghttp2_session_mem_recv(
                session_, static_cast<const std::uint8_t*>(chunk.iov_base), chunk.iov_len);
            if (closed_) {
                return;
            }
            if (rv < 0) {
                in_recv_ = false;
                fatal(static_cast<int>(rv));
                return;
            }
            evbuffer_drain(in, static_cast<std::size_t>(rv));
        }
        if (finishing_ || !connection.readMore()) {
            break;
        }
    }
    in_recv_ = false;
    if (finishing_) {
        evbuffer_drain(in, evbuffer_get_length(in));
    } else if (connection.peerClosed() || connection.failed()) {
        owner_.abortConnection();  // the client is gone: so are its streams
        return;
    }
    send();
}

void H2Session::onWritable() {
    if (closed_) {
        return;
    }
    send_deadline_ = owner_.connection_.outputLength() == 0
                         ? kNever
                         : event::loopTime() + config(worker()).limits.send_timeout;
    send();
}

void H2Session::send() {
    if (closed_ || session_ == nullptr) {
        return;
    }
    if (in_recv_ || in_send_) {
        send_again_ = true;  // nghttp2 is not re-entrant: the outer call sends
        return;
    }
    in_send_ = true;
    net::Connection& connection = owner_.connection_;
    for (;;) {
        output_blocked_ = false;
        do {
            send_again_ = false;
            const int rv = nghttp2_session_send(session_);
            if (rv != 0) {
                in_send_ = false;
                fatal(rv);
                return;
            }
            // Streams whose buffer drained below the low watermark read their upstream again;
            // what they add goes out in the next round.
            std::vector<std::int32_t> wake;
            wake.swap(wake_);
            for (std::int32_t id : wake) {
                if (auto it = streams_.find(id); it != streams_.end()) {
                    H2Stream& stream = *it->second;
                    if (stream.transaction_) {
                        stream.transaction_->onClientWritable();
                    } else if (stream.tunnel_) {
                        stream.tunnel_->onClientWritable();
                    }
                }
                if (closed_) {
                    return;
                }
            }
        } while (send_again_ || !wake_.empty());
        connection.flush();
        if (connection.failed()) {
            in_send_ = false;
            return;  // onError() follows
        }
        // The socket took what was queued: nghttp2 may still hold frames it could not hand over,
        // and no writable event will come for output that never waited.
        if (!output_blocked_ || connection.outputLength() >= kOutputHighWater) {
            break;
        }
    }
    in_send_ = false;
    if (connection.outputLength() == 0) {
        send_deadline_ = kNever;
    } else if (send_deadline_ == kNever) {
        send_deadline_ = event::loopTime() + config(worker()).limits.send_timeout;
    }
    maybeFinish();
    if (!closed_) {
        scheduleTimer();
    }
}

void H2Session::maybeFinish() {
    if (!finishing_ &&
        (nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0)) {
        return;
    }
    if (!finishing_) {
        finishing_ = true;
        owner_.connection_.pauseReading();
        owner_.connection_.setOutputLowWater(0);  // told when the last byte left
    }
    if (owner_.connection_.outputLength() == 0) {
        owner_.close();
    }
}

namespace {

// The GOAWAY code for a connection error nghttp2 reported (RFC 9113 7): a flood is the client
// being abusive rather than broken, so it is told to calm down, as the RFC's code intends.
std::uint32_t goawayCode(int nghttp2_error) {
    switch (nghttp2_error) {
        case NGHTTP2_ERR_FLOODED:
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
        case NGHTTP2_ERR_TOO_MANY_SETTINGS:
            return NGHTTP2_ENHANCE_YOUR_CALM;
        case NGHTTP2_ERR_HEADER_COMP:
            return NGHTTP2_COMPRESSION_ERROR;
        case NGHTTP2_ERR_FLOW_CONTROL:
            return NGHTTP2_FLOW_CONTROL_ERROR;
        default:
            return NGHTTP2_PROTOCOL_ERROR;
    }
}

}  // namespace

bool H2Session::allowClientReset() {
    const config::Http2& limits = config(worker()).http2;
    const auto now = event::loopTime();
    const double elapsed_s = std::chrono::duration<double>(now - reset_refilled_).count();
    reset_refilled_ = now;
    reset_tokens_ =
        std::min<double>(limits.reset_burst, reset_tokens_ + elapsed_s * limits.reset_rate);
    if (reset_tokens_ < 1) {
        return false;
    }
    reset_tokens_ -= 1;
    return true;
}

void H2Session::fatal(int nghttp2_error) {
    LOG_DEBUG("[w%u][c%llu] h2 connection error: %s", worker().id,
              static_cast<unsigned long long>(owner_.id_), nghttp2_strerror(nghttp2_error));
    // nghttp2 queued a GOAWAY for most errors (then this one is ignored); it leaves before the
    // connection closes.
    if (!finishing_) {
        nghttp2_session_terminate_session(session_, goawayCode(nghttp2_error));
        in_send_ = true;
        nghttp2_session_send(session_);
        in_send_ = false;
    }
    finishing_ = true;
    std::vector<H2Stream*> streams;
    for (auto& [id, st] : streams_) {
        streams.push_back(st);
    }
    for (H2Stream* st : streams) {
        st->onClosed(NGHTTP2_CANCEL);
        streamClosed(st);
    }
    owner_.connection_.pauseReading();
    owner_.connection_.setOutputLowWater(0);
    owner_.connection_.flush();
    if (owner_.connection_.outputLength() == 0 || owner_.connection_.failed()) {
        owner_.close();
        return;
    }
    send_deadline_ = event::loopTime() + config(worker()).limits.send_timeout;
    scheduleTimer();
}

void H2Session::drain() {
    if (draining_ || closed_ || session_ == nullptr) {
        return;
    }
    draining_ = true;
    // RFC 9113 6.8: streams up to the last one processed still finish; later ones were not
    // seen and may be retried elsewhere.
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    send();
}

void H2Session::closeAll() {
    if (closed_) {
        return;
    }
    closed_ = true;
    timer_.cancel();
    for (auto& [id, st] : streams_) {
        st->onClosed(NGHTTP2_CANCEL);
        st->session_ = nullptr;
        worker().loop.deferredDelete(event::DeferredDeletablePtr(st));
    }
    streams_.clear();
}

void H2Session::streamClosed(H2Stream* stream) {
    streams_.erase(stream->id_);
    stream->session_ = nullptr;
    worker().loop.deferredDelete(event::DeferredDeletablePtr(stream));
    if (streams_.empty()) {
        idle_deadline_ = event::loopTime() + config(worker()).limits.client_idle_timeout;
    }
}

void H2Session::scheduleTimer() {
    auto due = std::min(idle_deadline_, send_deadline_);
    for (const auto& [id, st] : streams_) {
        due = std::min(due, st->head_deadline_);
        if (evbuffer_get_length(st->buffer_) > 0) {
            due = std::min(due, st->stall_deadline_);
        }
    }
    if (due == kNever) {
        timer_.cancel();
        return;
    }
    const auto delay = std::chrono::ceil<std::chrono::milliseconds>(due - event::loopTime());
    timer_.arm(std::max(delay, std::chrono::milliseconds(0)));
}

void H2Session::onTimer() {
    if (closed_) {
        return;
    }
    const auto now = event::loopTime();
    if (send_deadline_ <= now) {
        LOG_DEBUG("[w%u][c%llu] h2 client send timeout", worker().id,
                  static_cast<unsigned long long>(owner_.id_));
        owner_.abortConnection();
        return;
    }
    if (finishing_) {
        scheduleTimer();
        return;
    }
    if (idle_deadline_ <= now && streams_.empty()) {
        idle_deadline_ = kNever;
        nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                              nullptr, 0);
        draining_ = true;
        send();
        return;
    }
    std::vector<H2Stream*> expired;
    for (const auto& [id, st] : streams_) {
        if (st->head_deadline_ <= now ||
            (evbuffer_get_length(st->buffer_) > 0 && st->stall_deadline_ <= now)) {
            expired.push_back(st);
        }
    }
    for (H2Stream* st : expired) {
        LOG_DEBUG("[w%u][c%llu] h2 stream %d timed out", worker().id,
                  static_cast<unsigned long long>(owner_.id_), st->id_);
        st->head_deadline_ = kNever;
        st->stall_deadline_ = kNever;
        st->reset(NGHTTP2_CANCEL);
    }
    send();
}

}  // namespace strata::proxy
