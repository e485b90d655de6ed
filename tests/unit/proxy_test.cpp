#include <doctest/doctest.h>

#include "strata/proxy/router.h"

using namespace strata;

namespace {

config::Route route(std::string host, std::string prefix, std::vector<std::string> methods = {}) {
    config::Route r;
    r.match.host = std::move(host);
    r.match.path_prefix = std::move(prefix);
    r.match.methods = std::move(methods);
    r.upstream = "app";
    return r;
}

}  // namespace

TEST_SUITE("proxy/router") {
    TEST_CASE("first matching route wins, in config order") {
        proxy::Router router({route("api.example.com", "/v1/"), route("", "/v1/"), route("", "/")});
        CHECK(router.match("api.example.com", "/v1/users", "GET") == 0);
        CHECK(router.match("www.example.com", "/v1/users", "GET") == 1);
        CHECK(router.match("www.example.com", "/static/a.css", "GET") == 2);
    }

    TEST_CASE("host match ignores the port and wildcards need a subdomain") {
        proxy::Router router({route("*.example.com", "/"), route("example.com", "/")});
        CHECK(router.match("a.example.com", "/", "GET") == 0);
        CHECK(router.match("a.b.example.com:8080", "/", "GET") == 0);
        CHECK(router.match("example.com", "/", "GET") == 1);
        CHECK(router.match("example.com:80", "/", "GET") == 1);
        CHECK(router.match("badexample.com", "/", "GET") == -1);
        CHECK(router.match("other.org", "/", "GET") == -1);
    }

    TEST_CASE("method lists restrict a route") {
        proxy::Router router({route("", "/", {"GET", "HEAD"}), route("", "/", {"POST"})});
        CHECK(router.match("h", "/x", "GET") == 0);
        CHECK(router.match("h", "/x", "HEAD") == 0);
        CHECK(router.match("h", "/x", "POST") == 1);
        CHECK(router.match("h", "/x", "DELETE") == -1);
    }

    TEST_CASE("path prefix is a plain prefix") {
        proxy::Router router({route("", "/api")});
        CHECK(router.match("h", "/api", "GET") == 0);
        CHECK(router.match("h", "/api/x", "GET") == 0);
        CHECK(router.match("h", "/ap", "GET") == -1);
    }

    TEST_CASE("hostWithoutPort handles IPv6 literals") {
        CHECK(proxy::hostWithoutPort("[::1]:8080") == "[::1]");
        CHECK(proxy::hostWithoutPort("[::1]") == "[::1]");
        CHECK(proxy::hostWithoutPort("example.com:81") == "example.com");
        CHECK(proxy::hostWithoutPort("example.com") == "example.com");
    }
}
