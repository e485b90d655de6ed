// The rate limiter (src/proxy/rate_limiter.cpp) driven by a manual clock: the average rate, the
// burst, Retry-After's wait, keys kept apart, the bounded key table and state kept by a reload.
#include "strata/proxy/rate_limiter.h"

#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

namespace sp = strata::proxy;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

// Requests offered evenly at `offered` per second for `span`; how many pass.
int passedAtRate(sp::RateLimiter& limiter, double offered, nanoseconds span,
                 nanoseconds start = 0ns) {
    const auto step = nanoseconds(static_cast<std::int64_t>(1e9 / offered));
    int passed = 0;
    for (nanoseconds t = start; t < start + span; t += step) {
        passed += limiter.check("k", t).allowed ? 1 : 0;
    }
    return passed;
}

strata::config::RateLimit limitOf(double per_second, std::uint32_t burst) {
    strata::config::RateLimit limit;
    limit.enabled = true;
    limit.rate = std::to_string(per_second) + "/s";
    limit.rate_per_second = per_second;
    limit.burst = burst;
    return limit;
}

}  // namespace

TEST_SUITE("rate_limiter") {
    TEST_CASE("a burst passes at once, then the average rate") {
        sp::RateLimiter limiter(10, 5, 100);
        int at_once = 0;
        for (int i = 0; i < 20; ++i) {
            at_once += limiter.check("k", 1s).allowed ? 1 : 0;
        }
        CHECK(at_once == 5);
        // One emission interval (100 ms) later exactly one more fits.
        CHECK_FALSE(limiter.check("k", 1s + 99ms).allowed);
        CHECK(limiter.check("k", 1s + 100ms).allowed);
        CHECK_FALSE(limiter.check("k", 1s + 100ms).allowed);
    }

    TEST_CASE("under ten times the offered load the passed rate is the limit") {
        sp::RateLimiter limiter(100, 1, 100);
        // 1,000/s offered for 10 s: 100/s pass, to within one request.
        const int passed = passedAtRate(limiter, 1000, 10s);
        CHECK(passed >= 999);
        CHECK(passed <= 1001);
    }

    TEST_CASE("a burst adds to the first second only") {
        sp::RateLimiter limiter(100, 200, 100);
        const int first = passedAtRate(limiter, 1000, 1s);
        const int next = passedAtRate(limiter, 1000, 1s, 1s);
        CHECK(first >= 299);
        CHECK(first <= 301);
        CHECK(next >= 99);
        CHECK(next <= 101);
    }

    TEST_CASE("load under the limit always passes") {
        sp::RateLimiter limiter(100, 1, 100);
        CHECK(passedAtRate(limiter, 50, 10s) == 500);
    }

    TEST_CASE("retry_after is the wait until one request fits") {
        sp::RateLimiter limiter(2, 1, 100);  // one per 500 ms
        REQUIRE(limiter.check("k", 10s).allowed);
        const auto refused = limiter.check("k", 10s + 100ms);
        REQUIRE_FALSE(refused.allowed);
        CHECK(refused.retry_after == 400ms);
        CHECK_FALSE(limiter.check("k", 10s + 100ms + refused.retry_after - 1ns).allowed);
        CHECK(limiter.check("k", 10s + 100ms + refused.retry_after).allowed);
        // Refused requests do not push the next allowed time further out.
        for (int i = 0; i < 100; ++i) {
            CHECK_FALSE(limiter.check("k", 10s + 600ms).allowed);
        }
        CHECK(limiter.check("k", 11s).allowed);
    }

    TEST_CASE("keys have buckets of their own") {
        sp::RateLimiter limiter(1, 1, 100);
        CHECK(limiter.check("10.0.0.1", 5s).allowed);
        CHECK_FALSE(limiter.check("10.0.0.1", 5s).allowed);
        CHECK(limiter.check("10.0.0.2", 5s).allowed);
        CHECK(limiter.check("", 5s).allowed);  // key: route
        CHECK(limiter.keys() == 3);
    }

    TEST_CASE("the key table never grows past max_keys") {
        sp::RateLimiter limiter(1, 1, 1600);
        for (int i = 0; i < 100000; ++i) {
            limiter.check("10." + std::to_string(i), 5s);
        }
        CHECK(limiter.keys() <= 1600);
        CHECK(limiter.keys() >= 1500);  // shards fill evenly enough to use the table
        // The most recent key is still limited; a long-forgotten one starts afresh.
        CHECK_FALSE(limiter.check("10.99999", 5s).allowed);
        CHECK(limiter.check("10.0", 5s).allowed);
    }

    TEST_CASE("a key seen recently survives a flood of new keys") {
        sp::RateLimiter limiter(1, 1, 16 * 4);  // 4 per shard
        REQUIRE(limiter.check("busy", 5s).allowed);
        for (int i = 0; i < 1000; ++i) {
            limiter.check("busy", 5s);  // refreshes its place in the LRU
            limiter.check("new" + std::to_string(i), 5s);
        }
        CHECK_FALSE(limiter.check("busy", 5s).allowed);  // its bucket was kept
    }

    TEST_CASE("workers sharing one limiter pass the limit, not a multiple of it") {
        sp::RateLimiter limiter(1000, 1, 100);
        std::atomic<int> passed{0};
        std::vector<std::thread> workers;
        for (int w = 0; w < 4; ++w) {
            workers.emplace_back([&, w] {
                // Each thread offers 1,000/s over the same second, interleaved in time.
                for (int i = 0; i < 1000; ++i) {
                    const auto t = nanoseconds(i * 1'000'000 + w * 250'000);
                    passed += limiter.check("k", t).allowed ? 1 : 0;
                }
            });
        }
        for (auto& t : workers) {
            t.join();
        }
        // Out-of-order times from four threads make the count approximate, never 4x.
        CHECK(passed.load() >= 900);
        CHECK(passed.load() <= 1100);
    }

    TEST_CASE("a reload with the same settings keeps the buckets; a changed one starts afresh") {
        auto first = sp::rateLimiterFor("api", limitOf(1, 1));
        REQUIRE(first->check("c", 5s).allowed);
        auto same = sp::rateLimiterFor("api", limitOf(1, 1));
        CHECK(same == first);
        CHECK_FALSE(same->check("c", 5s).allowed);
        auto changed = sp::rateLimiterFor("api", limitOf(2, 1));
        CHECK(changed != first);
        CHECK(changed->check("c", 5s).allowed);
        CHECK(sp::rateLimiterFor("other", limitOf(1, 1)) != first);
        // Once no snapshot holds a limiter, the next one for that route is new.
        first.reset();
        same.reset();
        changed.reset();
        auto fresh = sp::rateLimiterFor("api", limitOf(1, 1));
        CHECK(fresh->check("c", 5s).allowed);
    }
}
