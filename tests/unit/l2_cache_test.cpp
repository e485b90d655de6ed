// L2Cache against real memcached processes (memcached -l 127.0.0.1 -p -1, port read from
// $MEMCACHED_PORT_FILENAME), started and stopped by pid here.
#include "strata/cache/l2_cache.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <signal.h>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>
#include <libmemcached/memcached.h>

#include "strata/cache/entry.h"
#include "strata/cache/key.h"
#include "strata/cache/l2_record.h"
#include "strata/config/config.h"
#include "strata/event/loop.h"
#include "strata/metrics/metrics.h"

using namespace strata;
using namespace std::chrono_literals;
using cache::decodeLease;
using cache::encodeLease;
using cache::L2Cache;
using cache::L2Lease;
using cache::L2LookupResult;
using cache::L2Options;
using cache::L2Reason;
using cache::L2Status;
using cache::LeaseState;
using Steady = std::chrono::steady_clock;

namespace {

// One memcached process on 127.0.0.1. restart() brings it back on the same port.
class MemcachedProcess {
public:
    explicit MemcachedProcess(std::uint16_t port = 0) {
        char tmpl[] = "/tmp/strata-l2-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        start(port);
    }
    ~MemcachedProcess() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    MemcachedProcess(const MemcachedProcess&) = delete;
    MemcachedProcess& operator=(const MemcachedProcess&) = delete;

    std::uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    void restart() {
        stop();
        start(port_);
    }

private:
    void start(std::uint16_t port) {
        const std::string port_file = dir_ + "/port";
        std::filesystem::remove(port_file);
        std::vector<std::string> args = {"/usr/bin/memcached",
                                         "-l",
                                         "127.0.0.1",
                                         "-p",
                                         port == 0 ? "-1" : std::to_string(port),
                                         "-U",
                                         "0"};
        if (::geteuid() == 0) {
            args.insert(args.end(), {"-u", "root"});  // memcached refuses root otherwise
        }
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a crashed test binary
            ::setenv("MEMCACHED_PORT_FILENAME", port_file.c_str(), 1);
            int null_fd = ::open("/dev/null", O_RDWR);
            ::dup2(null_fd, 1);
            ::dup2(null_fd, 2);
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        // "TCP INET: PORT", written through a rename once memcached listens.
        const auto deadline = Steady::now() + 10s;
        while (Steady::now() < deadline) {
            std::ifstream in(port_file);
            std::string line;
            while (std::getline(in, line)) {
                if (line.rfind("TCP INET:", 0) == 0) {
                    port_ = static_cast<std::uint16_t>(std::stoul(line.substr(9)));
                    return;
                }
            }
            std::this_thread::sleep_for(2ms);
        }
        FAIL("memcached did not start");
    }

