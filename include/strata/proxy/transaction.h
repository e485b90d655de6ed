// One request/response exchange as the client sees it (HAProxy's "stream", proxygen's
// HTTPTransaction): decides where the answer comes from and streams it to the client with
// back-pressure. The upstream half is an UpstreamExchange.
//
//   start ─▶ Forwarding (UpstreamExchange) ─head─▶ StreamingResponse ─▶ done
//               └─ failure before the head: 502/504 answered here; after it: connection abort
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/http/parser.h"
#include "strata/proxy/snapshot.h"
#include "strata/proxy/upstream_exchange.h"

struct evbuffer;

namespace strata::proxy {

class DownstreamSession;

class Transaction final : private UpstreamExchangeCallbacks {
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
    // The client went away or the session failed: drop the upstream side.
    void abort();
    // Nothing of the response reached the client yet, so an error status can still be sent.
    bool canSendError() const { return !response_started_; }

private:
    // UpstreamExchangeCallbacks
    void onExchangeHead(http::ResponseHead& head) override;
    void onExchangeBody(std::string_view data) override;
    void onExchangeComplete() override;
    void onExchangeFailure(int status, bool after_head, const char* what) override;
    bool exchangeSinkFull() override;
    void onExchangeBodyWritable() override;
    void onExchangeFlush() override;

    UpstreamExchange::Request buildUpstreamRequest();
    void dropExchange();
    void logAccess();

    DownstreamSession& session_;  // owns this transaction
    SnapshotPtr snapshot_;
    int route_index_;
    const upstream::UpstreamGroup* group_;
    http::RequestHead request_;
    UpstreamExchangePtr exchange_;
    bool request_complete_ = false;  // whole request body received from the client
    bool client_chunked_ = false;    // the response is chunk-encoded towards the client
    bool response_started_ = false;  // the response head was queued to the client
    bool aborted_ = false;
    int status_ = 0;
    std::uint64_t body_bytes_sent_ = 0;
    std::string upstream_label_ = "-";
    double upstream_seconds_ = -1;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace strata::proxy
