// The L2 tier: cached objects shared by every strata instance pointed at the same memcached
// servers, through libmemcached (binary protocol, ketama consistent hashing, so adding a server
// remaps about 1/n of keys). Values use the record format of l2_record.h.
//
// Threads. libmemcached blocks, so every call runs on a BlockingPool (one memcached_st per pool
// thread, no locks around them). lookup() returns at once; its callback is posted to the
// caller's loop exactly once, never invoked inline, and dropped if that loop is gone or the
// L2Cache shuts down first. store() and remove() are fire and forget: a full queue drops them
// (counted), so L2 never delays a client. No call retries inside a request; each memcached
// operation is bounded by `timeout` (connect, poll, send and receive).
//
// Failure. Memcached down, slow, full or answering garbage is a miss for the proxy and a
// counted error here. A breaker per server (by ketama position) opens after
// `breaker_failures` consecutive timeouts or connection errors: lookups whose key lives there
// are then immediate misses (no queueing, no I/O) for a cool-down that doubles on every failed
// probe (breaker_cooldown .. breaker_max_cooldown); after it, one probe request goes through
// and its result closes or re-opens the breaker.
//
//   Closed ──K failures──▶ Open ──cool-down over──▶ HalfOpen (one probe in flight)
//     ▲                     ▲                            │ probe fails: cool-down x2
//     └────── probe ok ─────┼────────────────────────────┘
//
// Purge. Memcached cannot scan, so purges travel through a purge log: one value at
// "<ns>:purgelog" holding {id, kind (url|prefix|tag|all), value, time, soft} records, appended
// with CAS (gets/cas, bounded retries). Every instance reads it every `purge_poll`, applies new
// records of other instances to its L1 through the OnPurge callback, and keeps all records
// (until max_ttl) in a local index that every L2 lookup consults: a decoded entry whose
// meta.request_time is not after a matching record's time (plus kPurgeClockSkew, the clock
// agreement assumed between instances) is a miss, or a stale copy for a soft purge. The
// purging instance applies its record at once.
//
// The bound: a purge that returned ok is honoured by every instance's L2 lookups and L1 within
// purge_poll + 2 x timeout (one poll period, plus the poll's own read; the append itself is done
// when purge*() reports ok). Records older than max_ttl (the cap on every memcached expiration,
// so nothing they cover can still be stored) are dropped when the log is rewritten. A log over
// kMaxPurgeLogBytes is compacted: its oldest half is replaced by one `all` record at the newest
// dropped time, which over-purges (misses) but never under-purges. If the log value vanishes
// (its server restarted, eviction) after an instance has read it, that instance cannot know
// what it missed and adds a local `all` record at its last successful read (a one-off L2 flush
// for it). Limits: an instance started after such a loss only knows the new log; while the
// log's server is down, purge*() fails (the caller reports it) and polls fail (counted).
//
// Exact-URL purge. remove() deletes the key at memcachedKey(ns, primary, "") (the Entry, or
// the VaryIndex of a URL with variants). Deleting the index alone is not enough: variants stay
// in memcached under keys that cannot be listed, and once a new response rewrites the index,
// a pre-purge variant would be reachable again. So an exact purge also appends a `url` record
// to the purge log (which also reaches the other instances' L1); an invalidation (unsafe
// method, RFC 9111 4.4) appends one only when the deleted value was a VaryIndex, so POST-heavy
// traffic on plain URLs does not grow the log.
//
// Fill leases (cross-instance coalescing). Per-process coalescing leaves one origin fetch per
// instance for a cold URL; the lease makes it one per cluster. An instance's coalescing leader
// that misses in L2 adds "<main key>.lease" (memcached `add`: atomic, one winner) holding the
// owner's fetch deadline. The winner fetches; the others poll L2 for the object until it
// appears, the lease disappears (the owner gave up: one of them takes the lease over), the
// deadline passes, or their own wait cap does; then they fetch alone. The owner releases the
// lease after its store's `set` completed (store(..., release_lease)), so a waiter that sees no
// lease finds the object; an uncacheable answer replaces the lease with an `uncacheable` record
// for the hit-for-pass period, a cluster-wide hit-for-pass. memcached's expiration (whole
// seconds, rounded up) removes the lease of an owner that died; the deadline inside it is what
// waiters go by. Any memcached problem makes acquireLease() answer Unavailable: the caller
// fetches, as without leases.
//
// Read your writes. store() is asynchronous; until its `set` completed, lookup() in this
// process answers from the entry being written, so a request right after a refresh does not
// read the older record and refresh again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/cache/entry.h"
#include "strata/common/clock.h"
#include "strata/common/result.h"
#include "strata/http/message.h"

