#include <array>
#include <map>
#include <netinet/in.h>
#include <thread>
#include <unistd.h>

#include <doctest/doctest.h>

#include "strata/event/loop.h"
#include "strata/net/socket.h"
#include "strata/upstream/balancer.h"
#include "strata/upstream/pool.h"

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

config::Upstream withBalance(config::Upstream u, const char* balance) {
    u.balance = balance;
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

    TEST_CASE("every algorithm: a tried server is never picked again, -1 once all were tried") {
        for (const char* balance :
             {"round_robin", "least_connections", "random_two", "consistent_hash", "first"}) {
            CAPTURE(balance);
            upstream::ServerRegistry registry;
            upstream::UpstreamGroup group(withBalance(makeUpstream({1, 3, 1, 2, 1}), balance),
                                          registry);
            auto now = std::chrono::steady_clock::now();
            group.servers()[3]->setHealthy(false);  // down ones come last, but they still come
            for (int round = 0; round < 20; ++round) {
                upstream::TriedServers tried;
                const std::string key = "/k" + std::to_string(round);
                for (int i = 0; i < 5; ++i) {
                    int index = group.pick({tried, now, key});
                    REQUIRE(index >= 0);
                    CHECK_FALSE(tried.contains(static_cast<std::size_t>(index)));
                    if (i < 4) {
                        CHECK(index != 3);
                    }
                    tried.add(static_cast<std::size_t>(index));
                }
                CHECK(group.pick({tried, now, key}) == -1);
            }
        }
    }

    TEST_CASE("least_connections prefers idle servers, weighs load by weight, ties round robin") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(withBalance(makeUpstream({1, 2, 1}), "least_connections"),
                                      registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        SUBCASE("idle: spread by weight through the round-robin order") {
            std::array<int, 3> counts{};
            for (int i = 0; i < 400; ++i) {
                counts[static_cast<std::size_t>(group.pick({none, now, {}}))]++;
            }
            CHECK(counts[0] == 100);
            CHECK(counts[1] == 200);
            CHECK(counts[2] == 100);
        }
        SUBCASE("the idle server wins while the others are busy") {
            group.servers()[0]->in_flight = 3;
            group.servers()[1]->in_flight = 2;
            for (int i = 0; i < 50; ++i) {
                CHECK(group.pick({none, now, {}}) == 2);
            }
        }
        SUBCASE("active per weight: 2 active on weight 2 is as loaded as 1 on weight 1") {
            group.servers()[0]->in_flight = 1;
            group.servers()[1]->in_flight = 2;
            group.servers()[2]->in_flight = 2;
            std::array<int, 3> counts{};
            for (int i = 0; i < 400; ++i) {
                counts[static_cast<std::size_t>(group.pick({none, now, {}}))]++;
            }
            CHECK(counts[2] == 0);
            // A tie between 0 and 1: the weighted round-robin order decides, 1:2.
            CHECK(counts[0] == doctest::Approx(133).epsilon(0.05));
            CHECK(counts[1] == doctest::Approx(267).epsilon(0.05));
        }
        SUBCASE("simulated load: each pick holds its server until released") {
            std::array<int, 3> counts{};
            for (int i = 0; i < 300; ++i) {
                int index = group.pick({none, now, {}});
                counts[static_cast<std::size_t>(index)]++;
                group.servers()[static_cast<std::size_t>(index)]->in_flight++;
            }
            // Held requests end up proportional to weight: 75 / 150 / 75.
            CHECK(counts[0] == doctest::Approx(75).epsilon(0.03));
            CHECK(counts[1] == doctest::Approx(150).epsilon(0.03));
            CHECK(counts[2] == doctest::Approx(75).epsilon(0.03));
        }
    }

    TEST_CASE("random_two spreads idle picks by weight and avoids a loaded server") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(withBalance(makeUpstream({1, 2, 3}), "random_two"), registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        std::array<int, 3> counts{};
        for (int i = 0; i < 12000; ++i) {
            counts[static_cast<std::size_t>(group.pick({none, now, {}}))]++;
        }
        CHECK(counts[0] == doctest::Approx(2000).epsilon(0.1));
        CHECK(counts[1] == doctest::Approx(4000).epsilon(0.1));
        CHECK(counts[2] == doctest::Approx(6000).epsilon(0.1));

        group.servers()[2]->in_flight = 50;
        counts = {};
        for (int i = 0; i < 3000; ++i) {
            counts[static_cast<std::size_t>(group.pick({none, now, {}}))]++;
        }
        // Server 2 wins only when no second, distinct draw was found (8 tries): rarely.
        CHECK(counts[2] < 30);
    }

    TEST_CASE("consistent_hash: a key sticks to one server, keys spread by weight") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(withBalance(makeUpstream({1, 2, 1}), "consistent_hash"),
                                      registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        std::array<int, 3> counts{};
        for (int k = 0; k < 20000; ++k) {
            const std::string key = "/object/" + std::to_string(k);
            int index = group.pick({none, now, key});
            REQUIRE(index >= 0);
            counts[static_cast<std::size_t>(index)]++;
            if (k % 1000 == 0) {
                for (int again = 0; again < 5; ++again) {
                    CHECK(group.pick({none, now, key}) == index);
                }
            }
        }
        CHECK(counts[0] == doctest::Approx(5000).epsilon(0.2));
        CHECK(counts[1] == doctest::Approx(10000).epsilon(0.2));
        CHECK(counts[2] == doctest::Approx(5000).epsilon(0.2));

        SUBCASE("a request without a key goes round robin") {
            std::array<int, 3> rr{};
            for (int i = 0; i < 400; ++i) {
                rr[static_cast<std::size_t>(group.pick({none, now, {}}))]++;
            }
            CHECK(rr[0] == 100);
            CHECK(rr[1] == 200);
            CHECK(rr[2] == 100);
        }
    }

    TEST_CASE("consistent_hash: removing one of 5 servers moves only the keys it held (~1/5)") {
        upstream::ServerRegistry registry;
        config::Upstream five = withBalance(makeUpstream({1, 1, 1, 1, 1}), "consistent_hash");
        config::Upstream four = five;
        four.servers.erase(four.servers.begin() + 2);  // by address, not by position
        upstream::UpstreamGroup before(five, registry);
        upstream::UpstreamGroup after(four, registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        int moved = 0;
        int moved_elsewhere = 0;
        constexpr int kKeys = 10000;
        for (int k = 0; k < kKeys; ++k) {
            const std::string key = "user-" + std::to_string(k);
            const auto& was =
                before.servers()[static_cast<std::size_t>(before.pick({none, now, key}))];
            const auto& now_at =
                after.servers()[static_cast<std::size_t>(after.pick({none, now, key}))];
            if (was != now_at) {
                ++moved;
                moved_elsewhere += was == before.servers()[2] ? 0 : 1;
            }
        }
        CHECK(moved_elsewhere == 0);  // only the removed server's keys move
        CHECK(moved == doctest::Approx(kKeys / 5).epsilon(0.25));
    }

    TEST_CASE("consistent_hash bounded load: a hot key spills to the next server, then returns") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(withBalance(makeUpstream({1, 1, 1}), "consistent_hash"),
                                      registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        const int owner = group.pick({none, now, "hot"});
        REQUIRE(owner >= 0);
        // 10 active on the owner, none elsewhere: its bound is ceil(1.25 * 11 / 3) = 5.
        group.servers()[static_cast<std::size_t>(owner)]->in_flight = 10;
        const int spill = group.pick({none, now, "hot"});
        CHECK(spill >= 0);
        CHECK(spill != owner);
        for (int i = 0; i < 20; ++i) {
            CHECK(group.pick({none, now, "hot"}) == spill);  // the same next server each time
        }
        // Holding the spilled requests: the load spreads instead of piling up on one server.
        std::array<int, 3> held{};
        held[static_cast<std::size_t>(owner)] = 10;
        for (int i = 0; i < 40; ++i) {
            int index = group.pick({none, now, "hot"});
            held[static_cast<std::size_t>(index)]++;
            group.servers()[static_cast<std::size_t>(index)]->in_flight++;
        }
        const int total = 50;
        for (int s = 0; s < 3; ++s) {
            CAPTURE(s);
            CHECK(held[static_cast<std::size_t>(s)] <= (total * 5 + 11) / 12 + 1);  // 1.25 x 50/3
        }
        for (const auto& server : group.servers()) {
            server->in_flight = 0;
        }
        CHECK(group.pick({none, now, "hot"}) == owner);
    }

    TEST_CASE("first fills servers in config order") {
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(withBalance(makeUpstream({1, 5, 1}), "first"), registry);
        auto now = std::chrono::steady_clock::now();
        upstream::TriedServers none;
        for (int i = 0; i < 10; ++i) {
            CHECK(group.pick({none, now, {}}) == 0);
        }
        group.servers()[0]->recordFailure(now, 5s);
        CHECK(group.pick({none, now, {}}) == 1);
        CHECK(group.pick({none, now + 6s, {}}) == 0);  // back after its back-off
        upstream::TriedServers tried;
        tried.add(0);
        CHECK(group.pick({tried, now + 6s, {}}) == 1);
    }

    TEST_CASE("hash key sources parse as config validation admits them") {
        using Kind = upstream::HashKeySource::Kind;
        CHECK(upstream::parseHashKeySource("uri").kind == Kind::Uri);
        CHECK(upstream::parseHashKeySource("client").kind == Kind::Client);
        auto header = upstream::parseHashKeySource("header:X-User");
        CHECK(header.kind == Kind::Header);
        CHECK(header.name == "X-User");
        auto cookie = upstream::parseHashKeySource("cookie:sid");
        CHECK(cookie.kind == Kind::Cookie);
        CHECK(cookie.name == "sid");
        upstream::ServerRegistry registry;
        CHECK(upstream::UpstreamGroup(makeUpstream({1}), registry).hashKeySource().kind ==
              Kind::None);
        CHECK(upstream::hashKey("abc") == upstream::hashKey("abc"));
        CHECK(upstream::hashKey("abc") != upstream::hashKey("abd"));
    }
}

TEST_SUITE("upstream/pool") {
    // A pooled connection that opened with a PROXY header describes one client connection: only
    // requests with the same header may reuse it.
    TEST_CASE("connections are reused only with the PROXY header they opened with") {
        event::Loop loop;
        config::Endpoint endpoint;
        endpoint.host = "127.0.0.1";
        auto address = net::SocketAddress::fromEndpoint(endpoint);
        REQUIRE(address.ok());
        auto listen_fd = net::listenTcp(address.value(), false, 16);
        REQUIRE(listen_fd.ok());
        auto* in = reinterpret_cast<sockaddr_in*>(&address.value().storage);
        in->sin_port = htons(net::localPort(listen_fd.value()));
        auto server = std::make_shared<upstream::ServerState>("app", address.value(), "s");
        upstream::ConnectionPool pool(loop);

        auto a = pool.connect(server, nullptr, "PROXY TCP4 192.0.2.1 192.0.2.9 1 80\r\n");
        auto plain = pool.connect(server, nullptr);
        REQUIRE(a);
        REQUIRE(plain);
        upstream::UpstreamConnection* a_raw = a.get();
        upstream::UpstreamConnection* plain_raw = plain.get();
        pool.release(std::move(a), 4, 60s);
        pool.release(std::move(plain), 4, 60s);
        CHECK(pool.idleCount() == 2);

        CHECK_FALSE(pool.takeIdle(*server, false, "PROXY TCP4 192.0.2.2 192.0.2.9 2 80\r\n"));
        auto again = pool.takeIdle(*server, false, "PROXY TCP4 192.0.2.1 192.0.2.9 1 80\r\n");
        CHECK(again.get() == a_raw);
        auto none = pool.takeIdle(*server, false);
        CHECK(none.get() == plain_raw);
        CHECK(pool.idleCount() == 0);

        // Over max_idle, a PROXY connection pushes out the oldest parked one.
        pool.release(std::move(again), 1, 60s);
        auto b = pool.connect(server, nullptr, "PROXY TCP4 192.0.2.3 192.0.2.9 3 80\r\n");
        REQUIRE(b);
        upstream::UpstreamConnection* b_raw = b.get();
        pool.release(std::move(b), 1, 60s);
        CHECK(pool.idleCount() == 1);
        CHECK_FALSE(pool.takeIdle(*server, false, "PROXY TCP4 192.0.2.1 192.0.2.9 1 80\r\n"));
        CHECK(pool.takeIdle(*server, false, "PROXY TCP4 192.0.2.3 192.0.2.9 3 80\r\n").get() ==
              b_raw);
        ::close(listen_fd.value());
    }
}

TEST_SUITE("upstream/protection") {
    TEST_CASE("slow start weight ramps linearly from 10% to full") {
        using upstream::slowStartWeight;
        CHECK(slowStartWeight(1, 0s, 0ms) == 1000);  // off
        CHECK(slowStartWeight(1, 0s, 10s) == 100);
        CHECK(slowStartWeight(1, 5s, 10s) == 550);
        CHECK(slowStartWeight(10, 5s, 10s) == 5500);
        CHECK(slowStartWeight(1, 9s, 10s) == 910);
        CHECK(slowStartWeight(1, 10s, 10s) == 1000);
        CHECK(slowStartWeight(1, 1h, 10s) == 1000);
    }

    TEST_CASE("round robin: a ramping server takes exactly its effective share") {
        auto config = makeUpstream({1, 1});
        config.slow_start = 10s;
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(config, registry);
        const auto t0 = std::chrono::steady_clock::time_point(100s);
        group.servers()[0]->startRamp(t0);
        upstream::TriedServers none;
        auto count = [&](std::chrono::steady_clock::time_point now, int picks) {
            std::array<int, 2> n{};
            for (int i = 0; i < picks; ++i) {
                n[static_cast<std::size_t>(group.pick(none, now))]++;
            }
            return n;
        };
        // 100 laps at 10%: 10 turns of 100; at 55% (half way): 55 of 100; then even.
        auto start = count(t0, 110);
        CHECK(start[0] == 10);
        CHECK(start[1] == 100);
        auto half = count(t0 + 5s, 155);
        CHECK(half[0] == 55);
        CHECK(half[1] == 100);
        auto done = count(t0 + 10s, 200);
        CHECK(done[0] == 100);
        CHECK(done[1] == 100);
    }

    TEST_CASE("least_connections weighs load by the ramping weight") {
        auto config = withBalance(makeUpstream({1, 1}), "least_connections");
        config.slow_start = 10s;
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(config, registry);
        const auto t0 = std::chrono::steady_clock::time_point(100s);
        group.servers()[0]->startRamp(t0);
        upstream::TriedServers none;
        group.servers()[0]->in_flight = 1;
        group.servers()[1]->in_flight = 5;
        // At 10%, 1 active weighs as 10 against the other's 5; at full weight it is the lighter.
        CHECK(group.pick(none, t0) == 1);
        CHECK(group.pick(none, t0 + 4s) == 0);  // 46%: 1/0.46 = 2.2 < 5
        group.servers()[1]->in_flight = 2;
        CHECK(group.pick(none, t0 + 1s) == 1);   // 19%: 5.3 > 2
        CHECK(group.pick(none, t0 + 10s) == 0);  // full: 1 < 2
        group.servers()[0]->in_flight = 0;
        group.servers()[1]->in_flight = 0;
    }

    TEST_CASE("random_two draws a ramping server in proportion to its effective weight") {
        auto config = withBalance(makeUpstream({1, 1}), "random_two");
        config.slow_start = 10s;
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(config, registry);
        const auto t0 = std::chrono::steady_clock::time_point(100s);
        group.servers()[0]->startRamp(t0);
        upstream::TriedServers none;
        int ramping = 0;
        for (int i = 0; i < 11000; ++i) {
            ramping += group.pick(none, t0) == 0 ? 1 : 0;
        }
        // Expected 1/11 of the picks (0.1 : 1), i.e. 1000.
        CHECK(ramping > 700);
        CHECK(ramping < 1300);
        ramping = 0;
        for (int i = 0; i < 10000; ++i) {
            ramping += group.pick(none, t0 + 10s) == 0 ? 1 : 0;
        }
        CHECK(ramping > 4500);
        CHECK(ramping < 5500);
    }

    TEST_CASE("a server added by a reload ramps; the first snapshot's do not") {
        auto config = makeUpstream({1});
        config.slow_start = 10s;
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup first(config, registry);
        const auto now = std::chrono::steady_clock::now();
        CHECK(first.servers()[0]->effectiveWeight(1, now, 10s) == 1000);
        auto grown = makeUpstream({1, 1});
        grown.slow_start = 10s;
        upstream::UpstreamGroup second(grown, registry);
        CHECK(second.servers()[0] == first.servers()[0]);
        CHECK(second.servers()[1]->effectiveWeight(1, std::chrono::steady_clock::now(), 10s) < 200);
    }

    TEST_CASE("a server coming back up through its health check ramps") {
        upstream::ServerRegistry registry;
        auto config = makeUpstream({1});
        upstream::UpstreamGroup group(config, registry);
        auto& server = *group.servers()[0];
        const auto t0 = std::chrono::steady_clock::time_point(50s);
        server.setHealthy(false, t0);
        CHECK(server.effectiveWeight(1, t0, 10s) == 1000);
        server.setHealthy(true, t0);
        CHECK(server.effectiveWeight(1, t0, 10s) == 100);
        server.setHealthy(true, t0 + 5s);  // no transition: the ramp goes on
        CHECK(server.effectiveWeight(1, t0 + 5s, 10s) == 550);
    }

    TEST_CASE("max_connections: servers at their limit are passed over, then Busy") {
        auto config = makeUpstream({1, 1});
        config.servers[0].max_connections = 1;
        config.servers[1].max_connections = 2;
        upstream::ServerRegistry registry;
        upstream::UpstreamGroup group(config, registry);
        REQUIRE(group.limitsConnections());
        upstream::TriedServers none;
        const upstream::PickContext context{none, std::chrono::steady_clock::now(), {}};
        using Result = upstream::UpstreamGroup::LimitedPick::Result;
        std::array<int, 2> held{};
        for (int i = 0; i < 3; ++i) {
            auto p = group.pickWithLimits(context);
            REQUIRE(p.result == Result::Picked);
            CHECK(p.holds_slot);
            held[static_cast<std::size_t>(p.index)]++;
        }
        CHECK(held[0] == 1);
        CHECK(held[1] == 2);
        CHECK(group.pickWithLimits(context).result == Result::Busy);
        group.releaseSlot(1);
        auto p = group.pickWithLimits(context);
        CHECK(p.result == Result::Picked);
        CHECK(p.index == 1);
    }

    TEST_CASE("connection queue: FIFO wake-ups across threads, full, cancelled tickets") {
        event::Loop loop;
        auto queue = std::make_shared<upstream::ConnectionQueue>();
        std::vector<int> woken;
        std::vector<upstream::ConnectionQueue::TicketPtr> tickets;
        bool served = false;
        auto never = [] { return false; };
        for (int i = 0; i < 3; ++i) {
            tickets.push_back(std::make_shared<upstream::ConnectionQueue::Ticket>(
                loop, [&woken, i] { woken.push_back(i); }));
            CHECK(queue->enqueue(tickets.back(), 3, never, &served));
        }
        auto extra = std::make_shared<upstream::ConnectionQueue::Ticket>(loop, [] {});
        CHECK_FALSE(queue->enqueue(extra, 3, never, &served));  // full
        CHECK_FALSE(served);
        CHECK_FALSE(queue->enqueue(
            extra, 10, [] { return true; }, &served));  // slot found
        CHECK(served);
        CHECK(queue->depth() == 3);
        // Ticket 1 gives up after being popped for a wake: that wake passes to ticket 2.
        std::thread releaser([&] { queue->wake(); });
        releaser.join();
        std::thread releaser2([&] { queue->wake(); });
        releaser2.join();
        tickets[1]->cancel();
        loop.post([&loop] { loop.stop(); });
        loop.run();
        // 0 and (1, cancelled -> passed on) 2, in order.
        loop.post([&loop] { loop.stop(); });
        loop.run();
        CHECK(woken == std::vector<int>{0, 2});
        CHECK(queue->depth() == 0);
        CHECK_FALSE(queue->hasWaiters());
    }

    TEST_CASE("connection queue: a removed ticket no longer counts") {
        event::Loop loop;
        auto queue = std::make_shared<upstream::ConnectionQueue>();
        bool served = false;
        auto t = std::make_shared<upstream::ConnectionQueue::Ticket>(loop, [] {});
        CHECK(queue->enqueue(
            t, 1, [] { return false; }, &served));
        CHECK(queue->hasWaiters());
        CHECK(queue->remove(t));
        CHECK_FALSE(queue->remove(t));
        CHECK_FALSE(queue->hasWaiters());
        CHECK(queue->depth() == 0);
    }

    TEST_CASE("retry budget: max(min_retries, ratio x requests in flight)") {
        upstream::RetryBudget budget(0.2, 3);
        CHECK(budget.limit(0) == 3);
        CHECK(budget.limit(10) == 3);
        CHECK(budget.limit(20) == 4);
        CHECK(budget.limit(100) == 20);
        for (int i = 0; i < 20; ++i) {
            budget.requestStarted();
        }
        CHECK(budget.tryStartRetry());
        CHECK(budget.tryStartRetry());
        CHECK(budget.tryStartRetry());
        CHECK(budget.tryStartRetry());
        CHECK_FALSE(budget.tryStartRetry());  // 4 of 20 at 0.2
        budget.retryEnded();
        CHECK(budget.tryStartRetry());
        upstream::RetryBudget none(0.0, 0);
        none.requestStarted();
        CHECK_FALSE(none.tryStartRetry());
    }
}
