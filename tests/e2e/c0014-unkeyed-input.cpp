// Cache poisoning through unkeyed input: what the origin may act on but the cache key does not
// contain never reaches the origin from the client on a cacheable route. X-Forwarded-Host is
// strata's own; override fields (X-Original-URL, X-HTTP-Method-Override, ...) are dropped
// unless the route allows them; a GET with a body is passed uncached.
#include "cache_support.h"

using namespace strata::test;

namespace {

// Host plain.test has no cache, everything else caches with the defaults; with `allow_route`,
// host allow.test caches and lets two override fields through.
std::string unkeyedConfig(const Origin& origin, bool allow_route = false) {
    return "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
           "upstreams: {app: {servers: " +
           origin.serversYaml() +
           "}}\n"
           "routes:\n" +
           (allow_route
                ? "  - match: {host: allow.test}\n"
                  "    upstream: app\n"
                  "    cache: {enabled: true, default_ttl: 60s,\n"
                  "            allow_override_headers: [x-original-url, X-HTTP-Method-Override]}\n"
                : "") +
           "  - match: {host: plain.test}\n"
           "    upstream: app\n"
           "  - match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    cache: {enabled: true, default_ttl: 60s}\n"
           "logging: {access_log: off}\n";
}

Response send(std::uint16_t port, const std::string& request_line, const std::string& host,
              const std::string& extra = "", const std::string& body = "") {
    RawClient c(port);
    std::string req = request_line + "\r\nHost: " + host + "\r\n" + extra;
    if (!body.empty()) {
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    c.send(req + "\r\n" + body);
    return c.readResponse();
}

const std::string kOverrides =
    "X-Original-URL: /admin\r\n"
    "x-http-method-override: DELETE\r\n"
    "X-Rewrite-URL: /admin\r\n"
    "X-Forwarded-Scheme: nothttps\r\n"
    "X-Host: evil.example\r\n";

}  // namespace

TEST_SUITE("e2e/unkeyed-input") {
    TEST_CASE("X-Forwarded-Host is the request's host, never the client's") {
        Origin origin;
        Strata strata(unkeyedConfig(origin));
        for (const char* host : {"t.test", "plain.test"}) {  // cacheable and uncached routes
            CAPTURE(host);
            Response r = send(strata.port(), "GET /headers?xfh HTTP/1.1", host,
                              "X-Forwarded-Host: evil.example\r\n");
            REQUIRE(r.status == 200);
            EchoedHead seen(r.body);
            CAPTURE(r.body);
            CHECK(seen.value("X-Forwarded-Host") == host);
        }
        // An absolute-form target names the host: the origin gets it as Host too, whatever
        // Host the client sent (RFC 9112 3.2.2), since that is what the answer is keyed by.
        Response r = send(strata.port(), "GET http://site.test/headers?abs HTTP/1.1",
                          "evil.example", "X-Forwarded-Host: evil.example\r\n");
        REQUIRE(r.status == 200);
        EchoedHead seen(r.body);
        CAPTURE(r.body);
        CHECK(seen.value("Host") == "site.test");
        CHECK(seen.value("X-Forwarded-Host") == "site.test");
    }

    TEST_CASE("override fields are dropped on cacheable routes; routes without a cache pass them") {
        Origin origin;
        Strata strata(unkeyedConfig(origin));
        SUBCASE("a cacheable route forwards none of them") {
            Response r = send(strata.port(), "GET /headers?ovr HTTP/1.1", "t.test", kOverrides);
            REQUIRE(r.status == 200);
            EchoedHead seen(r.body);
            CAPTURE(r.body);
            CHECK_FALSE(seen.has("X-Original-URL"));
            CHECK_FALSE(seen.has("X-HTTP-Method-Override"));
            CHECK_FALSE(seen.has("X-Rewrite-URL"));
            CHECK_FALSE(seen.has("X-Forwarded-Scheme"));
            CHECK_FALSE(seen.has("X-Host"));
            // A POST on that route is no different.
            Response post =
                send(strata.port(), "POST /headers HTTP/1.1", "t.test", kOverrides, "x");
            REQUIRE(post.status == 200);
            CHECK_FALSE(EchoedHead(post.body).has("X-HTTP-Method-Override"));
        }
        SUBCASE("a route without a cache passes them") {
            Response r = send(strata.port(), "GET /headers?ovr HTTP/1.1", "plain.test", kOverrides);
            REQUIRE(r.status == 200);
            EchoedHead seen(r.body);
            CAPTURE(r.body);
            CHECK(seen.value("X-Original-URL") == "/admin");
            CHECK(seen.value("X-HTTP-Method-Override") == "DELETE");
            CHECK(seen.value("X-Rewrite-URL") == "/admin");
            CHECK(seen.value("X-Host") == "evil.example");
        }
    }

    TEST_CASE("cache.allow_override_headers lets exactly the listed ones through") {
        Origin origin;
        Strata strata(unkeyedConfig(origin, /*allow_route=*/true));
        Response r = send(strata.port(), "GET /headers?ovr HTTP/1.1", "allow.test", kOverrides);
        REQUIRE(r.status == 200);
        STRATA_CACHE_STATUS(r);
        CHECK(cacheStatusHas(r, "stored"));  // a cacheable route indeed
        EchoedHead seen(r.body);
        CAPTURE(r.body);
        CHECK(seen.value("X-Original-URL") == "/admin");
        CHECK(seen.value("X-HTTP-Method-Override") == "DELETE");
        CHECK_FALSE(seen.has("X-Rewrite-URL"));
        CHECK_FALSE(seen.has("X-Forwarded-Scheme"));
        CHECK_FALSE(seen.has("X-Host"));
        // The other routes are unchanged by it.
        Response other = send(strata.port(), "GET /headers?ovr HTTP/1.1", "t.test", kOverrides);
        REQUIRE(other.status == 200);
        CHECK_FALSE(EchoedHead(other.body).has("X-Original-URL"));
    }

    TEST_CASE("a GET with a body is passed uncached and its answer never stored") {
        Origin origin;
        Strata strata(unkeyedConfig(origin));
        Response with_body =
            send(strata.port(), "GET /echo?gb HTTP/1.1", "t.test", "", "poisoned body");
        STRATA_CACHE_STATUS(with_body);
        REQUIRE(with_body.status == 200);
        CHECK(with_body.body == "poisoned body");  // the origin got the body
        CHECK(cacheStatusHas(with_body, "fwd=request"));
        CHECK(cacheStatusHas(with_body, "detail=request-body"));
        CHECK_FALSE(cacheStatusHas(with_body, "stored"));
        // The same URL without a body is a miss, not the body request's answer...
        Response plain = send(strata.port(), "GET /echo?gb HTTP/1.1", "t.test");
        STRATA_CACHE_STATUS(plain);
        REQUIRE(plain.status == 200);
        CHECK(cacheStatusHas(plain, "fwd=uri-miss"));
        CHECK(plain.body.empty());
        // ...which is stored as usual, while a body request still goes around it.
        Response hit = send(strata.port(), "GET /echo?gb HTTP/1.1", "t.test");
        STRATA_CACHE_STATUS(hit);
        CHECK(cacheStatusHas(hit, "hit"));
        CHECK(hit.body.empty());
        Response again = send(strata.port(), "GET /echo?gb HTTP/1.1", "t.test", "", "again");
        STRATA_CACHE_STATUS(again);
        CHECK(again.body == "again");
        CHECK(cacheStatusHas(again, "detail=request-body"));
        CHECK(origin.totalCount("/echo") == 3);
    }

    TEST_CASE("--check: allow_override_headers takes only override field names") {
        const std::string head =
            "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
            "upstreams: {app: {servers: [\"127.0.0.1:8000\"]}}\n"
            "routes:\n"
            "  - upstream: app\n"
            "    cache:\n"
            "      enabled: true\n";
        CheckResult unknown =
            Strata::check(head + "      allow_override_headers: [X-Forwarded-Prefix, X-Cookie]\n");
        CAPTURE(unknown.output);
        CHECK(unknown.exit_code == 78);
        CHECK(unknown.output.find(unknown.file +
                                  ":7:52: routes[0].cache.allow_override_headers[1]: \"X-Cookie\" "
                                  "is not an override field strata drops") != std::string::npos);
        CheckResult invalid = Strata::check(head + "      allow_override_headers: [\"X Host\"]\n");
        CAPTURE(invalid.output);
        CHECK(invalid.exit_code == 78);
        CHECK(invalid.output.find(invalid.file +
                                  ":7:32: routes[0].cache.allow_override_headers[0]: invalid "
                                  "header name \"X Host\"") != std::string::npos);
        CheckResult good = Strata::check(head + "      allow_override_headers: [x-host]\n");
        CAPTURE(good.output);
        CHECK(good.exit_code == 0);
    }
}
