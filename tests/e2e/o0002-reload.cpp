// Hot reload: SIGHUP and POST /reload swap the snapshot; a bad file changes nothing; listeners
// come and go; traffic during reloads loses nothing.
#include <atomic>
#include <csignal>
#include <thread>

#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string config(const std::string& servers, const std::string& extra_listener = "") {
    return "workers: 2\n"
           "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\"}\n" +
           extra_listener +
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  app: {servers: " +
           servers +
           "}\n"
           "routes:\n"
           "  - {name: all, match: {path_prefix: /}, upstream: app}\n"
           "logging: {access_log: off}\n";
}

std::map<std::string, std::uint16_t> readPorts(const std::string& file) {
    std::map<std::string, std::uint16_t> out;
    std::istringstream in(readFile(file));
    std::string name, addr;
    while (in >> name >> addr) {
        out[name] = static_cast<std::uint16_t>(std::stoul(addr.substr(addr.rfind(':') + 1)));
    }
    return out;
}

}  // namespace

TEST_SUITE("e2e/ops") {
    TEST_CASE("an invalid file changes nothing: failure counted, /status keeps the version") {
        Origin origin(1);
        Strata strata(config(origin.serversYaml()));
        const auto admin = strata.port("admin");
        writeFile(strata.configPath(),
                  "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
                  "upstreams: {app: {servers: [\"127.0.0.1:99999\"]}}\n");
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return metric(admin, "strata_server_config_reloads_total", {"result=\"failure\""}) == 1;
        }));
        CHECK(get(admin, "/status").body.find("\"version\":1,") != std::string::npos);
        CHECK(get(strata.port(), "/").status == 200);
        // Errors with positions are in the log.
        CHECK(strata.process().stderrText().find(":2:") != std::string::npos);
        CHECK(strata.process().stderrText().find("out of range") != std::string::npos);
    }

    TEST_CASE("a reload changing start-only keys warns per key and lists them in /status") {
        Origin origin(1);
        const std::string base = config(origin.serversYaml());
        Strata strata(base);
        const auto admin = strata.port("admin");
        CHECK(get(admin, "/status").body.find("\"pending_restart\":[]") != std::string::npos);
        // workers: 2 -> 3, and an L2 server list the running L2 client was not built with.
        std::string changed = base;
        changed.replace(changed.find("workers: 2"), 10, "workers: 3");
        changed += "cache: {l2: {servers: [\"127.0.0.1:1\"]}}\n";
        writeFile(strata.configPath(), changed);
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(admin, "/status").body.find("\"version\":2,") != std::string::npos;
        }));
        const std::string status = get(admin, "/status").body;
        CHECK(status.find("\"pending_restart\":[\"workers\",\"cache.l2.servers\"]") !=
              std::string::npos);
        CHECK(status.find("\"workers\":2,") != std::string::npos);  // still the running count
        const std::string log = strata.process().stderrText();
        CHECK(log.find("reload: workers changed 2 -> 3; takes effect after a restart") !=
              std::string::npos);
        CHECK(log.find("reload: cache.l2.servers changed [] -> [127.0.0.1:1]; takes effect "
                       "after a restart") != std::string::npos);
        CHECK(get(strata.port(), "/").status == 200);  // the rest of the reload applied

        // Back to the running values: nothing is pending any more.
        writeFile(strata.configPath(), base);
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(admin, "/status").body.find("\"version\":3,") != std::string::npos;
        }));
        CHECK(get(admin, "/status").body.find("\"pending_restart\":[]") != std::string::npos);
    }

    TEST_CASE("reload re-routes to new servers; listeners are added and removed") {
        Origin a(1);
        Origin b(1);
        Strata strata(config(a.serversYaml()));
        const auto admin = strata.port("admin");
        REQUIRE(get(strata.port(), "/x").status == 200);
        CHECK(a.requestCount(0, "/x") == 1);
        writeFile(strata.configPath(),
                  config(b.serversYaml(), "  - {name: extra, bind: \"127.0.0.1:0\"}\n"));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(admin, "/status").body.find("\"version\":2,") != std::string::npos;
        }));
        for (int i = 0; i < 4; ++i) {
            REQUIRE(get(strata.port(), "/x").status == 200);
        }
        CHECK(a.requestCount(0, "/x") == 1);
        CHECK(b.requestCount(0, "/x") == 4);
        auto ports = readPorts(strata.tmp() + "/ports");
        REQUIRE(ports.count("extra") == 1);
        CHECK(ports["http"] == strata.port());
        CHECK(get(ports["extra"], "/x").status == 200);
        // Remove it again.
        writeFile(strata.configPath(), config(b.serversYaml()));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] { return connectRefused(ports["extra"]); }));
        CHECK(get(strata.port(), "/x").status == 200);
        CHECK(readPorts(strata.tmp() + "/ports").count("extra") == 0);
    }

    TEST_CASE("reloads every 100ms under constant load lose no request") {
        Origin origin(2);
        Strata strata(config(origin.serversYaml()));
        BackgroundLoad load(strata.port(), 4, [](int) {
            return std::string("GET /bytes/100 HTTP/1.1\r\nHost: t\r\n\r\n");
        });
        for (int i = 0; i < 30; ++i) {
            // Alternate between the two servers and one of them, so upstreams really change.
            writeFile(strata.configPath(),
                      config(i % 2 ? origin.serversYaml() : "[\"" + origin.addr(0) + "\"]"));
            strata.process().signal(SIGHUP);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        load.stop();
        const auto admin = strata.port("admin");
        REQUIRE(eventually([&] {
            return metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) ==
                   31;
        }));
        CHECK(load.ok() > 500);
        CHECK(load.bad() == 0);
        CHECK(metric(admin, "strata_proxy_requests_total", {"status_class=\"5xx\""}) == -1);
    }
}
