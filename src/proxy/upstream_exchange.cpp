#include "strata/proxy/upstream_exchange.h"

#include <event2/buffer.h>

#include "strata/common/log.h"
#include "strata/http/message.h"
#include "strata/metrics/metrics.h"

#include "chunked.h"

namespace strata::proxy {
namespace {

// Request body bytes buffered towards the upstream before the sender is throttled.
constexpr std::size_t kBodyHighWater = 256 * 1024;
constexpr std::size_t kOutputLowWater = 64 * 1024;
constexpr std::size_t kInputLimit = 64 * 1024;

const http::ParserLimits& responseLimits() {
    static const http::ParserLimits limits{
        /*max_request_line_bytes=*/8 * 1024,
        /*max_header_bytes=*/64 * 1024,
        /*max_headers=*/200,
        /*max_body_bytes=*/UINT64_MAX,
    };
    return limits;
}

}  // namespace

UpstreamExchange::UpstreamExchange(WorkerContext& worker, const upstream::UpstreamGroup& group,
                                   Request request, UpstreamExchangeCallbacks& callbacks,
                                   std::uint64_t log_id)
    : worker_(worker),
      group_(group),
      request_(std::move(request)),
      callbacks_(callbacks),
      log_id_(log_id) {
    body_complete_ = !request_.has_body;
}

UpstreamExchange::~UpstreamExchange() {
    if (connection_) {
        releaseConnection(false);
    }
    endAccounting();
    if (pending_body_ != nullptr) {
        evbuffer_free(pending_body_);
    }
}

std::string_view UpstreamExchange::serverLabel() const {
    return server_label_ != nullptr ? std::string_view(*server_label_) : std::string_view("-");
}

evbuffer* UpstreamExchange::pendingBody() {
    if (pending_body_ == nullptr) {
        pending_body_ = evbuffer_new();  // most requests have no body: allocated on first use
    }
    return pending_body_;
}

void UpstreamExchange::start() {
    if (upstream::RetryBudget* budget = group_.retryBudget()) {
        budget->requestStarted();
        budget_request_ = true;
    }
    connectNext();
}

bool UpstreamExchange::admitRetry() {
    upstream::RetryBudget* budget = group_.retryBudget();
    if (budget == nullptr || budget_retry_) {
        return true;
    }
    if (budget->tryStartRetry()) {
        budget_retry_ = true;
        return true;
    }
    metrics::global().retryBudgetExhausted(group_.metricsSlot());
    LOG_WARN("[w%u][c%llu] upstream %s: retry budget exhausted, not retrying", worker_.id,
             static_cast<unsigned long long>(log_id_), group_.config().name.c_str());
    return false;
}

void UpstreamExchange::releaseSlot() {
    if (slot_index_ >= 0) {
        group_.releaseSlot(static_cast<std::size_t>(slot_index_));
        slot_index_ = -1;
    }
}

void UpstreamExchange::endAccounting() {
    releaseSlot();
    leaveQueue();
    if (upstream::RetryBudget* budget = group_.retryBudget()) {
        if (budget_request_) {
            budget->requestEnded();
        }
        if (budget_retry_) {
            budget->retryEnded();
        }
    }
    budget_request_ = false;
    budget_retry_ = false;
}

void UpstreamExchange::leaveQueue() {
    if (ticket_) {
        ticket_->cancel();  // a wake on its way passes to the next waiter
        group_.queue()->remove(ticket_);
        ticket_.reset();
    }
    if (queue_timer_) {
        queue_timer_->cancel();
    }
    if (waiting_) {
        waiting_ = false;
        metrics::global().upstreamQueueDepth(group_.metricsSlot(), -1);
    }
}

void UpstreamExchange::waitForSlot(bool requeue) {
    const auto& config = group_.config();
    if (!ticket_) {
        ticket_ = std::make_shared<upstream::ConnectionQueue::Ticket>(worker_.loop, [this] {
            // Woken on this loop: a slot freed somewhere; take it, or queue again at the front.
            if (!aborted_ && state_ == State::Connecting) {
                connectNext();
            } else {
                group_.queue()->wake();  // not ours to use: the next waiter's
            }
        });
    }
    upstream::UpstreamGroup::LimitedPick picked;
    const upstream::PickContext context{tried_, event::loopTime(), request_.hash_key};
    bool served = false;
    const bool queued = group_.queue()->enqueue(
        ticket_, config.queue.max,
        [&] {
            picked = group_.pickWithLimits(context);
            return picked.result != upstream::UpstreamGroup::LimitedPick::Result::Busy;
        },
        &served, requeue);
    if (queued) {
        if (!waiting_) {
            waiting_ = true;
            metrics::global().upstreamQueue(group_.metricsSlot(), metrics::QueueResult::Queued);
            metrics::global().upstreamQueueDepth(group_.metricsSlot(), 1);
            if (!queue_timer_) {
                queue_timer_ =
                    std::make_unique<event::Timer>(worker_.loop, [this] { onQueueTimeout(); });
            }
            queue_timer_->arm(config.queue.timeout);
        }
        return;
    }
    if (!served) {
        metrics::global().upstreamQueue(group_.metricsSlot(), metrics::QueueResult::Full);
        return failQueued("upstream queue full");
    }
    // A slot freed while we queued: go on as if the first pick had found it.
    leaveQueue();
    if (picked.result == upstream::UpstreamGroup::LimitedPick::Result::None) {
        tries_ = config.max_tries;
        return fail(Failure::Connect);
    }
    if (picked.holds_slot) {
        slot_index_ = picked.index;
    }
    connectTo(picked.index, false);
}

void UpstreamExchange::onQueueTimeout() {
    metrics::global().upstreamQueue(group_.metricsSlot(), metrics::QueueResult::Timeout);
    failQueued("upstream queue timeout");
}

void UpstreamExchange::failQueued(const char* what) {
    LOG_WARN("[w%u][c%llu] upstream %s: %s", worker_.id, static_cast<unsigned long long>(log_id_),
             group_.config().name.c_str(), what);
    endAccounting();
    state_ = State::Failed;
    callbacks_.onExchangeFailure(503, false, what);
}

void UpstreamExchange::setDeadline(std::chrono::milliseconds timeout) {
    if (event::Timer* timer = deadlineTimer()) {
        timer->arm(timeout);
    }
}

event::Timer* UpstreamExchange::deadlineTimer() {
    if (!connection_) {
        return nullptr;
    }
    std::unique_ptr<event::Timer>& timer = connection_->exchange_timer;
    if (!timer) {
        timer = std::make_unique<event::Timer>(worker_.loop, nullptr);
    }
    return timer.get();
}

void UpstreamExchange::connectNext() {
    const auto& config = group_.config();
    auto now = event::loopTime();
    if (tries_ >= config.max_tries) {
        return fail(Failure::Connect);
    }
    if (retry_same_server_ >= 0) {
        const int index = retry_same_server_;
        retry_same_server_ = -1;
        return connectTo(index, /*fresh_only=*/true);  // keeps the slot it holds there
    }
    const upstream::PickContext context{tried_, now, request_.hash_key};
    int index = -1;
    if (!group_.limitsConnections()) {
        index = group_.pick(context);
    } else {
        auto picked = group_.pickWithLimits(context);
        if (picked.result == upstream::UpstreamGroup::LimitedPick::Result::Busy) {
            return waitForSlot(/*requeue=*/waiting_);
        }
        leaveQueue();
        index = picked.index;
        if (picked.holds_slot) {
            slot_index_ = index;
        }
    }
    if (index < 0) {
        tries_ = config.max_tries;  // every server was tried: no more attempts
        return fail(Failure::Connect);
    }
    connectTo(index, false);
}

void UpstreamExchange::connectTo(int index, bool fresh_only) {
    const auto& config = group_.config();
    auto now = event::loopTime();
    tried_.add(static_cast<std::size_t>(index));
    tries_++;
    const upstream::ServerStatePtr& server = group_.servers()[static_cast<std::size_t>(index)];
    server_index_ = index;
    server_label_ = &server->label();
    if (tries_ > 1 && worker_.metrics != nullptr) {
        worker_.metrics->upstreamRetry(server->metricsSlot());
    }
    state_ = State::Connecting;
    if (upstream_started_ == std::chrono::steady_clock::time_point{}) {
        upstream_started_ = now;
    }
    if (!fresh_only && !request_.upgrade) {
        connection_ =
            worker_.pool.takeIdle(*server, group_.tls() != nullptr, request_.proxy_header);
    }
    if (connection_) {
        installCallbacks();
        sendRequest();
        return;
    }
    connection_ = worker_.pool.connect(server, group_.tls(), request_.proxy_header);
    if (!connection_) {
        server->recordFailure(now, config.fail_backoff);
        if (worker_.metrics != nullptr) {
            worker_.metrics->upstreamConnectError(server->metricsSlot());
        }
        LOG_WARN("[w%u][c%llu] upstream %s: cannot connect to %s", worker_.id,
                 static_cast<unsigned long long>(log_id_), config.name.c_str(),
                 server->label().c_str());
        releaseSlot();
        if (tries_ < config.max_tries && !admitRetry()) {
            tries_ = config.max_tries;
        }
        return connectNext();
    }
    installCallbacks();
    setDeadline(config.timeouts.connect);
}

void UpstreamExchange::installCallbacks() {
    deadlineTimer()->setCallback([this] { onTimer(); }, [this] { fail(Failure::Broken); });
    net::Connection& c = connection_->connection();
    c.setCallbacks(this);
    c.setInputLimit(kInputLimit);
    c.setOutputLowWater(kOutputLowWater);
}

void UpstreamExchange::onConnected(bool ok) {
    if (aborted_) {
        return;
    }
    if (!ok) {
        if (const std::string& tls_error = connection_->connection().tlsError();
            !tls_error.empty()) {
            // Never a silent downgrade: the server is treated as failing to connect.
            LOG_WARN("[w%u][c%llu] upstream %s: TLS handshake with %s failed: %s", worker_.id,
                     static_cast<unsigned long long>(log_id_), group_.config().name.c_str(),
                     std::string(serverLabel()).c_str(), tls_error.c_str());
        }
        fail(Failure::Connect);
        return;
    }
    sendRequest();
}

void UpstreamExchange::sendRequest() {
    state_ = State::AwaitingHead;
    connection_->server().in_flight.fetch_add(1, std::memory_order_relaxed);
    auto& parser = connection_->response_parser;
    if (!parser) {
        parser = std::make_unique<http::ResponseParser>(
            static_cast<http::ResponseCallbacks&>(*this), responseLimits());
    } else {
        parser->setCallbacks(static_cast<http::ResponseCallbacks&>(*this));
        parser->nextMessage();
    }
    parser_ = parser.get();
    parser_->expectResponseTo(request_.method);
    evbuffer* out = connection_->connection().output();
    evbuffer_add(out, request_.head.data(), request_.head.size());
    if (pending_body_ != nullptr && evbuffer_get_length(pending_body_) > 0) {
        evbuffer_add_buffer(out, pending_body_);
    }
    setDeadline(group_.config().timeouts.response);
    connection_->connection().flush();
    if (connection_->connection().failed()) {
        fail(Failure::Broken);
        return;
    }
    callbacks_.onExchangeBodyWritable();
    if (aborted_) {
        return;
    }
    // A reused connection may already hold the server's EOF or bytes.
    processInput();
}

void UpstreamExchange::sendBody(std::string_view data) {
    if (aborted_ || data.empty()) {
        return;
    }
    const bool connected = connection_ && state_ != State::Connecting;
    evbuffer* out = connected ? connection_->connection().output() : pendingBody();
    if (request_.chunked) {
        appendChunk(out, data);
    } else {
        evbuffer_add(out, data.data(), data.size());
    }
    if (connected) {
        connection_->connection().flush();
    }
}

void UpstreamExchange::endBody() {
    if (aborted_) {
        return;
    }
    body_complete_ = true;
    if (!request_.chunked) {
        return;
    }
    const bool connected = connection_ && state_ != State::Connecting;
    evbuffer* out = connected ? connection_->connection().output() : pendingBody();
    evbuffer_add(out, http::kLastChunk.data(), http::kLastChunk.size());
    if (connected) {
        connection_->connection().flush();
    }
}

bool UpstreamExchange::wantsMoreBody() const {
    if (state_ == State::Connecting || !connection_) {
        return pending_body_ == nullptr || evbuffer_get_length(pending_body_) < kBodyHighWater;
    }
    return connection_->connection().outputLength() < kBodyHighWater;
}

void UpstreamExchange::onWritable() {
    if (state_ != State::Connecting && !aborted_) {
        callbacks_.onExchangeBodyWritable();
    }
}

void UpstreamExchange::onError() {
    if (aborted_) {
        return;
    }
    if (state_ == State::Connecting) {
        fail(Failure::Connect);
        return;
    }
    processInput();  // a complete response may sit in the buffer
    if (!aborted_ && connection_ && state_ != State::Done && state_ != State::Failed) {
        fail(state_ == State::AwaitingHead ? Failure::Broken : Failure::BadResponse);
    }
}

void UpstreamExchange::onReadable() {
    try {
        processInput();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in upstream read");
        fail(Failure::BadResponse);
    }
}

void UpstreamExchange::resumeReading() {
    if (connection_ && !aborted_ && connection_->connection().readingPaused()) {
        connection_->connection().resumeReading();  // may call onReadable()
        processInput();
    }
}

void UpstreamExchange::processInput() {
    if (!connection_ || !parser_ || aborted_ || state_ == State::Connecting) {
        return;
    }
    net::Connection& c = connection_->connection();
    evbuffer* in = c.input();
    bool delivered = false;
    while (connection_ && !aborted_ && state_ != State::Done) {
        if (delivered && callbacks_.exchangeSinkFull()) {
            callbacks_.onExchangeFlush();
            delivered = false;
            if (aborted_ || !connection_) {
                return;
            }
            if (callbacks_.exchangeSinkFull()) {
                // The owner's client reads slower than the upstream sends: stop reading the
                // upstream until resumeReading().
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
        auto result = parser_->feed(
            std::string_view(static_cast<const char*>(chunk.iov_base), chunk.iov_len));
        if (aborted_ || !connection_) {
            return;
        }
        evbuffer_drain(in, result.consumed);
        if (state_ == State::Upgraded) {
            // What follows the 101 is the new protocol's: left in the input for the tunnel.
            callbacks_.onExchangeUpgraded(upgraded_head_);
            return;
        }
        delivered = delivered || state_ != State::AwaitingHead;
        if (state_ == State::Done) {
            finish();  // after the drain, so a pooled connection keeps no stale bytes
            return;
        }
        if (result.status == http::ParseStatus::Error) {
            LOG_WARN("[w%u][c%llu] upstream %s: bad response from %s: %s", worker_.id,
                     static_cast<unsigned long long>(log_id_), group_.config().name.c_str(),
                     std::string(serverLabel()).c_str(), parser_->errorDetail().c_str());
            if (delivered) {
                callbacks_.onExchangeFlush();
            }
            fail(Failure::BadResponse);
            return;
        }
        if (result.status == http::ParseStatus::Complete && state_ == State::AwaitingHead) {
            parser_->nextMessage();  // an interim 1xx response ended; the final one follows
        }
    }
    if (delivered) {
        callbacks_.onExchangeFlush();
    }
    if (aborted_ || !connection_ || state_ == State::Done) {
        return;
    }
    if (c.failed()) {
        fail(state_ == State::AwaitingHead ? Failure::Broken : Failure::BadResponse);
        return;
    }
    if (c.peerClosed() && evbuffer_get_length(in) == 0) {
        auto status = parser_->finish();
        if (status == http::ParseStatus::Complete && state_ == State::Done) {
            keep_alive_ = false;
            finish();
            return;
        }
        fail(state_ == State::AwaitingHead ? Failure::Broken : Failure::BadResponse);
        return;
    }
    if (state_ == State::StreamingBody) {
        // Between body reads the response timeout applies as an idle timeout.
        setDeadline(group_.config().timeouts.response);
    }
}

void UpstreamExchange::onResponseHead(http::ResponseHead&& head) {
    const bool upgraded = head.status == 101 && request_.upgrade && state_ == State::AwaitingHead;
    if (head.status < 200 && !upgraded) {
        // 100 Continue is not relayed (strata answers the client's Expect itself), nor a 101
        // nobody asked for; 102 and 103 Early Hints are, to the owner.
        if (head.status != 100 && head.status != 101 && state_ == State::AwaitingHead) {
            callbacks_.onExchangeInterim(head);
        }
        return;
    }
    upstream_seconds_ =
        std::chrono::duration<double>(event::loopTime() - upstream_started_).count();
    connection_->server().recordSuccess();
    if (worker_.metrics != nullptr) {
        worker_.metrics->upstreamResponse(connection_->server().metricsSlot(), head.status,
                                          upstream_seconds_);
    }
    if (upgraded) {
        state_ = State::Upgraded;  // processInput() hands the connection over
        upgraded_head_ = std::move(head);
        return;
    }
    state_ = State::StreamingBody;
    // A connection that carried an Upgrade request is never reused, whatever the answer.
    keep_alive_ = head.keep_alive && !request_.upgrade;
    callbacks_.onExchangeHead(head);
}

void UpstreamExchange::onResponseBody(std::string_view data) {
    if (!data.empty() && !aborted_) {
        callbacks_.onExchangeBody(data);
    }
}

void UpstreamExchange::onResponseComplete() {
    if (state_ == State::StreamingBody) {
        state_ = State::Done;  // processInput() finishes once the parser returns
    }
}

void UpstreamExchange::finish() {
    // The connection is reusable only when both directions ended cleanly.
    net::Connection& c = connection_->connection();
    bool reusable = keep_alive_ && body_complete_ && !c.peerClosed() && !c.failed() &&
                    evbuffer_get_length(c.input()) == 0 && c.outputLength() == 0;
    releaseConnection(reusable);
    endAccounting();
    callbacks_.onExchangeComplete();  // may schedule our deletion; touch nothing after
}

void UpstreamExchange::releaseConnection(bool reusable) {
    if (!connection_) {
        return;
    }
    if (connection_->exchange_timer) {
        connection_->exchange_timer->cancel();
    }
    parser_ = nullptr;  // it stays with the connection
    if (state_ != State::Connecting) {
        connection_->server().in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    connection_->connection().setCallbacks(nullptr);
    if (reusable) {
        const auto& config = group_.config();
        worker_.pool.release(std::move(connection_), config.max_idle_connections,
                             config.timeouts.idle);
    } else {
        // Freed later: this may run inside the connection's own callback.
        connection_->connection().close();
        worker_.loop.deferredDelete(event::deferrable(std::move(connection_)));
    }
}

void UpstreamExchange::onTimer() {
    fail(state_ == State::Connecting ? Failure::ConnectTimeout : Failure::Timeout);
}

void UpstreamExchange::fail(Failure failure) {
    if (aborted_ || state_ == State::Failed) {
        return;
    }
    auto now = event::loopTime();
    const auto& config = group_.config();
    const bool reused = connection_ && connection_->exchanges > 0;
    if (connection_ && (failure == Failure::Connect || failure == Failure::ConnectTimeout)) {
        connection_->server().recordFailure(now, config.fail_backoff);
        if (worker_.metrics != nullptr) {
            worker_.metrics->upstreamConnectError(connection_->server().metricsSlot());
        }
    }
    if (connection_ && worker_.metrics != nullptr && !headReceived()) {
        // No usable response from this server: counted as status_class="error".
        worker_.metrics->upstreamResponse(connection_->server().metricsSlot(), 0, 0);
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
        LOG_WARN("[w%u][c%llu] upstream %s: %s: %s", worker_.id,
                 static_cast<unsigned long long>(log_id_), config.name.c_str(),
                 std::string(serverLabel()).c_str(), what);
    }
    const bool after_head = headReceived();
    releaseConnection(false);
    if (!after_head) {
        const bool nothing_sent = failure == Failure::Connect || failure == Failure::ConnectTimeout;
        const bool safe_to_replay =
            http::isIdempotent(request_.method) && !request_.has_body && failure == Failure::Broken;
        // The keep-alive race retry is exempt from the budget: the server never saw the request.
        const bool stale = reused && failure == Failure::Broken && !retried_stale_;
        if ((nothing_sent || safe_to_replay) && tries_ < config.max_tries &&
            (stale || admitRetry())) {
            if (!stale) {
                releaseSlot();
            }
            if (stale) {
                // The server closed an idle pooled connection just as we reused it (the usual
                // keep-alive race): try the same server once more on a fresh connection.
                retried_stale_ = true;
                retry_same_server_ = server_index_;
                tries_--;
            }
            connectNext();
            return;
        }
    }
    endAccounting();
    state_ = State::Failed;
    unreachable_ = failure == Failure::Connect || failure == Failure::ConnectTimeout;
    int status = (failure == Failure::Timeout || failure == Failure::ConnectTimeout) ? 504 : 502;
    callbacks_.onExchangeFailure(status, after_head, what);
}

upstream::UpstreamConnectionPtr UpstreamExchange::takeUpgraded() {
    if (!connection_ || state_ != State::Upgraded) {
        return nullptr;
    }
    if (connection_->exchange_timer) {
        connection_->exchange_timer->cancel();
    }
    parser_ = nullptr;
    connection_->server().in_flight.fetch_sub(1, std::memory_order_relaxed);
    connection_->connection().setCallbacks(nullptr);
    state_ = State::Done;
    aborted_ = true;  // nothing more from this exchange
    // A tunnel is no longer a request: it stops counting against max_connections.
    endAccounting();
    return std::move(connection_);
}

void UpstreamExchange::abort() {
    if (aborted_) {
        return;
    }
    aborted_ = true;
    releaseConnection(false);
    endAccounting();
}

}  // namespace strata::proxy
