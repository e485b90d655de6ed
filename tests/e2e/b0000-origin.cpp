// strata-origin on its own: the endpoints the other cases rely on, checked without strata in the
// path, so a failing proxy case is never the origin's fault.
#include <thread>

#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/origin") {
    TEST_CASE("answers / and unknown paths with its id and port") {
        Origin origin(2);
        Response r = get(origin.port(1), "/");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.body == "hello from 1\n");
        CHECK(r.header("X-Origin") == "1");
        CHECK(r.header("X-Origin-Port") == std::to_string(origin.port(1)));
        CHECK(get(origin.port(0), "/any/thing").status == 200);
    }

    TEST_CASE("/bytes/N streams the pattern, with Content-Length or chunked") {
        Origin origin;
        std::string expected(300000, '\0');
        originPattern(0, expected);
        Response plain = get(origin.port(), "/bytes/300000");
        CHECK(plain.header("Content-Length") == "300000");
        CHECK(plain.body == expected);
        Response chunked = get(origin.port(), "/bytes/300000?chunked=1");
        CHECK(chunked.chunked);
        CHECK(chunked.body == expected);
        Response head = request(origin.port(), "HEAD", "/bytes/77");
        CHECK(head.header("Content-Length") == "77");
        CHECK(head.body.empty());
    }

    TEST_CASE("/status, /headers, cc= and h= shape the answer") {
        Origin origin;
        CHECK(get(origin.port(), "/status/404").status == 404);
        CHECK(get(origin.port(), "/status/503").status == 503);
        Response r = get(origin.port(), "/headers?cc=max-age%3D60&h=X-A%3A1&h=X-B:2", "X-T: v\r\n");
        CHECK(r.header("Cache-Control") == "max-age=60");
        CHECK(r.header("X-A") == "1");
        CHECK(r.header("X-B") == "2");
        EchoedHead head(r.body);
        CHECK(head.request_line == "GET /headers?cc=max-age%3D60&h=X-A%3A1&h=X-B:2 HTTP/1.1");
        CHECK(head.value("X-T") == "v");
    }

    TEST_CASE("/echo and /upload stream request bodies, CL and chunked") {
        Origin origin;
        CHECK(request(origin.port(), "POST", "/echo", "", "ping").body == "ping");
        RawClient c(origin.port());
        c.send(
            "POST /echo HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        Response echoed = c.readResponse();
        CHECK(echoed.chunked);
        CHECK(echoed.body == "abcde");
        Fnv1a64 h;
        h.update("hello upload");
        Response up = request(origin.port(), "PUT", "/upload", "", "hello upload");
        CHECK(up.body == "{\"bytes\":12,\"fnv1a64\":\"" + h.hex() + "\"}\n");
    }

    TEST_CASE("/echo streams a large body back with bounded memory") {
        Origin origin;
        constexpr std::uint64_t kTotal = 64ULL << 20;
        RawClient c(origin.port());
        // Send and receive at once: the origin stops reading while its output is backed up.
        std::thread sender([&] {
            std::string piece(1 << 20, '\0');
            originPattern(0, piece);
            c.send("POST /echo HTTP/1.1\r\nHost: o\r\nContent-Length: " + std::to_string(kTotal) +
                   "\r\n\r\n");
            for (std::uint64_t sent = 0; sent < kTotal; sent += piece.size()) {
                if (!c.send(piece)) {
                    break;
                }
            }
        });
        Fnv1a64 got;
        std::uint64_t max_rss = 0;
        ReadOptions opts;
        opts.timeout = 60s;
        opts.on_body = [&](std::string_view data) {
            got.update(data);
            max_rss = std::max(max_rss, residentBytes(origin.process().pid()));
        };
        Response r = c.readResponse(opts);
        sender.join();
        Fnv1a64 want;
        std::string piece(1 << 20, '\0');
        originPattern(0, piece);
        for (std::uint64_t i = 0; i < kTotal; i += piece.size()) {
            want.update(piece);
        }
        CHECK(r.status == 200);
        CHECK(r.body_bytes == kTotal);
        CHECK(got.hex() == want.hex());
        MESSAGE("origin max VmRSS during echo: " << (max_rss >> 20) << " MiB");
        CHECK(max_rss < rssBound(64ULL << 20));
    }

    TEST_CASE("keep-alive, pipelining in order, HTTP/1.0 closes") {
        Origin origin;
        RawClient c(origin.port());
        std::string pipeline;
        for (int i = 0; i < 10; ++i) {
            pipeline += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nHost: o\r\n\r\n";
        }
        c.send(pipeline);
        for (int i = 0; i < 10; ++i) {
            CHECK(c.readResponse().body == "strata-origin 0: GET /p" + std::to_string(i) + "\n");
        }
        RawClient old(origin.port());
        old.send("GET / HTTP/1.0\r\n\r\n");
        CHECK(old.readResponse().status == 200);
        CHECK(old.isClosed());
    }

    TEST_CASE("/delay, /slowbody, /close, /drop and /__stats") {
        Origin origin;
        auto start = Clock::now();
        CHECK(get(origin.port(), "/delay/200").status == 200);
        CHECK(Clock::now() - start >= 200ms);
        CHECK(get(origin.port(), "/slowbody/50").body == "slow body\n");
        RawClient closing(origin.port());
        closing.send("GET /close HTTP/1.1\r\nHost: o\r\n\r\n");
        Response r = closing.readResponse();
        CHECK(r.header("Connection") == "close");
        CHECK(closing.isClosed());
        RawClient dropped(origin.port());
        dropped.send("GET /drop HTTP/1.1\r\nHost: o\r\n\r\n");
        CHECK(dropped.readAvailable(2000ms).empty());
        CHECK(origin.requestCount(0, "/delay/200") == 1);
        CHECK(origin.requestCount(0, "/drop") == 1);
        origin.reset();
        CHECK(origin.requestCount(0, "/drop") == 0);
    }

    TEST_CASE("a client that half-closes after its request still gets the answer") {
        Origin origin;
        RawClient c(origin.port());
        c.send("GET /delay/50 HTTP/1.1\r\nHost: o\r\n\r\n");
        c.shutdownWrite();
        CHECK(c.readResponse().status == 200);
        CHECK(c.isClosed());
    }

    TEST_CASE("exits 0 on SIGTERM") {
        Origin origin;
        CHECK(origin.process().stop() == 0);
    }
}

TEST_SUITE("e2e/harness") {
    TEST_CASE("Memcached starts on an ephemeral port and answers") {
        Memcached mc;
        REQUIRE(mc.port() != 0);
        RawClient c(mc.port());
        c.send("version\r\n");
        CHECK(c.readAvailable(300ms).rfind("VERSION ", 0) == 0);
    }

    TEST_CASE("ScriptedServer writes its script after the request head") {
        ScriptedServer s("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
        Response r = get(s.port(), "/");
        CHECK(r.status == 201);
        CHECK(r.body == "ok");
        CHECK(s.connections() == 1);
        CHECK(connectRefused(closedPort()));
    }
}
