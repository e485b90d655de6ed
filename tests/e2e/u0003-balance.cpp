// Balancing algorithms through the real binary (upstreams.NAME.balance): consistent_hash keeps a
// URI (or header value) on one server and spreads different ones, first fills servers in config
// order, least_connections keeps new requests off a server busy with a slow one, and a bad
// balance value is a --check error with its position and a hint.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string request(const std::string& target, const std::string& extra = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

}  // namespace

TEST_SUITE("e2e/upstream") {
    TEST_CASE("consistent_hash on uri: one URI always reaches the same server, many URIs spread") {
        Origin origin(3);
        Strata strata(proxyConfig(origin.serversYaml(), "",
                                  "balance: consistent_hash\n    hash: {key: uri}"));
        RawClient c(strata.port());
        for (int i = 0; i < 30; ++i) {
            REQUIRE(c.send(request("/same?v=1")));
            REQUIRE(c.readResponse().status == 200);
        }
        int holders = 0;
        for (int s = 0; s < 3; ++s) {
            const auto n = origin.requestCount(s, "/same");
            CHECK((n == 0 || n == 30));
            holders += n > 0 ? 1 : 0;
        }
        CHECK(holders == 1);

        for (int i = 0; i < 90; ++i) {
            REQUIRE(c.send(request("/spread?k=" + std::to_string(i))));
            REQUIRE(c.readResponse().status == 200);
        }
        for (int s = 0; s < 3; ++s) {
            CAPTURE(s);
            CHECK(origin.requestCount(s, "/spread") >= 10);  // ~30 each; a ring never gives 0
        }
    }

    TEST_CASE("consistent_hash on a header: the value picks the server, whatever the path") {
        Origin origin(3);
        Strata strata(proxyConfig(origin.serversYaml(), "",
                                  "balance: consistent_hash\n    hash: {key: \"header:X-User\"}"));
        RawClient c(strata.port());
        for (int i = 0; i < 30; ++i) {
            REQUIRE(c.send(request("/u/" + std::to_string(i % 3), "X-User: alice\r\n")));
            REQUIRE(c.readResponse().status == 200);
        }
        int holders = 0;
        for (int s = 0; s < 3; ++s) {
            std::uint64_t n = 0;
            for (int p = 0; p < 3; ++p) {
                n += origin.requestCount(s, "/u/" + std::to_string(p));
            }
            CHECK((n == 0 || n == 30));
            holders += n > 0 ? 1 : 0;
        }
        CHECK(holders == 1);
    }

    TEST_CASE("first: every request goes to the first server that answers, in config order") {
        Origin origin(3);
        const std::string dead = "127.0.0.1:" + std::to_string(freePort());
        Strata strata(proxyConfig("[\"" + dead + "\", \"" + origin.addr(0) + "\", \"" +
                                      origin.addr(1) + "\", \"" + origin.addr(2) + "\"]",
                                  "", "balance: first"));
        RawClient c(strata.port());
        for (int i = 0; i < 30; ++i) {
            REQUIRE(c.send(request("/f")));
            REQUIRE(c.readResponse().status == 200);
        }
        CHECK(origin.requestCount(0, "/f") == 30);
        CHECK(origin.requestCount(1, "/f") == 0);
        CHECK(origin.requestCount(2, "/f") == 0);
    }

    TEST_CASE("least_connections: a server busy with a slow request gets no new ones") {
        Origin origin(3);
        Strata strata(proxyConfig(origin.serversYaml(), "admin: {bind: \"127.0.0.1:0\"}\n",
                                  "balance: least_connections"));
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_upstream_balance_info", {"balance=\"least_connections\""}) ==
              1);
        auto in_flight = [&](int s) {
            return metric(admin, "strata_upstream_server_in_flight",
                          {"server=\"" + origin.addr(s) + "\""});
        };
        RawClient slow(strata.port());
        REQUIRE(slow.send(request("/delay/4000")));
        int busy = -1;
        REQUIRE(eventually([&] {
            for (int s = 0; s < 3; ++s) {
                if (in_flight(s) == 1) {
                    busy = s;
                    return true;
                }
            }
            return false;
        }));
        RawClient c(strata.port());
        for (int i = 0; i < 30; ++i) {
            REQUIRE(c.send(request("/q")));
            REQUIRE(c.readResponse().status == 200);
        }
        CAPTURE(busy);
        CHECK(origin.requestCount(busy, "/q") == 0);
        for (int s = 0; s < 3; ++s) {
            if (s != busy) {
                CHECK(origin.requestCount(s, "/q") == 15);  // idle ties go round robin
            }
        }
        ReadOptions wait_long;
        wait_long.timeout = 10000ms;
        CHECK(slow.readResponse(wait_long).status == 200);
        CHECK(origin.requestCount(busy, "/delay/4000") == 1);
    }

    TEST_CASE("--check: an unknown balance value is an error with its position and a hint") {
        CheckResult r = Strata::check(
            "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
            "upstreams:\n"
            "  app:\n"
            "    servers: [\"127.0.0.1:8000\"]\n"
            "    balance: least_connection\n"
            "    hash: {key: uri}\n"
            "  other:\n"
            "    servers: [\"127.0.0.1:8001\"]\n"
            "    balance: consistent_hash\n"
            "    hash: {key: \"header:\"}\n"
            "routes: [{match: {path_prefix: /}, upstream: app}]\n");
        CAPTURE(r.output);
        CHECK(r.exit_code != 0);
        CHECK(r.output.find(r.file + ":5:14: upstreams.app.balance: invalid value "
                                     "\"least_connection\"") != std::string::npos);
        CHECK(r.output.find("did you mean \"least_connections\"?") != std::string::npos);
        CHECK(r.output.find(r.file + ":10:") != std::string::npos);
        CHECK(r.output.find("upstreams.other.hash.key") != std::string::npos);
    }
}
