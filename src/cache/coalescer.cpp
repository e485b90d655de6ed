#include "strata/cache/coalescer.h"

#include <functional>

#include "strata/cache/l1_cache.h"

namespace strata::cache {
namespace {
// Bounds the hit-for-pass table: expired markers are swept when it grows past this.
constexpr std::size_t kMaxPassMarkers = 4096;
}  // namespace

Coalescer::Shard& Coalescer::shardFor(const std::string& key) {
    return shards_[hash64(key) % kShards];
}

Coalescer::Role Coalescer::join(const std::string& key, event::Loop& loop, Wake wake,
                                std::chrono::steady_clock::time_point now, EntryPtr* stale) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    auto pass = shard.pass_until.find(key);
    if (pass != shard.pass_until.end()) {
        if (pass->second > now) {
            return Role::Pass;
        }
        shard.pass_until.erase(pass);
    }
    auto [it, inserted] = shard.flights.try_emplace(key);
    if (inserted) {
        return Role::Leader;
    }
    if (stale != nullptr && it->second.stale) {
        *stale = it->second.stale;
        return Role::Stale;
    }
    it->second.waiters.push_back(Waiting{&loop, std::move(wake)});
    coalesced_waits_.fetch_add(1, std::memory_order_relaxed);
    return Role::Waiter;
}

void Coalescer::finish(const std::string& key, const Outcome& outcome,
                       std::chrono::steady_clock::time_point now,
                       std::chrono::milliseconds hit_for_pass) {
    std::vector<Waiting> waiters;
    {
        Shard& shard = shardFor(key);
        std::lock_guard lock(shard.mutex);
        auto it = shard.flights.find(key);
        if (it != shard.flights.end()) {
            waiters = std::move(it->second.waiters);
            shard.flights.erase(it);
        }
        if (outcome.uncacheable && hit_for_pass.count() > 0) {
            if (shard.pass_until.size() >= kMaxPassMarkers) {
                std::erase_if(shard.pass_until, [now](const auto& p) { return p.second <= now; });
            }
            if (shard.pass_until.size() < kMaxPassMarkers) {
                shard.pass_until[key] = now + hit_for_pass;
            }
        }
    }
    // Outside the lock: posting may allocate, and waiters may live on any worker.
    for (auto& waiter : waiters) {
        waiter.loop->post([wake = std::move(waiter.wake), outcome] { wake(outcome); });
    }
}

void Coalescer::offerStale(const std::string& key, EntryPtr entry) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    if (auto it = shard.flights.find(key); it != shard.flights.end()) {
        it->second.stale = std::move(entry);
    }
}

std::size_t Coalescer::inFlight() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        n += shard.flights.size();
    }
    return n;
}

std::uint64_t Coalescer::coalescedWaits() const {
    return coalesced_waits_.load(std::memory_order_relaxed);
}

}  // namespace strata::cache
