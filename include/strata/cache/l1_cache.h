// L1: the in-memory cache shared by all workers. A fixed number of shards, each a hash table
// of primary key -> variants under one mutex (the only lock on the request path, DESIGN.md).
// The byte budget counts real bytes (CacheEntry::charge() plus index overhead). It is one budget
// for the whole cache: each shard has a fair share (max_bytes / shards) and may borrow beyond
// it while the total stays within max_bytes, so an object larger than a share (a 9 MB file in
// a 256 MiB cache has a share of 8 MiB) is stored. When the total is over budget the inserting
// shard evicts if it is over its share, then the shard most over its share does; each shard
// evicts with its own policy instance. Only an object larger than max_bytes itself is refused.
//
// Entries are shared_ptr<const CacheEntry>: lookup returns a reference the caller keeps for as
// long as it writes the response, so eviction and purge free nothing in use.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/cache/entry.h"

namespace strata::http {
class Fields;
}

namespace strata::cache {

// One stored variant as the eviction policy sees it. Owned by its shard.
struct L1Node {
    EntryPtr entry;
    std::uint64_t charge = 0;
    std::uint64_t key_hash = 0;
    // Policy bookkeeping: an intrusive doubly linked list and a small counter.
    L1Node* prev = nullptr;
    L1Node* next = nullptr;
    std::uint8_t freq = 0;
    std::uint8_t queue = 0;
};

// Eviction policy of one shard; called with the shard lock held.
class EvictionPolicy {
public:
    virtual ~EvictionPolicy() = default;
    virtual void onInsert(L1Node& node) = 0;
    virtual void onHit(L1Node& node) = 0;
    // The node leaves the cache (erase, purge, replace) and must be unlinked.
    virtual void onRemove(L1Node& node) = 0;
    // The node to evict next (still linked; the shard then calls onRemove), or nullptr.
    virtual L1Node* victim() = 0;
    // The shard's fair share changed (cache.l1.max_bytes reloaded).
    virtual void setBudget(std::uint64_t /*shard_budget*/) {}
};

enum class EvictionKind {
    Lru,
    // S3-FIFO (Yang et al., SOSP 2023): a small FIFO (10% of bytes) filters one-hit wonders, a
    // main FIFO with 2-bit frequency reinsertion keeps the rest, a ghost FIFO of evicted key
    // hashes readmits straight to main. Default: 3-11 points above LRU on every Zipf and
    // scan-polluted trace in bench/micro/README.md (it trails LRU only on abrupt popularity
    // shifts with a large cache).
    S3Fifo,
};
std::unique_ptr<EvictionPolicy> makeEvictionPolicy(EvictionKind kind, std::uint64_t shard_budget);

struct L1Options {
    std::uint64_t max_bytes = 256ULL << 20;
    std::size_t shards = 32;
    EvictionKind policy = EvictionKind::S3Fifo;
    std::size_t max_variants_per_key = 16;  // oldest variant dropped beyond this
};

struct L1Stats {
    std::uint64_t objects = 0;
    std::uint64_t bytes = 0;
    std::uint64_t evictions = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t inserts = 0;
    std::uint64_t rejected = 0;            // sum of the two below
    std::uint64_t rejected_too_large = 0;  // charge above max_bytes
    std::uint64_t rejected_disabled = 0;   // max_bytes is 0
    std::uint64_t purged = 0;
};

enum class L1Miss { None, Uri, Vary };  // why a lookup missed, for Cache-Status fwd=

struct L1Lookup {
    EntryPtr entry;  // null on a miss
    L1Miss miss = L1Miss::None;
};

class L1Cache {
public:
    explicit L1Cache(const L1Options& options);
    ~L1Cache();
    L1Cache(const L1Cache&) = delete;
    L1Cache& operator=(const L1Cache&) = delete;

    // The stored variant of `primary_key` whose Vary values match the request's fields.
    L1Lookup lookup(std::string_view primary_key, const http::Fields& request_fields);
    // Exact variant by its keys (e.g. to find the entry being revalidated).
    EntryPtr find(std::string_view primary_key, std::string_view secondary_key);

    // Inserts or replaces the variant with the same keys. False when the entry alone exceeds
    // max_bytes (never stored). May evict other entries, never the one it inserts.
    bool insert(EntryPtr entry);
    // Whether an object of `charge` bytes (see CacheEntry::charge()) would be stored.
    bool admits(std::uint64_t charge) const;
    // Counts an object refused without calling insert() (too large, or L1 disabled).
    void countRejection();

    // Applies a new byte budget (reload of cache.l1.max_bytes): keeps everything when it grows,
    // evicts by each shard's policy down to the new budget when it shrinks. Any thread.
    void setMaxBytes(std::uint64_t max_bytes);

    // Purges. `soft` replaces each entry by a stale copy (kept for stale-if-error and
    // revalidation) instead of removing it. They return how many variants were affected.
    std::size_t purgeKey(std::string_view primary_key, bool soft = false);
    // Removes exactly one variant (e.g. after a failed validation showed it is gone).
    bool eraseVariant(std::string_view primary_key, std::string_view secondary_key);
    // Scans every shard (admin path, not the request path).
    std::size_t purgePrefix(std::string_view prefix, bool soft = false);
    std::size_t purgeTag(std::string_view tag, bool soft = false);
    void clear();

    L1Stats stats() const;
    std::uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
    std::uint64_t maxBytes() const { return max_bytes_.load(std::memory_order_relaxed); }

private:
    struct Shard;
    Shard& shardFor(std::string_view primary_key, std::uint64_t& hash);
    std::size_t purgeIf(Shard& shard, bool soft, const void* ctx,
                        bool (*match)(const void* ctx, const CacheEntry& e));
    // Unlinks and unindexes one variant; its entry goes to `released` (freed after the lock).
    // Called with the shard lock held.
    void removeNode(Shard& shard, std::vector<std::unique_ptr<L1Node>>& variants, std::size_t index,
                    std::vector<EntryPtr>& released);
    // Evicts the shard's next victim unless it is `keep`. Called with the shard lock held.
    bool evictOne(Shard& shard, const L1Node* keep, std::vector<EntryPtr>& released);
    // Evicts from the shards most over their share until the total is within max_bytes.
    // `skip` (with its lock not held) is left alone.
    void evictToBudget(const Shard* skip);

    std::atomic<std::uint64_t> max_bytes_;
    std::size_t max_variants_;
    std::vector<std::unique_ptr<Shard>> shards_;
    std::atomic<std::uint64_t> objects_{0};
    std::atomic<std::uint64_t> bytes_{0};
    std::atomic<std::uint64_t> evictions_{0};
    std::atomic<std::uint64_t> hits_{0};
    std::atomic<std::uint64_t> misses_{0};
    std::atomic<std::uint64_t> inserts_{0};
    std::atomic<std::uint64_t> rejected_too_large_{0};
    std::atomic<std::uint64_t> rejected_disabled_{0};
    std::atomic<std::uint64_t> purged_{0};
};

// 64-bit hash used for sharding and the S3-FIFO ghost list (see l2_record.h for the 128-bit one).
std::uint64_t hash64(std::string_view data, std::uint64_t seed = 0);

}  // namespace strata::cache
