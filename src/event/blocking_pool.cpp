#include "strata/event/blocking_pool.h"

#include <algorithm>
#include <pthread.h>

#include "strata/common/log.h"

namespace strata::event {

BlockingPool::BlockingPool(Options options) : max_queue_(options.max_queue) {
    const unsigned n = std::max(1u, options.threads);
    threads_.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
        threads_.emplace_back([this, i] { run(i); });
        std::string name = options.name.substr(0, 11) + "-" + std::to_string(i);
        ::pthread_setname_np(threads_.back().native_handle(), name.substr(0, 15).c_str());
    }
}

BlockingPool::~BlockingPool() {
    shutdown();
}

bool BlockingPool::submit(Loop& loop, Work work, std::function<void()> done) {
    return enqueue(Job{std::move(work), loop.handle(), std::move(done)});
}

bool BlockingPool::submit(Work work) {
    return enqueue(Job{std::move(work), nullptr, nullptr});
}

bool BlockingPool::enqueue(Job job) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ || queue_.size() >= max_queue_) {
            ++rejected_;
            return false;
        }
        queue_.push_back(std::move(job));
    }
    wake_.notify_one();
    return true;
}

void BlockingPool::shutdown() {
    std::deque<Job> discarded;
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && threads_.empty()) {
            return;
        }
        stopping_ = true;
        discarded.swap(queue_);
    }
    wake_.notify_all();
    for (auto& t : threads_) {
        if (t.joinable()) {
            t.join();
        }
    }
    std::lock_guard lock(mutex_);
    threads_.clear();
    // `discarded` (captures included) is destroyed here, on the caller's thread.
}

std::size_t BlockingPool::queued() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

std::uint64_t BlockingPool::rejected() const {
    std::lock_guard lock(mutex_);
    return rejected_;
}

void BlockingPool::run(unsigned index) {
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) {
                return;
            }
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        try {
            job.work(index);
        } catch (...) {
            // Work must not throw (data plane); the completion still runs so callers that wait
            // for it are released.
            log::countInternalError();
            LOG_ERROR("exception in blocking pool job");
        }
        if (job.loop && job.done) {
            job.loop->post(std::move(job.done));  // false: the loop is gone, drop it
        }
    }
}

}  // namespace strata::event
