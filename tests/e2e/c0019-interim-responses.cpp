// Interim responses from the upstream (issue #13, RFC 9110 15.2): 102 Processing and 103 Early
// Hints reach HTTP/1.1 and HTTP/2 clients before the final answer, in order and with their own
// fields; they are never stored, their fields never leak into the final or the stored answer,
// and HTTP/1.0 clients, which do not know 1xx, never see one.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string interimConfig(const Origin& origin) {
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\", protocols: [h2, http/1.1]}\n"
           "upstreams:\n"
           "  app: {servers: [\"" +
           origin.addr(0) +
           "\"]}\n"
           "routes:\n"
           "  - {match: {path_prefix: /}, upstream: app, cache: {enabled: true}}\n"
           "logging: {access_log: off}\n";
}

// Everything the server sent for one request, read until it closes the connection.
std::string exchange(std::uint16_t port, const std::string& request) {
    RawClient c(port);
    REQUIRE(c.send(request));
    return c.readAvailable(5000ms);
}

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
        ++n;
    }
    return n;
}

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("102 and 103 reach an HTTP/1.1 client before the final answer, with their fields") {
        Origin origin;
        Strata strata(interimConfig(origin));
        const std::string out = exchange(
            strata.port(), "GET /?early=2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        const auto processing = out.find("HTTP/1.1 102 Processing\r\n");
        const auto hints = out.find("HTTP/1.1 103 Early Hints\r\n");
        const auto final_head = out.find("HTTP/1.1 200 OK\r\n");
        REQUIRE(processing == 0);
        REQUIRE(hints != std::string::npos);
        REQUIRE(final_head != std::string::npos);
        CHECK(processing < hints);
        CHECK(hints < final_head);
        const std::string interim = out.substr(0, final_head);
        const std::string final_answer = out.substr(final_head);
        CHECK(interim.find("Link: </hint-0.css>; rel=preload\r\n") != std::string::npos);
        CHECK(interim.find("Link: </hint-1.css>; rel=preload\r\n") != std::string::npos);
        // The final answer carries none of the interim fields, and its body is intact.
        CHECK(final_answer.find("X-Interim") == std::string::npos);
        CHECK(final_answer.find("Link:") == std::string::npos);
        CHECK(final_answer.find("\r\n\r\nhello from 0\n") != std::string::npos);
    }

    TEST_CASE("an interim answer is never stored: the hit has neither the 103 nor its fields") {
        Origin origin;
        Strata strata(interimConfig(origin));
        const std::string request =
            "GET /cached?early=1&cc=max-age=60 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        const std::string miss = exchange(strata.port(), request);
        CHECK(miss.find("HTTP/1.1 103 Early Hints\r\n") == 0);
        CHECK(miss.find("fwd=uri-miss") != std::string::npos);
        CHECK(miss.find("stored") != std::string::npos);
        const std::string hit = exchange(strata.port(), request);
        CHECK(hit.find("HTTP/1.1 200 OK\r\n") == 0);
        CHECK(hit.find("Cache-Status: strata; hit") != std::string::npos);  // hit comes first
        CHECK(hit.find("X-Interim") == std::string::npos);
        CHECK(hit.find("Link:") == std::string::npos);
        CHECK(count(hit, "HTTP/1.1 ") == 1);
        CHECK(origin.requestCount(0, "/cached") == 1);
    }

    TEST_CASE("an HTTP/1.0 client gets only the final answer") {
        Origin origin;
        Strata strata(interimConfig(origin));
        const std::string out =
            exchange(strata.port(), "GET /?early=2 HTTP/1.0\r\nHost: t\r\n\r\n");
        CHECK(out.find("HTTP/1.1 200 OK\r\n") == 0);
        CHECK(count(out, "HTTP/1.1 ") == 1);
        CHECK(out.find("X-Interim") == std::string::npos);
    }

    TEST_CASE("an HTTP/2 client gets the 103 as a HEADERS frame before the response") {
        Origin origin;
        Strata strata(interimConfig(origin));
        // curl -v writes every received head to stderr, interim ones included ("< HTTP/2 103");
        // the subshell keeps it from runCommand's 2>/dev/null.
        const std::string out =
            runCommand("(curl -s -v -o /dev/null --http2-prior-knowledge http://127.0.0.1:" +
                       std::to_string(strata.port()) + "/?early=1 2>&1)");
        INFO(out);
        const auto hints = out.find("< HTTP/2 103");
        const auto final_head = out.find("< HTTP/2 200");
        REQUIRE(hints != std::string::npos);
        REQUIRE(final_head != std::string::npos);
        CHECK(hints < final_head);
        CHECK(out.substr(hints, final_head - hints).find("< link: </hint-0.css>; rel=preload") !=
              std::string::npos);
        CHECK(out.substr(final_head).find("x-interim") == std::string::npos);
    }
}
