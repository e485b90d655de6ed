#include "strata/cache/l2_cache.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <libmemcached/memcached.h>

#include "strata/cache/l2_record.h"
#include "strata/common/log.h"
#include "strata/config/config.h"
#include "strata/event/blocking_pool.h"
#include "strata/event/loop.h"
#include "strata/metrics/metrics.h"

namespace strata::cache {

namespace {

using Clock_ = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr std::uint8_t kPurgeLogVersion = 1;
constexpr std::uint8_t kLeaseVersion = 1;
constexpr std::string_view kLeaseMagic = "SLSE";
constexpr std::size_t kMaxPurgeValue = 16 * 1024;
constexpr int kCasAttempts = 16;

struct MemcFree {
    void operator()(memcached_st* m) const { memcached_free(m); }
};
using MemcPtr = std::unique_ptr<memcached_st, MemcFree>;

struct MallocFree {
    void operator()(char* p) const { std::free(p); }
};
using MallocPtr = std::unique_ptr<char, MallocFree>;

std::uint64_t randomU64() {
    thread_local std::mt19937_64 rng{[] {
        std::random_device rd;
        return (std::uint64_t{rd()} << 32) ^ rd() ^
               static_cast<std::uint64_t>(Clock_::now().time_since_epoch().count());
    }()};
    std::uint64_t v = 0;
    while (v == 0) {
        v = rng();
    }
    return v;
}

// Server alive (the answer may still be "not found" or "not stored").
bool serverAnswered(memcached_return_t rc) {
    return !memcached_fatal(rc);
}
bool isError(memcached_return_t rc) {
    return memcached_failed(rc) && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_NOTSTORED &&
           rc != MEMCACHED_DATA_EXISTS;
}
L2Reason failureReason(memcached_return_t rc) {
    return rc == MEMCACHED_TIMEOUT ? L2Reason::Timeout
           : memcached_fatal(rc)   ? L2Reason::Unreachable
                                   : L2Reason::Corrupt;
}

// ---- little-endian helpers for the purge log ----------------------------------------------

void putU32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
}
void putU64(std::string& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
}

class Reader {
public:
    explicit Reader(std::string_view data) : data_(data) {}
    bool u8(std::uint8_t& v) {
        if (data_.size() - pos_ < 1) {
            return false;
        }
        v = static_cast<std::uint8_t>(data_[pos_++]);
        return true;
    }
    bool u32(std::uint32_t& v) {
        std::uint64_t w = 0;
        if (!le(4, w)) {
            return false;
        }
        v = static_cast<std::uint32_t>(w);
        return true;
    }
    bool u64(std::uint64_t& v) { return le(8, v); }
    bool bytes(std::size_t n, std::string_view& v) {
        if (data_.size() - pos_ < n) {
            return false;
        }
        v = data_.substr(pos_, n);
        pos_ += n;
        return true;
    }
    std::size_t remaining() const { return data_.size() - pos_; }

private:
    bool le(int n, std::uint64_t& v) {
        if (data_.size() - pos_ < static_cast<std::size_t>(n)) {
            return false;
        }
        v = 0;
        for (int i = 0; i < n; ++i) {
            v |= std::uint64_t{static_cast<std::uint8_t>(data_[pos_ + static_cast<std::size_t>(i)])}
                 << (8 * i);
        }
        pos_ += static_cast<std::size_t>(n);
        return true;
    }
    std::string_view data_;
    std::size_t pos_ = 0;
};

std::int64_t toMillis(WallTime t) {
    return duration_cast<milliseconds>(t.time_since_epoch()).count();
}

bool splitHostPort(const std::string& text, std::string& host, in_port_t& port) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 >= text.size()) {
        return false;
    }
    host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    if (host.empty()) {
        host = "127.0.0.1";
    }
    unsigned long p = 0;
    for (char c : text.substr(colon + 1)) {
        if (c < '0' || c > '9') {
            return false;
        }
        p = p * 10 + static_cast<unsigned long>(c - '0');
        if (p > 65535) {
            return false;
        }
    }
    port = static_cast<in_port_t>(p);
    return p != 0;
}

}  // namespace

// ---- public helpers --------------------------------------------------------------------------

std::string_view reasonName(L2Reason reason) {
    switch (reason) {
        case L2Reason::None:
            return "none";
        case L2Reason::NotFound:
            return "not_found";
        case L2Reason::VaryMiss:
            return "vary_miss";
        case L2Reason::Purged:
            return "purged";
        case L2Reason::Timeout:
            return "timeout";
        case L2Reason::Unreachable:
            return "unreachable";
        case L2Reason::Corrupt:
            return "corrupt";
        case L2Reason::BreakerOpen:
            return "breaker_open";
        case L2Reason::QueueFull:
            return "queue_full";
        case L2Reason::Disabled:
            return "disabled";
    }
    return "unknown";
}

std::string_view purgeKindName(PurgeKind kind) {
    switch (kind) {
        case PurgeKind::Url:
            return "url";
        case PurgeKind::Prefix:
            return "prefix";
        case PurgeKind::Tag:
            return "tag";
        case PurgeKind::All:
            return "all";
    }
    return "unknown";
}

std::string encodePurgeLog(const PurgeLog& log) {
    std::string out = "SPLG";
    out.push_back(static_cast<char>(kPurgeLogVersion));
    putU64(out, log.epoch);
    putU32(out, static_cast<std::uint32_t>(log.records.size()));
    for (const auto& r : log.records) {
        putU64(out, r.id);
        out.push_back(static_cast<char>(r.kind));
        out.push_back(static_cast<char>(r.soft ? 1 : 0));
        putU64(out, static_cast<std::uint64_t>(toMillis(r.time)));
        putU32(out, static_cast<std::uint32_t>(r.value.size()));
        out += r.value;
    }
    putU32(out, crc32c(out));
    return out;
}

Result<PurgeLog> decodePurgeLog(std::string_view value) {
    if (value.size() < 4 + 1 + 8 + 4 + 4 || value.substr(0, 4) != "SPLG") {
        return Error{"purge log: bad magic or too short"};
    }
    const std::string_view body = value.substr(0, value.size() - 4);
    Reader trailer(value.substr(value.size() - 4));
    std::uint32_t crc = 0;
    trailer.u32(crc);
    if (crc != crc32c(body)) {
        return Error{"purge log: checksum mismatch"};
    }
    Reader r(body.substr(4));
    std::uint8_t version = 0;
    PurgeLog log;
    std::uint32_t count = 0;
    if (!r.u8(version) || version != kPurgeLogVersion || !r.u64(log.epoch) || !r.u32(count)) {
        return Error{"purge log: bad header"};
    }
    // Each record takes at least 22 bytes (id, kind, soft, time, length): a larger count lies.
    if (count > r.remaining() / 22) {
        return Error{"purge log: bad record count"};
    }
    log.records.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        PurgeRecord rec;
        std::uint8_t kind = 0;
        std::uint8_t soft = 0;
        std::uint64_t time_ms = 0;
        std::uint32_t len = 0;
        std::string_view v;
        if (!r.u64(rec.id) || !r.u8(kind) || !r.u8(soft) || !r.u64(time_ms) || !r.u32(len) ||
            len > kMaxPurgeValue || !r.bytes(len, v)) {
            return Error{"purge log: truncated record"};
        }
        if (kind < 1 || kind > 4 || soft > 1) {
            return Error{"purge log: bad record kind"};
        }
        rec.kind = static_cast<PurgeKind>(kind);
        rec.soft = soft == 1;
        rec.time = WallTime(milliseconds(static_cast<std::int64_t>(time_ms)));
        rec.value = std::string(v);
        log.records.push_back(std::move(rec));
    }
    if (r.remaining() != 0) {
        return Error{"purge log: trailing bytes"};
    }
    return log;
}