namespace strata::config {
struct L2Cache;
}
namespace strata::event {
class Loop;
}
namespace strata::metrics {
class Registry;
}

namespace strata::cache {

inline constexpr std::chrono::seconds kPurgeClockSkew{1};
inline constexpr std::size_t kMaxPurgeLogBytes = 512 * 1024;

struct L2Options {
    std::vector<std::string> servers;  // "host:port" (numeric host); empty: L2 disabled
    std::chrono::milliseconds timeout{50};
    // Largest value written; memcached's -I limit also counts its item header and the key, so
    // values stay kItemHeadroom under it.
    std::uint64_t max_object_bytes = 1024 * 1024;
    bool chunks = true;
    std::string key_namespace = "strata";
    std::chrono::milliseconds purge_poll{1000};
    std::chrono::seconds max_ttl{86400};
    std::chrono::seconds keep{3600};
    unsigned threads = 2;
    std::size_t max_queue = 1024;
    unsigned breaker_failures = 3;
    std::chrono::milliseconds breaker_cooldown{1000};
    std::chrono::milliseconds breaker_max_cooldown{30000};
    metrics::Registry* metrics = nullptr;  // l2Operation / setL2BreakerOpen; null: none
    const Clock* clock = nullptr;          // wall time of purge records; null: system clock

    // Config keys as named in conf/strata.yaml; metrics = &metrics::global().
    static L2Options fromConfig(const config::L2Cache& config);
};
inline constexpr std::uint64_t kItemHeadroom = 1024;

enum class L2Status : std::uint8_t { Hit, Miss, Error };
enum class L2Reason : std::uint8_t {
    None,         // hit
    NotFound,     // no record for the URL (Cache-Status fwd=uri-miss)
    VaryMiss,     // the URL is stored, not this variant (fwd=vary-miss)
    Purged,       // stored before a matching purge
    Timeout,      // a memcached operation timed out
    Unreachable,  // connection refused or broken
    Corrupt,      // undecodable, foreign or mismatched value; missing or bad chunk
    BreakerOpen,  // the key's server is in cool-down: not asked
    QueueFull,    // the pool is saturated: not asked
    Disabled,     // no servers, or shutting down
};
std::string_view reasonName(L2Reason reason);

struct L2LookupResult {
    L2Status status = L2Status::Miss;
    L2Reason reason = L2Reason::NotFound;
    EntryPtr entry;                        // Hit only; soft-purged entries come back marked stale
    std::chrono::microseconds latency{0};  // submit to completion on the pool thread
};
using L2LookupCallback = std::function<void(L2LookupResult)>;

enum class LeaseState : std::uint8_t {
    Owner,        // this caller took the lease: fetch, then release it
    Filling,      // another instance holds it until `deadline`
    Uncacheable,  // the last fetch was not storable: fetch alone, no waiting
    Unavailable,  // memcached down, slow, full, or leases off: fetch as without leases
};
std::string_view leaseStateName(LeaseState state);
struct L2Lease {
    LeaseState state = LeaseState::Unavailable;
    WallTime deadline;  // Filling: when the owner's fetch times out
};
using L2LeaseCallback = std::function<void(L2Lease)>;
// The lease value: "SLSE" | u8 version | u8 state (1 filling, 2 uncacheable) | i64 deadline ms.
// Untrusted input: a value that does not decode is treated as no lease.
std::string encodeLease(LeaseState state, WallTime deadline);
std::optional<L2Lease> decodeLease(std::string_view value);

enum class PurgeKind : std::uint8_t { Url = 1, Prefix = 2, Tag = 3, All = 4 };
std::string_view purgeKindName(PurgeKind kind);

struct PurgeRecord {
    std::uint64_t id = 0;  // random, names the record across instances
    PurgeKind kind = PurgeKind::Url;
    bool soft = false;
    std::string value;  // primary key, primary-key prefix or tag; "" for All
    WallTime time;      // entries requested at or before time (+ skew) are purged
};
// The purge log value: "SPLG" | u8 version | u64 epoch | u32 count | records | u32 CRC32C.
// The epoch changes when the log is created anew, so a lost log is detected.
struct PurgeLog {
    std::uint64_t epoch = 0;
    std::vector<PurgeRecord> records;
};
std::string encodePurgeLog(const PurgeLog& log);
Result<PurgeLog> decodePurgeLog(std::string_view value);  // untrusted input: never crashes
// Whether `record` covers an entry with this metadata (kind/value match and time).
bool purgeCovers(const PurgeRecord& record, const EntryMeta& meta);

// Counters, read with relaxed loads by metrics and /status (any thread).
struct L2Stats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;  // NotFound, VaryMiss, Purged
    std::uint64_t errors = 0;  // every failed memcached operation (timeouts included)
    std::uint64_t timeouts = 0;
    std::uint64_t corrupt = 0;  // values that failed to decode
    std::uint64_t breaker_opens = 0;
    std::uint64_t breaker_rejects = 0;  // lookups answered at once while open
    std::uint64_t queue_full_drops = 0;
    std::uint64_t stores = 0;         // entries written completely
    std::uint64_t store_skipped = 0;  // too large with chunks off, or nothing to write
    std::uint64_t store_errors = 0;
    std::uint64_t removes = 0;
    std::uint64_t purges_sent = 0;     // records appended to the log by this instance
    std::uint64_t purges_applied = 0;  // records of other instances applied from the log
    std::uint64_t purge_poll_errors = 0;
    std::uint64_t lease_errors = 0;           // lease operations that failed (the caller fetched)
    std::uint64_t pending_hits = 0;           // lookups answered from an entry still being written
    std::uint64_t lookup_latency_us_sum = 0;  // lookups that reached memcached
    std::uint64_t lookup_latency_count = 0;
    unsigned servers = 0;
    unsigned breakers_open = 0;  // servers currently Open or HalfOpen
};

