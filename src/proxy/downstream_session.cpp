#include "strata/proxy/downstream_session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "strata/common/log.h"
#include "strata/http/message.h"
#include "strata/proxy/transaction.h"

namespace strata::proxy {
namespace {

// Reads stop when this much unparsed input is buffered (pipelined requests, a body the upstream
// is not taking yet): bounds memory per connection.
constexpr std::size_t kInputHighWater = 64 * 1024;
// The upstream is throttled when the client has this much response data unsent, and resumed
// below the low-water mark.
constexpr std::size_t kOutputHighWater = 256 * 1024;
constexpr std::size_t kOutputLowWater = 64 * 1024;

http::ParserLimits parserLimits(const config::Limits& limits) {
    http::ParserLimits out;
    out.max_request_line_bytes = limits.max_request_line_bytes;
    out.max_header_bytes = limits.max_header_bytes;
    out.max_headers = limits.max_headers;
    out.max_body_bytes = limits.max_request_body_bytes;
    return out;
}

}  // namespace

void WorkerContext::beginDrain(std::function<void()> on_drained) {
    draining_ = true;
    on_drained_ = std::move(on_drained);
    // Copy: closing a session removes it from the set.
    std::vector<DownstreamSession*> sessions(sessions_.begin(), sessions_.end());
    for (DownstreamSession* session : sessions) {
        session->closeIfIdle();
    }
    pool.closeAll();
    if (sessions_.empty() && on_drained_) {
        auto done = std::move(on_drained_);
        on_drained_ = nullptr;
        done();
    }
}

void WorkerContext::removeSession(DownstreamSession* session) {
    sessions_.erase(session);
    if (draining_ && sessions_.empty() && on_drained_) {
        auto done = std::move(on_drained_);
        on_drained_ = nullptr;
        done();
    }
}

void WorkerContext::closeAllSessions() {
    std::vector<DownstreamSession*> sessions(sessions_.begin(), sessions_.end());
    for (DownstreamSession* session : sessions) {
        session->abortConnection();
    }
}

DownstreamSession::DownstreamSession(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                                     const ListenerInfo& listener)
    : worker_(worker),
      client_address_(peer.hostString()),
      listener_(listener),
      id_(worker.next_connection_id++),
      parser_(*this, parserLimits(worker.snapshot->config->limits)),
      timer_(worker.loop, [this] { onTimer(); }) {
    bev_ = bufferevent_socket_new(worker.loop.base(), fd, BEV_OPT_CLOSE_ON_FREE);
    worker_.addSession(this);
    worker_.process_connections.fetch_add(1, std::memory_order_relaxed);
}

DownstreamSession::~DownstreamSession() {
    // Normally close() ran and queued this deletion; at shutdown the loop frees what is left.
    if (bev_ != nullptr) {
        bufferevent_free(bev_);
    }
}

void DownstreamSession::start() {
    net::setNoDelay(bufferevent_getfd(bev_));
    bufferevent_setcb(bev_, &DownstreamSession::onRead, &DownstreamSession::onWrite,
                      &DownstreamSession::onEvent, this);
    bufferevent_setwatermark(bev_, EV_READ, 0, kInputHighWater);
    bufferevent_setwatermark(bev_, EV_WRITE, kOutputLowWater, 0);
    const auto& limits = worker_.snapshot->config->limits;
    struct timeval send_tv = event::toTimeval(limits.send_timeout);
    bufferevent_set_timeouts(bev_, nullptr, &send_tv);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    // A new connection must send a complete head within the header timeout, like a request
    // that has started: an accepted-but-silent connection is the cheapest slowloris.
    armTimer(TimerMode::Header);
}

evbuffer* DownstreamSession::output() {
    return bufferevent_get_output(bev_);
}

std::size_t DownstreamSession::outputPending() const {
    return evbuffer_get_length(bufferevent_get_output(bev_));
}

void DownstreamSession::armTimer(TimerMode mode) {
    timer_mode_ = mode;
    if (mode == TimerMode::None) {
        timer_.cancel();
        return;
    }
    const auto& limits = worker_.snapshot->config->limits;
    timer_.arm(mode == TimerMode::Header ? limits.client_header_timeout
                                         : limits.client_idle_timeout);
}

void DownstreamSession::onTimer() {
    if (timer_mode_ == TimerMode::Header && parser_.inMessage()) {
        // RFC 9110 15.5.9: 408 tells the client we gave up waiting for its request.
        LOG_DEBUG("[w%u][c%llu] client header timeout", worker_.id,
                  static_cast<unsigned long long>(id_));
        sendError(408, "request header timeout", true);
        return;
    }
    // Idle keep-alive connection, or a connection that never sent a byte: close silently.
    close();
}

void DownstreamSession::onRead(bufferevent*, void* arg) {
    auto* self = static_cast<DownstreamSession*>(arg);
    try {
        self->processInput();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in client read");
        self->abortConnection();
    }
}

// The one place that feeds the parser and moves from one exchange to the next, so the parser
// is never reset from inside its own callbacks.
void DownstreamSession::processInput() {
    if (in_parser_) {
        return;  // re-entered from a callback: the outer loop carries on
    }
    evbuffer* in = bufferevent_get_input(bev_);
    while (!closed_ && !closing_) {
        if (request_complete_) {
            if (!response_done_) {
                break;  // pipelined bytes wait until this answer is queued
            }
            request_complete_ = false;
            response_done_ = false;
            parser_.nextMessage();
            armTimer(TimerMode::Idle);
            if (body_paused_) {
                body_paused_ = false;
                bufferevent_enable(bev_, EV_READ);
            }
        }
        if (body_paused_) {
            break;
        }
        std::size_t available = evbuffer_get_length(in);
        if (available == 0) {
            break;
        }
        if (!parser_.inMessage() && timer_mode_ != TimerMode::Header) {
            armTimer(TimerMode::Header);  // first byte of a new request starts the deadline
        }
        evbuffer_iovec chunk;
        if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) {
            break;
        }
        in_parser_ = true;
        auto result =
            parser_.feed(std::string_view(static_cast<const char*>(chunk.iov_base), chunk.iov_len));
        in_parser_ = false;
        if (closed_) {
            return;  // a callback closed the connection; `in` is gone
        }
        evbuffer_drain(in, result.consumed);
        if (result.status == http::ParseStatus::Error) {
            LOG_DEBUG("[w%u][c%llu] bad request: %s", worker_.id,
                      static_cast<unsigned long long>(id_), parser_.errorDetail().c_str());
            if (closing_) {
                return;  // already answering and closing
            }
            if (request_in_progress_ && transaction_ && !transaction_->canSendError()) {
                // The response has started; only a close can signal the error.
                abortConnection();
            } else {
                sendError(http::httpStatus(parser_.error()), parser_.errorDetail(), true);
            }
            return;
        }
        if (result.status == http::ParseStatus::Ok && result.consumed == 0) {
            break;
        }
    }
}

