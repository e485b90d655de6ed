#include "strata/proxy/downstream_session.h"

#include <algorithm>
#include <memory>
#include <vector>

#include <event2/buffer.h>

#include "strata/common/assert.h"
#include "strata/common/log.h"
#include "strata/http/message.h"
#include "strata/http/response_out.h"
#include "strata/proxy/h2_session.h"
#include "strata/proxy/real_client.h"
#include "strata/proxy/transaction.h"
#include "strata/proxy/upgrade.h"

#include "chunked.h"
#include "client_limits.h"

namespace strata::proxy {
namespace {

// Reads stop when this much unparsed input is buffered (pipelined requests, a body the upstream
// is not taking yet): bounds memory per connection.
constexpr std::size_t kInputHighWater = 64 * 1024;
// The upstream is resumed once the client's unsent output drains below this.
constexpr std::size_t kOutputLowWater = 64 * 1024;

constexpr auto kNever = std::chrono::steady_clock::time_point::max();
// A plain keep-alive connection idle this long parks (ParkedConnection): it gives back its
// session until its next byte. Long enough that a client sending its next request at once
// (benchmarks, pipelines, browsers loading a page) never pays for the round trip; short
// enough that connections held open for minutes cost the parked size almost all the time.
constexpr auto kParkAfter = std::chrono::milliseconds(250);
// A body up to this size is copied in behind its response head rather than into a chain of
// its own, so the answer leaves in one send().
constexpr std::uint64_t kContiguousBodyBytes = 16 * 1024;

// RFC 9113 3.4: what an HTTP/2 client sends first, which no HTTP/1 request line can be.
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Access records between exchanges, per worker thread: they keep their strings' capacity, so
// a busy worker stops allocating for them, while an idle connection holds none.
constexpr std::size_t kParkedAccessRecords = 256;
thread_local std::vector<std::unique_ptr<DownstreamSession::PendingAccess>> parked_access;

std::unique_ptr<DownstreamSession::PendingAccess> takePendingAccess() {
    if (parked_access.empty()) {
        return std::make_unique<DownstreamSession::PendingAccess>();
    }
    std::unique_ptr<DownstreamSession::PendingAccess> access = std::move(parked_access.back());
    parked_access.pop_back();
    return access;
}

void returnPendingAccess(std::unique_ptr<DownstreamSession::PendingAccess> access) {
    if (parked_access.size() < kParkedAccessRecords) {
        parked_access.push_back(std::move(access));
    }
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
    ParkedConnection::closeAll(*this);  // idle by definition
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

void WorkerContext::addBackground(std::unique_ptr<event::DeferredDeletable> task) {
    event::DeferredDeletable* key = task.get();
    background_.emplace(key, std::move(task));
}

void WorkerContext::removeBackground(event::DeferredDeletable* task) {
    auto it = background_.find(task);
    if (it != background_.end()) {
        // Called from the task's own callbacks: free it on a later iteration.
        loop.deferredDelete(std::move(it->second));
        background_.erase(it);
    }
}

void WorkerContext::closeAllSessions() {
    std::vector<DownstreamSession*> sessions(sessions_.begin(), sessions_.end());
    for (DownstreamSession* session : sessions) {
        session->abortConnection();
    }
    ParkedConnection::closeAll(*this);
}

DownstreamSession::DownstreamSession(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                                     const ListenerInfo& listener, net::TlsServerContextPtr tls,
                                     const net::SocketAddress& local)
    : DownstreamSession(worker, fd, peer, listener, std::move(tls), local,
                        worker.next_connection_id++) {
    worker_.process_connections.fetch_add(1, std::memory_order_relaxed);
}

DownstreamSession::DownstreamSession(WorkerContext& worker,
                                     const ParkedConnection::Identity& identity)
    : DownstreamSession(worker, identity.fd, identity.peer, identity.listener, nullptr,
                        identity.local, identity.id) {
    holds_client_slot_ = identity.holds_client_slot;
    preface_checked_ = true;  // it has spoken HTTP/1.1 already
}

DownstreamSession::DownstreamSession(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                                     const ListenerInfo& listener, net::TlsServerContextPtr tls,
                                     const net::SocketAddress& local, std::uint64_t id)
    : worker_(worker),
      tls_(std::move(tls)),
      connection_(worker.loop, fd, tls_ ? tls_->newSsl(fd) : nullptr,
                  tls_ ? &tls_->handshakes() : nullptr),
      client_address_(peer.hostString()),
      peer_(peer),
      local_(local),
      listener_(listener),
      id_(id),
      parser_(*this, parserLimits(worker.snapshot->config->limits)),
      timer_(
          worker.loop, [this] { onTimer(); }, [this] { abortConnection(); }),
      read_deadline_(kNever),
      send_deadline_(kNever),
      park_at_(kNever) {
    worker_.addSession(this);
}

void DownstreamSession::resume(WorkerContext& worker, const ParkedConnection::Identity& identity) {
    auto* session = new DownstreamSession(worker, identity);
    // From here the session owns the socket and itself (deferredDelete), as after accept.
    session->connection_.setInputLimit(kInputHighWater);
    session->connection_.setOutputLowWater(kOutputLowWater);
    session->connection_.setCallbacks(session);
    session->setReadDeadline(ReadDeadline::Idle);  // a wake without a byte parks again
    session->connection_.assumeReadable();
    session->onReadable();
}

bool DownstreamSession::canPark() const {
    return !closed_ && !closing_ && !close_after_response_ && !worker_.draining() && !tls_ &&
           !h2_ && !tunnel_ && !transaction_ && !pending_ && !request_in_progress_ &&
           !request_complete_ && !body_paused_ && read_mode_ == ReadDeadline::Idle &&
           !parser_.inMessage() && connection_.outputLength() == 0 &&
           connection_.inputLength() == 0 && !connection_.peerClosed() && !connection_.failed() &&
           ParkedConnection::fits(peer_) && ParkedConnection::fits(local_);
}

void DownstreamSession::park() {
    const auto idle_left =
        std::chrono::ceil<std::chrono::milliseconds>(read_deadline_ - event::loopTime());
    recordReceivedBytes();
    closed_ = true;
    timer_.cancel();
    ParkedConnection::Identity identity{connection_.releaseSocket(), id_, peer_, local_, listener_,
                                        holds_client_slot_};
    worker_.removeSession(this);
    worker_.loop.deferredDelete(event::DeferredDeletablePtr(this));
    ParkedConnection::park(worker_, std::move(identity), idle_left);
}

DownstreamSession::~DownstreamSession() = default;

void DownstreamSession::startH2() {
    read_mode_ = ReadDeadline::None;
    read_deadline_ = kNever;
    send_deadline_ = kNever;
    timer_.cancel();  // the HTTP/2 session keeps its own deadlines
    if (worker_.metrics != nullptr) {
        worker_.metrics->http2(metrics::H2Event::Connection);
    }
    h2_ = std::make_unique<H2Session>(*this);
    h2_->start();
}

bool DownstreamSession::checkPreface() {
    evbuffer* in = connection_.input();
    const std::size_t available = evbuffer_get_length(in);
    const std::size_t n = std::min(available, kH2Preface.size());
    const auto* head = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ssize_t>(n)));
    if (n > 0 && std::string_view(head, n) != kH2Preface.substr(0, n)) {
        preface_checked_ = true;
        if (!listener_.http1) {
            close();  // h2 only: anything but the preface is not spoken here
        }
        return true;
    }
    if (n < kH2Preface.size()) {
        return false;  // a prefix of the preface so far: wait for the rest
    }
    preface_checked_ = true;
    startH2();
    return true;
}

void DownstreamSession::start() {
    net::setNoDelay(connection_.fd());
    connection_.setInputLimit(kInputHighWater);
    connection_.setOutputLowWater(kOutputLowWater);
    connection_.setCallbacks(this);
    if (tls_ && connection_.ssl() == nullptr) {
        close();  // SSL_new failed (out of memory): never fall back to plain text
        return;
    }
    if (connection_.handshaking()) {
        // The handshake has its own, usually shorter, deadline; the header timeout starts
        // once it is done (onConnected).
        read_mode_ = ReadDeadline::Header;
        read_deadline_ = event::loopTime() + tls_->handshakeTimeout();
        scheduleTimer();
        return;
    }
    // A new connection must send a complete head within the header timeout, like a request
    // that has started: an accepted-but-silent connection is the cheapest slowloris.
    setReadDeadline(ReadDeadline::Header);
}

const net::SocketAddress& DownstreamSession::localAddress() {
    if (local_.length == 0 && !connection_.closed()) {
        local_ = net::localAddress(connection_.fd());  // a syscall only PROXY upstreams need
    }
    return local_;
}

const std::string& DownstreamSession::forwardSubjectHeader() const {
    static const std::string kNone;
    return tls_ ? tls_->forwardSubjectHeader() : kNone;
}

void DownstreamSession::onConnected(bool ok) {
    if (!ok || closed_) {
        return;  // a failed handshake arrives as onError()
    }
    std::string_view version = connection_.tlsVersion();
    tls_version_ = version == "TLSv1.3" ? "1.3" : version == "TLSv1.2" ? "1.2" : "other";
    if (worker_.metrics != nullptr) {
        worker_.metrics->tlsHandshake(metrics::TlsResult::Ok,
                                      version == "TLSv1.3"   ? metrics::TlsVersion::Tls13
                                      : version == "TLSv1.2" ? metrics::TlsVersion::Tls12
                                                             : metrics::TlsVersion::Other);
    }
    tls_cipher_ = connection_.tlsCipher();
    if (connection_.alpn() == "h2") {
        startH2();
        return;
    }
    if (!listener_.http1) {
        close();  // the client offered no protocol this listener speaks
        return;
    }
    setReadDeadline(ReadDeadline::Header);
}

evbuffer* DownstreamSession::output() {
    return connection_.output();
}

std::size_t DownstreamSession::outputPending() const {
    return connection_.outputLength();
}

void DownstreamSession::flushOutput() {
    if (closed_) {
        return;
    }
    connection_.flush();
    if (connection_.failed()) {
        return;  // onError() follows
    }
    if (connection_.outputLength() > 0) {
        if (send_deadline_ == kNever) {
            setSendDeadline(true);
        }
    } else if (closing_) {
        close();
    }
}

void DownstreamSession::scheduleTimer() {
    // event::Timer keeps its deadline lazily, so moving it on every request is cheap.
    const auto due = std::min({read_deadline_, send_deadline_, park_at_});
    if (due == kNever) {
        timer_.cancel();
        return;
    }
    const auto delay = std::chrono::ceil<std::chrono::milliseconds>(due - event::loopTime());
    timer_.arm(std::max(delay, std::chrono::milliseconds(0)));
}

void DownstreamSession::setReadDeadline(ReadDeadline mode) {
    read_mode_ = mode;
    park_at_ = mode == ReadDeadline::Idle && !tls_ ? event::loopTime() + kParkAfter : kNever;
    if (mode == ReadDeadline::None) {
        read_deadline_ = kNever;
        scheduleTimer();
        return;
    }
    const auto& limits = worker_.snapshot->config->limits;
    std::chrono::milliseconds timeout = limits.client_header_timeout;
    if (mode == ReadDeadline::Idle) {
        timeout = limits.client_idle_timeout;
    } else if (mode == ReadDeadline::Body) {
        timeout = limits.client_body_timeout;
    }
    read_deadline_ = event::loopTime() + timeout;
    scheduleTimer();
}

void DownstreamSession::setSendDeadline(bool waiting) {
    send_deadline_ =
        waiting ? event::loopTime() + worker_.snapshot->config->limits.send_timeout : kNever;
    scheduleTimer();
}

void DownstreamSession::onTimer() {
    auto now = event::loopTime();
    if (send_deadline_ <= now) {
        LOG_DEBUG("[w%u][c%llu] client send timeout", worker_.id,
                  static_cast<unsigned long long>(id_));
        abortConnection();
        return;
    }
    if (park_at_ <= now && read_deadline_ > now) {
        if (canPark()) {
            park();
            return;
        }
        park_at_ = now + kParkAfter;  // e.g. the answer is still leaving: try again later
    }
    if (read_deadline_ <= now) {
        switch (read_mode_) {
            case ReadDeadline::Header:
                if (parser_.inMessage() && !closing_) {
                    // RFC 9110 15.5.9: 408 tells the client we gave up waiting for its request.
                    LOG_DEBUG("[w%u][c%llu] client header timeout", worker_.id,
                              static_cast<unsigned long long>(id_));
                    logRejected(408);
                    answerError(408, "request header timeout", true);
                    return;
                }
                close();  // a connection that never sent a byte
                return;
            case ReadDeadline::Idle:
                close();
                return;
            case ReadDeadline::Body:
                LOG_DEBUG("[w%u][c%llu] client body timeout", worker_.id,
                          static_cast<unsigned long long>(id_));
                abortConnection();
                return;
            case ReadDeadline::None:
                break;
        }
    }
    scheduleTimer();
}

void DownstreamSession::onReadable() {
    try {
        if (h2_) {
            h2_->onReadable();
            return;
        }
        if (tunnel_) {
            tunnel_->onClientReadable();
            return;
        }
        processInput();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in client read");
        abortConnection();
    }
}

void DownstreamSession::onError() {
    if (connection_.handshaking() && worker_.metrics != nullptr) {
        worker_.metrics->tlsHandshake(metrics::TlsResult::Failed, metrics::TlsVersion::Other);
    }
    if (!connection_.tlsError().empty() && connection_.handshaking()) {
        LOG_DEBUG("[w%u][c%llu] TLS handshake failed: %s", worker_.id,
                  static_cast<unsigned long long>(id_), connection_.tlsError().c_str());
    }
    abortConnection();
}

// The one place that feeds the parser and moves from one exchange to the next, so the parser
// is never reset from inside its own callbacks.
void DownstreamSession::processInput() {
    if (in_parser_) {
        return;  // re-entered from a callback: the outer loop carries on
    }
    evbuffer* in = connection_.input();
    if (listener_.h2c && !preface_checked_) {
        while (!checkPreface()) {
            if (connection_.peerClosed() || connection_.failed()) {
                abortConnection();
                return;
            }
            if (!connection_.readMore()) {
                return;  // more of the preface later
            }
        }
        if (h2_ || closed_) {
            return;
        }
    }
    while (!closed_ && !closing_) {
        if (request_complete_) {
            if (!response_done_) {
                break;  // pipelined bytes wait until this answer is queued
            }
            request_complete_ = false;
            response_done_ = false;
            recordReceivedBytes();
            route_slot_ = metrics::kNoRoute;  // until the next head names a route
            route_name_ = {};
            parser_.nextMessage();
            setReadDeadline(ReadDeadline::Idle);
        }
        if (body_paused_) {
            break;
        }
        std::size_t available = evbuffer_get_length(in);
        if (available == 0) {
            if (connection_.readMore()) {
                continue;
            }
            break;
        }
        if (!parser_.inMessage()) {
            setReadDeadline(ReadDeadline::Header);  // a new request's first byte
        } else if (read_mode_ == ReadDeadline::Body) {
            setReadDeadline(ReadDeadline::Body);  // progress on the body
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
            return;
        }
        evbuffer_drain(in, result.consumed);
        received_bytes_ += result.consumed;
        if (result.status == http::ParseStatus::Error) {
            LOG_DEBUG("[w%u][c%llu] bad request: %s", worker_.id,
                      static_cast<unsigned long long>(id_), parser_.errorDetail().c_str());
            if (parser_.error() == http::ParseError::UnderscoreField &&
                worker_.metrics != nullptr) {
                worker_.metrics->underscoreFields(metrics::UnderscoreAction::Rejected);
            }
            if (closing_) {
                return;  // already answering and closing
            }
            if (request_in_progress_ && transaction_ && !transaction_->canSendError()) {
                // The response has started; only a close can signal the error.
                abortConnection();
            } else {
                int status = http::httpStatus(parser_.error());
                logRejected(status);
                answerError(status, parser_.errorDetail(), true);
            }
            return;
        }
        if (result.status == http::ParseStatus::Ok && result.consumed == 0) {
            break;
        }
    }
    if (closed_) {
        return;
    }
    if (connection_.peerClosed() && !closing_ && !body_paused_ && evbuffer_get_length(in) == 0) {
        // The client half-closed. Whatever it sent is parsed; an answer in progress can still
        // be written, but nothing more will come, so the connection ends after it.
        if (request_in_progress_ && request_complete_) {
            close_after_response_ = true;
        } else {
            abortConnection();
        }
        return;
    }
    if (connection_.failed()) {
        abortConnection();
    }
}

void DownstreamSession::onRequestHead(http::RequestHead&& head) {
    request_in_progress_ = true;
    request_has_body_ = head.framing != http::BodyFraming::None;
    request_minor_ = head.version_minor;
    request_complete_ = false;
    response_done_ = false;
    started_ = event::loopTime();
    route_slot_ = metrics::kNoRoute;
    route_name_ = {};
    request_id_ = worker_.request_ids.next();
    adopted_request_id_.clear();
    cache_result_ = metrics::CacheResult::Bypass;
    if (head.underscore_fields_dropped > 0 && worker_.metrics != nullptr) {
        worker_.metrics->underscoreFields(metrics::UnderscoreAction::Dropped,
                                          head.underscore_fields_dropped);
    }
    if (!head.keep_alive || worker_.draining()) {
        close_after_response_ = true;
    }
    if (head.method == "CONNECT") {
        setReadDeadline(ReadDeadline::None);
        logAccess(head.method, head.target, head.host, head.version_minor, 405, 0, {}, {}, {}, -1,
                  started_);
        answerError(405, "CONNECT is not supported", true);
        return;
    }
    SnapshotPtr snapshot = worker_.snapshot;
    const net::SocketAddress client = requestClient(
        peer_, head.fields,
        snapshot->any_trusted_proxies ? snapshot->listenerConfig(listener_.name) : nullptr);
    int route = snapshot->router.match(routeRequest(head, listener_.name, &client));
    if (route < 0) {
        setReadDeadline(head.framing == http::BodyFraming::None ? ReadDeadline::None
                                                                : ReadDeadline::Body);
        logAccess(head.method, head.target, head.host, head.version_minor, 404, 0, {}, {}, {}, -1,
                  started_);
        // The body, if any, is read and dropped so the connection stays usable.
        answerError(404, "no route", false);
        return;
    }
    setReadDeadline(head.framing == http::BodyFraming::None ? ReadDeadline::None
                                                            : ReadDeadline::Body);
    route_slot_ = snapshot->route(route).metric_slot;
    route_name_ = snapshot->route(route).name;
    UpgradeDecision upgrade = classifyUpgrade(head, *snapshot->route(route).config);
    if (upgrade.verdict == UpgradeDecision::Verdict::Refused ||
        upgrade.verdict == UpgradeDecision::Verdict::Invalid) {
        const bool refused = upgrade.verdict == UpgradeDecision::Verdict::Refused;
        if (worker_.metrics != nullptr) {
            worker_.metrics->tunnel(route_slot_, refused ? metrics::TunnelResult::Refused
                                                         : metrics::TunnelResult::Invalid);
        }
        const int status = refused ? 403 : 400;
        logAccess(head.method, head.target, head.host, head.version_minor, status, 0, {}, {}, {},
                  -1, started_);
        // A broken handshake may be an attempt to smuggle: the connection ends with the answer.
        answerError(status, upgrade.detail, !refused);
        return;
    }
    transaction_ =
        std::make_unique<Transaction>(*this, std::move(snapshot), route, std::move(head));
    if (upgrade.verdict == UpgradeDecision::Verdict::Tunnel) {
        transaction_->setUpgrade(std::move(upgrade.protocol));
    }
    transaction_->start();
}

void DownstreamSession::onRequestBody(std::string_view data) {
    if (transaction_) {
        transaction_->onClientBody(data);
        if (transaction_ && !transaction_->wantsMoreBody()) {  // it may have answered
            pauseRequestBody();
        }
    }
    // No transaction: the request was answered locally; its body is dropped.
}

void DownstreamSession::onRequestComplete() {
    request_complete_ = true;
    if (read_mode_ == ReadDeadline::Body) {
        setReadDeadline(ReadDeadline::None);
    }
    if (transaction_) {
        transaction_->onClientBodyComplete();
    }
}

void DownstreamSession::pauseRequestBody() {
    // Parsing stops; the connection stops reading by itself once its input limit is reached,
    // and the kernel's receive window then throttles the client.
    body_paused_ = true;
}

void DownstreamSession::resumeRequestBody() {
    if (body_paused_ && !closed_ && !closing_) {
        body_paused_ = false;
        processInput();  // resumes socket reads once the buffered input is consumed
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
    if (!request_complete_ && request_has_body_) {
        // The response ended before the request body did (e.g. an early 413 from the
        // upstream): the rest of the body cannot be told apart from a next request.
        close_after_response_ = true;
    }
    responseDone();
}

void DownstreamSession::responseDone() {
    request_in_progress_ = false;
    response_done_ = true;
    settleSentBytes();
    queued_mark_ = connection_.bytesSent() + connection_.outputLength();
    if (close_after_response_ || worker_.draining()) {
        closing_ = true;
        connection_.pauseReading();
        connection_.setOutputLowWater(0);  // be told when the last byte left
        flushOutput();
        if (!closed_) {
            finishAccessLogIfFlushed();
        }
        return;
    }
    flushOutput();
    finishAccessLogIfFlushed();
    processInput();  // moves to the next exchange; a pipelined request may be buffered
}

void DownstreamSession::startTunnel(const http::ResponseHead& /*upstream_head*/, std::string head,
                                    upstream::UpstreamConnectionPtr upstream,
                                    std::chrono::milliseconds idle_timeout) {
    dropTransaction();
    request_in_progress_ = false;
    read_mode_ = ReadDeadline::None;
    read_deadline_ = kNever;
    send_deadline_ = kNever;
    timer_.cancel();  // the tunnel's idle timeout replaces the session's deadlines
    if (pending_) {
        // logAccess() just ran for the 101; its line waits for the tunnel's end (close()).
        pending_->tunnel = true;
    }
    if (worker_.metrics != nullptr) {
        worker_.metrics->tunnel(route_slot_, metrics::TunnelResult::Opened);
    }
    evbuffer_add(output(), head.data(), head.size());
    // Bytes the client sent behind its request head are still in the input: only now, after
    // the 101, does the tunnel pass them on.
    tunnel_ = std::make_unique<Tunnel>(
        worker_.loop, connection_, std::move(upstream), idle_timeout, [this](Tunnel::End how) {
            if (how == Tunnel::End::IdleTimeout) {
                LOG_DEBUG("[w%u][c%llu] tunnel idle timeout", worker_.id,
                          static_cast<unsigned long long>(id_));
            }
            close();
        });
    connection_.flush();
    if (connection_.failed()) {
        close();
        return;
    }
    tunnel_->start();
}

void DownstreamSession::finishTunnel() {
    if (!tunnel_ || tunnel_finished_) {
        return;
    }
    tunnel_finished_ = true;
    if (pending_) {
        pending_->tunnel_up = tunnel_->bytesUp();
        pending_->tunnel_down = tunnel_->bytesDown();
        pending_->bytes = tunnel_->bytesDown();
    }
    if (worker_.metrics != nullptr) {
        worker_.metrics->tunnelClosed(tunnel_->bytesUp(), tunnel_->bytesDown());
    }
    tunnel_->close();
}

void DownstreamSession::sendInterim(const http::OutgoingResponse& head) {
    // HTTP/1.0 clients do not know 1xx answers (RFC 9110 15.2).
    if (request_minor_ >= 1) {
        std::string out;
        http::appendHttp1ResponseHead(out, head, request_minor_, false);
        evbuffer_add(output(), out.data(), out.size());
        flushOutput();
    }
}

void DownstreamSession::sendHead(const http::OutgoingResponse& head) {
    if (worker_.draining()) {
        close_after_response_ = true;
    }
    std::string out;
    out.reserve(head.serialized_http1.size() + 256);
    http::Http1Framing framing =
        http::appendHttp1ResponseHead(out, head, request_minor_, close_after_response_);
    close_after_response_ = framing.close;
    response_chunked_ = framing.chunked;
    if (head.body == http::ResponseBody::Length && !head.head_only &&
        head.content_length <= kContiguousBodyBytes) {
        // Room for the body behind the head: one chain, so the answer leaves in one send().
        evbuffer_expand(output(), out.size() + head.content_length);
    }
    evbuffer_add(output(), out.data(), out.size());
}

void DownstreamSession::sendBody(std::string_view data) {
    if (response_chunked_) {
        appendChunk(output(), data);
    } else {
        evbuffer_add(output(), data.data(), data.size());
    }
}

void DownstreamSession::sendBody(const cache::BodyPtr& body, std::uint64_t offset,
                                 std::uint64_t length) {
    STRATA_ASSERT(offset <= body->size() && length <= body->size() - offset);  // the planner's
    if (length == 0) {
        return;  // evbuffer_add_reference would never call the cleanup, leaking the reference
    }
    const std::string_view slice(body->data() + offset, static_cast<std::size_t>(length));
    if (response_chunked_) {
        sendBody(slice);
        return;
    }
    // Zero copy: the evbuffer holds a reference to the stored body until it is sent; each
    // slice its own, as a multipart answer has several into one block.
    evbuffer_add_reference(output(), slice.data(), slice.size(), &cache::releaseBody,
                           cache::retainBody(body));
}

void DownstreamSession::endResponse() {
    if (response_chunked_) {
        evbuffer_add(output(), http::kLastChunk.data(), http::kLastChunk.size());
        response_chunked_ = false;
    }
    transactionDone();
}

void DownstreamSession::sendError(int status, std::string_view detail,
                                  std::string_view cache_status) {
    // A request body not read to its end cannot be told apart from a next request.
    answerError(status, detail, request_has_body_ && !request_complete_, cache_status);
}

void DownstreamSession::answerError(int status, std::string_view detail, bool close,
                                    std::string_view cache_status) {
    // The client sees only the status; the reason goes to the error log. A client's own
    // mistake is routine (debug); a 5xx is strata's or the origin's and worth a warning, at
    // most one a second per worker so a failing origin cannot flood the log.
    if (status >= 500) {
        static thread_local std::chrono::steady_clock::time_point last_warning;
        const auto now = event::loopTime();
        if (now - last_warning >= std::chrono::seconds(1)) {
            last_warning = now;
            LOG_WARN("[w%u][c%llu] answered %d: %.*s", worker_.id,
                     static_cast<unsigned long long>(id_), status, static_cast<int>(detail.size()),
                     detail.data());
        }
    } else {
        LOG_DEBUG("[w%u][c%llu] answered %d: %.*s", worker_.id,
                  static_cast<unsigned long long>(id_), status, static_cast<int>(detail.size()),
                  detail.data());
    }
    if (transaction_) {
        transaction_->abort();
        // Deferred: `cache_status` may point into the transaction and stays valid here.
        dropTransaction();
    }
    const http::ErrorAnswer answer(status, cache_status);
    if (close || worker_.draining()) {
        close_after_response_ = true;
    }
    response_chunked_ = false;
    std::string out;
    http::Http1Framing framing =
        http::appendHttp1ResponseHead(out, answer.head(), request_minor_, close_after_response_);
    close_after_response_ = framing.close;
    out += answer.body();
    evbuffer_add(output(), out.data(), out.size());
    if (pending_) {
        pending_->bytes = answer.body().size();  // logAccess() came first; this is the body it sent
    }
    responseDone();
}

void DownstreamSession::logAccess(std::string_view method, std::string_view target,
                                  std::string_view host, int version_minor, int status,
                                  std::uint64_t bytes, std::string_view referer,
                                  std::string_view user_agent, std::string_view upstream,
                                  double upstream_s,
                                  std::chrono::steady_clock::time_point started) {
    // The one place every exchange ends, proxied or answered locally. The line and the metrics
    // are written once the last byte is handed to the kernel (finishAccessLog), so a slow
    // client's time is counted. The strings are copied: the transaction is gone by then, and
    // parked records keep their capacity, so the copies stop allocating after the first requests.
    finishAccessLog();  // a pipelined exchange's answer queued behind the previous one
    pending_ = takePendingAccess();
    const bool logged = worker_.access_log.enabled();
    recordAccess(*pending_, logged, method, target, host, version_minor, status, bytes, referer,
                 user_agent, upstream, upstream_s, started);
    pending_->sent_settled = false;
    // A parked record may have ended a tunnel.
    pending_->tunnel = false;
    pending_->tunnel_up = 0;
    pending_->tunnel_down = 0;
    pending_->route_slot = route_slot_;
    pending_->cache_result = cache_result_;
    pending_->request_id = request_id_;
    pending_->adopted_request_id.swap(adopted_request_id_);
    adopted_request_id_.clear();
    if (logged) {
        pending_->route.assign(route_name_);
        pending_->client.assign(real_client_);
    }
    real_client_.clear();
}

void DownstreamSession::recordAccess(PendingAccess& out, bool logged, std::string_view method,
                                     std::string_view target, std::string_view host,
                                     int version_minor, int status, std::uint64_t bytes,
                                     std::string_view referer, std::string_view user_agent,
                                     std::string_view upstream, double upstream_s,
                                     std::chrono::steady_clock::time_point started) {
    out.started = started;
    out.version_minor = version_minor;
    out.status = status;
    out.bytes = bytes;
    out.upstream_s = upstream_s;
    out.method_class = metrics::methodClass(method);
    if (logged) {
        out.host.assign(host);
        out.method.assign(method);
        out.target.assign(target);
        out.referer.assign(referer);
        out.user_agent.assign(user_agent);
        out.upstream.assign(upstream);
    }
}

void DownstreamSession::logRejected(int status) {
    if (transaction_) {
        // The body broke a request that was routed: its head is the transaction's.
        const http::RequestHead& request = transaction_->request();
        logAccess(request.method, request.target, request.host, request.version_minor, status, 0,
                  {}, {}, {}, -1, started_);
        return;
    }
    // No head was taken: a new exchange, on no route, logged with what the parser had read.
    request_id_ = worker_.request_ids.next();
    adopted_request_id_.clear();
    route_slot_ = metrics::kNoRoute;
    route_name_ = {};
    const http::RequestParser::StartLine line = parser_.startLineSoFar();
    logAccess(line.method.empty() ? std::string_view("-") : line.method,
              line.target.empty() ? std::string_view("-") : line.target, {}, line.version_minor,
              status, 0, {}, {}, {}, -1, event::loopTime());
}

void DownstreamSession::settleSentBytes() {
    if (!pending_ || pending_->sent_settled) {
        return;
    }
    // A closed connection dropped what the socket had not taken.
    const std::uint64_t queued =
        connection_.bytesSent() + (closed_ ? 0 : connection_.outputLength());
    pending_->sent_bytes = queued > queued_mark_ ? queued - queued_mark_ : 0;
    pending_->sent_settled = true;
    queued_mark_ = queued;
}

void DownstreamSession::recordReceivedBytes() {
    if (received_bytes_ > 0 && worker_.metrics != nullptr) {
        worker_.metrics->receivedBytes(route_slot_, received_bytes_);
    }
    received_bytes_ = 0;
}

void DownstreamSession::finishAccessLogIfFlushed() {
    if (!pending_) {
        return;
    }
    if (connection_.outputLength() == 0) {
        finishAccessLog();
        return;
    }
    connection_.setOutputLowWater(0);  // onWritable() once the last byte left
}

void DownstreamSession::finishAccessLog() {
    if (!pending_) {
        return;
    }
    settleSentBytes();
    std::unique_ptr<PendingAccess> access = std::move(pending_);
    if (!closing_) {
        connection_.setOutputLowWater(kOutputLowWater);
    }
    writeAccess(*access);
    returnPendingAccess(std::move(access));
}

void DownstreamSession::writeAccess(const PendingAccess& access) {
    const auto now = event::loopTime();
    const double duration_s = std::chrono::duration<double>(now - access.started).count();
    if (worker_.metrics != nullptr) {
        worker_.metrics->request(
            access.route_slot, listener_.metric_slot, access.method_class, access.status,
            access.cache_result, duration_s,
            access.version_major == 2 ? metrics::Protocol::H2 : metrics::Protocol::Http1);
        worker_.metrics->sentBytes(access.route_slot, access.sent_bytes);
    }
    if (!worker_.access_log.enabled()) {
        return;
    }
    AccessRecord record;
    record.client =
        access.client.empty() ? std::string_view(client_address_) : std::string_view(access.client);
    record.method = access.method;
    record.target = access.target;
    record.version_minor = access.version_minor;
    record.version_major = access.version_major;
    record.status = access.status;
    record.bytes_sent = access.bytes;
    record.referer = access.referer;
    record.user_agent = access.user_agent;
    record.upstream = access.upstream;
    record.upstream_s = access.upstream_s;
    record.duration_s = duration_s;
    record.cache = metrics::name(access.cache_result);
    record.tls_version = tls_version_;
    record.tls_cipher = tls_cipher_;
    record.host = access.host;
    record.route = access.route;
    record.listener = listener_.name;
    record.request_id =
        access.adopted_request_id.empty() ? view(access.request_id) : access.adopted_request_id;
    record.tunnel = access.tunnel;
    record.tunnel_bytes_up = access.tunnel_up;
    record.tunnel_bytes_down = access.tunnel_down;
    worker_.access_log.append(record);
}

void DownstreamSession::onWritable() {
    if (closed_) {
        return;
    }
    if (h2_) {
        h2_->onWritable();
        return;
    }
    if (tunnel_) {
        tunnel_->onClientWritable();
        return;
    }
    if (connection_.outputLength() == 0) {
        setSendDeadline(false);
        finishAccessLog();
        if (closing_) {
            close();
            return;
        }
    } else {
        setSendDeadline(true);  // progress: the client is reading
    }
    if (transaction_) {
        transaction_->onClientWritable();
    }
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
    if (h2_) {
        h2_->drain();
        return;
    }
    if (tunnel_) {
        return;  // runs until it ends, or limits.drain_timeout closes every connection
    }
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
    if (h2_) {
        h2_->closeAll();  // each stream logs its exchange and drops its transaction
    }
    finishTunnel();
    finishAccessLog();  // the client left or is closed on: the exchange ends now
    recordReceivedBytes();
    if (transaction_) {
        transaction_->abort();
        dropTransaction();
    }
    connection_.close();
    if (holds_client_slot_ && worker_.client_connections != nullptr) {
        worker_.client_connections->release(peer_);
    }
    worker_.process_connections.fetch_sub(1, std::memory_order_relaxed);
    worker_.removeSession(this);
    worker_.loop.deferredDelete(event::DeferredDeletablePtr(this));
}

}  // namespace strata::proxy
