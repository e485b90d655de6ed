// Strict framing over the wire (RFC 9112): every ambiguous or oversized request is refused with
// the right status and the connection is closed; nothing reaches the origin. A malformed
// upstream answer becomes 502.
#include "e2e.h"

using namespace strata::test;

namespace {

struct Bad {
    const char* what;
    std::string bytes;
    int status;
};

void expectRefused(std::uint16_t port, const Bad& bad) {
    CAPTURE(bad.what);
    RawClient c(port);
    c.send(bad.bytes);
    Response r = c.readResponse();
    CHECK(r.status == bad.status);
    CHECK(c.isClosed());
}

}  // namespace

TEST_SUITE("e2e/framing") {
    TEST_CASE("ambiguous framing is 400 and closes the connection") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        const std::string h = "POST /echo HTTP/1.1\r\nHost: t\r\n";
        for (const Bad& bad : {
                 Bad{"CL + TE",
                     h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "0\r\n\r\n",
                     400},
                 Bad{"two different CLs",
                     h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"
                         "hello!",
                     400},
                 Bad{"bad chunk size",
                     h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
                         "0\r\n\r\n",
                     400},
                 Bad{"bare LF", "GET / HTTP/1.1\nHost: t\n\n", 400},
                 Bad{"obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n", 400},
                 Bad{"space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400},
             }) {
            expectRefused(strata.port(), bad);
        }
        CHECK(origin.totalCount("/echo") == 0);
        CHECK(origin.totalCount("/") == 0);
    }

    TEST_CASE("a Connection list naming a field strata relies on is 400, never obeyed") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        // Obeyed, the first would reach the origin without its Content-Length but with its body:
        // the origin would read "GET /smuggled" as a second request.
        const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
        for (const Bad& bad : {
                 Bad{"Content-Length",
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " +
                         std::to_string(smuggled.size()) +
                         "\r\nConnection: keep-alive, Content-Length\r\n\r\n" + smuggled,
                     400},
                 Bad{"Transfer-Encoding",
                     "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: transfer-encoding\r\n\r\n0\r\n\r\n",
                     400},
                 Bad{"Host", "GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close, HOST\r\n\r\n",
                     400},
                 Bad{"Cache-Control in a second Connection field",
                     "GET /echo HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n"
                     "Connection: Cache-Control\r\nCache-Control: no-cache\r\n\r\n",
                     400},
             }) {
            expectRefused(strata.port(), bad);
        }
        CHECK(origin.totalCount("/echo") == 0);
        CHECK(origin.totalCount("/smuggled") == 0);
        // Naming an ordinary field still makes it hop-by-hop: it is dropped, the request passes.
        Response ok = get(strata.port(), "/headers", "Connection: X-Hop\r\nX-Hop: 1\r\n");
        REQUIRE(ok.status == 200);
        CHECK_FALSE(EchoedHead(ok.body).has("X-Hop"));
    }

    TEST_CASE("oversized request line is 414, oversized head is 431") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        std::string many;
        for (int i = 0; i < 150; ++i) {
            many += "X-H" + std::to_string(i) + ": v\r\n";
        }
        for (const Bad& bad : {
                 Bad{"long request line",
                     "GET /" + std::string(10000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n", 414},
                 Bad{"too many fields", "GET / HTTP/1.1\r\nHost: t\r\n" + many + "\r\n", 431},
                 Bad{"too large field",
                     "GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(40000, 'b') + "\r\n\r\n",
                     431},
             }) {
            expectRefused(strata.port(), bad);
        }
        CHECK(origin.totalCount("/") == 0);
    }

    TEST_CASE("body over limits.max_request_body_bytes is 413") {
        Origin origin;
        Strata strata(
            proxyConfig(origin.serversYaml(), "limits: {max_request_body_bytes: 1KiB}\n"));
        expectRefused(strata.port(), {"declared",
                                      "POST /upload HTTP/1.1\r\nHost: t\r\n"
                                      "Content-Length: 2000\r\n\r\n" +
                                          std::string(2000, 'x'),
                                      413});
        std::string chunked =
            "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (int i = 0; i < 3; ++i) {
            chunked += "200\r\n" + std::string(512, 'y') + "\r\n";
        }
        chunked += "0\r\n\r\n";
        RawClient c(strata.port());
        c.send(chunked);
        // A streamed body may already be on its way upstream when the limit trips: 413 if the
        // answer has not started, else the connection is cut. Either way it never completes.
        Response r = c.readResponse();
        CHECK((r.status == 413 || !r.ok()));
        CHECK(c.isClosed());
        CHECK(request(strata.port(), "POST", "/upload", "", std::string(1000, 'z')).status == 200);
    }

    TEST_CASE("malformed upstream responses become 502") {
        for (const char* reply : {
                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\n",
                 "NOT HTTP AT ALL\r\n\r\n",
                 "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
                 "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok",
                 // Obeyed, the body would reach the client unframed.
                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Length\r\n\r\nok",
             }) {
            CAPTURE(reply);
            ScriptedServer bad_origin(reply);
            Strata strata(proxyConfig("[\"" + bad_origin.addr() + "\"]"));
            Response r = get(strata.port(), "/");
            CHECK(r.status == 502);
            CHECK(bad_origin.connections() >= 1);
        }
    }
}
