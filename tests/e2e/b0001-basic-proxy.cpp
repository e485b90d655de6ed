// The HTTP/1.1 reverse proxy core: a GET goes through, the origin's answer comes back, and the
// forwarded head carries the proxy's fields and none of the hop-by-hop ones (RFC 9110 7.6).
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/proxy") {
    TEST_CASE("GET through strata returns the origin body and keeps Host") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        Response r = get(strata.port(), "/");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.body == "hello from 0\n");
        CHECK(r.header("X-Origin") == "0");

        Response h = get(strata.port(), "/headers");
        EchoedHead seen(h.body);
        CHECK(seen.request_line == "GET /headers HTTP/1.1");
        CHECK(seen.value("Host") == "127.0.0.1:" + std::to_string(strata.port()));
        CHECK(origin.requestCount(0, "/") == 1);
    }

    TEST_CASE("Host sent by the client reaches the origin unchanged") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send("GET /headers HTTP/1.1\r\nHost: www.example.test\r\n\r\n");
        EchoedHead seen(c.readResponse().body);
        CHECK(seen.value("Host") == "www.example.test");
    }

    TEST_CASE("adds X-Forwarded-For, X-Forwarded-Proto and Via, appending to existing ones") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        EchoedHead plain(get(strata.port(), "/headers").body);
        CHECK(plain.value("X-Forwarded-For") == "127.0.0.1");
        CHECK(plain.value("X-Forwarded-Proto") == "http");
        CHECK(plain.value("Via") == "1.1 strata");

        EchoedHead chained(
            get(strata.port(), "/headers", "X-Forwarded-For: 10.0.0.1\r\nVia: 1.0 fred\r\n").body);
        CHECK(chained.value("X-Forwarded-For") == "10.0.0.1, 127.0.0.1");
        CHECK(chained.value("Via") == "1.0 fred, 1.1 strata");
    }

    TEST_CASE("upstreams forwarded: true adds an RFC 7239 Forwarded element, appended") {
        Origin origin;
        Strata off(proxyConfig(origin.serversYaml()));
        CHECK_FALSE(EchoedHead(get(off.port(), "/headers").body).has("Forwarded"));

        Strata strata(proxyConfig(origin.serversYaml(), "", "forwarded: true"));
        const std::string host = "127.0.0.1:" + std::to_string(strata.port());
        EchoedHead plain(get(strata.port(), "/headers").body);
        CHECK(plain.value("Forwarded") == "for=127.0.0.1;host=\"" + host + "\";proto=http");
        EchoedHead chained(
            get(strata.port(), "/headers", "Forwarded: for=\"[2001:db8::7]\"\r\n").body);
        CHECK(chained.value("Forwarded") ==
              "for=\"[2001:db8::7]\", for=127.0.0.1;host=\"" + host + "\";proto=http");
    }

    TEST_CASE("hop-by-hop fields are not forwarded; unknown fields are") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        EchoedHead seen(get(strata.port(), "/headers",
                            "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                            "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
                            "Upgrade: foo/2\r\nProxy-Connection: keep-alive\r\n"
                            "X-Custom: kept\r\n")
                            .body);
        CHECK_FALSE(seen.has("X-Secret"));
        CHECK_FALSE(seen.has("Keep-Alive"));
        CHECK_FALSE(seen.has("TE"));
        CHECK_FALSE(seen.has("Trailer"));
        CHECK_FALSE(seen.has("Upgrade"));
        CHECK_FALSE(seen.has("Proxy-Connection"));
        CHECK(seen.value("Connection").find("X-Secret") == std::string::npos);
        CHECK(seen.value("X-Custom") == "kept");
    }

    TEST_CASE("extension methods pass through") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        Response r = request(strata.port(), "PURGEX", "/headers");
        CHECK(r.status == 200);
        CHECK(EchoedHead(r.body).request_line == "PURGEX /headers HTTP/1.1");
        Response purge = request(strata.port(), "PURGE", "/headers");
        CHECK(EchoedHead(purge.body).request_line == "PURGE /headers HTTP/1.1");
    }

    TEST_CASE("POST body and origin status codes pass through") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        CHECK(request(strata.port(), "POST", "/echo", "", "hello body").body == "hello body");
        CHECK(get(strata.port(), "/status/404").status == 404);
        CHECK(get(strata.port(), "/status/503").status == 503);
        Response h = get(strata.port(), "/x?h=X-From-Origin%3Ayes");
        CHECK(h.header("X-From-Origin") == "yes");
    }
}
