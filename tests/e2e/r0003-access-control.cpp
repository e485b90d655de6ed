// Access control through the real binary (issue #12): route and listener allow/deny lists by the
// real client (here named by X-Forwarded-For from a trusted peer), match.client, methods_allowed
// (405 with Allow), a route's request body limit (413, Content-Length and chunked), and
// listeners[].max_connections_per_client; each refusal counted in the metrics.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string accessConfig(const Origin& origin) {
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\", trusted_proxies: [\"127.0.0.1\"]}\n"
           "  - {name: closed, bind: \"127.0.0.1:0\", access: {deny: [\"127.0.0.0/8\"]}}\n"
           "  - {name: limited, bind: \"127.0.0.1:0\", max_connections_per_client: 2}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  app: {servers: [\"" +
           origin.addr(0) +
           "\"]}\n"
           "routes:\n"
           "  - name: internal\n"
           "    match: {path_prefix: /who, client: [\"10.9.0.0/16\"]}\n"
           "    respond: {body: internal}\n"
           "  - name: staff\n"
           "    match: {path_prefix: /staff/}\n"
           "    upstream: app\n"
           "    access: {allow: [\"10.0.0.0/8\"], deny: [\"10.6.6.0/24\"]}\n"
           "  - name: upload\n"
           "    match: {path_prefix: /upload}\n"
           "    upstream: app\n"
           "    max_request_body_bytes: 10\n"
           "  - name: ro\n"
           "    match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    methods_allowed: [GET, HEAD]\n"
           "logging: {access_log: off}\n";
}

Response from(std::uint16_t port, const std::string& client, const std::string& target) {
    return get(port, target, "X-Forwarded-For: " + client + "\r\n");
}

double denied(std::uint16_t admin, const std::string& route, const std::string& reason) {
    return metric(admin, "strata_access_denied_total",
                  {"route=\"" + route + "\"", "reason=\"" + reason + "\""});
}

}  // namespace

TEST_SUITE("e2e/access-control") {
    TEST_CASE("route allow/deny by the real client: deny wins, others outside allow get 403") {
        Origin origin;
        Strata strata(accessConfig(origin));
        CHECK(from(strata.port(), "10.1.1.1", "/staff/bytes/3").status == 200);
        CHECK(from(strata.port(), "10.6.6.6", "/staff/bytes/3").status == 403);   // denied block
        CHECK(from(strata.port(), "192.0.2.1", "/staff/bytes/3").status == 403);  // not allowed
        CHECK(get(strata.port(), "/staff/bytes/3").status == 403);  // the peer 127.0.0.1 itself
        CHECK(origin.requestCount(0, "/staff/bytes/3") == 1);
        CHECK(denied(strata.port("admin"), "staff", "route_access") == 3);
    }

    TEST_CASE("match.client picks a route by the real client address") {
        Origin origin;
        Strata strata(accessConfig(origin));
        CHECK(from(strata.port(), "10.9.1.2", "/who").body == "internal");
        Response other = from(strata.port(), "10.8.1.2", "/who");
        CHECK(other.body != "internal");  // fell through to the catch-all: the origin answered
        CHECK(origin.requestCount(0, "/who") == 1);
    }

    TEST_CASE("a listener's access list refuses every request of a denied client with 403") {
        Origin origin;
        Strata strata(accessConfig(origin));
        Response r = get(strata.port("closed"), "/bytes/3");
        CHECK(r.status == 403);
        CHECK(origin.requestCount(0, "/bytes/3") == 0);
        CHECK(denied(strata.port("admin"), "ro", "listener_access") == 1);
    }

    TEST_CASE("methods_allowed: other methods get 405 with Allow; the connection goes on") {
        Origin origin;
        Strata strata(accessConfig(origin));
        RawClient c(strata.port());
        REQUIRE(c.send("DELETE /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"));
        Response r = c.readResponse();
        CHECK(r.status == 405);
        CHECK(r.header("Allow") == "GET, HEAD");
        REQUIRE(c.send("GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"));
        CHECK(c.readResponse().status == 200);
        CHECK(origin.requestCount(0, "/bytes/3") == 1);
        CHECK(denied(strata.port("admin"), "ro", "method") == 1);
    }

    TEST_CASE("a route's body limit: 413 for a long Content-Length and for a chunked body") {
        Origin origin;
        Strata strata(accessConfig(origin));
        CHECK(request(strata.port(), "POST", "/upload", "", "0123456789").status == 200);
        CHECK(request(strata.port(), "POST", "/upload", "", "0123456789x").status == 413);
        RawClient c(strata.port());
        REQUIRE(
            c.send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n"));
        CHECK(c.readResponse().status == 413);
        CHECK(c.isClosed());  // the rest of the body cannot be told from a next request
        CHECK(denied(strata.port("admin"), "upload", "body_size") == 2);
    }

    TEST_CASE("max_connections_per_client closes a client's connection beyond the limit") {
        Origin origin;
        Strata strata(accessConfig(origin));
        const auto port = strata.port("limited");
        auto one = std::make_unique<RawClient>(port);
        RawClient two(port);
        REQUIRE(one->send("GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"));
        CHECK(one->readResponse().status == 200);
        REQUIRE(two.send("GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"));
        CHECK(two.readResponse().status == 200);
        RawClient third(port);
        CHECK(third.isClosed());
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_connections_refused_per_client_total") == 1);
        // Another listener does not count against it, and a closed connection frees its slot.
        CHECK(get(strata.port(), "/bytes/3").status == 200);
        one.reset();
        CHECK(eventually([&] {
            RawClient again(port);
            return again.send("GET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n") &&
                   again.readResponse().status == 200;
        }));
    }
}
