// Validation (RFC 9111 4.3): a stale entry is revalidated with its validators and a 304 freshens
// it; client conditionals are answered from the cache; response no-cache revalidates each use.
// strata-origin's /seq body counts the requests for its path, so "seq 1" after a revalidation
// proves the stored body was served, not a new one.
#include <thread>

#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("stale + ETag: revalidated with If-None-Match, 304 freshens the stored body") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url =
            "/seq-etag?" + ccParam("max-age=1") + "&" + hParam("ETag", "\"v1\"");
        auto r1 = get(strata.port(), url);
        REQUIRE(r1.status == 200);
        REQUIRE(r1.body == "seq 1 /seq-etag\n");
        auto hit = get(strata.port(), url);
        CHECK(cacheStatusHas(hit, "hit"));

        waitPastOneSecondMaxAge();
        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.status == 200);
        CHECK(r2.body == "seq 1 /seq-etag\n");  // the origin answered 304, not a new body
        CHECK(r2.header("ETag") == "\"v1\"");
        CHECK(cacheStatusHas(r2, "fwd=stale"));
        CHECK(cacheStatusHas(r2, "fwd-status=304"));
        CHECK(origin.requestCount(0, "/seq-etag") == 2);

        // Freshened: served from the cache again without the origin.
        auto r3 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r3);
        CHECK(cacheStatusHas(r3, "hit"));
        CHECK(r3.body == "seq 1 /seq-etag\n");
        CHECK(origin.requestCount(0, "/seq-etag") == 2);
    }

    TEST_CASE("stale + Last-Modified: revalidated with If-Modified-Since") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-lm?" + ccParam("max-age=1") + "&" +
                                hParam("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-lm\n");
        waitPastOneSecondMaxAge();
        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.body == "seq 1 /seq-lm\n");
        CHECK(cacheStatusHas(r2, "fwd-status=304"));
        CHECK(origin.requestCount(0, "/seq-lm") == 2);
    }

    TEST_CASE("stale without validators: refetched in full and stored again") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-plain?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-plain\n");
        waitPastOneSecondMaxAge();
        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(r2.body == "seq 2 /seq-plain\n");
        CHECK(cacheStatusHas(r2, "stored"));
        auto r3 = get(strata.port(), url);
        CHECK(r3.body == "seq 2 /seq-plain\n");
        CHECK(cacheStatusHas(r3, "hit"));
    }

    TEST_CASE("client If-None-Match / If-Modified-Since answered 304 from the cache") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/cond?" + ccParam("max-age=60") + "&" + hParam("ETag", "\"v1\"") +
                                "&" + hParam("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT");
        REQUIRE(get(strata.port(), url).status == 200);

        auto inm = get(strata.port(), url, "If-None-Match: \"v1\"\r\n");
        STRATA_CACHE_STATUS(inm);
        CHECK(inm.status == 304);
        CHECK(inm.body.empty());
        CHECK(inm.header("ETag") == "\"v1\"");
        CHECK(inm.hasHeader("Age"));
        CHECK(cacheStatusHas(inm, "hit"));

        auto weak = get(strata.port(), url, "If-None-Match: \"x\", W/\"v1\"\r\n");
        CHECK(weak.status == 304);

        auto other = get(strata.port(), url, "If-None-Match: \"v2\"\r\n");
        CHECK(other.status == 200);
        CHECK(cacheStatusHas(other, "hit"));

        auto ims = get(strata.port(), url, "If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n");
        CHECK(ims.status == 304);
        auto older =
            get(strata.port(), url, "If-Modified-Since: Sun, 31 Dec 2023 00:00:00 GMT\r\n");
        CHECK(older.status == 200);
        CHECK(origin.requestCount(0, "/cond") == 1);
    }

    TEST_CASE("response no-cache: stored, but every use is revalidated") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-nc?" + ccParam("no-cache") + "&" + hParam("ETag", "\"n1\"");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-nc\n");
        for (int i = 0; i < 2; ++i) {
            auto r = get(strata.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(r.body == "seq 1 /seq-nc\n");
            CHECK(cacheStatusHas(r, "fwd-status=304"));
        }
        CHECK(origin.requestCount(0, "/seq-nc") == 3);
    }

    TEST_CASE("a 304 replaces the stored fields it carries and restarts the age") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        // strata-origin's /seq answers (304s too) carry X-Seq: <request number>.
        const std::string url = "/seq-upd?" + ccParam("max-age=1") + "&" + hParam("ETag", "\"u\"");
        auto r1 = get(strata.port(), url);
        REQUIRE(r1.header("X-Seq") == "1");
        waitPastOneSecondMaxAge();
        auto r2 = get(strata.port(), url);
        STRATA_CACHE_STATUS(r2);
        CHECK(cacheStatusHas(r2, "fwd-status=304"));
        CHECK(r2.body == "seq 1 /seq-upd\n");
        CHECK(r2.header("X-Seq") == "2");
        CHECK(r2.headerCount("X-Seq") == 1);
        auto again = get(strata.port(), url);
        STRATA_CACHE_STATUS(again);
        CHECK(cacheStatusHas(again, "hit"));
        CHECK(again.header("X-Seq") == "2");
        CHECK(again.header("Age") == "0");
    }
}
