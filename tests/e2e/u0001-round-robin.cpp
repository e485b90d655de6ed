// Round robin spreads requests evenly over the servers of an upstream.
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/upstream") {
    TEST_CASE("3 servers, 3000 requests: each gets 1000 +-1%") {
        Origin origin(3);
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        for (int i = 0; i < 3000; ++i) {
            REQUIRE(c.send("GET /rr HTTP/1.1\r\nHost: t\r\n\r\n"));
            REQUIRE(c.readResponse().status == 200);
        }
        for (int s = 0; s < 3; ++s) {
            CAPTURE(s);
            std::uint64_t n = origin.requestCount(s, "/rr");
            CHECK(n >= 990);
            CHECK(n <= 1010);
        }
    }

    TEST_CASE("round robin also across client connections") {
        Origin origin(3);
        Strata strata(proxyConfig(origin.serversYaml()));
        for (int i = 0; i < 300; ++i) {
            REQUIRE(get(strata.port(), "/rr").status == 200);
        }
        for (int s = 0; s < 3; ++s) {
            CAPTURE(s);
            CHECK(origin.requestCount(s, "/rr") >= 90);
            CHECK(origin.requestCount(s, "/rr") <= 110);
        }
    }
}
