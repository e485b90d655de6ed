#include "strata/proxy/transaction.h"

#include <charconv>
#include <random>

#include "strata/cache/freshness.h"
#include "strata/cache/key.h"
#include "strata/cache/l1_cache.h"
#include "strata/cache/l2_cache.h"
#include "strata/cache/validation.h"
#include "strata/common/assert.h"
#include "strata/common/log.h"
#include "strata/common/strings.h"
#include "strata/http/message.h"
#include "strata/net/proxy_protocol.h"
#include "strata/proxy/body_processor.h"
#include "strata/proxy/real_client.h"

namespace strata::proxy {
namespace {

// Response bytes queued to the client before the upstream is throttled.
constexpr std::size_t kClientOutputHighWater = 256 * 1024;
// A response found uncacheable lets later requests for its key skip coalescing this long.
constexpr std::chrono::milliseconds kHitForPass{10000};
// An object too large to store stays too large: its key passes for longer, and those passes
// carry the client's Range upstream, so a seek into a big file fetches only what it asks for.
constexpr std::chrono::milliseconds kTooLargeForPass{5 * 60 * 1000};
// Polls of L2 while another instance fills: soon at first (an origin answering in tens of
// milliseconds), then less often. One poll per instance and URL (local waiters coalesce).
constexpr std::chrono::milliseconds kFirstFillPoll{5};
constexpr std::chrono::milliseconds kMaxFillPoll{50};

// Cross-instance fill leases (cache.l2.lease_wait): one rule for client fetches and refreshes.
bool leasesEnabled(const cache::CacheRuntime* runtime, const Snapshot& snapshot) {
    return runtime != nullptr && runtime->l2 != nullptr && runtime->l2->enabled() &&
           snapshot.config->cache.l2.lease_wait.count() > 0;
}

// The deadline a fill lease carries: how long the owner's fetch may take before it times out.
std::chrono::milliseconds fillLeaseTtl(const upstream::UpstreamGroup& group) {
    const auto& timeouts = group.config().timeouts;
    return timeouts.connect + timeouts.response;
}
constexpr std::string_view kViaValue = "1.1 strata";
// buildUpstreamRequest() drops at most these besides the override fields: Expect, the two
// conditionals, Range, If-Range, Content-Length, X-Forwarded-Proto, X-Forwarded-Host, the
// client-certificate subject field and Host. complete() still guards the count at run time.
constexpr std::size_t kMaxFixedDrops = 10;
static_assert(http::FieldEdits::kCapacity >= kMaxFixedDrops + config::kOverrideFields.size(),
              "an upstream request's drops must fit in FieldEdits");

// Built once per snapshot. A body over policy.max_object_bytes streams to the client uncached.
const RouteCachePolicy& routeCache(const Snapshot& snapshot, int route_index) {
    return snapshot.route(route_index).cache;
}

const CompressionPolicy& routeCompression(const Snapshot& snapshot, int route_index) {
    return snapshot.route(route_index).compression;
}

metrics::CompressionCoding codingLabel(http::Coding coding) {
    return coding == http::Coding::Br ? metrics::CompressionCoding::Br
                                      : metrics::CompressionCoding::Gzip;
}

// encodeForStore(), counted: the store-time processor every path to L1 goes through.
cache::EntryPtr compressForStore(const cache::EntryPtr& entry, const CompressionPolicy& policy,
                                 metrics::WorkerMetrics* m) {
    cache::EntryPtr out = encodeForStore(entry, policy);
    if (m != nullptr && out != entry) {
        for (const cache::EncodedBody& e : out->encoded()) {
            m->compression(metrics::CompressionStage::Store, codingLabel(e.coding), 1,
                           out->bodySize(), e.body ? e.body->size() : 0);
        }
    }
    return out;
}

// The entry for a response checkStorable() accepted, with the route's policy.
cache::EntryPtr buildStoredEntry(const RouteCachePolicy& route, const http::RequestHead& request,
                                 const http::ResponseHead& response, const std::string& key,
                                 cache::BodyPtr body, WallTime request_time,
                                 WallTime response_time) {
    auto directives = cache::responseDirectives(response.fields);
    cache::StoreInput in;
    in.request = &request;
    in.response = &response;
    in.directives = &directives;
    in.policy = &route.policy;
    in.key_policy = &route.key;
    in.primary_key = key;
    in.body = std::move(body);
    in.request_time = request_time;
    in.response_time = response_time;
    return cache::buildEntry(in);
}

// A multipart/byteranges boundary (RFC 9110 14.6). It must not occur in the stored body; 24
// random hex digits make that as unlikely as a collision, and no origin can aim for it.
std::string multipartBoundary() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "strata-";
    for (int word = 0; word < 2; ++word) {
        std::uint64_t bits = rng();
        for (int i = 0; i < 12; ++i, bits >>= 4) {
            out.push_back(kHex[bits & 0xf]);
        }
    }
    return out;
}

// RFC 9211 "ttl": remaining freshness in seconds, negative once stale.
std::string withTtl(std::string_view status, cache::Seconds ttl) {
    char digits[24];
    auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), ttl.count());
    (void)ec;  // 24 characters hold any 64-bit value
    std::string out;
    out.reserve(status.size() + 6 + static_cast<std::size_t>(end - digits));
    out.append(status);
    out.append("; ttl=");
    out.append(digits, end);
    return out;
}

// The value of cookie `name` in the request's Cookie fields (RFC 6265 5.4: "a=1; b=2"), or "".
std::string cookieValue(const http::Fields& fields, std::string_view name) {
    for (const auto& field : fields) {
        if (!equalsIgnoreCase(field.name, "Cookie")) {
            continue;
        }
        std::string_view rest = field.value;
        while (!rest.empty()) {
            std::size_t end = rest.find(';');
            std::string_view pair = rest.substr(0, end);
            rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
            while (!pair.empty() && pair.front() == ' ') {
                pair.remove_prefix(1);
            }
            // Cookie names are case-sensitive (RFC 6265 5.4 compares them octet by octet).
            if (pair.size() > name.size() && pair.starts_with(name) && pair[name.size()] == '=') {
                return std::string(pair.substr(name.size() + 1));
            }
        }
    }
    return {};
}

// What a consistent_hash upstream hashes (upstreams.<name>.hash.key). Empty when the request
// has no such value (header or cookie absent): the balancer then goes round robin.
std::string upstreamHashKey(const upstream::HashKeySource& source, const http::RequestHead& request,
                            const std::string& client) {
    using Kind = upstream::HashKeySource::Kind;
    switch (source.kind) {
        case Kind::None:
            return {};
        case Kind::Uri:
            // Path and query as the client sent them; absolute-form maps to the same key.
            if (request.target.starts_with('/')) {
                return request.target;
            }
            return request.query.empty() ? request.path : request.path + "?" + request.query;
        case Kind::Client:
            return client;
        case Kind::Header: {
            const std::string* value = request.fields.get(source.name);
            return value != nullptr ? *value : std::string();
        }
        case Kind::Cookie:
            return cookieValue(request.fields, source.name);
    }
    return {};
}

// Requests and builds the revalidation of a stale entry without a client (RFC 5861: serve
// stale, refresh once in the background). Owned by the worker; removes itself when done.
class BackgroundRefresh final : public event::DeferredDeletable, private UpstreamExchangeCallbacks {
public:
    BackgroundRefresh(WorkerContext& worker, SnapshotPtr snapshot, int route_index,
                      const http::RequestHead& request, cache::EntryPtr stale, std::string key,
                      UpstreamExchange::Request upstream)
        : worker_(worker),
          snapshot_(std::move(snapshot)),
          route_index_(route_index),
          request_(request),
          stale_(std::move(stale)),
          key_(std::move(key)) {
        request_time_ = std::chrono::system_clock::now();
        exchange_ = std::make_unique<UpstreamExchange>(
            worker_, *snapshot_->route(route_index_).upstream, std::move(upstream),
            static_cast<UpstreamExchangeCallbacks&>(*this), 0);
    }
    ~BackgroundRefresh() override {
        if (exchange_) {
            exchange_->abort();
        }
    }

    // With L2 fill leases on, N instances holding the same stale object refresh it once: the
    // lease owner refreshes, the others leave it to it. An owner first looks in L2, where the
    // previous owner's refresh may already be.
    void start() {
        cache::CacheRuntime* runtime = worker_.cache;
        if (!leasesEnabled(runtime, *snapshot_)) {
            exchange_->start();
            return;
        }
        std::weak_ptr<bool> alive = alive_;
        runtime->l2->acquireLease(key_, fillLeaseTtl(*snapshot_->route(route_index_).upstream),
                                  worker_.loop, [this, alive](cache::L2Lease lease) {
                                      if (alive.lock()) {
                                          onLease(lease);
                                      }
                                  });
    }

private:
    const RouteCachePolicy& route() const { return routeCache(*snapshot_, route_index_); }

