#include "strata/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "strata/common/log.h"

#ifndef STRATA_VERSION
#define STRATA_VERSION "unknown"
#endif

namespace strata::metrics {
namespace {

constexpr std::string_view kOther = "other";

// Slots for a bounded label space: `key` gets the next slot, its series labelled `name`; once
// all but the last are taken, every further key shares the last one, labelled `other`.
template <class Name>
std::uint16_t internSlot(std::map<std::string, std::uint16_t>& index, std::vector<Name>& names,
                         std::string key, Name name, Name other, std::size_t max) {
    auto it = index.find(key);
    if (it != index.end()) {
        return it->second;
    }
    if (names.size() >= max - 1) {
        if (names.size() == max - 1) {
            names.push_back(std::move(other));
        }
        return static_cast<std::uint16_t>(max - 1);
    }
    auto slot = static_cast<std::uint16_t>(names.size());
    names.push_back(std::move(name));
    index.emplace(std::move(key), slot);
    return slot;
}

std::uint64_t toMicros(double seconds) {
    if (!(seconds > 0)) {
        return 0;  // also NaN
    }
    return static_cast<std::uint64_t>(std::llround(seconds * 1e6));
}

std::size_t bucketOf(double seconds) {
    // Linear scan: 14 bounds, almost always one of the first few for a proxy.
    for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
        if (seconds <= kLatencyBuckets[i]) {
            return i;
        }
    }
    return kLatencyBuckets.size();
}

// Multi-writer histogram for process-wide events (L2 pool threads).
struct AtomicHistogram {
    std::array<std::atomic<std::uint64_t>, kBuckets> buckets{};
    std::atomic<std::uint64_t> sum_us{0};
    void observe(double seconds) {
        buckets[bucketOf(seconds)].fetch_add(1, std::memory_order_relaxed);
        sum_us.fetch_add(toMicros(seconds), std::memory_order_relaxed);
    }
};

// Accumulates a histogram over shards before it becomes a ClientMetric.
struct HistogramSum {
    std::array<std::uint64_t, kBuckets> buckets{};
    std::uint64_t sum_us = 0;
    void add(const ShardHistogram& h) {
        for (std::size_t i = 0; i < kBuckets; ++i) {
            buckets[i] += h.buckets[i].get();
        }
        sum_us += h.sum_us.get();
    }
    void add(const AtomicHistogram& h) {
        for (std::size_t i = 0; i < kBuckets; ++i) {
            buckets[i] += h.buckets[i].load(std::memory_order_relaxed);
        }
        sum_us += h.sum_us.load(std::memory_order_relaxed);
    }
    std::uint64_t count() const {
        std::uint64_t n = 0;
        for (auto b : buckets) {
            n += b;
        }
        return n;
    }
};

using Labels = std::vector<prometheus::ClientMetric::Label>;

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

void addValue(prometheus::MetricFamily& f, Labels labels, double value) {
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    if (f.type == prometheus::MetricType::Counter) {
        m.counter.value = value;
    } else {
        m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
}

void addHistogram(prometheus::MetricFamily& f, Labels labels, const HistogramSum& h) {
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        cumulative += h.buckets[i];
        prometheus::ClientMetric::Bucket b;
        b.cumulative_count = cumulative;
        b.upper_bound = i < kLatencyBuckets.size() ? kLatencyBuckets[i]
                                                   : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back(b);
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = static_cast<double>(h.sum_us) / 1e6;
    f.metric.push_back(std::move(m));
}

Labels label(std::string_view k, std::string_view v) {
    return Labels{{std::string(k), std::string(v)}};
}

}  // namespace

// ---- label names --------------------------------------------------------------------------------

MethodClass methodClass(std::string_view m) {
    switch (m.size()) {
        case 3:
            return m == "GET"   ? MethodClass::Get
                   : m == "PUT" ? MethodClass::Put
                                : MethodClass::Other;
        case 4:
            return m == "HEAD"   ? MethodClass::Head
                   : m == "POST" ? MethodClass::Post
                                 : MethodClass::Other;
        case 6:
            return m == "DELETE" ? MethodClass::Delete : MethodClass::Other;
        default:
            return MethodClass::Other;
    }
}

StatusClass statusClass(int status) {
    if (status < 100 || status > 599) {
        return StatusClass::Error;
    }
    return static_cast<StatusClass>(status / 100 - 1);
}

std::string_view name(MethodClass v) {
    static constexpr std::array<std::string_view, count<MethodClass>()> k{"GET", "HEAD",   "POST",
                                                                          "PUT", "DELETE", "OTHER"};
    return k[idx(v)];
}
std::string_view name(StatusClass v) {
    static constexpr std::array<std::string_view, count<StatusClass>()> k{"1xx", "2xx", "3xx",
                                                                          "4xx", "5xx", "error"};
    return k[idx(v)];
}
std::string_view name(CacheResult v) {
    static constexpr std::array<std::string_view, count<CacheResult>()> k{
        "hit", "stale", "miss", "pass", "bypass", "collapsed"};
    return k[idx(v)];
}
std::string_view name(Tier v) {
    static constexpr std::array<std::string_view, count<Tier>()> k{"l1", "l2"};
    return k[idx(v)];
}
std::string_view name(LookupResult v) {
    static constexpr std::array<std::string_view, count<LookupResult>()> k{"hit", "miss", "stale",
                                                                           "error", "hit_for_pass"};
    return k[idx(v)];
}
std::string_view name(L2Op v) {
    static constexpr std::array<std::string_view, count<L2Op>()> k{
        "get", "set", "delete", "purge_log_get", "purge_log_set", "lease"};
    return k[idx(v)];
}
std::string_view name(LeaseEvent v) {
    static constexpr std::array<std::string_view, count<LeaseEvent>()> k{
        "taken", "waited", "avoided", "expired", "pass"};
    return k[idx(v)];
}
std::string_view name(StaleReason v) {
    static constexpr std::array<std::string_view, count<StaleReason>()> k{"error", "unreachable"};
    return k[idx(v)];
}
std::string_view name(TlsResult v) {
    static constexpr std::array<std::string_view, count<TlsResult>()> k{"ok", "failed"};
    return k[idx(v)];
}
std::string_view name(QueueResult v) {
    static constexpr std::array<std::string_view, count<QueueResult>()> k{"queued", "timeout",
                                                                          "full"};
    return k[idx(v)];
}
std::string_view name(ProxyProtocolResult v) {
    static constexpr std::array<std::string_view, count<ProxyProtocolResult>()> k{
        "ok", "local", "malformed", "untrusted", "timeout"};
    return k[idx(v)];
}
std::string_view name(TlsVersion v) {
    static constexpr std::array<std::string_view, count<TlsVersion>()> k{"1.2", "1.3", "other"};
    return k[idx(v)];
}
std::string_view name(ReloadResult v) {
    static constexpr std::array<std::string_view, count<ReloadResult>()> k{"success", "failure"};
    return k[idx(v)];
}
std::string_view name(UnderscoreAction v) {
    static constexpr std::array<std::string_view, count<UnderscoreAction>()> k{"dropped",
                                                                               "rejected"};
    return k[idx(v)];
}

std::string_view name(CompressionStage v) {
    static constexpr std::array<std::string_view, count<CompressionStage>()> k{"store", "stream"};
    return k[idx(v)];
}

std::string_view name(CompressionCoding v) {
    static constexpr std::array<std::string_view, count<CompressionCoding>()> k{"gzip", "br"};
    return k[idx(v)];
}

std::string_view name(Protocol v) {
    static constexpr std::array<std::string_view, count<Protocol>()> k{"http/1.1", "h2"};
    return k[idx(v)];
}

std::string_view name(TunnelResult v) {
    static constexpr std::array<std::string_view, count<TunnelResult>()> k{
        "opened", "refused", "invalid", "declined", "failed"};
    return k[idx(v)];
}

std::string_view name(RouteAction v) {
    static constexpr std::array<std::string_view, count<RouteAction>()> k{"redirect", "respond",
                                                                          "rewrite"};
    return k[idx(v)];
}

std::string_view name(DenyReason v) {
    static constexpr std::array<std::string_view, count<DenyReason>()> k{
        "route_access", "listener_access", "method", "body_size"};
    return k[idx(v)];
}

std::string_view name(H2Event v) {
    static constexpr std::array<std::string_view, count<H2Event>()> k{
        "connection",     "stream_opened",  "client_reset",
        "refused_stream", "protocol_error", "other_reset"};
    return k[idx(v)];
}
std::string_view name(H2Goaway v) {
    static constexpr std::array<std::string_view, count<H2Goaway>()> k{
        "no_error",     "protocol_error",    "internal_error",
        "flow_control", "enhance_your_calm", "other"};
    return k[idx(v)];
}

// ---- worker shard -------------------------------------------------------------------------------

void ShardHistogram::observe(double seconds) {
    buckets[bucketOf(seconds)].add();
    sum_us.add(toMicros(seconds));
}

void WorkerMetrics::request(std::uint16_t route_slot, std::uint16_t listener_slot,
                            MethodClass method, int status, CacheResult cache, double seconds,
                            Protocol protocol) {
    RouteBlock& r = routes_[std::min<std::size_t>(route_slot, kMaxRoutes - 1)];
    const std::size_t listener = std::min<std::size_t>(listener_slot, kMaxProxyListeners - 1);
    r.requests[listener * kRequestSeries +
               (idx(protocol) * count<MethodClass>() + idx(method)) * count<StatusClass>() +
               idx(statusClass(status))]
        .add();
    r.duration[idx(cache)].observe(seconds);
}

void WorkerMetrics::receivedBytes(std::uint16_t route_slot, std::uint64_t bytes) {
    routes_[std::min<std::size_t>(route_slot, kMaxRoutes - 1)].received_bytes.add(bytes);
}

void WorkerMetrics::sentBytes(std::uint16_t route_slot, std::uint64_t bytes) {
    routes_[std::min<std::size_t>(route_slot, kMaxRoutes - 1)].sent_bytes.add(bytes);
}

void WorkerMetrics::upstreamResponse(std::uint16_t server_slot, int status, double seconds) {
    ServerBlock& s = servers_[std::min<std::size_t>(server_slot, kMaxServers - 1)];
    s.responses[idx(statusClass(status))].add();
    if (status >= 100) {
        s.response_time.observe(seconds);
    }
}

void WorkerMetrics::upstreamConnectError(std::uint16_t server_slot) {
    servers_[std::min<std::size_t>(server_slot, kMaxServers - 1)].connect_errors.add();
}

void WorkerMetrics::upstreamRetry(std::uint16_t server_slot) {
    servers_[std::min<std::size_t>(server_slot, kMaxServers - 1)].retries.add();
}

void WorkerMetrics::cacheLookup(std::uint16_t route_slot, Tier tier, LookupResult result) {
    routes_[std::min<std::size_t>(route_slot, kMaxRoutes - 1)]
        .lookups[idx(tier) * count<LookupResult>() + idx(result)]
        .add();
}

void WorkerMetrics::cacheCoalescedWait() {
    coalesced_waits_.add();
}

void WorkerMetrics::l1Eviction(std::uint64_t objects) {
    l1_evictions_.add(objects);
}

void WorkerMetrics::tlsHandshake(TlsResult result, TlsVersion version) {
    tls_[idx(result) * count<TlsVersion>() + idx(version)].add();
}

void WorkerMetrics::proxyProtocol(ProxyProtocolResult result) {
    proxy_protocol_[idx(result)].add();
}

void WorkerMetrics::tlsHandshakeRefused(std::uint16_t listener_slot) {
    tls_refused_[std::min<std::size_t>(listener_slot, kMaxListeners - 1)].add();
}

void WorkerMetrics::tunnel(std::uint16_t route_slot, TunnelResult result) {
    routes_[route_slot < kMaxRoutes ? route_slot : kMaxRoutes - 1].tunnels[idx(result)].add();
}

void WorkerMetrics::routeAction(std::uint16_t route_slot, RouteAction action) {
    routes_[route_slot < kMaxRoutes ? route_slot : kMaxRoutes - 1].actions[idx(action)].add();
}

void WorkerMetrics::accessDenied(std::uint16_t route_slot, DenyReason reason) {
    routes_[route_slot < kMaxRoutes ? route_slot : kMaxRoutes - 1].denied[idx(reason)].add();
}

void WorkerMetrics::rateLimited(std::uint16_t route_slot) {
    routes_[route_slot < kMaxRoutes ? route_slot : kMaxRoutes - 1].rate_limited.add();
}

void WorkerMetrics::perClientConnectionRefused() {
    per_client_refused_.add();
}

void WorkerMetrics::tunnelClosed(std::uint64_t to_upstream, std::uint64_t to_client) {
    tunnels_closed_.add();
    tunnel_bytes_up_.add(to_upstream);
    tunnel_bytes_down_.add(to_client);
}

void WorkerMetrics::compression(CompressionStage stage, CompressionCoding coding,
                                std::uint64_t bodies, std::uint64_t in_bytes,
                                std::uint64_t out_bytes) {
    const std::size_t i = idx(stage) * count<CompressionCoding>() + idx(coding);
    compression_bodies_[i].add(bodies);
    compression_in_[i].add(in_bytes);
    compression_out_[i].add(out_bytes);
}

void WorkerMetrics::underscoreFields(UnderscoreAction action, std::uint64_t fields) {
    underscore_fields_[idx(action)].add(fields);
}

void WorkerMetrics::http2(H2Event event) {
    http2_[idx(event)].add();
}

void WorkerMetrics::http2Goaway(H2Goaway code) {
    http2_goaway_[idx(code)].add();
}

// ---- registry -----------------------------------------------------------------------------------

struct Registry::ProcessCounters {
    std::array<std::atomic<std::uint64_t>, count<ReloadResult>()> reloads{};
    std::atomic<double> last_reload_success{0};
    std::array<AtomicHistogram, count<L2Op>()> l2_latency;
    std::array<std::atomic<std::uint64_t>, count<L2Op>()> l2_errors{};
    std::map<std::string, bool> l2_breakers;  // guarded by Registry::mutex_
    std::array<std::atomic<std::uint64_t>, count<LeaseEvent>()> fill_leases{};
    std::array<std::atomic<std::uint64_t>, count<StaleReason>()> stale_served{};
    std::atomic<std::uint64_t> l1_bytes{0};
    std::atomic<std::uint64_t> l1_objects{0};
    std::map<std::pair<std::string, int>, std::uint64_t> admin_requests;  // guarded by mutex_
    std::atomic<std::uint64_t> admin_unauthorized{0};
    std::atomic<std::int64_t> upstream_connections{0};
    std::atomic<std::int64_t> h2_connections{0};
    std::atomic<std::int64_t> parked_connections{0};
    std::array<std::array<std::atomic<std::uint64_t>, 2>, kMaxServers> health_checks{};
    std::array<std::array<std::atomic<std::uint64_t>, count<QueueResult>()>, kMaxUpstreams>
        queue_results{};
    std::array<std::atomic<std::int64_t>, kMaxUpstreams> queue_depth{};
    std::array<std::atomic<std::uint64_t>, kMaxUpstreams> budget_exhausted{};
};

Registry::Registry(unsigned max_workers)
    : max_workers_(max_workers == 0 ? 1 : max_workers),
      process_(std::make_unique<ProcessCounters>()) {
    route_names_.push_back("none");  // kNoRoute
    route_index_.emplace("none", kNoRoute);
}

Registry::~Registry() = default;

WorkerMetrics& Registry::worker(unsigned id) {
    std::lock_guard lock(mutex_);
    if (id >= max_workers_) {
        id = max_workers_ - 1;  // never in practice: workers are bounded by config (1..256)
    }
    if (workers_.size() <= id) {
        workers_.resize(id + 1);
    }
    if (!workers_[id]) {
        workers_[id] = std::make_unique<WorkerMetrics>();
    }
    return *workers_[id];
}

std::uint16_t Registry::routeSlot(const std::string& route_name) {
    std::lock_guard lock(mutex_);
    return internSlot(route_index_, route_names_, route_name, route_name, std::string(kOther),
                      kMaxRoutes);
}

std::uint16_t Registry::serverSlot(const std::string& upstream, const std::string& server) {
    std::lock_guard lock(mutex_);
    return internSlot(server_index_, server_names_, upstream + "\n" + server,
                      std::pair(upstream, server),
                      std::pair(std::string(kOther), std::string(kOther)), kMaxServers);
}

std::uint16_t Registry::listenerSlot(const std::string& listener_name) {
    std::lock_guard lock(mutex_);
    return internSlot(listener_index_, listener_names_, listener_name, listener_name,
                      std::string(kOther), kMaxListeners);
}

std::uint16_t Registry::proxyListenerSlot(const std::string& listener_name) {
    std::lock_guard lock(mutex_);
    return internSlot(proxy_listener_index_, proxy_listener_names_, listener_name, listener_name,
                      std::string(kOther), kMaxProxyListeners);
}

void Registry::configReload(ReloadResult result, double unix_seconds) {
    process_->reloads[idx(result)].fetch_add(1, std::memory_order_relaxed);
    if (result == ReloadResult::Success) {
        process_->last_reload_success.store(unix_seconds, std::memory_order_relaxed);
    }
}

void Registry::l2Operation(L2Op op, double seconds, bool ok) {
    process_->l2_latency[idx(op)].observe(seconds);
    if (!ok) {
        process_->l2_errors[idx(op)].fetch_add(1, std::memory_order_relaxed);
    }
}

void Registry::setL2BreakerOpen(const std::string& server, bool open) {
    std::lock_guard lock(mutex_);
    process_->l2_breakers[server] = open;
}

void Registry::fillLease(LeaseEvent event) {
    process_->fill_leases[idx(event)].fetch_add(1, std::memory_order_relaxed);
}

void Registry::staleServed(StaleReason reason) {
    process_->stale_served[idx(reason)].fetch_add(1, std::memory_order_relaxed);
}

void Registry::setL1Usage(std::uint64_t bytes, std::uint64_t objects) {
    process_->l1_bytes.store(bytes, std::memory_order_relaxed);
    process_->l1_objects.store(objects, std::memory_order_relaxed);
}

void Registry::setL1Source(std::function<L1Usage()> source) {
    std::lock_guard lock(mutex_);
    l1_source_ = std::move(source);
}

void Registry::adminRequest(std::string_view endpoint, int status) {
    std::lock_guard lock(mutex_);
    process_->admin_requests[{std::string(endpoint), status}]++;
}

void Registry::adminUnauthorized() {
    process_->admin_unauthorized.fetch_add(1, std::memory_order_relaxed);
}

void Registry::upstreamConnectionOpened() {
    process_->upstream_connections.fetch_add(1, std::memory_order_relaxed);
}

void Registry::upstreamConnectionClosed() {
    process_->upstream_connections.fetch_sub(1, std::memory_order_relaxed);
}

void Registry::h2ConnectionOpened() {
    process_->h2_connections.fetch_add(1, std::memory_order_relaxed);
}

void Registry::h2ConnectionClosed() {
    process_->h2_connections.fetch_sub(1, std::memory_order_relaxed);
}

std::int64_t Registry::h2Connections() const {
    return process_->h2_connections.load(std::memory_order_relaxed);
}

void Registry::clientConnectionParked() {
    process_->parked_connections.fetch_add(1, std::memory_order_relaxed);
}

void Registry::clientConnectionUnparked() {
    process_->parked_connections.fetch_sub(1, std::memory_order_relaxed);
}

std::int64_t Registry::parkedConnections() const {
    return process_->parked_connections.load(std::memory_order_relaxed);
}

void Registry::healthCheck(std::uint16_t server_slot, bool ok) {
    process_->health_checks[std::min<std::size_t>(server_slot, kMaxServers - 1)][ok ? 1 : 0]
        .fetch_add(1, std::memory_order_relaxed);
}

std::uint16_t Registry::upstreamSlot(const std::string& upstream) {
    std::lock_guard lock(mutex_);
    return internSlot(upstream_index_, upstream_names_, upstream, upstream, std::string(kOther),
                      kMaxUpstreams);
}

void Registry::upstreamQueue(std::uint16_t upstream_slot, QueueResult result) {
    process_->queue_results[std::min<std::size_t>(upstream_slot, kMaxUpstreams - 1)][idx(result)]
        .fetch_add(1, std::memory_order_relaxed);
}

void Registry::upstreamQueueDepth(std::uint16_t upstream_slot, std::int64_t delta) {
    process_->queue_depth[std::min<std::size_t>(upstream_slot, kMaxUpstreams - 1)].fetch_add(
        delta, std::memory_order_relaxed);
}

void Registry::retryBudgetExhausted(std::uint16_t upstream_slot) {
    process_->budget_exhausted[std::min<std::size_t>(upstream_slot, kMaxUpstreams - 1)].fetch_add(
        1, std::memory_order_relaxed);
}

void Registry::addGauge(std::string name, std::string help, GaugeFn fn) {
    std::lock_guard lock(mutex_);
    gauges_.push_back(Gauge{std::move(name), std::move(help), std::move(fn)});
}

std::vector<prometheus::MetricFamily> Registry::Collect() const {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    std::vector<Gauge> gauges;
    {
        std::lock_guard lock(mutex_);
        const std::size_t routes = route_names_.size();
        const std::size_t servers = server_names_.size();

        auto build = family("strata_build_info", "strata version; always 1", MetricType::Gauge);
        addValue(build, label("version", STRATA_VERSION), 1);
        out.push_back(std::move(build));

        // Requests, by route.
        auto requests =
            family("strata_proxy_requests_total",
                   "client exchanges by route, listener, protocol, method class and status class",
                   MetricType::Counter);
        auto duration = family("strata_proxy_request_duration_seconds",
                               "time from request head to response end, by route and cache result",
                               MetricType::Histogram);
        auto received =
            family("strata_proxy_received_bytes_total",
                   "request bytes read from clients (head and body as framed), by route",
                   MetricType::Counter);
        auto sent = family("strata_proxy_sent_bytes_total",
                           "response bytes queued to clients (head and body as framed), by route",
                           MetricType::Counter);
        auto lookup_f =
            family("strata_cache_lookups_total",
                   "cache lookups by route, tier and result (hit_for_pass: known uncacheable)",
                   MetricType::Counter);
        const std::size_t listeners = proxy_listener_names_.size();
        for (std::size_t r = 0; r < routes; ++r) {
            std::array<std::uint64_t, kMaxProxyListeners * WorkerMetrics::kRequestSeries> n{};
            std::array<HistogramSum, count<CacheResult>()> h{};
            std::array<std::uint64_t, count<Tier>() * count<LookupResult>()> lookups{};
            std::uint64_t rx = 0;
            std::uint64_t tx = 0;
            for (const auto& w : workers_) {
                if (!w) {
                    continue;
                }
                const auto& block = w->routes_[r];
                for (std::size_t i = 0; i < n.size(); ++i) {
                    n[i] += block.requests[i].get();
                }
                for (std::size_t c = 0; c < h.size(); ++c) {
                    h[c].add(block.duration[c]);
                }
                for (std::size_t i = 0; i < lookups.size(); ++i) {
                    lookups[i] += block.lookups[i].get();
                }
                rx += block.received_bytes.get();
                tx += block.sent_bytes.get();
            }
            for (std::size_t i = 0; i < n.size(); ++i) {
                if (n[i] == 0) {
                    continue;  // sparse: hundreds of mostly-empty series per route would be noise
                }
                const std::size_t l = i / WorkerMetrics::kRequestSeries;
                const std::size_t series = i % WorkerMetrics::kRequestSeries;
                const std::size_t per_protocol = count<MethodClass>() * count<StatusClass>();
                auto p = static_cast<Protocol>(series / per_protocol);
                auto m = static_cast<MethodClass>(series % per_protocol / count<StatusClass>());
                auto s = static_cast<StatusClass>(series % count<StatusClass>());
                addValue(requests,
                         Labels{{"route", route_names_[r]},
                                {"listener",
                                 l < listeners ? proxy_listener_names_[l] : std::string(kOther)},
                                {"protocol", std::string(name(p))},
                                {"method", std::string(name(m))},
                                {"status_class", std::string(name(s))}},
                         static_cast<double>(n[i]));
            }
            addValue(received, label("route", route_names_[r]), static_cast<double>(rx));
            addValue(sent, label("route", route_names_[r]), static_cast<double>(tx));
            if (r != kNoRoute) {
                // Present at 0 for every route: a request without a route is never looked up.
                for (std::size_t i = 0; i < lookups.size(); ++i) {
                    const auto tier = static_cast<Tier>(i / count<LookupResult>());
                    const auto result = static_cast<LookupResult>(i % count<LookupResult>());
                    if (tier != Tier::L1 && result == LookupResult::HitForPass) {
                        continue;  // only L1 lookups know what the coalescer remembers
                    }
                    addValue(lookup_f,
                             Labels{{"route", route_names_[r]},
                                    {"tier", std::string(name(tier))},
                                    {"result", std::string(name(result))}},
                             static_cast<double>(lookups[i]));
                }
            }
            for (std::size_t c = 0; c < h.size(); ++c) {
                if (h[c].count() > 0) {
                    addHistogram(duration,
                                 Labels{{"route", route_names_[r]},
                                        {"cache", std::string(name(static_cast<CacheResult>(c)))}},
                                 h[c]);
                }
            }
        }
        out.push_back(std::move(requests));
        out.push_back(std::move(duration));
        out.push_back(std::move(received));
        out.push_back(std::move(sent));

        // Upstreams, by server.
        auto up_requests =
            family("strata_upstream_requests_total",
                   "upstream exchanges by upstream, server and status class (error: no response)",
                   MetricType::Counter);
        auto up_time =
            family("strata_upstream_response_time_seconds",
                   "time from connect/reuse to the upstream response head", MetricType::Histogram);
        auto connect_errors = family("strata_upstream_connect_errors_total",
                                     "failed or timed-out connects", MetricType::Counter);
        auto retries =
            family("strata_upstream_retries_total",
                   "attempts after the first, by the server retried on", MetricType::Counter);
        auto checks = family("strata_upstream_health_checks_total",
                             "active health probes by result", MetricType::Counter);
        for (std::size_t s = 0; s < servers; ++s) {
            std::array<std::uint64_t, count<StatusClass>()> n{};
            HistogramSum h;
            std::uint64_t errors = 0;
            std::uint64_t retried = 0;
            for (const auto& w : workers_) {
                if (!w) {
                    continue;
                }
                const auto& block = w->servers_[s];
                for (std::size_t i = 0; i < n.size(); ++i) {
                    n[i] += block.responses[i].get();
                }
                h.add(block.response_time);
                errors += block.connect_errors.get();
                retried += block.retries.get();
            }
            const auto& [upstream, server] = server_names_[s];
            Labels base{{"upstream", upstream}, {"server", server}};
            for (std::size_t i = 0; i < n.size(); ++i) {
                if (n[i] > 0) {
                    Labels l = base;
                    l.push_back({"status_class", std::string(name(static_cast<StatusClass>(i)))});
                    addValue(up_requests, std::move(l), static_cast<double>(n[i]));
                }
            }
            if (h.count() > 0) {
                addHistogram(up_time, base, h);
            }
            addValue(connect_errors, base, static_cast<double>(errors));
            addValue(retries, base, static_cast<double>(retried));
            for (int ok = 0; ok < 2; ++ok) {
                Labels l = base;
                l.push_back({"result", ok ? "pass" : "fail"});
                addValue(checks, std::move(l),
                         static_cast<double>(
                             process_->health_checks[s][ok].load(std::memory_order_relaxed)));
            }
        }
        out.push_back(std::move(up_requests));
        out.push_back(std::move(up_time));
        out.push_back(std::move(connect_errors));
        out.push_back(std::move(retries));
        out.push_back(std::move(checks));
        auto up_conns =
            family("strata_upstream_connections",
                   "open upstream connections (busy and idle), all workers", MetricType::Gauge);
        addValue(up_conns, {},
                 static_cast<double>(std::max<std::int64_t>(
                     0, process_->upstream_connections.load(std::memory_order_relaxed))));
        out.push_back(std::move(up_conns));

        // Upstream protection, by upstream (only upstreams interned for max_connections or a
        // retry budget have series).
        auto queue_total =
            family("strata_upstream_queue_total",
                   "requests that waited for a server slot, by outcome", MetricType::Counter);
        auto queue_depth = family("strata_upstream_queue_depth",
                                  "requests waiting for a server slot now", MetricType::Gauge);
        auto exhausted =
            family("strata_upstream_retry_budget_exhausted_total",
                   "retries refused by the upstream's retry budget", MetricType::Counter);
        for (std::size_t u = 0; u < upstream_names_.size(); ++u) {
            Labels base{{"upstream", upstream_names_[u]}};
            for (std::size_t r = 0; r < count<QueueResult>(); ++r) {
                Labels l = base;
                l.push_back({"result", std::string(name(static_cast<QueueResult>(r)))});
                addValue(queue_total, std::move(l),
                         static_cast<double>(
                             process_->queue_results[u][r].load(std::memory_order_relaxed)));
            }
            addValue(queue_depth, base,
                     static_cast<double>(std::max<std::int64_t>(
                         0, process_->queue_depth[u].load(std::memory_order_relaxed))));
            addValue(
                exhausted, base,
                static_cast<double>(process_->budget_exhausted[u].load(std::memory_order_relaxed)));
        }
        out.push_back(std::move(queue_total));
        out.push_back(std::move(queue_depth));
        out.push_back(std::move(exhausted));

        // Cache.
        std::uint64_t coalesced = 0;
        std::uint64_t evictions = 0;
        std::array<std::uint64_t, count<TlsResult>() * count<TlsVersion>()> tls{};
        for (const auto& w : workers_) {
            if (!w) {
                continue;
            }
            for (std::size_t i = 0; i < tls.size(); ++i) {
                tls[i] += w->tls_[i].get();
            }
            coalesced += w->coalesced_waits_.get();
            evictions += w->l1_evictions_.get();
        }
        out.push_back(std::move(lookup_f));
        auto coalesced_f =
            family("strata_cache_coalesced_waits_total",
                   "requests that waited for another's fetch of the same key", MetricType::Counter);
        addValue(coalesced_f, {}, static_cast<double>(coalesced));
        out.push_back(std::move(coalesced_f));
        std::uint64_t l1_bytes_value = process_->l1_bytes.load(std::memory_order_relaxed);
        std::uint64_t l1_objects_value = process_->l1_objects.load(std::memory_order_relaxed);
        L1Usage usage;
        if (l1_source_) {
            usage = l1_source_();
            l1_bytes_value = usage.bytes;
            l1_objects_value = usage.objects;
            evictions += usage.evictions;
        }
        auto rejected_f =
            family("strata_cache_l1_rejected_total",
                   "cacheable objects L1 did not store, by reason", MetricType::Counter);
        addValue(rejected_f, label("reason", "too_large"),
                 static_cast<double>(usage.rejected_too_large));
        addValue(rejected_f, label("reason", "disabled"),
                 static_cast<double>(usage.rejected_disabled));
        out.push_back(std::move(rejected_f));
        auto evict_f =
            family("strata_cache_l1_evictions_total",
                   "objects evicted from L1 to stay within max_bytes", MetricType::Counter);
        addValue(evict_f, {}, static_cast<double>(evictions));
        out.push_back(std::move(evict_f));
        auto l1_bytes =
            family("strata_cache_l1_bytes", "bytes held by L1 objects", MetricType::Gauge);
        addValue(l1_bytes, {}, static_cast<double>(l1_bytes_value));
        out.push_back(std::move(l1_bytes));
        auto l1_objects = family("strata_cache_l1_objects", "objects in L1", MetricType::Gauge);
        addValue(l1_objects, {}, static_cast<double>(l1_objects_value));
        out.push_back(std::move(l1_objects));
        auto l2_lat = family("strata_cache_l2_operation_duration_seconds",
                             "memcached operation latency by operation", MetricType::Histogram);
        auto l2_err = family("strata_cache_l2_errors_total",
                             "memcached operations that failed or timed out", MetricType::Counter);
        for (std::size_t op = 0; op < count<L2Op>(); ++op) {
            HistogramSum h;
            h.add(process_->l2_latency[op]);
            auto l = label("op", name(static_cast<L2Op>(op)));
            addHistogram(l2_lat, l, h);
            addValue(l2_err, l,
                     static_cast<double>(process_->l2_errors[op].load(std::memory_order_relaxed)));
        }
        out.push_back(std::move(l2_lat));
        out.push_back(std::move(l2_err));
        auto breaker = family("strata_cache_l2_breaker_open",
                              "1 while the breaker skips a memcached server", MetricType::Gauge);
        for (const auto& [server, open] : process_->l2_breakers) {
            addValue(breaker, label("server", server), open ? 1 : 0);
        }
        out.push_back(std::move(breaker));
        auto leases = family("strata_cache_fill_leases_total",
                             "cross-instance fill leases: taken, waited on, fetches avoided, "
                             "waits that expired, uncacheable passes",
                             MetricType::Counter);
        for (std::size_t e = 0; e < count<LeaseEvent>(); ++e) {
            addValue(leases, label("event", name(static_cast<LeaseEvent>(e))),
                     static_cast<double>(process_->fill_leases[e].load(std::memory_order_relaxed)));
        }
        out.push_back(std::move(leases));
        auto stale = family("strata_cache_stale_served_total",
                            "stale stored answers served instead of an error: the origin failed "
                            "(stale-if-error) or could not be reached (stale_if_unreachable)",
                            MetricType::Counter);
        for (std::size_t r = 0; r < count<StaleReason>(); ++r) {
            addValue(
                stale, label("reason", name(static_cast<StaleReason>(r))),
                static_cast<double>(process_->stale_served[r].load(std::memory_order_relaxed)));
        }
        out.push_back(std::move(stale));

        auto tls_f =
            family("strata_tls_handshakes_total",
                   "client TLS handshakes by result and protocol version", MetricType::Counter);
        for (std::size_t i = 0; i < tls.size(); ++i) {
            if (tls[i] > 0) {
                addValue(
                    tls_f,
                    Labels{{"result",
                            std::string(name(static_cast<TlsResult>(i / count<TlsVersion>())))},
                           {"version",
                            std::string(name(static_cast<TlsVersion>(i % count<TlsVersion>())))}},
                    static_cast<double>(tls[i]));
            }
        }
        out.push_back(std::move(tls_f));
        auto refused_f = family("strata_tls_handshakes_refused_total",
                                "TLS connections closed at accept: the listener had "
                                "tls.max_handshakes handshakes in progress",
                                MetricType::Counter);
        for (std::size_t l = 0; l < listener_names_.size(); ++l) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                if (w) {
                    n += w->tls_refused_[l].get();
                }
            }
            addValue(refused_f, label("listener", listener_names_[l]), static_cast<double>(n));
        }
        out.push_back(std::move(refused_f));
        auto proxy_f = family("strata_proxy_protocol_total",
                              "PROXY protocol headers on listeners with proxy_protocol, by result",
                              MetricType::Counter);
        for (std::size_t r = 0; r < count<ProxyProtocolResult>(); ++r) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                if (w) {
                    n += w->proxy_protocol_[r].get();
                }
            }
            addValue(proxy_f, label("result", name(static_cast<ProxyProtocolResult>(r))),
                     static_cast<double>(n));
        }
        out.push_back(std::move(proxy_f));

        // HTTP parsing.
        auto underscore_f = family("strata_http_underscore_fields_total",
                                   "request fields named with '_': dropped, or refused with their "
                                   "request (limits.underscores_in_headers)",
                                   MetricType::Counter);
        for (std::size_t a = 0; a < count<UnderscoreAction>(); ++a) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                if (w) {
                    n += w->underscore_fields_[a].get();
                }
            }
            addValue(underscore_f, label("action", name(static_cast<UnderscoreAction>(a))),
                     static_cast<double>(n));
        }
        out.push_back(std::move(underscore_f));

        // Compression.
        auto compressed_f = family("strata_compression_bodies_total",
                                   "bodies compressed, when stored (or promoted from L2) or while "
                                   "streaming, by coding",
                                   MetricType::Counter);
        auto compressed_bytes_f =
            family("strata_compression_bytes_total",
                   "bytes into (direction=in) and out of (direction=out) the compressors",
                   MetricType::Counter);
        for (std::size_t st = 0; st < count<CompressionStage>(); ++st) {
            for (std::size_t c = 0; c < count<CompressionCoding>(); ++c) {
                const std::size_t i = st * count<CompressionCoding>() + c;
                std::uint64_t bodies = 0;
                std::uint64_t in = 0;
                std::uint64_t out_bytes = 0;
                for (const auto& w : workers_) {
                    if (w) {
                        bodies += w->compression_bodies_[i].get();
                        in += w->compression_in_[i].get();
                        out_bytes += w->compression_out_[i].get();
                    }
                }
                const std::string stage(name(static_cast<CompressionStage>(st)));
                const std::string coding(name(static_cast<CompressionCoding>(c)));
                addValue(compressed_f, Labels{{"stage", stage}, {"coding", coding}},
                         static_cast<double>(bodies));
                addValue(compressed_bytes_f,
                         Labels{{"stage", stage}, {"coding", coding}, {"direction", "in"}},
                         static_cast<double>(in));
                addValue(compressed_bytes_f,
                         Labels{{"stage", stage}, {"coding", coding}, {"direction", "out"}},
                         static_cast<double>(out_bytes));
            }
        }
        out.push_back(std::move(compressed_f));
        out.push_back(std::move(compressed_bytes_f));

        // Upgrade tunnels (WebSocket).
        auto tunnels_f = family("strata_tunnels_total",
                                "Upgrade requests by route and result (opened: 101 and tunnelled)",
                                MetricType::Counter);
        std::uint64_t opened = 0;
        for (std::size_t r = 0; r < routes; ++r) {
            std::array<std::uint64_t, count<TunnelResult>()> n{};
            for (const auto& w : workers_) {
                if (w) {
                    for (std::size_t i = 0; i < n.size(); ++i) {
                        n[i] += w->routes_[r].tunnels[i].get();
                    }
                }
            }
            opened += n[idx(TunnelResult::Opened)];
            for (std::size_t i = 0; i < n.size(); ++i) {
                if (n[i] != 0) {
                    addValue(tunnels_f,
                             Labels{{"route", route_names_[r]},
                                    {"result", std::string(name(static_cast<TunnelResult>(i)))}},
                             static_cast<double>(n[i]));
                }
            }
        }
        out.push_back(std::move(tunnels_f));

        auto actions_f = family("strata_route_actions_total",
                                "requests a route answered itself (redirect, respond) or "
                                "forwarded with a rewritten path, by route and action",
                                MetricType::Counter);
        for (std::size_t r = 0; r < routes; ++r) {
            std::array<std::uint64_t, count<RouteAction>()> n{};
            for (const auto& w : workers_) {
                if (w) {
                    for (std::size_t i = 0; i < n.size(); ++i) {
                        n[i] += w->routes_[r].actions[i].get();
                    }
                }
            }
            for (std::size_t i = 0; i < n.size(); ++i) {
                if (n[i] != 0) {
                    addValue(actions_f,
                             Labels{{"route", route_names_[r]},
                                    {"action", std::string(name(static_cast<RouteAction>(i)))}},
                             static_cast<double>(n[i]));
                }
            }
        }
        out.push_back(std::move(actions_f));

        auto denied_f = family("strata_access_denied_total",
                               "requests refused by access control, by route and reason "
                               "(route_access/listener_access: 403, method: 405, body_size: 413)",
                               MetricType::Counter);
        for (std::size_t r = 0; r < routes; ++r) {
            std::array<std::uint64_t, count<DenyReason>()> n{};
            for (const auto& w : workers_) {
                if (w) {
                    for (std::size_t i = 0; i < n.size(); ++i) {
                        n[i] += w->routes_[r].denied[i].get();
                    }
                }
            }
            for (std::size_t i = 0; i < n.size(); ++i) {
                if (n[i] != 0) {
                    addValue(denied_f,
                             Labels{{"route", route_names_[r]},
                                    {"reason", std::string(name(static_cast<DenyReason>(i)))}},
                             static_cast<double>(n[i]));
                }
            }
        }
        out.push_back(std::move(denied_f));
        auto limited_f =
            family("strata_rate_limited_total", "requests answered 429 by the route's rate_limit",
                   MetricType::Counter);
        for (std::size_t r = 0; r < routes; ++r) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                if (w) {
                    n += w->routes_[r].rate_limited.get();
                }
            }
            if (n != 0) {
                addValue(limited_f, Labels{{"route", route_names_[r]}}, static_cast<double>(n));
            }
        }
        out.push_back(std::move(limited_f));
        std::uint64_t per_client = 0;
        for (const auto& w : workers_) {
            if (w) {
                per_client += w->per_client_refused_.get();
            }
        }
        auto per_client_f =
            family("strata_connections_refused_per_client_total",
                   "connections closed at accept: their client address already held "
                   "listeners[].max_connections_per_client",
                   MetricType::Counter);
        addValue(per_client_f, {}, static_cast<double>(per_client));
        out.push_back(std::move(per_client_f));
        std::uint64_t closed = 0;
        std::uint64_t up = 0;
        std::uint64_t down = 0;
        for (const auto& w : workers_) {
            if (w) {
                closed += w->tunnels_closed_.get();
                up += w->tunnel_bytes_up_.get();
                down += w->tunnel_bytes_down_.get();
            }
        }
        auto open_f = family("strata_tunnels_open", "tunnels in progress", MetricType::Gauge);
        addValue(open_f, Labels{}, opened >= closed ? static_cast<double>(opened - closed) : 0);
        out.push_back(std::move(open_f));
        auto tunnel_bytes_f = family(
            "strata_tunnel_bytes_total",
            "bytes relayed through ended tunnels, by direction (upstream: client to upstream)",
            MetricType::Counter);
        addValue(tunnel_bytes_f, label("direction", "upstream"), static_cast<double>(up));
        addValue(tunnel_bytes_f, label("direction", "downstream"), static_cast<double>(down));
        out.push_back(std::move(tunnel_bytes_f));

        // HTTP/2.
        auto h2_f = family("strata_http2_events_total",
                           "HTTP/2 connections, streams opened, streams reset by the client, and "
                           "streams strata reset by reason",
                           MetricType::Counter);
        for (std::size_t e = 0; e < count<H2Event>(); ++e) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                if (w) {
                    n += w->http2_[e].get();
                }
            }
            addValue(h2_f, label("event", name(static_cast<H2Event>(e))), static_cast<double>(n));
        }
        out.push_back(std::move(h2_f));
        auto goaway_f = family("strata_http2_goaway_sent_total",
                               "GOAWAY frames strata sent, by error code", MetricType::Counter);
        for (std::size_t g = 0; g < count<H2Goaway>(); ++g) {
            std::uint64_t n = 0;
            for (const auto& w : workers_) {
                if (w) {
                    n += w->http2_goaway_[g].get();
                }
            }
            addValue(goaway_f, label("code", name(static_cast<H2Goaway>(g))),
                     static_cast<double>(n));
        }
        out.push_back(std::move(goaway_f));

        // Process.
        auto reloads = family("strata_server_config_reloads_total",
                              "configuration reloads by result", MetricType::Counter);
        for (std::size_t r = 0; r < count<ReloadResult>(); ++r) {
            addValue(reloads, label("result", name(static_cast<ReloadResult>(r))),
                     static_cast<double>(process_->reloads[r].load(std::memory_order_relaxed)));
        }
        out.push_back(std::move(reloads));
        auto last = family("strata_server_config_last_reload_success_timestamp_seconds",
                           "unix time of the last successful load or reload", MetricType::Gauge);
        addValue(last, {}, process_->last_reload_success.load(std::memory_order_relaxed));
        out.push_back(std::move(last));
        auto internal = family("strata_server_internal_errors_total",
                               "bugs caught at run time (exceptions in callbacks, STRATA_BUG)",
                               MetricType::Counter);
        addValue(internal, {}, static_cast<double>(log::internalErrors()));
        out.push_back(std::move(internal));
        auto admin = family("strata_admin_requests_total",
                            "admin API requests by endpoint and code", MetricType::Counter);
        for (const auto& [key, n] : process_->admin_requests) {
            addValue(admin, Labels{{"endpoint", key.first}, {"code", std::to_string(key.second)}},
                     static_cast<double>(n));
        }
        out.push_back(std::move(admin));
        auto unauthorized =
            family("strata_admin_unauthorized_total",
                   "admin requests refused for a wrong or missing token", MetricType::Counter);
        addValue(unauthorized, {},
                 static_cast<double>(process_->admin_unauthorized.load(std::memory_order_relaxed)));
        out.push_back(std::move(unauthorized));
        gauges = gauges_;
    }
    // Outside the lock: gauge callbacks take their owners' locks.
    for (const auto& g : gauges) {
        auto f = family(g.name, g.help, MetricType::Gauge);
        std::vector<GaugeSample> samples;
        g.fn(samples);
        for (auto& s : samples) {
            Labels l;
            for (auto& [k, v] : s.labels) {
                l.push_back({std::move(k), std::move(v)});
            }
            addValue(f, std::move(l), s.value);
        }
        out.push_back(std::move(f));
    }
    return out;
}

std::string Registry::serialize() const {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, Collect());
    return out.str();
}

double Registry::valueForTest(const std::string& metric,
                              const std::map<std::string, std::string>& labels) const {
    for (const auto& f : Collect()) {
        std::string base = f.name;
        for (const auto& m : f.metric) {
            bool match = true;
            for (const auto& [k, v] : labels) {
                auto it = std::find_if(m.label.begin(), m.label.end(),
                                       [&](const auto& l) { return l.name == k; });
                if (it == m.label.end() || it->value != v) {
                    match = false;
                    break;
                }
            }
            if (!match) {
                continue;
            }
            if (metric == base) {
                switch (f.type) {
                    case prometheus::MetricType::Counter:
                        return m.counter.value;
                    case prometheus::MetricType::Gauge:
                        return m.gauge.value;
                    default:
                        return static_cast<double>(m.histogram.sample_count);
                }
            }
            if (metric == base + "_count") {
                return static_cast<double>(m.histogram.sample_count);
            }
            if (metric == base + "_sum") {
                return m.histogram.sample_sum;
            }
        }
    }
    return -1;
}

Registry& global() {
    static Registry registry;
    return registry;
}

}  // namespace strata::metrics
