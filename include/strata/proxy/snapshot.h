// What a request runs against: the config plus everything derived from it (router, upstream
// groups). Immutable and shared; a reload builds a new one and hands it to every worker, and a
// request keeps the one it started with until it ends.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "strata/cache/freshness.h"
#include "strata/cache/key.h"
#include "strata/common/result.h"
#include "strata/config/config.h"
#include "strata/net/tls_context.h"
#include "strata/proxy/body_processor.h"
#include "strata/proxy/rate_limiter.h"
#include "strata/proxy/route_actions.h"
#include "strata/proxy/router.h"
#include "strata/upstream/balancer.h"

namespace strata::proxy {

// A route's cache policy in the cache module's terms, built once per snapshot from
// config::RouteCache (never per request).
struct RouteCachePolicy {
    cache::CachePolicy policy;
    cache::KeyPolicy key;
    // config::kOverrideFields minus the route's allow_override_headers: dropped before
    // forwarding on a cacheable route. Views of static strings.
    std::vector<std::string_view> dropped_overrides;
};

// One route compiled once per snapshot: everything a request on it needs, so per-route state
// lives in one place instead of vectors kept parallel to config->routes.
struct CompiledRoute {
    const config::Route* config = nullptr;  // points into Snapshot::config
    // Each route's name, or its index when it has none: its `route` metric label and
    // access-log field.
    std::string name;
    std::uint16_t metric_slot = 0;
    const upstream::UpstreamGroup* upstream = nullptr;
    RouteCachePolicy cache;
    CompressionPolicy compression;
    RouteActions actions;
    RateLimiterPtr rate_limiter;  // null: no rate_limit
};

struct Snapshot {
    config::ConfigPtr config;
    Router router;
    std::map<std::string, upstream::UpstreamGroupPtr> upstreams;
    std::vector<CompiledRoute> routes;  // in config->routes order; the router's indices
    std::uint64_t version = 0;          // increments on every successful load
    // Some listener has trusted_proxies: requests look for their real client (most configs
    // have none, and then no request pays for the listener lookup).
    bool any_trusted_proxies = false;
    bool any_listener_access = false;  // some listener has an access list
    // TLS contexts built (and checked) by the server for this config; by listener name.
    std::map<std::string, net::TlsServerContextPtr> tls_listeners;

    Snapshot(config::ConfigPtr c, upstream::ServerRegistry& registry, std::uint64_t v);
    const CompiledRoute& route(int index) const { return routes[static_cast<std::size_t>(index)]; }
    // Installs contexts from net::buildTlsContexts() before the snapshot is published.
    void attachTls(net::TlsContexts&& tls);
    // The key policy of the route a GET for `host` + `path` (no query) takes, or the default
    // one when no route matches: how purge and invalidation key a URL the way lookups did.
    const cache::KeyPolicy& keyPolicyFor(std::string_view host, std::string_view path) const;
    // The listener's TLS context, or null for plain listeners.
    net::TlsServerContextPtr tlsFor(const std::string& listener) const;
    // The listener's settings in this config, or null (removed by a reload: its sockets close).
    const config::Listener* listenerConfig(std::string_view name) const;
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace strata::proxy
