// Request ids: one per exchange, logged and forwarded upstream as X-Request-Id so a line of
// strata's access log can be matched with the origin's.
//
// 16 lowercase hex digits: the worker's id in the top byte, then a 56-bit counter that starts
// at a random value drawn when the worker starts. Unique across the workers of a process (the
// top byte differs) and, with overwhelming probability, across restarts (two runs collide only
// if their random starts land within the number of requests served of each other). Making one
// is an increment and 16 table lookups: no lock, no syscall, no allocation.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace strata::proxy {

class RequestIdGenerator {
public:
    using Id = std::array<char, 16>;

    // `random_start` is usually randomSeed(); tests pass fixed values.
    RequestIdGenerator(unsigned worker_id, std::uint64_t random_start);

    Id next();

    // 64 bits from the system's random source (getrandom via std::random_device).
    static std::uint64_t randomSeed();
    // The value an id was formatted from, for tests: format(n) is what next() returns for n.
    static Id format(std::uint64_t value);

private:
    std::uint64_t worker_bits_;
    std::uint64_t counter_;
};

inline std::string_view view(const RequestIdGenerator::Id& id) {
    return {id.data(), id.size()};
}

// An X-Request-Id a trusted client may hand strata to use as the exchange's id: 1 to 128
// characters that are safe in a log token and a header (letters, digits, "-_.:+/="), so a
// client-made id can neither forge log fields nor grow a log line without bound.
bool acceptableRequestId(std::string_view id);

}  // namespace strata::proxy