class L2Cache {
public:
    // Applies another instance's purge to this process's L1 (L1Cache::purgeKey/Prefix/Tag with
    // record.soft; All: everything requested before record.time). Runs on the purge poller
    // thread; L1 is thread-safe.
    using OnPurge = std::function<void(const PurgeRecord& record)>;
    using DoneCallback = std::function<void(bool ok)>;

    // Starts the pool threads and the purge poller; connects lazily. Throws only on invalid
    // options (startup code).
    L2Cache(L2Options options, OnPurge on_purge = nullptr);
    ~L2Cache();  // stops the poller and the pool; queued work and callbacks are dropped
    L2Cache(const L2Cache&) = delete;
    L2Cache& operator=(const L2Cache&) = delete;

    bool enabled() const;

    // Looks up the URL and, for a VaryIndex, the variant these request fields select; follows
    // a chunk manifest. `done` is posted to `loop` exactly once (dropped if the loop is gone).
    void lookup(std::string primary_key, const http::Fields& request_fields, event::Loop& loop,
                L2LookupCallback done);
    // Writes the entry (chunks, record, VaryIndex) with expiration storageTtl(now) capped at
    // max_ttl. Fire and forget; dropped when the queue is full. With `release_lease`, the
    // URL's fill lease is deleted once the write is done (or failed).
    void store(EntryPtr entry, WallTime now, bool release_lease = false);
    // Tries to take the URL's fill lease for `ttl` (the owner's fetch timeout). `done` is posted
    // to `loop` exactly once.
    void acquireLease(std::string primary_key, std::chrono::milliseconds ttl, event::Loop& loop,
                      L2LeaseCallback done);
    // The owner is done without a stored object: deletes the lease, or with `uncacheable`
    // replaces it by an uncacheable record living `hit_for_pass`. Fire and forget.
    void releaseLease(std::string primary_key, bool uncacheable,
                      std::chrono::milliseconds hit_for_pass);
    // Exact-URL purge (admin): deletes the URL's key and appends a url record to the purge log.
    // `done` (optional) is posted to `loop` with false when the log append failed.
    void removeUrl(std::string primary_key, bool soft, event::Loop* loop = nullptr,
                   DoneCallback done = nullptr);
    // Invalidation after an unsafe method (RFC 9111 4.4): deletes the key; logs only for Vary.
    void invalidate(std::string primary_key);
    // Purge by primary-key prefix / by tag, through the purge log (see the file comment).
    void purgePrefix(std::string prefix, bool soft, event::Loop* loop = nullptr,
                     DoneCallback done = nullptr);
    void purgeTag(std::string tag, bool soft, event::Loop* loop = nullptr,
                  DoneCallback done = nullptr);

    L2Stats stats() const;
    // The server (index into options.servers) the key hashes to; for tests and /status.
    unsigned serverForKey(std::string_view memcached_key) const;
    // Reads the purge log now (tests; the poller does it every purge_poll).
    void pollPurgeLogForTest();

    struct Impl;

private:
    // A prefix or tag purge: one record in the purge log, nothing deleted directly.
    void logPurge(PurgeKind kind, std::string value, bool soft, event::Loop* loop,
                  DoneCallback done);

    std::shared_ptr<Impl> impl_;
};

}  // namespace strata::cache
