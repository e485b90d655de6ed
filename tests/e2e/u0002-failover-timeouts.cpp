// Upstream failures: a dead server is retried around, a dead upstream is a quick 502, a server
// that never answers is a 504 after timeouts.response, /drop (no byte) is retried elsewhere.
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/upstream") {
    TEST_CASE("one of 3 servers refuses connections: every request still succeeds") {
        Origin origin(2);
        const std::string servers = "[\"" + origin.addr(0) +
                                    "\", \"127.0.0.1:" + std::to_string(closedPort()) + "\", \"" +
                                    origin.addr(1) + "\"]";
        Strata strata(proxyConfig(servers));
        for (int i = 0; i < 300; ++i) {
            Response r = get(strata.port(), "/fo");
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
        }
        CHECK(origin.totalCount("/fo") == 300);
        CHECK(origin.requestCount(0, "/fo") >= 100);
        CHECK(origin.requestCount(1, "/fo") >= 100);
    }

    TEST_CASE("whole upstream down: 502 quickly with a short body") {
        Strata strata(proxyConfig("[\"127.0.0.1:" + std::to_string(closedPort()) + "\"]"));
        auto start = Clock::now();
        Response r = get(strata.port(), "/");
        CHECK(r.status == 502);
        CHECK(Clock::now() - start < 2s);
        CHECK(r.body.size() < 1024);
    }

    TEST_CASE("origin that never answers: 504 after timeouts.response") {
        Origin origin;
        Strata strata(
            proxyConfig(origin.serversYaml(), "", "timeouts: {connect: 1s, response: 500ms}"));
        auto start = Clock::now();
        Response r = get(strata.port(), "/hang");
        CHECK(r.status == 504);
        auto took = Clock::now() - start;
        CHECK(took >= 450ms);
        CHECK(took < 3s);  // retries of an idempotent request may add tries, never unbounded
    }

    TEST_CASE("a server closing without any response byte is retried on another") {
        Origin origin(2);
        ScriptedServer dropper("");  // reads the head, closes without a byte
        Strata strata(proxyConfig("[\"" + dropper.addr() + "\", \"" + origin.addr(0) + "\", \"" +
                                  origin.addr(1) + "\"]"));
        for (int i = 0; i < 30; ++i) {
            CHECK(get(strata.port(), "/retry").status == 200);
        }
        CHECK(dropper.connections() >= 1);
        CHECK(origin.totalCount("/retry") == 30);
    }
}