    void onLease(const cache::L2Lease& lease) {
        switch (lease.state) {
            case cache::LeaseState::Owner:
                break;
            case cache::LeaseState::Unavailable:
                exchange_->start();
                return;
            case cache::LeaseState::Filling:
            case cache::LeaseState::Uncacheable:
                done();  // another instance refreshes; its answer reaches L2
                return;
        }
        lease_owner_ = true;
        metrics::global().fillLease(metrics::LeaseEvent::Taken);
        std::weak_ptr<bool> alive = alive_;
        worker_.cache->l2->lookup(key_, request_.fields, worker_.loop,
                                  [this, alive](cache::L2LookupResult found) {
                                      if (alive.lock()) {
                                          onL2Current(std::move(found));
                                      }
                                  });
    }

    void onL2Current(cache::L2LookupResult found) {
        auto now = std::chrono::system_clock::now();
        if (found.status == cache::L2Status::Hit && found.entry &&
            found.entry->meta().request_time > stale_->meta().request_time &&
            found.entry->decide(cache::CacheControl{}, now).usability == cache::Usability::Fresh) {
            metrics::global().fillLease(metrics::LeaseEvent::Avoided);
            worker_.cache->l1->insert(found.entry);
            current_ = found.entry;
            done();
            return;
        }
        exchange_->start();
    }

    void onExchangeHead(http::ResponseHead& head) override {
        auto now = std::chrono::system_clock::now();
        const cache::CachePolicy& policy = route().policy;
        if (head.status == 304 && cache::notModifiedMatches(*stale_, head)) {
            result_ = cache::mergeNotModified(*stale_, head, policy, request_time_, now);
            return;
        }
        auto directives = cache::responseDirectives(head.fields);
        std::optional<std::uint64_t> size;
        if (head.framing == http::BodyFraming::Length) {
            size = head.content_length;
        }
        if (cache::checkStorable(request_, head, directives, policy, size) ==
            cache::StoreVerdict::Store) {
            storing_ = true;
            head_ = head;
            response_time_ = now;
        }
    }
    void onExchangeBody(std::string_view data) override {
        if (storing_) {
            if (body_.size() + data.size() > route().policy.max_object_bytes) {
                storing_ = false;
                body_.clear();
            } else {
                body_.append(data);
            }
        }
    }
    void onExchangeComplete() override {
        if (!result_ && storing_) {
            result_ = compressForStore(
                buildStoredEntry(route(), request_, head_, key_,
                                 std::make_shared<const cache::Body>(std::move(body_)),
                                 request_time_, response_time_),
                routeCompression(*snapshot_, route_index_), worker_.metrics);
        }
        done();
    }
    void onExchangeFailure(int, bool, const char*) override { done(); }
    bool exchangeSinkFull() override { return false; }
    void onExchangeBodyWritable() override {}
    void onExchangeFlush() override {}

    void done() {
        auto* runtime = worker_.cache;
        if (result_ && runtime != nullptr) {
            runtime->keep(result_, std::chrono::system_clock::now(), lease_owner_);
        } else if (lease_owner_ && runtime != nullptr && runtime->l2 != nullptr) {
            runtime->l2->releaseLease(key_, false, kHitForPass);
        }
        lease_owner_ = false;
        if (runtime != nullptr) {
            runtime->coalescer.finish(
                key_, cache::Coalescer::Outcome{result_ ? result_ : current_, false},
                event::loopTime(), kHitForPass);
        }
        if (exchange_) {
            worker_.loop.deferredDelete(event::deferrable(std::move(exchange_)));
        }
        worker_.removeBackground(this);  // schedules our deletion
    }

    WorkerContext& worker_;
    SnapshotPtr snapshot_;
    int route_index_;
    http::RequestHead request_;
    cache::EntryPtr stale_;
    std::string key_;
    UpstreamExchangePtr exchange_;
    cache::EntryPtr result_;
    cache::EntryPtr current_;  // a newer entry another instance's refresh put in L2
    bool lease_owner_ = false;
    // Lease and L2 answers are posted: they must not reach a refresh that is gone.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    bool storing_ = false;
    http::ResponseHead head_;
    std::string body_;
    WallTime request_time_;
    WallTime response_time_;
};

}  // namespace

Transaction::Transaction(ClientStream& client, SnapshotPtr snapshot, int route_index,
                         http::RequestHead&& request)
    : client_(client),
      snapshot_(std::move(snapshot)),
      route_index_(route_index),
      group_(snapshot_->route(route_index).upstream),
      request_(std::move(request)),
      started_(event::loopTime()) {}

Transaction::~Transaction() {
    releaseFillLease(false);  // another instance takes over at once
    if (coalescing_leader_) {
        finishCoalescing(nullptr, false);  // waiters fetch on their own
    }
    if (exchange_) {
        exchange_->abort();
    }
}

const std::string& Transaction::clientAddress() const {
    return real_client_ ? real_client_text_ : client_.clientAddress();
}

void Transaction::start() {
    if (request_.expect_continue && request_.framing != http::BodyFraming::None) {
        // We read the body whatever the upstream would say, so the client need not wait
        // (RFC 9110 10.1.1).
        http::OutgoingResponse continue_head;
        continue_head.status = 100;
        client_.sendInterim(continue_head);
    }
    request_complete_ = request_.framing == http::BodyFraming::None;
    if (const config::Listener* listener = snapshot_->any_trusted_proxies
                                               ? snapshot_->listenerConfig(client_.listener().name)
                                               : nullptr;
        listener != nullptr && !listener->trusted_proxies.empty()) {
        real_client_ =
            realClient(client_.peerAddress(), request_.fields, listener->trusted_proxies);
        adoptTrustedRequestId(*listener);
        if (real_client_) {
            real_client_text_ = real_client_->hostString();
            client_.setRealClient(real_client_text_);
        }
    }
    const CompiledRoute& compiled = snapshot_->route(route_index_);
    if (refusedByAccessRules(*compiled.config) ||
        (compiled.rate_limiter && refusedByRateLimit(compiled))) {
        return;
    }
    if (compiled.actions.redirect != nullptr || compiled.actions.respond != nullptr) {
        answerAction(compiled.actions);  // an Upgrade asked of such a route gets it too
        return;
    }
    const config::Route& route = *compiled.config;
    if (!upgrade_.empty()) {
        forward();  // a tunnel is never cached or coalesced
        return;
    }
    if (client_.worker().cache == nullptr || !route.cache.enabled) {
        forward();
        return;
    }
    cacheable_route_ = true;
    lookup();
}

namespace {

// RFC 9110 15.5.6: a 405 lists what the resource does allow.
std::string allowValue(const std::vector<std::string>& methods) {
    std::string out;
    for (const auto& method : methods) {
        out += out.empty() ? "" : ", ";
        out += method;
    }
    return out;
}

bool refuses(const config::AccessList& access, const net::SocketAddress& client) {
    if (net::inCidrs(access.deny, client)) {
        return true;
    }
    return !access.allow.empty() && !net::inCidrs(access.allow, client);
}

}  // namespace

bool Transaction::refusedByAccessRules(const config::Route& route) {
    const net::SocketAddress& client = real_client_ ? *real_client_ : client_.peerAddress();
    auto deny = [&](metrics::DenyReason reason, int status, const char* detail) {
        if (auto* m = client_.worker().metrics) {
            m->accessDenied(snapshot_->route(route_index_).metric_slot, reason);
        }
        status_ = status;
        logAccess();
        enter(State::Finished);
        client_.sendError(status, detail, cacheStatus());
        return true;
    };
    if (snapshot_->any_listener_access) {
        const config::Listener* listener = snapshot_->listenerConfig(client_.listener().name);
        if (listener != nullptr && refuses(listener->access, client)) {
            return deny(metrics::DenyReason::ListenerAccess, 403,
                        "refused by the listener's access list");
        }
    }
    if (!route.access.empty() && refuses(route.access, client)) {
        return deny(metrics::DenyReason::RouteAccess, 403, "refused by the route's access list");
    }
    if (!route.methods_allowed.empty() &&
        std::find(route.methods_allowed.begin(), route.methods_allowed.end(), request_.method) ==
            route.methods_allowed.end()) {
        if (auto* m = client_.worker().metrics) {
            m->accessDenied(snapshot_->route(route_index_).metric_slot,
                            metrics::DenyReason::Method);
        }
        status_ = 405;
        const std::string body = "405 " + std::string(http::reasonPhrase(405)) + "\n";
        http::Fields fields;
        fields.add("Content-Type", "text/plain");
        fields.add("Allow", allowValue(route.methods_allowed));
        sendLocalAnswer(405, fields, body);
        return true;
    }
    if (route.max_request_body_bytes != 0 && request_.framing == http::BodyFraming::Length &&
        request_.content_length > route.max_request_body_bytes) {
        return deny(metrics::DenyReason::BodySize, 413, "request body over the route's limit");
    }
    return false;
}

bool Transaction::refusedByRateLimit(const CompiledRoute& route) {
    const std::string& kind = route.config->rate_limit.key;
    std::string_view key;  // "route": one bucket for everyone
    if (kind == "client") {
        key = clientAddress();
    } else if (kind.starts_with("header:")) {
        const std::string* value = request_.fields.get(std::string_view(kind).substr(7));
        key = value != nullptr ? std::string_view(*value) : std::string_view("\n-");
    }
    const auto now = std::chrono::steady_clock::now().time_since_epoch();
    const RateLimiter::Decision decision =
        route.rate_limiter->check(key, std::chrono::duration_cast<std::chrono::nanoseconds>(now));
    if (decision.allowed) {
        return false;
    }
    if (auto* m = client_.worker().metrics) {
        m->rateLimited(route.metric_slot);
    }
    // RFC 6585 4: Retry-After in whole seconds, rounded up so a client waiting that long fits.
    const auto seconds = (decision.retry_after.count() + 999'999'999) / 1'000'000'000;
    status_ = 429;
    const std::string body = "429 " + std::string(http::reasonPhrase(429)) + "\n";
    const std::string retry_after = std::to_string(std::max<std::int64_t>(seconds, 1));
    http::Fields fields;
    fields.add("Content-Type", "text/plain");
    fields.add("Retry-After", retry_after);
    sendLocalAnswer(429, fields, body);
    return true;
}

