// Active health checks: a killed server is ejected after `fall` failed probes, gets no traffic,
// and returns after `rise` passing probes once it is back.
#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/ops") {
    TEST_CASE("a server killed is ejected by active checks and returns on rise") {
        Origin a(1);
        const std::uint16_t b_port = freePort();
        const std::string b_addr = "127.0.0.1:" + std::to_string(b_port);
        auto b = std::make_unique<Origin>(0, std::vector<std::string>{"--listen", b_addr});
        Strata strata(proxyConfig("[\"" + a.addr() + "\", \"" + b_addr + "\"]",
                                  "admin: {bind: \"127.0.0.1:0\"}\n",
                                  "health_check: {path: /, interval: 100ms, timeout: 50ms, "
                                  "rise: 2, fall: 2}"));
        const auto admin = strata.port("admin");
        const std::vector<std::string> b_label{"server=\"" + b_addr + "\""};
        REQUIRE(eventually([&] {
            return metric(admin, "strata_upstream_health_checks_total",
                          {b_label[0], "result=\"pass\""}) >= 2;
        }));
        CHECK(metric(admin, "strata_upstream_server_healthy", b_label) == 1);

        b.reset();  // killed
        REQUIRE(eventually(
            [&] { return metric(admin, "strata_upstream_server_healthy", b_label) == 0; }));
        CHECK(get(admin, "/status")
                  .body.find("\"address\":\"" + b_addr +
                             "\",\"weight\":1,"
                             "\"healthy\":false") != std::string::npos);
        CHECK(strata.process().stderrText().find("server " + b_addr + " is down") !=
              std::string::npos);
        // Ejected: every request goes to a, none fails.
        for (int i = 0; i < 20; ++i) {
            CHECK(get(strata.port(), "/h").status == 200);
        }
        CHECK(a.requestCount(0, "/h") == 20);

        b = std::make_unique<Origin>(0, std::vector<std::string>{"--listen", b_addr});
        REQUIRE(eventually(
            [&] { return metric(admin, "strata_upstream_server_healthy", b_label) == 1; }));
        CHECK(strata.process().stderrText().find("server " + b_addr + " is up") !=
              std::string::npos);
        for (int i = 0; i < 20; ++i) {
            CHECK(get(strata.port(), "/back").status == 200);
        }
        CHECK(b->requestCount(0, "/back") == 10);
    }
}
