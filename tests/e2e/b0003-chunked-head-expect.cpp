// Bodies in both directions with chunked coding, HEAD, and Expect: 100-continue.
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/proxy") {
    TEST_CASE("chunked upload reaches the origin whole") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        std::string req = "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
        Fnv1a64 h;
        std::uint64_t total = 0;
        for (std::size_t size : {1u, 10u, 4096u, 70000u, 3u}) {
            std::string chunk(size, 'x');
            originPattern(total, chunk);
            h.update(chunk);
            total += size;
            char line[32];
            std::snprintf(line, sizeof line, "%zx\r\n", size);
            req += line + chunk + "\r\n";
        }
        req += "0\r\n\r\n";
        REQUIRE(c.send(req));
        Response r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.body ==
              "{\"bytes\":" + std::to_string(total) + ",\"fnv1a64\":\"" + h.hex() + "\"}\n");
    }

    TEST_CASE("chunked response from the origin reaches the client whole") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        std::string expected(1000000, '\0');
        originPattern(0, expected);
        Response r = get(strata.port(), "/bytes/1000000?chunked=1");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.body_bytes == expected.size());
        CHECK(r.body == expected);
    }

    TEST_CASE("chunked request body echoed back through strata") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        CHECK(c.readResponse().body == "hello world");
    }

    TEST_CASE("HEAD gets the head without a body and the connection stays usable") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send("HEAD /bytes/1000 HTTP/1.1\r\nHost: t\r\n\r\n");
        ReadOptions head_only;
        head_only.head = true;
        Response r = c.readResponse(head_only);
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.body.empty());
        CHECK(r.header("Content-Length") == "1000");
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        CHECK(c.readResponse().body == "hello from 0\n");
        CHECK(origin.requestCount(0, "/bytes/1000") == 1);
    }

    TEST_CASE("Expect: 100-continue gets 100 Continue, then the final answer") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        RawClient c(strata.port());
        c.send(
            "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n");
        Response interim = c.readResponse();
        STRATA_REQUIRE_RESPONSE(interim);
        CHECK(interim.status == 100);
        c.send("hello");
        Response final_answer = c.readResponse();
        STRATA_REQUIRE_RESPONSE(final_answer);
        CHECK(final_answer.status == 200);
        CHECK(final_answer.body.find("\"bytes\":5,") != std::string::npos);
    }
}