bool purgeCovers(const PurgeRecord& record, const EntryMeta& meta) {
    if (meta.request_time > record.time + kPurgeClockSkew) {
        return false;
    }
    switch (record.kind) {
        case PurgeKind::Url:
            return meta.primary_key == record.value;
        case PurgeKind::Prefix:
            return meta.primary_key.starts_with(record.value);
        case PurgeKind::Tag:
            return std::find(meta.tags.begin(), meta.tags.end(), record.value) != meta.tags.end();
        case PurgeKind::All:
            return true;
    }
    return false;
}

std::string_view leaseStateName(LeaseState state) {
    switch (state) {
        case LeaseState::Owner:
            return "owner";
        case LeaseState::Filling:
            return "filling";
        case LeaseState::Uncacheable:
            return "uncacheable";
        case LeaseState::Unavailable:
            return "unavailable";
    }
    return "unavailable";
}

std::string encodeLease(LeaseState state, WallTime deadline) {
    std::string out(kLeaseMagic);
    out.push_back(static_cast<char>(kLeaseVersion));
    out.push_back(static_cast<char>(state == LeaseState::Uncacheable ? 2 : 1));
    putU64(out, static_cast<std::uint64_t>(toMillis(deadline)));
    return out;
}

std::optional<L2Lease> decodeLease(std::string_view value) {
    if (!value.starts_with(kLeaseMagic)) {
        return std::nullopt;
    }
    Reader r(value.substr(kLeaseMagic.size()));
    std::uint8_t version = 0;
    std::uint8_t state = 0;
    std::uint64_t deadline_ms = 0;
    // A newer version may append fields: what this one knows comes first.
    if (!r.u8(version) || version < 1 || !r.u8(state) || !r.u64(deadline_ms)) {
        return std::nullopt;
    }
    L2Lease lease;
    if (state == 1) {
        lease.state = LeaseState::Filling;
    } else if (state == 2) {
        lease.state = LeaseState::Uncacheable;
    } else {
        return std::nullopt;
    }
    lease.deadline = WallTime(std::chrono::milliseconds(static_cast<std::int64_t>(deadline_ms)));
    return lease;
}

L2Options L2Options::fromConfig(const config::L2Cache& config) {
    L2Options o;
    for (const auto& ep : config.servers) {
        std::string host = ep.host.empty() ? "127.0.0.1" : ep.host;
        if (host.find(':') != std::string::npos) {
            host = "[" + host + "]";
        }
        o.servers.push_back(host + ":" + std::to_string(ep.port));
    }
    o.timeout = config.timeout;
    o.max_object_bytes = config.max_object_bytes;
    o.chunks = config.chunks;
    o.key_namespace = config.key_namespace;
    o.threads = config.threads;
    o.purge_poll = config.purge_poll;
    o.max_ttl = duration_cast<std::chrono::seconds>(config.max_ttl);
    o.keep = duration_cast<std::chrono::seconds>(config.keep);
    o.metrics = &metrics::global();
    return o;
}

// ---- breaker ---------------------------------------------------------------------------------

namespace {

enum BreakerState : int { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

// One per server. The closed, failure-free state is read without the lock (every lookup).
class Breaker {
public:
    Breaker(std::string name, const L2Options& o, metrics::Registry* metrics,
            std::atomic<std::uint64_t>& opens)
        : name_(std::move(name)),
          threshold_(std::max(1u, o.breaker_failures)),
          base_(o.breaker_cooldown),
          max_(std::max(o.breaker_cooldown, o.breaker_max_cooldown)),
          probe_grace_(o.timeout * 4 + milliseconds(100)),
          cooldown_(o.breaker_cooldown),
          metrics_(metrics),
          opens_(opens) {}

    // True when a request may go to this server now; in HalfOpen only the first caller (the
    // probe) gets true. A probe that never reports (dropped) is replaced after probe_grace_.
    bool allow(Clock_::time_point now) {
        if (state_.load(std::memory_order_acquire) == kClosed) {
            return true;
        }
        std::lock_guard lock(mutex_);
        switch (state_.load(std::memory_order_relaxed)) {
            case kClosed:
                return true;
            case kOpen:
                if (now < open_until_) {
                    return false;
                }
                state_.store(kHalfOpen, std::memory_order_release);
                probe_deadline_ = now + probe_grace_;
                return true;
            default:
                if (now < probe_deadline_) {
                    return false;
                }
                probe_deadline_ = now + probe_grace_;
                return true;
        }
    }
    // Without taking the probe: for writes and secondary keys.
    bool rejects(Clock_::time_point now) {
        if (state_.load(std::memory_order_acquire) == kClosed) {
            return false;
        }
        std::lock_guard lock(mutex_);
        return state_.load(std::memory_order_relaxed) == kOpen && now < open_until_;
    }
    void success() {
        if (state_.load(std::memory_order_acquire) == kClosed &&
            failures_.load(std::memory_order_relaxed) == 0) {
            return;
        }
        std::lock_guard lock(mutex_);
        failures_.store(0, std::memory_order_relaxed);
        if (state_.load(std::memory_order_relaxed) != kClosed) {
            state_.store(kClosed, std::memory_order_release);
            cooldown_ = base_;
            LOG_INFO("l2: memcached %s answers again, breaker closed", name_.c_str());
            if (metrics_ != nullptr) {
                metrics_->setL2BreakerOpen(name_, false);
            }
        }
    }
    void failure(Clock_::time_point now) {
        std::lock_guard lock(mutex_);
        const int state = state_.load(std::memory_order_relaxed);
        if (state == kOpen) {
            return;  // a request that started before the breaker opened
        }
        if (state == kHalfOpen) {
            cooldown_ = std::min(cooldown_ * 2, max_);
            openLocked(now);
            return;
        }
        const unsigned n = failures_.load(std::memory_order_relaxed) + 1;
        failures_.store(n, std::memory_order_relaxed);
        if (n >= threshold_) {
            openLocked(now);
        }
    }
    bool isClosed() const { return state_.load(std::memory_order_acquire) == kClosed; }

private:
    void openLocked(Clock_::time_point now) {
        state_.store(kOpen, std::memory_order_release);
        open_until_ = now + cooldown_;
        opens_.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("l2: memcached %s failing, breaker open for %lldms", name_.c_str(),
                 static_cast<long long>(cooldown_.count()));
        if (metrics_ != nullptr) {
            metrics_->setL2BreakerOpen(name_, true);
        }
    }

