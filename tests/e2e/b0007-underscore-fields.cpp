// Request fields named with '_' (limits.underscores_in_headers). Back-ends that map '_' to '-'
// (gunicorn, puma, CGI) would read X_Forwarded_Foo as X-Forwarded-Foo, and Content_Length as a
// second Content-Length: by default such fields never reach the origin, and one that reads as a
// framing field is 400 whatever the mode.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string configWith(const Origin& origin, const std::string& mode) {
    return proxyConfig(
        origin.serversYaml(),
        "admin: {bind: \"127.0.0.1:0\"}\n" +
            (mode.empty() ? std::string() : "limits: {underscores_in_headers: " + mode + "}\n"));
}

double underscoreMetric(const Strata& strata, const char* action) {
    return metric(strata.port("admin"), "strata_http_underscore_fields_total",
                  {std::string("action=\"") + action + "\""});
}

// A request whose only fault is a framing look-alike: 400, closed, never forwarded.
void expectFramingLookalikeRefused(const Strata& strata, Origin& origin) {
    const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    for (const std::string& bad : {
             "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent_Length: " +
                 std::to_string(2 + smuggled.size()) + "\r\n\r\nhi" + smuggled,
             std::string("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                         "Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n"),
             std::string("GET /headers HTTP/1.1\r\nHost: t\r\ncontent_length: 0\r\n\r\n"),
         }) {
        CAPTURE(bad);
        RawClient c(strata.port());
        c.send(bad);
        Response r = c.readResponse();
        CHECK(r.status == 400);
        CHECK(c.isClosed());
    }
    CHECK(origin.totalCount("/echo") == 0);
    CHECK(origin.totalCount("/headers") == 0);
    CHECK(origin.totalCount("/smuggled") == 0);
}

}  // namespace

TEST_SUITE("e2e/underscore-fields") {
    TEST_CASE("by default a field named with '_' is dropped before the origin, and counted") {
        Origin origin;
        Strata strata(configWith(origin, ""));
        CHECK(underscoreMetric(strata, "dropped") == 0);
        Response r = get(strata.port(), "/headers",
                         "X_Forwarded_Foo: evil\r\nX-Forwarded-Foo: good\r\nx_other: 1\r\n");
        REQUIRE(r.status == 200);
        EchoedHead seen(r.body);
        CHECK_FALSE(seen.has("X_Forwarded_Foo"));
        CHECK_FALSE(seen.has("x_other"));
        CHECK(seen.value("X-Forwarded-Foo") == "good");
        CHECK(underscoreMetric(strata, "dropped") == 2);
        CHECK(underscoreMetric(strata, "rejected") == 0);
    }

    TEST_CASE("allow forwards such fields as sent") {
        Origin origin;
        Strata strata(configWith(origin, "allow"));
        Response r = get(strata.port(), "/headers", "X_Forwarded_Foo: kept\r\n");
        REQUIRE(r.status == 200);
        CHECK(EchoedHead(r.body).value("X_Forwarded_Foo") == "kept");
        CHECK(underscoreMetric(strata, "dropped") == 0);
    }

    TEST_CASE("reject answers 400 and closes; nothing reaches the origin") {
        Origin origin;
        Strata strata(configWith(origin, "reject"));
        RawClient c(strata.port());
        c.send("GET /headers HTTP/1.1\r\nHost: t\r\nX_Forwarded_Foo: x\r\n\r\n");
        Response r = c.readResponse();
        CHECK(r.status == 400);
        CHECK(c.isClosed());
        CHECK(origin.totalCount("/headers") == 0);
        CHECK(underscoreMetric(strata, "rejected") == 1);
        // A request without such a name is served.
        CHECK(get(strata.port(), "/headers", "X-Forwarded-Foo: x\r\n").status == 200);
    }

    TEST_CASE("Content_Length and Transfer_Encoding are 400 in every mode") {
        for (const char* mode : {"", "drop", "allow", "reject"}) {
            CAPTURE(mode);
            Origin origin;
            Strata strata(configWith(origin, mode));
            expectFramingLookalikeRefused(strata, origin);
            CHECK(underscoreMetric(strata, "rejected") == 3);
            CHECK(underscoreMetric(strata, "dropped") == 0);
        }
    }
}
