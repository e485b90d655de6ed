// Google Benchmark: L1 hit path, cache-control parsing, key hashing and L2 record codec.
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "strata/cache/cache_control.h"
#include "strata/cache/entry.h"
#include "strata/cache/l1_cache.h"
#include "strata/cache/l2_record.h"

using namespace strata;
using namespace strata::cache;

namespace {

EntryPtr entryOf(const std::string& key, std::size_t body) {
    http::Fields f;
    f.add("Cache-Control", "max-age=60");
    f.add("Content-Type", "text/html");
    EntryMeta meta;
    meta.primary_key = key;
    return std::make_shared<const CacheEntry>(
        200, "OK", std::move(f), std::make_shared<const Body>(body, 'x'), std::move(meta));
}

void BM_L1LookupHit(benchmark::State& state) {
    L1Cache l1(L1Options{});
    for (int i = 0; i < 1000; ++i) {
        l1.insert(entryOf("https://example.com/item/" + std::to_string(i), 1024));
    }
    http::Fields none;
    std::string key = "https://example.com/item/500";
    for (auto _ : state) {
        benchmark::DoNotOptimize(l1.lookup(key, none));
    }
}
BENCHMARK(BM_L1LookupHit)->Threads(1)->Threads(2);

void BM_ServeHead(benchmark::State& state) {
    auto e = entryOf("k", 1024);
    WallTime now{std::chrono::seconds(1'700'000'000)};
    std::string out;
    for (auto _ : state) {
        out.clear();
        e->appendHead(out, now);
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_ServeHead);

void BM_ParseCacheControl(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(
            parseCacheControl("public, max-age=3600, s-maxage=600, stale-while-revalidate=30"));
    }
}
BENCHMARK(BM_ParseCacheControl);

void BM_MemcachedKey(benchmark::State& state) {
    std::string key = "https://example.com/some/long/path/to/an/object?with=query&and=more";
    for (auto _ : state) {
        benchmark::DoNotOptimize(memcachedKey("strata", key, ""));
    }
}
BENCHMARK(BM_MemcachedKey);

void BM_L2Encode(benchmark::State& state) {
    auto e = entryOf("k", static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        benchmark::DoNotOptimize(encodeEntryRecord(*e));
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_L2Encode)->Arg(1024)->Arg(256 * 1024);

void BM_L2Decode(benchmark::State& state) {
    auto e = entryOf("k", static_cast<std::size_t>(state.range(0)));
    std::string v = encodeEntryRecord(*e);
    for (auto _ : state) {
        benchmark::DoNotOptimize(decodeRecord(v, "m", "k", ""));
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_L2Decode)->Arg(1024)->Arg(256 * 1024);

}  // namespace

BENCHMARK_MAIN();
