// Route matching through the real binary (issue #12): host lists, exact and regex paths, request
// headers, query parameters, listeners and `not`, each choosing between two upstreams; a bad
// regular expression is a --check error with its position.
#include "e2e.h"

using namespace strata::test;

namespace {

// Upstream `a` is origin server 0, `b` server 1; every route below sends its match to `b`, and
// the catch-all last route to `a`.
std::string routingConfig(const Origin& origin) {
    return "listeners:\n"
           "  - {name: public, bind: \"127.0.0.1:0\"}\n"
           "  - {name: internal, bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  a: {servers: [\"" +
           origin.addr(0) +
           "\"]}\n"
           "  b: {servers: [\"" +
           origin.addr(1) +
           "\"]}\n"
           "routes:\n"
           "  - {match: {path: /exact}, upstream: b}\n"
           "  - {match: {path_regex: \"/img/[0-9]+\\\\.png\"}, upstream: b}\n"
           "  - {match: {host: [one.test, \"*.two.test\"], path_prefix: /hosts/}, upstream: b}\n"
           "  - {match: {headers: [{name: X-Env, value: beta}]}, upstream: b}\n"
           "  - {match: {query: [{name: debug}]}, upstream: b}\n"
           "  - {match: {listeners: [internal], path_prefix: /admin/}, upstream: b}\n"
           "  - match: {path_prefix: /api/, not: {path_prefix: /api/public/}}\n"
           "    upstream: b\n"
           "  - {match: {path_prefix: /}, upstream: a}\n"
           "logging: {access_log: off}\n";
}

}  // namespace

TEST_SUITE("e2e/routing") {
    TEST_CASE("each kind of condition picks its route; everything else falls through") {
        Origin origin(2);
        Strata strata(routingConfig(origin));
        const std::uint16_t pub = strata.port("public");
        const std::uint16_t internal = strata.port("internal");
        struct Case {
            std::uint16_t port;
            std::string target;
            std::string headers;
            int server;  // 1 = the matching route (upstream b), 0 = the catch-all
        };
        const std::vector<Case> cases = {
            {pub, "/exact", "", 1},
            {pub, "/exact/more", "", 0},
            {pub, "/img/42.png", "", 1},
            {pub, "/img/42.png.bak", "", 0},
            {pub, "/hosts/x", "Host: one.test\r\n", 1},
            {pub, "/hosts/x", "Host: www.two.test:8080\r\n", 1},
            {pub, "/hosts/x", "Host: two.test\r\n", 0},
            {pub, "/h", "X-Env: beta\r\n", 1},
            {pub, "/h", "X-Env: prod\r\n", 0},
            {pub, "/q?a=1&debug", "", 1},
            {pub, "/q?debugging=1", "", 0},
            {internal, "/admin/x", "", 1},
            {pub, "/admin/x", "", 0},
            {pub, "/api/users", "", 1},
            {pub, "/api/public/users", "", 0},
        };
        for (const auto& c : cases) {
            CAPTURE(c.target);
            CAPTURE(c.headers);
            origin.reset();
            RawClient client(c.port);
            std::string head = "GET " + c.target + " HTTP/1.1\r\n";
            if (c.headers.find("Host:") == std::string::npos) {
                head += "Host: t\r\n";
            }
            REQUIRE(client.send(head + c.headers + "\r\n"));
            auto r = client.readResponse();
            CHECK(r.status == 200);
            const std::string path = c.target.substr(0, c.target.find('?'));
            CHECK(origin.requestCount(c.server, path) == 1);
            CHECK(origin.requestCount(1 - c.server, path) == 0);
        }
    }

    TEST_CASE("--check reports a bad regular expression at its position") {
        auto result = Strata::check(
            "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
            "upstreams: {a: {servers: [\"127.0.0.1:1\"]}}\n"
            "routes: [{match: {path_regex: \"/a(\"}, upstream: a}]\n");
        CHECK(result.exit_code != 0);
        CHECK(result.output.find(":3:31: routes[0].match.path_regex: invalid regular expression") !=
              std::string::npos);
    }
}
