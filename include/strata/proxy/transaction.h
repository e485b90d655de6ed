// One request/response exchange as the client sees it (HAProxy's "stream", proxygen's
// HTTPTransaction, Varnish's request FSM): decides where the answer comes from and streams it to
// the client with back-pressure. The upstream half is an UpstreamExchange.
//
//   start ─┬─ route without cache / unsafe method ─────────────────────────▶ Forward (pass)
//          └─ GET/HEAD ─▶ L1 lookup ─┬─ fresh ───────────────────────────────▶ Deliver (hit)
//                                    ├─ stale-while-revalidate ─▶ Deliver + background refresh
//                                    ├─ must revalidate ─▶ Forward (conditional) ─304─▶ Deliver
//                                    └─ miss ─▶ coalesce ─┬─ leader ─▶ L2 ─▶ fill lease ─┐
//                                                         ├─ waiter ─▶ wait ─▶ Deliver/Forward
//                                                         ├─ refresh running ─▶ Deliver stale
//                                                         └─ hit-for-pass ─▶ Forward
//   fill lease (cache.l2.lease_wait): taken ─▶ Forward (store) ─▶ release ─▶ wake
//                                     held by another instance ─▶ poll L2 ─▶ Deliver, or
//                                       Forward once it is released, expired or waited too long
//   Forward failing before the head: stale-if-error entry, else 502/504; after it: abort.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "strata/cache/cache_control.h"
#include "strata/cache/coalescer.h"
#include "strata/cache/entry.h"
#include "strata/cache/l2_cache.h"
#include "strata/event/loop.h"
#include "strata/http/content_coding.h"
#include "strata/http/parser.h"
#include "strata/net/socket.h"
#include "strata/proxy/client_stream.h"
#include "strata/proxy/route_actions.h"
#include "strata/proxy/snapshot.h"
#include "strata/proxy/upstream_exchange.h"

struct evbuffer;

namespace strata::proxy {

class Transaction final : public event::DeferredDeletable, private UpstreamExchangeCallbacks {
public:
    Transaction(ClientStream& client, SnapshotPtr snapshot, int route_index,
                http::RequestHead&& request);
    ~Transaction() override;
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    // Before start(): the request is an Upgrade to `protocol` (classifyUpgrade() said so).
    void setUpgrade(std::string protocol) { upgrade_ = std::move(protocol); }
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
    bool canSendError() const;
    // The request it serves, for the log line of one whose body broke.
    const http::RequestHead& request() const { return request_; }

    // Where the exchange is. Every change goes through enter(), which holds the transitions:
    //
    //   Created ─┬─▶ AwaitingL2 ◀─▶ AwaitingFill
    //            │     └─────────────┐     │
    //            ├─▶ AwaitingLeader ─┼─▶ Forwarding ─┬─▶ Validated ──────────┐
    //            │                   │               ├─▶ HoldingHead ─┬──────┼─▶ Finished
    //            │                   │               └─▶ Streaming ◀──┘      │
    //            └───────────────────┴─────────────────────▶ (hit, error) ───┘
    //   any state but Finished ─▶ Aborted (client gone, or the answer broke after its head)
    enum class State {
        Created,         // start() not yet called, or deciding synchronously
        AwaitingL2,      // the coalescing leader asked the shared cache (lookup or fill lease)
        AwaitingFill,    // another instance holds the fill lease: polling L2 for its object
        AwaitingLeader,  // a coalesced waiter: another request fetches for it
        Forwarding,      // the upstream exchange runs; its head has not arrived
        Validated,       // a 304 freshened the stale entry: it answers once the exchange ends
        HoldingHead,     // storing; the client gets its answer from the stored entry
        Streaming,       // the head went out, the body streams
        Finished,        // the whole answer was handed to the client stream
        Aborted,
    };
    State state() const { return state_; }
    static bool allowed(State from, State to);

private:
    // The client as strata tells it: the real client behind trusted proxies when there is one
    // (listeners[].trusted_proxies), else the connection's peer.
    const std::string& clientAddress() const;

    // UpstreamExchangeCallbacks
    void onExchangeHead(http::ResponseHead& head) override;
    void onExchangeInterim(const http::ResponseHead& head) override;
    void onExchangeBody(std::string_view data) override;
    void onExchangeComplete() override;
    void onExchangeFailure(int status, bool after_head, const char* what) override;
    bool exchangeSinkFull() override;
    void onExchangeBodyWritable() override;
    void onExchangeFlush() override;
    void onExchangeUpgraded(http::ResponseHead& head) override;