void DownstreamSession::onRequestHead(http::RequestHead&& head) {
    armTimer(TimerMode::None);
    request_in_progress_ = true;
    request_complete_ = false;
    response_done_ = false;
    started_ = std::chrono::steady_clock::now();
    const auto& limits = worker_.snapshot->config->limits;
    if (!head.keep_alive || worker_.draining()) {
        close_after_response_ = true;
    }
    if (head.method == "CONNECT") {
        logAccess(head.method, head.target, head.version_minor, 405, 0, {}, {}, {}, -1, started_);
        sendError(405, "CONNECT is not supported", true);
        return;
    }
    SnapshotPtr snapshot = worker_.snapshot;
    int route = snapshot->router.match(head.host, head.path, head.method);
    if (route < 0) {
        logAccess(head.method, head.target, head.version_minor, 404, 0, {}, {}, {}, -1, started_);
        // The body, if any, is read and dropped so the connection stays usable.
        sendError(404, "no route", false);
        return;
    }
    if (head.framing != http::BodyFraming::None) {
        // Body reads are subject to the body timeout, header reads are not.
        struct timeval body_tv = event::toTimeval(limits.client_body_timeout);
        struct timeval send_tv = event::toTimeval(limits.send_timeout);
        bufferevent_set_timeouts(bev_, &body_tv, &send_tv);
    }
    transaction_ =
        std::make_unique<Transaction>(*this, std::move(snapshot), route, std::move(head));
    transaction_->start();
}

void DownstreamSession::onRequestBody(std::string_view data) {
    if (transaction_) {
        transaction_->onClientBody(data);
        if (!transaction_->wantsMoreBody()) {
            pauseRequestBody();
        }
    }
    // No transaction: the request was answered locally; its body is dropped.
}

void DownstreamSession::onRequestComplete() {
    request_complete_ = true;
    const auto& limits = worker_.snapshot->config->limits;
    struct timeval send_tv = event::toTimeval(limits.send_timeout);
    bufferevent_set_timeouts(bev_, nullptr, &send_tv);
    if (transaction_) {
        transaction_->onClientBodyComplete();
    }
}

