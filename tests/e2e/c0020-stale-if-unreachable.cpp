// Serving stale while the origin cannot be reached (issue #13, RFC 9111 4.2.4 "disconnected"):
// routes[].cache.stale_if_unreachable, 5m unless set, lets a stored answer stand in while every
// connect fails, marked `fwd=stale; detail=origin-unreachable` and counted; never past the
// grace, never when the stored answer says must-revalidate / proxy-revalidate / s-maxage /
// no-cache or the client asks for a validated answer, and never for an origin that answers (a
// 500 is passed on unless stale-if-error allows).
#include "cache_support.h"

using namespace strata::test;

namespace {

// Stored already stale: the origin says it is 100 s old and fresh for 1 s. A validator makes
// it worth keeping past freshness (and makes the next request a revalidation).
const std::string kStale = "cc=max-age=1&h=Age:100&h=ETag:%22v1%22";

Response stored(Strata& strata, const std::string& path) {
    Response r = get(strata.port(), path);
    REQUIRE(r.status == 200);
    REQUIRE(cacheStatusHas(r, "stored"));
    return r;
}

double staleServed(std::uint16_t admin, const std::string& reason) {
    return metric(admin, "strata_cache_stale_served_total", {"reason=\"" + reason + "\""});
}

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("by default a stale answer stands in while the origin is down, and is counted") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const auto admin = strata.port("admin");
        const Response first = stored(strata, "/page?" + kStale);
        // A request that must revalidate, origin reachable: the origin is asked (a 304 here).
        Response revalidated = get(strata.port(), "/page?" + kStale);
        CHECK(revalidated.status == 200);
        CHECK(cacheStatusHas(revalidated, "fwd=stale"));
        CHECK_FALSE(cacheStatusHas(revalidated, "detail=origin-unreachable"));
        const auto asked = origin.requestCount(0, "/page");
        CHECK(asked == 2);

        origin.process().stop();
        Response r = get(strata.port(), "/page?" + kStale);
        STRATA_CACHE_STATUS(r);
        CHECK(r.status == 200);
        CHECK(r.body == first.body);
        CHECK(cacheStatusHas(r, "fwd=stale"));
        CHECK(cacheStatusHas(r, "detail=origin-unreachable"));
        CHECK(staleServed(admin, "unreachable") == 1);
        CHECK(staleServed(admin, "error") == 0);
        // Nothing stored under another URL: the usual 502.
        CHECK(get(strata.port(), "/other").status == 502);
    }

    TEST_CASE("never when the stored answer or the request demands validation") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        auto strict = [](const std::string& directive) {
            return "/strict?cc=max-age=1," + directive + "&h=Age:100&h=ETag:%22v1%22";
        };
        for (const std::string directive :
             {"must-revalidate", "proxy-revalidate", "s-maxage=1", "no-cache"}) {
            stored(strata, strict(directive));
        }
        stored(strata, "/plain?" + kStale);
        origin.process().stop();
        for (const std::string directive :
             {"must-revalidate", "proxy-revalidate", "s-maxage=1", "no-cache"}) {
            INFO(directive);
            CHECK(get(strata.port(), strict(directive)).status == 502);
        }
        RawClient c(strata.port());
        for (const std::string cc : {"no-cache", "max-age=0"}) {
            INFO(cc);
            REQUIRE(c.send("GET /plain?" + kStale + " HTTP/1.1\r\nHost: t\r\nCache-Control: " + cc +
                           "\r\n\r\n"));
            CHECK(c.readResponse().status == 502);
        }
        // The same object without the client's demand: served stale.
        CHECK(get(strata.port(), "/plain?" + kStale).status == 200);
    }

    TEST_CASE("not past the grace, and not at all with stale_if_unreachable: 0s") {
        Origin origin;
        RouteCacheYaml short_grace;
        short_grace.stale_if_unreachable = "30s";  // the object is 99 s past its freshness
        Strata strata(cacheConfig(origin.serversYaml(), short_grace));
        stored(strata, "/old?" + kStale);
        stored(strata, "/recent?cc=max-age=1&h=Age:20&h=ETag:%22v1%22");
        origin.process().stop();
        CHECK(get(strata.port(), "/old?" + kStale).status == 502);
        CHECK(get(strata.port(), "/recent?cc=max-age=1&h=Age:20&h=ETag:%22v1%22").status == 200);

        Origin origin2;
        RouteCacheYaml off;
        off.stale_if_unreachable = "0s";
        Strata strata2(cacheConfig(origin2.serversYaml(), off));
        stored(strata2, "/page?" + kStale);
        origin2.process().stop();
        CHECK(get(strata2.port(), "/page?" + kStale).status == 502);
    }

    TEST_CASE("an origin that answers 500 is not unreachable: the 500 goes to the client") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        stored(strata, "/page?" + kStale);
        REQUIRE(get(origin.port(), "/__fail?status=500").status == 200);
        Response r = get(strata.port(), "/page?" + kStale);
        CHECK(r.status == 500);
        CHECK(staleServed(strata.port("admin"), "unreachable") == 0);
    }
}
