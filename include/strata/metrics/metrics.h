// The metric catalog: every metric strata exports is declared here and nowhere else.
//
// Recording is built for the hot path. Each worker thread gets its own WorkerMetrics shard:
// plain uint64 counters and histogram buckets, cache-line aligned, written only by that thread
// (relaxed load + store, no read-modify-write, no lock) and read with relaxed loads by the
// scrape. Labels are small enums and "slots" (route, upstream server) interned once when a
// config snapshot is built, so a request never formats or hashes a label. Registry::Collect()
// sums the shards into prometheus-cpp MetricFamily values at scrape time only.
//
// Metrics recorded off the workers (L2 pool threads, main thread: reloads, health checks,
// admin) go to process-wide atomics in the Registry itself; they are rare events.
//
// Label values are bounded: route names (or indexes), method class, status class, upstream
// name and server address as configured, cache tier/result. Never URL, host or client address.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/collectable.h>

namespace strata::metrics {

enum class MethodClass : std::uint8_t { Get, Head, Post, Put, Delete, Other, Count };
// S1xx..S5xx by status / 100; Error: no status (connect failure, timeout, broken response).
enum class StatusClass : std::uint8_t { S1xx, S2xx, S3xx, S4xx, S5xx, Error, Count };
// How the cache answered an exchange (the request duration label "cache").
enum class CacheResult : std::uint8_t { Hit, Stale, Miss, Pass, Bypass, Collapsed, Count };
enum class Tier : std::uint8_t { L1, L2, Count };
// A lookup in one tier. HitForPass (L1 only): not stored, and known uncacheable from a recent
// fetch, so the request goes upstream without waiting on others; apart from Miss, which is an
// object that may be stored once fetched.
enum class LookupResult : std::uint8_t { Hit, Miss, Stale, Error, HitForPass, Count };
// Get/Set/Delete act on cached objects; the purge log (one shared memcached key, read every
// cache.l2.purge_poll and CAS-appended by purges) has values of its own, so idle polling never
// looks like cache traffic. Lease: fill-lease adds, reads and releases (cross-instance
// coalescing).
enum class L2Op : std::uint8_t { Get, Set, Delete, PurgeLogGet, PurgeLogSet, Lease, Count };
// Cross-instance fill leases (cache.l2.lease_wait): taken by this instance's fetch, waited on
// (another instance was fetching), avoided (a waiter got the object from L2: an origin fetch
// saved), expired (the wait ended at the owner's deadline or the wait cap: fetched alone), pass
// (the owner found the answer uncacheable: fetched at once).
enum class LeaseEvent : std::uint8_t { Taken, Waited, Avoided, Expired, Pass, Count };
// Why a stale stored answer was served instead of an error.
enum class StaleReason : std::uint8_t { Error, Unreachable, Count };
enum class TlsResult : std::uint8_t { Ok, Failed, Count };
enum class TlsVersion : std::uint8_t { Tls12, Tls13, Other, Count };
enum class ReloadResult : std::uint8_t { Success, Failure, Count };
// What limits.underscores_in_headers did to a request field named with '_'.
enum class UnderscoreAction : std::uint8_t { Dropped, Rejected, Count };
// The client protocol of an exchange or connection (the `protocol` label: "http/1.1", "h2").
enum class Protocol : std::uint8_t { Http1, H2, Count };
// How an Upgrade (WebSocket) request ended: tunnelled after a 101, refused by the route, an
// invalid handshake, an upstream answer other than 101, or no upstream answer at all.
enum class TunnelResult : std::uint8_t { Opened, Refused, Invalid, Declined, Failed, Count };
// What a route's own actions did: answered with a redirect or a fixed response, or rewrote
// the path it forwarded.
enum class RouteAction : std::uint8_t { Redirect, Respond, Rewrite, Count };
// A request refused by access control: the route's or the listener's allow/deny (403), a
// method outside methods_allowed (405), a body over the route's limit (413).
enum class DenyReason : std::uint8_t { RouteAccess, ListenerAccess, Method, BodySize, Count };
// A PROXY protocol header on a listener with proxy_protocol: read and used (Ok), LOCAL or
// UNKNOWN (the peer address stands), refused as malformed (bad, truncated or oversized), the
// peer outside trusted_sources, or no complete header within the header timeout.
// A request under max_connections: waited for a server slot, gave up waiting, found no room.
enum class QueueResult : std::uint8_t { Queued, Timeout, Full, Count };
enum class ProxyProtocolResult : std::uint8_t { Ok, Local, Malformed, Untrusted, Timeout, Count };
// HTTP/2: connections that chose it, streams opened, reset by the client, and what strata reset.
enum class H2Event : std::uint8_t {
    Connection,
    StreamOpened,
    ClientReset,
    RefusedStream,  // RST_STREAM REFUSED_STREAM (over max_concurrent_streams)
    ProtocolError,  // RST_STREAM PROTOCOL_ERROR (malformed request, RFC 9113 8.1.1)
    OtherReset,     // RST_STREAM sent with another code (cancel, stalled window)
    Count
};
// The error code of a GOAWAY strata sent (RFC 9113 7).
enum class H2Goaway : std::uint8_t {
    NoError,
    ProtocolError,
    InternalError,
    FlowControl,
    EnhanceYourCalm,
    Other,
    Count
};

// Compression (routes[].compression): once when an object is stored (or promoted from L2), or
// while an uncached answer streams; by the coding produced.
enum class CompressionStage : std::uint8_t { Store, Stream, Count };
enum class CompressionCoding : std::uint8_t { Gzip, Br, Count };

MethodClass methodClass(std::string_view method);
StatusClass statusClass(int status);  // <100 or >599: Error
std::string_view name(MethodClass v);
std::string_view name(StatusClass v);
std::string_view name(CacheResult v);
std::string_view name(Tier v);
std::string_view name(LookupResult v);
std::string_view name(L2Op v);
std::string_view name(LeaseEvent v);
std::string_view name(StaleReason v);
std::string_view name(TlsResult v);
std::string_view name(TlsVersion v);
std::string_view name(ReloadResult v);
std::string_view name(UnderscoreAction v);
std::string_view name(Protocol v);
std::string_view name(TunnelResult v);
std::string_view name(RouteAction v);
std::string_view name(DenyReason v);
std::string_view name(ProxyProtocolResult v);
std::string_view name(H2Event v);
std::string_view name(H2Goaway v);
std::string_view name(CompressionStage v);
std::string_view name(CompressionCoding v);

template <class E>
constexpr std::size_t count() {
    return static_cast<std::size_t>(E::Count);
}
template <class E>
constexpr std::size_t idx(E v) {
    return static_cast<std::size_t>(v);
}

// Upper bounds (seconds) of the latency histograms; +Inf is implicit.
inline constexpr std::array<double, 14> kLatencyBuckets{
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
inline constexpr std::size_t kBuckets = kLatencyBuckets.size() + 1;

// Bounded label space: slots beyond these share the last one (labelled "other").
inline constexpr std::size_t kMaxRoutes = 128;
inline constexpr std::size_t kMaxServers = 512;
inline constexpr std::size_t kMaxListeners = 64;
inline constexpr std::size_t kMaxUpstreams = 128;
// Proxy listeners in the request counter (each multiplies every route's series; see RouteBlock).
inline constexpr std::size_t kMaxProxyListeners = 8;
inline constexpr std::uint16_t kNoRoute = 0;  // slot of requests answered without a route

// A counter written by one thread and read by any: relaxed load + store compiles to a plain
// add on x86, unlike fetch_add (a locked instruction).
class ShardCounter {
public:
    void add(std::uint64_t n = 1) {
        value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

// Single-writer histogram: per-bucket counts (not cumulative) and the sum in microseconds.
struct ShardHistogram {
    std::array<ShardCounter, kBuckets> buckets;
    ShardCounter sum_us;
    void observe(double seconds);
};

// One worker's shard. Every method must be called only from the owning worker thread.
class alignas(64) WorkerMetrics {
public:
    // One client exchange ended (any status, answered locally or proxied).
    void request(std::uint16_t route_slot, std::uint16_t listener_slot, MethodClass method,
                 int status, CacheResult cache, double seconds,
                 Protocol protocol = Protocol::Http1);
    // Request bytes read from the client (head and body as framed on the wire) and response
    // bytes queued to it, by the route of the exchange they belong to.
    void receivedBytes(std::uint16_t route_slot, std::uint64_t bytes);
    void sentBytes(std::uint16_t route_slot, std::uint64_t bytes);
    // An upstream answered (status >= 200) or failed (status 0: Error class).
    void upstreamResponse(std::uint16_t server_slot, int status, double seconds);
    void upstreamConnectError(std::uint16_t server_slot);
    void upstreamRetry(std::uint16_t server_slot);
    // Cache integration hooks.
    void cacheLookup(std::uint16_t route_slot, Tier tier, LookupResult result);
    void cacheCoalescedWait();
    void l1Eviction(std::uint64_t objects = 1);
    // TLS engineer's hook: one per finished (or failed) handshake.
    void tlsHandshake(TlsResult result, TlsVersion version);
    // A TLS connection closed at accept because the listener had max_handshakes in progress.
    void tlsHandshakeRefused(std::uint16_t listener_slot);
    // Request fields named with '_' dropped, or the one that got its request refused.
    void underscoreFields(UnderscoreAction action, std::uint64_t fields = 1);
    void http2(H2Event event);
    // An Upgrade request's outcome; Opened also counts the tunnel as open until tunnelClosed().
    void tunnel(std::uint16_t route_slot, TunnelResult result);
    void tunnelClosed(std::uint64_t to_upstream, std::uint64_t to_client);
    void routeAction(std::uint16_t route_slot, RouteAction action);
    void accessDenied(std::uint16_t route_slot, DenyReason reason);
    // A connection closed at accept: its address already held
    // listeners[].max_connections_per_client.
    void perClientConnectionRefused();
    void rateLimited(std::uint16_t route_slot);
    void http2Goaway(H2Goaway code);
    void proxyProtocol(ProxyProtocolResult result);
    // `bodies` bodies compressed (a stream counts once, at its start) and the bytes that went
    // in and came out, so ratios can be computed per stage and coding.
    void compression(CompressionStage stage, CompressionCoding coding, std::uint64_t bodies,
                     std::uint64_t in_bytes, std::uint64_t out_bytes);

private:
    friend class Registry;
    static constexpr std::size_t kRequestSeries =
        count<Protocol>() * count<MethodClass>() * count<StatusClass>();
    struct alignas(64) RouteBlock {
        // By listener slot, then protocol, method and status class: 8 x 84 counters (5.3 KiB)
        // a route.
        std::array<ShardCounter, kMaxProxyListeners * kRequestSeries> requests;
        std::array<ShardHistogram, count<CacheResult>()> duration;
        std::array<ShardCounter, count<Tier>() * count<LookupResult>()> lookups;
        ShardCounter received_bytes;
        ShardCounter sent_bytes;
        std::array<ShardCounter, count<TunnelResult>()> tunnels;
        std::array<ShardCounter, count<RouteAction>()> actions;
        std::array<ShardCounter, count<DenyReason>()> denied;
        ShardCounter rate_limited;
    };
    struct alignas(64) ServerBlock {
        std::array<ShardCounter, count<StatusClass>()> responses;
        ShardHistogram response_time;
        ShardCounter connect_errors;
        ShardCounter retries;
    };
    std::array<RouteBlock, kMaxRoutes> routes_;
    std::array<ServerBlock, kMaxServers> servers_;
    ShardCounter coalesced_waits_;
    ShardCounter l1_evictions_;
    std::array<ShardCounter, count<TlsResult>() * count<TlsVersion>()> tls_;
    std::array<ShardCounter, kMaxListeners> tls_refused_;
    std::array<ShardCounter, count<UnderscoreAction>()> underscore_fields_;
    std::array<ShardCounter, count<H2Event>()> http2_;
    ShardCounter per_client_refused_;
    ShardCounter tunnels_closed_;  // open = opened (all routes) - closed
    ShardCounter tunnel_bytes_up_;
    ShardCounter tunnel_bytes_down_;
    std::array<ShardCounter, count<H2Goaway>()> http2_goaway_;
    std::array<ShardCounter, count<ProxyProtocolResult>()> proxy_protocol_;
    static constexpr std::size_t kCompressionSeries =
        count<CompressionStage>() * count<CompressionCoding>();
    std::array<ShardCounter, kCompressionSeries> compression_bodies_;
    std::array<ShardCounter, kCompressionSeries> compression_in_;
    std::array<ShardCounter, kCompressionSeries> compression_out_;
};

// A gauge sample provided by a callback at scrape time (health state, connection counts).
struct GaugeSample {
    std::vector<std::pair<std::string, std::string>> labels;
    double value = 0;
};
using GaugeFn = std::function<void(std::vector<GaugeSample>& out)>;

class Registry final : public prometheus::Collectable {
public:
    explicit Registry(unsigned max_workers = 256);
    ~Registry() override;

    // A shard for worker `id` (< max_workers); stable address for the Registry's lifetime.
    WorkerMetrics& worker(unsigned id);

    // Slots are interned by name and never freed, so a reload that keeps a route or server keeps
    // its series. Thread-safe; call when building a snapshot, not per request.
    std::uint16_t routeSlot(const std::string& route_name);
    std::uint16_t serverSlot(const std::string& upstream, const std::string& server);
    // TLS listeners, by name; their series exist (at 0) from the moment they are interned.
    std::uint16_t listenerSlot(const std::string& listener_name);
    // Every proxy listener, by name: the `listener` label of the request counter. Beyond
    // kMaxProxyListeners - 1 names, listeners share the slot labelled "other".
    std::uint16_t proxyListenerSlot(const std::string& listener_name);

    // Process-wide events (any thread; atomics).
    void configReload(ReloadResult result, double unix_seconds);
    void l2Operation(L2Op op, double seconds, bool ok);
    void setL2BreakerOpen(const std::string& server, bool open);
    void fillLease(LeaseEvent event);
    void staleServed(StaleReason reason);
    void setL1Usage(std::uint64_t bytes, std::uint64_t objects);
    // The L1's own counters, read at scrape time (the cache keeps them; nothing is copied on
    // the request path). Reset to null before the cache goes away.
    struct L1Usage {
        std::uint64_t bytes = 0;
        std::uint64_t objects = 0;
        std::uint64_t evictions = 0;
        std::uint64_t rejected_too_large = 0;  // objects larger than cache.l1.max_bytes
        std::uint64_t rejected_disabled = 0;   // offered while cache.l1.max_bytes is 0
    };
    void setL1Source(std::function<L1Usage()> source);
    void adminRequest(std::string_view endpoint, int status);
    void adminUnauthorized();
    void upstreamConnectionOpened();
    void upstreamConnectionClosed();
    // A client connection chose HTTP/2 (ALPN or the h2c preface), and one of those closed; the
    // client connection gauge splits its total by protocol with this.
    void h2ConnectionOpened();
    void h2ConnectionClosed();
    std::int64_t h2Connections() const;
    // A keep-alive client connection parked (idle, held without its session), and woke or closed.
    void clientConnectionParked();
    void clientConnectionUnparked();
    std::int64_t parkedConnections() const;
    void healthCheck(std::uint16_t server_slot, bool ok);
    // Upstream-wide protection (queue, retry budget): rare events, process atomics. Slots are
    // interned by upstream name like server slots.
    std::uint16_t upstreamSlot(const std::string& upstream);
    void upstreamQueue(std::uint16_t upstream_slot, QueueResult result);
    void upstreamQueueDepth(std::uint16_t upstream_slot, std::int64_t delta);
    void retryBudgetExhausted(std::uint16_t upstream_slot);

    // Gauges read at scrape time from their owner. Registered once at startup.
    void addGauge(std::string name, std::string help, GaugeFn fn);

    // prometheus::Collectable: sums every shard. Any thread.
    std::vector<prometheus::MetricFamily> Collect() const override;
    // Collect() in the Prometheus text exposition format.
    std::string serialize() const;

    // Test helper: the summed value of the first series named `name` (or NAME_count / NAME_sum of
    // a histogram) whose labels include `labels`; -1 when there is none.
    double valueForTest(const std::string& name,
                        const std::map<std::string, std::string>& labels = {}) const;

private:
    struct Gauge {
        std::string name;
        std::string help;
        GaugeFn fn;
    };
    struct ProcessCounters;

    unsigned max_workers_;
    std::vector<std::unique_ptr<WorkerMetrics>> workers_;  // allocated on first use
    mutable std::mutex mutex_;                             // slots, gauges, workers_
    std::vector<std::string> route_names_;
    std::vector<std::pair<std::string, std::string>> server_names_;
    std::vector<std::string> listener_names_;
    std::vector<std::string> proxy_listener_names_;
    std::vector<std::string> upstream_names_;
    std::map<std::string, std::uint16_t> upstream_index_;
    std::map<std::string, std::uint16_t> route_index_;
    std::map<std::string, std::uint16_t> server_index_;
    std::map<std::string, std::uint16_t> listener_index_;
    std::map<std::string, std::uint16_t> proxy_listener_index_;
    std::vector<Gauge> gauges_;
    std::function<L1Usage()> l1_source_;  // guarded by mutex_
    std::unique_ptr<ProcessCounters> process_;
};

// The process's registry: workers, snapshots, the admin listener and the cache all use it.
Registry& global();

}  // namespace strata::metrics
