// Upstream protection through the real binary: servers[].max_connections with the upstream's
// queue (a surge waits its turn; a full queue and an expired wait answer 503), slow start after
// a reload adds a server, and the retry budget refusing retries when every server fails.
#include <csignal>

#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string request(const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n";
}

const std::string kAdmin = "admin: {bind: \"127.0.0.1:0\"}\n";

double queueTotal(std::uint16_t admin, const std::string& result) {
    return metric(admin, "strata_upstream_queue_total",
                  {"upstream=\"app\"", "result=\"" + result + "\""});
}

}  // namespace

TEST_SUITE("e2e/upstream-protection") {
    TEST_CASE("max_connections 2: a surge of 10 slow requests queues, all succeed, 2 at a time") {
        Origin origin(1);
        Strata strata(proxyConfig("[{address: \"" + origin.addr(0) + "\", max_connections: 2}]",
                                  kAdmin, "queue: {max: 100, timeout: 10s}"));
        const auto admin = strata.port("admin");
        std::vector<std::unique_ptr<RawClient>> clients;
        for (int i = 0; i < 10; ++i) {
            clients.push_back(std::make_unique<RawClient>(strata.port()));
        }
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 10; ++i) {
            // Distinct queries: the cache must not collapse them into one fetch.
            REQUIRE(clients[static_cast<std::size_t>(i)]->send(
                request("/delay/300?i=" + std::to_string(i))));
        }
        REQUIRE(eventually([&] {
            return metric(admin, "strata_upstream_queue_depth", {"upstream=\"app\""}) == 8;
        }));
        ReadOptions wait_long;
        wait_long.timeout = 15000ms;
        for (auto& c : clients) {
            CHECK(c->readResponse(wait_long).status == 200);
        }
        const auto elapsed = std::chrono::steady_clock::now() - t0;
        // 5 rounds of 300 ms with 2 at once; unlimited it would take one round.
        CHECK(elapsed >= 1450ms);
        CHECK(elapsed < 6000ms);
        CHECK(origin.requestCount(0, "/delay/300") == 10);
        CHECK(queueTotal(admin, "queued") == 8);
        CHECK(queueTotal(admin, "full") == 0);
        CHECK(queueTotal(admin, "timeout") == 0);
        CHECK(metric(admin, "strata_upstream_queue_depth", {"upstream=\"app\""}) == 0);
    }

    TEST_CASE("a full queue answers 503 at once") {
        Origin origin(1);
        Strata strata(proxyConfig("[{address: \"" + origin.addr(0) + "\", max_connections: 1}]",
                                  kAdmin, "queue: {max: 1, timeout: 10s}"));
        const auto admin = strata.port("admin");
        RawClient busy(strata.port());
        REQUIRE(busy.send(request("/delay/1500?a")));
        REQUIRE(eventually([&] {
            return metric(admin, "strata_upstream_server_in_flight",
                          {"server=\"" + origin.addr(0) + "\""}) == 1;
        }));
        RawClient waiting(strata.port());
        REQUIRE(waiting.send(request("/delay/10?b")));
        REQUIRE(eventually([&] { return queueTotal(admin, "queued") == 1; }));
        RawClient refused(strata.port());
        const auto t0 = std::chrono::steady_clock::now();
        REQUIRE(refused.send(request("/delay/10?c")));
        CHECK(refused.readResponse().status == 503);
        CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);  // not after the busy one
        CHECK(queueTotal(admin, "full") == 1);
        CHECK(busy.readResponse().status == 200);
        CHECK(waiting.readResponse().status == 200);
        CHECK(origin.requestCount(0, "/delay/10") == 1);
    }

    TEST_CASE("a wait longer than queue.timeout answers 503") {
        Origin origin(1);
        Strata strata(proxyConfig("[{address: \"" + origin.addr(0) + "\", max_connections: 1}]",
                                  kAdmin, "queue: {max: 10, timeout: 200ms}"));
        const auto admin = strata.port("admin");
        RawClient busy(strata.port());
        REQUIRE(busy.send(request("/delay/2000?a")));
        REQUIRE(eventually([&] {
            return metric(admin, "strata_upstream_server_in_flight",
                          {"server=\"" + origin.addr(0) + "\""}) == 1;
        }));
        RawClient late(strata.port());
        const auto t0 = std::chrono::steady_clock::now();
        REQUIRE(late.send(request("/delay/10?b")));
        CHECK(late.readResponse().status == 503);
        const auto waited = std::chrono::steady_clock::now() - t0;
        CHECK(waited >= 180ms);
        CHECK(waited < 1500ms);
        CHECK(queueTotal(admin, "timeout") == 1);
        CHECK(metric(admin, "strata_upstream_queue_depth", {"upstream=\"app\""}) == 0);
        CHECK(busy.readResponse().status == 200);
        CHECK(origin.requestCount(0, "/delay/10") == 0);
    }

    TEST_CASE("retry budget: with no room for retries a failing request is not retried") {
        std::vector<std::string> servers;
        std::string dead = "[";
        for (int i = 0; i < 3; ++i) {
            servers.push_back("127.0.0.1:" + std::to_string(freePort()));
            dead += (i > 0 ? ", \"" : "\"") + servers.back() + "\"";
        }
        dead += "]";
        // Retries over all servers (the counter is by the server retried on).
        auto retries = [&](std::uint16_t admin) {
            const std::string text = scrape(admin);
            double sum = 0;
            for (const auto& server : servers) {
                sum += std::max(0.0, metricIn(text, "strata_upstream_retries_total",
                                              {"server=\"" + server + "\""}));
            }
            return sum;
        };
        SUBCASE("without a budget max_tries applies") {
            Strata strata(proxyConfig(dead, kAdmin, "max_tries: 3"));
            const auto admin = strata.port("admin");
            CHECK(get(strata.port(), "/x").status == 502);
            CHECK(retries(admin) == 2);
        }
        SUBCASE("ratio 0, min_retries 0: every retry is refused and counted") {
            Strata strata(proxyConfig(
                dead, kAdmin, "max_tries: 3\n    retry_budget: {ratio: 0, min_retries: 0}"));
            const auto admin = strata.port("admin");
            CHECK(get(strata.port(), "/x").status == 502);
            CHECK(get(strata.port(), "/y").status == 502);
            CHECK(retries(admin) == 0);
            CHECK(metric(admin, "strata_upstream_retry_budget_exhausted_total",
                         {"upstream=\"app\""}) == 2);
        }
        SUBCASE("min_retries 1 admits one retry in flight") {
            Strata strata(proxyConfig(
                dead, kAdmin, "max_tries: 3\n    retry_budget: {ratio: 0, min_retries: 1}"));
            const auto admin = strata.port("admin");
            CHECK(get(strata.port(), "/x").status == 502);
            // One retry admitted per request (it stays in flight until the request ends).
            CHECK(retries(admin) == 2);
            CHECK(metric(admin, "strata_upstream_retry_budget_exhausted_total",
                         {"upstream=\"app\""}) == 0);
        }
    }

    TEST_CASE("slow start: a server added by a reload takes a small, then its full share") {
        Origin origin(2);
        const std::string one = "[\"" + origin.addr(0) + "\"]";
        const std::string both = "[\"" + origin.addr(0) + "\", \"" + origin.addr(1) + "\"]";
        Strata strata(proxyConfig(one, kAdmin, "slow_start: 3s"));
        const auto admin = strata.port("admin");
        writeFile(strata.configPath(), proxyConfig(both, kAdmin, "slow_start: 3s"));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(admin, "/status").body.find("\"version\":2,") != std::string::npos;
        }));
        RawClient c(strata.port());
        auto burst = [&](const std::string& path) {
            for (int i = 0; i < 100; ++i) {
                REQUIRE(c.send(request(path + "?i=" + std::to_string(i))));
                REQUIRE(c.readResponse().status == 200);
            }
        };
        burst("/early");
        const auto early = origin.requestCount(1, "/early");
        CAPTURE(early);
        // Within the first ~0.5 s of the ramp the new server's weight is 10-25% of the old
        // one's: well under an even split (50).
        CHECK(early >= 3);
        CHECK(early <= 35);
        REQUIRE(eventually(
            [&] {
                origin.reset();
                burst("/late");
                const auto late = origin.requestCount(1, "/late");
                return late >= 45 && late <= 55;
            },
            8000ms));
    }
}