void Transaction::sendLocalAnswer(int status, const http::Fields& fields, std::string_view body,
                                  RouteRules rules) {
    http::FieldEdits edits;
    edits.add("Cache-Status", cacheStatus());
    http::OutgoingResponse out;
    out.status = status;
    out.fields = &fields;
    out.body = http::ResponseBody::Length;
    out.content_length = body.size();
    out.state_length = true;
    out.head_only = request_.isHead();
    if (rules == RouteRules::Apply) {
        sendResponseHead(out, edits);
    } else {
        out.edits = &edits;
        client_.sendHead(out);
    }
    if (!out.head_only && !body.empty()) {
        client_.sendBody(body);
        body_bytes_sent_ = body.size();
    }
    logAccess();
    enter(State::Finished);
    client_.endResponse();  // schedules our deletion; touch nothing after this
}

RuleVariables Transaction::ruleVariables() const {
    RuleVariables vars;
    vars.client_address = clientAddress();
    vars.request_id = client_.requestId();
    vars.scheme = client_.listener().tls ? std::string_view("https") : std::string_view("http");
    vars.host = request_.host;
    return vars;
}

void Transaction::answerAction(const RouteActions& actions) {
    http::Fields fields;
    std::string_view body;
    metrics::RouteAction action = metrics::RouteAction::Respond;
    if (actions.redirect != nullptr) {
        action = metrics::RouteAction::Redirect;
        status_ = static_cast<int>(actions.redirect->status);
        const config::Route& route = *snapshot_->route(route_index_).config;
        fields.add("Location", redirectLocation(*actions.redirect, route.match.path_prefix,
                                                client_.listener().tls ? "https" : "http",
                                                request_.host, request_.path, request_.query));
    } else {
        status_ = static_cast<int>(actions.respond->status);
        body = actions.respond->body;
        if (!body.empty() || !actions.respond->content_type.empty()) {
            fields.add("Content-Type", actions.respond->content_type);
        }
    }
    // strata answers as an origin would, with its clock (RFC 9110 6.6.1).
    fields.add("Date", cache::formatHttpDate(std::chrono::system_clock::now()));
    if (auto* m = client_.worker().metrics) {
        m->routeAction(snapshot_->route(route_index_).metric_slot, action);
    }
    // The body is copied into the connection's output: a reload may free it.
    sendLocalAnswer(status_, fields, body, RouteRules::Apply);
}

void Transaction::sendResponseHead(http::OutgoingResponse& out, http::FieldEdits& edits) {
    const HeaderRuleSet& rules = snapshot_->route(route_index_).actions.response_headers;
    std::vector<std::string> values;  // expanded rule values: outlive sendHead()
    if (!rules.empty()) {
        if (!out.serialized_http1.empty() && out.fields != nullptr &&
            rules.dropsAnyOf(*out.fields)) {
            // A stored head is copied as serialized, where drops cannot act: serialize the
            // fields instead (the status line's reason comes from out.reason).
            out.serialized_http1 = {};
        }
        rules.apply(edits, ruleVariables(), values);
    }
    out.edits = &edits;
    client_.sendHead(out);
}

void Transaction::adoptTrustedRequestId(const config::Listener& listener) {
    if (!net::inCidrs(listener.trusted_proxies, client_.peerAddress())) {
        return;
    }
    // Two ids would be ambiguous: strata's own then.
    const std::string* id = request_.fields.get("X-Request-Id");
    if (id != nullptr && request_.fields.count("X-Request-Id") == 1 && acceptableRequestId(*id)) {
        client_.adoptRequestId(*id);
    }
}

void Transaction::lookup() {
    cache::CacheRuntime& runtime = *client_.worker().cache;
    const bool get = request_.method == "GET";
    if (!get && request_.method != "HEAD") {
        // Unsafe methods invalidate on success (invalidateAfterUnsafe); others just pass.
        setOutcome(metrics::CacheResult::Pass, "strata; fwd=method");
        forward();
        return;
    }
    if (request_.framing != http::BodyFraming::None) {
        // RFC 9110 9.3.1: a GET body has no defined semantics, yet an origin may answer by it;
        // the key has no body, so such an answer is neither served from nor stored in the cache.
        setOutcome(metrics::CacheResult::Pass, "strata; fwd=request; detail=request-body");
        forward();
        return;
    }
    primary_key_ = cache::primaryKey(client_.listener().tls ? "https" : "http", request_,
                                     routeCache(*snapshot_, route_index_).key);
    request_cc_ = cache::requestDirectives(request_.fields);
    if (request_.fields.has("Authorization")) {
        // RFC 9111 3.5: a shared cache answers an authorized request only from responses that
        // allow it; strata forwards such requests and lets checkStorable() decide on storing.
        setOutcome(metrics::CacheResult::Pass, "strata; fwd=request");
        forward();
        return;
    }
    auto now = std::chrono::system_clock::now();
    cache::L1Lookup found = runtime.l1->lookup(primary_key_, request_.fields);
    metrics::WorkerMetrics* m = client_.worker().metrics;
    if (found.entry &&
        useStored(found.entry, found.entry->decide(request_cc_, now), metrics::Tier::L1)) {
        return;
    }
    setOutcome(metrics::CacheResult::Miss, found.entry ? "strata; fwd=stale"
                                           : found.miss == cache::L1Miss::Vary
                                               ? "strata; fwd=vary-miss"
                                               : "strata; fwd=uri-miss");
    if (request_cc_.only_if_cached) {
        if (m != nullptr) {
            m->cacheLookup(routeSlot(), metrics::Tier::L1, metrics::LookupResult::Miss);
        }
        // Nothing is fetched, so there is nothing to coalesce; L2 may still have it.
        if (runtime.l2 != nullptr && runtime.l2->enabled()) {
            lookupL2();
            return;
        }
        answerOnlyIfCachedMiss();
        return;
    }
    std::weak_ptr<bool> alive = aliveToken();
    auto wake = [this, alive](const cache::Coalescer::Outcome& outcome) {
        auto guard = alive.lock();
        if (guard && *guard) {
            onCoalescedWake(outcome);
        }
    };
    cache::EntryPtr refreshing;
    auto role = runtime.coalescer.join(primary_key_, client_.worker().loop, wake, event::loopTime(),
                                       &refreshing);
    if (role == cache::Coalescer::Role::Stale) {
        // A stale-while-revalidate refresh runs for this URL; its stale copy (from either
        // tier) answers now, as the first request was answered, instead of after the refresh.
        if (cache::secondaryKey(refreshing->meta().vary, request_.fields) ==
            refreshing->meta().secondary_key) {
            cache::LookupDecision decision = refreshing->decide(request_cc_, now);
            if (decision.usability == cache::Usability::StaleWhileRevalidate) {
                if (m != nullptr) {
                    m->cacheLookup(routeSlot(), metrics::Tier::L1, metrics::LookupResult::Stale);
                }
                setOutcome(metrics::CacheResult::Stale,
                           withTtl("strata; hit; detail=refreshing", decision.ttl));
                deliver(refreshing);
                return;
            }
        }
        role = runtime.coalescer.join(primary_key_, client_.worker().loop, std::move(wake),
                                      event::loopTime());
    }
    if (m != nullptr) {
        // Not stored either way; but a key remembered as uncacheable will not be, so it is
        // counted apart from the misses that may fill the cache.
        m->cacheLookup(routeSlot(), metrics::Tier::L1,
                       role == cache::Coalescer::Role::Pass ? metrics::LookupResult::HitForPass
                                                            : metrics::LookupResult::Miss);
    }
    switch (role) {
        case cache::Coalescer::Role::Leader:
            coalescing_leader_ = true;
            // The L1 lookup and join() are two steps: a leader on another worker may have
            // stored the object and finished between them. Fetching again would be a second
            // origin request for one burst; serve what it stored, like a waiter would.
            if (cache::EntryPtr stored = runtime.l1->lookup(primary_key_, request_.fields).entry) {
                cache::LookupDecision decision = stored->decide(request_cc_, now);
                if (decision.servable()) {
                    finishCoalescing(stored, false);  // whoever joined since gets it too
                    deliverCollapsed(stored, decision);
                    return;
                }
            }
            if (runtime.l2 != nullptr && runtime.l2->enabled()) {
                lookupL2();
                return;
            }
            forward();
            return;
        case cache::Coalescer::Role::Waiter:
            enter(State::AwaitingLeader);
            if (m != nullptr) {
                m->cacheCoalescedWait();
            }
            return;  // onCoalescedWake() continues
        case cache::Coalescer::Role::Pass:
            // Known uncacheable (hit-for-pass): the header says so too, as the log's cache=pass.
            setOutcome(metrics::CacheResult::Pass, cache_status_ + "; detail=hit-for-pass");
            passing_ = true;
            forward();
            return;
        case cache::Coalescer::Role::Stale:
            break;  // not asked for by the second join()
    }
}