    const std::string name_;
    const unsigned threshold_;
    const milliseconds base_;
    const milliseconds max_;
    const milliseconds probe_grace_;
    std::atomic<int> state_{kClosed};
    std::atomic<unsigned> failures_{0};
    std::mutex mutex_;
    Clock_::time_point open_until_;      // guarded by mutex_
    Clock_::time_point probe_deadline_;  // guarded by mutex_
    milliseconds cooldown_;              // guarded by mutex_
    metrics::Registry* metrics_;
    std::atomic<std::uint64_t>& opens_;
};

// Every purge record known to this process, consulted by each L2 lookup.
class PurgeIndex {
public:
    enum class Verdict { None, Soft, Hard };

    void add(const PurgeRecord& r) {
        std::unique_lock lock(mutex_);
        switch (r.kind) {
            case PurgeKind::Url:
                raise(urls_[r.value], r);
                break;
            case PurgeKind::Tag:
                raise(tags_[r.value], r);
                break;
            case PurgeKind::Prefix:
                raise(prefixes_[r.value], r);
                break;
            case PurgeKind::All:
                raise(all_, r);
                break;
        }
        any_.store(true, std::memory_order_release);
    }

    Verdict check(const EntryMeta& meta) const {
        if (!any_.load(std::memory_order_acquire)) {
            return Verdict::None;
        }
        std::shared_lock lock(mutex_);
        Verdict v = Verdict::None;
        auto apply = [&](const Times& t) {
            if (t.hard && meta.request_time <= *t.hard + kPurgeClockSkew) {
                v = Verdict::Hard;
            } else if (t.soft && meta.request_time <= *t.soft + kPurgeClockSkew &&
                       v == Verdict::None) {
                v = Verdict::Soft;
            }
        };
        apply(all_);
        if (auto it = urls_.find(meta.primary_key); it != urls_.end()) {
            apply(it->second);
        }
        for (const auto& tag : meta.tags) {
            if (auto it = tags_.find(tag); it != tags_.end()) {
                apply(it->second);
            }
        }
        for (const auto& [prefix, times] : prefixes_) {
            if (meta.primary_key.starts_with(prefix)) {
                apply(times);
            }
        }
        return v;
    }

    // Forgets records older than `cutoff` (nothing they cover can still be stored).
    void prune(WallTime cutoff) {
        std::unique_lock lock(mutex_);
        auto old = [&](const Times& t) {
            return (!t.hard || *t.hard < cutoff) && (!t.soft || *t.soft < cutoff);
        };
        std::erase_if(urls_, [&](const auto& kv) { return old(kv.second); });
        std::erase_if(tags_, [&](const auto& kv) { return old(kv.second); });
        std::erase_if(prefixes_, [&](const auto& kv) { return old(kv.second); });
        if (old(all_)) {
            all_ = Times{};
        }
    }

private:
    struct Times {
        std::optional<WallTime> hard;
        std::optional<WallTime> soft;
    };
    static void raise(Times& t, const PurgeRecord& r) {
        auto& slot = r.soft ? t.soft : t.hard;
        if (!slot || *slot < r.time) {
            slot = r.time;
        }
    }

    mutable std::shared_mutex mutex_;
    std::atomic<bool> any_{false};
    std::unordered_map<std::string, Times> urls_;
    std::unordered_map<std::string, Times> tags_;
    std::unordered_map<std::string, Times> prefixes_;
    Times all_;
};

struct Counters {
    std::atomic<std::uint64_t> hits{0}, misses{0}, errors{0}, timeouts{0}, corrupt{0},
        breaker_opens{0}, breaker_rejects{0}, queue_full_drops{0}, stores{0}, store_skipped{0},
        store_errors{0}, removes{0}, purges_sent{0}, purges_applied{0}, purge_poll_errors{0},
        lease_errors{0}, pending_hits{0}, latency_us{0}, latency_count{0};
};

void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
}

struct LookupJob {
    std::string primary;
    std::string main_key;
    http::Fields fields;
    Clock_::time_point start;
    L2LookupResult result;
    L2LookupCallback done;
};

}  // namespace

// ---- Impl -------------------------------------------------------------------------------------

struct L2Cache::Impl {
    L2Options o;
    OnPurge on_purge;
    std::uint64_t value_limit = 0;  // max_object_bytes minus headroom
    std::string log_key;
    MemcPtr router;  // never does I/O: key -> server index only (const, thread-safe)
    std::vector<MemcPtr> per_thread;
    std::vector<std::uint64_t> per_thread_opens;  // breaker_opens last seen; thread-owned
    MemcPtr poller_memc;
    std::uint64_t poller_opens = 0;  // guarded by poll_mutex
    std::vector<std::unique_ptr<Breaker>> breakers;
    std::vector<std::string> server_names;
    Counters c;
    PurgeIndex index;
    std::unique_ptr<event::BlockingPool> pool;

    // Purge poller state.
    std::mutex append_mutex;  // serialises purge log appends within this process
    std::mutex poll_mutex;    // one pollOnce() at a time (poller_memc is not shared)
    std::mutex seen_mutex;
    std::unordered_map<std::uint64_t, WallTime> seen;  // record id -> time; guarded
    std::optional<std::uint64_t> epoch;                // guarded by seen_mutex
    WallTime last_poll_ok;                             // guarded by seen_mutex
    std::thread poller;
    std::mutex poller_mutex;
    std::condition_variable poller_wake;
    bool stopping = false;  // guarded by poller_mutex

    // Entries queued for writing, by primary key, until their set completed (read your writes).
    std::mutex pending_mutex;
    std::unordered_map<std::string, std::vector<EntryPtr>> pending;  // guarded

    WallTime wallNow() const {
        return o.clock != nullptr ? o.clock->wall() : std::chrono::system_clock::now();
    }

