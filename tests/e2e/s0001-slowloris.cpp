// A client that sends part of a head and stalls is cut off after limits.client_header_timeout.
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/slow") {
    TEST_CASE("partial head then silence: closed (408 or plain close) within ~1 s") {
        Origin origin;
        Strata strata(
            proxyConfig(origin.serversYaml(), "limits: {client_header_timeout: 500ms}\n"));
        // From before the connect: strata's timer starts at accept, which may come before any
        // point measured after connect() returned (a lower bound from there could fail).
        auto start = Clock::now();
        RawClient c(strata.port());
        c.send("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
        std::string got = c.readAvailable(3000ms);
        auto took = Clock::now() - start;
        CHECK(took < 1500ms);
        CHECK(took >= 400ms);
        CHECK((got.empty() || got.rfind("HTTP/1.1 408", 0) == 0));
        CHECK(origin.totalCount("/") == 0);
    }

    TEST_CASE("a client trickling a head still times out (timer is not reset per byte)") {
        Origin origin;
        Strata strata(
            proxyConfig(origin.serversYaml(), "limits: {client_header_timeout: 500ms}\n"));
        RawClient c(strata.port());
        auto start = Clock::now();
        c.send("GET / HTTP/1.1\r\n");
        bool closed = false;
        for (int i = 0; i < 30 && !closed; ++i) {
            c.send("X-" + std::to_string(i) + ": v\r\n");
            closed = c.isClosed(100ms);
        }
        CHECK(closed);
        CHECK(Clock::now() - start < 1500ms);
    }

    TEST_CASE("an idle keep-alive connection is not cut by the header timeout") {
        Origin origin;
        Strata strata(
            proxyConfig(origin.serversYaml(), "limits: {client_header_timeout: 300ms}\n"));
        RawClient c(strata.port());
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        CHECK(c.readResponse().status == 200);
        CHECK_FALSE(c.isClosed(700ms));
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        CHECK(c.readResponse().status == 200);
    }
}
