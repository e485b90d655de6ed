// L2 as complete as L1 (issue 14): with no L1 at all (cache.l1.max_bytes 0), every answer comes
// from memcached, and a stale or no-cache object there is refreshed in the background
// (stale-while-revalidate) or revalidated with its validators, as an L1 entry would be. A 304
// updates the L2 copy; objects with a validator stay in L2 for cache.l2.keep past their stale
// windows; only-if-cached is answered from L2.
#include "cache_support.h"

using namespace strata::test;

namespace {

// Caching on for the catch-all route, no L1, L2 over `memcached`.
std::string l2OnlyConfig(const Origin& origin, const Memcached& memcached,
                         const std::string& l2_extra = "") {
    return cacheConfig(origin.serversYaml(), {},
                       "cache:\n"
                       "  l1: {max_bytes: 0}\n"
                       "  l2:\n"
                       "    servers: [\"" +
                           memcached.addr() +
                           "\"]\n"
                           "    timeout: 500ms\n" +
                           l2_extra);
}

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("L2 only: a hit comes from memcached (the L1 holds nothing)") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        REQUIRE(get(strata.port(), "/seq-l2").body == "seq 1 /seq-l2\n");
        REQUIRE(waitForL2Sets(admin, 1));
        auto hit = get(strata.port(), "/seq-l2");
        STRATA_CACHE_STATUS(hit);
        CHECK(hit.body == "seq 1 /seq-l2\n");
        CHECK(cacheStatusHas(hit, "detail=l2"));
        CHECK(origin.requestCount(0, "/seq-l2") == 1);
    }

    TEST_CASE("L2 only: stale-while-revalidate serves the stale copy at once, refreshes once") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        const std::string url = "/seq-swr?" + ccParam("max-age=1, stale-while-revalidate=60");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-swr\n");
        REQUIRE(waitForL2Sets(admin, 1));
        waitPastOneSecondMaxAge();

        // A stale request is answered from L2 at once, and one refresh runs.
        auto stale = get(strata.port(), url);
        STRATA_CACHE_STATUS(stale);
        CHECK(stale.status == 200);
        CHECK(stale.body == "seq 1 /seq-swr\n");
        CHECK(cacheStatusHas(stale, "hit"));
        CHECK(cacheStatusHas(stale, "detail=l2"));
        CHECK(cacheStatusTtl(stale) <= 0);
        CHECK(eventually([&] { return origin.requestCount(0, "/seq-swr") == 2; }, 5000ms));
        CHECK(l2Lookups(admin, "stale") >= 1);
        // Requests during the refresh are served the stale copy; wait for its end (its L2 write;
        // a lookup before the write lands is answered from the entry being written).
        REQUIRE(waitForL2Sets(admin, 2));

        // The refresh wrote the new answer to L2: fresh, no third origin request.
        auto fresh = get(strata.port(), url);
        STRATA_CACHE_STATUS(fresh);
        CHECK(fresh.body == "seq 2 /seq-swr\n");
        CHECK(cacheStatusHas(fresh, "hit"));
        CHECK(cacheStatusTtl(fresh) > 0);
        CHECK(origin.requestCount(0, "/seq-swr") == 2);
    }

    TEST_CASE("L2 only: requests during a stale-while-revalidate refresh get the stale copy") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        const std::string url = "/delay/800?" + ccParam("max-age=1, stale-while-revalidate=60");
        REQUIRE(get(strata.port(), url).status == 200);
        REQUIRE(waitForL2Sets(admin, 1));
        waitPastOneSecondMaxAge();
        REQUIRE(get(strata.port(), url).status == 200);  // stale; starts the 800 ms refresh
        // With no L1 copy, the refresh's coalescing flight carries the stale entry: a request
        // now is answered with it at once, not after the refresh.
        const auto start = Clock::now();
        auto during = get(strata.port(), url);
        const auto ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        STRATA_CACHE_STATUS(during);
        CHECK(during.status == 200);
        CHECK(cacheStatusHas(during, "hit"));
        CHECK(cacheStatusTtl(during) <= 0);
        CHECK(ms < 400 * kSlow);
        // One refresh in all (the origin counts it once its 800 ms answer is sent).
        CHECK(eventually([&] { return origin.requestCount(0, "/delay/800") == 2; }, 5000ms));
        CHECK(origin.requestCount(0, "/delay/800") == 2);
    }

    TEST_CASE("L2 only: a stale object with an ETag is revalidated, the 304 updates L2") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        const std::string url =
            "/seq-etag?" + ccParam("max-age=1") + "&" + hParam("ETag", "\"v1\"");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-etag\n");
        REQUIRE(waitForL2Sets(admin, 1));
        // Past max-age and then some: without `keep` memcached would have expired it (its
        // expiration was the 1 s of freshness), and the origin would send the body again.
        std::this_thread::sleep_for(2500ms);

        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.status == 200);
        CHECK(r2.body == "seq 1 /seq-etag\n");  // the origin answered 304, not a new body
        CHECK(r2.header("ETag") == "\"v1\"");
        CHECK(cacheStatusHas(r2, "fwd=stale"));
        CHECK(cacheStatusHas(r2, "fwd-status=304"));
        CHECK(origin.requestCount(0, "/seq-etag") == 2);

        // The 304 freshened the L2 copy: a hit again, without the origin.
        REQUIRE(waitForL2Sets(admin, 2));
        auto r3 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r3);
        CHECK(cacheStatusHas(r3, "hit"));
        CHECK(cacheStatusHas(r3, "detail=l2"));
        CHECK(r3.body == "seq 1 /seq-etag\n");
        CHECK(origin.requestCount(0, "/seq-etag") == 2);
    }

    TEST_CASE("L2 only: Last-Modified revalidates with If-Modified-Since") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        const std::string url = "/seq-lm?" + ccParam("max-age=1") + "&" +
                                hParam("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-lm\n");
        REQUIRE(waitForL2Sets(admin, 1));
        waitPastOneSecondMaxAge();
        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.body == "seq 1 /seq-lm\n");
        CHECK(cacheStatusHas(r2, "fwd-status=304"));
        CHECK(origin.requestCount(0, "/seq-lm") == 2);
    }

    TEST_CASE("L2 only: a no-cache object is revalidated on every use, never refetched") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        const std::string url = "/seq-nc?" + ccParam("no-cache") + "&" + hParam("ETag", "\"n1\"");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-nc\n");
        for (int i = 0; i < 2; ++i) {
            REQUIRE(waitForL2Sets(admin, 1 + i));
            auto r = get(strata.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(r.body == "seq 1 /seq-nc\n");
            CHECK(cacheStatusHas(r, "fwd-status=304"));
        }
        CHECK(origin.requestCount(0, "/seq-nc") == 3);
    }

    TEST_CASE("cache.l2.keep 0: a stale object leaves L2 with its freshness, refetched in full") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached, "    keep: 0s\n"));
        const std::uint16_t admin = strata.port("admin");
        const std::string url =
            "/seq-keep0?" + ccParam("max-age=1") + "&" + hParam("ETag", "\"k1\"");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-keep0\n");
        REQUIRE(waitForL2Sets(admin, 1));
        std::this_thread::sleep_for(2500ms);  // memcached's 1 s expiration has passed
        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.body == "seq 2 /seq-keep0\n");
        CHECK(cacheStatusHas(r2, "fwd=uri-miss"));
    }

    TEST_CASE("L2 only: only-if-cached is answered from L2, 504 when L2 has nothing") {
        Origin origin;
        Memcached memcached;
        Strata strata(l2OnlyConfig(origin, memcached));
        const std::uint16_t admin = strata.port("admin");
        REQUIRE(get(strata.port(), "/seq-oic").body == "seq 1 /seq-oic\n");
        REQUIRE(waitForL2Sets(admin, 1));
        auto hit = get(strata.port(), "/seq-oic", "Cache-Control: only-if-cached\r\n");
        STRATA_CACHE_STATUS(hit);
        CHECK(hit.status == 200);
        CHECK(hit.body == "seq 1 /seq-oic\n");
        auto none = get(strata.port(), "/seq-oic-absent", "Cache-Control: only-if-cached\r\n");
        CHECK(none.status == 504);
        CHECK(origin.requestCount(0, "/seq-oic") == 1);
        CHECK(origin.requestCount(0, "/seq-oic-absent") == 0);
    }
}
