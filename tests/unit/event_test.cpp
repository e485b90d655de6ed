#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "strata/common/log.h"
#include "strata/event/blocking_pool.h"
#include "strata/event/buffer_memory.h"
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

    TEST_CASE("a throwing timer callback is counted, its owner told, and the loop runs on") {
        log::setLevel(log::Level::Off);
        event::Loop loop;
        int owner_told = 0;
        int later_fired = 0;
        event::Timer throwing(
            loop, [] { throw std::runtime_error("bug in a timeout handler"); },
            [&] { owner_told++; });
        event::Timer later(loop, [&] {
            later_fired++;
            loop.stop();
        });
        const std::uint64_t errors_before = log::internalErrors();
        throwing.arm(1ms);
        later.arm(10ms);
        loop.run();
        CHECK(owner_told == 1);
        CHECK(later_fired == 1);
        CHECK(log::internalErrors() == errors_before + 1);
        log::setLevel(log::Level::Info);
    }

    TEST_CASE("re-arming moves the deadline both ways; cancel then arm fires once, late") {
        event::Loop loop;
        using Clock = std::chrono::steady_clock;
        Clock::time_point extended_at{};
        Clock::time_point shortened_at{};
        int rearmed_fired = 0;
        event::Timer stopper(loop, [&] { loop.stop(); });
        event::Timer extended(loop, [&] { extended_at = Clock::now(); });
        event::Timer shortened(loop, [&] { shortened_at = Clock::now(); });
        event::Timer rearmed(loop, [&] { rearmed_fired++; });
        const auto start = Clock::now();
        extended.arm(10ms);
        extended.arm(80ms);  // libevent still waits for 10 ms: that wake-up must not fire it
        shortened.arm(500ms);
        shortened.arm(5ms);
        rearmed.arm(10ms);
        rearmed.cancel();
        rearmed.arm(40ms);
        stopper.arm(150ms);
        loop.run();
        CHECK(extended_at - start >= 80ms);
        // Fired (before the stopper) and on its new deadline, before the 80 ms one. An order,
        // not a time: a loop thread stalled past 150 ms still runs the due timers in order.
        CHECK(shortened_at != Clock::time_point{});
        CHECK(shortened_at < extended_at);
        CHECK(rearmed_fired == 1);
        CHECK_FALSE(extended.armed());
    }
}

TEST_SUITE("event/blocking_pool") {
    TEST_CASE("work runs on a pool thread and its completion on the submitting loop") {
        event::Loop loop;
        event::BlockingPool pool({/*threads=*/2, /*max_queue=*/64, "test"});
        const auto loop_thread = std::this_thread::get_id();
        std::atomic<int> worked{0};
        std::atomic<bool> work_on_loop_thread{false};
        int done = 0;
        bool done_on_loop_thread = true;
        bool submitted_all = true;
        loop.post([&] {
            for (int i = 0; i < 20; ++i) {
                submitted_all &= pool.submit(
                    loop,
                    [&](unsigned index) {
                        CHECK(index < 2);
                        if (std::this_thread::get_id() == loop_thread) {
                            work_on_loop_thread = true;
                        }
                        worked++;
                    },
                    [&] {
                        done_on_loop_thread &= std::this_thread::get_id() == loop_thread;
                        if (++done == 20) {
                            loop.stop();
                        }
                    });
            }
            // Completions are posted, never run inside submit().
            CHECK(done == 0);
        });
        loop.run();
        CHECK(submitted_all);
        CHECK(worked == 20);
        CHECK(done == 20);
        CHECK(done_on_loop_thread);
        CHECK_FALSE(work_on_loop_thread);
    }

    TEST_CASE("a full queue refuses at once instead of blocking") {
        event::BlockingPool pool({/*threads=*/1, /*max_queue=*/2, "test"});
        std::promise<void> release;
        std::shared_future<void> gate = release.get_future().share();
        std::promise<void> started;
        REQUIRE(pool.submit([&, gate](unsigned) {
            started.set_value();
            gate.wait();
        }));
        started.get_future().wait();  // the only thread is busy now
        CHECK(pool.submit([](unsigned) {}));
        CHECK(pool.submit([](unsigned) {}));
        const auto t0 = std::chrono::steady_clock::now();
        CHECK_FALSE(pool.submit([](unsigned) {}));
        // A blocking submit would wait for the gate, released only below; the bound leaves room
        // for the scheduler of a loaded machine (10 ms is about one preemption).
        CHECK(std::chrono::steady_clock::now() - t0 < 500ms);
        CHECK(pool.rejected() == 1);
        CHECK(pool.queued() == 2);
        release.set_value();
        pool.shutdown();
    }

    TEST_CASE("a completion for a destroyed loop is dropped, not run") {
        event::BlockingPool pool({/*threads=*/1, /*max_queue=*/8, "test"});
        std::promise<void> release;
        std::shared_future<void> gate = release.get_future().share();
        std::atomic<bool> work_ran{false};
        std::atomic<bool> done_ran{false};
        std::promise<void> finished;
        {
            event::Loop loop;
            REQUIRE(pool.submit(
                loop,
                [&, gate](unsigned) {
                    gate.wait();
                    work_ran = true;
                },
                [&] { done_ran = true; }));
        }  // the loop dies while the work is still queued or running
        release.set_value();
        REQUIRE(pool.submit([&](unsigned) { finished.set_value(); }));
        finished.get_future().wait();
        CHECK(work_ran);
        CHECK_FALSE(done_ran);
        CHECK_FALSE(std::make_shared<event::LoopHandle>(nullptr)->post([] {}));
    }

    TEST_CASE("shutdown discards queued jobs, joins, and refuses later submits") {
        auto pool = std::make_unique<event::BlockingPool>(
            event::BlockingPool::Options{/*threads=*/1, /*max_queue=*/8, "test"});
        std::promise<void> started;
        std::atomic<bool> stop_blocking{false};
        std::atomic<int> later_ran{0};
        REQUIRE(pool->submit([&](unsigned) {
            started.set_value();
            while (!stop_blocking) {
                std::this_thread::sleep_for(1ms);
            }
        }));
        started.get_future().wait();
        REQUIRE(pool->submit([&](unsigned) { later_ran++; }));
        std::thread stopper([&] {
            std::this_thread::sleep_for(20ms);
            stop_blocking = true;
        });
        pool->shutdown();
        stopper.join();
        CHECK(later_ran == 0);
        CHECK_FALSE(pool->submit([](unsigned) {}));
        pool->shutdown();  // idempotent
        pool.reset();
    }
}