    std::string dir_;
    pid_t pid_ = -1;
    std::uint16_t port_ = 0;
};

// A listening socket that never accepts: connects succeed, nothing ever answers.
class SilentServer {
public:
    SilentServer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        REQUIRE(::listen(fd_, 128) == 0);
        socklen_t len = sizeof sa;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
        port_ = ntohs(sa.sin_port);
    }
    ~SilentServer() { ::close(fd_); }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

// A plain libmemcached client for planting and inspecting values.
class RawClient {
public:
    explicit RawClient(const MemcachedProcess& server) : m_(memcached_create(nullptr)) {
        memcached_behavior_set(m_, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
        memcached_server_add(m_, "127.0.0.1", server.port());
    }
    ~RawClient() { memcached_free(m_); }
    bool set(const std::string& key, const std::string& value) {
        return memcached_set(m_, key.data(), key.size(), value.data(), value.size(), 60, 0) ==
               MEMCACHED_SUCCESS;
    }
    bool remove(const std::string& key) {
        return memcached_delete(m_, key.data(), key.size(), 0) == MEMCACHED_SUCCESS;
    }
    std::optional<std::string> get(const std::string& key) {
        std::size_t len = 0;
        std::uint32_t flags = 0;
        memcached_return_t rc;
        char* v = memcached_get(m_, key.data(), key.size(), &len, &flags, &rc);
        if (rc != MEMCACHED_SUCCESS) {
            return std::nullopt;
        }
        std::string out(v != nullptr ? v : "", len);
        std::free(v);
        return out;
    }
    bool exists(const std::string& key) {
        return memcached_exist(m_, key.data(), key.size()) == MEMCACHED_SUCCESS;
    }

private:
    memcached_st* m_;
};

bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = Steady::now() + timeout;
    while (!pred()) {
        if (Steady::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// Runs `loop` until `pred` holds (checked every millisecond) or the timeout passes.
bool runUntil(event::Loop& loop, const std::function<bool()>& pred,
              std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = Steady::now() + timeout;
    bool ok = false;
    std::function<void()> check;
    event::Timer timer(loop, [&] { check(); });
    check = [&] {
        ok = pred();
        if (ok || Steady::now() > deadline) {
            loop.stop();
        } else {
            timer.arm(1ms);
        }
    };
    loop.post([&] { check(); });
    loop.run();
    return ok;
}

struct Timed {
    L2LookupResult result;
    std::chrono::microseconds elapsed{0};  // lookup() call to callback, on the loop
    bool inline_call = false;
};

L2Lease leaseSync(L2Cache& l2, event::Loop& loop, const std::string& primary,
                  std::chrono::milliseconds ttl = 2000ms) {
    L2Lease out;
    bool done = false;
    loop.post([&] {
        l2.acquireLease(primary, ttl, loop, [&](L2Lease lease) {
            out = lease;
            done = true;
        });
    });
    REQUIRE(runUntil(loop, [&] { return done; }));
    return out;
}

Timed lookupSync(L2Cache& l2, event::Loop& loop, const std::string& primary,
                 const http::Fields& fields = {}) {
    Timed t;
    bool done = false;
    bool returned = false;
    loop.post([&] {
        const auto start = Steady::now();
        l2.lookup(primary, fields, loop, [&, start](L2LookupResult r) {
            t.elapsed =
                std::chrono::duration_cast<std::chrono::microseconds>(Steady::now() - start);
            t.inline_call = !returned;
            t.result = std::move(r);
            done = true;
        });
        returned = true;
    });
    REQUIRE(runUntil(loop, [&] { return done; }));
    return t;
}

const WallTime kNow = std::chrono::system_clock::now();

cache::EntryPtr makeEntry(const std::string& primary, std::string body,
                          std::vector<std::string> tags = {}, const cache::VarySpec& vary = {},
                          const http::Fields& request_fields = {},
                          WallTime request_time = kNow - 10s) {
    cache::EntryMeta meta;
    meta.primary_key = primary;
    meta.vary = vary;
    meta.secondary_key = cache::secondaryKey(vary, request_fields);
    meta.freshness.lifetime = 60s;
    meta.freshness.response_time = request_time;
    meta.request_time = request_time;
    meta.date = request_time;
    meta.tags = std::move(tags);
    http::Fields fields;
    fields.add("Content-Type", "text/plain");
    if (!vary.names.empty()) {
        fields.add("Vary", "Accept-Encoding");
    }
    return std::make_shared<const cache::CacheEntry>(
        200, "OK", std::move(fields), std::make_shared<const std::string>(std::move(body)),
        std::move(meta));
}

L2Options optionsFor(std::vector<std::string> servers) {
    L2Options o;
    o.servers = std::move(servers);
    o.timeout = 200ms;  // generous: the CI machine is shared
    o.purge_poll = 100ms;
    o.breaker_cooldown = 100ms;
    o.breaker_max_cooldown = 400ms;
    return o;
}

void storeAndWait(L2Cache& l2, const cache::EntryPtr& entry) {
    const auto before = l2.stats();
    l2.store(entry, kNow);
    REQUIRE(waitFor([&] {
        auto s = l2.stats();
        return s.stores + s.store_skipped + s.store_errors >
               before.stores + before.store_skipped + before.store_errors;
    }));
}

cache::VarySpec acceptEncoding() {
    cache::VarySpec v;
    v.names = {"accept-encoding"};
    return v;
}

http::Fields withEncoding(const std::string& value) {
    http::Fields f;
    f.add("Accept-Encoding", value);
    return f;
}

}  // namespace

TEST_SUITE("cache/l2") {
    TEST_CASE("store then lookup: small object round trip, completion posted not inline") {
        MemcachedProcess mc;
        event::Loop loop;
        L2Cache l2(optionsFor({mc.address()}));
        REQUIRE(l2.enabled());
        auto miss = lookupSync(l2, loop, "http://a.test/small");
        CHECK(miss.result.status == L2Status::Miss);
        CHECK(miss.result.reason == L2Reason::NotFound);
        CHECK_FALSE(miss.inline_call);

        storeAndWait(l2, makeEntry("http://a.test/small", "hello world"));
        CHECK(l2.stats().stores == 1);
        auto hit = lookupSync(l2, loop, "http://a.test/small");
        REQUIRE(hit.result.status == L2Status::Hit);
        CHECK(*hit.result.entry->body() == "hello world");
        CHECK(hit.result.entry->status() == 200);
        CHECK(*hit.result.entry->fields().get("Content-Type") == "text/plain");
        CHECK(hit.result.entry->meta().primary_key == "http://a.test/small");
        CHECK(hit.result.latency.count() > 0);
        auto s = l2.stats();
        CHECK(s.hits == 1);
        CHECK(s.misses == 1);
        CHECK(s.errors == 0);
        CHECK(s.lookup_latency_count == 2);

        // Requested longer than max_ttl ago: it would outlive the purge log's memory.
        storeAndWait(l2, makeEntry("http://a.test/ancient", "old", {}, {}, {}, kNow - 48h));
        CHECK(l2.stats().store_skipped == 1);
    }

    TEST_CASE("Vary: variants side by side, an unknown variant is a vary miss") {
        MemcachedProcess mc;
        event::Loop loop;
        L2Cache l2(optionsFor({mc.address()}));
        const std::string url = "http://a.test/varied";
        storeAndWait(l2, makeEntry(url, "gzipped", {}, acceptEncoding(), withEncoding("gzip")));
        storeAndWait(l2, makeEntry(url, "plain", {}, acceptEncoding(), withEncoding("identity")));
        auto gz = lookupSync(l2, loop, url, withEncoding("gzip"));
        REQUIRE(gz.result.status == L2Status::Hit);
        CHECK(*gz.result.entry->body() == "gzipped");
        auto id = lookupSync(l2, loop, url, withEncoding("identity"));
        REQUIRE(id.result.status == L2Status::Hit);
        CHECK(*id.result.entry->body() == "plain");
        auto br = lookupSync(l2, loop, url, withEncoding("br"));
        CHECK(br.result.status == L2Status::Miss);
        CHECK(br.result.reason == L2Reason::VaryMiss);
    }

    TEST_CASE("a 3 MiB object with max_object_bytes 1 MiB is chunked; chunks off skips it") {
        MemcachedProcess mc;
        event::Loop loop;
        std::string big(3 * 1024 * 1024, '\0');
        for (std::size_t i = 0; i < big.size(); ++i) {
            big[i] = static_cast<char>((i * 7919) >> 5);
        }
        SUBCASE("chunked") {
            auto o = optionsFor({mc.address()});
            o.max_object_bytes = 1024 * 1024;
            L2Cache l2(o);
            storeAndWait(l2, makeEntry("http://a.test/big", big));
            CHECK(l2.stats().stores == 1);
            auto hit = lookupSync(l2, loop, "http://a.test/big");
            REQUIRE(hit.result.status == L2Status::Hit);
            CHECK(hit.result.entry->bodySize() == big.size());
            CHECK(*hit.result.entry->body() == big);
        }
        SUBCASE("skipped") {
            auto o = optionsFor({mc.address()});
            o.max_object_bytes = 1024 * 1024;
            o.chunks = false;
            L2Cache l2(o);
            storeAndWait(l2, makeEntry("http://a.test/big", big));
            CHECK(l2.stats().store_skipped == 1);
            CHECK(lookupSync(l2, loop, "http://a.test/big").result.reason == L2Reason::NotFound);
        }
    }

    TEST_CASE("a missing chunk is a miss, a corrupt chunk an error, neither a crash") {
        MemcachedProcess mc;
        RawClient raw(mc);
        event::Loop loop;
        auto o = optionsFor({mc.address()});
        o.max_object_bytes = 64 * 1024;
        L2Cache l2(o);
        auto entry = makeEntry("http://a.test/chunks", std::string(200 * 1024, 'x'));
        storeAndWait(l2, entry);
        REQUIRE(lookupSync(l2, loop, "http://a.test/chunks").result.status == L2Status::Hit);
        // Find the chunk keys through the manifest the cache wrote.
        auto plan = cache::l2WritePlan(*entry, "strata", 64 * 1024 - cache::kItemHeadroom, true, 1);
        REQUIRE(plan.size() > 2);
        SUBCASE("missing") {
            // Deleting by generation-specific key needs the stored generation: overwrite the
            // manifest with one from a plan whose chunks were never written instead.
            REQUIRE(raw.set(plan.back().key, plan.back().value));
            auto r = lookupSync(l2, loop, "http://a.test/chunks");
            CHECK(r.result.status == L2Status::Miss);
        }
        SUBCASE("corrupt") {
            for (std::size_t i = 0; i + 1 < plan.size(); ++i) {
                REQUIRE(raw.set(plan[i].key, "garbage" + std::to_string(i)));
            }
            REQUIRE(raw.set(plan.back().key, plan.back().value));
            auto r = lookupSync(l2, loop, "http://a.test/chunks");
            CHECK(r.result.status == L2Status::Error);
            CHECK(r.result.reason == L2Reason::Corrupt);
            CHECK(l2.stats().corrupt == 1);
        }
    }

    TEST_CASE("corrupt and foreign values are errors reported as misses, never crashes") {
        MemcachedProcess mc;
        RawClient raw(mc);
        event::Loop loop;
        L2Cache l2(optionsFor({mc.address()}));
        const std::string url = "http://a.test/corrupt";
        const std::string key = cache::memcachedKey("strata", url, "");
        SUBCASE("garbage") {
            REQUIRE(raw.set(key, "definitely not a record"));
        }
        SUBCASE("truncated record") {
            auto value = cache::encodeEntryRecord(*makeEntry(url, "body"));
            REQUIRE(raw.set(key, value.substr(0, value.size() / 2)));
        }
        SUBCASE("one flipped bit") {
            auto value = cache::encodeEntryRecord(*makeEntry(url, "body"));
            value[value.size() / 2] = static_cast<char>(value[value.size() / 2] ^ 0x10);
            REQUIRE(raw.set(key, value));
        }
        SUBCASE("a valid record of another URL at this key") {
            REQUIRE(raw.set(key, cache::encodeEntryRecord(*makeEntry("http://a.test/other", "x"))));
        }
        SUBCASE("empty value") {
            REQUIRE(raw.set(key, ""));
        }
        auto r = lookupSync(l2, loop, url);
        CHECK(r.result.status == L2Status::Error);
        CHECK(r.result.reason == L2Reason::Corrupt);
        CHECK(r.result.entry == nullptr);
        CHECK(l2.stats().corrupt == 1);
        CHECK(l2.stats().breakers_open == 0);  // a bad value is not a dead server
    }

    TEST_CASE("another namespace never sees the objects") {
        MemcachedProcess mc;
        event::Loop loop;
        auto oa = optionsFor({mc.address()});
        oa.key_namespace = "site-a";
        auto ob = optionsFor({mc.address()});
        ob.key_namespace = "site-b";
        L2Cache a(oa);
        L2Cache b(ob);
        storeAndWait(a, makeEntry("http://a.test/ns", "from a"));
        CHECK(lookupSync(a, loop, "http://a.test/ns").result.status == L2Status::Hit);
        auto r = lookupSync(b, loop, "http://a.test/ns");
        CHECK(r.result.status == L2Status::Miss);
        CHECK(r.result.reason == L2Reason::NotFound);
        CHECK_THROWS_AS(
            [] {
                auto bad = optionsFor({"127.0.0.1:1"});
                bad.key_namespace = "has space";
                L2Cache c(bad);
            }(),
            std::invalid_argument);
    }

    TEST_CASE("two instances over two servers share objects; keys spread over both") {
        MemcachedProcess m1;
        MemcachedProcess m2;
        event::Loop loop;
        L2Cache a(optionsFor({m1.address(), m2.address()}));
        L2Cache b(optionsFor({m1.address(), m2.address()}));
        int on_server[2] = {0, 0};
        for (int i = 0; i < 40; ++i) {
            const std::string url = "http://a.test/shared/" + std::to_string(i);
            on_server[a.serverForKey(cache::memcachedKey("strata", url, ""))]++;
            a.store(makeEntry(url, "body " + std::to_string(i)), kNow);
        }
        REQUIRE(waitFor([&] { return a.stats().stores == 40; }));
        CHECK(on_server[0] > 5);
        CHECK(on_server[1] > 5);
        for (int i = 0; i < 40; ++i) {
            const std::string url = "http://a.test/shared/" + std::to_string(i);
            CHECK(b.serverForKey(cache::memcachedKey("strata", url, "")) ==
                  a.serverForKey(cache::memcachedKey("strata", url, "")));
            auto r = lookupSync(b, loop, url);
            REQUIRE(r.result.status == L2Status::Hit);
            CHECK(*r.result.entry->body() == "body " + std::to_string(i));
        }
        CHECK(b.stats().hits == 40);
    }

    TEST_CASE("fill lease: one owner across instances, released by the store, uncacheable") {
        MemcachedProcess m1;
        MemcachedProcess m2;
        event::Loop loop;
        L2Cache a(optionsFor({m1.address(), m2.address()}));
        L2Cache b(optionsFor({m1.address(), m2.address()}));
        const std::string url = "http://a.test/lease";
        const auto before = std::chrono::system_clock::now();
        L2Lease first = leaseSync(a, loop, url, 3000ms);
        CHECK(first.state == LeaseState::Owner);
        // The other instance (and this one again) finds it held, with the owner's deadline.
        L2Lease second = leaseSync(b, loop, url);
        CHECK(second.state == LeaseState::Filling);
        CHECK(second.deadline >= before + 2900ms);
        CHECK(second.deadline <= std::chrono::system_clock::now() + 3100ms);
        CHECK(leaseSync(a, loop, url).state == LeaseState::Filling);
        // The owner's store releases it only after the object is written: whoever finds the
        // lease gone finds the object.
        a.store(makeEntry(url, "leased body"), kNow, /*release_lease=*/true);
        REQUIRE(waitFor([&] { return a.stats().stores == 1; }));
        REQUIRE(waitFor([&] { return leaseSync(b, loop, url).state == LeaseState::Owner; }));
        auto hit = lookupSync(b, loop, url);
        REQUIRE(hit.result.status == L2Status::Hit);
        CHECK(*hit.result.entry->body() == "leased body");
        // b owns it now; an uncacheable answer leaves a marker that stops the others waiting.
        b.releaseLease(url, /*uncacheable=*/true, 2000ms);
        REQUIRE(waitFor([&] { return leaseSync(a, loop, url).state == LeaseState::Uncacheable; }));
        // A plain release frees it at once.
        const std::string other = "http://a.test/lease-2";
        CHECK(leaseSync(a, loop, other).state == LeaseState::Owner);
        a.releaseLease(other, false, 0ms);
        REQUIRE(waitFor([&] { return leaseSync(b, loop, other).state == LeaseState::Owner; }));
    }

    TEST_CASE("fill lease: an owner that died leaves a lease that expires; no server, no lease") {
        MemcachedProcess m;
        event::Loop loop;
        const std::string url = "http://a.test/orphan";
        {
            L2Cache owner(optionsFor({m.address()}));
            CHECK(leaseSync(owner, loop, url, 500ms).state == LeaseState::Owner);
        }  // gone without releasing
        L2Cache other(optionsFor({m.address()}));
        L2Lease held = leaseSync(other, loop, url);
        CHECK(held.state == LeaseState::Filling);
        CHECK(held.deadline <= std::chrono::system_clock::now() + 500ms);
        // memcached expires it within its whole-second rounding of the ttl.
        CHECK(waitFor([&] { return leaseSync(other, loop, url).state == LeaseState::Owner; },
                      3000ms));
        auto dead = optionsFor({"127.0.0.1:1"});
        dead.timeout = 50ms;
        L2Cache unreachable(dead);
        CHECK(leaseSync(unreachable, loop, url).state == LeaseState::Unavailable);
        CHECK(unreachable.stats().lease_errors >= 1);
    }

    TEST_CASE("lease codec: round trip, unknown states and damaged values are no lease") {
        const WallTime deadline = WallTime(std::chrono::milliseconds(1'760'000'000'123));
        auto filling = decodeLease(encodeLease(LeaseState::Filling, deadline));
        REQUIRE(filling.has_value());
        CHECK(filling->state == LeaseState::Filling);
        CHECK(filling->deadline == deadline);
        auto pass = decodeLease(encodeLease(LeaseState::Uncacheable, deadline));
        REQUIRE(pass.has_value());
        CHECK(pass->state == LeaseState::Uncacheable);
        std::string value = encodeLease(LeaseState::Filling, deadline);
        CHECK(decodeLease(value + "future fields").has_value());  // newer versions append
        for (std::size_t n = 0; n < value.size(); ++n) {
            CHECK_FALSE(decodeLease(value.substr(0, n)).has_value());
        }
        std::string bad_state = value;
        bad_state[5] = 7;
        CHECK_FALSE(decodeLease(bad_state).has_value());
        CHECK_FALSE(decodeLease("SLSX" + value.substr(4)).has_value());
    }

    TEST_CASE("read your writes: a lookup right after store() sees the entry being written") {
        SilentServer silent;  // the set never completes: only the pending copy can answer
        auto o = optionsFor({silent.address()});
        o.timeout = 300ms;
        o.breaker_failures = 100;
        L2Cache l2(o);
        event::Loop loop;
        l2.store(makeEntry("http://a.test/pending", "not yet written"), kNow);
        auto r = lookupSync(l2, loop, "http://a.test/pending");
        REQUIRE(r.result.status == L2Status::Hit);
        CHECK(*r.result.entry->body() == "not yet written");
        CHECK(l2.stats().pending_hits == 1);
        // Another variant of the URL is not answered by it.
        auto variant =
            makeEntry("http://a.test/pv", "gzip", {}, acceptEncoding(), withEncoding("gzip"));
        l2.store(variant, kNow);
        CHECK(lookupSync(l2, loop, "http://a.test/pv", withEncoding("gzip")).result.status ==
              L2Status::Hit);
        CHECK(lookupSync(l2, loop, "http://a.test/pv", withEncoding("br")).result.status !=
              L2Status::Hit);
    }

    TEST_CASE("ketama: adding a third server remaps about a third of the keys") {
        // Addresses that are never contacted: only key placement is computed.
        L2Cache two(optionsFor({"127.0.0.1:1", "127.0.0.1:2"}));
        L2Cache three(optionsFor({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}));
        int moved = 0;
        int to_new = 0;
        const int n = 3000;
        for (int i = 0; i < n; ++i) {
            const auto key =
                cache::memcachedKey("strata", "http://k.test/" + std::to_string(i), "");
            const unsigned before = two.serverForKey(key);
            const unsigned after = three.serverForKey(key);
            if (before != after) {
                moved++;
                to_new += after == 2 ? 1 : 0;
            }
        }
        CHECK(moved > n / 5);
        CHECK(moved < n / 2);
        CHECK(to_new == moved);  // keys only move to the new server
    }

    TEST_CASE("server killed: errors counted, breaker opens, immediate misses, then recovers") {
        MemcachedProcess mc;
        event::Loop loop;
        metrics::Registry registry;
        auto o = optionsFor({mc.address()});
        o.breaker_failures = 3;
        // Long enough that the 20 open-breaker lookups below finish inside one cool-down even
        // under sanitizers (with 1 s a half-open probe could slip in: flaky under ASan).
        o.breaker_cooldown = 2500ms;
        o.breaker_max_cooldown = 2500ms;
        // The purge-log poller's reads count towards the breaker too; polling every 100 ms, one
        // could land between the lookups below on a loaded machine and open it a lookup early.
        o.purge_poll = std::chrono::hours(1);
        o.metrics = &registry;
        L2Cache l2(o);
        storeAndWait(l2, makeEntry("http://a.test/k", "v"));
        REQUIRE(lookupSync(l2, loop, "http://a.test/k").result.status == L2Status::Hit);

        mc.stop();
        for (int i = 0; i < 3; ++i) {
            auto r = lookupSync(l2, loop, "http://a.test/k");
            INFO("lookup " << i << ", reason: " << reasonName(r.result.reason));
            CHECK(r.result.status == L2Status::Error);
            // The poller's first read (at start) may still be pending when memcached dies.
            const bool opened_by_poller = i > 0 && r.result.reason == L2Reason::BreakerOpen;
            CHECK((r.result.reason == L2Reason::Unreachable ||
                   r.result.reason == L2Reason::Timeout || opened_by_poller));
        }
        auto s = l2.stats();
        CHECK(s.errors >= 3);
        CHECK(s.breaker_opens == 1);
        CHECK(s.breakers_open == 1);
        CHECK(registry.valueForTest("strata_cache_l2_errors_total", {{"op", "get"}}) >= 3);
        CHECK(registry.valueForTest("strata_cache_l2_breaker_open", {{"server", mc.address()}}) ==
              1);

        // Open: answered without memcached, typically in well under a millisecond. The worst
        // case is bounded by the scheduler of a shared machine, so only the median is held to
        // that; every lookup must still be far quicker than a memcached timeout.
        std::vector<std::chrono::microseconds> elapsed;
        for (int i = 0; i < 20; ++i) {
            auto r = lookupSync(l2, loop, "http://a.test/k");
            CHECK(r.result.status == L2Status::Error);
            CHECK(r.result.reason == L2Reason::BreakerOpen);
            CHECK_FALSE(r.inline_call);
            elapsed.push_back(r.elapsed);
        }
        std::sort(elapsed.begin(), elapsed.end());
        MESSAGE("breaker-open lookup of 20: median " << elapsed[10].count() << "us, worst "
                                                     << elapsed.back().count() << "us");
        CHECK(elapsed[10] < 1000us);
        CHECK(elapsed.back() < o.timeout / 4);
        CHECK(l2.stats().breaker_rejects >= 20);
        const auto errors_while_open = l2.stats().errors;
        l2.store(makeEntry("http://a.test/k2", "v2"), kNow);  // skipped, not queued
        CHECK(l2.stats().store_errors == 1);
        CHECK(l2.stats().errors == errors_while_open);

        mc.restart();  // same port, empty
        bool recovered = waitFor(
            [&] {
                auto r = lookupSync(l2, loop, "http://a.test/k");
                return r.result.status == L2Status::Miss;
            },
            10000ms);
        CHECK(recovered);
        CHECK(l2.stats().breakers_open == 0);
        CHECK(registry.valueForTest("strata_cache_l2_breaker_open", {{"server", mc.address()}}) ==
              0);
        CHECK(registry.valueForTest("strata_cache_l2_operation_duration_seconds_count",
                                    {{"op", "get"}}) > 3);
        storeAndWait(l2, makeEntry("http://a.test/k", "again"));
        auto r = lookupSync(l2, loop, "http://a.test/k");
        CAPTURE(cache::reasonName(r.result.reason));
        CAPTURE(l2.stats().store_errors);
        CAPTURE(l2.stats().stores);
        REQUIRE(r.result.status == L2Status::Hit);
        CHECK(*r.result.entry->body() == "again");
    }

    TEST_CASE("a server that never answers is a timeout, bounded by cache.l2.timeout") {
        SilentServer silent;
        event::Loop loop;
        auto o = optionsFor({silent.address()});
        o.timeout = 30ms;
        o.breaker_failures = 100;
        L2Cache l2(o);
        auto r = lookupSync(l2, loop, "http://a.test/slow");
        CHECK(r.result.status == L2Status::Error);
        CHECK(r.result.reason == L2Reason::Timeout);
        CHECK(r.elapsed < 500ms);
        CHECK(l2.stats().timeouts >= 1);
        CHECK(l2.stats().errors >= 1);
    }

    TEST_CASE("a full queue drops stores at once instead of blocking the caller") {
        SilentServer silent;
        auto o = optionsFor({silent.address()});
        o.timeout = 300ms;
        o.threads = 1;
        o.max_queue = 2;
        o.breaker_failures = 100;
        L2Cache l2(o);
        const auto start = Steady::now();
        for (int i = 0; i < 20; ++i) {
            l2.store(makeEntry("http://a.test/q" + std::to_string(i), "v"), kNow);
        }
        const auto elapsed = Steady::now() - start;
        // Blocking would mean waiting for the silent server's timeout (300 ms) to free a slot;
        // 20 ms could be less than one preemption of the test thread on a loaded machine.
        CHECK(elapsed < o.timeout / 2);
        CHECK(l2.stats().queue_full_drops >= 17);
        // A lookup meeting a full queue is refused at once. Refill first (a store that is
        // dropped proves the queue full); a slot may still free up before the lookup, so try a
        // few times.
        event::Loop loop;
        bool refused = false;
        for (int attempt = 0; attempt < 10 && !refused; ++attempt) {
            const auto drops = l2.stats().queue_full_drops;
            for (int i = 0; i < 10 && l2.stats().queue_full_drops == drops; ++i) {
                l2.store(makeEntry("http://a.test/refill" + std::to_string(i), "v"), kNow);
            }
            // Not one of the stores: those still queued answer from memory (read your writes).
            auto r = lookupSync(l2, loop, "http://a.test/never-stored");
            CHECK(r.result.status == L2Status::Error);
            if (r.result.reason == L2Reason::QueueFull) {
                refused = true;
                // Answered without waiting for a slot (that takes up to a timeout); the
                // completion is still posted, so the loop's scheduling is in the figure.
                CHECK(r.elapsed < o.timeout / 3);
            }
        }
        CHECK(refused);
    }

    TEST_CASE("prefix and tag purges reach the other instance within purge_poll + 2 x timeout") {
        MemcachedProcess m1;
        MemcachedProcess m2;
        event::Loop loop;
        std::mutex mu;
        std::vector<cache::PurgeRecord> seen_by_b;
        std::vector<Steady::time_point> seen_at;
        auto oa = optionsFor({m1.address(), m2.address()});
        auto ob = oa;
        oa.timeout = 50ms;
        ob.timeout = 50ms;
        std::atomic<int> a_callbacks{0};
        L2Cache a(oa, [&](const cache::PurgeRecord&) { a_callbacks++; });
        L2Cache b(ob, [&](const cache::PurgeRecord& r) {
            std::lock_guard lock(mu);
            seen_by_b.push_back(r);
            seen_at.push_back(Steady::now());
        });
        const auto bound = ob.purge_poll + 2 * ob.timeout;
        storeAndWait(a, makeEntry("http://p.test/a/1", "a1", {"t-a"}));
        storeAndWait(a, makeEntry("http://p.test/a/2", "a2"));
        storeAndWait(a, makeEntry("http://p.test/b/1", "b1", {"t-b", "t-x"}));
        storeAndWait(a, makeEntry("http://p.test/c/1", "c1", {"t-c"}));
        for (auto url : {"http://p.test/a/1", "http://p.test/a/2", "http://p.test/b/1"}) {
            REQUIRE(lookupSync(b, loop, url).result.status == L2Status::Hit);
        }

        // Prefix purge from instance a.
        bool done = false;
        bool ok = false;
        Steady::time_point acked;
        loop.post([&] {
            a.purgePrefix("http://p.test/a/", false, &loop, [&](bool result) {
                ok = result;
                done = true;
                acked = Steady::now();
            });
        });
        REQUIRE(runUntil(loop, [&] { return done; }));
        CHECK(ok);
        // The purging instance honours it at once.
        CHECK(lookupSync(a, loop, "http://p.test/a/1").result.reason == L2Reason::Purged);
        REQUIRE(waitFor([&] {
            std::lock_guard lock(mu);
            return !seen_by_b.empty();
        }));
        {
            std::lock_guard lock(mu);
            CHECK(seen_by_b[0].kind == cache::PurgeKind::Prefix);
            CHECK(seen_by_b[0].value == "http://p.test/a/");
            CHECK_FALSE(seen_by_b[0].soft);
            const auto delay = seen_at[0] - acked;
            MESSAGE("prefix purge seen by the other instance after "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()
                    << "ms (bound " << bound.count() << "ms)");
            CHECK(delay <= bound + 50ms);  // + scheduling slack on a shared machine
        }
        auto r1 = lookupSync(b, loop, "http://p.test/a/1");
        CHECK(r1.result.status == L2Status::Miss);
        CHECK(r1.result.reason == L2Reason::Purged);
        CHECK(lookupSync(b, loop, "http://p.test/a/2").result.reason == L2Reason::Purged);
        CHECK(lookupSync(b, loop, "http://p.test/b/1").result.status == L2Status::Hit);

        // Tag purge.
        done = false;
        loop.post([&] {
            a.purgeTag("t-x", false, &loop, [&](bool result) {
                ok = result;
                done = true;
            });
        });
        REQUIRE(runUntil(loop, [&] { return done; }));
        CHECK(ok);
        REQUIRE(waitFor([&] {
            std::lock_guard lock(mu);
            return seen_by_b.size() == 2;
        }));
        CHECK(lookupSync(b, loop, "http://p.test/b/1").result.reason == L2Reason::Purged);
        CHECK(lookupSync(b, loop, "http://p.test/c/1").result.status == L2Status::Hit);
        CHECK(b.stats().purges_applied == 2);
        CHECK(a.stats().purges_sent == 2);
        CHECK(a_callbacks == 0);  // a's own purges are applied by its caller, not echoed back

        // A response fetched after the purge (beyond the clock-skew margin) is served again.
        storeAndWait(a, makeEntry("http://p.test/a/1", "a1 new", {"t-a"}, {}, {},
                                  std::chrono::system_clock::now() + 5s));
        auto fresh = lookupSync(b, loop, "http://p.test/a/1");
        REQUIRE(fresh.result.status == L2Status::Hit);
        CHECK(*fresh.result.entry->body() == "a1 new");
    }

    TEST_CASE("purge-log polling and appends are counted apart from object operations") {
        MemcachedProcess mc;
        event::Loop loop;
        metrics::Registry registry;
        auto o = optionsFor({mc.address()});
        o.purge_poll = 20ms;
        o.metrics = &registry;
        L2Cache l2(o);
        auto ops = [&](const char* op) {
            return registry.valueForTest("strata_cache_l2_operation_duration_seconds_count",
                                         {{"op", op}});
        };
        // No traffic: only the poller reads, and it reads the purge log.
        REQUIRE(waitFor([&] { return ops("purge_log_get") >= 3; }));
        CHECK(ops("get") == 0);
        CHECK(ops("set") == 0);

        bool done = false;
        loop.post([&] { l2.purgeTag("t", false, &loop, [&](bool) { done = true; }); });
        REQUIRE(runUntil(loop, [&] { return done; }));
        CHECK(ops("purge_log_set") == 1);
        CHECK(ops("set") == 0);
        CHECK(ops("get") == 0);

        storeAndWait(l2, makeEntry("http://a.test/k", "v"));
        CHECK(ops("set") == 1);
        REQUIRE(lookupSync(l2, loop, "http://a.test/k").result.status == L2Status::Hit);
        CHECK(ops("get") == 1);
    }

    TEST_CASE("soft purge serves a stale copy instead of a miss") {
        MemcachedProcess mc;
        event::Loop loop;
        L2Cache a(optionsFor({mc.address()}));
        L2Cache b(optionsFor({mc.address()}));
        storeAndWait(a, makeEntry("http://s.test/x", "x", {"soft-tag"}));
        bool done = false;
        loop.post([&] { a.purgeTag("soft-tag", true, &loop, [&](bool) { done = true; }); });
        REQUIRE(runUntil(loop, [&] { return done; }));
        b.pollPurgeLogForTest();
        auto r = lookupSync(b, loop, "http://s.test/x");
        REQUIRE(r.result.status == L2Status::Hit);
        CHECK(r.result.entry->freshness().soft_purged);
        CHECK(*r.result.entry->body() == "x");
    }

    TEST_CASE("exact URL purge: every variant goes, even after the index is rewritten") {
        MemcachedProcess mc;
        RawClient raw(mc);
        event::Loop loop;
        std::atomic<int> b_url_purges{0};
        L2Cache a(optionsFor({mc.address()}));
        L2Cache b(optionsFor({mc.address()}), [&](const cache::PurgeRecord& r) {
            b_url_purges += r.kind == cache::PurgeKind::Url ? 1 : 0;
        });
        const std::string url = "http://v.test/page";
        storeAndWait(a, makeEntry(url, "gz", {}, acceptEncoding(), withEncoding("gzip")));
        storeAndWait(a, makeEntry(url, "id", {}, acceptEncoding(), withEncoding("identity")));
        bool done = false;
        loop.post([&] { a.removeUrl(url, false, &loop, [&](bool) { done = true; }); });
        REQUIRE(runUntil(loop, [&] { return done; }));
        CHECK_FALSE(raw.exists(cache::memcachedKey("strata", url, "")));
        CHECK(lookupSync(a, loop, url, withEncoding("gzip")).result.reason == L2Reason::NotFound);
        // A new gzip response rewrites the index; the old identity variant is still in
        // memcached but was requested before the purge.
        storeAndWait(a, makeEntry(url, "gz2", {}, acceptEncoding(), withEncoding("gzip"),
                                  std::chrono::system_clock::now() + 5s));
        b.pollPurgeLogForTest();
        CHECK(b_url_purges == 1);
        auto gz = lookupSync(b, loop, url, withEncoding("gzip"));
        REQUIRE(gz.result.status == L2Status::Hit);
        CHECK(*gz.result.entry->body() == "gz2");
        CHECK(lookupSync(b, loop, url, withEncoding("identity")).result.reason == L2Reason::Purged);
    }

    TEST_CASE("invalidation deletes a plain URL without growing the purge log") {
        MemcachedProcess mc;
        event::Loop loop;
        L2Cache l2(optionsFor({mc.address()}));
        storeAndWait(l2, makeEntry("http://i.test/x", "x"));
        l2.invalidate("http://i.test/x");
        REQUIRE(waitFor([&] { return l2.stats().removes == 1; }));
        CHECK(lookupSync(l2, loop, "http://i.test/x").result.reason == L2Reason::NotFound);
        CHECK(l2.stats().purges_sent == 0);
        // With variants it must log (see removeUrl).
        storeAndWait(l2,
                     makeEntry("http://i.test/v", "v", {}, acceptEncoding(), withEncoding("gzip")));
        l2.invalidate("http://i.test/v");
        REQUIRE(waitFor([&] { return l2.stats().purges_sent == 1; }));
    }

    TEST_CASE("a lost purge log makes an instance treat older objects as purged") {
        MemcachedProcess mc;
        RawClient raw(mc);
        event::Loop loop;
        std::atomic<int> all_records{0};
        L2Cache a(optionsFor({mc.address()}));
        L2Cache b(optionsFor({mc.address()}), [&](const cache::PurgeRecord& r) {
            all_records += r.kind == cache::PurgeKind::All ? 1 : 0;
        });
        storeAndWait(a, makeEntry("http://l.test/x", "x"));
        bool done = false;
        loop.post([&] { a.purgeTag("unrelated", false, &loop, [&](bool) { done = true; }); });
        REQUIRE(runUntil(loop, [&] { return done; }));
        b.pollPurgeLogForTest();
        CHECK(lookupSync(b, loop, "http://l.test/x").result.status == L2Status::Hit);
        REQUIRE(raw.remove("strata:purgelog"));
        b.pollPurgeLogForTest();
        CHECK(all_records == 1);
        CHECK(lookupSync(b, loop, "http://l.test/x").result.reason == L2Reason::Purged);
    }

    TEST_CASE("a purge log over its size limit is compacted into an `all` record") {
        MemcachedProcess mc;
        RawClient raw(mc);
        event::Loop loop;
        L2Cache l2(optionsFor({mc.address()}));
        storeAndWait(l2, makeEntry("http://unrelated.test/x", "x"));
        const std::string filler(15000, 'f');
        int acked = 0;
        int ok_count = 0;
        loop.post([&] {
            for (int i = 0; i < 45; ++i) {
                l2.purgePrefix("http://z.test/" + std::to_string(i) + filler, false, &loop,
                               [&](bool ok) {
                                   acked++;
                                   ok_count += ok ? 1 : 0;
                               });
            }
        });
        REQUIRE(runUntil(
            loop, [&] { return acked == 45; }, 20000ms));
        CHECK(ok_count == 45);
        auto value = raw.get("strata:purgelog");
        REQUIRE(value.has_value());
        CHECK(value->size() <= cache::kMaxPurgeLogBytes);
        auto log = cache::decodePurgeLog(*value);
        REQUIRE(log.ok());
        CHECK(log->records.size() < 45);
        CHECK(std::any_of(log->records.begin(), log->records.end(),
                          [](const auto& r) { return r.kind == cache::PurgeKind::All; }));
        // Over-purges rather than forgetting: another instance treats older objects as purged.
        L2Cache other(optionsFor({mc.address()}));
        CHECK(lookupSync(other, loop, "http://unrelated.test/x").result.reason == L2Reason::Purged);
        // Values the log cannot hold are refused, not written.
        bool refused = false;
        loop.post([&] {
            l2.purgeTag(std::string(20000, 't'), false, &loop, [&](bool ok) {
                refused = !ok;
                acked++;
            });
        });
        REQUIRE(runUntil(loop, [&] { return acked == 46; }));
        CHECK(refused);
    }

    TEST_CASE("two instances purging at once lose no record (CAS appends)") {
        MemcachedProcess mc;
        RawClient raw(mc);
        event::Loop loop;
        L2Cache a(optionsFor({mc.address()}));
        L2Cache b(optionsFor({mc.address()}));
        int acked = 0;
        int ok_count = 0;
        loop.post([&] {
            for (int i = 0; i < 15; ++i) {
                for (L2Cache* l2 : {&a, &b}) {
                    l2->purgeTag((l2 == &a ? "a" : "b") + std::to_string(i), false, &loop,
                                 [&](bool ok) {
                                     acked++;
                                     ok_count += ok ? 1 : 0;
                                 });
                }
            }
        });
        REQUIRE(runUntil(
            loop, [&] { return acked == 30; }, 20000ms));
        CHECK(ok_count == 30);
        auto value = raw.get("strata:purgelog");
        REQUIRE(value.has_value());
        auto log = cache::decodePurgeLog(*value);
        CAPTURE(log.ok() ? std::string() : log.error());
        CAPTURE(value->size());
        REQUIRE(log.ok());
        CHECK(log->records.size() == 30);
    }

    TEST_CASE("purge log codec round trips and rejects damaged values") {
        cache::PurgeLog log;
        log.epoch = 42;
        log.records.push_back({7, cache::PurgeKind::Prefix, false, "http://a/", kNow});
        log.records.push_back({8, cache::PurgeKind::Tag, true, "tag", kNow + 1s});
        log.records.push_back({9, cache::PurgeKind::All, false, "", kNow + 2s});
        for (std::size_t n = 0; n <= 3; ++n) {  // short logs, empty values: minimal records
            cache::PurgeLog small;
            for (std::size_t i = 0; i < n; ++i) {
                small.records.push_back(log.records[2]);
            }
            auto decoded = cache::decodePurgeLog(cache::encodePurgeLog(small));
            REQUIRE(decoded.ok());
            CHECK(decoded->records.size() == n);
        }
        const auto value = cache::encodePurgeLog(log);
        auto back = cache::decodePurgeLog(value);
        REQUIRE(back.ok());
        CHECK(back->epoch == 42);
        REQUIRE(back->records.size() == 3);
        CHECK(back->records[1].kind == cache::PurgeKind::Tag);
        CHECK(back->records[1].soft);
        CHECK(back->records[1].value == "tag");
        CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(
                  back->records[2].time - back->records[0].time) == 2000ms);
        for (std::size_t cut = 0; cut < value.size(); ++cut) {
            CHECK_FALSE(cache::decodePurgeLog(value.substr(0, cut)).ok());
        }
        for (std::size_t i = 0; i < value.size(); ++i) {
            auto damaged = value;
            damaged[i] = static_cast<char>(damaged[i] ^ 0x01);
            CHECK_FALSE(cache::decodePurgeLog(damaged).ok());
        }
        cache::EntryMeta meta;
        meta.primary_key = "http://a/x";
        meta.tags = {"tag"};
        meta.request_time = kNow;
        CHECK(cache::purgeCovers(log.records[0], meta));
        meta.request_time = kNow + 2s;  // requested after the purge (beyond the skew margin)
        CHECK_FALSE(cache::purgeCovers(log.records[0], meta));
        CHECK(cache::purgeCovers(log.records[1], meta));
    }

    TEST_CASE("no servers: disabled, lookups are posted misses") {
        event::Loop loop;
        L2Cache l2(L2Options{});
        CHECK_FALSE(l2.enabled());
        auto r = lookupSync(l2, loop, "http://a.test/");
        CHECK(r.result.status == L2Status::Miss);
        CHECK(r.result.reason == L2Reason::Disabled);
        CHECK_FALSE(r.inline_call);
        l2.store(makeEntry("http://a.test/", "x"), kNow);  // no-op, no crash
    }

    TEST_CASE("options from config") {
        config::L2Cache c;
        c.servers.push_back({"10.0.0.5", 11211, "10.0.0.5:11211"});
        c.servers.push_back({"::1", 11212, "[::1]:11212"});
        c.timeout = std::chrono::milliseconds(75);
        c.key_namespace = "edge";
        c.chunks = false;
        c.threads = 3;
        c.purge_poll = std::chrono::milliseconds(500);
        c.max_ttl = std::chrono::milliseconds(3600 * 1000);
        auto o = L2Options::fromConfig(c);
        REQUIRE(o.servers.size() == 2);
        CHECK(o.servers[0] == "10.0.0.5:11211");
        CHECK(o.servers[1] == "[::1]:11212");
        CHECK(o.timeout == 75ms);
        CHECK(o.key_namespace == "edge");
        CHECK_FALSE(o.chunks);
        CHECK(o.threads == 3);
        CHECK(o.purge_poll == 500ms);
        CHECK(o.max_ttl == std::chrono::seconds(3600));
        CHECK(o.metrics != nullptr);
    }

    TEST_CASE("lookup latency against a local memcached (reported)") {
        MemcachedProcess mc;
        event::Loop loop;
        L2Cache l2(optionsFor({mc.address()}));
        storeAndWait(l2, makeEntry("http://lat.test/hit", std::string(1024, 'h')));
        auto measure = [&](const std::string& url, L2Status expect) {
            std::vector<long> us;
            for (int i = 0; i < 300; ++i) {
                auto r = lookupSync(l2, loop, url);
                CHECK(r.result.status == expect);
                us.push_back(static_cast<long>(r.elapsed.count()));
            }
            std::sort(us.begin(), us.end());
            return std::pair{us[us.size() / 2], us[us.size() * 99 / 100]};
        };
        auto [hit50, hit99] = measure("http://lat.test/hit", L2Status::Hit);
        auto [miss50, miss99] = measure("http://lat.test/miss", L2Status::Miss);
        MESSAGE("L2 lookup, call to callback: hit p50 "
                << hit50 << "us p99 " << hit99 << "us; miss p50 " << miss50 << "us p99 " << miss99
                << "us");
        CHECK(hit50 < 20000);
        CHECK(miss50 < 20000);
    }
}