std::weak_ptr<bool> Transaction::aliveToken() {
    if (!alive_) {
        alive_ = std::make_shared<bool>(true);  // only exchanges that wait on others need it
    }
    return alive_;
}

void Transaction::lookupL2() {
    if (state_ != State::AwaitingL2) {
        enter(State::AwaitingL2);
    }
    std::weak_ptr<bool> alive = aliveToken();
    client_.worker().cache->l2->lookup(primary_key_, request_.fields, client_.worker().loop,
                                       [this, alive](cache::L2LookupResult result) {
                                           auto guard = alive.lock();
                                           if (guard && *guard && state_ == State::AwaitingL2) {
                                               onL2Result(std::move(result));
                                           }
                                       });
}

void Transaction::onL2Result(cache::L2LookupResult result) {
    // A fill-lease owner's second look and a waiter's polls are the same request's lookup: its
    // miss is counted once (an answer from L2 is counted when it is used).
    metrics::WorkerMetrics* m = l2_miss_counted_ ? nullptr : client_.worker().metrics;
    if (result.status == cache::L2Status::Hit && result.entry) {
        // Promoted to L1 (when it fits), stale or not, so the next request finds it there. L2
        // keeps identity only: the codings are made again here, once per promotion; an entry
        // L1 will not hold is served as identity rather than compressed on every L2 hit.
        cache::L1Cache& l1 = *client_.worker().cache->l1;
        if (l1.admits(result.entry->charge())) {
            result.entry =
                compressForStore(result.entry, routeCompression(*snapshot_, route_index_), m);
        }
        l1.insert(result.entry);
        cache::LookupDecision decision =
            result.entry->decide(request_cc_, std::chrono::system_clock::now());
        if (useStored(result.entry, decision, metrics::Tier::L2)) {
            return;
        }
        if (m != nullptr) {
            m->cacheLookup(routeSlot(), metrics::Tier::L2, metrics::LookupResult::Stale);
        }
    } else if (m != nullptr) {
        m->cacheLookup(routeSlot(), metrics::Tier::L2,
                       result.status == cache::L2Status::Miss ? metrics::LookupResult::Miss
                                                              : metrics::LookupResult::Error);
    }
    if (request_cc_.only_if_cached) {
        answerOnlyIfCachedMiss();
        return;
    }
    l2_miss_counted_ = true;
    // Down, slow, corrupt or absent: a miss, never an error for the client.
    if (fillLeasesOn() && result.status == cache::L2Status::Miss) {
        takeFillLease();  // another instance may be fetching it already
        return;
    }
    forward();
}

bool Transaction::fillLeasesOn() const {
    return !request_cc_.only_if_cached && leasesEnabled(client_.worker().cache, *snapshot_);
}

void Transaction::takeFillLease() {
    if (lease_owner_) {
        forward();  // ours already: the L2 look after taking it found nothing newer
        return;
    }
    if (state_ != State::AwaitingL2) {
        enter(State::AwaitingL2);
    }
    std::weak_ptr<bool> alive = aliveToken();
    client_.worker().cache->l2->acquireLease(
        primary_key_, fillLeaseTtl(*group_), client_.worker().loop,
        [this, alive](cache::L2Lease lease) {
            auto guard = alive.lock();
            if (guard && *guard && state_ == State::AwaitingL2) {
                onFillLease(lease);
            }
        });
}

void Transaction::onFillLease(const cache::L2Lease& lease) {
    metrics::Registry& registry = metrics::global();
    switch (lease.state) {
        case cache::LeaseState::Owner:
            lease_owner_ = true;
            registry.fillLease(metrics::LeaseEvent::Taken);
            // Our L2 miss may predate a previous owner's store, which released the lease just
            // before we took it (its set lands before its release): look once more, so that
            // a slow instance never fetches what another one just stored.
            lookupL2();
            return;
        case cache::LeaseState::Unavailable:
            forward();
            return;
        case cache::LeaseState::Uncacheable:
            // A cluster-wide hit-for-pass: remembered locally too, and this instance's waiters
            // fetch alone at once.
            registry.fillLease(metrics::LeaseEvent::Pass);
            finishCoalescing(nullptr, /*uncacheable=*/true);
            setOutcome(metrics::CacheResult::Pass, cache_status_ + "; detail=hit-for-pass");
            passing_ = true;
            forward();
            return;
        case cache::LeaseState::Filling:
            break;
    }
    const auto now = event::loopTime();
    if (!lease_waited_) {
        lease_waited_ = true;
        registry.fillLease(metrics::LeaseEvent::Waited);
        lease_wait_until_ = started_ + snapshot_->config->cache.l2.lease_wait;
        lease_poll_delay_ = kFirstFillPoll;
    }
    const auto to_deadline = std::chrono::duration_cast<std::chrono::milliseconds>(
        lease.deadline - std::chrono::system_clock::now());
    const auto to_cap =
        std::chrono::duration_cast<std::chrono::milliseconds>(lease_wait_until_ - now);
    if (to_deadline.count() <= 0 || to_cap.count() <= 0) {
        // The owner is late (or gone with its record not yet expired), or this request waited
        // as long as it may: fetch alone.
        registry.fillLease(metrics::LeaseEvent::Expired);
        forward();
        return;
    }
    const auto delay = std::min({lease_poll_delay_, to_deadline, to_cap});
    lease_poll_delay_ = std::min(lease_poll_delay_ * 3 / 2, kMaxFillPoll);
    if (!fill_poll_) {
        fill_poll_ = std::make_unique<event::Timer>(client_.worker().loop, [this] {
            if (state_ == State::AwaitingFill) {
                lookupL2();  // a hit answers; a miss asks for the lease again
            }
        });
    }
    enter(State::AwaitingFill);
    fill_poll_->arm(std::max(delay, std::chrono::milliseconds(1)));
}

void Transaction::releaseFillLease(bool uncacheable) {
    if (!lease_owner_) {
        return;
    }
    lease_owner_ = false;
    if (auto* runtime = client_.worker().cache; runtime != nullptr && runtime->l2 != nullptr) {
        runtime->l2->releaseLease(primary_key_, uncacheable, kHitForPass);
    }
}

// RFC 9111 4.2.4: a disconnected cache may serve stale unless an in-protocol directive forbids
// it: must-revalidate, proxy-revalidate, s-maxage (all in must_revalidate) or no-cache in the
// stored answer, and a client's own no-cache or max-age=0 asks for a validated answer.
bool Transaction::staleIfUnreachable(const cache::CacheEntry& entry,
                                     const cache::LookupDecision& decision) const {
    const cache::FreshnessInfo& stored = entry.freshness();
    const cache::Seconds grace = routeCache(*snapshot_, route_index_).policy.stale_if_unreachable;
    const cache::Seconds staleness = decision.ttl.count() < 0 ? -decision.ttl : cache::Seconds(0);
    return grace.count() > 0 && !stored.must_revalidate && !stored.no_cache &&
           !request_cc_.no_cache && !(request_cc_.max_age && *request_cc_.max_age == 0) &&
           staleness <= grace;
}

// A stored entry, from either tier, is served, refreshed or revalidated by one rule: an instance
// with a cold L1 must not cost the origin more than one with a warm L1. False when the entry
// cannot answer (only-if-cached and it is stale): the caller treats it as a miss.
bool Transaction::useStored(const cache::EntryPtr& entry, const cache::LookupDecision& decision,
                            metrics::Tier tier) {
    metrics::WorkerMetrics* m = client_.worker().metrics;
    auto count = [&](metrics::LookupResult result) {
        if (m != nullptr) {
            m->cacheLookup(routeSlot(), tier, result);
        }
    };
    const bool l2 = tier == metrics::Tier::L2;
    const std::string_view hit = l2 ? "strata; hit; detail=l2" : "strata; hit; detail=l1";
    if (lease_waited_ && decision.usability != cache::Usability::Revalidate &&
        decision.usability != cache::Usability::OnlyIfCachedMiss) {
        metrics::global().fillLease(metrics::LeaseEvent::Avoided);  // another instance fetched
    }
    switch (decision.usability) {
        case cache::Usability::Fresh:
        case cache::Usability::StaleAcceptable:
            count(metrics::LookupResult::Hit);
            finishCoalescing(entry, false);  // an L2 leader's waiters get it too
            setOutcome(metrics::CacheResult::Hit, withTtl(hit, decision.ttl));
            deliver(entry);
            return true;
        case cache::Usability::StaleWhileRevalidate:
            count(metrics::LookupResult::Stale);
            // RFC 9211 has no "stale": a stale hit is a hit with a negative ttl.
            setOutcome(metrics::CacheResult::Stale, withTtl(hit, decision.ttl));
            stale_ = entry;
            // The waiters may serve it stale too; leadership passes to the refresh.
            finishCoalescing(entry, false);
            startBackgroundRefresh();
            deliver(entry);
            return true;
        case cache::Usability::Revalidate:
            count(metrics::LookupResult::Stale);
            // A coalescing leader stays one: its 304 (or full answer) releases the waiters, and
            // keep() updates L1 and L2.
            stale_ = entry;
            serve_stale_on_error_ = decision.serve_stale_on_error;
            serve_stale_if_unreachable_ = staleIfUnreachable(*entry, decision);
            revalidating_ = true;
            // RFC 9211: a fresh entry revalidated because the client asked is fwd=request
            // (ttl, unlike the stored lifetime, is <= 0 once soft-purged). It stays "stale"
            // in the log if the stored entry answers (304, stale-if-error), else a miss.
            setOutcome(metrics::CacheResult::Stale,
                       std::string(decision.ttl.count() > 0 ? "strata; fwd=request"
                                                            : "strata; fwd=stale") +
                           (l2 ? "; detail=l2" : ""));
            // A stale object is revalidated once across instances; a client's own no-cache on
            // a fresh one is its request alone.
            if (decision.ttl.count() <= 0 && fillLeasesOn()) {
                takeFillLease();
                return true;
            }
            forward();
            return true;
        case cache::Usability::OnlyIfCachedMiss:
            break;
    }
    return false;
}

