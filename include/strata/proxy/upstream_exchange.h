// One request sent to an upstream and its response read back (the upstream half of a
// Transaction, also used alone by background refreshes). Picks a server (the upstream's balancer),
// reuses a pooled keep-alive connection or connects, sends the prepared head and streams the body,
// parses the response strictly, and reports it to its owner through UpstreamExchangeCallbacks.
//
//   start ─▶ Connecting ─connected─▶ AwaitingHead ─head─▶ StreamingBody ─▶ Done
//               │  connect failed, nothing sent: next server      │
//               └─────────────────────────────────────────────────┴─▶ onExchangeFailure
//
// Retries: a connect failure sent nothing, so any request moves on to the next server. A
// failure after sending but before any response byte is retried only for idempotent requests
// without a body; a stale pooled connection gets one fresh retry on the same server.
// max_tries bounds both, and upstreams.<name>.retry_budget bounds retries across requests.
//
// Servers with max_connections: the exchange takes a slot on the server it picks and gives it
// back when it ends (or moves on to another server). When every available server is at its
// limit it waits in the upstream's ConnectionQueue, on this worker's loop, until a slot frees
// or upstreams.<name>.queue.timeout passes (503), and gets 503 at once when the queue is full.
// Callbacks never destroy the exchange from inside (deferredDelete).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "strata/event/loop.h"
#include "strata/http/parser.h"
#include "strata/net/connection.h"
#include "strata/proxy/worker_context.h"
#include "strata/upstream/pool.h"

struct evbuffer;

