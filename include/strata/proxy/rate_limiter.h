// routes[].rate_limit: a token bucket per key (the client address, a request header's value, or
// the route alone), shared by every worker, kept as GCRA: each key stores one time, its
// "theoretical arrival time", so a bucket costs a few dozen bytes and no timer. A request is
// allowed while that time stays within burst emission intervals of now.
//
// The key table is bounded (max_keys, split over shards, least recently used evicted first): a
// client with many addresses can push other keys out, which forgets their history, but can never
// grow memory. Each shard has its own mutex, so workers rarely wait on each other.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "strata/config/config.h"

namespace strata::proxy {

class RateLimiter {
public:
    struct Decision {
        bool allowed = true;
        std::chrono::nanoseconds retry_after{0};  // when refused: until one request fits
    };

    RateLimiter(double rate_per_second, std::uint32_t burst, std::size_t max_keys);

    // `now` on any monotonic clock (tests pass a manual one).
    Decision check(std::string_view key, std::chrono::nanoseconds now);
    std::size_t keys() const;
    // Whether a limit written as `limit` would behave as this one (a reload keeps its state).
    bool sameAs(const config::RateLimit& limit) const;

private:
    static constexpr std::size_t kShards = 16;
    struct Entry {
        std::int64_t tat_ns = 0;                  // theoretical arrival time
        std::list<std::string>::iterator recent;  // position in Shard::lru
    };
    struct Shard {
        std::mutex mu;
        std::unordered_map<std::string, Entry> entries;
        std::list<std::string> lru;  // most recently used first
    };
    const double rate_;
    const std::uint32_t burst_;
    const std::size_t max_keys_;
    const std::int64_t interval_ns_;   // one request's share of time: 1 / rate
    const std::int64_t tolerance_ns_;  // burst x interval
    const std::size_t per_shard_;
    mutable std::array<Shard, kShards> shards_;
};

using RateLimiterPtr = std::shared_ptr<RateLimiter>;

// The limiter for a route's rate_limit: the one the running config already has for that route
// when its settings are unchanged (state survives a reload), else a new one.
RateLimiterPtr rateLimiterFor(const std::string& route_name, const config::RateLimit& limit);

}  // namespace strata::proxy
