// Connection reuse on the client side: keep-alive, pipelining (answers in order) and HTTP/1.0.
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/proxy") {
    TEST_CASE("many requests on one keep-alive client connection") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        for (int i = 0; i < 200; ++i) {
            REQUIRE(c.send("GET /ka HTTP/1.1\r\nHost: t\r\n\r\n"));
            Response r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
        }
        CHECK(origin.requestCount(0, "/ka") == 200);
    }

    TEST_CASE("10 pipelined requests in one write get 10 answers in order") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        std::string pipeline;
        for (int i = 0; i < 10; ++i) {
            // Mixed delays make an out-of-order proxy visible.
            pipeline += "GET /delay/" + std::to_string((9 - i) * 10) + "?n=" + std::to_string(i) +
                        " HTTP/1.1\r\nHost: t\r\n\r\n";
        }
        REQUIRE(c.send(pipeline));
        for (int i = 0; i < 10; ++i) {
            Response r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.body == "delayed " + std::to_string((9 - i) * 10) + "ms\n");
        }
    }

    TEST_CASE("HTTP/1.0 gets an HTTP/1.x answer and the connection closes") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send("GET / HTTP/1.0\r\nHost: t\r\n\r\n");
        Response r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.version_major == 1);
        CHECK(r.body == "hello from 0\n");
        CHECK(c.isClosed());
    }

    TEST_CASE("HTTP/1.0 without Host still reaches the origin (strata supplies a Host)") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send("GET /headers HTTP/1.0\r\n\r\n");
        Response r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(EchoedHead(r.body).has("Host"));
        CHECK(c.isClosed());
    }

    TEST_CASE("HTTP/1.0 with Connection: keep-alive keeps the connection") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        for (int i = 0; i < 3; ++i) {
            c.send("GET / HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n");
            Response r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
            CHECK(r.body == "hello from 0\n");
        }
        CHECK_FALSE(c.isClosed(200ms));
    }

    TEST_CASE("Connection: close from the client closes after the answer") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        CHECK(c.readResponse().status == 200);
        CHECK(c.isClosed());
    }
}