namespace strata::proxy {

class UpstreamExchangeCallbacks {
public:
    virtual ~UpstreamExchangeCallbacks() = default;
    // The final (non-1xx) response head. The owner may modify it.
    virtual void onExchangeHead(http::ResponseHead& head) = 0;
    virtual void onExchangeBody(std::string_view data) = 0;
    // The response ended; the connection went back to the pool when it could.
    virtual void onExchangeComplete() = 0;
    // Nothing usable came back: `status` is 502 or 504; `after_head` when the head had been
    // delivered already (the response is truncated). `what` is for logs.
    virtual void onExchangeFailure(int status, bool after_head, const char* what) = 0;
    // The owner's sink (client output) is too full: the exchange stops reading the upstream
    // until resumeReading(). Checked before each parse step.
    virtual bool exchangeSinkFull() = 0;
    // The upstream drained the request body: more may be sent.
    virtual void onExchangeBodyWritable() = 0;
    // Bytes of the response the exchange delivered since the last call should be sent on.
    virtual void onExchangeFlush() = 0;
    // An upgrade request was answered 101: the owner takes the connection (takeUpgraded())
    // and the exchange delivers nothing more. Only for Request::upgrade.
    virtual void onExchangeUpgraded(http::ResponseHead& /*head*/) {}
    // A 102 or 103 came before the final answer (a 100 is the exchange's own business: strata
    // answers a client's Expect itself). Never stored; the final head's fields are its own.
    virtual void onExchangeInterim(const http::ResponseHead& /*head*/) {}
};

class UpstreamExchange final : public event::DeferredDeletable,
                               private net::ConnectionCallbacks,
                               private http::ResponseCallbacks {
public:
    struct Request {
        std::string head;  // serialized request head, ending in the blank line
        std::string method;
        bool has_body = false;  // body follows via sendBody(); its framing is in `head`
        bool chunked = false;   // sendBody() data is chunk-encoded on the wire
        // consistent_hash upstreams: the request's key (upstreams.<name>.hash.key); empty for
        // other algorithms and for requests without one.
        std::string hash_key;
        // An Upgrade request: sent on a fresh connection, which is never pooled afterwards; a
        // 101 hands the connection over (onExchangeUpgraded) instead of being skipped.
        bool upgrade = false;
        // Upstreams with proxy_protocol: the header that opens a new connection for this
        // request, and that a pooled connection must have opened with to be reused.
        std::string proxy_header;
    };

    UpstreamExchange(WorkerContext& worker, const upstream::UpstreamGroup& group, Request request,
                     UpstreamExchangeCallbacks& callbacks, std::uint64_t log_id);
    ~UpstreamExchange() override;
    UpstreamExchange(const UpstreamExchange&) = delete;
    UpstreamExchange& operator=(const UpstreamExchange&) = delete;

    void start();
    void sendBody(std::string_view data);
    void endBody();
    bool wantsMoreBody() const;
    // The owner's sink drained: read the upstream again.
    void resumeReading();
    // Drops the upstream connection (not reusable); no more callbacks.
    void abort();

    // "127.0.0.1:8000" of the server last tried, or "-".
    std::string_view serverLabel() const;
    // Time from the first attempt to the response head, or -1.
    double upstreamSeconds() const { return upstream_seconds_; }
    // After onExchangeFailure(): no server could be reached (every connect refused or timed
    // out, or none was healthy), as opposed to a server that answered badly or late.
    bool originUnreachable() const { return unreachable_; }
    bool headReceived() const {
        return state_ == State::StreamingBody || state_ == State::Done || state_ == State::Upgraded;
    }
    // After onExchangeUpgraded(): the connection, with any bytes the server sent behind the
    // 101 still in its input. The exchange is finished.
    upstream::UpstreamConnectionPtr takeUpgraded();

private:
    enum class State { Connecting, AwaitingHead, StreamingBody, Done, Failed, Upgraded };
    enum class Failure { Connect, ConnectTimeout, Broken, Timeout, BadResponse };

    // net::ConnectionCallbacks
    void onReadable() override;
    void onWritable() override;
    void onConnected(bool ok) override;
    void onError() override;
    // http::ResponseCallbacks
    void onResponseHead(http::ResponseHead&& head) override;
    void onResponseBody(std::string_view data) override;
    void onResponseComplete() override;

    void connectNext();
    void connectTo(int index, bool fresh_only);
    // Every available server is at max_connections: wait in the queue (or 503).
    void waitForSlot(bool requeue);
    void onQueueTimeout();
    void leaveQueue();
    void failQueued(const char* what);
    // A retry may start (retry_budget); counts a refusal.
    bool admitRetry();
    // Gives back the max_connections slot held on the current server, if any.
    void releaseSlot();
    // The exchange is over: slot, queue ticket and retry budget counts are given back.
    void endAccounting();
    void installCallbacks();
    void sendRequest();
    void processInput();
    void finish();
    void fail(Failure failure);
    void onTimer();
    void setDeadline(std::chrono::milliseconds timeout);
    // The connection's deadline timer, created on first use; null without a connection.
    event::Timer* deadlineTimer();
    void releaseConnection(bool reusable);
    evbuffer* pendingBody();

    WorkerContext& worker_;
    const upstream::UpstreamGroup& group_;  // kept alive by the owner's snapshot
    Request request_;
    UpstreamExchangeCallbacks& callbacks_;
    std::uint64_t log_id_;
    evbuffer* pending_body_ = nullptr;  // body that arrived before a connection was ready
    upstream::UpstreamConnectionPtr connection_;
    http::ResponseParser* parser_ = nullptr;  // the connection's, while it is ours
    std::chrono::steady_clock::time_point upstream_started_;
    State state_ = State::Connecting;
    upstream::TriedServers tried_;
    std::uint32_t tries_ = 0;
    int server_index_ = -1;
    int retry_same_server_ = -1;  // >= 0: next attempt goes to this server, fresh connection
    bool retried_stale_ = false;
    bool body_complete_ = false;
    bool keep_alive_ = false;
    bool aborted_ = false;
    const std::string* server_label_ = nullptr;  // owned by the group's ServerState
    double upstream_seconds_ = -1;
    bool unreachable_ = false;
    http::ResponseHead upgraded_head_;  // the 101, until the owner takes the connection
    int slot_index_ = -1;               // server whose max_connections slot this exchange holds
    upstream::ConnectionQueue::TicketPtr ticket_;
    std::unique_ptr<event::Timer> queue_timer_;
    bool waiting_ = false;  // counted in the queue depth, queue timer armed
    bool budget_request_ = false;
    bool budget_retry_ = false;
};

using UpstreamExchangePtr = std::unique_ptr<UpstreamExchange>;

}  // namespace strata::proxy
