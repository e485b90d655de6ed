// Request coalescing across all workers (Varnish's busy objects, nginx's cache lock without the
// lock wait): the first miss for a key fetches upstream, concurrent misses for the same key wait
// and are answered from the same response. An uncacheable answer releases the waiters at once
// and is remembered for a while (hit-for-pass) so later requests go straight upstream instead
// of queueing behind a fetch that will not be shared.
//
// Threading: join() and finish() may be called from any worker; wake-ups are always posted to
// the waiter's own loop, never run inline, so a waiter is woken on the thread that owns it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "strata/cache/entry.h"
#include "strata/event/loop.h"

namespace strata::cache {

class Coalescer {
public:
    struct Outcome {
        EntryPtr entry;            // the stored response, or null
        bool uncacheable = false;  // the response may not be shared: waiters fetch alone
    };
    using Wake = std::function<void(const Outcome&)>;

    enum class Role {
        Leader,  // fetch, then call finish()
        Waiter,  // `wake` runs on `loop` when the leader finishes
        Pass,    // hit-for-pass: fetch alone, do not call finish()
        Stale,   // a refresh is running and offered its stale entry: serve that, no wait
    };

    // With `stale` non-null, a flight that offered a stale entry answers Role::Stale with it and
    // registers nothing (the caller joins again with null if it cannot serve it).
    Role join(const std::string& key, event::Loop& loop, Wake wake,
              std::chrono::steady_clock::time_point now, EntryPtr* stale = nullptr);
    // The leader is a stale-while-revalidate refresh: requests arriving while it runs may be
    // answered with `entry` at once instead of waiting for it (the stale copy need not be in
    // L1: it may have come from L2).
    void offerStale(const std::string& key, EntryPtr entry);
    // The leader is done (stored, uncacheable, or failed with a null entry). With `uncacheable`
    // the key is marked hit-for-pass for `hit_for_pass`.
    void finish(const std::string& key, const Outcome& outcome,
                std::chrono::steady_clock::time_point now, std::chrono::milliseconds hit_for_pass);

    std::size_t inFlight() const;
    std::uint64_t coalescedWaits() const;

private:
    struct Waiting {
        event::Loop* loop;
        Wake wake;
    };
    struct Flight {
        std::vector<Waiting> waiters;
        EntryPtr stale;  // offerStale()
    };
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, Flight> flights;
        std::unordered_map<std::string, std::chrono::steady_clock::time_point> pass_until;
    };
    static constexpr std::size_t kShards = 16;

    Shard& shardFor(const std::string& key);

    Shard shards_[kShards];
    std::atomic<std::uint64_t> coalesced_waits_{0};
};

}  // namespace strata::cache
