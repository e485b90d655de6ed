// One request/response exchange between a client and an upstream (HAProxy's "stream",
// proxygen's HTTPTransaction). Picks a server round robin, sends the request head and streams
// the body, parses the response strictly and streams it to the client with back-pressure in
// both directions.
//
//   start ─▶ Connecting ─connected─▶ Sending/AwaitingHead ─head─▶ StreamingBody ─▶ Done
//               │  connect failed, nothing sent: next server     │
//               └────────────────────────────────────────────────┴─▶ error: 502/504 or abort
//
// Retries: a connect failure sent nothing, so any request moves on to the next server. A
// failure after sending but before any response byte is retried only for idempotent requests
// without a body. max_tries bounds both.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/event/loop.h"
#include "strata/http/parser.h"
#include "strata/net/connection.h"
#include "strata/proxy/snapshot.h"
#include "strata/upstream/pool.h"

struct evbuffer;

namespace strata::proxy {

class DownstreamSession;

class Transaction final : public http::ResponseCallbacks, private net::ConnectionCallbacks {
public:
    Transaction(DownstreamSession& session, SnapshotPtr snapshot, int route_index,
                http::RequestHead&& request);
    ~Transaction() override;
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    void start();

    // From the session, as the request body arrives.
    void onClientBody(std::string_view data);
    void onClientBodyComplete();
    // More body may be read from the client (bounded buffering).
    bool wantsMoreBody() const;
    // The client drained its output below the low watermark: read the upstream again.
    void onClientWritable();
    // The client went away or the session failed: drop the upstream connection (not reusable).
    void abort();
    // Nothing of the response reached the client yet, so an error status can still be sent.
    bool canSendError() const { return !response_started_; }

    // http::ResponseCallbacks
    void onResponseHead(http::ResponseHead&& head) override;
    void onResponseBody(std::string_view data) override;
    void onResponseComplete() override;

private:
    enum class State { Connecting, AwaitingHead, StreamingBody, Done };
    enum class Failure { Connect, ConnectTimeout, Broken, Timeout, BadResponse };

    // net::ConnectionCallbacks (the upstream connection)
    void onReadable() override;
    void onWritable() override;
    void onConnected(bool ok) override;
    void onError() override;

    void buildUpstreamHead();
    void connectNext();
    void sendRequest();
    void processUpstreamInput();
    void onUpstreamFailure(Failure failure);
    void onTimer();
    void finish();
    void logAccess();
    void releaseConnection(bool reusable);
    void installCallbacks();
    void setDeadline(std::chrono::milliseconds timeout);
    evbuffer* upstreamOutput();

    DownstreamSession& session_;  // owns this transaction
    SnapshotPtr snapshot_;
    int route_index_;
    const upstream::UpstreamGroup* group_;
    http::RequestHead request_;
    std::string upstream_head_;
    evbuffer* pending_body_;  // request body received while no connection is ready
    upstream::UpstreamConnectionPtr connection_;
    std::unique_ptr<http::ResponseParser> parser_;
    event::Timer timer_;
    std::chrono::steady_clock::time_point deadline_;  // lazily moved; timer_ re-arms on fire
    std::chrono::steady_clock::time_point timer_due_;
    State state_ = State::Connecting;
    std::uint64_t tried_mask_ = 0;
    std::uint32_t tries_ = 0;
    bool request_complete_ = false;  // whole request body received from the client
    bool request_sent_ = false;      // bytes were written to an upstream connection
    bool client_chunked_ = false;    // the response is chunk-encoded towards the client
    bool response_started_ = false;  // the response head was queued to the client
    bool upstream_keep_alive_ = false;
    bool aborted_ = false;
    bool retried_stale_ = false;
    int server_index_ = -1;
    int retry_same_server_ = -1;  // >= 0: next attempt goes to this server, fresh connection
    const std::string* upstream_label_ = nullptr;  // kept alive by snapshot_
    int status_ = 0;
    std::uint64_t body_bytes_sent_ = 0;
    std::chrono::steady_clock::time_point started_;
    std::chrono::steady_clock::time_point upstream_started_;
    double upstream_seconds_ = -1;
};

}  // namespace strata::proxy
