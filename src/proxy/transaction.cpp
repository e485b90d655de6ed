#include "strata/proxy/transaction.h"

#include <event2/buffer.h>

#include "strata/common/log.h"
#include "strata/common/strings.h"
#include "strata/http/message.h"
#include "strata/proxy/downstream_session.h"

namespace strata::proxy {
namespace {

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
      started_(std::chrono::steady_clock::now()) {}

Transaction::~Transaction() {
    if (exchange_) {
        exchange_->abort();
    }
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
    request_complete_ = request_.framing == http::BodyFraming::None;
    exchange_ = std::make_unique<UpstreamExchange>(
        session_.worker(), *group_, buildUpstreamRequest(),
        static_cast<UpstreamExchangeCallbacks&>(*this), session_.id());
    exchange_->start();
}

UpstreamExchange::Request Transaction::buildUpstreamRequest() {
    UpstreamExchange::Request out;
    out.method = request_.method;
    out.has_body = request_.framing != http::BodyFraming::None;
    out.chunked = request_.framing == http::BodyFraming::Chunked;
    // The request's fields are not needed after this point except for logging, so they are
    // edited in place.
    http::Fields& fields = request_.fields;
    http::removeHopByHop(fields);
    fields.remove("Expect");
    appendListField(fields, "X-Forwarded-For", session_.clientAddress());
    fields.set("X-Forwarded-Proto", session_.listener().tls ? "https" : "http");
    appendListField(fields, "Via", request_.version_minor == 0 ? "1.0 strata" : kViaValue);
    if (out.chunked) {
        fields.add("Transfer-Encoding", "chunked");
    }
    if (!fields.has("Host")) {
        // HTTP/1.1 requires Host upstream (RFC 9112 3.2). An HTTP/1.0 client may have sent
        // none: use the upstream's name, as nginx's $proxy_host does.
        fields.add("Host", request_.host.empty() ? group_->config().name : request_.host);
    }
    std::string& head = out.head;
    head.reserve(256 + request_.target.size());
    // Absolute-form targets become origin-form: upstreams are origin servers (RFC 9112 3.2.1).
    std::string_view target = request_.target;
    if (!target.starts_with('/') && target != "*") {
        std::string origin_form = request_.path.empty() ? "/" : request_.path;
        if (!request_.query.empty()) {
            origin_form += '?';
            origin_form += request_.query;
        }
        http::appendRequestLine(head, request_.method, origin_form, 1);
    } else {
        http::appendRequestLine(head, request_.method, target, 1);
    }
    http::appendFields(head, fields);
    head += "\r\n";
    return out;
}

void Transaction::onClientBody(std::string_view data) {
    if (exchange_ && !aborted_) {
        exchange_->sendBody(data);
    }
}

void Transaction::onClientBodyComplete() {
    request_complete_ = true;
    if (exchange_ && !aborted_) {
        exchange_->endBody();
    }
}

bool Transaction::wantsMoreBody() const {
    return !exchange_ || exchange_->wantsMoreBody();
}

void Transaction::onClientWritable() {
    if (exchange_ && !aborted_ && session_.outputPending() < kClientOutputHighWater) {
        exchange_->resumeReading();
    }
}

void Transaction::onExchangeBodyWritable() {
    session_.resumeRequestBody();
}

bool Transaction::exchangeSinkFull() {
    return session_.outputPending() >= kClientOutputHighWater;
}

void Transaction::onExchangeFlush() {
    session_.flushOutput();
}

void Transaction::onExchangeHead(http::ResponseHead& head) {
    status_ = head.status;
    upstream_label_ = std::string(exchange_->serverLabel());
    upstream_seconds_ = exchange_->upstreamSeconds();
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
}

void Transaction::onExchangeBody(std::string_view data) {
    if (client_chunked_) {
        appendChunk(session_.output(), data);
    } else {
        evbuffer_add(session_.output(), data.data(), data.size());
    }
    body_bytes_sent_ += data.size();
}

void Transaction::onExchangeComplete() {
    if (client_chunked_) {
        evbuffer_add(session_.output(), http::kLastChunk.data(), http::kLastChunk.size());
    }
    dropExchange();
    logAccess();
    session_.transactionDone();  // schedules our deletion; touch nothing after this
}

void Transaction::onExchangeFailure(int status, bool after_head, const char* what) {
    dropExchange();
    if (after_head || response_started_) {
        // Part of the response is out: the client can only learn of the failure by a close.
        logAccess();
        aborted_ = true;
        session_.abortConnection();
        return;
    }
    status_ = status;
    logAccess();
    aborted_ = true;
    session_.sendError(status, what, !request_complete_);
}

void Transaction::dropExchange() {
    if (exchange_) {
        upstream_label_ = std::string(exchange_->serverLabel());
        // Never destroyed inside its own callbacks.
        session_.worker().loop.deferredDelete(event::deferrable(std::move(exchange_)));
    }
}

void Transaction::abort() {
    if (aborted_) {
        return;
    }
    aborted_ = true;
    if (exchange_) {
        exchange_->abort();
        dropExchange();
    }
}

void Transaction::logAccess() {
    const std::string* referer = request_.fields.get("Referer");
    const std::string* agent = request_.fields.get("User-Agent");
    session_.logAccess(request_.method, request_.target, request_.version_minor, status_,
                       body_bytes_sent_, referer ? std::string_view(*referer) : std::string_view(),
                       agent ? std::string_view(*agent) : std::string_view(), upstream_label_,
                       upstream_seconds_, started_);
}

}  // namespace strata::proxy
    if (const std::string& header = session_.forwardSubjectHeader(); !header.empty()) {
        fields.remove(header);  // only strata vouches for a client certificate
        if (std::string subject = session_.clientSubject(); !subject.empty()) {
            fields.add(header, subject);
        }
    }
