// Sharded L1 cache: hash table of primary key -> variants, one mutex and one eviction policy
// per shard. Entries dropped under the lock are released after it (a body may be large).
#include "strata/cache/l1_cache.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "strata/common/assert.h"
#include "strata/http/message.h"

namespace strata::cache {
namespace {

// Hash table and list bookkeeping per node beyond sizeof(L1Node): bucket, map node, vector slot.
constexpr std::uint64_t kIndexOverhead = 96;

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return hash64(s); }
};

std::uint64_t nodeHash(std::string_view primary, std::string_view secondary) {
    return hash64(secondary, hash64(primary));
}

}  // namespace

struct L1Cache::Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<std::unique_ptr<L1Node>>, StringHash,
                       std::equal_to<>>
        map;
    std::unique_ptr<EvictionPolicy> policy;
    // Written under `mu`; atomic so that evictToBudget can pick a shard without locking each.
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> budget{0};  // fair share: max_bytes / shards
};

L1Cache::L1Cache(const L1Options& options)
    : max_bytes_(options.max_bytes),
      max_variants_(std::max<std::size_t>(1, options.max_variants_per_key)) {
    std::size_t n = std::clamp<std::size_t>(options.shards, 1, 1024);
    shards_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        auto s = std::make_unique<Shard>();
        s->budget = options.max_bytes / n;
        s->policy = makeEvictionPolicy(options.policy, s->budget);
        shards_.push_back(std::move(s));
    }
}

L1Cache::~L1Cache() = default;

L1Cache::Shard& L1Cache::shardFor(std::string_view primary_key, std::uint64_t& hash) {
    hash = hash64(primary_key);
    // High bits pick the shard; the table inside uses the full hash.
    return *shards_[(hash >> 40) % shards_.size()];
}

