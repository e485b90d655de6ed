// Metrics move as requests flow; the duration histogram is there; the admin endpoints answer.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {
const std::string kAdmin = "admin: {bind: \"127.0.0.1:0\"}\n";
}

TEST_SUITE("e2e/ops") {
    TEST_CASE("requests, upstream responses and the duration histogram are counted") {
        Origin origin(1);
        Strata strata(proxyConfig(origin.serversYaml(), kAdmin));
        const auto admin = strata.port("admin");
        for (int i = 0; i < 5; ++i) {
            REQUIRE(get(strata.port(), "/bytes/10").status == 200);
        }
        REQUIRE(get(strata.port(), "/status/404").status == 404);
        REQUIRE(request(strata.port(), "POST", "/echo", "", "x").status == 200);
        const std::string text = scrape(admin);
        CHECK(metricIn(text, "strata_proxy_requests_total",
                       {"route=\"0\"", "method=\"GET\"", "status_class=\"2xx\""}) == 5);
        CHECK(metricIn(text, "strata_proxy_requests_total",
                       {"method=\"GET\"", "status_class=\"4xx\""}) == 1);
        CHECK(metricIn(text, "strata_proxy_requests_total",
                       {"method=\"POST\"", "status_class=\"2xx\""}) == 1);
        CHECK(metricIn(text, "strata_proxy_request_duration_seconds_count",
                       {"route=\"0\"", "cache=\"bypass\""}) == 7);
        CHECK(metricIn(text, "strata_proxy_request_duration_seconds_bucket",
                       {"cache=\"bypass\"", "le=\"+Inf\""}) == 7);
        CHECK(text.find("# TYPE strata_proxy_request_duration_seconds histogram") !=
              std::string::npos);
        const std::string server = "server=\"" + origin.addr() + "\"";
        CHECK(metricIn(text, "strata_upstream_requests_total",
                       {"upstream=\"app\"", server, "status_class=\"2xx\""}) == 6);
        CHECK(metricIn(text, "strata_upstream_response_time_seconds_count", {server}) == 7);
        CHECK(metricIn(text, "strata_upstream_server_healthy", {server}) == 1);
        CHECK(metricIn(text, "strata_server_config_reloads_total", {"result=\"success\""}) == 1);
        CHECK(metricIn(text, "strata_build_info") == 1);
        CHECK(metricIn(text, "strata_cache_lookups_total", {"tier=\"l1\"", "result=\"hit\""}) >= 0);
    }

    TEST_CASE("metrics.enabled: false records nothing; /metrics still answers") {
        Origin origin(1);
        Strata strata(proxyConfig(origin.serversYaml(), kAdmin + "metrics: {enabled: false}\n"));
        REQUIRE(get(strata.port(), "/").status == 200);
        auto r = get(strata.port("admin"), "/metrics");
        CHECK(r.status == 200);
        CHECK(metricIn(r.body, "strata_proxy_requests_total") == -1);
        CHECK(metricIn(r.body, "strata_build_info") == 1);
    }

    TEST_CASE("healthz, readyz and status") {
        Origin origin(2);
        Strata strata(proxyConfig(origin.serversYaml(), kAdmin));
        const auto admin = strata.port("admin");
        CHECK(get(admin, "/healthz").status == 200);
        CHECK(get(admin, "/readyz").status == 200);
        auto s = get(admin, "/status");
        CHECK(s.status == 200);
        CHECK(s.header("Content-Type") == "application/json");
        CHECK(s.body.find("\"version\":1") != std::string::npos);
        CHECK(s.body.find("\"address\":\"" + origin.addr(1) + "\"") != std::string::npos);
        CHECK(s.body.find("\"in_flight\":0") != std::string::npos);
        CHECK(s.body.find("\"cache\":{\"l1\"") != std::string::npos);
        CHECK(get(admin, "/nope").status == 404);
    }

    TEST_CASE("a 405 from the admin API carries Allow") {
        Origin origin(1);
        Strata strata(proxyConfig(origin.serversYaml(), kAdmin));
        const auto admin = strata.port("admin");
        for (const char* path : {"/metrics", "/healthz", "/readyz", "/status"}) {
            auto r = request(admin, "POST", path);
            CHECK(r.status == 405);
            CHECK(r.header("Allow") == "GET, HEAD");
        }
        for (const char* path : {"/reload", "/purge"}) {
            auto r = get(admin, path);
            CHECK(r.status == 405);
            CHECK(r.header("Allow") == "POST");
        }
        CHECK_FALSE(get(admin, "/status").hasHeader("Allow"));
    }

    TEST_CASE("admin token: state changes need it; wrong or missing is 401 and counted") {
        Origin origin(1);
        TempDir dir;
        writeFile(dir.file("token"), "s3cret-token\n");
        Strata strata(proxyConfig(
            origin.serversYaml(),
            "admin: {bind: \"127.0.0.1:0\", token_file: \"" + dir.file("token") + "\"}\n"));
        const auto admin = strata.port("admin");
        CHECK(request(admin, "POST", "/reload").status == 401);
        CHECK(request(admin, "POST", "/reload", "Authorization: Bearer nope\r\n").status == 401);
        CHECK(request(admin, "POST", "/purge?url=/a", "Authorization: s3cret-token\r\n").status ==
              401);
        CHECK(metric(admin, "strata_admin_unauthorized_total") == 3);
        CHECK(metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) == 1);
        auto ok = request(admin, "POST", "/reload", "Authorization: Bearer s3cret-token\r\n");
        CHECK(ok.status == 200);
        CHECK(metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) == 2);
        // With the token, purge reaches the cache's handler (which wants an absolute URL).
        CHECK(request(admin, "POST", "/purge?url=http%3A%2F%2Ft%2Fa",
                      "Authorization: Bearer s3cret-token\r\n")
                  .status == 200);
        CHECK(request(admin, "POST", "/purge?url=/a", "Authorization: Bearer s3cret-token\r\n")
                  .status == 400);
        CHECK(strata.process().stderrText().find("admin: POST /reload refused: missing token") !=
              std::string::npos);
    }
}
