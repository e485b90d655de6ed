#include "strata/proxy/request_id.h"

#include <random>

namespace strata::proxy {

bool acceptableRequestId(std::string_view id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    for (char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':' ||
                        c == '+' || c == '/' || c == '=';
        if (!ok) {
            return false;
        }
    }
    return true;
}
namespace {
constexpr std::uint64_t kCounterMask = (std::uint64_t{1} << 56) - 1;
}  // namespace

RequestIdGenerator::RequestIdGenerator(unsigned worker_id, std::uint64_t random_start)
    : worker_bits_(static_cast<std::uint64_t>(worker_id & 0xffu) << 56),
      counter_(random_start & kCounterMask) {}

RequestIdGenerator::Id RequestIdGenerator::next() {
    const std::uint64_t value = worker_bits_ | counter_;
    counter_ = (counter_ + 1) & kCounterMask;  // wraps after 2^56 requests of one worker
    return format(value);
}

RequestIdGenerator::Id RequestIdGenerator::format(std::uint64_t value) {
    static constexpr char kHex[] = "0123456789abcdef";
    Id out;
    for (std::size_t i = out.size(); i-- > 0;) {
        out[i] = kHex[value & 0xf];
        value >>= 4;
    }
    return out;
}

std::uint64_t RequestIdGenerator::randomSeed() {
    std::random_device device;
    std::uint64_t seed = device();
    seed = (seed << 32) ^ device();
    return seed;
}

}  // namespace strata::proxy
