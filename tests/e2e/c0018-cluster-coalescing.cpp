// Many instances, one cache (issue 14): three strata instances sharing two memcached servers
// coalesce a cold URL across instances through the L2 fill lease, so a surge costs the origin
// one request, not one per instance. The lease never turns an L2 or instance failure into a
// client error or a long wait: a killed owner, a killed memcached and an uncacheable answer all
// end the waits; a stale object is refreshed once for the whole cluster.
#include <csignal>
#include <optional>
#include <sstream>

#include "cache_support.h"

using namespace strata::test;

namespace {

std::string clusterConfig(const Origin& origin, const std::vector<const Memcached*>& memcached,
                          const std::string& l2_extra = "",
                          const std::string& upstream_extra = "") {
    std::string servers;
    for (const Memcached* m : memcached) {
        servers += (servers.empty() ? "\"" : ", \"") + m->addr() + "\"";
    }
    return cacheConfig(
        origin.serversYaml(), {},
        "workers: 1\n"
        "cache:\n"
        "  l2:\n"
        "    servers: [" +
            servers + "]\n" +
            (l2_extra.find("timeout:") == std::string::npos ? std::string("    timeout: 1s\n")
                                                            : std::string()) +
            l2_extra,
        upstream_extra);
}

struct Cluster {
    Cluster(const Origin& origin, const std::vector<const Memcached*>& memcached, int n,
            const std::string& l2_extra = "", const std::string& upstream_extra = "") {
        for (int i = 0; i < n; ++i) {
            instances.push_back(std::make_unique<Strata>(
                clusterConfig(origin, memcached, l2_extra, upstream_extra)));
        }
    }
    std::vector<std::uint16_t> ports() const {
        std::vector<std::uint16_t> out;
        for (const auto& s : instances) {
            out.push_back(s->port());
        }
        return out;
    }
    double leases(std::size_t i, const std::string& event) const {
        return metric(instances[i]->port("admin"), "strata_cache_fill_leases_total",
                      {"event=\"" + event + "\""});
    }
    double leasesAll(const std::string& event) const {
        double sum = 0;
        for (std::size_t i = 0; i < instances.size(); ++i) {
            sum += leases(i, event);
        }
        return sum;
    }
    double l2ErrorsAll() const {
        double sum = 0;
        for (const auto& s : instances) {
            std::istringstream lines(scrape(s->port("admin")));
            for (std::string line; std::getline(lines, line);) {
                if (line.starts_with("strata_cache_l2_errors_total{")) {
                    sum += std::stod(line.substr(line.rfind(' ') + 1));
                }
            }
        }
        return sum;
    }
    std::vector<std::unique_ptr<Strata>> instances;
};

// Sends one request to `port` without waiting for the answer (read it later).
std::unique_ptr<RawClient> sendOne(std::uint16_t port, const std::string& target) {
    auto client = std::make_unique<RawClient>(port);
    REQUIRE(client->send("GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n"));
    return client;
}

// One GET with the Host every burst() sends, so it shares their cache key.
Response getT(std::uint16_t port, const std::string& target) {
    return sendOne(port, target)->readResponse();
}

void checkAllOk(const std::vector<BurstOutcome>& out, const std::string& body) {
    int ok = 0;
    for (const auto& o : out) {
        INFO("error: " << o.error << " cache-status: " << o.cache_status);
        CHECK(o.status == 200);
        CHECK(o.body == body);
        ok += o.status == 200 ? 1 : 0;
    }
    CHECK(ok == static_cast<int>(out.size()));
}

}  // namespace

