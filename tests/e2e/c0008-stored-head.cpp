// What a hit looks like on the wire: framing recomputed (a chunked answer is served with
// Content-Length), one Age / Via / Cache-Status, hop-by-hop fields never stored, upstream Age
// honoured, targeted fields (RFC 9213) obeyed, and hits pipelined behind each other in order.
#include <thread>

#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("a chunked answer is stored and served with Content-Length") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/bytes/5000?chunked=1&" + ccParam("max-age=60");
        auto miss = get(strata.port(), url);
        STRATA_CACHE_STATUS(miss);
        REQUIRE(miss.status == 200);
        CHECK(miss.chunked);
        CHECK(cacheStatusHas(miss, "stored"));
        auto hit = get(strata.port(), url);
        STRATA_CACHE_STATUS(hit);
        STRATA_REQUIRE_RESPONSE(hit);
        CHECK(cacheStatusHas(hit, "hit"));
        CHECK_FALSE(hit.chunked);
        CHECK(hit.headerCount("Transfer-Encoding") == 0);
        CHECK(hit.header("Content-Length") == "5000");
        CHECK(hit.body == miss.body);
        CHECK(origin.requestCount(0, "/bytes/5000") == 1);
    }

    TEST_CASE("one Age, Via and Cache-Status; hop-by-hop and Connection-named fields not stored") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url =
            "/hop?" + ccParam("max-age=60") + "&" + hParam("Keep-Alive", "timeout=5") + "&" +
            hParam("Connection", "X-Hop") + "&" + hParam("X-Hop", "1") + "&" + hParam("Age", "30");
        auto miss = get(strata.port(), url);
        CHECK(miss.headerCount("Keep-Alive") == 0);
        CHECK(miss.headerCount("X-Hop") == 0);
        auto hit = get(strata.port(), url);
        STRATA_CACHE_STATUS(hit);
        REQUIRE(cacheStatusHas(hit, "hit"));
        CHECK(hit.headerCount("Age") == 1);
        CHECK(hit.headerCount("Via") == 1);
        CHECK(hit.headerCount("Cache-Status") == 1);
        CHECK(hit.headerCount("Keep-Alive") == 0);
        CHECK(hit.headerCount("X-Hop") == 0);
        CHECK(hit.headerCount("Connection") == 0);
        // RFC 9111 4.2.3: the upstream's Age counts; 30 of the 60 seconds are gone.
        CHECK(std::stoi(hit.header("Age")) >= 30);
        CHECK(cacheStatusTtl(hit) <= 30);
    }

    TEST_CASE("a 304 merge does not bring hop-by-hop fields into the stored head") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-hop?" + ccParam("max-age=1") + "&" + hParam("ETag", "\"h\"") +
                                "&" + hParam("Keep-Alive", "timeout=5");
        REQUIRE(get(strata.port(), url).status == 200);
        std::this_thread::sleep_for(1200ms);
        auto revalidated = get(strata.port(), url);
        REQUIRE(cacheStatusHas(revalidated, "fwd-status=304"));
        CHECK(revalidated.headerCount("Keep-Alive") == 0);
        auto hit = get(strata.port(), url);
        CHECK(cacheStatusHas(hit, "hit"));
        CHECK(hit.headerCount("Keep-Alive") == 0);
        CHECK(hit.headerCount("Content-Length") == 1);
    }

    TEST_CASE("s-maxage beats max-age; CDN-Cache-Control beats Cache-Control") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        struct Case {
            std::string path;
            std::string query;
            bool cached;
        };
        const std::vector<Case> cases = {
            {"/smax", ccParam("max-age=0, s-maxage=60"), true},
            {"/smax0", ccParam("max-age=60, s-maxage=0"), false},
            {"/cdn", ccParam("no-store") + "&" + hParam("CDN-Cache-Control", "max-age=60"), true},
            {"/cdn-ns", ccParam("max-age=60") + "&" + hParam("CDN-Cache-Control", "no-store"),
             false},
            {"/strata-cc",
             ccParam("max-age=60") + "&" + hParam("CDN-Cache-Control", "no-store") + "&" +
                 hParam("Strata-Cache-Control", "max-age=60"),
             true},
        };
        for (const auto& k : cases) {
            CAPTURE(k.path);
            const std::string url = k.path + "?" + k.query;
            auto r1 = get(strata.port(), url);
            CHECK(r1.headerCount("Strata-Cache-Control") == 0);  // targeted at strata only
            auto r2 = get(strata.port(), url);
            STRATA_CACHE_STATUS(r2);
            CHECK(cacheStatusHas(r2, "hit") == k.cached);
            CHECK(r2.headerCount("Strata-Cache-Control") == 0);
            CHECK(origin.requestCount(0, k.path) == (k.cached ? 1u : 2u));
        }
    }

    TEST_CASE("pipelined requests: hits and a miss answered in order on one connection") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/pipe?" + ccParam("max-age=60");
        RawClient c(strata.port());
        REQUIRE(c.send("GET " + url + " HTTP/1.1\r\nHost: t\r\n\r\n"));
        REQUIRE(c.readResponse().status == 200);
        std::string batch;
        for (int i = 0; i < 5; ++i) {
            batch += "GET " + url + " HTTP/1.1\r\nHost: t\r\n\r\n";
        }
        batch += "GET /pipe-miss HTTP/1.1\r\nHost: t\r\n\r\n";
        batch += "GET " + url + " HTTP/1.1\r\nHost: t\r\n\r\n";
        REQUIRE(c.send(batch));
        for (int i = 0; i < 7; ++i) {
            CAPTURE(i);
            auto r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
            CHECK(cacheStatusHas(r, "hit") == (i != 5));
            CHECK(r.body ==
                  (i == 5 ? "strata-origin 0: GET /pipe-miss\n" : "strata-origin 0: GET /pipe\n"));
        }
        CHECK(origin.requestCount(0, "/pipe") == 1);
    }

    TEST_CASE("HTTP/1.0 client: a hit keeps the connection only when asked to") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/h10?" + ccParam("max-age=60");
        REQUIRE(get(strata.port(), url).status == 200);
        {
            RawClient c(strata.port());
            REQUIRE(c.send("GET " + url + " HTTP/1.0\r\nHost: 127.0.0.1:" +
                           std::to_string(strata.port()) + "\r\n\r\n"));
            auto r = c.readResponse();
            STRATA_CACHE_STATUS(r);
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(cacheStatusHas(r, "hit"));
            CHECK(c.isClosed());
        }
        RawClient c(strata.port());
        for (int i = 0; i < 2; ++i) {
            REQUIRE(c.send("GET " + url + " HTTP/1.0\r\nHost: 127.0.0.1:" +
                           std::to_string(strata.port()) + "\r\nConnection: keep-alive\r\n\r\n"));
            auto r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(cacheStatusHas(r, "hit"));
            CHECK(r.header("Connection") == "keep-alive");
        }
    }

    TEST_CASE("after hit-for-pass, a cacheable answer for the URL is stored again") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        // No Cache-Control: the 500 has no lifetime (uncacheable: hit-for-pass); the 200 gets
        // the route's default_ttl.
        const std::string url = "/hfp";
        REQUIRE(get(origin.port(), "/__fail?status=500").status == 200);
        auto failed = get(strata.port(), url);
        CHECK(failed.status == 500);
        CHECK_FALSE(cacheStatusHas(failed, "stored"));
        REQUIRE(get(origin.port(), "/__fail?status=0").status == 200);
        auto r = get(strata.port(), url);
        STRATA_CACHE_STATUS(r);
        CHECK(r.status == 200);
        CHECK(cacheStatusHas(r, "stored"));
        CHECK(cacheStatusHas(get(strata.port(), url), "hit"));
        CHECK(origin.requestCount(0, "/hfp") == 2);
    }
}
