// Freshness sources end to end (RFC 9111 4.2): an explicit lifetime of 0 or an invalid Expires
// is never overridden by the route's default_ttl; Last-Modified gives heuristic freshness;
// and the waiters of a coalesced fetch survive the leader's client going away.
#include <thread>

#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("explicit zero lifetimes are not replaced by default_ttl") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {.default_ttl = "60s"}));
        const std::vector<std::pair<std::string, std::string>> cases = {
            {"/ma0", ccParam("max-age=0")},
            {"/exp-invalid", hParam("Expires", "0")},
            {"/exp-past", hParam("Expires", "Thu, 01 Jan 1998 00:00:00 GMT")},
        };
        for (const auto& [path, query] : cases) {
            CAPTURE(path);
            get(strata.port(), path + "?" + query);
            auto r = get(strata.port(), path + "?" + query);
            STRATA_CACHE_STATUS(r);
            CHECK_FALSE(cacheStatusHas(r, "hit"));
            CHECK(origin.requestCount(0, path) == 2);
        }
    }

    TEST_CASE("Last-Modified gives heuristic freshness when the route has no default_ttl") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {.default_ttl = "0s"}));
        const std::string url = "/lm?" + hParam("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT");
        get(strata.port(), url);
        auto hit = get(strata.port(), url);
        STRATA_CACHE_STATUS(hit);
        CHECK(cacheStatusHas(hit, "hit"));
        CHECK(cacheStatusTtl(hit) > 3600);
        CHECK(cacheStatusTtl(hit) <= 86400);  // 10% of the age, capped at a day
        // Neither a lifetime nor Last-Modified: nothing to base freshness on.
        get(strata.port(), "/nolm");
        CHECK_FALSE(cacheStatusHas(get(strata.port(), "/nolm"), "hit"));
        CHECK(origin.requestCount(0, "/nolm") == 2);
    }

    TEST_CASE("waiters still get an answer when the leader's client goes away") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/delay/300?" + ccParam("max-age=60");
        const std::string req = "GET " + url + " HTTP/1.1\r\nHost: t\r\n\r\n";
        auto leader = std::make_unique<RawClient>(strata.port());
        REQUIRE(leader->send(req));
        // The leader's fetch is in flight once the origin counts it.
        REQUIRE(eventually([&] { return origin.requestCount(0, "/delay/300") == 1; }, 5000ms));
        std::vector<std::unique_ptr<RawClient>> waiters;
        for (int i = 0; i < 5; ++i) {
            waiters.push_back(std::make_unique<RawClient>(strata.port()));
            REQUIRE(waiters.back()->send(req));
        }
        REQUIRE(eventually(
            [&] { return metric(strata.port("admin"), "strata_cache_coalesced_waits_total") >= 5; },
            5000ms));
        leader.reset();  // the client that started the fetch disconnects
        for (auto& w : waiters) {
            auto r = w->readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
            CHECK(r.body == "delayed 300ms\n");
        }
        CHECK(origin.requestCount(0, "/delay/300") <= 6);
    }

    TEST_CASE("private=\"Set-Cookie\": shared without the cookie (RFC 9111 5.2.2.7)") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/pcookie?" + ccParam("max-age=60, private=\"Set-Cookie\"") + "&" +
                                hParam("Set-Cookie", "sid=1");
        auto first = get(strata.port(), url);
        CHECK(first.header("Set-Cookie") == "sid=1");  // the fetching client gets its cookie
        auto second = get(strata.port(), url);
        STRATA_CACHE_STATUS(second);
        if (cacheStatusHas(second, "hit")) {
            CHECK(second.headerCount("Set-Cookie") == 0);
        } else {
            MESSAGE("private=\"Set-Cookie\" responses are not stored (conservative)");
            CHECK(origin.requestCount(0, "/pcookie") == 2);
        }
    }
}
