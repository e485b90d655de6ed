// A few threads for calls that block (libmemcached), so a worker loop never does.
//
//   worker loop ──submit(loop, work, done)──▶ bounded queue ──▶ pool thread runs work(i)
//        ▲                                                              │
//        └────────────── done() via LoopHandle::post ◀──────────────────┘
//
// The queue is bounded and submit() never waits: when it is full (or the pool is stopping) it
// returns false and runs nothing, and the caller treats that as a miss. `done` is always posted
// to the submitter's loop, never invoked inline, and dropped when that loop has been destroyed
// (the job keeps the loop's LoopHandle, not the Loop). Shutdown discards queued jobs: neither
// their work nor their completion runs.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "strata/event/loop.h"

namespace strata::event {

class BlockingPool {
public:
    // Runs on a pool thread; `thread_index` (0..threads-1) lets the caller keep per-thread state
    // (one memcached_st per thread) without locks.
    using Work = std::function<void(unsigned thread_index)>;

    struct Options {
        unsigned threads = 2;
        std::size_t max_queue = 1024;  // jobs waiting (not running); 0 = never queue
        std::string name = "pool";     // thread name prefix (pthread_setname_np, 15 chars)
    };

    explicit BlockingPool(Options options);
    ~BlockingPool();  // shutdown()
    BlockingPool(const BlockingPool&) = delete;
    BlockingPool& operator=(const BlockingPool&) = delete;

    // Queues `work`; once it has returned, `done` is posted to `loop`. Any thread. False when
    // the queue is full or the pool is stopping (nothing runs).
    bool submit(Loop& loop, Work work, std::function<void()> done);
    // Fire and forget.
    bool submit(Work work);

    // Stops accepting, discards queued jobs, waits for running ones, joins. Idempotent; not from
    // a pool thread.
    void shutdown();

    unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
    std::size_t queued() const;
    std::uint64_t rejected() const;  // submits refused (queue full or stopping)

private:
    struct Job {
        Work work;
        std::shared_ptr<LoopHandle> loop;  // null: no completion
        std::function<void()> done;
    };
    bool enqueue(Job job);
    void run(unsigned index);

    const std::size_t max_queue_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Job> queue_;  // guarded by mutex_
    bool stopping_ = false;  // guarded by mutex_
    std::uint64_t rejected_ = 0;
    std::vector<std::thread> threads_;
};

}  // namespace strata::event
