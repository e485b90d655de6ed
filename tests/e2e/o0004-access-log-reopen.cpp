// The access log carries the cache result and the TLS version fields, and SIGUSR1 reopens it
// after logrotate moved the file.
#include <csignal>
#include <filesystem>

#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/ops") {
    TEST_CASE("SIGUSR1 reopens the access log after a rename") {
        Origin origin(1);
        Strata strata(
            "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
            "upstreams: {app: {servers: " +
            origin.serversYaml() +
            "}}\n"
            "routes: [{match: {path_prefix: /}, upstream: app}]\n"
            "logging: {access_log: \"${tmp}/access.log\", access_format: json}\n");
        const std::string log = strata.tmp() + "/access.log";
        REQUIRE(get(strata.port(), "/first").status == 200);
        // Lines are flushed by the worker about once a second: poll for them.
        REQUIRE(eventually([&] { return readFile(log).find("/first") != std::string::npos; }));
        const std::string first = readFile(log);
        CHECK(first.find("\"cache\":\"bypass\"") != std::string::npos);
        CHECK(first.find("\"tls_version\":\"\"") != std::string::npos);

        std::filesystem::rename(log, log + ".1");
        strata.process().signal(SIGUSR1);
        REQUIRE(eventually([&] {
            return strata.process().stderrText().find("log files reopened") != std::string::npos;
        }));
        REQUIRE(get(strata.port(), "/second").status == 200);
        REQUIRE(eventually([&] {
            return std::filesystem::exists(log) &&
                   readFile(log).find("/second") != std::string::npos;
        }));
        CHECK(readFile(log + ".1").find("/second") == std::string::npos);
    }
}
