#include "strata/proxy/transaction.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "strata/common/log.h"
#include "strata/common/strings.h"
#include "strata/http/message.h"
#include "strata/proxy/downstream_session.h"

namespace strata::proxy {
namespace {

// Request body bytes buffered towards the upstream before the client is throttled.
constexpr std::size_t kBodyHighWater = 256 * 1024;
constexpr std::size_t kUpstreamOutputLowWater = 64 * 1024;
constexpr std::size_t kUpstreamInputHighWater = 64 * 1024;
// Response bytes queued to the client before the upstream is throttled.
constexpr std::size_t kClientOutputHighWater = 256 * 1024;

constexpr std::string_view kViaValue = "1.1 strata";

void appendListField(http::Fields& fields, std::string_view name, std::string_view value) {
    // RFC 9110 5.3: a recipient may combine field lines into one comma-separated value.
    for (auto& field : fields.items()) {
        if (equalsIgnoreCase(field.name, name)) {
            field.value += ", ";
            field.value += value;
            return;
        }
    }
    fields.add(name, value);
}

}  // namespace

Transaction::Transaction(DownstreamSession& session, SnapshotPtr snapshot, int route_index,
                         http::RequestHead&& request)
    : session_(session),
      snapshot_(std::move(snapshot)),
      route_index_(route_index),
      group_(snapshot_->route_upstreams[static_cast<std::size_t>(route_index)]),
      request_(std::move(request)),
      pending_body_(evbuffer_new()),
      timer_(session.worker().loop, [this] { onTimer(); }),
      started_(std::chrono::steady_clock::now()) {}

Transaction::~Transaction() {
    if (connection_) {
        releaseConnection(false);
    }
    evbuffer_free(pending_body_);
}

void Transaction::start() {
    if (request_.expect_continue && request_.framing != http::BodyFraming::None) {
        // We will read the body whatever the upstream would say, so the client need not wait
        // (RFC 9110 10.1.1); HTTP/1.0 clients do not know 100 (RFC 9110 15.2).
        if (request_.version_minor >= 1) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            evbuffer_add(session_.output(), kContinue.data(), kContinue.size());
        }
    }
    if (request_.framing == http::BodyFraming::None) {
        request_complete_ = true;
    }
    buildUpstreamHead();
    connectNext();
}

void Transaction::buildUpstreamHead() {
    http::Fields& fields = request_.fields;
    // Whether the client wants to keep its connection was decided by the parser already.
    http::removeHopByHop(fields);
    fields.remove("Expect");
    appendListField(fields, "X-Forwarded-For", session_.clientAddress());
    fields.set("X-Forwarded-Proto", session_.listener().tls ? "https" : "http");
    appendListField(fields, "Via", request_.version_minor == 0 ? "1.0 strata" : kViaValue);
    if (request_.framing == http::BodyFraming::Chunked) {
        fields.add("Transfer-Encoding", "chunked");
    }
    if (!request_.host.empty() && !fields.has("Host")) {
        fields.add("Host", request_.host);  // HTTP/1.0 absolute-form
    }
    upstream_head_.clear();
    upstream_head_.reserve(256 + request_.target.size());
    // Absolute-form targets become origin-form: upstreams are origin servers (RFC 9112 3.2.1).
    std::string_view target = request_.target;
    if (!target.starts_with('/') && target != "*") {
        std::string origin_form = request_.path.empty() ? "/" : request_.path;
        if (!request_.query.empty()) {
            origin_form += '?';
            origin_form += request_.query;
        }
        http::appendRequestLine(upstream_head_, request_.method, origin_form, 1);
    } else {
        http::appendRequestLine(upstream_head_, request_.method, target, 1);
    }
    http::appendFields(upstream_head_, fields);
    upstream_head_ += "\r\n";
}

void Transaction::connectNext() {
    const auto& config = group_->config();
    auto now = std::chrono::steady_clock::now();
    if (tries_ >= config.max_tries) {
        return onUpstreamFailure(Failure::Connect);
    }
    int index = retry_same_server_ >= 0 ? retry_same_server_ : group_->pick(tried_mask_, now);
    const bool fresh_only = retry_same_server_ >= 0;
    retry_same_server_ = -1;
    if (index < 0) {
        tries_ = config.max_tries;  // every server was tried: no more attempts
        return onUpstreamFailure(Failure::Connect);
    }
    tried_mask_ |= std::uint64_t{1} << (index & 63);
    tries_++;
    const upstream::ServerStatePtr& server = group_->servers()[static_cast<std::size_t>(index)];
    server_index_ = index;
    upstream_label_ = &server->label();
    state_ = State::Connecting;
    upstream_started_ = now;
    if (!fresh_only) {
        connection_ = session_.worker().pool.takeIdle(*server);
    }
    if (connection_) {
        installCallbacks();
        onConnected();
        return;
    }
    connection_ = session_.worker().pool.connect(server);
    if (!connection_) {
        server->recordFailure(now, config.fail_backoff);
        LOG_WARN("[w%u][c%llu] upstream %s: cannot connect to %s", session_.worker().id,
                 static_cast<unsigned long long>(session_.id()), config.name.c_str(),
                 server->label().c_str());
        return connectNext();
    }
    installCallbacks();
    timer_.arm(config.timeouts.connect);
}