// RFC 9111 5.2.1.7: nothing usable is stored, and the client forbids forwarding.
void Transaction::answerOnlyIfCachedMiss() {
    status_ = 504;
    logAccess();
    enter(State::Finished);
    client_.sendError(504, "only-if-cached", cacheStatus());
}

void Transaction::onCoalescedWake(const cache::Coalescer::Outcome& outcome) {
    if (state_ != State::AwaitingLeader) {
        return;
    }
    auto now = std::chrono::system_clock::now();
    const cache::EntryPtr& entry = outcome.entry;
    if (entry &&
        cache::secondaryKey(entry->meta().vary, request_.fields) == entry->meta().secondary_key) {
        cache::LookupDecision decision = entry->decide(request_cc_, now);
        if (decision.servable()) {
            deliverCollapsed(entry, decision);
            return;
        }
    }
    // Nothing shareable came of the leader's fetch (uncacheable, failed, or another variant):
    // fetch alone, without coalescing again.
    if (outcome.uncacheable) {
        setOutcome(metrics::CacheResult::Pass, cache_status_ + "; detail=hit-for-pass");
        passing_ = true;
    }
    forward();
}

// Another request's fetch answers this one (RFC 9211: hit; collapsed).
void Transaction::deliverCollapsed(const cache::EntryPtr& entry,
                                   const cache::LookupDecision& decision) {
    setOutcome(metrics::CacheResult::Collapsed, withTtl("strata; hit; collapsed", decision.ttl));
    deliver(entry);
}

void Transaction::startBackgroundRefresh() {
    cache::CacheRuntime& runtime = *client_.worker().cache;
    // Exactly one refresh per key: only the coalescing leader starts one.
    auto role = runtime.coalescer.join(
        primary_key_, client_.worker().loop, [](const cache::Coalescer::Outcome&) {},
        event::loopTime());
    if (role != cache::Coalescer::Role::Leader) {
        return;
    }
    // As in lookup(): a refresh on another worker may have stored a newer entry and finished
    // since this request found the stale one. Refreshing again would be a second origin request.
    if (cache::EntryPtr current = runtime.l1->lookup(primary_key_, request_.fields).entry;
        current && current != stale_) {
        runtime.coalescer.finish(primary_key_, cache::Coalescer::Outcome{current, false},
                                 event::loopTime(), kHitForPass);
        return;
    }
    runtime.coalescer.offerStale(primary_key_, stale_);
    // The refresh is built by the builder every upstream request goes through, so it can never
    // forward what a client-driven request would not.
    UpstreamExchange::Request upstream = buildUpstreamRequest(UpstreamPurpose::BackgroundRefresh);
    if (upstream.head.empty()) {
        runtime.coalescer.finish(primary_key_, cache::Coalescer::Outcome{nullptr, false},
                                 event::loopTime(), kHitForPass);
        return;
    }
    // The refresh asks the server the client's request would have gone to.
    upstream.hash_key = upstreamHashKey(group_->hashKeySource(), request_, clientAddress());
    auto refresh =
        std::make_unique<BackgroundRefresh>(client_.worker(), snapshot_, route_index_, request_,
                                            stale_, primary_key_, std::move(upstream));
    BackgroundRefresh* raw = refresh.get();
    client_.worker().addBackground(std::move(refresh));
    raw->start();
}

void Transaction::finishCoalescing(const cache::EntryPtr& entry, bool uncacheable, bool too_large) {
    releaseFillLease(uncacheable);
    if (!coalescing_leader_) {
        return;
    }
    coalescing_leader_ = false;
    if (auto* runtime = client_.worker().cache) {
        runtime->coalescer.finish(primary_key_, cache::Coalescer::Outcome{entry, uncacheable},
                                  event::loopTime(), too_large ? kTooLargeForPass : kHitForPass);
    }
}

void Transaction::setOutcome(metrics::CacheResult result, std::string cache_status) {
    cache_status_ = std::move(cache_status);
    client_.setCacheResult(result);
}

void Transaction::deliver(const cache::EntryPtr& entry) {
    auto now = std::chrono::system_clock::now();
    const std::string age = std::to_string(entry->currentAge(now).count());
    http::FieldEdits edits;
    http::OutgoingResponse out;
    out.edits = &edits;
    http::Fields not_modified;
    DeliveryPlan plan;  // outlives sendHead(): the edits are views into its fields
    std::string boundary;
    if (cache::evaluateConditionals(*entry, request_, now) ==
        cache::ConditionalResult::NotModified) {
        // RFC 9111 4.3.2: the cache answers the client's own validators. They come before
        // Range (RFC 9110 13.2.2), so a 304 never carries a range.
        status_ = 304;
        not_modified = cache::notModifiedFields(*entry);
        if (const cache::EncodedBody* coded =
                chooseStoredCoding(*entry, request_.method, request_.fields)) {
            // RFC 9110 15.4.5: the ETag the 200 would have carried, the coding's own.
            if (const std::string* etag = coded->fields.get("ETag")) {
                not_modified.set("ETag", *etag);
            } else {
                not_modified.remove("ETag");
            }
        }
        out.status = 304;
        out.fields = &not_modified;
    } else {
        const std::string* range = request_.fields.get("Range");
        const std::string* if_range = range ? request_.fields.get("If-Range") : nullptr;
        if (range && request_.method == "GET" && entry->status() == 200) {
            boundary = multipartBoundary();
        }
        plan = planDelivery(*entry, request_.method, range ? std::string_view(*range) : "",
                            if_range ? std::string_view(*if_range) : "", request_.fields, now,
                            boundary);
        status_ = plan.status;
        out.status = status_;
        out.fields = plan.coded ? &plan.coded->fields : &entry->fields();
        if (plan.whole_body) {
            out.reason = entry->reason();
            out.serialized_http1 = plan.coded ? plan.coded->head : entry->serializedHead();
        } else {
            // The stored status line is not this answer's: the codec serializes the fields,
            // so drops apply. A stored Content-Range (odd on a 200) would contradict ours.
            edits.drop("Content-Range");
            if (plan.replace_content_type) {
                edits.drop("Content-Type");
            }
        }
        if (plan.accept_ranges) {
            edits.add("Accept-Ranges", "bytes");
        }
        for (const auto& [name, value] : plan.fields) {
            edits.add(name, value);
        }
        // A stored 204 has no body and no Content-Length (RFC 9110 8.6).
        if (status_ != 204) {
            out.body = http::ResponseBody::Length;
            out.content_length = plan.content_length;
            out.state_length = true;
            out.head_only = request_.isHead();
        }
    }
    edits.add("Age", age);  // RFC 9111 5.1, computed at serve time
    edits.add("Via", kViaValue);
    edits.add("Cache-Status", cacheStatus());
    sendResponseHead(out, edits);
    if (out.body == http::ResponseBody::Length && !out.head_only && out.content_length > 0) {
        if (plan.whole_body) {
            client_.sendBody(plan.coded ? plan.coded->body : entry->body());
        } else {
            for (const BodyPart& part : plan.parts) {
                if (part.length > 0) {
                    client_.sendBody(entry->body(), part.offset, part.length);
                } else {
                    client_.sendBody(part.literal);
                }
            }
        }
        body_bytes_sent_ = out.content_length;
    }
    logAccess();
    enter(State::Finished);
    client_.endResponse();  // schedules our deletion; touch nothing after this
}

void Transaction::forward() {
    UpstreamExchange::Request upstream = buildUpstreamRequest(UpstreamPurpose::Client);
    if (upstream.head.empty()) {
        onExchangeFailure(500, false, "internal error: upstream request could not be built");
        return;
    }
    upstream.hash_key = upstreamHashKey(group_->hashKeySource(), request_, clientAddress());
    exchange_ = std::make_unique<UpstreamExchange>(client_.worker(), *group_, std::move(upstream),
                                                   static_cast<UpstreamExchangeCallbacks&>(*this),
                                                   client_.connectionId());
    request_time_ = std::chrono::system_clock::now();
    enter(State::Forwarding);
    exchange_->start();
}

