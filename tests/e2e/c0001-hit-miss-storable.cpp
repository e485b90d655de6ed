// The L1 cache answers what RFC 9111 lets a shared cache store, and only that: a miss then a
// hit the origin never sees, HEAD from a stored GET, nothing stored for no-store / private /
// Set-Cookie / Authorization, non-200 statuses stored when allowed, query order normalised.
#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("miss then L1 hit: the second request never reaches the origin") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/a?" + ccParam("max-age=60");

        auto first = get(strata.port(), url);
        STRATA_CACHE_STATUS(first);
        REQUIRE(first.status == 200);
        CHECK(cacheStatusHas(first, "fwd=uri-miss"));
        CHECK(cacheStatusHas(first, "stored"));

        auto second = get(strata.port(), url);
        STRATA_CACHE_STATUS(second);
        REQUIRE(second.status == 200);
        CHECK(second.body == first.body);
        CHECK(cacheStatusHas(second, "hit"));
        CHECK(cacheStatusHas(second, "detail=l1"));
        CHECK(second.header("Cache-Status").find("ttl=") != std::string::npos);
        REQUIRE(second.hasHeader("Age"));
        CHECK(std::stoi(second.header("Age")) >= 0);
        CHECK(std::stoi(second.header("Age")) <= 1);
        CHECK(second.header("Cache-Control") == "max-age=60");
        CHECK(second.header("X-Origin") == "0");
        CHECK(origin.requestCount(0, "/a") == 1);
        CHECK(metric(strata.port("admin"), "strata_cache_lookups_total",
                     {"tier=\"l1\"", "result=\"hit\""}) == 1);
        CHECK(metric(strata.port("admin"), "strata_cache_lookups_total",
                     {"tier=\"l1\"", "result=\"miss\""}) == 1);
        // The L1 gauges are read from the cache itself at scrape time.
        CHECK(metric(strata.port("admin"), "strata_cache_l1_objects") == 1);
        CHECK(metric(strata.port("admin"), "strata_cache_l1_bytes") > 0);
    }

    TEST_CASE("a Range miss fetches and stores the whole object; the next request is a hit") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/headers?" + ccParam("max-age=60");
        auto first = get(strata.port(), url, "Range: bytes=0-3\r\nIf-Range: \"x\"\r\n");
        STRATA_CACHE_STATUS(first);
        REQUIRE(first.status == 200);  // the whole object answers a range (RFC 9110 14.2)
        CHECK(cacheStatusHas(first, "stored"));
        EchoedHead seen(first.body);
        CHECK_FALSE(seen.has("Range"));
        CHECK_FALSE(seen.has("If-Range"));
        auto second = get(strata.port(), url);
        STRATA_CACHE_STATUS(second);
        CHECK(cacheStatusHas(second, "hit"));
        CHECK(origin.requestCount(0, "/headers") == 1);
    }

    TEST_CASE("a hit on a keep-alive connection, then the next request is forwarded again") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        RawClient c(strata.port());
        const std::string url = "/ka?" + ccParam("max-age=60");
        for (int i = 0; i < 3; ++i) {
            REQUIRE(c.send("GET " + url + " HTTP/1.1\r\nHost: t\r\n\r\n"));
            auto r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
        }
        REQUIRE(c.send("GET /other HTTP/1.1\r\nHost: t\r\n\r\n"));
        auto r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.body == "strata-origin 0: GET /other\n");
        CHECK(origin.requestCount(0, "/ka") == 1);
    }

    TEST_CASE("HEAD is answered from a stored GET: same head, no body") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/bytes/1000?" + ccParam("max-age=60");
        auto g = get(strata.port(), url);
        REQUIRE(g.status == 200);
        REQUIRE(g.body.size() == 1000);

        RawClient c(strata.port());
        REQUIRE(c.send("HEAD " + url + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                       std::to_string(strata.port()) + "\r\n\r\n"));
        ReadOptions head_only;
        head_only.head = true;
        auto h = c.readResponse(head_only);
        STRATA_REQUIRE_RESPONSE(h);
        STRATA_CACHE_STATUS(h);
        CHECK(h.status == 200);
        CHECK(h.header("Content-Length") == "1000");
        CHECK(cacheStatusHas(h, "hit"));
        // No body bytes follow the head: the connection carries the next answer cleanly.
        REQUIRE(c.send("GET " + url + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                       std::to_string(strata.port()) + "\r\n\r\n"));
        auto next = c.readResponse();
        STRATA_REQUIRE_RESPONSE(next);
        CHECK(next.status == 200);
        CHECK(next.body == g.body);
        CHECK(origin.requestCount(0, "/bytes/1000") == 1);
    }

    TEST_CASE("no-store, private, Set-Cookie and Authorization are never shared") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        struct Case {
            std::string path;
            std::string query;
            std::string request_fields;
        };
        const std::vector<Case> cases = {
            {"/no-store", ccParam("no-store"), ""},
            {"/no-store-max-age", ccParam("max-age=60, no-store"), ""},
            {"/private", ccParam("private, max-age=60"), ""},
            {"/cookie", ccParam("max-age=60") + "&" + hParam("Set-Cookie", "sid=1"), ""},
            {"/auth", ccParam("max-age=60"), "Authorization: Bearer t\r\n"},
            {"/req-no-store", ccParam("max-age=60"), "Cache-Control: no-store\r\n"},
        };
        for (const auto& k : cases) {
            CAPTURE(k.path);
            for (int i = 0; i < 3; ++i) {
                auto r = get(strata.port(), k.path + "?" + k.query, k.request_fields);
                STRATA_CACHE_STATUS(r);
                REQUIRE(r.status == 200);
                CHECK_FALSE(cacheStatusHas(r, "hit"));
                CHECK_FALSE(cacheStatusHas(r, "stored"));
            }
            CHECK(origin.requestCount(0, k.path) == 3);
        }
        // An authorized answer is not served to a later anonymous request either.
        get(strata.port(), "/auth2?" + ccParam("max-age=60"), "Authorization: Bearer t\r\n");
        auto anon = get(strata.port(), "/auth2?" + ccParam("max-age=60"));
        CHECK_FALSE(cacheStatusHas(anon, "hit"));
        CHECK(origin.requestCount(0, "/auth2") == 2);
    }

    TEST_CASE("Authorization with public or s-maxage: stored and shared (RFC 9111 3.5)") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        for (std::string cc : {"public, max-age=60", "s-maxage=60"}) {
            CAPTURE(cc);
            const std::string path = cc.starts_with("public") ? "/auth-public" : "/auth-smaxage";
            const std::string url = path + "?" + ccParam(cc);
            auto r1 = get(strata.port(), url, "Authorization: Bearer t\r\n");
            STRATA_CACHE_STATUS(r1);
            CHECK(cacheStatusHas(r1, "stored"));
            auto r2 = get(strata.port(), url);
            STRATA_CACHE_STATUS(r2);
            CHECK(cacheStatusHas(r2, "hit"));
            CHECK(origin.requestCount(0, path) == 1);
        }
    }

    TEST_CASE("404, 301, 410 stored when allowed; 500 and 503 without a lifetime not") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        struct Case {
            int status;
            std::string query;
            bool cached;
        };
        const std::vector<Case> cases = {
            {404, ccParam("max-age=60"), true},
            {301, ccParam("max-age=60") + "&" + hParam("Location", "/elsewhere"), true},
            {410, "", true},  // heuristically cacheable: the route's default_ttl applies
            {404, "", true},
            {500, "", false},  // not heuristically cacheable and no explicit lifetime
            {503, "", false},
        };
        for (const auto& k : cases) {
            const std::string path = "/status/" + std::to_string(k.status);
            const std::string url = path + (k.query.empty() ? "" : "?" + k.query);
            CAPTURE(url);
            origin.reset();
            auto r1 = get(strata.port(), url);
            auto r2 = get(strata.port(), url);
            STRATA_CACHE_STATUS(r2);
            CHECK(r1.status == k.status);
            CHECK(r2.status == k.status);
            CHECK(r2.body == r1.body);
            CHECK(cacheStatusHas(r2, "hit") == k.cached);
            CHECK(origin.requestCount(0, path) == (k.cached ? 1u : 2u));
            if (k.status == 301) {
                CHECK(r2.header("Location") == "/elsewhere");
            }
        }
    }

    TEST_CASE("a 200 without Cache-Control gets the route's default_ttl") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {.default_ttl = "60s"}));
        get(strata.port(), "/plain");
        auto r = get(strata.port(), "/plain");
        STRATA_CACHE_STATUS(r);
        CHECK(cacheStatusHas(r, "hit"));
        CHECK(origin.requestCount(0, "/plain") == 1);
    }

    TEST_CASE("query parameter order is normalised; different values are different keys") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string cc = ccParam("max-age=60");
        auto r1 = get(strata.port(), "/q?a=1&b=2&" + cc);
        auto r2 = get(strata.port(), "/q?b=2&" + cc + "&a=1");
        STRATA_CACHE_STATUS(r2);
        CHECK(cacheStatusHas(r1, "stored"));
        CHECK(cacheStatusHas(r2, "hit"));
        CHECK(origin.requestCount(0, "/q") == 1);

        auto r3 = get(strata.port(), "/q?a=2&b=2&" + cc);
        CHECK_FALSE(cacheStatusHas(r3, "hit"));
        // Repeated names keep their relative order: a=1&a=2 is not a=2&a=1.
        get(strata.port(), "/q?a=1&a=2&" + cc);
        auto r4 = get(strata.port(), "/q?a=2&a=1&" + cc);
        CHECK_FALSE(cacheStatusHas(r4, "hit"));
        CHECK(origin.requestCount(0, "/q") == 4);
    }

    TEST_CASE("route without a cache block: fwd=bypass, nothing stored") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        const std::string url = "/bypass?" + ccParam("max-age=60");
        for (int i = 0; i < 2; ++i) {
            auto r = get(strata.port(), url);
            CHECK(r.header("Cache-Status") == "strata; fwd=bypass");
        }
        CHECK(origin.requestCount(0, "/bypass") == 2);
    }
}
