// Request Cache-Control (RFC 9111 5.2.1): no-cache and max-age=0 force a revalidation,
// min-fresh and max-stale move the freshness bar, only-if-cached never forwards.
#include <thread>

#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("request no-cache and Pragma: no-cache revalidate a fresh entry") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-rq?" + ccParam("max-age=60") + "&" + hParam("ETag", "\"r\"");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-rq\n");
        std::uint64_t expected = 1;
        // (max-age=0 is not here: an entry of age 0 satisfies it, RFC 9111 5.2.1.1.)
        for (std::string field : {"Cache-Control: no-cache\r\n", "Pragma: no-cache\r\n"}) {
            CAPTURE(field);
            auto r = get(strata.port(), url, field);
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 200);
            CHECK(r.body == "seq 1 /seq-rq\n");  // 304 from the origin
            CHECK(cacheStatusHas(r, "fwd-status=304"));
            CHECK(origin.requestCount(0, "/seq-rq") == ++expected);
        }
        CHECK(cacheStatusHas(get(strata.port(), url), "hit"));
        CHECK(origin.requestCount(0, "/seq-rq") == expected);
    }

    // Was a bug (fixed): Transaction::lookup() (src/proxy/transaction.cpp, case
    // Usability::Revalidate) always says "fwd=stale"; RFC 9211 2.2 calls a fresh stored response
    // that the request's directives (no-cache, max-age, min-fresh) kept from use "fwd=request".
    TEST_CASE("Cache-Status: a fresh entry revalidated for request no-cache is fwd=request") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-fr?" + ccParam("max-age=60") + "&" + hParam("ETag", "\"r\"");
        REQUIRE(get(strata.port(), url).status == 200);
        auto r = get(strata.port(), url, "Cache-Control: no-cache\r\n");
        STRATA_CACHE_STATUS(r);
        CHECK(cacheStatusHas(r, "fwd=request"));
        CHECK(cacheStatusHas(r, "fwd-status=304"));
    }

    TEST_CASE("only-if-cached: 504 on a cold URL, the stored answer on a cached one") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/oic?" + ccParam("max-age=60");
        auto cold = get(strata.port(), url, "Cache-Control: only-if-cached\r\n");
        CHECK(cold.status == 504);
        // Every answer carries one (RFC 9211), saying what the cache found: nothing.
        CHECK(cold.header("Cache-Status") == "strata; fwd=uri-miss");
        CHECK(origin.requestCount(0, "/oic") == 0);

        REQUIRE(get(strata.port(), url).status == 200);
        auto warm = get(strata.port(), url, "Cache-Control: only-if-cached\r\n");
        STRATA_CACHE_STATUS(warm);
        CHECK(warm.status == 200);
        CHECK(cacheStatusHas(warm, "hit"));
        CHECK(origin.requestCount(0, "/oic") == 1);
    }

    TEST_CASE("only-if-cached on a stale entry: 504, no origin request") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/oic-stale?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).status == 200);
        std::this_thread::sleep_for(1200ms);
        auto r = get(strata.port(), url, "Cache-Control: only-if-cached\r\n");
        CHECK(r.status == 504);
        CHECK(r.header("Cache-Status") == "strata; fwd=stale");  // found, but too old to use
        CHECK(origin.requestCount(0, "/oic-stale") == 1);
    }

    TEST_CASE("min-fresh beyond the remaining lifetime forwards; max-stale accepts stale") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/seq-mf?" + ccParam("max-age=1");
        REQUIRE(get(strata.port(), url).body == "seq 1 /seq-mf\n");
        auto mf = get(strata.port(), url, "Cache-Control: min-fresh=30\r\n");
        STRATA_CACHE_STATUS(mf);
        CHECK_FALSE(cacheStatusHas(mf, "hit"));
        CHECK(mf.body == "seq 2 /seq-mf\n");

        std::this_thread::sleep_for(1200ms);
        auto ms = get(strata.port(), url, "Cache-Control: max-stale=60\r\n");
        STRATA_CACHE_STATUS(ms);
        CHECK(cacheStatusHas(ms, "hit"));
        CHECK(ms.body == "seq 2 /seq-mf\n");
        CHECK(origin.requestCount(0, "/seq-mf") == 2);
    }
}