UpstreamExchange::Request Transaction::buildUpstreamRequest(UpstreamPurpose purpose) {
    const bool refresh = purpose == UpstreamPurpose::BackgroundRefresh;
    const RouteActions& actions = snapshot_->route(route_index_).actions;
    UpstreamExchange::Request out;
    // A background refresh is a bodiless conditional GET, whatever the client sent: it answers
    // the cache, not the client, and stores under the key of a GET.
    out.method = refresh ? std::string("GET") : request_.method;
    out.has_body = !refresh && request_.framing != http::BodyFraming::None;
    out.chunked = out.has_body && request_.framing == http::BodyFraming::Chunked;
    out.upgrade = !refresh && !upgrade_.empty();
    // The client's fields stay intact (the cache may still answer its conditionals): the
    // forwarded head is the original fields with edits applied while serializing.
    const http::Fields* source = &request_.fields;
    http::Fields conditional;
    http::FieldEdits edits;
    edits.drop("Expect");
    if ((revalidating_ || refresh) && stale_) {
        conditional = request_.fields;
        cache::makeConditional(*stale_, conditional);
        source = &conditional;
    } else if (cacheable_route_ && request_.method == "GET" && !primary_key_.empty()) {
        // A miss must bring back the whole response so it can be stored; the cache answers the
        // client's own validators from the stored entry (RFC 9111 4.3.2).
        client_conditional_ =
            request_.fields.has("If-None-Match") || request_.fields.has("If-Modified-Since");
        edits.drop("If-None-Match");
        edits.drop("If-Modified-Since");
    }
    if (cacheable_route_ && !primary_key_.empty() && !passing_) {
        // A cacheable fetch brings back the whole object: a 206 could not be stored, and the
        // client may get the full 200 instead of its range (RFC 9110 14.2). A pass keeps it.
        edits.drop("Range");
        edits.drop("If-Range");
    }
    if (!out.has_body) {
        edits.drop("Content-Length");  // a refresh leaves the client's body behind
    }
    if (cacheable_route_) {
        // The cache key has none of these, so an origin honouring one would answer another
        // resource (or method) and have it stored under this URL for everyone.
        for (std::string_view field : routeCache(*snapshot_, route_index_).dropped_overrides) {
            edits.drop(field);
        }
    }
    // The peer, not the real client: each hop appends the one it saw, so the next hop's own
    // trusted_proxies walk (and the origin's) can check every link of the chain.
    edits.appendToList("X-Forwarded-For", client_.clientAddress());
    // Set by strata alone, from what the request was routed and keyed by: an origin building
    // links or redirects from a client-sent copy would reflect any host into a shared answer.
    edits.drop("X-Forwarded-Proto");
    edits.add("X-Forwarded-Proto", client_.listener().tls ? "https" : "http");
    edits.drop("X-Forwarded-Host");
    if (!request_.host.empty()) {
        edits.add("X-Forwarded-Host", request_.host);
    }
    // RFC 7239 for servers that read it: appended like X-Forwarded-For (an earlier hop's
    // elements are passed on, for the origin's own trust walk).
    std::string forwarded;
    if (group_->config().forwarded) {
        forwarded =
            forwardedElement(client_.clientAddress(), request_.host, client_.listener().tls);
        edits.appendToList("Forwarded", forwarded);
    }
    std::string subject;
    if (const std::string& header = client_.forwardSubjectHeader(); !header.empty()) {
        edits.drop(header);  // only strata vouches for a client certificate
        subject = client_.clientSubject();
        if (!subject.empty()) {
            edits.add(header, subject);
        }
    }
    // The exchange's id names it in strata's log and the origin's: a trusted proxy's own
    // X-Request-Id when it sent an acceptable one (adoptTrustedRequestId), else strata's;
    // an untrusted client's is replaced, never kept (README).
    edits.drop("X-Request-Id");
    edits.add("X-Request-Id", client_.requestId());
    std::vector<std::string> rule_values;  // expanded values: outlive the serialization below
    actions.request_headers.apply(edits, ruleVariables(), rule_values);
    // RFC 9110 7.6.3: the protocol the request was received with.
    edits.appendToList("Via", request_.version_major == 2   ? std::string_view("2.0 strata")
                              : request_.version_minor == 0 ? std::string_view("1.0 strata")
                                                            : kViaValue);
    if (out.chunked) {
        edits.add("Transfer-Encoding", "chunked");
    }
    if (out.upgrade) {
        // Both are hop-by-hop and dropped with the client's copies: strata names the one token
        // it tunnels, never what else the client offered (h2c above all).
        edits.add("Connection", "upgrade");
        edits.add("Upgrade", upgrade_);
    }
    // Absolute-form targets become origin-form: upstreams are origin servers (RFC 9112 3.2.1).
    std::string_view target = request_.target;
    const bool absolute_form = !target.starts_with('/') && target != "*";
    if (actions.request_headers.adds("Host")) {
        // request_headers.set names the Host the origin sees (its own drops the client's).
    } else if (absolute_form) {
        // RFC 9112 3.2.2: the target's authority wins over a received Host. It is what the
        // request was routed and keyed by, so a different Host must not reach the origin.
        edits.drop("Host");
        edits.add("Host", request_.host);
    } else if (!source->has("Host")) {
        // HTTP/1.1 requires Host upstream (RFC 9112 3.2). An HTTP/1.0 client may have sent
        // none: use the upstream's name, as nginx's $proxy_host does.
        edits.add("Host", request_.host.empty() ? std::string_view(group_->config().name)
                                                : std::string_view(request_.host));
    }
    std::string& head = out.head;
    head.reserve(256 + request_.target.size());
    if (actions.rewrite && target != "*") {
        // The origin gets the rewritten path; the cache key stayed the client's URL.
        std::string rewritten = actions.rewrite->apply(request_.path.empty() ? "/" : request_.path);
        if (!request_.query.empty()) {
            // A replacement may bring its own query: the client's parameters follow it.
            rewritten += rewritten.find('?') == std::string::npos ? '?' : '&';
            rewritten += request_.query;
        }
        if (purpose == UpstreamPurpose::Client) {
            if (auto* m = client_.worker().metrics) {
                m->routeAction(snapshot_->route(route_index_).metric_slot,
                               metrics::RouteAction::Rewrite);
            }
        }
        http::appendRequestLine(head, out.method, rewritten, 1);
    } else if (absolute_form) {
        std::string origin_form = request_.path.empty() ? "/" : request_.path;
        if (!request_.query.empty()) {
            origin_form += '?';
            origin_form += request_.query;
        }
        http::appendRequestLine(head, out.method, origin_form, 1);
    } else {
        http::appendRequestLine(head, out.method, target, 1);
    }
    if (!edits.complete()) {
        // Never forward a request with an edit left out (a header strata must drop could pass).
        STRATA_BUG("upstream request needs more field edits than FieldEdits holds");
        out.head.clear();
        return out;
    }
    http::appendForwardedFields(head, *source, edits);
    head += "\r\n";
    if (const std::string& version = group_->config().proxy_protocol; version != "off") {
        // The header describes the client connection this request came on: where from, and
        // the address it was made to (both as known after an incoming PROXY header).
        const net::SocketAddress& from = real_client_ ? *real_client_ : client_.peerAddress();
        const net::SocketAddress& to = client_.localAddress();
        out.proxy_header = version == "v1" ? net::proxy_protocol::encodeV1(from, to)
                                           : net::proxy_protocol::encodeV2(from, to);
    }
    return out;
}

void Transaction::onClientBody(std::string_view data) {
    request_body_bytes_ += data.size();
    const std::uint64_t limit = snapshot_->route(route_index_).config->max_request_body_bytes;
    if (limit != 0 && request_body_bytes_ > limit && state_ != State::Finished &&
        state_ != State::Aborted) {
        // A chunked body grew past the route's limit on its way upstream: stop forwarding it.
        dropExchange();
        if (auto* m = client_.worker().metrics) {
            m->accessDenied(snapshot_->route(route_index_).metric_slot,
                            metrics::DenyReason::BodySize);
        }
        if (!canSendError()) {
            logAccess();
            enter(State::Aborted);
            client_.abortResponse();
            return;
        }
        status_ = 413;
        logAccess();
        enter(State::Finished);
        client_.sendError(413, "request body over the route's limit", cacheStatus());
        return;
    }
    if (exchange_ && state_ != State::Aborted) {
        exchange_->sendBody(data);
    }
}

void Transaction::onClientBodyComplete() {
    request_complete_ = true;
    if (exchange_ && state_ != State::Aborted) {
        exchange_->endBody();
    }
}

bool Transaction::wantsMoreBody() const {
    return !exchange_ || exchange_->wantsMoreBody();
}

void Transaction::onClientWritable() {
    if (exchange_ && state_ != State::Aborted && client_.outputPending() < kClientOutputHighWater) {
        exchange_->resumeReading();
    }
}

void Transaction::onExchangeBodyWritable() {
    client_.resumeRequestBody();
}

bool Transaction::exchangeSinkFull() {
    return client_.outputPending() >= kClientOutputHighWater;
}

void Transaction::onExchangeFlush() {
    client_.flush();
}

// An Upgrade request that did not become a tunnel (the opened ones are counted by the session).
void Transaction::countUpgradeOutcome(metrics::TunnelResult result) {
    if (!upgrade_.empty() && client_.worker().metrics != nullptr) {
        client_.worker().metrics->tunnel(routeSlot(), result);
    }
}