TEST_SUITE("e2e/cluster") {
    TEST_CASE("3 instances x 50 clients on a cold URL (50 ms origin): 1 origin request in all") {
        Origin origin;
        Memcached m1;
        Memcached m2;
        Cluster cluster(origin, {&m1, &m2}, 3);
        const std::string url = "/delay/50?" + ccParam("max-age=60");
        auto out = burst(cluster.ports(), url, 50);
        checkAllOk(out, "delayed 50ms\n");
        CHECK(origin.requestCount(0, "/delay/50") == 1);
        std::vector<double> ms;
        for (const auto& o : out) {
            ms.push_back(o.ms);
        }
        MESSAGE("cluster surge, 150 clients on 3 instances: median "
                << median(ms) << " ms, max " << *std::max_element(ms.begin(), ms.end()) << " ms");
        CHECK(cluster.leasesAll("taken") == 1);
        CHECK(cluster.leasesAll("waited") >= 1);
        CHECK(cluster.leasesAll("avoided") >= 1);
        CHECK(cluster.leasesAll("expired") == 0);
        // Later requests: hits everywhere, still one origin request.
        for (std::uint16_t port : cluster.ports()) {
            auto r = getT(port, url);
            CHECK(r.status == 200);
            CHECK(cacheStatusHas(r, "hit"));
        }
        CHECK(origin.requestCount(0, "/delay/50") == 1);
    }

    TEST_CASE("the lease owner is killed mid-fetch: the others fetch after the bound, none hang") {
        Origin origin;
        Memcached m1;
        Memcached m2;
        Cluster cluster(origin, {&m1, &m2}, 3, "    lease_wait: 1s\n");
        const std::string url = "/delay/1500?" + ccParam("max-age=60");
        auto owner_client = sendOne(cluster.instances[0]->port(), url);
        REQUIRE(eventually([&] { return cluster.leases(0, "taken") == 1; }, 5000ms));
        std::optional<std::vector<BurstOutcome>> out;
        double total = 0;
        std::thread surge([&] {
            out = burst({cluster.instances[1]->port(), cluster.instances[2]->port()}, url, 10,
                        &total);
        });
        REQUIRE(eventually(
            [&] { return cluster.leases(1, "waited") + cluster.leases(2, "waited") == 2; },
            5000ms));
        cluster.instances[0]->kill();  // its lease stays in memcached until it expires
        surge.join();
        REQUIRE(out.has_value());
        checkAllOk(*out, "delayed 1500ms\n");
        MESSAGE("owner killed: the surge took " << total << " ms (lease_wait 1s, origin 1.5s)");
        // Each instance waited out its 1 s cap, then fetched once for its local waiters.
        CHECK(total >= 2000);
        CHECK(total < 10000);
        CHECK(cluster.leases(1, "expired") == 1);
        CHECK(cluster.leases(2, "expired") == 1);
        CHECK(origin.requestCount(0, "/delay/1500") == 3);
    }

    TEST_CASE("a memcached server killed before a surge: per-instance coalescing, no errors") {
        Origin origin;
        Memcached m1;
        Memcached m2;
        Cluster cluster(origin, {&m1, &m2}, 3, "    timeout: 100ms\n");
        // Several URLs, so some keys live on the dead server and some on the live one; the
        // first surge is running when the server dies.
        for (int u = 0; u < 4; ++u) {
            CAPTURE(u);
            const std::string url =
                "/delay/" + std::to_string(50 + u) + "?" + ccParam("max-age=60");
            std::vector<BurstOutcome> out;
            std::thread surge([&] { out = burst(cluster.ports(), url, 15); });
            if (u == 0) {
                m2.process().signal(SIGKILL);
                m2.process().wait(5000ms);
            }
            surge.join();
            checkAllOk(out, "delayed " + std::to_string(50 + u) + "ms\n");
            const auto fetches = origin.requestCount(0, "/delay/" + std::to_string(50 + u));
            CHECK(fetches >= 1);
            CHECK(fetches <= 3);  // at worst one per instance, as without the lease
        }
    }

    TEST_CASE("an uncacheable answer releases the waiting instances at once") {
        Origin origin;
        Memcached m1;
        Memcached m2;
        Cluster cluster(origin, {&m1, &m2}, 3);  // lease_wait 5s: waiting it out would show
        const std::string url = "/delay/300?" + ccParam("no-store");
        auto owner_client = sendOne(cluster.instances[0]->port(), url);
        REQUIRE(eventually([&] { return cluster.leases(0, "taken") == 1; }, 5000ms));
        double total = 0;
        auto out =
            burst({cluster.instances[1]->port(), cluster.instances[2]->port()}, url, 10, &total);
        checkAllOk(out, "delayed 300ms\n");
        auto first = owner_client->readResponse();
        CHECK(first.status == 200);
        MESSAGE("uncacheable release: the waiting instances answered within " << total << " ms");
        CHECK(total < 2500);  // one wait for the owner's 300 ms, one own fetch; never the 5 s cap
        CHECK(cluster.leases(1, "pass") + cluster.leases(2, "pass") >= 1);
        int passes = 0;
        for (const auto& o : out) {
            passes += o.cache_status.find("hit-for-pass") != std::string::npos ? 1 : 0;
        }
        CHECK(passes >= 1);
        CHECK(cluster.leasesAll("expired") == 0);
    }

    TEST_CASE("a stale object with an ETag is revalidated once across instances") {
        Origin origin;
        Memcached m1;
        Memcached m2;
        Cluster cluster(origin, {&m1, &m2}, 3);
        const std::string url =
            "/seq-reval?" + ccParam("max-age=1") + "&" + hParam("ETag", "\"r1\"");
        REQUIRE(getT(cluster.instances[0]->port(), url).body == "seq 1 /seq-reval\n");
        REQUIRE(waitForL2Sets(cluster.instances[0]->port("admin"), 1));
        for (std::size_t i = 1; i < 3; ++i) {
            REQUIRE(getT(cluster.instances[i]->port(), url).body == "seq 1 /seq-reval\n");
        }
        waitPastOneSecondMaxAge();
        // Stale in every L1: one instance revalidates (a 304), the others wait for the
        // freshened copy in L2 instead of revalidating too.
        auto out = burst(cluster.ports(), url, 10);
        checkAllOk(out, "seq 1 /seq-reval\n");
        // An L2 error or an expired wait sends an instance to the origin on its own.
        INFO("l2 errors: " << cluster.l2ErrorsAll()
                           << ", expired waits: " << cluster.leasesAll("expired"));
        CHECK(origin.requestCount(0, "/seq-reval") == 2);
        // A waiter that read the stale record just before the 304 landed takes the released
        // lease, looks in L2 once more and finds the fresh copy: taken, but no origin request.
        CHECK(cluster.leasesAll("taken") >= 1);
        CHECK(cluster.leasesAll("avoided") >= 1);
        int revalidated = 0;
        for (const auto& o : out) {
            revalidated += o.cache_status.find("fwd-status=304") != std::string::npos ? 1 : 0;
        }
        CHECK(revalidated >= 1);
    }

    TEST_CASE("a stale object is refreshed once across instances") {
        Origin origin;
        Memcached m1;
        Memcached m2;
        Cluster cluster(origin, {&m1, &m2}, 3);
        const std::string url = "/seq-cluster?" + ccParam("max-age=1, stale-while-revalidate=60");
        REQUIRE(getT(cluster.instances[0]->port(), url).body == "seq 1 /seq-cluster\n");
        REQUIRE(waitForL2Sets(cluster.instances[0]->port("admin"), 1));
        // Every instance holds the object in its L1 (the others from L2).
        for (std::size_t i = 1; i < 3; ++i) {
            auto r = getT(cluster.instances[i]->port(), url);
            REQUIRE(r.body == "seq 1 /seq-cluster\n");
            CHECK(cacheStatusHas(r, "detail=l2"));
        }
        waitPastOneSecondMaxAge();
        // Stale everywhere at once: each instance serves it stale and wants a refresh.
        // The refresh is quick, so a client of the burst that arrives after it finished gets
        // the new object: either version is right, a third one is not.
        auto out = burst(cluster.ports(), url, 5);
        for (const auto& o : out) {
            INFO("error: " << o.error << " cache-status: " << o.cache_status);
            CHECK(o.status == 200);
            CHECK((o.body == "seq 1 /seq-cluster\n" || o.body == "seq 2 /seq-cluster\n"));
        }
        CHECK(eventually([&] { return origin.requestCount(0, "/seq-cluster") == 2; }, 5000ms));
        REQUIRE(eventually([&] { return cluster.leasesAll("taken") >= 1; }, 5000ms));
        // The instances that did not refresh pick the new object up from L2 on their next stale
        // hit, without asking the origin.
        for (int round = 0; round < 3; ++round) {
            for (std::uint16_t port : cluster.ports()) {
                CHECK(getT(port, url).status == 200);
            }
        }
        CHECK(eventually(
            [&] {
                for (std::uint16_t port : cluster.ports()) {
                    if (getT(port, url).body != "seq 2 /seq-cluster\n") {
                        return false;
                    }
                }
                return true;
            },
            5000ms));
        CHECK(origin.requestCount(0, "/seq-cluster") == 2);
    }
}
