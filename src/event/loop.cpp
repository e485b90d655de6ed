#include "strata/event/loop.h"

#include <mutex>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "strata/common/assert.h"
#include "strata/common/log.h"

namespace strata::event {
struct timeval toTimeval(std::chrono::milliseconds d) {
    struct timeval tv;
    tv.tv_sec = static_cast<time_t>(d.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
    return tv;
}

// libevent's own locking (evthread_use_pthreads) is deliberately not enabled: it would put a
// mutex around every event operation on the hot path. The only cross-thread entry is post(),
// which wakes the loop through an eventfd.
Loop::Loop() {
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base_ = event_base_new_with_config(cfg);
    event_config_free(cfg);
    STRATA_RELEASE_ASSERT(base_ != nullptr);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    STRATA_RELEASE_ASSERT(wake_fd_ >= 0);
    posted_event_ = event_new(base_, wake_fd_, EV_READ | EV_PERSIST, &Loop::onPosted, this);
    event_add(posted_event_, nullptr);
    deferred_event_ = event_new(base_, -1, 0, &Loop::onDeferred, this);
    handle_ = std::make_shared<LoopHandle>(this);
}

Loop::~Loop() {
    {
        // Detach first: a post through the handle either finished or will see null.
        std::lock_guard lock(handle_->mutex_);
        handle_->loop_ = nullptr;
    }
    deferred_.clear();
    deleting_.clear();
    event_free(posted_event_);
    event_free(deferred_event_);
    ::close(wake_fd_);
    event_base_free(base_);
}

void Loop::run() {
    event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
}

void Loop::stop() {
    post([this] { event_base_loopbreak(base_); });
}

void Loop::post(std::function<void()> fn) {
    bool was_empty;
    {
        std::lock_guard lock(posted_mutex_);
        was_empty = posted_.empty();
        posted_.push_back(std::move(fn));
    }
    if (was_empty) {
        std::uint64_t one = 1;
        ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
        (void)ignored;
    }
}

bool LoopHandle::post(std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    if (loop_ == nullptr) {
        return false;
    }
    loop_->post(std::move(fn));
    return true;
}

void Loop::onPosted(int, short, void* arg) {
    LoopTimeScope time_scope;
    auto* self = static_cast<Loop*>(arg);
    std::uint64_t count;
    ssize_t ignored = ::read(self->wake_fd_, &count, sizeof count);
    (void)ignored;
    std::vector<std::function<void()>> batch;
    {
        std::lock_guard lock(self->posted_mutex_);
        batch.swap(self->posted_);
    }
    for (auto& fn : batch) {
        try {
            fn();
        } catch (...) {
            log::countInternalError();
            LOG_ERROR("exception in posted task");
        }
    }
}

void Loop::deferredDelete(DeferredDeletablePtr object) {
    if (deferred_.empty()) {
        event_active(deferred_event_, 0, 0);
    }
    deferred_.push_back(std::move(object));
}

void Loop::onDeferred(int, short, void* arg) {
    LoopTimeScope time_scope;
    auto* self = static_cast<Loop*>(arg);
    // Destructors may defer more deletions; those run on the next iteration. Both vectors
    // keep their capacity, so steady traffic defers without allocating.
    self->deleting_.swap(self->deferred_);
    self->deleting_.clear();
}

std::chrono::steady_clock::time_point Loop::now() {
    return std::chrono::steady_clock::now();
}

Timer::Timer(Loop& loop, std::function<void()> callback, std::function<void()> on_exception)
    : callback_(std::move(callback)), on_exception_(std::move(on_exception)) {
    event_ = evtimer_new(loop.base(), &Timer::onFire, this);
}

Timer::~Timer() {
    event_free(event_);
}

void Timer::arm(std::chrono::milliseconds delay) {
    const Clock::time_point now = loopTime();
    deadline_ = now + delay;
    armed_ = true;
    if (!scheduled_ || deadline_ < scheduled_at_) {
        schedule(deadline_, now);
    }
}

void Timer::cancel() {
    armed_ = false;  // a pending libevent timer finds nothing to do when it fires
}

void Timer::schedule(Clock::time_point at, Clock::time_point now) {
    struct timeval tv = toTimeval(std::chrono::ceil<std::chrono::milliseconds>(at - now));
    evtimer_add(event_, &tv);
    scheduled_ = true;
    scheduled_at_ = at;
}

void Timer::onFire(int, short, void* arg) {
    LoopTimeScope time_scope;
    auto* self = static_cast<Timer*>(arg);
    self->scheduled_ = false;
    if (!self->armed_) {
        return;
    }
    const Clock::time_point now = loopTime();
    if (now < self->deadline_) {
        self->schedule(self->deadline_, now);  // re-armed later since libevent was told
        return;
    }
    self->armed_ = false;
    if (!self->callback_) {
        return;
    }
    try {
        self->callback_();
    } catch (...) {
        log::countInternalError();
        LOG_ERROR("exception in timer callback");
        if (self->on_exception_) {
            try {
                self->on_exception_();
            } catch (...) {
                log::countInternalError();
                LOG_ERROR("exception in timer exception handler");
            }
        }
    }
}

}  // namespace strata::event