    // A trusted proxy's X-Request-Id becomes the exchange's id (listeners[].trusted_proxies).
    void adoptTrustedRequestId(const config::Listener& listener);
    void lookup();
    void lookupL2();
    bool staleIfUnreachable(const cache::CacheEntry& entry,
                            const cache::LookupDecision& decision) const;
    bool useStored(const cache::EntryPtr& entry, const cache::LookupDecision& decision,
                   metrics::Tier tier);
    void answerOnlyIfCachedMiss();
    // Cross-instance coalescing through the L2 fill lease (l2_cache.h).
    bool fillLeasesOn() const;
    void takeFillLease();
    void onFillLease(const cache::L2Lease& lease);
    void releaseFillLease(bool uncacheable);
    void countUpgradeOutcome(metrics::TunnelResult result);
    void onL2Result(cache::L2LookupResult result);
    void onCoalescedWake(const cache::Coalescer::Outcome& outcome);
    void deliverCollapsed(const cache::EntryPtr& entry, const cache::LookupDecision& decision);
    void forward();
    // Answers from a stored entry, with the outcome already set.
    void deliver(const cache::EntryPtr& entry);
    // The one record of how the cache answered: the Cache-Status field on the wire, and the
    // access log's and metrics' cache result, so the two can never disagree.
    void setOutcome(metrics::CacheResult result, std::string cache_status);
    void deliverNotModifiedMerge(http::ResponseHead& head);
    void startBackgroundRefresh();
    // `too_large`: the response was uncacheable by its size alone (kTooLargeForPass).
    void finishCoalescing(const cache::EntryPtr& entry, bool uncacheable, bool too_large = false);
    void storeResponse();
    // The upstream's head as the client gets it (Via, Cache-Status, Date added).
    void sendForwardedHead(const http::ResponseHead& head);
    // The one way an answer's head leaves (hits, forwarded answers, redirect and respond): the
    // route's response header rules join `edits` here, so none of them can miss one kind.
    void sendResponseHead(http::OutgoingResponse& out, http::FieldEdits& edits);
    // routes[].redirect and routes[].respond: answered here, never forwarded or cached.
    void answerAction(const RouteActions& actions);
    RuleVariables ruleVariables() const;
    // routes[].access, listeners[].access, methods_allowed and the route's body limit: true
    // when the request was refused (and answered).
    bool refusedByAccessRules(const config::Route& route);
    // routes[].rate_limit: true when the request got 429.
    bool refusedByRateLimit(const CompiledRoute& route);
    // An answer strata writes itself: `fields` and `body` as given, then finished. The route's
    // response_headers reach its redirects and fixed responses, not refusals (405, 429).
    enum class RouteRules { Skip, Apply };
    void sendLocalAnswer(int status, const http::Fields& fields, std::string_view body,
                         RouteRules rules = RouteRules::Skip);
    std::uint64_t request_body_bytes_ = 0;  // for a route's limit on chunked bodies
    // For a forwarded answer: whether it varies by Accept-Encoding (the route compresses it),
    // and the coding it streams in (identity when stored, or the client accepts none).
    struct StreamCoding {
        bool varies = false;
        http::Coding coding = http::Coding::Identity;
    };
    StreamCoding decideStreamCoding(const http::ResponseHead& head) const;
    void countStreamed(std::uint64_t in, std::uint64_t out);
    void releaseDeferredResponse();
    void invalidateAfterUnsafe(const http::ResponseHead& head);
    // The one builder of every request strata sends upstream: client-driven forwards,
    // revalidations and background refreshes differ only through `purpose` and the cache state.
    enum class UpstreamPurpose { Client, BackgroundRefresh };
    UpstreamExchange::Request buildUpstreamRequest(UpstreamPurpose purpose);
    void dropExchange();
    void enter(State next);
    void logAccess();
    std::uint16_t routeSlot() const { return snapshot_->route(route_index_).metric_slot; }

    ClientStream& client_;  // owns this transaction
    SnapshotPtr snapshot_;
    int route_index_;
    const upstream::UpstreamGroup* group_;
    http::RequestHead request_;
    UpstreamExchangePtr exchange_;
    // Posted wake-ups (coalescing, L2) hold a weak_ptr to it: it expires with the transaction.
    std::shared_ptr<bool> alive_;
    std::weak_ptr<bool> aliveToken();

    // Cache state of this exchange.
    bool cacheable_route_ = false;
    cache::CacheControl request_cc_;
    std::string primary_key_;
    cache::EntryPtr stale_;  // entry being revalidated / kept for stale-if-error
    bool serve_stale_on_error_ = false;
    // RFC 9111 4.2.4: stale_ may stand in if no server can be reached (the route's
    // cache.stale_if_unreachable, and nothing in the stored answer or the request forbids it).
    bool serve_stale_if_unreachable_ = false;
    bool coalescing_leader_ = false;
    bool lease_owner_ = false;   // this exchange holds the URL's L2 fill lease
    bool lease_waited_ = false;  // it waited for another instance's fetch
    bool l2_miss_counted_ = false;
    std::chrono::steady_clock::time_point lease_wait_until_;
    std::chrono::milliseconds lease_poll_delay_{0};
    std::unique_ptr<event::Timer> fill_poll_;
    bool storing_ = false;
    bool revalidating_ = false;
    // Known uncacheable (hit-for-pass): forwarded as the client asked, Range included.
    bool passing_ = false;
    http::ResponseHead stored_head_;   // copy of the head being stored
    std::string body_;                 // body being stored
    bool client_conditional_ = false;  // the client's validators were held back from upstream
    std::string stored_key_;           // secondary key of the entry just stored
    cache::BodyPtr held_body_;         // the body just stored, shared with its entry
    // RFC 9211 Cache-Status; empty until the cache decides, which means "fwd=bypass" (and
    // spares a bypassed request the string's allocation).
    std::string cache_status_;
    std::string_view cacheStatus() const {
        return cache_status_.empty() ? std::string_view("strata; fwd=bypass") : cache_status_;
    }
    WallTime request_time_;
    WallTime response_time_;

    State state_ = State::Created;
    bool request_complete_ = false;  // whole request body received from the client
    int status_ = 0;
    std::uint64_t body_bytes_sent_ = 0;
    std::string upstream_label_ = "-";
    double upstream_seconds_ = -1;
    std::chrono::steady_clock::time_point started_;
    std::string upgrade_;  // the Upgrade token forwarded, or empty
    // Set when trusted proxies name a client other than the peer (see clientAddress()).
    std::optional<net::SocketAddress> real_client_;
    std::string real_client_text_;
    // Streaming compression of an uncached answer (null: identity), and its output buffer.
    http::StreamEncoderPtr encoder_;
    http::Coding stream_coding_ = http::Coding::Identity;
    std::string coded_;
};

}  // namespace strata::proxy