void DownstreamSession::pauseRequestBody() {
    if (!body_paused_) {
        body_paused_ = true;
        bufferevent_disable(bev_, EV_READ);
    }
}

void DownstreamSession::resumeRequestBody() {
    if (body_paused_ && !closed_ && !closing_) {
        body_paused_ = false;
        bufferevent_enable(bev_, EV_READ);
        processInput();
    }
}

void DownstreamSession::dropTransaction() {
    if (transaction_) {
        // Never destroyed inside its own callbacks.
        worker_.loop.deferredDelete(event::deferrable(std::move(transaction_)));
    }
}

void DownstreamSession::transactionDone() {
    dropTransaction();
    if (!request_complete_) {
        // The response ended before the request body did (e.g. an early 413 from the
        // upstream): the rest of the body cannot be told apart from a next request.
        close_after_response_ = true;
    }
    responseDone();
}

void DownstreamSession::responseDone() {
    request_in_progress_ = false;
    response_done_ = true;
    if (close_after_response_ || worker_.draining()) {
        closing_ = true;
        timer_.cancel();
        bufferevent_disable(bev_, EV_READ);
        finishIfFlushed();
        return;
    }
    if (!request_complete_) {
        // A locally answered request whose body is still arriving: read and drop it.
        armTimer(TimerMode::None);
    }
    processInput();  // moves to the next exchange; a pipelined request may be buffered
}

void DownstreamSession::sendError(int status, std::string_view detail, bool close) {
    (void)detail;
    if (transaction_) {
        transaction_->abort();
        dropTransaction();
    }
    std::string_view reason = http::reasonPhrase(status);
    std::string body = std::to_string(status) + " " + std::string(reason) + "\n";
    std::string out;
    http::appendStatusLine(out, status, reason, 1);
    out += "Content-Type: text/plain\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += "\r\nCache-Status: strata; fwd=bypass\r\n";
    if (close || worker_.draining()) {
        close_after_response_ = true;
    }
    if (close_after_response_) {
        out += "Connection: close\r\n";
    }
    out += "\r\n";
    out += body;
    evbuffer_add(output(), out.data(), out.size());
    responseDone();
}

void DownstreamSession::logAccess(std::string_view method, std::string_view target,
                                  int version_minor, int status, std::uint64_t bytes,
                                  std::string_view referer, std::string_view user_agent,
                                  std::string_view upstream, double upstream_s,
                                  std::chrono::steady_clock::time_point started) {
    if (!worker_.access_log.enabled()) {
        return;
    }
    AccessRecord record;
    record.client = client_address_;
    record.method = method;
    record.target = target;
    record.version_minor = version_minor;
    record.status = status;
    record.bytes_sent = bytes;
    record.referer = referer;
    record.user_agent = user_agent;
    record.upstream = upstream;
    record.upstream_s = upstream_s;
    record.duration_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    worker_.access_log.append(record);
}

void DownstreamSession::onWrite(bufferevent*, void* arg) {
    auto* self = static_cast<DownstreamSession*>(arg);
    if (self->closing_) {
        self->finishIfFlushed();
        return;
    }
    if (self->transaction_) {
        self->transaction_->onClientWritable();
    }
}

void DownstreamSession::finishIfFlushed() {
    if (!closed_ && evbuffer_get_length(output()) == 0) {
        close();
    }
}

void DownstreamSession::onEvent(bufferevent*, short what, void* arg) {
    auto* self = static_cast<DownstreamSession*>(arg);
    if ((what & BEV_EVENT_EOF) != 0 && self->closing_) {
        self->close();
        return;
    }
    // EOF, error, body read timeout, send timeout: the client is gone or stuck; nothing more
    // can be delivered.
    self->abortConnection();
}

void DownstreamSession::abortConnection() {
    if (transaction_) {
        transaction_->abort();
        dropTransaction();
    }
    close();
}

void DownstreamSession::closeIfIdle() {
    if (closed_) {
        return;
    }
    close_after_response_ = true;
    if (!request_in_progress_ && !parser_.inMessage()) {
        close();
    }
}

void DownstreamSession::close() {
    if (closed_) {
        return;
    }
    closed_ = true;
    timer_.cancel();
    if (transaction_) {
        transaction_->abort();
        dropTransaction();
    }
    if (bev_ != nullptr) {
        bufferevent_free(bev_);
        bev_ = nullptr;
    }
    worker_.process_connections.fetch_sub(1, std::memory_order_relaxed);
    worker_.removeSession(this);
    worker_.loop.deferredDelete(event::DeferredDeletablePtr(this));
}

}  // namespace strata::proxy
