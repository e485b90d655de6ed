// strata --check: validates a config without serving; errors are FILE:LINE:COL: path: message.
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/config") {
    TEST_CASE("a good file exits 0") {
        CheckResult r = Strata::check(proxyConfig("[\"127.0.0.1:8000\"]"));
        CAPTURE(r.output);
        CHECK(r.exit_code == 0);
    }

    TEST_CASE("a bad file exits non-zero with FILE:LINE:COL for each error") {
        CheckResult r = Strata::check(
            "listeners:\n"
            "  - {name: http, bind: \"127.0.0.1:0\"}\n"
            "upstreams:\n"
            "  app:\n"
            "    servers: [\"127.0.0.1:99999\"]\n"
            "routes:\n"
            "  - {match: {path_prefix: /}, upstream: app}\n"
            "limits: {max_request_body_byte: 1KiB}\n");
        CAPTURE(r.output);
        CHECK(r.exit_code != 0);
        CHECK(r.output.find(r.file + ":5:") != std::string::npos);
        CHECK(r.output.find(r.file + ":8:") != std::string::npos);
        CHECK(r.output.find("max_request_body_byte") != std::string::npos);
    }

    TEST_CASE("a route naming an unknown upstream is an error") {
        CheckResult r = Strata::check(
            "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
            "upstreams: {app: {servers: [\"127.0.0.1:8000\"]}}\n"
            "routes: [{match: {path_prefix: /}, upstream: nope}]\n");
        CAPTURE(r.output);
        CHECK(r.exit_code != 0);
        CHECK(r.output.find(r.file + ":3:") != std::string::npos);
    }

    TEST_CASE("an unreadable file is an error naming the file") {
        TempDir dir;
        Process p({binaryFromEnv("STRATA_BIN"), "--check", "-c", dir.file("missing.yaml")},
                  dir.file("check"));
        auto code = p.wait(10000ms);
        REQUIRE(code.has_value());
        CHECK(*code != 0);
        CHECK((p.stdoutText() + p.stderrText()).find("missing.yaml") != std::string::npos);
    }
}
