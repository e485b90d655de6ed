// RFC 5861 from the route or the response: stale-while-revalidate serves the stale copy at once
// and refreshes it with exactly one background request; stale-if-error serves the stale copy
// when the origin answers 5xx or is gone, never under must-revalidate.
#include <optional>
#include <thread>

#include "cache_support.h"

using namespace strata::test;

namespace {

void failOrigin(Origin& origin, int status) {
    REQUIRE(get(origin.port(), "/__fail?status=" + std::to_string(status)).status == 200);
}

double msSince(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("stale-while-revalidate directive: stale copy at once, one refresh, then new body") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-swr?" + ccParam("max-age=1, stale-while-revalidate=30");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-swr\n");
        waitPastOneSecondMaxAge();

        auto stale = get(strata.port(), url);
        STRATA_CACHE_STATUS(stale);
        CHECK(stale.status == 200);
        CHECK(stale.body == "seq 1 /seq-swr\n");
        CHECK(cacheStatusHas(stale, "hit"));
        CHECK(cacheStatusTtl(stale) <= 0);  // 0 at the edge: lifetime 1 s, age 1 s is stale
        CHECK(eventually([&] { return origin.requestCount(0, "/seq-swr") == 2; }, 5000ms));

        // The refresh stored the new answer: fresh, from the cache, no third origin request.
        bool refreshed =
            eventually([&] { return get(strata.port(), url).body == "seq 2 /seq-swr\n"; }, 5000ms);
        CHECK(refreshed);
        auto fresh = get(strata.port(), url);
        STRATA_CACHE_STATUS(fresh);
        CHECK(cacheStatusHas(fresh, "hit"));
        CHECK(cacheStatusTtl(fresh) > 0);
        CHECK(origin.requestCount(0, "/seq-swr") == 2);
    }

    TEST_CASE("stale-while-revalidate: many stale requests during a slow refresh, 1 refresh") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/delay/400?" + ccParam("max-age=1, stale-while-revalidate=30");
        REQUIRE(get(strata.port(), url).status == 200);
        waitPastOneSecondMaxAge();
        // Ten requests inside the 400 ms refresh: none waits for the origin.
        for (int i = 0; i < 10; ++i) {
            auto t0 = Clock::now();
            auto r = get(strata.port(), url);
            const double ms = msSince(t0);
            STRATA_CACHE_STATUS(r);
            CAPTURE(ms);
            CHECK(r.status == 200);
            CHECK(cacheStatusHas(r, "hit"));
            CHECK(ms < 200);
        }
        CHECK(eventually([&] { return origin.requestCount(0, "/delay/400") == 2; }, 5000ms));
        // Once refreshed the entry is fresh again: no more origin requests.
        CHECK(eventually([&] { return cacheStatusTtl(get(strata.port(), url)) > 0; }, 5000ms));
        CHECK(origin.requestCount(0, "/delay/400") == 2);
    }

    TEST_CASE("a background refresh is built like every forwarded request") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string query = ccParam("max-age=1, stale-while-revalidate=30");
        auto fetch = [&](const std::string& target, const std::string& extra) {
            RawClient c(strata.port());
            c.send("GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n");
            return c.readResponse();
        };
        const std::string forged = "X-Forwarded-Proto: forged\r\n";
        REQUIRE(fetch("/headers?" + query, forged).status == 200);
        waitPastOneSecondMaxAge();
        // The stale hit that starts the refresh comes in absolute form, with a forged field.
        Response stale = fetch("http://t/headers?" + query, forged);
        STRATA_CACHE_STATUS(stale);
        REQUIRE(cacheStatusHas(stale, "hit"));
        REQUIRE(eventually([&] { return origin.requestCount(0, "/headers") == 2; }, 5000ms));
        // The refreshed entry's body is the origin's echo of the refresh request itself.
        Response fresh;
        REQUIRE(eventually(
            [&] {
                fresh = fetch("/headers?" + query, "");
                return cacheStatusTtl(fresh) > 0;
            },
            5000ms));
        EchoedHead refresh(fresh.body);
        CAPTURE(fresh.body);
        CHECK(refresh.request_line == "GET /headers?" + query + " HTTP/1.1");
        CHECK(refresh.value("X-Forwarded-Proto") == "http");
        CHECK(refresh.value("X-Forwarded-For") == "127.0.0.1");
        CHECK(origin.requestCount(0, "/headers") == 2);
    }

    TEST_CASE("route stale_while_revalidate applies when the response names none") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {.stale_while_revalidate = "30s"}));
        const std::string url = "/seq-rswr?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-rswr\n");
        waitPastOneSecondMaxAge();
        auto stale = get(strata.port(), url);
        STRATA_CACHE_STATUS(stale);
        CHECK(stale.body == "seq 1 /seq-rswr\n");
        CHECK(cacheStatusHas(stale, "hit"));
        CHECK(eventually([&] { return origin.requestCount(0, "/seq-rswr") == 2; }, 5000ms));
        CHECK(eventually([&] { return get(strata.port(), url).body == "seq 2 /seq-rswr\n"; },
                         5000ms));
    }

    TEST_CASE("route stale_if_error: origin answering 503 -> stale copy served") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {.stale_if_error = "60s"}));
        const std::string url = "/seq-sie?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-sie\n");
        failOrigin(origin, 503);
        waitPastOneSecondMaxAge();
        for (int i = 0; i < 2; ++i) {
            auto r = get(strata.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 200);
            CHECK(r.body == "seq 1 /seq-sie\n");
            CHECK(cacheStatusHas(r, "fwd=stale"));
        }
        CHECK(origin.requestCount(0, "/seq-sie") == 3);  // 1 fetch + 2 failed revalidations
        // The origin recovers: the next request refetches and stores.
        failOrigin(origin, 0);
        auto r = get(strata.port(), url);
        STRATA_CACHE_STATUS(r);
        CHECK(r.body == "seq 4 /seq-sie\n");
        CHECK(cacheStatusHas(r, "stored"));
    }

    TEST_CASE("route stale_if_error: origin gone -> stale copy served") {
        std::optional<Origin> origin(std::in_place);
        Strata strata(cacheConfig(origin->serversYaml(), {.stale_if_error = "60s"}));
        const std::string url = "/seq-down?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-down\n");
        origin.reset();
        waitPastOneSecondMaxAge();
        for (int i = 0; i < 2; ++i) {
            auto r = get(strata.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 200);
            CHECK(r.body == "seq 1 /seq-down\n");
            CHECK(cacheStatusHas(r, "fwd=stale"));
        }
        // A URL never cached has nothing to fall back on.
        CHECK(get(strata.port(), "/never-cached").status == 502);
    }

    TEST_CASE("route stale_if_error: origin timing out -> stale copy served") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {.stale_if_error = "60s"}, "",
                                  "timeouts: {response: 300ms}"));
        const std::string url = "/seq-slow?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-slow\n");
        REQUIRE(get(origin.port(), "/__fail?status=hang").status == 200);
        waitPastOneSecondMaxAge();
        auto r = get(strata.port(), url);
        STRATA_CACHE_STATUS(r);
        CHECK(r.status == 200);
        CHECK(r.body == "seq 1 /seq-slow\n");
        CHECK(cacheStatusHas(r, "fwd=stale"));
    }

    TEST_CASE("stale-if-error directive serves stale; must-revalidate forbids it") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string with = "/seq-dsie?" + ccParam("max-age=1, stale-if-error=60");
        const std::string must =
            "/seq-must?" + ccParam("max-age=1, stale-if-error=60, must-revalidate");
        for (const auto& u : {with, must}) {
            REQUIRE(get(strata.port(), u).status == 200);
        }
        failOrigin(origin, 503);
        waitPastOneSecondMaxAge();

        auto r1 = get(strata.port(), with);
        STRATA_CACHE_STATUS(r1);
        CHECK(r1.status == 200);
        CHECK(r1.body == "seq 1 /seq-dsie\n");
        CHECK(cacheStatusHas(r1, "fwd=stale"));
        CHECK(cacheStatusHas(r1, "fwd-status=503"));
        auto r3 = get(strata.port(), must);
        STRATA_CACHE_STATUS(r3);
        CHECK(r3.status == 503);
    }

    // BUG (strata, reported to the lead): decideLookup() (src/cache/freshness.cpp, the
    // serve_stale_on_error line) computes staleness = age - lifetime in whole seconds, which is
    // 0 during the first second after expiry, and `staleness <= sie` holds for sie == 0: a
    // response with no stale-if-error at all (route 0s) is served stale on a 5xx or a dead
    // origin for that second. Needs a `sie > 0` guard like the stale-while-revalidate branch.
    TEST_CASE("no stale-if-error anywhere: the 503 is passed on") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string without = "/seq-nosie?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), without).status == 200);
        failOrigin(origin, 503);
        waitPastOneSecondMaxAge();
        auto r2 = get(strata.port(), without);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.status == 503);
        CHECK(r2.body == "failing with 503\n");
        CHECK(cacheStatusHas(r2, "fwd=stale"));
        CHECK(cacheStatusHas(r2, "fwd-status=503"));
    }

    TEST_CASE("request stale-if-error widens the window") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-rqsie?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).status == 200);
        failOrigin(origin, 500);
        waitPastOneSecondMaxAge();
        auto r = get(strata.port(), url, "Cache-Control: stale-if-error=60\r\n");
        STRATA_CACHE_STATUS(r);
        CHECK(r.status == 200);
        CHECK(r.body == "seq 1 /seq-rqsie\n");
    }
}
