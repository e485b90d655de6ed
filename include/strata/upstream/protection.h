// Upstream protection: slow start arithmetic, the per-upstream wait queue for servers at
// max_connections (HAProxy's maxconn + timeout queue), and the retry budget (Envoy's
// retry_budget). All shared by every worker; none of it is touched by an upstream that does not
// configure it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "strata/event/loop.h"

namespace strata::upstream {

// Effective weights are kept in thousandths of a unit of weight, so that a server of weight 1
// ramps too (from 100 to 1000) instead of rounding to "at least 1" for the whole ramp.
inline constexpr std::uint64_t kWeightScale = 1000;

// The effective weight (x kWeightScale) of a server of `weight` that came back `elapsed` ago,
// with upstreams.<name>.slow_start = `slow_start`: linear from 10% at elapsed 0 to 100% at
// slow_start, never below 1 thousandth. Without slow start (0) or after it, weight x scale.
std::uint64_t slowStartWeight(std::uint32_t weight, std::chrono::nanoseconds elapsed,
                              std::chrono::milliseconds slow_start);

// Requests waiting for a server slot, oldest first, shared by every worker (one per upstream
// name, kept across reloads through ServerRegistry). A waiter belongs to one worker's loop; a
// wake() from any thread posts to that loop, so the waiter runs on its own thread and a worker
// never blocks. A woken waiter that finds every slot taken again (someone else got it first)
// goes back to the front, so the order stays FIFO.
//
// No lost wake-ups: a waiter counts itself in waiting() before its last look at the slots, and
// a releaser frees its slot before reading waiting(), both sequentially consistent; the
// enqueue holds the mutex the releaser needs to pop.
class ConnectionQueue : public std::enable_shared_from_this<ConnectionQueue> {
public:
    // One waiting request. Created and cancelled on the waiter's own loop thread.
    class Ticket {
    public:
        Ticket(event::Loop& loop, std::function<void()> on_wake)
            : loop_(loop.handle()), on_wake_(std::move(on_wake)) {}
        // The waiter gave up (timeout, abort) or was served; a wake already on its way is
        // passed on to the next waiter instead of being lost.
        void cancel() { cancelled_ = true; }
        bool cancelled() const { return cancelled_; }

    private:
        friend class ConnectionQueue;
        std::shared_ptr<event::LoopHandle> loop_;
        std::function<void()> on_wake_;
        bool cancelled_ = false;  // owner loop thread only
    };
    using TicketPtr = std::shared_ptr<Ticket>;

    // Enqueues `ticket` unless `max` are waiting already (false: full) or `try_again` (called
    // under the queue lock, after this waiter is counted) finds a slot (false, *served = true).
    bool enqueue(const TicketPtr& ticket, std::size_t max, const std::function<bool()>& try_again,
                 bool* served, bool front = false);
    // Removes a cancelled ticket so it stops counting towards max and depth (true: it was
    // still queued).
    bool remove(const TicketPtr& ticket);
    // A slot freed (any thread): the oldest waiter is woken on its own loop.
    void wake();
    // Cheap test for the releaser's fast path.
    bool hasWaiters() const { return waiting_.load() > 0; }
    std::size_t depth() const;

private:
    mutable std::mutex mutex_;
    std::deque<TicketPtr> tickets_;
    std::atomic<std::int64_t> waiting_{0};
};

using ConnectionQueuePtr = std::shared_ptr<ConnectionQueue>;

// Retries in flight stay at most max(min_retries, ratio x requests in flight) (Envoy's
// retry_budget, over in-flight counts rather than a time window: no clock, no buckets, and a
// retry storm is bounded the moment it starts). An exchange counts as one request from start to
// end, and as one retry from its first admitted retry to its end, however many tries it makes.
class RetryBudget {
public:
    RetryBudget(double ratio, std::uint32_t min_retries) : ratio_(ratio), min_(min_retries) {}

    void requestStarted() { requests_.fetch_add(1, std::memory_order_relaxed); }
    void requestEnded() { requests_.fetch_sub(1, std::memory_order_relaxed); }
    // True (and counted until retryEnded()) when one more retry fits the budget.
    bool tryStartRetry();
    void retryEnded() { retries_.fetch_sub(1, std::memory_order_relaxed); }

    std::int64_t requestsInFlight() const { return requests_.load(); }
    std::int64_t retriesInFlight() const { return retries_.load(); }
    // The most retries in flight the budget allows with `requests` in flight.
    std::int64_t limit(std::int64_t requests) const;

private:
    double ratio_;
    std::uint32_t min_;
    std::atomic<std::int64_t> requests_{0};
    std::atomic<std::int64_t> retries_{0};
};

}  // namespace strata::upstream