void Transaction::onExchangeInterim(const http::ResponseHead& head) {
    if (state_ != State::Forwarding) {
        return;  // only before the final head, and only to the client this exchange serves
    }
    // RFC 9110 15.2: passed on as received and never stored; both codecs leave out hop-by-hop
    // fields as for any forwarded head. The route's response header rules are for the final
    // answer.
    http::OutgoingResponse interim;
    interim.status = head.status;
    interim.fields = &head.fields;
    client_.sendInterim(interim);
}

void Transaction::onExchangeUpgraded(http::ResponseHead& head) {
    status_ = 101;
    upstream_label_ = std::string(exchange_->serverLabel());
    upstream_seconds_ = exchange_->upstreamSeconds();
    const std::string* upgrade = head.fields.get("Upgrade");
    if (upgrade == nullptr || !equalsIgnoreCase(*upgrade, upgrade_) ||
        !head.fields.hasToken("Connection", "upgrade")) {
        // Switching to something the client did not ask for (RFC 9110 7.8): no tunnel.
        exchange_->abort();
        onExchangeFailure(502, false, "upstream switched to another protocol");
        return;
    }
    upstream::UpstreamConnectionPtr connection = exchange_->takeUpgraded();
    dropExchange();
    http::FieldEdits edits;
    edits.add("Connection", "upgrade");
    edits.add("Upgrade", upgrade_);
    edits.appendToList("Via", kViaValue);
    std::string out;
    http::appendStatusLine(out, 101, head.reason.empty() ? "Switching Protocols" : head.reason, 1);
    http::appendForwardedFields(out, head.fields, edits);
    out += "\r\n";
    logAccess();
    enter(State::Finished);
    client_.startTunnel(head, std::move(out), std::move(connection),
                        group_->config().timeouts.tunnel_idle);  // touch nothing after this
}

void Transaction::invalidateAfterUnsafe(const http::ResponseHead& head) {
    auto* runtime = client_.worker().cache;
    if (runtime == nullptr) {
        return;
    }
    // RFC 9111 4.4: a non-error answer to an unsafe method invalidates the target URI and the
    // Location / Content-Location URIs of the same origin.
    // Each URI is keyed by the route a GET for it takes, as its entries were.
    auto policy_for = [this](std::string_view host,
                             std::string_view path) -> const cache::KeyPolicy& {
        return snapshot_->keyPolicyFor(host, path);
    };
    for (const std::string& key : cache::invalidationKeys(client_.listener().tls ? "https" : "http",
                                                          request_, head, policy_for)) {
        runtime->l1->purgeKey(key);
        if (runtime->l2 != nullptr) {
            runtime->l2->invalidate(key);
        }
    }
}

void Transaction::onExchangeHead(http::ResponseHead& head) {
    status_ = head.status;
    countUpgradeOutcome(metrics::TunnelResult::Declined);
    upstream_label_ = std::string(exchange_->serverLabel());
    upstream_seconds_ = exchange_->upstreamSeconds();

    if (cacheable_route_) {
        const cache::CachePolicy& policy = routeCache(*snapshot_, route_index_).policy;
        auto now = std::chrono::system_clock::now();
        if (revalidating_ && stale_ && head.status == 304 &&
            cache::notModifiedMatches(*stale_, head)) {
            // RFC 9111 4.3.4: the stored response is still good; freshen and serve it once the
            // (bodiless) 304 exchange completes.
            cache::EntryPtr merged =
                cache::mergeNotModified(*stale_, head, policy, request_time_, now);
            client_.worker().cache->keep(merged, now, lease_owner_);
            lease_owner_ = false;  // released once L2 has the freshened copy
            stale_ = merged;
            cache_status_ += "; fwd-status=304";
            enter(State::Validated);
            return;
        }
        if (stale_ && serve_stale_on_error_ && head.status >= 500) {
            // RFC 5861 4: stale-if-error covers 5xx answers too.
            exchange_->abort();
            dropExchange();
            metrics::global().staleServed(metrics::StaleReason::Error);
            setOutcome(metrics::CacheResult::Stale,
                       "strata; fwd=stale; fwd-status=" + std::to_string(head.status) +
                           "; detail=stale-if-error");
            deliver(stale_);
            return;
        }
        // Only a bodiless GET is stored: lookup() passes one with a body without a key.
        if (request_.method == "GET" && request_.framing == http::BodyFraming::None) {
            auto directives = cache::responseDirectives(head.fields);
            std::optional<std::uint64_t> size;
            if (head.framing == http::BodyFraming::Length) {
                size = head.content_length;
            }
            auto verdict = cache::checkStorable(request_, head, directives, policy, size);
            if (verdict == cache::StoreVerdict::Store && size &&
                !client_.worker().cache->admits(*size)) {
                verdict = cache::StoreVerdict::TooLarge;  // larger than cache.l1.max_bytes
            }
            if (verdict == cache::StoreVerdict::Store) {
                storing_ = true;
                stored_head_ = head;
                response_time_ = now;
                if (size && *size < policy.max_object_bytes) {
                    body_.reserve(static_cast<std::size_t>(*size));
                }
                cache_status_ += "; stored";
            } else {
                // Only what the response says about itself marks the URL hit-for-pass; a
                // verdict caused by this client's request must not stop others coalescing.
                // A 206 answers one range, never says the URL is uncacheable.
                const bool request_specific = verdict == cache::StoreVerdict::RequestNoStore ||
                                              verdict == cache::StoreVerdict::Authorization ||
                                              head.status == 206;
                finishCoalescing(nullptr, /*uncacheable=*/!request_specific,
                                 verdict == cache::StoreVerdict::TooLarge);
            }
            if (revalidating_) {
                // A full answer replaced the stale entry: the client got what a miss gets.
                setOutcome(metrics::CacheResult::Miss,
                           cache_status_ + "; fwd-status=" + std::to_string(head.status));
            }
        } else if (!cache::isSafeMethod(request_.method)) {
            invalidateAfterUnsafe(head);
        }
    }

    if (storing_ && client_conditional_) {
        // The client's validators were not forwarded (the cache wants the full body); it gets
        // its answer (possibly 304) from the stored entry once the body is complete.
        enter(State::HoldingHead);
        return;
    }
    sendForwardedHead(head);
}

Transaction::StreamCoding Transaction::decideStreamCoding(const http::ResponseHead& head) const {
    StreamCoding d;
    const bool head_request = request_.isHead();
    if ((request_.method != "GET" && !head_request) || !upgrade_.empty()) {
        return d;
    }
    std::optional<std::uint64_t> length;
    if (head.framing == http::BodyFraming::Length) {
        length = head.content_length;
    } else if (head_request) {
        // An answer to HEAD has no body, but says how long GET's would be: min_bytes decides
        // for it as for GET, so the two heads agree.
        if (const std::string* cl = head.fields.get("Content-Length")) {
            length = parseDecimal(trimOws(*cl));
        }
    } else if (head.framing == http::BodyFraming::None) {
        return d;
    }
    const CompressionPolicy& policy = routeCompression(*snapshot_, route_index_);
    if (!compressible(policy, head.status, head.fields, length)) {
        return d;
    }
    // Whoever asks, the answer depends on Accept-Encoding now: identity ones say so too.
    d.varies = true;
    // An answer being stored streams identity: its codings are made once, from the stored
    // body, and the hits after it get them.
    if (storing_ || request_.fields.has("Range") ||
        (request_.fields.has("Cache-Control") &&
         cache::requestDirectives(request_.fields).no_transform)) {
        return d;
    }
    d.coding = http::chooseCoding(http::acceptEncodingOf(request_.fields), policy.codings);
    return d;
}

void Transaction::countStreamed(std::uint64_t in, std::uint64_t out) {
    if (client_.worker().metrics != nullptr) {
        client_.worker().metrics->compression(metrics::CompressionStage::Stream,
                                              codingLabel(stream_coding_), 0, in, out);
    }
}

