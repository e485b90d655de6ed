#include "strata/proxy/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

namespace strata::proxy {

RateLimiter::RateLimiter(double rate_per_second, std::uint32_t burst, std::size_t max_keys)
    : rate_(rate_per_second),
      burst_(std::max<std::uint32_t>(burst, 1)),
      max_keys_(std::max<std::size_t>(max_keys, 1)),
      interval_ns_(static_cast<std::int64_t>(std::llround(1e9 / rate_per_second))),
      tolerance_ns_(interval_ns_ * static_cast<std::int64_t>(burst_)),
      per_shard_(std::max<std::size_t>(max_keys_ / kShards, 1)) {}

RateLimiter::Decision RateLimiter::check(std::string_view key, std::chrono::nanoseconds now) {
    Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
    const std::int64_t t = now.count();
    std::lock_guard lock(shard.mu);
    auto it = shard.entries.find(std::string(key));
    if (it == shard.entries.end()) {
        if (shard.entries.size() >= per_shard_) {
            shard.entries.erase(shard.lru.back());  // the least recently seen key forgets
            shard.lru.pop_back();
        }
        shard.lru.emplace_front(key);
        it = shard.entries.emplace(shard.lru.front(), Entry{t, shard.lru.begin()}).first;
    } else {
        shard.lru.splice(shard.lru.begin(), shard.lru, it->second.recent);
    }
    Entry& e = it->second;
    const std::int64_t next = std::max(e.tat_ns, t) + interval_ns_;
    if (next - t > tolerance_ns_) {
        return {false, std::chrono::nanoseconds(next - t - tolerance_ns_)};
    }
    e.tat_ns = next;
    return {};
}

std::size_t RateLimiter::keys() const {
    std::size_t n = 0;
    for (auto& shard : shards_) {
        std::lock_guard lock(shard.mu);
        n += shard.entries.size();
    }
    return n;
}

bool RateLimiter::sameAs(const config::RateLimit& limit) const {
    return limit.rate_per_second == rate_ && limit.burst == burst_ && limit.max_keys == max_keys_;
}

RateLimiterPtr rateLimiterFor(const std::string& route_name, const config::RateLimit& limit) {
    // Route name and key kind name the bucket table; weak: a limiter lives as long as some
    // snapshot uses it.
    static std::mutex mu;
    static std::map<std::string, std::weak_ptr<RateLimiter>> live;
    const std::string name = route_name + '\n' + limit.key;
    std::lock_guard lock(mu);
    if (auto it = live.find(name); it != live.end()) {
        if (auto existing = it->second.lock(); existing && existing->sameAs(limit)) {
            return existing;
        }
    }
    auto made = std::make_shared<RateLimiter>(limit.rate_per_second, limit.burst, limit.max_keys);
    live[name] = made;
    for (auto it = live.begin(); it != live.end();) {
        it = it->second.expired() ? live.erase(it) : std::next(it);
    }
    return made;
}

}  // namespace strata::proxy