L1Lookup L1Cache::lookup(std::string_view primary_key, const http::Fields& request_fields) {
    std::uint64_t h = 0;
    Shard& shard = shardFor(primary_key, h);
    L1Lookup out;
    {
        std::lock_guard<std::mutex> lock(shard.mu);
        auto it = shard.map.find(primary_key);
        if (it == shard.map.end()) {
            out.miss = L1Miss::Uri;
        } else {
            // Newest variant first: a fresher variant with the same key replaced older ones.
            for (auto v = it->second.rbegin(); v != it->second.rend(); ++v) {
                const EntryMeta& meta = (*v)->entry->meta();
                if (meta.vary.empty() ||
                    secondaryKey(meta.vary, request_fields) == meta.secondary_key) {
                    shard.policy->onHit(**v);
                    out.entry = (*v)->entry;
                    break;
                }
            }
            if (!out.entry) {
                out.miss = L1Miss::Vary;
            }
        }
    }
    (out.entry ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
    return out;
}

EntryPtr L1Cache::find(std::string_view primary_key, std::string_view secondary_key) {
    std::uint64_t h = 0;
    Shard& shard = shardFor(primary_key, h);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(primary_key);
    if (it == shard.map.end()) {
        return nullptr;
    }
    for (const auto& node : it->second) {
        if (node->entry->meta().secondary_key == secondary_key) {
            return node->entry;
        }
    }
    return nullptr;
}

void L1Cache::removeNode(Shard& shard, std::vector<std::unique_ptr<L1Node>>& variants,
                         std::size_t index, std::vector<EntryPtr>& released) {
    L1Node& n = *variants[index];
    shard.policy->onRemove(n);
    shard.bytes.fetch_sub(n.charge, std::memory_order_relaxed);
    bytes_.fetch_sub(n.charge, std::memory_order_relaxed);
    objects_.fetch_sub(1, std::memory_order_relaxed);
    released.push_back(std::move(n.entry));
    variants.erase(variants.begin() + static_cast<std::ptrdiff_t>(index));
}

bool L1Cache::evictOne(Shard& shard, const L1Node* keep, std::vector<EntryPtr>& released) {
    L1Node* victim = shard.policy->victim();
    if (victim == nullptr || victim == keep) {
        return false;
    }
    auto vit = shard.map.find(victim->entry->meta().primary_key);
    if (vit == shard.map.end()) {
        STRATA_BUG("l1: eviction victim not indexed");
        return false;
    }
    auto& vv = vit->second;
    auto pos = std::find_if(vv.begin(), vv.end(), [&](const auto& p) { return p.get() == victim; });
    if (pos == vv.end()) {
        STRATA_BUG("l1: eviction victim not among its variants");
        return false;
    }
    removeNode(shard, vv, static_cast<std::size_t>(pos - vv.begin()), released);
    if (vv.empty()) {
        shard.map.erase(vit);
    }
    evictions_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void L1Cache::evictToBudget(const Shard* skip) {
    std::vector<EntryPtr> released;  // destroyed after the locks are dropped
    std::vector<const Shard*> exhausted;
    while (bytes() > maxBytes()) {
        // The shard holding the most beyond its share gives back first: a borrower pays for
        // what it borrowed before a shard within its share loses anything.
        Shard* fullest = nullptr;
        std::int64_t most_over = 0;
        for (auto& shard : shards_) {
            const std::uint64_t held = shard->bytes.load(std::memory_order_relaxed);
            if (shard.get() == skip || held == 0 ||
                std::find(exhausted.begin(), exhausted.end(), shard.get()) != exhausted.end()) {
                continue;
            }
            const auto over =
                static_cast<std::int64_t>(held) -
                static_cast<std::int64_t>(shard->budget.load(std::memory_order_relaxed));
            if (fullest == nullptr || over > most_over) {
                fullest = shard.get();
                most_over = over;
            }
        }
        if (fullest == nullptr) {
            break;
        }
        std::lock_guard<std::mutex> lock(fullest->mu);
        if (!evictOne(*fullest, nullptr, released)) {
            exhausted.push_back(fullest);
        }
    }
}

bool L1Cache::admits(std::uint64_t charge) const {
    const std::uint64_t max = maxBytes();
    return max > 0 && charge <= max;
}

void L1Cache::countRejection() {
    (maxBytes() == 0 ? rejected_disabled_ : rejected_too_large_)
        .fetch_add(1, std::memory_order_relaxed);
}

bool L1Cache::insert(EntryPtr entry) {
    if (!entry) {
        return false;
    }
    const std::string& primary = entry->meta().primary_key;
    const std::string& secondary = entry->meta().secondary_key;
    std::uint64_t h = 0;
    Shard& shard = shardFor(primary, h);
    auto node = std::make_unique<L1Node>();
    node->charge = entry->charge() + primary.capacity() + sizeof(L1Node) + kIndexOverhead;
    node->key_hash = nodeHash(primary, secondary);
    if (!admits(node->charge)) {
        countRejection();
        return false;
    }
    node->entry = std::move(entry);
    std::vector<EntryPtr> released;  // destroyed after the lock is dropped
    bool kept_borrowing = false;
    {
        std::lock_guard<std::mutex> lock(shard.mu);
        auto& variants = shard.map[primary];
        for (std::size_t i = 0; i < variants.size(); ++i) {
            if (variants[i]->entry->meta().secondary_key == secondary) {
                removeNode(shard, variants, i, released);
                break;
            }
        }
        if (variants.size() >= max_variants_) {
            removeNode(shard, variants, 0, released);  // the oldest variant
        }
        L1Node* raw = node.get();
        variants.push_back(std::move(node));
        shard.policy->onInsert(*raw);
        shard.bytes.fetch_add(raw->charge, std::memory_order_relaxed);
        bytes_.fetch_add(raw->charge, std::memory_order_relaxed);
        objects_.fetch_add(1, std::memory_order_relaxed);
        while (bytes() > maxBytes() && shard.bytes.load(std::memory_order_relaxed) >
                                           shard.budget.load(std::memory_order_relaxed)) {
            // The new entry is never its own victim (S3-FIFO would pick an object larger than
            // the small queue at once): it was admitted, so it is stored; others make room.
            if (!evictOne(shard, raw, released)) {
                kept_borrowing = true;
                break;
            }
        }
    }
    // Still over budget: the shard is within its share, or only the new entry is left to give.
    evictToBudget(kept_borrowing ? &shard : nullptr);
    inserts_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void L1Cache::setMaxBytes(std::uint64_t max_bytes) {
    max_bytes_.store(max_bytes, std::memory_order_relaxed);
    const std::uint64_t share = max_bytes / shards_.size();
    for (auto& shard : shards_) {
        std::lock_guard<std::mutex> lock(shard->mu);
        shard->budget.store(share, std::memory_order_relaxed);
        shard->policy->setBudget(share);
    }
    evictToBudget(nullptr);
}

std::size_t L1Cache::purgeIf(Shard& shard, bool soft, const void* ctx,
                             bool (*match)(const void* ctx, const CacheEntry& e)) {
    std::vector<EntryPtr> released;
    std::size_t affected = 0;
    std::int64_t bytes_delta = 0;
    std::int64_t objects_delta = 0;
    {
        std::lock_guard<std::mutex> lock(shard.mu);
        for (auto it = shard.map.begin(); it != shard.map.end();) {
            auto& variants = it->second;
            for (std::size_t i = 0; i < variants.size();) {
                L1Node& n = *variants[i];
                if (!match(ctx, *n.entry)) {
                    ++i;
                    continue;
                }
                ++affected;
                if (soft) {
                    if (!n.entry->freshness().soft_purged) {
                        // Same charge: the copy shares the body and has the same fields.
                        released.push_back(std::exchange(n.entry, n.entry->withSoftPurge()));
                    }
                    ++i;
                    continue;
                }
                shard.policy->onRemove(n);
                shard.bytes -= n.charge;
                bytes_delta -= static_cast<std::int64_t>(n.charge);
                --objects_delta;
                released.push_back(std::move(n.entry));
                variants.erase(variants.begin() + static_cast<std::ptrdiff_t>(i));
            }
            it = variants.empty() ? shard.map.erase(it) : std::next(it);
        }
    }
    objects_.fetch_add(static_cast<std::uint64_t>(objects_delta), std::memory_order_relaxed);
    bytes_.fetch_add(static_cast<std::uint64_t>(bytes_delta), std::memory_order_relaxed);
    purged_.fetch_add(affected, std::memory_order_relaxed);
    return affected;
}

std::size_t L1Cache::purgeKey(std::string_view primary_key, bool soft) {
    std::uint64_t h = 0;
    Shard& shard = shardFor(primary_key, h);
    return purgeIf(shard, soft, &primary_key, [](const void* ctx, const CacheEntry& e) {
        return e.meta().primary_key == *static_cast<const std::string_view*>(ctx);
    });
}

bool L1Cache::eraseVariant(std::string_view primary_key, std::string_view secondary_key) {
    std::uint64_t h = 0;
    Shard& shard = shardFor(primary_key, h);
    std::pair<std::string_view, std::string_view> keys{primary_key, secondary_key};
    return purgeIf(shard, false, &keys, [](const void* ctx, const CacheEntry& e) {
               const auto* k =
                   static_cast<const std::pair<std::string_view, std::string_view>*>(ctx);
               return e.meta().primary_key == k->first && e.meta().secondary_key == k->second;
           }) > 0;
}

std::size_t L1Cache::purgePrefix(std::string_view prefix, bool soft) {
    std::size_t n = 0;
    for (auto& shard : shards_) {
        n += purgeIf(*shard, soft, &prefix, [](const void* ctx, const CacheEntry& e) {
            auto p = *static_cast<const std::string_view*>(ctx);
            return std::string_view(e.meta().primary_key).substr(0, p.size()) == p;
        });
    }
    return n;
}

std::size_t L1Cache::purgeTag(std::string_view tag, bool soft) {
    std::size_t n = 0;
    for (auto& shard : shards_) {
        n += purgeIf(*shard, soft, &tag, [](const void* ctx, const CacheEntry& e) {
            auto t = *static_cast<const std::string_view*>(ctx);
            const auto& tags = e.meta().tags;
            return std::find(tags.begin(), tags.end(), t) != tags.end();
        });
    }
    return n;
}

void L1Cache::clear() {
    for (auto& shard : shards_) {
        purgeIf(*shard, false, nullptr, [](const void*, const CacheEntry&) { return true; });
    }
}

L1Stats L1Cache::stats() const {
    L1Stats s;
    s.objects = objects_.load(std::memory_order_relaxed);
    s.bytes = bytes_.load(std::memory_order_relaxed);
    s.evictions = evictions_.load(std::memory_order_relaxed);
    s.hits = hits_.load(std::memory_order_relaxed);
    s.misses = misses_.load(std::memory_order_relaxed);
    s.inserts = inserts_.load(std::memory_order_relaxed);
    s.rejected_too_large = rejected_too_large_.load(std::memory_order_relaxed);
    s.rejected_disabled = rejected_disabled_.load(std::memory_order_relaxed);
    s.rejected = s.rejected_too_large + s.rejected_disabled;
    s.purged = purged_.load(std::memory_order_relaxed);
    return s;
}

}  // namespace strata::cache
