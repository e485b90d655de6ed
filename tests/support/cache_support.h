// Helpers for the cache cases (tests/e2e/c*.cpp): a config with caching on for the catch-all
// route, Cache-Status checks, and the origin's request counts.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "admin_client.h"
#include "e2e.h"

namespace strata::test {

// The route's cache block (config::RouteCache). Durations as strata's config spells them.
struct RouteCacheYaml {
    std::string default_ttl = "60s";
    std::string stale_while_revalidate = "0s";
    std::string stale_if_error = "0s";
    std::string stale_if_unreachable = "";  // "": strata's default
};

// proxyConfig() with caching enabled on the catch-all route and an admin listener ("admin" in
// the port file) for /metrics. `extra` is appended verbatim (cache:, limits:, ...);
// `upstream_extra` is one more line of upstream "app" (e.g. "timeouts: {response: 300ms}").
inline std::string cacheConfig(const std::string& servers_yaml, const RouteCacheYaml& c = {},
                               const std::string& extra = "",
                               const std::string& upstream_extra = "") {
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\"}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  app:\n"
           "    servers: " +
           servers_yaml + "\n" + (upstream_extra.empty() ? "" : "    " + upstream_extra + "\n") +
           "routes:\n"
           "  - match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    cache: {enabled: true, default_ttl: " +
           c.default_ttl + ", stale_while_revalidate: " + c.stale_while_revalidate +
           ", stale_if_error: " + c.stale_if_error +
           (c.stale_if_unreachable.empty() ? ""
                                           : ", stale_if_unreachable: " + c.stale_if_unreachable) +
           "}\n"
           "logging: {access_log: off}\n" +
           extra;
}

// True when the response's Cache-Status (RFC 9211) has `param` as one of its parameters, e.g.
// "hit", "fwd=uri-miss", "stored", "detail=l1", "fwd-status=304".
inline bool cacheStatusHas(const Response& r, std::string_view param) {
    const std::string cs = r.header("Cache-Status");
    std::string_view rest = cs;
    while (!rest.empty()) {
        auto semi = rest.find(';');
        std::string_view item = trimOws(rest.substr(0, semi));
        if (item == param) {
            return true;
        }
        if (semi == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(semi + 1);
    }
    return false;
}

// The Cache-Status "ttl" parameter (remaining freshness in seconds, <= 0 once stale); a huge
// sentinel when absent so a check on it fails visibly.
inline long cacheStatusTtl(const Response& r) {
    const std::string cs = r.header("Cache-Status");
    auto pos = cs.find("ttl=");
    if (pos == std::string::npos) {
        return 1L << 40;
    }
    return std::strtol(cs.c_str() + pos + 4, nullptr, 10);
}

// Shows the Cache-Status of a response when a check about it fails.
#define STRATA_CACHE_STATUS(r) INFO("Cache-Status: " << (r).header("Cache-Status"))

// cc= parameter for strata-origin's query (URL-encodes '=' and ',').
inline std::string ccParam(std::string_view cache_control) {
    std::string out = "cc=";
    for (char c : cache_control) {
        if (c == '=') {
            out += "%3D";
        } else if (c == ',') {
            out += "%2C";
        } else if (c == ' ') {
            out += "%20";
        } else if (c == '"') {
            out += "%22";
        } else {
            out += c;
        }
    }
    return out;
}

// h= parameter: an extra response field "Name: Value" on strata-origin's answer.
inline std::string hParam(std::string_view name, std::string_view value) {
    std::string out = "h=";
    out += name;
    out += "%3A";
    for (char c : value) {
        if (c == '"') {
            out += "%22";
        } else if (c == ' ') {
            out += "%20";
        } else if (c == ',') {
            out += "%2C";
        } else if (c == '=') {
            out += "%3D";
        } else if (c == '&') {
            out += "%26";
        } else {
            out += c;
        }
    }
    return out;
}

// max-age=1 expires once a whole second has passed (ages are whole seconds, RFC 9111 1.2.2).
// Waiting for time to pass is what the cases using it test, not a synchronisation.
inline void waitPastOneSecondMaxAge() {
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
}

// Sanitizer builds run every process several times slower: scale scheduling slack, not bounds.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kSlow = 3;
#else
constexpr int kSlow = 1;
#endif

// memcached's per-operation counters, as strata exposes them (cache.l2).
inline double l2Ops(std::uint16_t admin, const std::string& op) {
    return metric(admin, "strata_cache_l2_operation_duration_seconds_count", {"op=\"" + op + "\""});
}
inline double l2Errors(std::uint16_t admin, const std::string& op) {
    return metric(admin, "strata_cache_l2_errors_total", {"op=\"" + op + "\""});
}
inline double l2Lookups(std::uint16_t admin, const std::string& result) {
    return metric(admin, "strata_cache_lookups_total",
                  {"tier=\"l2\"", "result=\"" + result + "\""});
}

// Waits until `n` memcached writes of this instance completed without error: an object written
// by store() is then readable by every instance (L2 writes are asynchronous).
inline bool waitForL2Sets(std::uint16_t admin, double n) {
    return eventually([&] { return l2Ops(admin, "set") - l2Errors(admin, "set") >= n; },
                      std::chrono::milliseconds(10000 * kSlow));
}

// One client's answer in a burst, and its latency from the common start.
struct BurstOutcome {
    int status = 0;
    std::string body;
    std::string cache_status;
    std::string error;
    double ms = 0;
};

// `per_port` clients on each of `ports` connect first, then all send `target` at once (Host: t,
// one cache key). doctest assertions stay on the calling thread.
inline std::vector<BurstOutcome> burst(const std::vector<std::uint16_t>& ports,
                                       const std::string& target, int per_port,
                                       double* total_ms = nullptr) {
    std::vector<std::unique_ptr<RawClient>> clients;
    for (std::uint16_t port : ports) {
        for (int i = 0; i < per_port; ++i) {
            clients.push_back(std::make_unique<RawClient>(port));
        }
    }
    const std::size_t n = clients.size();
    std::vector<BurstOutcome> out(n);
    std::atomic<std::size_t> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    const std::string req = "GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n";
    for (std::size_t i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            ++ready;
            while (!go.load()) {
                std::this_thread::yield();
            }
            auto t0 = Clock::now();
            BurstOutcome& o = out[i];
            if (!clients[i]->send(req)) {
                o.error = "send failed";
                return;
            }
            auto r = clients[i]->readResponse();
            o.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            o.status = r.status;
            o.body = r.body;
            o.cache_status = r.header("Cache-Status");
            o.error = r.error;
        });
    }
    while (ready.load() < n) {
        std::this_thread::yield();
    }
    const auto start = Clock::now();
    go = true;
    for (auto& t : threads) {
        t.join();
    }
    if (total_ms != nullptr) {
        *total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    }
    return out;
}
inline std::vector<BurstOutcome> burst(std::uint16_t port, const std::string& target, int n,
                                       double* total_ms = nullptr) {
    return burst(std::vector<std::uint16_t>{port}, target, n, total_ms);
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace strata::test