void Transaction::sendForwardedHead(const http::ResponseHead& head) {
    http::FieldEdits edits;
    edits.drop("Strata-Cache-Control");  // targeted at strata only (RFC 9213 style)
    edits.appendToList("Via", kViaValue);
    edits.add("Cache-Status", cacheStatus());
    // RFC 9110 6.6.1: an origin without a clock sends no Date; strata has one, so it adds it.
    // A stored copy gets its Date from the same instant (cache::buildEntry), so the miss and
    // the hits after it agree.
    std::string date;
    if (!head.fields.has("Date")) {
        date = cache::formatHttpDate(storing_ ? response_time_ : std::chrono::system_clock::now());
        edits.add("Date", date);
    }
    StreamCoding coding = decideStreamCoding(head);
    if (coding.varies && !head.fields.hasToken("Vary", "accept-encoding") &&
        !head.fields.hasToken("Vary", "*")) {
        // Identity or not, a compressible answer varies by Accept-Encoding (RFC 9110 12.5.5),
        // so a shared cache downstream keys it as strata's hits are keyed.
        edits.appendToList("Vary", "Accept-Encoding");
    }
    const metrics::CompressionCoding label = codingLabel(coding.coding);
    if (coding.coding != http::Coding::Identity && !request_.isHead()) {
        encoder_ = http::makeStreamEncoder(coding.coding,
                                           routeCompression(*snapshot_, route_index_).level);
        if (!encoder_) {
            coding.coding = http::Coding::Identity;  // no memory for its state: identity
        } else if (client_.worker().metrics != nullptr) {
            client_.worker().metrics->compression(metrics::CompressionStage::Stream, label, 1, 0,
                                                  0);
        }
    }
    stream_coding_ = coding.coding;
    std::string weak_etag;
    if (coding.coding != http::Coding::Identity) {
        // Compressed as it streams (HEAD: the head that GET gets): the length is unknown until
        // the end, and the bytes depend on how the upstream's reads fell, so a strong ETag would
        // name bytes no other answer repeats (RFC 9110 8.8.3): it becomes weak. Ranges of it
        // are not offered.
        edits.drop("Content-Length");
        edits.drop("Accept-Ranges");
        edits.add("Content-Encoding", http::codingToken(coding.coding));
        if (const std::string* etag = head.fields.get("ETag")) {
            edits.drop("ETag");
            std::string_view tag = trimOws(*etag);
            if (!tag.empty()) {
                weak_etag = tag.starts_with("W/") ? std::string(tag) : "W/" + std::string(tag);
                edits.add("ETag", weak_etag);
            }
        }
    }
    http::OutgoingResponse out;
    out.status = head.status;
    out.reason = head.reason;
    out.fields = &head.fields;
    out.edits = &edits;
    switch (head.framing) {
        case http::BodyFraming::None:
            out.body = http::ResponseBody::None;
            break;
        case http::BodyFraming::Length:
            out.body = http::ResponseBody::Length;  // its Content-Length is among the fields
            out.content_length = head.content_length;
            break;
        case http::BodyFraming::Chunked:
        case http::BodyFraming::UntilClose:
            out.body = http::ResponseBody::Stream;
            break;
    }
    if (encoder_) {
        out.body = http::ResponseBody::Stream;
        out.content_length = 0;
    }
    enter(State::Streaming);
    sendResponseHead(out, edits);
}

void Transaction::releaseDeferredResponse() {
    // Storing was abandoned: send what was held back and stream the rest.
    sendForwardedHead(stored_head_);
}

void Transaction::onExchangeBody(std::string_view data) {
    if (state_ == State::Validated) {
        return;  // a 304 carries no body
    }
    if (storing_) {
        if (body_.size() + data.size() >
            routeCache(*snapshot_, route_index_).policy.max_object_bytes) {
            storing_ = false;
            finishCoalescing(nullptr, /*uncacheable=*/true, /*too_large=*/true);
            if (state_ == State::HoldingHead) {
                releaseDeferredResponse();
                std::string held = std::move(body_);
                body_.clear();
                onExchangeBody(held);
            }
            body_.clear();
            body_.shrink_to_fit();
        } else {
            body_.append(data);
            if (state_ == State::HoldingHead) {
                return;  // held back with the head
            }
        }
    }
    if (encoder_) {
        // One flush per upstream read: what the origin sent is decodable by the client now (a
        // server-sent event is never held back), and memory stays the coder's window.
        coded_.clear();
        if (!encoder_->write(data, coded_) || !encoder_->flush(coded_)) {
            STRATA_BUG("stream compressor failed");
            encoder_.reset();
            if (exchange_) {
                exchange_->abort();
            }
            onExchangeFailure(502, true, "compression failed");
            return;
        }
        countStreamed(data.size(), coded_.size());
        if (!coded_.empty()) {
            client_.sendBody(coded_);
            body_bytes_sent_ += coded_.size();
        }
        return;
    }
    client_.sendBody(data);
    body_bytes_sent_ += data.size();
}

void Transaction::storeResponse() {
    storing_ = false;
    held_body_ = std::make_shared<const cache::Body>(std::move(body_));
    // Compressed here, once: every hit after it is served from the stored codings.
    cache::EntryPtr entry = compressForStore(
        buildStoredEntry(routeCache(*snapshot_, route_index_), request_, stored_head_, primary_key_,
                         held_body_, request_time_, response_time_),
        routeCompression(*snapshot_, route_index_), client_.worker().metrics);
    if (entry) {
        client_.worker().cache->keep(entry, std::chrono::system_clock::now(), lease_owner_);
        lease_owner_ = false;  // released once L2 has the object, so waiters find it
        stored_key_ = entry->meta().secondary_key;
    }
    finishCoalescing(entry, /*uncacheable=*/!entry);
}

void Transaction::onExchangeComplete() {
    dropExchange();
    if (state_ == State::Validated) {
        finishCoalescing(stale_, false);
        deliver(stale_);  // the outcome stays "stale", with fwd-status=304
        return;
    }
    if (storing_) {
        storeResponse();
        if (state_ == State::HoldingHead) {
            cache::EntryPtr entry = client_.worker().cache->l1->find(primary_key_, stored_key_);
            if (entry) {
                deliver(entry);
                return;
            }
            // Not kept (e.g. larger than L1 allows): send the full response as received.
            releaseDeferredResponse();
            if (held_body_) {
                onExchangeBody(*held_body_);
            }
        }
    } else {
        finishCoalescing(nullptr, false);
    }
    if (encoder_) {
        coded_.clear();
        if (encoder_->finish(coded_) && !coded_.empty()) {
            countStreamed(0, coded_.size());
            client_.sendBody(coded_);
            body_bytes_sent_ += coded_.size();
        }
        encoder_.reset();
    }
    logAccess();
    enter(State::Finished);
    client_.endResponse();  // schedules our deletion; touch nothing after this
}

void Transaction::onExchangeFailure(int status, bool after_head, const char* what) {
    const bool unreachable = exchange_ && exchange_->originUnreachable();
    dropExchange();
    if (!after_head) {
        countUpgradeOutcome(metrics::TunnelResult::Failed);
    }
    finishCoalescing(nullptr, false);
    if (after_head || state_ == State::Streaming) {
        // Part of the response is out: the client can only learn of the failure by a close.
        logAccess();
        enter(State::Aborted);
        client_.abortResponse();
        return;
    }
    if (stale_ && serve_stale_on_error_) {
        // RFC 5861 4: the origin failed; a stale answer beats an error.
        metrics::global().staleServed(metrics::StaleReason::Error);
        setOutcome(metrics::CacheResult::Stale, "strata; fwd=stale; detail=stale-if-error");
        deliver(stale_);
        return;
    }
    if (stale_ && serve_stale_if_unreachable_ && unreachable) {
        metrics::global().staleServed(metrics::StaleReason::Unreachable);
        setOutcome(metrics::CacheResult::Stale, "strata; fwd=stale; detail=origin-unreachable");
        deliver(stale_);
        return;
    }
    status_ = status;
    logAccess();
    enter(State::Finished);
    client_.sendError(status, what, cacheStatus());
}

bool Transaction::allowed(State from, State to) {
    if (to == State::Aborted) {
        return from != State::Finished && from != State::Aborted;
    }
    switch (from) {
        case State::Created:
            return to == State::AwaitingL2 || to == State::AwaitingLeader ||
                   to == State::Forwarding || to == State::Finished;
        case State::AwaitingL2:
            return to == State::AwaitingFill || to == State::Forwarding || to == State::Finished;
        case State::AwaitingFill:
            return to == State::AwaitingL2 || to == State::Forwarding || to == State::Finished;
        case State::AwaitingLeader:
            return to == State::Forwarding || to == State::Finished;
        case State::Forwarding:
            return to == State::Validated || to == State::HoldingHead || to == State::Streaming ||
                   to == State::Finished;
        case State::Validated:
            return to == State::Finished;
        case State::HoldingHead:
            return to == State::Streaming || to == State::Finished;
        case State::Streaming:
            return to == State::Finished;
        case State::Finished:
        case State::Aborted:
            return false;
    }
    return false;
}

void Transaction::enter(State next) {
    if (!allowed(state_, next)) {
        STRATA_BUG("transaction state change not in its transition table");
    }
    state_ = next;
}

bool Transaction::canSendError() const {
    return state_ != State::Streaming && state_ != State::Finished && state_ != State::Aborted;
}

void Transaction::dropExchange() {
    if (exchange_) {
        upstream_label_ = std::string(exchange_->serverLabel());
        // Never destroyed inside its own callbacks.
        client_.worker().loop.deferredDelete(event::deferrable(std::move(exchange_)));
    }
}

void Transaction::abort() {
    if (state_ == State::Finished || state_ == State::Aborted) {
        return;
    }
    enter(State::Aborted);
    finishCoalescing(nullptr, false);
    if (exchange_) {
        exchange_->abort();
        dropExchange();
    }
}

void Transaction::logAccess() {
    // Only an access-log line shows these: no field scans when the log is off.
    const bool logged = client_.worker().access_log.enabled();
    const std::string* referer = logged ? request_.fields.get("Referer") : nullptr;
    const std::string* agent = logged ? request_.fields.get("User-Agent") : nullptr;
    client_.logAccess(request_.method, request_.target, request_.host, request_.version_minor,
                      status_, body_bytes_sent_,
                      referer ? std::string_view(*referer) : std::string_view(),
                      agent ? std::string_view(*agent) : std::string_view(), upstream_label_,
                      upstream_seconds_, started_);
}

}  // namespace strata::proxy
