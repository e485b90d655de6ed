// strata's own non-cryptographic hashes (64 and 128 bit) and CRC32C. Byte order is fixed
// (little-endian reads assembled by hand) so memcached keys agree between machines.
#include <array>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "strata/cache/l1_cache.h"
#include "strata/cache/l2_record.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace strata::cache {
namespace {

constexpr std::uint64_t kP1 = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio
constexpr std::uint64_t kP2 = 0xd6e8feb86659fd93ULL;
constexpr std::uint64_t kP3 = 0xa0761d6478bd642fULL;
constexpr std::uint64_t kP4 = 0xe7037ed1a0b428dbULL;

inline std::uint64_t rotl(std::uint64_t v, int r) {
    return (v << r) | (v >> (64 - r));
}

inline std::uint64_t load64(const char* p) {
    std::uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);  // one load; the value is defined as little-endian
    if constexpr (std::endian::native == std::endian::big) {
        v = __builtin_bswap64(v);
    }
    return v;
}

// Reads up to 8 trailing bytes.
inline std::uint64_t loadTail(const char* p, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = n; i > 0; --i) {
        v = (v << 8) | static_cast<unsigned char>(p[i - 1]);
    }
    return v;
}

// Final avalanche: every input bit flips about half the output bits.
inline std::uint64_t avalanche(std::uint64_t v) {
    v ^= v >> 31;
    v *= kP2;
    v ^= v >> 29;
    v *= kP4;
    v ^= v >> 32;
    return v;
}

constexpr std::array<std::uint32_t, 256> makeCrcTable() {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) {
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78U : c >> 1;  // Castagnoli, reflected
        }
        t[i] = c;
    }
    return t;
}
constexpr auto kCrcTable = makeCrcTable();

std::uint32_t crcSoftware(const char* p, std::size_t n, std::uint32_t crc) {
    for (std::size_t i = 0; i < n; ++i) {
        crc = kCrcTable[(crc ^ static_cast<unsigned char>(p[i])) & 0xff] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crcHardware(const char* p, std::size_t n,
                                                            std::uint32_t crc) {
    std::uint64_t c = crc;
    while (n >= 8) {
        c = _mm_crc32_u64(c, load64(p));
        p += 8;
        n -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c);
    while (n > 0) {
        c32 = _mm_crc32_u8(c32, static_cast<unsigned char>(*p));
        ++p;
        --n;
    }
    return c32;
}
#endif

}  // namespace

std::uint64_t hash64(std::string_view data, std::uint64_t seed) {
    const char* p = data.data();
    std::size_t n = data.size();
    std::uint64_t h = seed ^ (n * kP1);
    while (n >= 8) {
        h = rotl(h ^ (load64(p) * kP3), 27) * kP1 + kP2;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        h = rotl(h ^ ((loadTail(p, n) + n) * kP3), 27) * kP1 + kP4;
    }
    return avalanche(h);
}

Hash128 hash128(std::string_view data, std::uint64_t seed) {
    const char* p = data.data();
    std::size_t n = data.size();
    std::uint64_t a = seed ^ kP1;
    std::uint64_t b = (seed * kP2) ^ kP3 ^ (n * kP4);
    while (n >= 16) {
        a = rotl(a ^ (load64(p) * kP2), 29) * kP1 + b;
        b = rotl(b ^ (load64(p + 8) * kP4), 31) * kP3 + a;
        p += 16;
        n -= 16;
    }
    std::uint64_t w0 = loadTail(p, n < 8 ? n : 8);
    std::uint64_t w1 = n > 8 ? loadTail(p + 8, n - 8) : 0;
    a = rotl(a ^ ((w0 + n) * kP2), 29) * kP1 + b;
    b = rotl(b ^ ((w1 + data.size()) * kP4), 31) * kP3 + a;
    a = avalanche(a + b);
    b = avalanche(b ^ rotl(a, 17));
    a += b;
    return Hash128{a, b};
}

std::string Hash128::hex() const {
    char buf[33];
    std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hi),
                  static_cast<unsigned long long>(lo));
    return std::string(buf, 32);
}

std::uint32_t crc32c(std::string_view data, std::uint32_t crc) {
    crc = ~crc;
#if defined(__x86_64__)
    static const bool hw = __builtin_cpu_supports("sse4.2");
    if (hw) {
        return ~crcHardware(data.data(), data.size(), crc);
    }
#endif
    return ~crcSoftware(data.data(), data.size(), crc);
}

}  // namespace strata::cache
