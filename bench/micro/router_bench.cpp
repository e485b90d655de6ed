// Router::match cost with 1 route against 1,000 (issue #12 target: at most 5 % more CPU per
// request): 1,000 virtual hosts, and 1,000 path prefixes under one host, the two shapes a
// large config takes. The request matches the last route written, the worst case of a scan in
// config order.
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "strata/proxy/router.h"

namespace {

using namespace strata;

config::Route routeFor(std::string host, std::string prefix) {
    config::Route r;
    if (!host.empty()) {
        r.match.hosts.push_back(std::move(host));
    }
    r.match.path_prefix = std::move(prefix);
    r.upstream = "app";
    return r;
}

void run(benchmark::State& state, const std::vector<config::Route>& routes, std::string_view host,
         std::string_view path, int expected) {
    proxy::Router router(routes);
    http::Fields fields;
    fields.add("User-Agent", "bench");
    proxy::RouteRequest request;
    request.host = host;
    request.path = path;
    request.method = "GET";
    request.listener = "http";
    request.fields = &fields;
    if (router.match(request) != expected) {
        state.SkipWithError("wrong route");
        return;
    }
    for (auto _ : state) {
        benchmark::DoNotOptimize(router.match(request));
    }
}

void BM_OneRoute(benchmark::State& state) {
    run(state, {routeFor("site-999.example.com", "/static/")}, "site-999.example.com:8080",
        "/static/app.js", 0);
}

void BM_ThousandHosts(benchmark::State& state) {
    std::vector<config::Route> routes;
    for (int i = 0; i < 1000; ++i) {
        routes.push_back(routeFor("site-" + std::to_string(i) + ".example.com", "/static/"));
    }
    run(state, routes, "site-999.example.com:8080", "/static/app.js", 999);
}

void BM_ThousandPrefixes(benchmark::State& state) {
    std::vector<config::Route> routes;
    for (int i = 0; i < 1000; ++i) {
        routes.push_back(routeFor("site-999.example.com", "/app" + std::to_string(i) + "/"));
    }
    run(state, routes, "site-999.example.com:8080", "/app999/index.html", 999);
}

void BM_ThousandWildcards(benchmark::State& state) {
    std::vector<config::Route> routes;
    for (int i = 0; i < 1000; ++i) {
        routes.push_back(routeFor("*.tenant-" + std::to_string(i) + ".example.com", "/"));
    }
    run(state, routes, "www.tenant-999.example.com", "/static/app.js", 999);
}

}  // namespace

BENCHMARK(BM_OneRoute);
BENCHMARK(BM_ThousandHosts);
BENCHMARK(BM_ThousandPrefixes);
BENCHMARK(BM_ThousandWildcards);
BENCHMARK_MAIN();
