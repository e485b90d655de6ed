// SIGTERM drains: listeners close at once, requests in flight finish, then strata exits 0.
#include <signal.h>

#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

TEST_SUITE("e2e/server") {
    TEST_CASE("SIGTERM lets a slow request finish, refuses new connections, exits 0") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        const std::uint16_t port = strata.port();
        RawClient slow(port);
        slow.send("GET /delay/2000 HTTP/1.1\r\nHost: t\r\n\r\n");
        // Probe: the request is in flight once the origin has counted it.
        auto deadline = Clock::now() + 5s;
        while (origin.requestCount(0, "/delay/2000") == 0 && Clock::now() < deadline) {
            std::this_thread::sleep_for(5ms);
        }
        REQUIRE(origin.requestCount(0, "/delay/2000") == 1);

        strata.process().signal(SIGTERM);
        bool refused = false;
        for (auto until = Clock::now() + 1500ms; !refused && Clock::now() < until;) {
            refused = connectRefused(port);
            if (!refused) {
                std::this_thread::sleep_for(10ms);
            }
        }
        CHECK(refused);

        Response r = slow.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.body == "delayed 2000ms\n");
        auto code = strata.process().wait(10000ms);
        REQUIRE(code.has_value());
        CHECK(*code == 0);
    }

    TEST_CASE("during the drain the admin listener answers: /readyz 503, /metrics 200") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml(), "admin: {bind: \"127.0.0.1:0\"}\n"));
        const std::uint16_t admin = strata.port("admin");
        REQUIRE(get(admin, "/readyz").status == 200);
        RawClient slow(strata.port());
        slow.send("GET /delay/2000 HTTP/1.1\r\nHost: t\r\n\r\n");
        REQUIRE(eventually([&] { return origin.requestCount(0, "/delay/2000") == 1; }, 5000ms));

        strata.process().signal(SIGTERM);
        // The runbook's drain: the load balancer sees 503 while the request is still running.
        REQUIRE(eventually([&] { return get(admin, "/readyz").status == 503; }, 1500ms));
        Response metrics = get(admin, "/metrics");
        CHECK(metrics.status == 200);
        CHECK(metrics.body.find("strata_proxy_client_connections") != std::string::npos);
        CHECK(get(admin, "/status").body.find("\"draining\":true") != std::string::npos);
        CHECK(strata.process().running());

        Response r = slow.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.body == "delayed 2000ms\n");
        auto code = strata.process().wait(10000ms);
        REQUIRE(code.has_value());
        CHECK(*code == 0);
        CHECK(connectRefused(admin));
    }

    TEST_CASE("SIGTERM with nothing in flight exits 0 promptly") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        CHECK(get(strata.port(), "/").status == 200);
        auto start = Clock::now();
        CHECK(strata.stop(5000ms) == 0);
        CHECK(Clock::now() - start < 2s);
    }
}