void Transaction::installCallbacks() {
    bufferevent_setcb(connection_->bev(), &Transaction::onUpstreamRead,
                      &Transaction::onUpstreamWrite, &Transaction::onUpstreamEvent, this);
    bufferevent_setwatermark(connection_->bev(), EV_WRITE, kUpstreamOutputLowWater, 0);
    bufferevent_setwatermark(connection_->bev(), EV_READ, 0, kUpstreamInputHighWater);
    bufferevent_enable(connection_->bev(), EV_READ | EV_WRITE);
}

evbuffer* Transaction::upstreamOutput() {
    return bufferevent_get_output(connection_->bev());
}

void Transaction::onConnected() {
    timer_.cancel();
    state_ = State::AwaitingHead;
    connection_->server().in_flight.fetch_add(1, std::memory_order_relaxed);
    parser_ = std::make_unique<http::ResponseParser>(*this, http::ParserLimits{
                                                                /*max_request_line_bytes=*/8 * 1024,
                                                                /*max_header_bytes=*/64 * 1024,
                                                                /*max_headers=*/200,
                                                                /*max_body_bytes=*/UINT64_MAX,
                                                            });
    parser_->expectResponseTo(request_.method);
    evbuffer* out = upstreamOutput();
    evbuffer_add(out, upstream_head_.data(), upstream_head_.size());
    if (evbuffer_get_length(pending_body_) > 0) {
        evbuffer_add_buffer(out, pending_body_);
    }
    request_sent_ = true;
    timer_.arm(group_->config().timeouts.response);
    session_.resumeRequestBody();
}

void Transaction::onClientBody(std::string_view data) {
    if (aborted_ || data.empty()) {
        return;
    }
    evbuffer* out =
        (state_ == State::Connecting || !connection_) ? pending_body_ : upstreamOutput();
    if (request_.framing == http::BodyFraming::Chunked) {
        std::string header;
        http::appendChunkHeader(header, data.size());
        evbuffer_add(out, header.data(), header.size());
        evbuffer_add(out, data.data(), data.size());
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data.data(), data.size());
    }
}

void Transaction::onClientBodyComplete() {
    if (aborted_) {
        return;
    }
    if (request_.framing == http::BodyFraming::Chunked) {
        evbuffer* out =
            (state_ == State::Connecting || !connection_) ? pending_body_ : upstreamOutput();
        evbuffer_add(out, http::kLastChunk.data(), http::kLastChunk.size());
    }
    request_complete_ = true;
}

bool Transaction::wantsMoreBody() const {
    if (state_ == State::Connecting || !connection_) {
        return evbuffer_get_length(pending_body_) < kBodyHighWater;
    }
    return evbuffer_get_length(bufferevent_get_output(connection_->bev())) < kBodyHighWater;
}

void Transaction::onUpstreamWrite(bufferevent*, void* arg) {
    auto* self = static_cast<Transaction*>(arg);
    if (self->state_ != State::Connecting && !self->aborted_) {
        self->session_.resumeRequestBody();
    }
}

void Transaction::onUpstreamEvent(bufferevent*, short what, void* arg) {
    auto* self = static_cast<Transaction*>(arg);
    try {
        if ((what & BEV_EVENT_CONNECTED) != 0) {
            self->onConnected();
            return;
        }
        if (self->state_ == State::Connecting) {
            self->onUpstreamFailure(Failure::Connect);
            return;
        }
        if ((what & BEV_EVENT_TIMEOUT) != 0) {
            self->onUpstreamFailure(Failure::Timeout);
            return;
        }
        if ((what & BEV_EVENT_EOF) != 0 && self->parser_) {
            // Bytes may still sit in the input buffer; parse them first.
            self->processUpstreamInput();
            if (self->aborted_ || self->state_ == State::Done || !self->connection_) {
                return;
            }
            auto status = self->parser_->finish();
            if (status == http::ParseStatus::Complete && self->state_ == State::Done) {
                self->upstream_keep_alive_ = false;
                self->finish();
                return;
            }
            if (status == http::ParseStatus::Ok && self->state_ == State::AwaitingHead) {
                self->onUpstreamFailure(Failure::Broken);
                return;
            }
        }
        self->onUpstreamFailure(self->state_ == State::AwaitingHead ? Failure::Broken
                                                                    : Failure::BadResponse);
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in upstream event");
        self->session_.abortConnection();
    }
}

