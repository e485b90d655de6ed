#include <atomic>
#include <thread>

#include <doctest/doctest.h>

#include "strata/event/loop.h"

using namespace strata;
using namespace std::chrono_literals;

namespace {
struct Tracked : event::DeferredDeletable {
    explicit Tracked(bool& flag) : deleted(flag) {}
    ~Tracked() override { deleted = true; }
    bool& deleted;
};
}  // namespace

TEST_SUITE("event/loop") {
    TEST_CASE("post from another thread runs on the loop, in order") {
        event::Loop loop;
        std::vector<int> seen;
        std::thread poster([&] {
            for (int i = 0; i < 100; ++i) {
                loop.post([&seen, i] { seen.push_back(i); });
            }
            loop.post([&loop] { loop.stop(); });
        });
        loop.run();
        poster.join();
        REQUIRE(seen.size() == 100);
        for (int i = 0; i < 100; ++i) {
            CHECK(seen[static_cast<std::size_t>(i)] == i);
        }
    }

    TEST_CASE("deferred deletion happens after the current callback returns") {
        event::Loop loop;
        bool deleted = false;
        bool deleted_inside = true;
        loop.post([&] {
            loop.deferredDelete(std::make_unique<Tracked>(deleted));
            deleted_inside = deleted;
            loop.post([&loop] { loop.stop(); });
        });
        loop.run();
        CHECK_FALSE(deleted_inside);
        CHECK(deleted);
    }

    TEST_CASE("timers fire once, and a cancelled timer never fires") {
        event::Loop loop;
        int fired = 0;
        int cancelled_fired = 0;
        event::Timer cancelled(loop, [&] { cancelled_fired++; });
        event::Timer stopper(loop, [&] { loop.stop(); });
        event::Timer timer(loop, [&] {
            fired++;
            stopper.arm(20ms);
        });
        cancelled.arm(5ms);
        timer.arm(1ms);
        CHECK(cancelled.armed());
        cancelled.cancel();
        CHECK_FALSE(cancelled.armed());
        loop.run();
        CHECK(fired == 1);
        CHECK(cancelled_fired == 0);
    }
}
