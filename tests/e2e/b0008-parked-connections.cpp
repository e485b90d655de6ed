// Idle keep-alive connections park (issue #9, idle memory): after 250 ms without a byte a plain
// HTTP/1.1 connection gives back its session and is held as a socket, its client, its listener
// and its idle deadline. Everything a client can observe must stay as it was: the next request
// is answered (whole, split, pipelined, with a body), the idle timeout still closes it, a client
// that leaves is counted out, per-client limits hold, drain closes parked connections.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string parkConfig(const Origin& origin, const std::string& idle_timeout = "60s") {
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\"}\n"
           "  - {name: limited, bind: \"127.0.0.1:0\", max_connections_per_client: 2}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  app: {servers: [\"" +
           origin.addr(0) +
           "\"]}\n"
           "routes:\n"
           "  - {match: {path_prefix: /}, upstream: app}\n"
           "limits: {client_idle_timeout: " +
           idle_timeout +
           "}\n"
           "logging: {access_log: off}\n";
}

double parked(std::uint16_t admin) {
    return metric(admin, "strata_proxy_client_connections_parked");
}

double http1Connections(std::uint16_t admin) {
    return metric(admin, "strata_proxy_client_connections", {"protocol=\"http/1.1\""});
}

bool getOn(RawClient& c, const std::string& path, const std::string& body) {
    if (!c.send("GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n")) {
        return false;
    }
    Response r = c.readResponse();
    return r.status == 200 && r.body == body;
}

// The origin's /bytes/N body.
std::string originBytes(std::size_t n) {
    std::string out(n, '\0');
    originPattern(0, out);
    return out;
}

bool getOn(RawClient& c, std::size_t n) {
    return getOn(c, "/bytes/" + std::to_string(n), originBytes(n));
}

}  // namespace

TEST_SUITE("e2e/proxy") {
    TEST_CASE("idle keep-alive connections park and answer their next request") {
        Origin origin;
        Strata strata(parkConfig(origin));
        const auto admin = strata.port("admin");
        std::vector<std::unique_ptr<RawClient>> clients;
        for (int i = 0; i < 3; ++i) {
            clients.push_back(std::make_unique<RawClient>(strata.port()));
            REQUIRE(getOn(*clients.back(), 5));
        }
        REQUIRE(eventually([&] { return parked(admin) == 3; }));
        CHECK(http1Connections(admin) == 3);  // parked connections are still open connections

        // A whole request, a large answer, then one split across several writes.
        CHECK(getOn(*clients[0], "/", "hello from 0\n"));
        CHECK(getOn(*clients[0], 300000));
        REQUIRE(clients[1]->send("GET /bytes/7 HT"));
        REQUIRE(clients[1]->send("TP/1.1\r\nHost: t\r\n"));
        REQUIRE(clients[1]->send("\r\n"));
        Response split = clients[1]->readResponse();
        STRATA_REQUIRE_RESPONSE(split);
        CHECK(split.body == originBytes(7));
        // Two pipelined requests and a POST with a body, in one write.
        REQUIRE(
            clients[2]->send("GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                             "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nping"));
        Response first = clients[2]->readResponse();
        Response second = clients[2]->readResponse();
        STRATA_REQUIRE_RESPONSE(second);
        CHECK(first.body == originBytes(1));
        CHECK(second.status == 200);
        CHECK(second.body.find("ping") != std::string::npos);

        // They park again, and each still works after the second nap.
        REQUIRE(eventually([&] { return parked(admin) == 3; }));
        for (auto& c : clients) {
            CHECK(getOn(*c, 2));
        }
        CHECK(origin.requestCount(0, "/bytes/2") == 3);
    }

    TEST_CASE("a client that leaves while parked is counted out") {
        Origin origin;
        Strata strata(parkConfig(origin));
        const auto admin = strata.port("admin");
        auto a = std::make_unique<RawClient>(strata.port());
        auto b = std::make_unique<RawClient>(strata.port());
        REQUIRE(getOn(*a, 1));
        REQUIRE(getOn(*b, 1));
        REQUIRE(eventually([&] { return parked(admin) == 2; }));
        a.reset();
        CHECK(eventually([&] { return parked(admin) == 1 && http1Connections(admin) == 1; }));
        b.reset();
        CHECK(eventually([&] { return parked(admin) == 0 && http1Connections(admin) == 0; }));
    }

    TEST_CASE("limits.client_idle_timeout closes a parked connection") {
        Origin origin;
        Strata strata(parkConfig(origin, "1500ms"));
        const auto admin = strata.port("admin");
        RawClient c(strata.port());
        REQUIRE(getOn(c, 1));
        REQUIRE(eventually([&] { return parked(admin) == 1; }));
        const auto parked_at = std::chrono::steady_clock::now();
        CHECK(c.isClosed(5000ms));
        // The deadline counts from the last answer, not from the park: closed well before
        // 1.5 s after it parked plus a margin, and not before 1 s (it was idle ~250 ms then).
        const auto waited = std::chrono::steady_clock::now() - parked_at;
        CHECK(waited > 900ms);
        CHECK(waited < 3000ms);
        CHECK(eventually([&] { return parked(admin) == 0 && http1Connections(admin) == 0; }));
    }

    TEST_CASE("a parked connection keeps its per-client slot") {
        Origin origin;
        Strata strata(parkConfig(origin));
        const auto admin = strata.port("admin");
        const auto port = strata.port("limited");
        auto one = std::make_unique<RawClient>(port);
        RawClient two(port);
        REQUIRE(getOn(*one, 1));
        REQUIRE(getOn(two, 1));
        REQUIRE(eventually([&] { return parked(admin) == 2; }));
        RawClient third(port);
        CHECK(third.isClosed());
        CHECK(metric(admin, "strata_connections_refused_per_client_total") == 1);
        // Closing a parked connection gives its slot back.
        one.reset();
        CHECK(eventually([&] {
            RawClient again(port);
            return getOn(again, 1);
        }));
        CHECK(getOn(two, 1));
    }

    TEST_CASE("drain closes parked connections and strata exits 0") {
        Origin origin;
        Strata strata(parkConfig(origin));
        const auto admin = strata.port("admin");
        RawClient c(strata.port());
        REQUIRE(getOn(c, 1));
        REQUIRE(eventually([&] { return parked(admin) == 1; }));
        const auto started = std::chrono::steady_clock::now();
        CHECK(strata.stop() == 0);
        CHECK(std::chrono::steady_clock::now() - started < 5s);  // not limits.drain_timeout
        CHECK(c.isClosed(1000ms));
    }
}
