// 1 GiB each way through strata with bounded memory: bodies stream, they are never buffered
// whole. strata's VmRSS is sampled while the bytes flow.
#include <cstdlib>
#include <cstring>

#include "e2e.h"

using namespace strata::test;

namespace {

constexpr std::uint64_t kLarge = 1ULL << 30;
constexpr std::uint64_t kMaxRss = rssBound(100ULL << 20);

// STRATA_E2E_LARGE_BYTES shrinks the transfer for slow (sanitizer) builds.
std::uint64_t largeBytes() {
    const char* v = std::getenv("STRATA_E2E_LARGE_BYTES");
    return v != nullptr ? std::strtoull(v, nullptr, 10) : kLarge;
}

}  // namespace

TEST_SUITE("e2e/proxy") {
    TEST_CASE("1 GiB download streams with bounded memory") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        const std::uint64_t n = largeBytes();
        // 64 KiB of pattern plus one period, so any offset compares with one memcmp.
        std::string pattern(64 * 1024 + 64, '\0');
        originPattern(0, pattern);
        std::uint64_t got = 0;
        std::uint64_t next_sample = 0;
        std::uint64_t max_rss = 0;
        bool content_ok = true;
        ReadOptions opts;
        opts.timeout = 100s;
        opts.on_body = [&](std::string_view data) {
            while (!data.empty() && content_ok) {
                std::size_t piece = std::min<std::size_t>(data.size(), 64 * 1024);
                content_ok = std::memcmp(data.data(), pattern.data() + got % 64, piece) == 0;
                data.remove_prefix(piece);
                got += piece;
            }
            if (got >= next_sample) {
                max_rss = std::max(max_rss, residentBytes(strata.pid()));
                next_sample += 16ULL << 20;
            }
        };
        RawClient c(strata.port());
        c.send("GET /bytes/" + std::to_string(n) + " HTTP/1.1\r\nHost: t\r\n\r\n");
        Response r = c.readResponse(opts);
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.body_bytes == n);
        CHECK(content_ok);
        MESSAGE("strata max VmRSS during download: " << (max_rss >> 20) << " MiB");
        CHECK(max_rss < kMaxRss);
    }

    TEST_CASE("1 GiB upload streams with bounded memory") {
        Origin origin;
        Strata strata(proxyConfig(origin.serversYaml()));
        const std::uint64_t n = largeBytes();
        RawClient c(strata.port());
        REQUIRE(c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(n) +
                       "\r\n\r\n"));
        std::string piece(1 << 20, '\0');
        originPattern(0, piece);  // 1 MiB is a multiple of the 64-byte period
        Fnv1a64 h;
        std::uint64_t max_rss = 0;
        for (std::uint64_t sent = 0; sent < n;) {
            std::size_t len =
                static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), n - sent));
            std::string_view data(piece.data(), len);
            h.update(data);
            REQUIRE(c.send(data));
            sent += len;
            if (sent % (16ULL << 20) == 0) {
                max_rss = std::max(max_rss, residentBytes(strata.pid()));
            }
        }
        ReadOptions opts;
        opts.timeout = 60s;
        Response r = c.readResponse(opts);
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.body == "{\"bytes\":" + std::to_string(n) + ",\"fnv1a64\":\"" + h.hex() + "\"}\n");
        MESSAGE("strata max VmRSS during upload: " << (max_rss >> 20) << " MiB");
        CHECK(max_rss < kMaxRss);
    }
}
