// The client side of one exchange, whatever protocol carries it: an HTTP/1.1 connection serving
// one request at a time (DownstreamSession), or one stream of an HTTP/2 connection. A
// Transaction talks to its client only through this interface, so the cache, the router and
// the upstream side never learn which protocol the client speaks.
//
//   request head ─▶ Transaction ─▶ [sendInterim] ─▶ sendHead ─▶ sendBody* ─▶ endResponse
//                      ▲  onClientBody / onClientBodyComplete      or sendError (before a head)
//                      └─ onClientWritable (output drained)        or abortResponse (after it)
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "strata/cache/entry.h"
#include "strata/http/response_out.h"
#include "strata/metrics/metrics.h"
#include "strata/net/socket.h"
#include "strata/proxy/worker_context.h"
#include "strata/upstream/pool.h"

namespace strata::proxy {

class ClientStream {
protected:
    static const net::SocketAddress& noAddress() {
        static const net::SocketAddress kNone;
        return kNone;
    }

public:
    virtual ~ClientStream() = default;

    virtual WorkerContext& worker() = 0;
    virtual const std::string& clientAddress() const = 0;
    // The client's address and port as the connection knows them (a PROXY header's source when
    // the listener reads one), and the address it connected to; empty when not known. What a
    // PROXY header sent upstream describes.
    virtual const net::SocketAddress& peerAddress() const { return noAddress(); }
    virtual const net::SocketAddress& localAddress() { return noAddress(); }
    // The current exchange's client when trusted proxies named another than the peer
    // (listeners[].trusted_proxies): its access-log line shows that address.
    virtual void setRealClient(std::string_view /*address*/) {}
    // The current exchange takes a trusted client's X-Request-Id (checked by
    // acceptableRequestId) in place of the one strata made: logged, forwarded, returned.
    virtual void adoptRequestId(std::string_view /*id*/) {}
    virtual const ListenerInfo& listener() const = 0;
    // The client connection's id, for log lines and upstream affinity.
    virtual std::uint64_t connectionId() const = 0;
    // TLS: the header that carries the verified client subject upstream ("" = none), and the
    // subject itself ("" when no verified client certificate).
    virtual const std::string& forwardSubjectHeader() const = 0;
    virtual std::string clientSubject() const = 0;

    // The response, in order. sendInterim() for a 1xx (100 Continue when the client asked for
    // it, 102/103 from the upstream), before sendHead(); sendHead() once; sendBody() any number of
    // times; endResponse() or abortResponse() last. After endResponse(), sendError() or
    // abortResponse() the transaction is finished with the stream and is deleted: it touches
    // nothing after the call.
    virtual void sendInterim(const http::OutgoingResponse& head) = 0;
    virtual void sendHead(const http::OutgoingResponse& head) = 0;
    virtual void sendBody(std::string_view data) = 0;
    // `length` bytes of a stored body from `offset` (a byte range), sent without a copy where
    // the transport allows it: the slice references the block, which stays alive until the
    // transport is done with it. offset + length never exceeds the body's size.
    virtual void sendBody(const cache::BodyPtr& body, std::uint64_t offset,
                          std::uint64_t length) = 0;
    // A whole stored body.
    void sendBody(const cache::BodyPtr& body) { sendBody(body, 0, body->size()); }
    // Hands what was queued to the transport now (sendBody() may batch).
    virtual void flush() = 0;
    virtual void endResponse() = 0;
    // An error answer instead of a response (nothing was sent yet). `cache_status` is the
    // RFC 9211 Cache-Status value: what the cache decided before the error, if anything.
    virtual void sendError(int status, std::string_view detail, std::string_view cache_status) = 0;
    // Something broke after the head went out: the client can only learn it from the stream
    // (or connection) ending abnormally.
    virtual void abortResponse() = 0;

    // Response bytes queued but not yet taken by the client: the upstream is throttled above
    // a high watermark, and resumed by Transaction::onClientWritable().
    virtual std::size_t outputPending() const = 0;
    // Flow control of the request body towards the upstream.
    virtual void pauseRequestBody() = 0;
    virtual void resumeRequestBody() = 0;

    // How the cache answered (metrics label, access-log "cache" field).
    virtual void setCacheResult(metrics::CacheResult result) = 0;
    // Records the exchange for the access log and request metrics, written once its last byte
    // is handed to the transport.
    virtual void logAccess(std::string_view method, std::string_view target, std::string_view host,
                           int version_minor, int status, std::uint64_t bytes,
                           std::string_view referer, std::string_view user_agent,
                           std::string_view upstream, double upstream_s,
                           std::chrono::steady_clock::time_point started) = 0;
    // The exchange's id (RequestIdGenerator): in its access-log line, and sent upstream as
    // X-Request-Id.
    virtual std::string_view requestId() const = 0;

    // The upstream answered an Upgrade request with 101 (`upstream_head`): the client learns
    // it (HTTP/1.1: `http1_head`, the 101 as the client gets it; HTTP/2: a 200 to its extended
    // CONNECT), then the stream carries bytes both ways until the tunnel ends. The
    // transaction is finished with the stream after the call.
    virtual void startTunnel(const http::ResponseHead& /*upstream_head*/,
                             std::string /*http1_head*/,
                             upstream::UpstreamConnectionPtr /*upstream*/,
                             std::chrono::milliseconds /*idle_timeout*/) {
        abortResponse();
    }
};

}  // namespace strata::proxy