void Transaction::onUpstreamRead(bufferevent*, void* arg) {
    auto* self = static_cast<Transaction*>(arg);
    try {
        self->processUpstreamInput();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in upstream read");
        self->session_.abortConnection();
    }
}

void Transaction::processUpstreamInput() {
    if (!connection_ || !parser_) {
        return;
    }
    evbuffer* in = bufferevent_get_input(connection_->bev());
    while (connection_ && !aborted_ && state_ != State::Done) {
        if (session_.outputPending() >= kClientOutputHighWater) {
            // The client reads slower than the upstream sends: stop reading the upstream until
            // the client drains (onClientWritable).
            upstream_reading_paused_ = true;
            bufferevent_disable(connection_->bev(), EV_READ);
            return;
        }
        if (evbuffer_get_length(in) == 0) {
            return;
        }
        evbuffer_iovec chunk;
        if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) {
            return;
        }
        auto result = parser_->feed(
            std::string_view(static_cast<const char*>(chunk.iov_base), chunk.iov_len));
        if (aborted_ || !connection_) {
            return;
        }
        evbuffer_drain(in, result.consumed);
        if (state_ == State::Done) {
            finish();  // after the drain, so a pooled connection keeps no stale bytes
            return;
        }
        if (result.status == http::ParseStatus::Error) {
            LOG_WARN("[w%u][c%llu] upstream %s: bad response from %s: %s", session_.worker().id,
                     static_cast<unsigned long long>(session_.id()), group_->config().name.c_str(),
                     connection_->server().label().c_str(), parser_->errorDetail().c_str());
            onUpstreamFailure(Failure::BadResponse);
            return;
        }
        if (result.status == http::ParseStatus::Complete && state_ == State::AwaitingHead) {
            parser_->nextMessage();  // an interim 1xx response ended; the final one follows
        }
    }
}

void Transaction::onClientWritable() {
    if (upstream_reading_paused_ && connection_ && !aborted_) {
        upstream_reading_paused_ = false;
        bufferevent_enable(connection_->bev(), EV_READ);
        processUpstreamInput();
    }
}

void Transaction::onResponseHead(http::ResponseHead&& head) {
    if (head.status < 200) {
        // Interim responses (100 Continue, 103) are not relayed: strata already answered the
        // client's Expect itself.
        return;
    }
    timer_.cancel();
    upstream_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - upstream_started_).count();
    state_ = State::StreamingBody;
    status_ = head.status;
    connection_->server().recordSuccess();
    // Between body reads the response timeout applies as an idle timeout.
    struct timeval tv = event::toTimeval(group_->config().timeouts.response);
    bufferevent_set_timeouts(connection_->bev(), &tv, nullptr);

    http::Fields& fields = head.fields;
    http::removeHopByHop(fields);
    appendListField(fields, "Via", kViaValue);
    fields.add("Cache-Status", "strata; fwd=bypass");

    const bool client_http10 = request_.version_minor == 0;
    const bool has_body = head.framing != http::BodyFraming::None;
    if (has_body && head.framing != http::BodyFraming::Length) {
        if (client_http10) {
            // HTTP/1.0 has no chunked coding: the end of the body is the end of the connection.
            session_.setCloseAfterResponse();
        } else {
            client_chunked_ = true;
            fields.add("Transfer-Encoding", "chunked");
        }
    }
    if (session_.worker().draining()) {
        session_.setCloseAfterResponse();
    }
    if (session_.closeAfterResponse()) {
        fields.add("Connection", "close");
    } else if (client_http10) {
        fields.add("Connection", "keep-alive");
    }
    std::string out;
    out.reserve(512);
    http::appendStatusLine(out, head.status, head.reason, 1);
    http::appendFields(out, fields);
    out += "\r\n";
    evbuffer_add(session_.output(), out.data(), out.size());
    response_started_ = true;
    upstream_keep_alive_ = head.keep_alive;
}

void Transaction::onResponseBody(std::string_view data) {
    if (data.empty()) {
        return;
    }
    evbuffer* out = session_.output();
    if (client_chunked_) {
        std::string header;
        http::appendChunkHeader(header, data.size());
        evbuffer_add(out, header.data(), header.size());
        evbuffer_add(out, data.data(), data.size());
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data.data(), data.size());
    }
    body_bytes_sent_ += data.size();
}

