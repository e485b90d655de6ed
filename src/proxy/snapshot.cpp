#include "strata/proxy/snapshot.h"

#include "strata/metrics/metrics.h"

namespace strata::proxy {

Snapshot::Snapshot(config::ConfigPtr c, upstream::ServerRegistry& registry, std::uint64_t v)
    : config(std::move(c)), router(config->routes), version(v) {
    for (const auto& [name, upstream_config] : config->upstreams) {
        upstreams.emplace(name,
                          std::make_shared<upstream::UpstreamGroup>(upstream_config, registry));
    }
    route_upstreams.reserve(config->routes.size());
    route_metric_slots.reserve(config->routes.size());
    for (const auto& route : config->routes) {
        route_metric_slots.push_back(metrics::global().routeSlot(
            route.name.empty() ? std::to_string(route_metric_slots.size()) : route.name));
        auto it = upstreams.find(route.upstream);
        // Config validation rejects routes naming unknown upstreams.
        route_upstreams.push_back(it == upstreams.end() ? nullptr : it->second.get());
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

net::TlsServerContextPtr Snapshot::tlsFor(const std::string& listener) const {
    auto it = tls_listeners.find(listener);
    return it == tls_listeners.end() ? nullptr : it->second;
}

}  // namespace strata::proxy
