#include "strata/metrics/metrics.h"

#include <thread>

#include <doctest/doctest.h>

using namespace strata::metrics;

TEST_SUITE("metrics/labels") {
    TEST_CASE("method and status classes are bounded") {
        CHECK(methodClass("GET") == MethodClass::Get);
        CHECK(methodClass("HEAD") == MethodClass::Head);
        CHECK(methodClass("POST") == MethodClass::Post);
        CHECK(methodClass("PUT") == MethodClass::Put);
        CHECK(methodClass("DELETE") == MethodClass::Delete);
        CHECK(methodClass("get") == MethodClass::Other);
        CHECK(methodClass("PROPFIND") == MethodClass::Other);
        CHECK(statusClass(204) == StatusClass::S2xx);
        CHECK(statusClass(599) == StatusClass::S5xx);
        CHECK(statusClass(0) == StatusClass::Error);
        CHECK(statusClass(600) == StatusClass::Error);
        CHECK(name(StatusClass::S4xx) == "4xx");
    }
}

TEST_SUITE("metrics/registry") {
    TEST_CASE("worker shards are summed at collect time") {
        Registry registry(4);
        auto api = registry.routeSlot("api");
        CHECK(registry.routeSlot("api") == api);  // interned
        CHECK(api != kNoRoute);
        registry.worker(0).request(api, /*listener_slot=*/0, MethodClass::Get, 200,
                                   CacheResult::Bypass, 0.002);
        registry.worker(1).request(api, /*listener_slot=*/0, MethodClass::Get, 204,
                                   CacheResult::Bypass, 0.2);
        registry.worker(1).request(api, /*listener_slot=*/0, MethodClass::Post, 503,
                                   CacheResult::Bypass, 0.0001);
        CHECK(registry.valueForTest(
                  "strata_proxy_requests_total",
                  {{"route", "api"}, {"method", "GET"}, {"status_class", "2xx"}}) == 2);
        CHECK(registry.valueForTest(
                  "strata_proxy_requests_total",
                  {{"route", "api"}, {"method", "POST"}, {"status_class", "5xx"}}) == 1);
        CHECK(registry.valueForTest("strata_proxy_request_duration_seconds_count",
                                    {{"route", "api"}, {"cache", "bypass"}}) == 3);
        double sum = registry.valueForTest("strata_proxy_request_duration_seconds_sum",
                                           {{"route", "api"}, {"cache", "bypass"}});
        CHECK(sum == doctest::Approx(0.2021).epsilon(0.001));
    }

    TEST_CASE("histogram buckets are cumulative in the exposition") {
        Registry registry(1);
        auto slot = registry.routeSlot("r");
        auto& w = registry.worker(0);
        w.request(slot, /*listener_slot=*/0, MethodClass::Get, 200, CacheResult::Hit,
                  0.0004);  // <= 0.0005
        w.request(slot, /*listener_slot=*/0, MethodClass::Get, 200, CacheResult::Hit,
                  0.003);  // <= 0.005
        w.request(slot, /*listener_slot=*/0, MethodClass::Get, 200, CacheResult::Hit, 99);  // +Inf
        std::string text = registry.serialize();
        CHECK(text.find("strata_proxy_request_duration_seconds_bucket{route=\"r\",cache=\"hit\","
                        "le=\"0.0005\"} 1") != std::string::npos);
        CHECK(text.find("strata_proxy_request_duration_seconds_bucket{route=\"r\",cache=\"hit\","
                        "le=\"0.005\"} 2") != std::string::npos);
        CHECK(text.find("strata_proxy_request_duration_seconds_bucket{route=\"r\",cache=\"hit\","
                        "le=\"+Inf\"} 3") != std::string::npos);
        CHECK(text.find("# TYPE strata_proxy_request_duration_seconds histogram") !=
              std::string::npos);
    }

    TEST_CASE("upstream servers, cache, tls and process counters") {
        Registry registry(2);
        auto s = registry.serverSlot("app", "127.0.0.1:8000");
        CHECK(registry.serverSlot("app", "127.0.0.1:8000") == s);
        CHECK(registry.serverSlot("other", "127.0.0.1:8000") != s);
        auto& w = registry.worker(0);
        w.upstreamResponse(s, 200, 0.01);
        w.upstreamResponse(s, 0, 0);
        w.upstreamConnectError(s);
        w.upstreamRetry(s);
        w.cacheLookup(registry.routeSlot("r"), Tier::L2, LookupResult::Hit);
        w.tlsHandshake(TlsResult::Ok, TlsVersion::Tls13);
        registry.configReload(ReloadResult::Failure, 0);
        registry.configReload(ReloadResult::Success, 1234.5);
        registry.adminUnauthorized();
        const std::map<std::string, std::string> app{{"upstream", "app"},
                                                     {"server", "127.0.0.1:8000"}};
        auto with = [&](std::string k, std::string v) {
            auto l = app;
            l[k] = v;
            return l;
        };
        CHECK(registry.valueForTest("strata_upstream_requests_total",
                                    with("status_class", "2xx")) == 1);
        CHECK(registry.valueForTest("strata_upstream_requests_total",
                                    with("status_class", "error")) == 1);
        CHECK(registry.valueForTest("strata_upstream_response_time_seconds_count", app) == 1);
        CHECK(registry.valueForTest("strata_upstream_connect_errors_total", app) == 1);
        CHECK(registry.valueForTest("strata_upstream_retries_total", app) == 1);
        CHECK(registry.valueForTest("strata_cache_lookups_total",
                                    {{"tier", "l2"}, {"result", "hit"}}) == 1);
        CHECK(registry.valueForTest("strata_cache_lookups_total",
                                    {{"tier", "l1"}, {"result", "hit"}}) == 0);
        CHECK(registry.valueForTest("strata_tls_handshakes_total",
                                    {{"result", "ok"}, {"version", "1.3"}}) == 1);
        CHECK(registry.valueForTest("strata_server_config_reloads_total",
                                    {{"result", "failure"}}) == 1);
        CHECK(registry.valueForTest("strata_server_config_last_reload_success_timestamp_seconds") ==
              1234.5);
        CHECK(registry.valueForTest("strata_admin_unauthorized_total") == 1);
        CHECK(registry.valueForTest("strata_build_info") == 1);
        CHECK(registry.valueForTest("strata_no_such_metric") == -1);
    }

    TEST_CASE("requests carry the listener; bytes and lookups are by route") {
        Registry registry(2);
        auto api = registry.routeSlot("api");
        auto web = registry.routeSlot("web");
        auto front = registry.proxyListenerSlot("front");
        auto internal = registry.proxyListenerSlot("internal");
        CHECK(registry.proxyListenerSlot("front") == front);
        CHECK(front != internal);
        registry.worker(0).request(api, front, MethodClass::Get, 200, CacheResult::Hit, 0);
        registry.worker(1).request(api, internal, MethodClass::Get, 200, CacheResult::Hit, 0);
        registry.worker(1).request(api, internal, MethodClass::Get, 200, CacheResult::Hit, 0);
        CHECK(registry.valueForTest("strata_proxy_requests_total",
                                    {{"route", "api"}, {"listener", "front"}}) == 1);
        CHECK(registry.valueForTest("strata_proxy_requests_total",
                                    {{"route", "api"}, {"listener", "internal"}}) == 2);
        registry.worker(1).request(api, internal, MethodClass::Get, 200, CacheResult::Hit, 0,
                                   Protocol::H2);
        CHECK(registry.valueForTest("strata_proxy_requests_total",
                                    {{"route", "api"}, {"protocol", "http/1.1"}}) == 1);
        CHECK(registry.valueForTest(
                  "strata_proxy_requests_total",
                  {{"route", "api"}, {"listener", "internal"}, {"protocol", "h2"}}) == 1);
        CHECK(registry.valueForTest(
                  "strata_proxy_requests_total",
                  {{"route", "api"}, {"listener", "internal"}, {"protocol", "http/1.1"}}) == 2);

        registry.worker(0).receivedBytes(api, 100);
        registry.worker(1).receivedBytes(api, 20);
        registry.worker(0).sentBytes(web, 5000);
        CHECK(registry.valueForTest("strata_proxy_received_bytes_total", {{"route", "api"}}) ==
              120);
        CHECK(registry.valueForTest("strata_proxy_received_bytes_total", {{"route", "web"}}) == 0);
        CHECK(registry.valueForTest("strata_proxy_sent_bytes_total", {{"route", "web"}}) == 5000);

        auto& w = registry.worker(0);
        w.cacheLookup(web, Tier::L1, LookupResult::Miss);
        w.cacheLookup(web, Tier::L1, LookupResult::HitForPass);
        w.cacheLookup(web, Tier::L1, LookupResult::HitForPass);
        w.cacheLookup(api, Tier::L1, LookupResult::Hit);
        auto lookups = [&](const std::string& route, const std::string& result) {
            return registry.valueForTest("strata_cache_lookups_total",
                                         {{"route", route}, {"tier", "l1"}, {"result", result}});
        };
        CHECK(lookups("web", "miss") == 1);
        CHECK(lookups("web", "hit_for_pass") == 2);
        CHECK(lookups("web", "hit") == 0);  // present at 0
        CHECK(lookups("api", "hit") == 1);
        CHECK(lookups("none", "hit") == -1);  // no route, no lookup
        CHECK(registry.valueForTest("strata_cache_lookups_total",
                                    {{"tier", "l2"}, {"result", "hit_for_pass"}}) == -1);
    }

    TEST_CASE("listener slots are bounded too") {
        Registry registry(1);
        std::uint16_t last = 0;
        for (std::size_t i = 0; i < kMaxProxyListeners + 3; ++i) {
            last = registry.proxyListenerSlot("l" + std::to_string(i));
        }
        CHECK(last == kMaxProxyListeners - 1);
        registry.worker(0).request(kNoRoute, last, MethodClass::Get, 200, CacheResult::Bypass, 0);
        CHECK(registry.valueForTest("strata_proxy_requests_total", {{"listener", "other"}}) == 1);
    }

    TEST_CASE("label slots are bounded: overflow shares the \"other\" slot") {
        Registry registry(1);
        std::uint16_t last = 0;
        for (std::size_t i = 0; i < kMaxRoutes + 10; ++i) {
            last = registry.routeSlot("r" + std::to_string(i));
        }
        CHECK(last == kMaxRoutes - 1);
        registry.worker(0).request(last, /*listener_slot=*/0, MethodClass::Get, 200,
                                   CacheResult::Bypass, 0);
        CHECK(registry.valueForTest("strata_proxy_requests_total", {{"route", "other"}}) == 1);
    }

    TEST_CASE("gauges come from callbacks at scrape time") {
        Registry registry(1);
        int calls = 0;
        registry.addGauge("strata_test_gauge", "test", [&](std::vector<GaugeSample>& out) {
            ++calls;
            out.push_back({{{"server", "a"}}, 1});
            out.push_back({{{"server", "b"}}, 0});
        });
        CHECK(registry.valueForTest("strata_test_gauge", {{"server", "b"}}) == 0);
        CHECK(registry.valueForTest("strata_test_gauge", {{"server", "a"}}) == 1);
        CHECK(calls == 2);
    }

    TEST_CASE("a scrape while workers record sees monotonic counts") {
        Registry registry(2);
        auto slot = registry.routeSlot("hot");
        auto& w0 = registry.worker(0);
        auto& w1 = registry.worker(1);
        constexpr int kN = 20000;
        std::thread t0([&] {
            for (int i = 0; i < kN; ++i) {
                w0.request(slot, /*listener_slot=*/0, MethodClass::Get, 200, CacheResult::Bypass,
                           0.001);
            }
        });
        std::thread t1([&] {
            for (int i = 0; i < kN; ++i) {
                w1.request(slot, /*listener_slot=*/0, MethodClass::Get, 200, CacheResult::Bypass,
                           0.001);
            }
        });
        double previous = 0;
        for (int i = 0; i < 20; ++i) {
            // -1 until the first request: series with no samples are not exported.
            double v = std::max(
                0.0, registry.valueForTest("strata_proxy_requests_total", {{"route", "hot"}}));
            CHECK(v >= previous);
            previous = std::max(previous, v);
        }
        t0.join();
        t1.join();
        CHECK(registry.valueForTest("strata_proxy_requests_total", {{"route", "hot"}}) == 2 * kN);
    }
}
