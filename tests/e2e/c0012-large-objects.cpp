// Objects larger than one L1 shard's share (cache.l1.max_bytes / 32) are stored while they fit
// the whole L1 (issue 10 item 12); one that cannot fit is answered without "stored" and counted
// in strata_cache_l1_rejected_total; a reload applies a new cache.l1.max_bytes (issue 15).
#include <csignal>
#include <string>

#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("a 9 MB object with the default 256 MiB L1 is stored; the second request is a hit") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/bytes/9000000?" + ccParam("max-age=60");
        auto first = get(strata.port(), url);
        STRATA_CACHE_STATUS(first);
        CHECK(first.status == 200);
        CHECK(first.body.size() == 9000000);
        CHECK(cacheStatusHas(first, "fwd=uri-miss"));
        CHECK(cacheStatusHas(first, "stored"));
        auto second = get(strata.port(), url);
        STRATA_CACHE_STATUS(second);
        CHECK(second.status == 200);
        CHECK(second.body == first.body);
        CHECK(cacheStatusHas(second, "hit"));
        CHECK(origin.requestCount(0, "/bytes/9000000") == 1);
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_cache_l1_rejected_total", {"reason=\"too_large\""}) == 0);
        CHECK(metric(admin, "strata_cache_l1_bytes") > 9000000);
    }

    TEST_CASE("an object larger than cache.l1.max_bytes is not \"stored\" and is counted") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml(), {}, "cache: {l1: {max_bytes: 1MiB}}\n"));
        const std::string url = "/bytes/2000000?" + ccParam("max-age=60");
        for (int i = 1; i <= 2; ++i) {
            auto r = get(strata.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 200);
            CHECK(r.body.size() == 2000000);
            CHECK(cacheStatusHas(r, "fwd=uri-miss"));
            CHECK_FALSE(cacheStatusHas(r, "stored"));
            CHECK_FALSE(cacheStatusHas(r, "hit"));
        }
        CHECK(origin.requestCount(0, "/bytes/2000000") == 2);
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_cache_l1_rejected_total", {"reason=\"too_large\""}) >= 1);
    }

    TEST_CASE("reload with a smaller cache.l1.max_bytes evicts down to it and keeps what fits") {
        Origin origin;
        const std::string servers = origin.serversYaml();
        Strata strata(cacheConfig(servers, {}, "cache: {l1: {max_bytes: 64MiB}}\n"));
        const auto admin = strata.port("admin");
        for (int i = 0; i < 8; ++i) {
            auto r = get(strata.port(),
                         "/bytes/1000000?n=" + std::to_string(i) + "&" + ccParam("max-age=60"));
            REQUIRE(cacheStatusHas(r, "stored"));
        }
        REQUIRE(metric(admin, "strata_cache_l1_bytes") > 8000000);
        writeFile(strata.configPath(),
                  cacheConfig(servers, {}, "cache: {l1: {max_bytes: 3MiB}}\n"));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(admin, "/status").body.find("\"version\":2,") != std::string::npos;
        }));
        const double held = metric(admin, "strata_cache_l1_bytes");
        CHECK(held <= 3 * 1024 * 1024);
        CHECK(held > 1000000);  // what fits stays
        CHECK(metric(admin, "strata_cache_l1_objects") >= 1);
        CHECK(get(admin, "/status").body.find("\"max_bytes\":3145728") != std::string::npos);
        // The new budget holds for later stores too.
        for (int i = 8; i < 12; ++i) {
            get(strata.port(),
                "/bytes/1000000?n=" + std::to_string(i) + "&" + ccParam("max-age=60"));
            CHECK(metric(admin, "strata_cache_l1_bytes") <= 3 * 1024 * 1024);
        }
    }
}