    MemcPtr makeMemc() const {
        MemcPtr m(memcached_create(nullptr));
        if (!m) {
            throw std::runtime_error("l2: memcached_create failed");
        }
        auto set = [&](memcached_behavior_t b, std::uint64_t v) {
            if (memcached_behavior_set(m.get(), b, v) != MEMCACHED_SUCCESS) {
                throw std::runtime_error("l2: memcached_behavior_set failed");
            }
        };
        const auto timeout_ms =
            static_cast<std::uint64_t>(std::max<long long>(1, o.timeout.count()));
        set(MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
        // Ketama with weights (MD5 points, libketama layout): adding a server remaps ~1/n keys.
        set(MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
        set(MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
        set(MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
        set(MEMCACHED_BEHAVIOR_NO_BLOCK, 1);  // makes the connect timeout apply
        set(MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
        set(MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, timeout_ms);
        set(MEMCACHED_BEHAVIOR_POLL_TIMEOUT, timeout_ms);
        set(MEMCACHED_BEHAVIOR_SND_TIMEOUT, timeout_ms * 1000);
        set(MEMCACHED_BEHAVIOR_RCV_TIMEOUT, timeout_ms * 1000);
        // Our breaker decides when to try a failed server again, not libmemcached's own
        // retry timer (which would return SERVER_TEMPORARILY_DISABLED without asking).
        set(MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
        set(MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0);
        for (const auto& text : o.servers) {
            std::string host;
            in_port_t port = 0;
            if (!splitHostPort(text, host, port)) {
                throw std::invalid_argument("l2: bad memcached server \"" + text + "\"");
            }
            if (memcached_server_add(m.get(), host.c_str(), port) != MEMCACHED_SUCCESS) {
                throw std::invalid_argument("l2: cannot add memcached server \"" + text + "\"");
            }
        }
        return m;
    }

    // The pool thread's handle. After any breaker opened since this thread last looked, its
    // connections are dropped first: a connection to a server that died and came back is
    // stale, and its first request would fail (no retries inside a request).
    memcached_st* memcFor(unsigned t) { return fresh(per_thread[t].get(), per_thread_opens[t]); }
    memcached_st* pollerMemc() { return fresh(poller_memc.get(), poller_opens); }
    memcached_st* fresh(memcached_st* m, std::uint64_t& seen_opens) {
        const std::uint64_t opens = c.breaker_opens.load(std::memory_order_relaxed);
        if (opens != seen_opens) {
            seen_opens = opens;
            memcached_quit(m);
        }
        return m;
    }

    unsigned serverFor(std::string_view key) const {
        if (breakers.size() <= 1) {
            return 0;
        }
        const std::uint32_t i = memcached_generate_hash(router.get(), key.data(), key.size());
        return i < breakers.size() ? i : 0;
    }

    void recordOp(metrics::L2Op op, Clock_::time_point start, memcached_return_t rc,
                  unsigned server) {
        const auto now = Clock_::now();
        const bool error = isError(rc);
        if (error) {
            bump(c.errors);
            if (rc == MEMCACHED_TIMEOUT) {
                bump(c.timeouts);
            }
        }
        if (serverAnswered(rc)) {
            breakers[server]->success();
        } else {
            breakers[server]->failure(now);
        }
        if (o.metrics != nullptr) {
            o.metrics->l2Operation(op, std::chrono::duration<double>(now - start).count(), !error);
        }
    }

    struct Fetched {
        memcached_return_t rc = MEMCACHED_NOTFOUND;
        MallocPtr data;
        std::size_t size = 0;
        std::string_view view() const { return {data.get(), size}; }
    };
    Fetched get(memcached_st* m, const std::string& key, metrics::L2Op op = metrics::L2Op::Get) {
        Fetched f;
        const auto start = Clock_::now();
        std::uint32_t flags = 0;
        char* value = memcached_get(m, key.data(), key.size(), &f.size, &flags, &f.rc);
        f.data.reset(value);
        if (f.rc == MEMCACHED_SUCCESS && value == nullptr) {
            f.size = 0;  // an empty value comes back as null
        }
        recordOp(op, start, f.rc, serverFor(key));
        return f;
    }

    L2LookupResult fail(memcached_return_t rc) {
        L2LookupResult r;
        r.status = L2Status::Error;
        r.reason = failureReason(rc);
        return r;
    }
    L2LookupResult corrupt(std::string_view why) {
        bump(c.corrupt);
        LOG_DEBUG("l2: corrupt value: %.*s", static_cast<int>(why.size()), why.data());
        L2LookupResult r;
        r.status = L2Status::Error;
        r.reason = L2Reason::Corrupt;
        return r;
    }
    static L2LookupResult miss(L2Reason reason) {
        L2LookupResult r;
        r.status = L2Status::Miss;
        r.reason = reason;
        return r;
    }
    L2LookupResult hit(EntryPtr entry) {
        switch (index.check(entry->meta())) {
            case PurgeIndex::Verdict::Hard:
                return miss(L2Reason::Purged);
            case PurgeIndex::Verdict::Soft:
                entry = entry->withSoftPurge();
                break;
            case PurgeIndex::Verdict::None:
                break;
        }
        L2LookupResult r;
        r.status = L2Status::Hit;
        r.reason = L2Reason::None;
        r.entry = std::move(entry);
        return r;
    }

    L2LookupResult lookupOn(unsigned t, const LookupJob& job) {
        memcached_st* m = memcFor(t);
        Fetched f = get(m, job.main_key);
        if (f.rc == MEMCACHED_NOTFOUND) {
            return miss(L2Reason::NotFound);
        }
        if (f.rc != MEMCACHED_SUCCESS) {
            return fail(f.rc);
        }
        auto decoded = decodeRecord(f.view(), job.main_key, job.primary, "");
        if (!decoded) {
            return corrupt(decoded.error());
        }
        if (decoded->kind != RecordKind::VaryIndex) {
            return finish(m, std::move(decoded.value()));
        }
        // The URL varies: find this request's variant.
        const VarySpec& vary = decoded->vary;
        if (vary.star) {
            return miss(L2Reason::VaryMiss);  // never matches (RFC 9111 4.1)
        }
        const std::string secondary = secondaryKey(vary, job.fields);
        const std::string variant_key = memcachedKey(o.key_namespace, job.primary, secondary);
        if (breakers[serverFor(variant_key)]->rejects(Clock_::now())) {
            bump(c.breaker_rejects);
            return breakerOpen();
        }
        f = get(m, variant_key);
        if (f.rc == MEMCACHED_NOTFOUND) {
            return miss(L2Reason::VaryMiss);
        }
        if (f.rc != MEMCACHED_SUCCESS) {
            return fail(f.rc);
        }
        auto variant = decodeRecord(f.view(), variant_key, job.primary, secondary);
        if (!variant) {
            return corrupt(variant.error());
        }
        if (variant->kind == RecordKind::VaryIndex) {
            return corrupt("VaryIndex at a variant key");
        }
        return finish(m, std::move(variant.value()));
    }

    static L2LookupResult breakerOpen() {
        L2LookupResult r;
        r.status = L2Status::Error;
        r.reason = L2Reason::BreakerOpen;
        return r;
    }

    // An Entry or a Manifest (whose chunks are fetched with one multi-get).
    L2LookupResult finish(memcached_st* m, DecodedRecord rec) {
        if (rec.kind == RecordKind::Entry) {
            return rec.entry ? hit(std::move(rec.entry)) : corrupt("entry record without entry");
        }
        if (rec.kind != RecordKind::Manifest || !rec.manifest || !rec.manifest->head_only) {
            return corrupt("unexpected record kind");
        }
        const ChunkManifest& manifest = *rec.manifest;
        // Check purges before paying for the chunks.
        if (index.check(manifest.head_only->meta()) == PurgeIndex::Verdict::Hard) {
            return miss(L2Reason::Purged);
        }
        const std::vector<std::string> keys = manifest.chunkKeys();
        if (keys.empty()) {
            auto entry = assembleChunks(manifest, {});
            return entry ? hit(std::move(entry.value())) : corrupt(entry.error());
        }
        const auto now = Clock_::now();
        std::vector<unsigned> servers;
        servers.reserve(keys.size());
        for (const auto& k : keys) {
            servers.push_back(serverFor(k));
            if (breakers[servers.back()]->rejects(now)) {
                bump(c.breaker_rejects);
                return breakerOpen();
            }
        }
        std::vector<const char*> key_ptrs;
        std::vector<std::size_t> key_lens;
        for (const auto& k : keys) {
            key_ptrs.push_back(k.data());
            key_lens.push_back(k.size());
        }
        std::unordered_map<std::string_view, std::size_t> position;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            position.emplace(keys[i], i);
        }
        std::vector<std::string> values(keys.size());
        std::vector<bool> got(keys.size(), false);
        const auto start = Clock_::now();
        memcached_return_t rc = memcached_mget(m, key_ptrs.data(), key_lens.data(), keys.size());
        memcached_return_t fetch_rc = rc;
        if (memcached_success(rc)) {
            // Caller-owned storage: memcached_fetch_result frees a result it allocated itself
            // once the fetch completes, and freeing it again would be a double free.
            memcached_result_st storage;
            memcached_result_st* result = memcached_result_create(m, &storage);
            while (result != nullptr) {
                memcached_return_t frc = MEMCACHED_SUCCESS;
                if (memcached_fetch_result(m, result, &frc) == nullptr) {
                    fetch_rc = (frc == MEMCACHED_END || frc == MEMCACHED_NOTFOUND)
                                   ? MEMCACHED_SUCCESS
                                   : frc;
                    break;
                }
                std::string_view key(memcached_result_key_value(result),
                                     memcached_result_key_length(result));
                if (auto it = position.find(key); it != position.end()) {
                    values[it->second].assign(memcached_result_value(result),
                                              memcached_result_length(result));
                    got[it->second] = true;
                }
            }
            memcached_result_free(result);
        }
        // Attribute the outcome per server: a failure to the servers whose chunks are missing.
        std::vector<bool> failed_server(breakers.size(), false);
        bool all = true;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            if (!got[i]) {
                all = false;
                failed_server[servers[i]] = true;
            }
        }
        const bool op_failed = !memcached_success(fetch_rc) || !memcached_success(rc);
        const memcached_return_t bad = !memcached_success(rc) ? rc : fetch_rc;
        for (std::size_t s = 0; s < breakers.size(); ++s) {
            if (std::find(servers.begin(), servers.end(), s) == servers.end()) {
                continue;
            }
            recordOp(metrics::L2Op::Get, start,
                     op_failed && failed_server[s] ? bad : MEMCACHED_SUCCESS,
                     static_cast<unsigned>(s));
        }
        if (!all) {
            if (op_failed) {
                return fail(bad);
            }
            return miss(L2Reason::NotFound);  // a chunk was evicted: the object is gone
        }
        std::vector<std::string_view> views(values.begin(), values.end());
        auto entry = assembleChunks(manifest, views);
        return entry ? hit(std::move(entry.value())) : corrupt(entry.error());
    }

    void storeOn(unsigned t, const EntryPtr& entry, WallTime now) {
        memcached_st* m = memcFor(t);
        // Never alive past request_time + max_ttl: purge records are kept that long (plus the
        // skew margin), so an object fetched slowly across a purge cannot outlive its record.
        // A stale object with a validator is still worth a conditional request (a 304 instead
        // of the body), so it stays `keep` longer, as it would in L1 until evicted.
        const bool has_validator =
            !entry->meta().etag.empty() || entry->meta().last_modified.has_value();
        auto ttl = storageTtl(entry->freshness(), now) + (has_validator ? o.keep : Seconds(0));
        const auto limit =
            std::chrono::duration_cast<Seconds>(o.max_ttl - (now - entry->meta().request_time));
        ttl = std::min(ttl, limit);
        if (ttl <= Seconds(0)) {
            bump(c.store_skipped);
            return;
        }
        const auto plan = l2WritePlan(*entry, o.key_namespace, value_limit, o.chunks, randomU64());
        if (plan.empty()) {
            bump(c.store_skipped);
            return;
        }
        const auto expiration = static_cast<time_t>(ttl.count());
        for (const auto& w : plan) {
            const unsigned server = serverFor(w.key);
            if (breakers[server]->rejects(Clock_::now())) {
                bump(c.store_errors);
                return;
            }
            const auto start = Clock_::now();
            memcached_return_t rc = memcached_set(m, w.key.data(), w.key.size(), w.value.data(),
                                                  w.value.size(), expiration, 0);
            recordOp(metrics::L2Op::Set, start, rc, server);
            if (rc != MEMCACHED_SUCCESS) {
                // Stop: the record must never be written without all its chunks.
                bump(c.store_errors);
                return;
            }
        }
        bump(c.stores);
    }

    void forgetPending(const EntryPtr& entry) {
        std::lock_guard lock(pending_mutex);
        auto it = pending.find(entry->meta().primary_key);
        if (it == pending.end()) {
            return;
        }
        std::erase(it->second, entry);
        if (it->second.empty()) {
            pending.erase(it);
        }
    }
    // The entry being written for this request's variant, if any.
    EntryPtr pendingFor(const std::string& primary, const http::Fields& fields) {
        std::lock_guard lock(pending_mutex);
        auto it = pending.find(primary);
        if (it == pending.end()) {
            return nullptr;
        }
        for (auto e = it->second.rbegin(); e != it->second.rend(); ++e) {
            if (secondaryKey((*e)->meta().vary, fields) == (*e)->meta().secondary_key) {
                return *e;
            }
        }
        return nullptr;
    }

    std::string leaseKey(const std::string& primary) const {
        return memcachedKey(o.key_namespace, primary, "") + ".lease";
    }

    L2Lease leaseOn(unsigned t, const std::string& primary, milliseconds ttl) {
        memcached_st* m = memcFor(t);
        const std::string key = leaseKey(primary);
        const unsigned server = serverFor(key);
        const WallTime deadline = wallNow() + ttl;
        const std::string value = encodeLease(LeaseState::Filling, deadline);
        // memcached expires in whole seconds: round up, so the record never dies before its
        // deadline; waiters go by the deadline inside it.
        const auto expiration = static_cast<time_t>((ttl.count() + 999) / 1000 + 1);
        // Two tries: a lease deleted between our add and our get is free again.
        for (int attempt = 0; attempt < 2; ++attempt) {
            auto start = Clock_::now();
            memcached_return_t rc =
                memcached_add(m, key.data(), key.size(), value.data(), value.size(), expiration, 0);
            recordOp(metrics::L2Op::Lease, start, rc, server);
            if (rc == MEMCACHED_SUCCESS) {
                return L2Lease{LeaseState::Owner, deadline};
            }
            if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
                bump(c.lease_errors);
                return L2Lease{};
            }
            Fetched f = get(m, key, metrics::L2Op::Lease);
            if (f.rc == MEMCACHED_NOTFOUND) {
                continue;
            }
            if (f.rc != MEMCACHED_SUCCESS) {
                bump(c.lease_errors);
                return L2Lease{};
            }
            if (auto lease = decodeLease(f.view())) {
                return *lease;
            }
            bump(c.lease_errors);  // foreign value at our key: never wait on it
            return L2Lease{};
        }
        return L2Lease{};
    }

    void releaseLeaseOn(unsigned t, const std::string& primary, bool uncacheable,
                        milliseconds hit_for_pass) {
        memcached_st* m = memcFor(t);
        const std::string key = leaseKey(primary);
        const auto start = Clock_::now();
        memcached_return_t rc;
        if (uncacheable) {
            const std::string value = encodeLease(LeaseState::Uncacheable, wallNow());
            const auto expiration = static_cast<time_t>(std::max<long long>(
                1, std::chrono::duration_cast<std::chrono::seconds>(hit_for_pass).count()));
            rc =
                memcached_set(m, key.data(), key.size(), value.data(), value.size(), expiration, 0);
        } else {
            rc = memcached_delete(m, key.data(), key.size(), 0);
        }
        recordOp(metrics::L2Op::Lease, start, rc, serverFor(key));
        if (isError(rc)) {
            bump(c.lease_errors);  // it expires on its own
        }
    }

    // Deletes the URL's key; returns whether the deleted value was a VaryIndex (when asked).
    bool deleteUrl(unsigned t, const std::string& primary, bool check_vary) {
        memcached_st* m = memcFor(t);
        const std::string key = memcachedKey(o.key_namespace, primary, "");
        bool was_vary = false;
        if (check_vary) {
            Fetched f = get(m, key);
            if (f.rc == MEMCACHED_SUCCESS) {
                auto decoded = decodeRecord(f.view(), key, primary, "");
                was_vary = decoded && decoded->kind == RecordKind::VaryIndex;
            }
        }
        const auto start = Clock_::now();
        memcached_return_t rc = memcached_delete(m, key.data(), key.size(), 0);
        recordOp(metrics::L2Op::Delete, start, rc, serverFor(key));
        bump(c.removes);
        return was_vary;
    }

    // Names the record and applies it to this process's L2 lookups at once. Called on the
    // purging thread, before the job is queued: the caller purges L1 and answers right after,
    // and a lookup queued after that must already miss (on a pool thread the record could
    // come after such a lookup, which would promote the purged object back into L1).
    PurgeRecord prepare(PurgeRecord rec) {
        rec.id = randomU64();
        rec.time = wallNow();
        {
            std::lock_guard lock(seen_mutex);
            seen.emplace(rec.id, rec.time);  // our own: the poller must not re-apply it
        }
        index.add(rec);
        return rec;
    }

    // Appends a prepare()d record to the shared purge log with gets/cas.
    bool appendPurge(memcached_st* m, PurgeRecord rec) {
        if (rec.value.size() > kMaxPurgeValue) {
            return false;  // decoders reject longer values: it would poison the shared log
        }
        // One appender per process at a time: pool threads racing each other on the CAS only
        // starve one another. Other instances can still collide; they back off and retry.
        std::lock_guard append_lock(append_mutex);
        const unsigned server = serverFor(log_key);
        for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
            const auto start = Clock_::now();
            const char* key = log_key.data();
            const std::size_t key_len = log_key.size();
            memcached_return_t rc = memcached_mget(m, &key, &key_len, 1);
            std::string current;
            std::uint64_t cas = 0;
            bool found = false;
            if (memcached_success(rc)) {
                memcached_result_st storage;  // caller-owned (see finish())
                memcached_result_st* result = memcached_result_create(m, &storage);
                memcached_return_t frc = MEMCACHED_SUCCESS;
                while (result != nullptr && memcached_fetch_result(m, result, &frc) != nullptr) {
                    current.assign(memcached_result_value(result), memcached_result_length(result));
                    cas = memcached_result_cas(result);
                    found = true;
                }
                memcached_result_free(result);
                if (frc != MEMCACHED_END && frc != MEMCACHED_NOTFOUND && frc != MEMCACHED_SUCCESS) {
                    rc = frc;
                }
            }
            recordOp(metrics::L2Op::PurgeLogGet, start, rc, server);
            if (!memcached_success(rc) && rc != MEMCACHED_NOTFOUND && rc != MEMCACHED_END) {
                LOG_WARN("l2: purge log read failed: %s", memcached_strerror(m, rc));
                return false;
            }
            PurgeLog log;
            if (found) {
                auto decoded = decodePurgeLog(current);
                if (decoded) {
                    log = std::move(decoded.value());
                } else {
                    bump(c.corrupt);
                    log.epoch = randomU64();  // unreadable: replaced by a new log
                }
            } else {
                log.epoch = randomU64();
            }
            // Retention: nothing stored before now - max_ttl can still be in memcached.
            const WallTime cutoff = rec.time - o.max_ttl - kPurgeClockSkew * 2;
            std::erase_if(log.records, [&](const PurgeRecord& r) { return r.time < cutoff; });
            log.records.push_back(rec);
            std::string value = encodePurgeLog(log);
            while (value.size() > kMaxPurgeLogBytes && log.records.size() > 1) {
                compact(log);
                value = encodePurgeLog(log);
            }
            const auto wstart = Clock_::now();
            memcached_return_t wrc = found ? memcached_cas(m, log_key.data(), log_key.size(),
                                                           value.data(), value.size(), 0, 0, cas)
                                           : memcached_add(m, log_key.data(), log_key.size(),
                                                           value.data(), value.size(), 0, 0);
            recordOp(metrics::L2Op::PurgeLogSet, wstart, wrc, server);
            if (wrc == MEMCACHED_SUCCESS || wrc == MEMCACHED_STORED) {
                bump(c.purges_sent);
                return true;
            }
            if (wrc != MEMCACHED_DATA_EXISTS && wrc != MEMCACHED_NOTSTORED &&
                wrc != MEMCACHED_NOTFOUND) {
                LOG_WARN("l2: purge log write failed: %s", memcached_strerror(m, wrc));
                return false;  // down or timed out: the caller reports the purge failed
            }
            // Someone else appended (or created the log) between our read and write: retry
            // after a short random pause so that concurrent appenders stop colliding. This is
            // an admin operation on a pool thread, never a client request.
            const std::uint64_t window_us = std::min<std::uint64_t>(500u << attempt, 50000);
            std::this_thread::sleep_for(microseconds(randomU64() % window_us));
        }
        LOG_WARN("l2: purge log contended, gave up after %d attempts", kCasAttempts);
        return false;
    }

    // Replaces the oldest half of the records by one hard `all` record at the newest dropped
    // time: over-purges, never under-purges.
    static void compact(PurgeLog& log) {
        std::stable_sort(
            log.records.begin(), log.records.end(),
            [](const PurgeRecord& a, const PurgeRecord& b) { return a.time < b.time; });
        const std::size_t drop = std::max<std::size_t>(2, log.records.size() / 2);
        PurgeRecord all;
        all.id = randomU64();
        all.kind = PurgeKind::All;
        all.time = log.records[std::min(drop, log.records.size()) - 1].time;
        // The `all` record takes the newest dropped slot, so the vector only shrinks: no
        // insert (whose reallocation path GCC 12 flags with -Wnull-dereference).
        const std::size_t dropped = std::min(drop, log.records.size());
        log.records[dropped - 1] = std::move(all);
        log.records.erase(log.records.begin(),
                          log.records.begin() + static_cast<std::ptrdiff_t>(dropped - 1));
    }

    // `notify`: false for the first read at startup, when there is no L1 content to purge.
    void pollOnce(bool notify = true) {
        std::lock_guard poll_lock(poll_mutex);
        Fetched f = get(pollerMemc(), log_key, metrics::L2Op::PurgeLogGet);
        const WallTime now = wallNow();
        std::vector<PurgeRecord> fresh;
        {
            std::lock_guard lock(seen_mutex);
            if (f.rc == MEMCACHED_NOTFOUND) {
                if (epoch) {
                    fresh.push_back(lostLog());
                }
                epoch.reset();
                last_poll_ok = now;
            } else if (f.rc != MEMCACHED_SUCCESS) {
                bump(c.purge_poll_errors);
                return;
            } else {
                auto log = decodePurgeLog(f.view());
                if (!log) {
                    bump(c.purge_poll_errors);
                    bump(c.corrupt);
                    return;
                }
                if (epoch && *epoch != log->epoch) {
                    fresh.push_back(lostLog());
                }
                epoch = log->epoch;
                last_poll_ok = now;
                for (auto& r : log->records) {
                    if (seen.emplace(r.id, r.time).second) {
                        fresh.push_back(std::move(r));
                    }
                }
            }
            const WallTime cutoff = now - o.max_ttl - kPurgeClockSkew * 2;
            std::erase_if(seen, [&](const auto& kv) { return kv.second < cutoff; });
            index.prune(cutoff);
        }
        for (const auto& r : fresh) {
            index.add(r);
            bump(c.purges_applied);
            if (on_purge && notify) {
                try {
                    on_purge(r);
                } catch (...) {
                    log::countInternalError();
                    LOG_ERROR("l2: exception in purge callback");
                }
            }
        }
    }

    // The log we had read is gone (server restart, eviction): records written since our last
    // read are unknown, so everything requested before it counts as purged, here and in L1.
    PurgeRecord lostLog() {
        LOG_WARN("l2: purge log lost; treating objects older than the last read as purged");
        PurgeRecord r;
        r.id = randomU64();
        r.kind = PurgeKind::All;
        r.time = last_poll_ok;
        return r;
    }

    // Sleeps one period (or until stop()).
    void waitPoll() {
        std::unique_lock lock(poller_mutex);
        poller_wake.wait_for(lock, o.purge_poll, [this] { return stopping; });
    }

    void pollerLoop() {
        std::unique_lock lock(poller_mutex);
        while (!stopping) {
            lock.unlock();
            pollOnce();
            lock.lock();
            poller_wake.wait_for(lock, o.purge_poll, [this] { return stopping; });
        }
    }

    void stop() {
        {
            std::lock_guard lock(poller_mutex);
            stopping = true;
        }
        poller_wake.notify_all();
        if (poller.joinable()) {
            poller.join();
        }
        if (pool) {
            pool->shutdown();
        }
    }

    template <class Fn>
    bool submitPurge(event::Loop* loop, DoneCallback done, Fn fn) {
        auto ok = std::make_shared<bool>(false);
        auto work = [this, ok, fn = std::move(fn)](unsigned t) { *ok = fn(t); };
        bool queued = (loop != nullptr && done)
                          ? pool->submit(*loop, std::move(work), [ok, done] { done(*ok); })
                          : pool->submit(std::move(work));
        if (!queued) {
            bump(c.queue_full_drops);
            if (loop != nullptr && done) {
                loop->post([done] { done(false); });
            }
        }
        return queued;
    }
};

// ---- L2Cache ---------------------------------------------------------------------------------

L2Cache::L2Cache(L2Options options, OnPurge on_purge) : impl_(std::make_shared<Impl>()) {
    Impl& im = *impl_;
    im.o = std::move(options);
    im.on_purge = std::move(on_purge);
    if (!isValidMemcachedKey(im.o.key_namespace + ":purgelog") || im.o.key_namespace.size() > 64) {
        throw std::invalid_argument("l2: invalid namespace \"" + im.o.key_namespace + "\"");
    }
    im.value_limit = im.o.max_object_bytes > 2 * kItemHeadroom
                         ? im.o.max_object_bytes - kItemHeadroom
                         : im.o.max_object_bytes;
    im.log_key = im.o.key_namespace + ":purgelog";
    if (im.o.servers.empty()) {
        return;
    }
    im.router = im.makeMemc();
    const std::uint32_t n = memcached_server_count(im.router.get());
    for (std::uint32_t i = 0; i < n; ++i) {
        auto instance = memcached_server_instance_by_position(im.router.get(), i);
        std::string name = std::string(memcached_server_name(instance)) + ":" +
                           std::to_string(memcached_server_port(instance));
        im.server_names.push_back(name);
        im.breakers.push_back(
            std::make_unique<Breaker>(name, im.o, im.o.metrics, im.c.breaker_opens));
    }
    const unsigned threads = std::max(1u, im.o.threads);
    for (unsigned i = 0; i < threads; ++i) {
        im.per_thread.push_back(im.makeMemc());
    }
    im.per_thread_opens.assign(threads, 0);
    im.poller_memc = im.makeMemc();
    im.pool = std::make_unique<event::BlockingPool>(
        event::BlockingPool::Options{threads, im.o.max_queue, "strata-l2"});
    // Read the log once before serving anything (startup may block up to `timeout`): a new
    // instance must not answer from L2 with objects purged before it started.
    im.pollOnce(/*notify=*/false);
    Impl* raw = impl_.get();
    im.poller = std::thread([raw] {
        raw->waitPoll();
        raw->pollerLoop();
    });
    ::pthread_setname_np(im.poller.native_handle(), "strata-l2-purge");
}

L2Cache::~L2Cache() {
    impl_->stop();
}

bool L2Cache::enabled() const {
    return impl_->pool != nullptr;
}

void L2Cache::lookup(std::string primary_key, const http::Fields& request_fields, event::Loop& loop,
                     L2LookupCallback done) {
    Impl& im = *impl_;
    auto post = [&loop](L2LookupCallback cb, L2LookupResult r) {
        loop.post([cb = std::move(cb), r = std::move(r)]() mutable { cb(std::move(r)); });
    };
    if (!enabled()) {
        post(std::move(done), Impl::miss(L2Reason::Disabled));
        return;
    }
    if (EntryPtr writing = im.pendingFor(primary_key, request_fields)) {
        L2LookupResult r = im.hit(std::move(writing));
        if (r.status == L2Status::Hit) {
            bump(im.c.pending_hits);
            bump(im.c.hits);
            post(std::move(done), std::move(r));
            return;
        }
    }
    auto job = std::make_shared<LookupJob>();
    job->main_key = memcachedKey(im.o.key_namespace, primary_key, "");
    const auto now = Clock_::now();
    if (!im.breakers[im.serverFor(job->main_key)]->allow(now)) {
        bump(im.c.breaker_rejects);
        post(std::move(done), Impl::breakerOpen());
        return;
    }
    job->primary = std::move(primary_key);
    job->fields = request_fields;
    job->start = now;
    job->done = std::move(done);
    Impl* raw = impl_.get();
    const bool queued = im.pool->submit(
        loop,
        [raw, job](unsigned t) {
            job->result = raw->lookupOn(t, *job);
            const auto us = duration_cast<microseconds>(Clock_::now() - job->start);
            job->result.latency = us;
            bump(raw->c.latency_us, static_cast<std::uint64_t>(us.count()));
            bump(raw->c.latency_count);
            if (job->result.status == L2Status::Hit) {
                bump(raw->c.hits);
            } else if (job->result.status == L2Status::Miss) {
                bump(raw->c.misses);
            }
        },
        [job] { job->done(std::move(job->result)); });
    if (!queued) {
        bump(im.c.queue_full_drops);
        L2LookupResult r;
        r.status = L2Status::Error;
        r.reason = L2Reason::QueueFull;
        post(std::move(job->done), r);
    }
}

void L2Cache::store(EntryPtr entry, WallTime now, bool release_lease) {
    Impl& im = *impl_;
    if (!enabled() || !entry) {
        return;
    }
    const std::string& primary = entry->meta().primary_key;
    // Skip a dead server here rather than fill the queue with doomed writes.
    const std::string main = memcachedKey(im.o.key_namespace, primary, entry->meta().secondary_key);
    if (im.breakers[im.serverFor(main)]->rejects(Clock_::now())) {
        bump(im.c.store_errors);
        if (release_lease) {
            releaseLease(primary, false, {});
        }
        return;
    }
    {
        std::lock_guard lock(im.pending_mutex);
        im.pending[primary].push_back(entry);
    }
    Impl* raw = impl_.get();
    if (!im.pool->submit([raw, entry, now, release_lease](unsigned t) {
            raw->storeOn(t, entry, now);
            raw->forgetPending(entry);
            if (release_lease) {
                raw->releaseLeaseOn(t, entry->meta().primary_key, false, {});
            }
        })) {
        bump(im.c.queue_full_drops);
        im.forgetPending(entry);
    }
}

void L2Cache::acquireLease(std::string primary_key, std::chrono::milliseconds ttl,
                           event::Loop& loop, L2LeaseCallback done) {
    Impl& im = *impl_;
    auto unavailable = [&loop](L2LeaseCallback cb) {
        loop.post([cb = std::move(cb)] { cb(L2Lease{}); });
    };
    if (!enabled()) {
        unavailable(std::move(done));
        return;
    }
    const std::string key = im.leaseKey(primary_key);
    if (!im.breakers[im.serverFor(key)]->allow(Clock_::now())) {
        bump(im.c.breaker_rejects);
        unavailable(std::move(done));
        return;
    }
    auto result = std::make_shared<L2Lease>();
    Impl* raw = impl_.get();
    const bool queued = im.pool->submit(
        loop,
        [raw, result, primary = std::move(primary_key), ttl](unsigned t) {
            *result = raw->leaseOn(t, primary, ttl);
        },
        [result, done] { done(*result); });
    if (!queued) {
        bump(im.c.queue_full_drops);
        unavailable(std::move(done));
    }
}

void L2Cache::releaseLease(std::string primary_key, bool uncacheable,
                           std::chrono::milliseconds hit_for_pass) {
    if (!enabled()) {
        return;
    }
    Impl* raw = impl_.get();
    if (!impl_->pool->submit(
            [raw, primary = std::move(primary_key), uncacheable, hit_for_pass](unsigned t) {
                raw->releaseLeaseOn(t, primary, uncacheable, hit_for_pass);
            })) {
        bump(impl_->c.queue_full_drops);  // the lease expires on its own
    }
}

void L2Cache::removeUrl(std::string primary_key, bool soft, event::Loop* loop, DoneCallback done) {
    Impl& im = *impl_;
    if (!enabled()) {
        if (loop != nullptr && done) {
            loop->post([done] { done(true); });
        }
        return;
    }
    Impl* raw = impl_.get();
    PurgeRecord rec;
    rec.kind = PurgeKind::Url;
    rec.soft = soft;
    rec.value = std::move(primary_key);
    im.submitPurge(loop, std::move(done), [raw, rec = im.prepare(std::move(rec))](unsigned t) {
        if (!rec.soft) {
            raw->deleteUrl(t, rec.value, /*check_vary=*/false);
        }
        return raw->appendPurge(raw->memcFor(t), rec);
    });
}

void L2Cache::invalidate(std::string primary_key) {
    if (!enabled()) {
        return;
    }
    Impl* raw = impl_.get();
    impl_->submitPurge(nullptr, nullptr, [raw, primary = std::move(primary_key)](unsigned t) {
        if (!raw->deleteUrl(t, primary, /*check_vary=*/true)) {
            return true;
        }
        PurgeRecord rec;
        rec.kind = PurgeKind::Url;
        rec.value = primary;
        return raw->appendPurge(raw->memcFor(t), raw->prepare(std::move(rec)));
    });
}

void L2Cache::purgePrefix(std::string prefix, bool soft, event::Loop* loop, DoneCallback done) {
    logPurge(PurgeKind::Prefix, std::move(prefix), soft, loop, std::move(done));
}

void L2Cache::purgeTag(std::string tag, bool soft, event::Loop* loop, DoneCallback done) {
    logPurge(PurgeKind::Tag, std::move(tag), soft, loop, std::move(done));
}

void L2Cache::logPurge(PurgeKind kind, std::string value, bool soft, event::Loop* loop,
                       DoneCallback done) {
    if (!enabled()) {
        if (loop != nullptr && done) {
            loop->post([done] { done(true); });
        }
        return;
    }
    Impl* raw = impl_.get();
    PurgeRecord rec;
    rec.kind = kind;
    rec.soft = soft;
    rec.value = std::move(value);
    impl_->submitPurge(loop, std::move(done),
                       [raw, rec = impl_->prepare(std::move(rec))](unsigned t) {
                           return raw->appendPurge(raw->memcFor(t), rec);
                       });
}

L2Stats L2Cache::stats() const {
    const Counters& c = impl_->c;
    auto get = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    L2Stats s;
    s.hits = get(c.hits);
    s.misses = get(c.misses);
    s.errors = get(c.errors);
    s.timeouts = get(c.timeouts);
    s.corrupt = get(c.corrupt);
    s.breaker_opens = get(c.breaker_opens);
    s.breaker_rejects = get(c.breaker_rejects);
    s.queue_full_drops = get(c.queue_full_drops);
    s.stores = get(c.stores);
    s.store_skipped = get(c.store_skipped);
    s.store_errors = get(c.store_errors);
    s.removes = get(c.removes);
    s.purges_sent = get(c.purges_sent);
    s.purges_applied = get(c.purges_applied);
    s.purge_poll_errors = get(c.purge_poll_errors);
    s.lease_errors = get(c.lease_errors);
    s.pending_hits = get(c.pending_hits);
    s.lookup_latency_us_sum = get(c.latency_us);
    s.lookup_latency_count = get(c.latency_count);
    s.servers = static_cast<unsigned>(impl_->breakers.size());
    for (const auto& b : impl_->breakers) {
        s.breakers_open += b->isClosed() ? 0 : 1;
    }
    return s;
}

unsigned L2Cache::serverForKey(std::string_view memcached_key) const {
    return impl_->serverFor(memcached_key);
}

void L2Cache::pollPurgeLogForTest() {
    if (enabled()) {
        impl_->pollOnce();
    }
}

}  // namespace strata::cache
