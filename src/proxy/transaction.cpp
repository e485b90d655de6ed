#include "strata/proxy/transaction.h"

#include <event2/buffer.h>

#include "strata/common/log.h"
#include "strata/common/strings.h"
#include "strata/http/message.h"
#include "strata/proxy/downstream_session.h"

namespace strata::proxy {
namespace {

// Request body bytes buffered towards the upstream before the client is throttled.
constexpr std::size_t kBodyHighWater = 256 * 1024;
constexpr std::size_t kUpstreamOutputLowWater = 64 * 1024;
constexpr std::size_t kUpstreamInputLimit = 64 * 1024;
// Response bytes queued to the client before the upstream is throttled.
constexpr std::size_t kClientOutputHighWater = 256 * 1024;

constexpr std::string_view kViaValue = "1.1 strata";
constexpr auto kNever = std::chrono::steady_clock::time_point::max();

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

void appendChunk(evbuffer* out, std::string_view data) {
    char header[24];
    int n = std::snprintf(header, sizeof header, "%zx\r\n", data.size());
    evbuffer_add(out, header, static_cast<std::size_t>(n));
    evbuffer_add(out, data.data(), data.size());
    evbuffer_add(out, "\r\n", 2);
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
      deadline_(kNever),
      timer_due_(kNever),
      started_(std::chrono::steady_clock::now()) {}

Transaction::~Transaction() {
    if (connection_) {
        releaseConnection(false);
    }
    evbuffer_free(pending_body_);
}

void Transaction::start() {
    if (request_.expect_continue && request_.framing != http::BodyFraming::None) {
        // We read the body whatever the upstream would say, so the client need not wait
        // (RFC 9110 10.1.1); HTTP/1.0 clients do not know 100 (RFC 9110 15.2).
        if (request_.version_minor >= 1) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            evbuffer_add(session_.output(), kContinue.data(), kContinue.size());
            session_.flushOutput();
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
    if (!fields.has("Host")) {
        // HTTP/1.1 requires Host upstream (RFC 9112 3.2). An HTTP/1.0 client may have sent
        // none: use the upstream's name, as nginx's $proxy_host does.
        fields.add("Host", request_.host.empty() ? group_->config().name : request_.host);
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

void Transaction::setDeadline(std::chrono::milliseconds timeout) {
    auto now = std::chrono::steady_clock::now();
    deadline_ = now + timeout;
    if (timer_.armed() && timer_due_ <= deadline_) {
        return;  // fires earlier, sees the later deadline and re-arms
    }
    timer_.arm(timeout);
    timer_due_ = deadline_;
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
        sendRequest();
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
    setDeadline(config.timeouts.connect);
}

void Transaction::installCallbacks() {
    net::Connection& c = connection_->connection();
    c.setCallbacks(this);
    c.setInputLimit(kUpstreamInputLimit);
    c.setOutputLowWater(kUpstreamOutputLowWater);
}

evbuffer* Transaction::upstreamOutput() {
    return connection_->connection().output();
}

void Transaction::onConnected(bool ok) {
    if (aborted_) {
        return;
    }
    if (!ok) {
        onUpstreamFailure(Failure::Connect);
        return;
    }
    sendRequest();
}

void Transaction::sendRequest() {
    state_ = State::AwaitingHead;
    connection_->server().in_flight.fetch_add(1, std::memory_order_relaxed);
    if (!parser_) {
        parser_ =
            std::make_unique<http::ResponseParser>(*this, http::ParserLimits{
                                                              /*max_request_line_bytes=*/8 * 1024,
                                                              /*max_header_bytes=*/64 * 1024,
                                                              /*max_headers=*/200,
                                                              /*max_body_bytes=*/UINT64_MAX,
                                                          });
    }
    parser_->expectResponseTo(request_.method);
    evbuffer* out = upstreamOutput();
    evbuffer_add(out, upstream_head_.data(), upstream_head_.size());
    if (evbuffer_get_length(pending_body_) > 0) {
        evbuffer_add_buffer(out, pending_body_);
    }
    request_sent_ = true;
    setDeadline(group_->config().timeouts.response);
    connection_->connection().flush();
    if (connection_->connection().failed()) {
        onUpstreamFailure(Failure::Broken);
        return;
    }
    session_.resumeRequestBody();
    // A reused connection may already hold the server's EOF or bytes.
    processUpstreamInput();
}

void Transaction::onClientBody(std::string_view data) {
    if (aborted_ || data.empty()) {
        return;
    }
    const bool connected = connection_ && state_ != State::Connecting;
    evbuffer* out = connected ? upstreamOutput() : pending_body_;
    if (request_.framing == http::BodyFraming::Chunked) {
        appendChunk(out, data);
    } else {
        evbuffer_add(out, data.data(), data.size());
    }
    if (connected) {
        connection_->connection().flush();
    }
}

void Transaction::onClientBodyComplete() {
    if (aborted_) {
        return;
    }
    const bool connected = connection_ && state_ != State::Connecting;
    if (request_.framing == http::BodyFraming::Chunked) {
        evbuffer* out = connected ? upstreamOutput() : pending_body_;
        evbuffer_add(out, http::kLastChunk.data(), http::kLastChunk.size());
        if (connected) {
            connection_->connection().flush();
        }
    }
    request_complete_ = true;
}

bool Transaction::wantsMoreBody() const {
    if (state_ == State::Connecting || !connection_) {
        return evbuffer_get_length(pending_body_) < kBodyHighWater;
    }
    return connection_->connection().outputLength() < kBodyHighWater;
}

void Transaction::onWritable() {
    if (state_ != State::Connecting && !aborted_) {
        session_.resumeRequestBody();
    }
}

void Transaction::onError() {
    if (aborted_) {
        return;
    }
    if (state_ == State::Connecting) {
        onUpstreamFailure(Failure::Connect);
        return;
    }
    // Parse what arrived before the error (a response may be complete in the buffer).
    processUpstreamInput();
    if (!aborted_ && connection_ && state_ != State::Done) {
        onUpstreamFailure(state_ == State::AwaitingHead ? Failure::Broken : Failure::BadResponse);
    }
}

void Transaction::onReadable() {
    try {
        processUpstreamInput();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in upstream read");
        session_.abortConnection();
    }
}

void Transaction::processUpstreamInput() {
    if (!connection_ || !parser_ || aborted_) {
        return;
    }
    net::Connection& c = connection_->connection();
    evbuffer* in = c.input();
    bool wrote = false;
    while (connection_ && !aborted_ && state_ != State::Done) {
        if (session_.outputPending() >= kClientOutputHighWater) {
            session_.flushOutput();
            wrote = false;
            if (aborted_ || !connection_) {
                return;
            }
            if (session_.outputPending() >= kClientOutputHighWater) {
                // The client reads slower than the upstream sends: stop reading the upstream
                // until the client drains (onClientWritable).
                c.pauseReading();
                break;
            }
        }
        if (evbuffer_get_length(in) == 0) {
            if (c.readMore()) {
                continue;
            }
            break;
        }
        evbuffer_iovec chunk;
        if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) {
            break;
        }
        const bool had_head = state_ == State::StreamingBody;
        auto result = parser_->feed(
            std::string_view(static_cast<const char*>(chunk.iov_base), chunk.iov_len));
        if (aborted_ || !connection_) {
            return;
        }
        evbuffer_drain(in, result.consumed);
        wrote = wrote || had_head || state_ != State::AwaitingHead;
        if (state_ == State::Done) {
            session_.flushOutput();
            finish();  // after the drain, so a pooled connection keeps no stale bytes
            return;
        }
        if (result.status == http::ParseStatus::Error) {
            LOG_WARN("[w%u][c%llu] upstream %s: bad response from %s: %s", session_.worker().id,
                     static_cast<unsigned long long>(session_.id()), group_->config().name.c_str(),
                     connection_->server().label().c_str(), parser_->errorDetail().c_str());
            if (wrote) {
                session_.flushOutput();
            }
            onUpstreamFailure(Failure::BadResponse);
            return;
        }
        if (result.status == http::ParseStatus::Complete && state_ == State::AwaitingHead) {
            parser_->nextMessage();  // an interim 1xx response ended; the final one follows
        }
    }
    if (wrote) {
        session_.flushOutput();
    }
    if (aborted_ || !connection_ || state_ == State::Done) {
        return;
    }
    if (c.failed()) {
        onUpstreamFailure(state_ == State::AwaitingHead ? Failure::Broken : Failure::BadResponse);
        return;
    }
    if (c.peerClosed() && evbuffer_get_length(in) == 0) {
        auto status = parser_->finish();
        if (status == http::ParseStatus::Complete && state_ == State::Done) {
            upstream_keep_alive_ = false;
            session_.flushOutput();
            finish();
            return;
        }
        onUpstreamFailure(state_ == State::AwaitingHead ? Failure::Broken : Failure::BadResponse);
        return;
    }
    if (state_ == State::StreamingBody) {
        // Between body reads the response timeout applies as an idle timeout.
        setDeadline(group_->config().timeouts.response);
    }
}

void Transaction::onClientWritable() {
    if (connection_ && !aborted_ && connection_->connection().readingPaused() &&
        session_.outputPending() < kClientOutputHighWater) {
        connection_->connection().resumeReading();  // may call onReadable()
        processUpstreamInput();
    }
}

void Transaction::onResponseHead(http::ResponseHead&& head) {
    if (head.status < 200) {
        // Interim responses (100 Continue, 103) are not relayed: strata already answered the
        // client's Expect itself.
        return;
    }
    upstream_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - upstream_started_).count();
    state_ = State::StreamingBody;
    status_ = head.status;
    connection_->server().recordSuccess();

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
    if (client_chunked_) {
        appendChunk(session_.output(), data);
    } else {
        evbuffer_add(session_.output(), data.data(), data.size());
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
    net::Connection& c = connection_->connection();
    bool reusable = upstream_keep_alive_ && request_complete_ && !c.peerClosed() && !c.failed() &&
                    evbuffer_get_length(c.input()) == 0 && c.outputLength() == 0;
    logAccess();
    releaseConnection(reusable);
    session_.transactionDone();  // schedules our deletion; touch nothing after this
}

void Transaction::releaseConnection(bool reusable) {
    if (!connection_) {
        return;
    }
    timer_.cancel();
    deadline_ = kNever;
    if (state_ != State::Connecting) {
        connection_->server().in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    connection_->connection().setCallbacks(nullptr);
    if (reusable) {
        const auto& config = group_->config();
        session_.worker().pool.release(std::move(connection_), config.max_idle_connections,
                                       config.timeouts.idle);
    } else {
        // Freed later: this may run inside the connection's own callback.
        connection_->connection().close();
        session_.worker().loop.deferredDelete(event::deferrable(std::move(connection_)));
    }
}

void Transaction::onTimer() {
    timer_due_ = kNever;
    auto now = std::chrono::steady_clock::now();
    if (deadline_ > now) {
        if (deadline_ != kNever) {
            timer_.arm(std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now) +
                       std::chrono::milliseconds(1));
            timer_due_ = deadline_;
        }
        return;
    }
    onUpstreamFailure(state_ == State::Connecting ? Failure::ConnectTimeout : Failure::Timeout);
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
        logAccess();
        aborted_ = true;
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
        if (parser_) {
            parser_->nextMessage();
        }
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
