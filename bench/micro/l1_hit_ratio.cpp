// Replays synthetic traces through the real L1Cache with each eviction policy and prints the
// request hit ratios (issue #3: "measure LRU against a scan-resistant policy"). A plain
// program, not a Google Benchmark: it measures hit ratio, not time.
//
//   build-bench/bench/micro/l1_hit_ratio [requests]
//
// Traces (keys are URLs, body sizes 256 B..8 KiB fixed per key, sizes skewed small):
//   zipf-0.8 / zipf-0.9 / zipf-1.0  Zipf popularity over 100k keys
//   scan-polluted                   zipf-0.9 with 1/3 of requests a sequential scan of keys
//                                   never seen again (crawlers, cache-busting query strings)
//   shifting                        zipf-0.9 whose popular set moves every 1/4 of the trace
// Cache sizes are fractions of the trace's distinct bytes.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "strata/cache/entry.h"
#include "strata/cache/l1_cache.h"

using namespace strata;
using namespace strata::cache;

namespace {

constexpr std::size_t kKeys = 100000;

class Zipf {
public:
    Zipf(std::size_t n, double alpha) : cdf_(n) {
        double sum = 0;
        for (std::size_t i = 0; i < n; ++i) {
            sum += 1.0 / std::pow(static_cast<double>(i + 1), alpha);
            cdf_[i] = sum;
        }
        for (auto& c : cdf_) {
            c /= sum;
        }
    }
    std::size_t operator()(std::mt19937_64& rng) const {
        double u = std::uniform_real_distribution<double>(0, 1)(rng);
        return static_cast<std::size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) -
                                        cdf_.begin());
    }

private:
    std::vector<double> cdf_;
};

std::size_t bodySize(std::uint64_t key) {
    // 256 B .. 8 KiB, log-uniform: many small objects, few large ones.
    double u = static_cast<double>(hash64(std::to_string(key)) % 10000) / 10000.0;
    return static_cast<std::size_t>(256.0 * std::pow(32.0, u));
}

EntryPtr makeEntry(std::uint64_t key) {
    http::Fields fields;
    fields.add("Cache-Control", "max-age=3600");
    fields.add("Content-Type", "application/octet-stream");
    EntryMeta meta;
    meta.primary_key = "https://bench.example/object/" + std::to_string(key);
    return std::make_shared<const CacheEntry>(200, "OK", std::move(fields),
                                              std::make_shared<const Body>(bodySize(key), 'b'),
                                              std::move(meta));
}

struct Trace {
    std::string name;
    std::vector<std::uint64_t> keys;
    std::uint64_t distinct_bytes = 0;
};

Trace makeTrace(const std::string& name, double alpha, double scan_fraction, bool shifting,
                std::size_t requests) {
    Trace t{name, {}, 0};
    std::mt19937_64 rng(12345);
    Zipf zipf(kKeys, alpha);
    std::uint64_t scan_next = 10'000'000;
    std::vector<bool> seen(kKeys * 4, false);
    std::uniform_real_distribution<double> coin(0, 1);
    // The popular key ranks map to key ids through a permutation (popularity is not id order).
    std::vector<std::uint64_t> perm(kKeys);
    for (std::size_t i = 0; i < kKeys; ++i) {
        perm[i] = i;
    }
    std::shuffle(perm.begin(), perm.end(), rng);
    t.keys.reserve(requests);
    for (std::size_t i = 0; i < requests; ++i) {
        std::uint64_t key = 0;
        if (scan_fraction > 0 && coin(rng) < scan_fraction) {
            key = scan_next++;
            t.distinct_bytes += bodySize(key);
        } else {
            std::uint64_t phase = shifting ? (i * 4 / requests) : 0;
            key = perm[zipf(rng)] + phase * kKeys;
            if (!seen[key]) {
                seen[key] = true;
                t.distinct_bytes += bodySize(key);
            }
        }
        t.keys.push_back(key);
    }
    return t;
}

double replay(const Trace& t, EvictionKind kind, std::uint64_t bytes) {
    L1Options opt;
    opt.max_bytes = bytes;
    opt.policy = kind;
    L1Cache l1(opt);
    http::Fields none;
    std::string key;
    for (std::uint64_t k : t.keys) {
        key = "https://bench.example/object/" + std::to_string(k);
        if (!l1.lookup(key, none).entry) {
            l1.insert(makeEntry(k));
        }
    }
    auto s = l1.stats();
    return static_cast<double>(s.hits) / static_cast<double>(s.hits + s.misses);
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t requests = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
    std::vector<Trace> traces;
    traces.push_back(makeTrace("zipf-0.8", 0.8, 0, false, requests));
    traces.push_back(makeTrace("zipf-0.9", 0.9, 0, false, requests));
    traces.push_back(makeTrace("zipf-1.0", 1.0, 0, false, requests));
    traces.push_back(makeTrace("scan-polluted", 0.9, 1.0 / 3, false, requests));
    traces.push_back(makeTrace("shifting", 0.9, 0, true, requests));
    std::printf("%zu requests per trace, %zu popular keys, default 32 shards\n", requests, kKeys);
    std::printf("| trace | cache size | LRU hit ratio | S3-FIFO hit ratio | S3-FIFO - LRU |\n");
    std::printf("|---|---|---|---|---|\n");
    for (const auto& t : traces) {
        for (double frac : {0.01, 0.05, 0.10, 0.25}) {
            auto bytes = static_cast<std::uint64_t>(static_cast<double>(t.distinct_bytes) * frac);
            double lru = replay(t, EvictionKind::Lru, bytes);
            double s3 = replay(t, EvictionKind::S3Fifo, bytes);
            std::printf("| %s | %.0f%% (%.1f MiB) | %.4f | %.4f | %+.4f |\n", t.name.c_str(),
                        frac * 100, static_cast<double>(bytes) / (1 << 20), lru, s3, s3 - lru);
            std::fflush(stdout);
        }
    }
    return 0;
}
