#include "strata/upstream/protection.h"

#include <algorithm>
#include <cmath>

namespace strata::upstream {

std::uint64_t slowStartWeight(std::uint32_t weight, std::chrono::nanoseconds elapsed,
                              std::chrono::milliseconds slow_start) {
    const std::uint64_t full = std::uint64_t{weight} * kWeightScale;
    if (slow_start.count() <= 0 || elapsed >= slow_start || elapsed.count() < 0) {
        return full;
    }
    // 10% + 90% x elapsed / slow_start, in integers: the ramp is exact for a manual clock.
    const auto total = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(slow_start).count());
    const auto done = static_cast<std::uint64_t>(elapsed.count());
    const std::uint64_t permille = 100 + (900 * done) / total;
    return std::max<std::uint64_t>(1, full * permille / 1000);
}

bool ConnectionQueue::enqueue(const TicketPtr& ticket, std::size_t max,
                              const std::function<bool()>& try_again, bool* served, bool front) {
    *served = false;
    std::lock_guard lock(mutex_);
    if (!front && tickets_.size() >= max) {
        return false;
    }
    waiting_.fetch_add(1);
    if (try_again()) {
        waiting_.fetch_sub(1);
        *served = true;
        return false;
    }
    if (front) {
        tickets_.push_front(ticket);
    } else {
        tickets_.push_back(ticket);
    }
    return true;
}

bool ConnectionQueue::remove(const TicketPtr& ticket) {
    std::lock_guard lock(mutex_);
    auto it = std::find(tickets_.begin(), tickets_.end(), ticket);
    if (it == tickets_.end()) {
        return false;
    }
    tickets_.erase(it);
    waiting_.fetch_sub(1);
    return true;
}

void ConnectionQueue::wake() {
    for (;;) {
        TicketPtr ticket;
        {
            std::lock_guard lock(mutex_);
            if (tickets_.empty()) {
                return;
            }
            ticket = std::move(tickets_.front());
            tickets_.pop_front();
            waiting_.fetch_sub(1);
        }
        auto self = shared_from_this();
        const bool posted = ticket->loop_->post([self, ticket] {
            if (ticket->cancelled_) {
                self->wake();  // the slot this wake stood for is still free
                return;
            }
            ticket->on_wake_();
        });
        if (posted) {
            return;
        }
        // That worker is gone: the slot goes to the next waiter.
    }
}

std::size_t ConnectionQueue::depth() const {
    std::lock_guard lock(mutex_);
    return tickets_.size();
}

std::int64_t RetryBudget::limit(std::int64_t requests) const {
    const auto by_ratio = static_cast<std::int64_t>(
        std::floor(ratio_ * static_cast<double>(std::max<std::int64_t>(0, requests))));
    return std::max<std::int64_t>(min_, by_ratio);
}

bool RetryBudget::tryStartRetry() {
    std::int64_t current = retries_.load(std::memory_order_relaxed);
    for (;;) {
        if (current >= limit(requests_.load(std::memory_order_relaxed))) {
            return false;
        }
        if (retries_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) {
            return true;
        }
    }
}

}  // namespace strata::upstream
