#include "strata/proxy/snapshot.h"

#include <algorithm>

#include "strata/common/strings.h"
#include "strata/metrics/metrics.h"

namespace strata::proxy {
namespace {

cache::QueryMode queryMode(const std::string& name) {
    // The config loader accepts only these names (kQueryModes in src/config/schema.cpp).
    if (name == "as_is") {
        return cache::QueryMode::AsIs;
    }
    if (name == "ignore") {
        return cache::QueryMode::Ignore;
    }
    if (name == "allow_list") {
        return cache::QueryMode::AllowList;
    }
    return cache::QueryMode::Sorted;
}

RouteCachePolicy routeCachePolicy(const config::RouteCache& c) {
    using cache::Seconds;
    RouteCachePolicy out;
    cache::CachePolicy& p = out.policy;
    p.enabled = c.enabled;
    p.default_ttl = std::chrono::duration_cast<Seconds>(c.default_ttl);
    p.stale_while_revalidate = std::chrono::duration_cast<Seconds>(c.stale_while_revalidate);
    p.stale_if_error = std::chrono::duration_cast<Seconds>(c.stale_if_error);
    p.stale_if_unreachable = std::chrono::duration_cast<Seconds>(c.stale_if_unreachable);
    p.allow_set_cookie = c.allow_set_cookie;
    p.max_object_bytes = c.max_object_bytes;
    cache::KeyPolicy& k = out.key;
    k.query = queryMode(c.key.query);
    k.query_allow = c.key.query_params;
    k.headers = c.key.headers;
    for (std::string_view field : config::kOverrideFields) {
        // The config stores allowed names spelled as in kOverrideFields.
        if (std::find(c.allow_override_headers.begin(), c.allow_override_headers.end(), field) ==
            c.allow_override_headers.end()) {
            out.dropped_overrides.push_back(field);
        }
    }
    return out;
}

}  // namespace

Snapshot::Snapshot(config::ConfigPtr c, upstream::ServerRegistry& registry, std::uint64_t v)
    : config(std::move(c)), router(config->routes), version(v) {
    for (const auto& listener : config->listeners) {
        any_trusted_proxies = any_trusted_proxies || !listener.trusted_proxies.empty();
        any_listener_access = any_listener_access || !listener.access.empty();
    }
    for (const auto& [name, upstream_config] : config->upstreams) {
        upstreams.emplace(name,
                          std::make_shared<upstream::UpstreamGroup>(upstream_config, registry));
    }
    routes.reserve(config->routes.size());
    for (const auto& route : config->routes) {
        CompiledRoute& compiled = routes.emplace_back();
        compiled.config = &route;
        compiled.name = route.name.empty() ? std::to_string(routes.size() - 1) : route.name;
        compiled.metric_slot = metrics::global().routeSlot(compiled.name);
        compiled.cache = routeCachePolicy(route.cache);
        compiled.compression = compileCompression(route.compression);
        compiled.actions = RouteActions::compile(route);
        if (route.rate_limit.enabled) {
            compiled.rate_limiter = rateLimiterFor(compiled.name, route.rate_limit);
        }
        auto it = upstreams.find(route.upstream);
        // Config validation rejects routes naming unknown upstreams.
        compiled.upstream = it == upstreams.end() ? nullptr : it->second.get();
    }
}

void Snapshot::attachTls(net::TlsContexts&& tls) {
    tls_listeners = std::move(tls.listeners);
    for (auto& [name, context] : tls.upstreams) {
        if (auto it = upstreams.find(name); it != upstreams.end()) {
            it->second->setTls(std::move(context));
        }
    }
}

const cache::KeyPolicy& Snapshot::keyPolicyFor(std::string_view host, std::string_view path) const {
    static const cache::KeyPolicy kDefault;
    int route = router.match(toLower(host), path, "GET");  // purge URLs may use any case
    return route < 0 ? kDefault : this->route(route).cache.key;
}

net::TlsServerContextPtr Snapshot::tlsFor(const std::string& listener) const {
    auto it = tls_listeners.find(listener);
    return it == tls_listeners.end() ? nullptr : it->second;
}

const config::Listener* Snapshot::listenerConfig(std::string_view name) const {
    for (const auto& listener : config->listeners) {
        if (listener.name == name) {
            return &listener;
        }
    }
    return nullptr;
}

}  // namespace strata::proxy