void Transaction::onResponseComplete() {
    if (state_ != State::StreamingBody) {
        return;  // end of an interim response
    }
    if (client_chunked_) {
        evbuffer_add(session_.output(), http::kLastChunk.data(), http::kLastChunk.size());
    }
    state_ = State::Done;  // processUpstreamInput() finishes once the parser returns
}

void Transaction::finish() {
    // The connection is reusable only when both directions ended cleanly.
    bool reusable = upstream_keep_alive_ && request_complete_ &&
                    evbuffer_get_length(bufferevent_get_input(connection_->bev())) == 0 &&
                    evbuffer_get_length(upstreamOutput()) == 0;
    logAccess();
    releaseConnection(reusable);
    session_.transactionDone();  // may schedule our deletion; touch nothing after this
}

void Transaction::releaseConnection(bool reusable) {
    if (!connection_) {
        return;
    }
    timer_.cancel();
    if (state_ != State::Connecting) {
        connection_->server().in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    bufferevent_setcb(connection_->bev(), nullptr, nullptr, nullptr, nullptr);
    if (reusable) {
        const auto& config = group_->config();
        session_.worker().pool.release(std::move(connection_), config.max_idle_connections,
                                       config.timeouts.idle);
    } else {
        connection_.reset();
    }
}

void Transaction::onTimer() {
    if (state_ == State::Connecting) {
        onUpstreamFailure(Failure::ConnectTimeout);
    } else {
        onUpstreamFailure(Failure::Timeout);
    }
}

void Transaction::onUpstreamFailure(Failure failure) {
    if (aborted_) {
        return;
    }
    auto now = std::chrono::steady_clock::now();
    const auto& config = group_->config();
    const bool reused = connection_ && connection_->exchanges > 0;
    std::string_view server_label =
        upstream_label_ ? std::string_view(*upstream_label_) : std::string_view("-");
    if (connection_ && (failure == Failure::Connect || failure == Failure::ConnectTimeout)) {
        connection_->server().recordFailure(now, config.fail_backoff);
    }
    const char* what = "error";
    switch (failure) {
        case Failure::Connect:
            what = "connect failed";
            break;
        case Failure::ConnectTimeout:
            what = "connect timeout";
            break;
        case Failure::Broken:
            what = "connection closed before response";
            break;
        case Failure::Timeout:
            what = "response timeout";
            break;
        case Failure::BadResponse:
            what = "bad response";
            break;
    }
    if (connection_ && !(reused && failure == Failure::Broken)) {
        LOG_WARN("[w%u][c%llu] upstream %s: %s: %s", session_.worker().id,
                 static_cast<unsigned long long>(session_.id()), config.name.c_str(),
                 std::string(server_label).c_str(), what);
    }
    releaseConnection(false);

    if (response_started_) {
        // Part of the response is out: the client can only learn of the failure by a close.
        status_ = status_ == 0 ? 502 : status_;
        logAccess();
        session_.abortConnection();
        return;
    }
    const bool nothing_sent = failure == Failure::Connect || failure == Failure::ConnectTimeout;
    const bool safe_to_replay = http::isIdempotent(request_.method) &&
                                request_.framing == http::BodyFraming::None &&
                                failure == Failure::Broken;
    if ((nothing_sent || safe_to_replay) && tries_ < config.max_tries) {
        if (reused && failure == Failure::Broken && !retried_stale_) {
            // The server closed an idle pooled connection just as we reused it (the usual
            // keep-alive race): try the same server once more on a fresh connection.
            retried_stale_ = true;
            retry_same_server_ = server_index_;
            tries_--;
        }
        request_sent_ = false;
        connectNext();
        return;
    }
    int status = (failure == Failure::Timeout || failure == Failure::ConnectTimeout) ? 504 : 502;
    status_ = status;
    logAccess();
    aborted_ = true;
    session_.sendError(status, what, !request_complete_);
}

void Transaction::abort() {
    if (aborted_) {
        return;
    }
    aborted_ = true;
    timer_.cancel();
    releaseConnection(false);
}

void Transaction::logAccess() {
    const std::string* referer = request_.fields.get("Referer");
    const std::string* agent = request_.fields.get("User-Agent");
    std::string_view upstream =
        upstream_label_ ? std::string_view(*upstream_label_) : std::string_view("-");
    session_.logAccess(request_.method, request_.target, request_.version_minor, status_,
                       body_bytes_sent_, referer ? std::string_view(*referer) : std::string_view(),
                       agent ? std::string_view(*agent) : std::string_view(), upstream,
                       upstream_seconds_, started_);
}

}  // namespace strata::proxy
