// RFC 9111 4.4: a non-error answer to an unsafe method invalidates the target URI and the
// Location / Content-Location URIs of the same host; an error answer invalidates nothing.
#include "cache_support.h"

using namespace strata::test;

namespace {
bool isHit(std::uint16_t port, const std::string& url) {
    return cacheStatusHas(get(port, url), "hit");
}
}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("POST, PUT, DELETE to a cached URL: the next GET goes to the origin") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        for (std::string method : {"POST", "PUT", "DELETE"}) {
            CAPTURE(method);
            const std::string path = "/inv-" + method;
            const std::string url = path + "?" + ccParam("max-age=60");
            get(strata.port(), url);
            REQUIRE(isHit(strata.port(), url));
            auto u = request(strata.port(), method, url, "", method == "DELETE" ? "" : "body");
            STRATA_CACHE_STATUS(u);
            CHECK(u.status == 200);
            CHECK(cacheStatusHas(u, "fwd=method"));
            auto after = get(strata.port(), url);
            STRATA_CACHE_STATUS(after);
            CHECK(cacheStatusHas(after, "fwd=uri-miss"));
            CHECK(origin.requestCount(0, path) == 3);  // GET, unsafe, GET
            CHECK(isHit(strata.port(), url));          // stored again
        }
    }

    TEST_CASE("the Location and Content-Location URIs of the same host are invalidated") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const auto port = strata.port();
        const std::string host = "127.0.0.1:" + std::to_string(port);  // request()'s Host
        // Plain 200s are stored for the route's default_ttl.
        for (const char* p : {"/loc-rel", "/loc-abs", "/cloc", "/loc-other-host"}) {
            get(port, p);
            REQUIRE(isHit(port, p));
        }
        request(port, "POST", "/create?" + hParam("Location", "/loc-rel"), "", "x");
        request(port, "POST", "/create?" + hParam("Location", "http://" + host + "/loc-abs"), "",
                "x");
        request(port, "POST", "/create?" + hParam("Content-Location", "/cloc"), "", "x");
        request(port, "POST", "/create?" + hParam("Location", "http://elsewhere/loc-other-host"),
                "", "x");
        CHECK_FALSE(isHit(port, "/loc-rel"));
        CHECK_FALSE(isHit(port, "/loc-abs"));
        CHECK_FALSE(isHit(port, "/cloc"));
        CHECK(isHit(port, "/loc-other-host"));
    }

    TEST_CASE("an error answer to an unsafe method invalidates nothing") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/inv-err?" + ccParam("max-age=60");
        get(strata.port(), url);
        REQUIRE(get(origin.port(), "/__fail?status=500").status == 200);
        CHECK(request(strata.port(), "POST", url, "", "x").status == 500);
        REQUIRE(get(origin.port(), "/__fail?status=0").status == 200);
        CHECK(isHit(strata.port(), url));
        CHECK(origin.requestCount(0, "/inv-err") == 2);
    }

    TEST_CASE("invalidation removes every Vary variant of the URL") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url =
            "/headers?" + ccParam("max-age=60") + "&" + hParam("Vary", "Accept-Encoding");
        get(strata.port(), url, "Accept-Encoding: gzip\r\n");
        get(strata.port(), url, "Accept-Encoding: br\r\n");
        REQUIRE(cacheStatusHas(get(strata.port(), url, "Accept-Encoding: br\r\n"), "hit"));
        request(strata.port(), "POST", url, "", "x");
        CHECK_FALSE(cacheStatusHas(get(strata.port(), url, "Accept-Encoding: gzip\r\n"), "hit"));
        CHECK_FALSE(cacheStatusHas(get(strata.port(), url, "Accept-Encoding: br\r\n"), "hit"));
    }
}
