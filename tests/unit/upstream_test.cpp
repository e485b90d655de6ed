#include <array>
#include <map>

#include <doctest/doctest.h>

#include "strata/upstream/balancer.h"

using namespace strata;
using namespace std::chrono_literals;

namespace {

config::Upstream makeUpstream(std::vector<std::uint32_t> weights) {
    config::Upstream u;
    u.name = "app";
    for (std::size_t i = 0; i < weights.size(); ++i) {
        config::UpstreamServer s;
        s.address.host = "127.0.0.1";
        s.address.port = static_cast<std::uint16_t>(8000 + i);
        s.address.text = "127.0.0.1:" + std::to_string(8000 + i);
        s.weight = weights[i];
        u.servers.push_back(s);
    }
    return u;
}

}  // namespace

TEST_SUITE("upstream/balancer") {
    TEST_CASE("round robin spreads 3000 picks over 3 servers exactly evenly") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({1, 1, 1}), registry);
        std::array<int, 3> counts{};
        auto now = std::chrono::steady_clock::now();
        for (int i = 0; i < 3000; ++i) {
            int index = group.pick({}, now);
            REQUIRE(index >= 0);
            counts[static_cast<std::size_t>(index)]++;
        }
        CHECK(counts[0] == 1000);
        CHECK(counts[1] == 1000);
        CHECK(counts[2] == 1000);
    }

    TEST_CASE("smooth weighted schedule interleaves instead of bunching") {
        auto schedule = upstream::buildSchedule({5, 1, 1});
        REQUIRE(schedule.size() == 7);
        std::map<int, int> counts;
        for (auto s : schedule) {
            counts[s]++;
        }
        CHECK(counts[0] == 5);
        CHECK(counts[1] == 1);
        CHECK(counts[2] == 1);
        // never more than 3 of the heavy server in a row
        int run = 0;
        int longest = 0;
        for (auto s : schedule) {
            run = (s == 0) ? run + 1 : 0;
            longest = std::max(longest, run);
        }
        CHECK(longest <= 3);
    }

    TEST_CASE("weights are honoured over many picks") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({1, 2}), registry);
        std::array<int, 2> counts{};
        auto now = std::chrono::steady_clock::now();
        for (int i = 0; i < 3000; ++i) {
            counts[static_cast<std::size_t>(group.pick({}, now))]++;
        }
        CHECK(counts[0] == 1000);
        CHECK(counts[1] == 2000);
    }

    TEST_CASE("tried servers are skipped and -1 comes when all were tried") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({1, 1, 1}), registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers tried;
        for (int i = 0; i < 3; ++i) {
            int index = group.pick(tried, now);
            REQUIRE(index >= 0);
            CHECK_FALSE(tried.contains(static_cast<std::size_t>(index)));
            tried.add(static_cast<std::size_t>(index));
        }
        CHECK(group.pick(tried, now) == -1);
    }

    TEST_CASE("past 64 servers a tried server is never picked again (no index aliasing)") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream(std::vector<std::uint32_t>(130, 1)), registry);
        auto now = std::chrono::steady_clock::now();
        // Index 65 aliased index 1 in a 64-bit mask: trying 65 would skip 1 and retry 65.
        for (std::size_t first : {std::size_t{1}, std::size_t{65}, std::size_t{129}}) {
            CAPTURE(first);
            upstream::TriedServers tried;
            tried.add(first);
            for (int round = 0; round < 300; ++round) {
                int index = group.pick(tried, now);
                REQUIRE(index >= 0);
                CHECK(static_cast<std::size_t>(index) != first);
            }
        }
        upstream::TriedServers ten;
        for (std::size_t i = 0; i < 10; ++i) {
            int index = group.pick(ten, now);
            REQUIRE(index >= 0);
            CHECK_FALSE(ten.contains(static_cast<std::size_t>(index)));
            ten.add(static_cast<std::size_t>(index));
        }
        CHECK(ten.size() == 10);
    }

    TEST_CASE("a backing-off server is skipped and the others share its load evenly") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({1, 1, 1}), registry);
        auto now = std::chrono::steady_clock::now();
        group.servers()[1]->recordFailure(now, 5s);
        std::array<int, 3> counts{};
        for (int i = 0; i < 1000; ++i) {
            counts[static_cast<std::size_t>(group.pick({}, now))]++;
        }
        CHECK(counts[1] == 0);
        CHECK(counts[0] == doctest::Approx(500).epsilon(0.02));
        CHECK(counts[2] == doctest::Approx(500).epsilon(0.02));

        SUBCASE("and comes back once the back-off expired") {
            auto later = now + 6s;
            bool seen = false;
            for (int i = 0; i < 3; ++i) {
                seen = seen || group.pick({}, later) == 1;
            }
            CHECK(seen);
        }
        SUBCASE("and is reset by a success") {
            group.servers()[1]->recordSuccess();
            CHECK(group.servers()[1]->isAvailable(now));
            CHECK(group.servers()[1]->consecutiveFailures() == 0);
        }
    }

    TEST_CASE("when every server is down one is still tried rather than failing everything") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({1, 1}), registry);
        auto now = std::chrono::steady_clock::now();
        for (const auto& s : group.servers()) {
            s->recordFailure(now, 5s);
        }
        CHECK(group.pick({}, now) >= 0);
        group.servers()[0]->setHealthy(false);
        group.servers()[1]->setHealthy(false);
        CHECK(group.pick({}, now) >= 0);
    }

    TEST_CASE("server state survives a reload through the registry") {
        upstream::ServerRegistry registry;
        auto first = std::make_unique<upstream::UpstreamGroup>(makeUpstream({1, 1}), registry);
        auto now = std::chrono::steady_clock::now();
        first->servers()[0]->recordFailure(now, 5s);
        upstream::UpstreamGroup second(makeUpstream({1, 1, 1}), registry);
        CHECK(second.servers()[0].get() == first->servers()[0].get());
        CHECK_FALSE(second.servers()[0]->isAvailable(now));
        CHECK(second.servers()[2]->isAvailable(now));
    }

    TEST_CASE("passive back-off doubles with consecutive failures, bounded at 32x") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({1}), registry);
        auto& s = *group.servers()[0];
        auto t = std::chrono::steady_clock::now();
        s.recordFailure(t, 1s);  // 1st failure: 1s
        CHECK_FALSE(s.isAvailable(t + 999ms));
        CHECK(s.isAvailable(t + 1001ms));
        s.recordFailure(t, 1s);  // 2nd: 2s
        CHECK_FALSE(s.isAvailable(t + 1999ms));
        CHECK(s.isAvailable(t + 2001ms));
        for (int i = 0; i < 20; ++i) {
            s.recordFailure(t, 1s);
        }
        CHECK_FALSE(s.isAvailable(t + 31s));
        CHECK(s.isAvailable(t + 33s));  // bounded
        s.recordSuccess();
        CHECK(s.isAvailable(t));
        s.recordFailure(t, 1s);  // back to 1s after a success
        CHECK(s.isAvailable(t + 1001ms));
    }

    TEST_CASE("RoundRobinBalancer alone: weighted order, tried skipped, down servers avoided") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(makeUpstream({3, 1}), registry);
        upstream::RoundRobinBalancer rr(group.servers(), {3, 1});
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        std::array<int, 2> counts{};
        for (int i = 0; i < 400; ++i) {
            counts[static_cast<std::size_t>(rr.pick({none, now, {}}))]++;
        }
        CHECK(counts[0] == 300);
        CHECK(counts[1] == 100);

        upstream::TriedServers tried;
        tried.add(0);
        for (int i = 0; i < 50; ++i) {
            CHECK(rr.pick({tried, now, {}}) == 1);
        }
        tried.add(1);
        CHECK(rr.pick({tried, now, {}}) == -1);

        group.servers()[0]->setHealthy(false);
        for (int i = 0; i < 50; ++i) {
            CHECK(rr.pick({none, now, {}}) == 1);
        }
        upstream::TriedServers only_down;
        only_down.add(1);
        CHECK(rr.pick({only_down, now, {}}) == 0);  // down, but better than failing
    }
}