TEST_SUITE("event/buffer_memory") {
    TEST_CASE("a freed block is reused for the next allocation of its class") {
        const std::size_t parked_before = event::cachedBufferBlocks();
        void* a = event::bufferAlloc(40000);  // the 64 KiB class
        std::memset(a, 0xab, 40000);
        event::bufferFree(a);
        CHECK(event::cachedBufferBlocks() == parked_before + 1);
        void* b = event::bufferAlloc(65536);
        CHECK(b == a);
        CHECK(event::cachedBufferBlocks() == parked_before);
        event::bufferFree(b);
    }

    TEST_CASE("realloc keeps the contents, in place while the class has room") {
        auto* p = static_cast<unsigned char*>(event::bufferAlloc(1100));  // 2 KiB class
        for (int i = 0; i < 100; ++i) {
            p[i] = static_cast<unsigned char>(i);
        }
        CHECK(event::bufferRealloc(p, 2048) == p);
        auto* grown = static_cast<unsigned char*>(event::bufferRealloc(p, 5000));
        REQUIRE(grown != nullptr);
        bool same = true;
        for (int i = 0; i < 100; ++i) {
            same = same && grown[i] == static_cast<unsigned char>(i);
        }
        CHECK(same);
        // Oversized blocks bypass the lists both ways.
        const std::size_t parked = event::cachedBufferBlocks();
        auto* huge = static_cast<unsigned char*>(event::bufferRealloc(grown, 1U << 20));
        REQUIRE(huge != nullptr);
        CHECK(huge[99] == 99);
        CHECK(event::cachedBufferBlocks() == parked + 1);  // the 8 KiB block was parked
        auto* back = static_cast<unsigned char*>(event::bufferRealloc(huge, 10));
        CHECK(back[9] == 9);
        event::bufferFree(back);
        event::bufferFree(event::bufferRealloc(nullptr, 0));
    }

    TEST_CASE("libevent's structures (below a chain's 1 KiB) bypass the lists") {
        const std::size_t parked = event::cachedBufferBlocks();
        void* small = event::bufferAlloc(136);  // an evbuffer
        std::memset(small, 0xcd, 136);
        event::bufferFree(small);
        CHECK(event::cachedBufferBlocks() == parked);
    }

    TEST_CASE("parking is capped: a burst of frees does not pin memory") {
        std::vector<void*> blocks;
        for (int i = 0; i < 1000; ++i) {
            blocks.push_back(event::bufferAlloc(1024));
        }
        const std::size_t before = event::cachedBufferBlocks();
        for (void* b : blocks) {
            event::bufferFree(b);
        }
        CHECK(event::cachedBufferBlocks() - before <= 256);
    }

    TEST_CASE("each thread has its own lists") {
        void* mine = event::bufferAlloc(2000);
        event::bufferFree(mine);
        void* theirs = nullptr;
        std::thread([&] {
            theirs = event::bufferAlloc(2000);
            event::bufferFree(theirs);
        }).join();
        CHECK(theirs != mine);
    }
}
