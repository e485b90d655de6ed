// The L2 tier against two real memcached servers: objects survive a strata restart, are shared
// by two instances, survive the loss of memcached under load (a miss, never an error), are
// purged across instances within the documented bound (conf/strata.yaml: purge_poll + 2 x
// timeout), are chunked or skipped when over max_object_bytes, and a corrupt or foreign value
// in memcached is a miss.
#include <arpa/inet.h>
#include <atomic>
#include <csignal>
#include <netinet/in.h>
#include <set>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "cache_support.h"

using namespace strata::test;

namespace {

// Every request of these cases uses one Host, so that two strata instances (different ports)
// compute the same cache keys, and purge URLs are http://l2.test/...
const std::string kHost = "l2.test";

Response fetch(std::uint16_t port, const std::string& target) {
    RawClient c(port);
    if (!c.send("GET " + target + " HTTP/1.1\r\nHost: " + kHost + "\r\n\r\n")) {
        Response r;
        r.error = "send failed";
        return r;
    }
    return c.readResponse();
}

struct L2Yaml {
    std::string timeout = "500ms";  // generous: a slow (sanitized, loaded) run must not miss
    std::string purge_poll = "200ms";
    std::string max_object_bytes = "1MiB";
    bool chunks = true;
    int threads = 2;
    std::string l1_max_bytes = "64MiB";
    std::string token_file;  // admin token (purge); "" for none
};

// Caching on for the catch-all route (default_ttl 60s), L1 + L2 over `memcached`, an admin
// listener ("admin" in the port file).
std::string l2Config(const Origin& origin, const std::vector<const Memcached*>& memcached,
                     const L2Yaml& l2 = {}) {
    std::string servers = "[";
    for (const Memcached* m : memcached) {
        servers += (servers.size() > 1 ? ", \"" : "\"") + m->addr() + "\"";
    }
    servers += "]";
    std::string admin = "admin: {bind: \"127.0.0.1:0\"";
    if (!l2.token_file.empty()) {
        admin += ", token_file: \"" + l2.token_file + "\"";
    }
    admin += "}\n";
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\"}\n" +
           admin +
           "upstreams:\n"
           "  app:\n"
           "    servers: " +
           origin.serversYaml() +
           "\n"
           "routes:\n"
           "  - match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    cache: {enabled: true, default_ttl: 60s}\n"
           "logging: {access_log: off}\n"
           "cache:\n"
           "  l1: {max_bytes: " +
           l2.l1_max_bytes +
           "}\n"
           "  l2:\n"
           "    servers: " +
           servers +
           "\n"
           "    timeout: " +
           l2.timeout +
           "\n"
           "    purge_poll: " +
           l2.purge_poll +
           "\n"
           "    max_object_bytes: " +
           l2.max_object_bytes +
           "\n"
           "    chunks: " +
           (l2.chunks ? "true" : "false") +
           "\n"
           "    threads: " +
           std::to_string(l2.threads) + "\n";
}

// memcached's text protocol on a plain socket: what an operator (or another program) sees and
// writes, independently of libmemcached.
class MemcachedText {
public:
    explicit MemcachedText(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        timeval tv{5 * kSlow, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
            ::close(fd_);
            throw std::runtime_error("memcached: connect failed");
        }
    }
    ~MemcachedText() { ::close(fd_); }
    MemcachedText(const MemcachedText&) = delete;
    MemcachedText& operator=(const MemcachedText&) = delete;

    // Every key memcached holds (lru_crawler metadump), unordered. The dump's lines end in a
    // bare "\n"; only the closing "END" (or an error) ends in "\r\n".
    // memcached's own background crawler can hold the crawler: BUSY is retried.
    std::vector<std::string> keys() {
        send("lru_crawler metadump all\r\n");
        std::string dump;
        for (int busy = 0;;) {
            std::string line = readLine();
            if (line.starts_with("BUSY") && ++busy < 100) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                send("lru_crawler metadump all\r\n");
                continue;
            }
            if (line.empty() || line.starts_with("ERROR") || line.starts_with("BUSY")) {
                throw std::runtime_error("memcached: metadump failed: " + line);
            }
            dump += line;
            if (line.ends_with("END")) {
                break;
            }
            dump += "\r\n";
        }
        std::vector<std::string> out;
        std::size_t pos = 0;
        while (pos < dump.size()) {
            std::size_t eol = dump.find('\n', pos);
            std::string line = dump.substr(pos, eol == std::string::npos ? eol : eol - pos);
            pos = eol == std::string::npos ? dump.size() : eol + 1;
            if (line.starts_with("key=")) {
                out.push_back(urlDecode(line.substr(4, line.find(' ') - 4)));
            }
        }
        return out;
    }
    std::optional<std::string> get(const std::string& key) {
        send("get " + key + "\r\n");
        std::string line = readLine();
        if (!line.starts_with("VALUE ")) {
            return std::nullopt;
        }
        const std::size_t bytes = std::stoul(line.substr(line.rfind(' ') + 1));
        std::string value = readBytes(bytes + 2).substr(0, bytes);
        readLine();  // END
        return value;
    }
    bool set(const std::string& key, const std::string& value) {
        send("set " + key + " 0 0 " + std::to_string(value.size()) + "\r\n" + value + "\r\n");
        return readLine() == "STORED";
    }

private:
    // metadump prints keys URL-encoded ("strata%3A...").
    static std::string urlDecode(const std::string& text) {
        std::string out;
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (text[i] == '%' && i + 2 < text.size()) {
                out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
                i += 2;
            } else {
                out += text[i];
            }
        }
        return out;
    }
    void send(const std::string& bytes) {
        std::size_t off = 0;
        while (off < bytes.size()) {
            ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
            if (n <= 0) {
                throw std::runtime_error("memcached: send failed");
            }
            off += static_cast<std::size_t>(n);
        }
    }
    bool fill() {
        char buf[65536];
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) {
            return false;
        }
        buffer_.append(buf, static_cast<std::size_t>(n));
        return true;
    }
    std::string readLine() {
        for (;;) {
            auto eol = buffer_.find("\r\n");
            if (eol != std::string::npos) {
                std::string line = buffer_.substr(0, eol);
                buffer_.erase(0, eol + 2);
                return line;
            }
            if (!fill()) {
                return "";
            }
        }
    }
    std::string readBytes(std::size_t n) {
        while (buffer_.size() < n) {
            if (!fill()) {
                break;
            }
        }
        std::string out = buffer_.substr(0, n);
        buffer_.erase(0, std::min(n, buffer_.size()));
        return out;
    }

    int fd_ = -1;
    std::string buffer_;
};

// Keys strata wrote for objects (not the purge log), over both servers. Chunk keys carry a
// ".<generation>.<index>" suffix; a record's key has no dot.
struct StoredKeys {
    std::vector<std::string> records;
    std::vector<std::string> chunks;
    std::set<std::size_t> servers;  // which memcached servers hold records or chunks
};
StoredKeys storedKeys(const std::vector<const Memcached*>& memcached) {
    StoredKeys out;
    for (std::size_t i = 0; i < memcached.size(); ++i) {
        MemcachedText t(memcached[i]->port());
        for (auto& k : t.keys()) {
            if (k.ends_with(":purgelog")) {
                continue;
            }
            out.servers.insert(i);
            (k.find('.') == std::string::npos ? out.records : out.chunks).push_back(std::move(k));
        }
    }
    return out;
}

std::uint16_t serverHolding(const std::vector<const Memcached*>& memcached,
                            const std::string& key) {
    for (const Memcached* m : memcached) {
        MemcachedText t(m->port());
        for (const auto& k : t.keys()) {
            if (k == key) {
                return m->port();
            }
        }
    }
    return 0;
}

std::string purge(std::uint16_t admin, const std::string& query) {
    auto r = request(admin, "POST", "/purge?" + query, "Authorization: Bearer l2-token\r\n");
    return std::to_string(r.status) + " " + r.body;
}

// L2 settings whose admin listener takes the token purge() sends (a file in `dir`).
L2Yaml withPurgeToken(const TempDir& dir) {
    writeFile(dir.file("token"), "l2-token\n");
    L2Yaml l2;
    l2.token_file = dir.file("token");
    return l2;
}

}  // namespace

TEST_SUITE("e2e/cache/l2") {
    TEST_CASE("a restarted strata answers from L2 without the origin, then from L1") {
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        const int kUrls = 16;  // enough that ketama puts objects on both servers
        {
            Strata first(l2Config(origin, mc));
            for (int i = 0; i < kUrls; ++i) {
                const std::string url = "/r/" + std::to_string(i);
                auto miss = fetch(first.port(), url);
                STRATA_CACHE_STATUS(miss);
                REQUIRE(miss.status == 200);
                CHECK(miss.header("Cache-Status") == "strata; fwd=uri-miss; stored");
                auto hit = fetch(first.port(), url);
                STRATA_CACHE_STATUS(hit);
                CHECK(cacheStatusHas(hit, "hit"));
                CHECK(cacheStatusHas(hit, "detail=l1"));
            }
            REQUIRE(waitForL2Sets(first.port("admin"), kUrls));
            CHECK(l2Lookups(first.port("admin"), "miss") == kUrls);
            CHECK(first.stop() == 0);
        }
        // Both memcached servers hold objects: the keys are spread over the ring.
        const StoredKeys stored = storedKeys(mc);
        INFO("records: " << stored.records.size() << ", chunks: " << stored.chunks.size());
        CHECK(stored.records.size() == kUrls);
        CHECK(stored.servers.size() == 2);

        Strata second(l2Config(origin, mc));
        for (int i = 0; i < kUrls; ++i) {
            const std::string url = "/r/" + std::to_string(i);
            CAPTURE(url);
            auto from_l2 = fetch(second.port(), url);
            STRATA_CACHE_STATUS(from_l2);
            REQUIRE(from_l2.status == 200);
            CHECK(from_l2.body == "strata-origin 0: GET " + url + "\n");
            CHECK(cacheStatusHas(from_l2, "hit"));
            CHECK(cacheStatusHas(from_l2, "detail=l2"));
            CHECK(from_l2.hasHeader("Age"));
            auto promoted = fetch(second.port(), url);
            STRATA_CACHE_STATUS(promoted);
            CHECK(cacheStatusHas(promoted, "hit"));
            CHECK(cacheStatusHas(promoted, "detail=l1"));
            CHECK(promoted.body == from_l2.body);
            CHECK(origin.requestCount(0, url) == 1);
        }
        CHECK(l2Lookups(second.port("admin"), "hit") == kUrls);
        CHECK(l2Errors(second.port("admin"), "get") == 0);
    }

    TEST_CASE("two instances share L2: what A fetched, B serves without the origin") {
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        Strata a(l2Config(origin, mc));
        Strata b(l2Config(origin, mc));
        const std::vector<std::string> urls = {"/shared/1", "/shared/2?" + ccParam("max-age=300"),
                                               "/bytes/5000",
                                               "/status/404?" + ccParam("max-age=60")};
        for (const auto& url : urls) {
            auto r = fetch(a.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(cacheStatusHas(r, "stored"));
        }
        // L2 writes are asynchronous: B may ask only once A's writes completed.
        REQUIRE(waitForL2Sets(a.port("admin"), static_cast<double>(urls.size())));
        for (const auto& url : urls) {
            CAPTURE(url);
            auto from_a = fetch(a.port(), url);
            auto from_b = fetch(b.port(), url);
            STRATA_CACHE_STATUS(from_b);
            CHECK(from_b.status == from_a.status);
            CHECK(from_b.body == from_a.body);
            CHECK(cacheStatusHas(from_b, "hit"));
            CHECK(cacheStatusHas(from_b, "detail=l2"));
            CHECK(from_b.header("Cache-Control") == from_a.header("Cache-Control"));
        }
        CHECK(origin.requestCount(0, "/shared/1") == 1);
        CHECK(origin.requestCount(0, "/shared/2") == 1);
        CHECK(origin.requestCount(0, "/bytes/5000") == 1);
        CHECK(origin.requestCount(0, "/status/404") == 1);
        CHECK(l2Lookups(b.port("admin"), "hit") == static_cast<double>(urls.size()));
        // B promoted them: its next answers are L1 hits, and it wrote nothing back to L2.
        auto again = fetch(b.port(), urls[0]);
        CHECK(cacheStatusHas(again, "detail=l1"));
        CHECK(l2Ops(b.port("admin"), "set") == 0);
    }

    TEST_CASE("memcached killed under load: no client sees an error; L2 comes back") {
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        Strata strata(l2Config(origin, mc));
        const auto admin = strata.port("admin");

        // Client threads on keep-alive connections: a few hot URLs (L1 hits after the first
        // request) and a unique URL per request (L1 miss, L2 lookup, origin, L2 write).
        struct Counts {
            std::atomic<std::uint64_t> ok{0}, bad_status{0}, conn_errors{0}, l1_hits{0},
                forwarded{0};
        } counts;
        std::atomic<bool> stop{false};
        auto client = [&](int id) {
            std::uint64_t n = 0;
            while (!stop.load()) {
                std::unique_ptr<RawClient> c;
                try {
                    c = std::make_unique<RawClient>(strata.port());
                } catch (const std::exception&) {
                    counts.conn_errors++;
                    continue;
                }
                while (!stop.load()) {
                    ++n;
                    const std::string url =
                        n % 2 == 0 ? "/hot/" + std::to_string(n % 8)
                                   : "/u/" + std::to_string(id) + "-" + std::to_string(n);
                    if (!c->send("GET " + url + " HTTP/1.1\r\nHost: " + kHost + "\r\n\r\n")) {
                        counts.conn_errors++;
                        break;
                    }
                    auto r = c->readResponse();
                    if (!r.ok()) {
                        counts.conn_errors++;
                        break;
                    }
                    if (r.status != 200 || r.body != "strata-origin 0: GET " + url + "\n") {
                        counts.bad_status++;
                    }
                    counts.ok++;
                    if (cacheStatusHas(r, "detail=l1")) {
                        counts.l1_hits++;
                    } else if (cacheStatusHas(r, "fwd=uri-miss")) {
                        counts.forwarded++;
                    }
                }
            }
        };
        std::vector<std::thread> clients;
        for (int i = 0; i < 3; ++i) {
            clients.emplace_back(client, i);
        }
        // Joins the clients whatever happens below (a failed REQUIRE throws).
        struct Joiner {
            std::atomic<bool>& stop;
            std::vector<std::thread>& threads;
            ~Joiner() {
                stop = true;
                for (auto& t : threads) {
                    t.join();
                }
            }
        } joiner{stop, clients};
        // Progress in requests answered, never in elapsed time.
        auto advance = [&](std::uint64_t n) {
            const std::uint64_t target = counts.ok.load() + n;
            return eventually([&] { return counts.ok.load() >= target; },
                              std::chrono::milliseconds(30000 * kSlow));
        };

        REQUIRE(advance(300));
        REQUIRE(waitForL2Sets(admin, 50));
        // Gets and sets both open a breaker; which of them meets a dead server first is timing.
        const double errors_before = l2Errors(admin, "get") + l2Errors(admin, "set");
        CHECK(errors_before == 0);

        // One server gone: its keys become misses, the other server still serves.
        const std::uint16_t m1_port = m1.port();
        const auto killed_at = Clock::now();
        m1.process().signal(SIGKILL);
        REQUIRE(m1.process().wait(std::chrono::milliseconds(5000)).has_value());
        REQUIRE(advance(300));
        CHECK(eventually([&] {
            return metric(admin, "strata_cache_l2_breaker_open",
                          {"server=\"" + m1.addr() + "\""}) == 1;
        }));
        const double sets_with_m2 = l2Ops(admin, "set") - l2Errors(admin, "set");
        REQUIRE(advance(200));
        // m2 is still written (writes complete asynchronously: wait for one more success).
        CHECK(eventually(
            [&] { return l2Ops(admin, "set") - l2Errors(admin, "set") > sets_with_m2; }));

        // Both gone: L1 hits and origin fetches only.
        m2.process().signal(SIGKILL);
        REQUIRE(m2.process().wait(std::chrono::milliseconds(5000)).has_value());
        REQUIRE(advance(300));
        CHECK(eventually([&] {
            return metric(admin, "strata_cache_l2_breaker_open",
                          {"server=\"" + m2.addr() + "\""}) == 1;
        }));
        // A breaker closes only on an answer: with both servers dead, both stay open.
        const std::string status = get(admin, "/status").body;
        CHECK(status.find("\"l2\":{\"servers\":2,\"breakers_open\":2}") != std::string::npos);
        const std::uint64_t hits_before = counts.l1_hits.load();
        const std::uint64_t forwarded_before = counts.forwarded.load();
        REQUIRE(advance(300));
        CHECK(counts.l1_hits.load() > hits_before);
        CHECK(counts.forwarded.load() > forwarded_before);
        CHECK(l2Errors(admin, "get") + l2Errors(admin, "set") > errors_before);
        CHECK(l2Lookups(admin, "error") > 0);

        // A memcached back on the first port: the breaker's probe closes it, writes resume.
        const auto dead_for = Clock::now() - killed_at;
        Memcached m1_again({"-p", std::to_string(m1_port)});
        const auto restarted_at = Clock::now();
        REQUIRE(m1_again.port() == m1_port);
        CHECK(eventually(
            [&] {
                return metric(admin, "strata_cache_l2_breaker_open",
                              {"server=\"" + m1_again.addr() + "\""}) == 0;
            },
            std::chrono::milliseconds(60000)));
        CHECK(eventually([&] { return !storedKeys({&m1_again}).records.empty(); },
                         std::chrono::milliseconds(30000)));
        const auto back_after = Clock::now() - restarted_at;
        MESSAGE("memcached dead for "
                << std::chrono::duration_cast<std::chrono::milliseconds>(dead_for).count()
                << " ms, L2 back after "
                << std::chrono::duration_cast<std::chrono::milliseconds>(back_after).count()
                << " ms");
        REQUIRE(advance(100));

        stop = true;
        for (auto& t : clients) {
            t.join();
        }
        clients.clear();
        MESSAGE("answered " << counts.ok.load() << ", L1 hits " << counts.l1_hits.load()
                            << ", forwarded " << counts.forwarded.load());
        CHECK(counts.bad_status.load() == 0);
        CHECK(counts.conn_errors.load() == 0);
        CHECK(metric(admin, "strata_proxy_requests_total", {"status_class=\"5xx\""}) <= 0);
    }

    TEST_CASE("a purge through A's admin API reaches B within purge_poll + 2 x timeout") {
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        TempDir dir;
        L2Yaml l2 = withPurgeToken(dir);
        l2.timeout = "200ms";
        l2.purge_poll = "200ms";
        // conf/strata.yaml: purges by other instances apply within purge_poll + 2 x timeout.
        const auto bound = std::chrono::milliseconds(200 + 2 * 200);
        // Scheduling slack for a loaded (or sanitized) machine, on top of the bound.
        const auto slack = std::chrono::milliseconds(400 * kSlow);
        Strata a(l2Config(origin, mc, l2));
        Strata b(l2Config(origin, mc, l2));

        const std::string tagged = "/seq/tagged?" + hParam("Surrogate-Key", "grp-a grp-b");
        const std::vector<std::string> urls = {"/seq/url", "/seq/pfx/one", "/seq/pfx/two", tagged,
                                               "/seq/other"};
        for (const auto& url : urls) {
            auto r = fetch(a.port(), url);
            REQUIRE(r.status == 200);
            REQUIRE(r.header("X-Seq") == "1");
        }
        REQUIRE(waitForL2Sets(a.port("admin"), static_cast<double>(urls.size())));
        // B holds each in L1 (first from L2), so only the purge log can reach it there.
        for (const auto& url : urls) {
            CAPTURE(url);
            auto r1 = fetch(b.port(), url);
            STRATA_CACHE_STATUS(r1);
            CHECK(cacheStatusHas(r1, "detail=l2"));
            auto r2 = fetch(b.port(), url);
            STRATA_CACHE_STATUS(r2);
            CHECK(cacheStatusHas(r2, "detail=l1"));
            CHECK(r2.header("X-Seq") == "1");
        }

        // Polls B until `url` is no longer the pre-purge object; returns how long it took.
        auto purgedOnB = [&](const std::string& url, Clock::time_point purged_at) {
            const auto deadline = purged_at + bound + slack + std::chrono::milliseconds(3000);
            for (;;) {
                auto r = fetch(b.port(), url);
                REQUIRE(r.status == 200);
                if (r.header("X-Seq") != "1") {
                    STRATA_CACHE_STATUS(r);
                    CHECK_FALSE(cacheStatusHas(r, "hit"));
                    CHECK(cacheStatusHas(r, "fwd=uri-miss"));
                    CHECK(r.header("X-Seq") == "2");
                    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                                 purged_at);
                }
                CHECK(cacheStatusHas(r, "hit"));
                REQUIRE(Clock::now() < deadline);
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        };
        // After the bound, B must never answer with the pre-purge object again.
        auto neverStaleAfter = [&](const std::string& url) {
            for (int i = 0; i < 3; ++i) {
                auto r = fetch(b.port(), url);
                CHECK(r.header("X-Seq") != "1");
                CHECK(cacheStatusHas(r, "hit"));  // B's own re-fetch, now cached
            }
        };
        const std::string origin_path = "/seq/url";
        const auto path_of = [](const std::string& url) { return url.substr(0, url.find('?')); };

        SUBCASE("by URL") {
            const auto t0 = Clock::now();
            CHECK(purge(a.port("admin"), "url=http%3A%2F%2Fl2.test%2Fseq%2Furl") ==
                  "200 purged 1\n");
            const auto took = purgedOnB("/seq/url", t0);
            MESSAGE("url purge reached B after " << took.count() << " ms (bound " << bound.count()
                                                 << " ms)");
            CHECK(took <= bound + slack);
            neverStaleAfter("/seq/url");
            CHECK(origin.requestCount(0, origin_path) == 2);
        }
        SUBCASE("by prefix") {
            const auto t0 = Clock::now();
            CHECK(purge(a.port("admin"), "prefix=http%3A%2F%2Fl2.test%2Fseq%2Fpfx%2F") ==
                  "200 purged 2\n");
            for (const std::string url : {"/seq/pfx/one", "/seq/pfx/two"}) {
                const auto took = purgedOnB(url, t0);
                MESSAGE("prefix purge reached B after " << took.count() << " ms");
                CHECK(took <= bound + slack);
                neverStaleAfter(url);
                CHECK(origin.requestCount(0, url) == 2);
            }
        }
        SUBCASE("by tag") {
            const auto t0 = Clock::now();
            CHECK(purge(a.port("admin"), "tag=grp-b") == "200 purged 1\n");
            const auto took = purgedOnB(tagged, t0);
            MESSAGE("tag purge reached B after " << took.count() << " ms");
            CHECK(took <= bound + slack);
            neverStaleAfter(tagged);
            CHECK(origin.requestCount(0, path_of(tagged)) == 2);
        }
        // What no purge named is still served from B's L1 and never refetched.
        auto other = fetch(b.port(), "/seq/other");
        CHECK(cacheStatusHas(other, "detail=l1"));
        CHECK(other.header("X-Seq") == "1");
        CHECK(origin.requestCount(0, "/seq/other") == 1);
        CHECK(metric(b.port("admin"), "strata_cache_l2_errors_total", {"op=\"get\""}) == 0);
    }

    TEST_CASE("the purging instance itself never serves a purged object from L2") {
        // Its L1 is purged before the admin answer; L2 keeps the object (prefix and tag purges
        // only log), so the next lookup must already know the purge.
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        TempDir dir;
        L2Yaml l2 = withPurgeToken(dir);
        l2.threads = 1;
        Strata a(l2Config(origin, mc, l2));
        const int kObjects = 12;
        auto url = [](int i) {
            return "/seq/own/" + std::to_string(i) + "?" +
                   hParam("Surrogate-Key", "own-" + std::to_string(i));
        };
        for (int i = 0; i < kObjects; ++i) {
            REQUIRE(fetch(a.port(), url(i)).header("X-Seq") == "1");
        }
        REQUIRE(waitForL2Sets(a.port("admin"), kObjects));
        for (int i = 0; i < kObjects; ++i) {
            CAPTURE(i);
            const std::string query =
                i % 3 == 0 ? "tag=own-" + std::to_string(i)
                : i % 3 == 1
                    ? "prefix=http%3A%2F%2Fl2.test%2Fseq%2Fown%2F" + std::to_string(i) + "%3F"
                    : "url=http%3A%2F%2Fl2.test%2Fseq%2Fown%2F" + std::to_string(i) +
                          "%3Fh%3DSurrogate-Key%253Aown-" + std::to_string(i);
            REQUIRE(purge(a.port("admin"), query) == "200 purged 1\n");
            auto r = fetch(a.port(), url(i));
            STRATA_CACHE_STATUS(r);
            CHECK(r.header("X-Seq") == "2");
            CHECK_FALSE(cacheStatusHas(r, "hit"));
        }
    }

    TEST_CASE("a purge the shared purge log did not take answers 503; L1 is purged anyway") {
        // Other instances only learn of a purge through the log: an operator told 200 while it
        // failed would believe an object gone that they keep serving.
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        TempDir dir;
        L2Yaml l2 = withPurgeToken(dir);
        Strata a(l2Config(origin, mc, l2));
        const auto admin = a.port("admin");
        auto purges = [&](const std::string& code) {
            return std::max(0.0, metric(admin, "strata_admin_requests_total",
                                        {"endpoint=\"/purge\"", "code=\"" + code + "\""}));
        };
        const std::string tagged = "/seq/down/t?" + hParam("Surrogate-Key", "down-t");
        for (const std::string& url :
             std::vector<std::string>{"/seq/down/a", "/seq/down/b", tagged}) {
            REQUIRE(fetch(a.port(), url).header("X-Seq") == "1");
        }

        // Both servers up: the log is written, 200.
        CHECK(purge(admin, "url=http%3A%2F%2Fl2.test%2Fseq%2Fdown%2Fa") == "200 purged 1\n");
        CHECK(purges("200") == 1);
        CHECK(fetch(a.port(), "/seq/down/a").header("X-Seq") == "2");

        // The server holding the log is killed: the append fails, the answer says so.
        const std::uint16_t log_port = serverHolding(mc, "strata:purgelog");
        REQUIRE(log_port != 0);
        Memcached& log_server = log_port == m1.port() ? m1 : m2;
        log_server.process().signal(SIGKILL);
        REQUIRE(log_server.process().wait(std::chrono::milliseconds(5000)).has_value());
        const std::string failed = purge(admin, "url=http%3A%2F%2Fl2.test%2Fseq%2Fdown%2Fb");
        CHECK(failed.starts_with("503 purged 1 locally; shared cache (L2) purge failed: "));
        CHECK(failed.find("other instances sharing the L2 may still serve") != std::string::npos);
        CHECK(purges("503") == 1);
        // L1 was purged all the same: the next request goes to the origin.
        auto b = fetch(a.port(), "/seq/down/b");
        CHECK(b.header("X-Seq") == "2");
        CHECK_FALSE(cacheStatusHas(b, "hit"));
        // Tag and prefix purges go through the log only: they fail the same way.
        CHECK(purge(admin, "tag=down-t&soft=1")
                  .starts_with("503 soft-purged 1 locally; shared cache (L2) purge failed: "));
        CHECK(purge(admin, "prefix=http%3A%2F%2Fl2.test%2Fnothing%2F")
                  .starts_with("503 purged 0 locally; "));
        CHECK(purges("503") == 3);
        CHECK(purges("200") == 1);
    }

    TEST_CASE("objects over max_object_bytes: chunked and restored byte-exact, or skipped") {
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        const std::uint64_t size = 300 * 1024;
        const std::string big = "/bytes/" + std::to_string(size);
        L2Yaml l2;
        // 16 KiB: about 20 chunks, so all of them hashing to one of the two servers (which
        // the spread check below would report) has odds of about one in a million.
        l2.max_object_bytes = "16KiB";
        l2.threads = 1;  // writes complete in submission order (see "skipped" below)

        SUBCASE("chunks: true") {
            {
                Strata first(l2Config(origin, mc, l2));
                auto r = fetch(first.port(), big);
                REQUIRE(r.status == 200);
                REQUIRE(r.body.size() == size);
                // The record pointing to the chunks is written last: once it is there, all are.
                REQUIRE(eventually([&] { return !storedKeys(mc).records.empty(); },
                                   std::chrono::milliseconds(10000 * kSlow)));
                CHECK(l2Errors(first.port("admin"), "set") == 0);
                CHECK(first.stop() == 0);
            }
            const StoredKeys stored = storedKeys(mc);
            CHECK(stored.records.size() == 1);
            CHECK(stored.chunks.size() >= size / (16 * 1024));  // each chunk fits the limit
            CHECK(stored.servers.size() == 2);                  // chunks spread over the ring
            for (const Memcached* m : mc) {
                MemcachedText t(m->port());
                for (const auto& k : t.keys()) {
                    auto v = t.get(k);
                    REQUIRE(v.has_value());
                    CHECK(v->size() <= 16 * 1024);
                }
            }

            Strata second(l2Config(origin, mc, l2));
            auto r = fetch(second.port(), big);
            STRATA_CACHE_STATUS(r);
            REQUIRE(r.status == 200);
            CHECK(cacheStatusHas(r, "detail=l2"));
            std::string expected(size, '\0');
            originPattern(0, expected);
            CHECK(r.body.size() == size);
            CHECK(r.body == expected);
            CHECK(r.header("Content-Length") == std::to_string(size));
            CHECK(origin.requestCount(0, big) == 1);
        }
        SUBCASE("chunks: false") {
            l2.chunks = false;
            {
                Strata first(l2Config(origin, mc, l2));
                REQUIRE(fetch(first.port(), big).body.size() == size);
                // A small object after it: with one L2 thread, once it is written the large
                // one was handled before it (and skipped: one write in all).
                REQUIRE(fetch(first.port(), "/small").status == 200);
                REQUIRE(waitForL2Sets(first.port("admin"), 1));
                CHECK(l2Ops(first.port("admin"), "set") == 1);
                CHECK(first.stop() == 0);
            }
            CHECK(storedKeys(mc).records.size() == 1);
            CHECK(storedKeys(mc).chunks.empty());

            Strata second(l2Config(origin, mc, l2));
            auto r = fetch(second.port(), big);
            STRATA_CACHE_STATUS(r);
            REQUIRE(r.status == 200);
            CHECK(r.body.size() == size);
            CHECK(r.header("Cache-Status") == "strata; fwd=uri-miss; stored");
            CHECK(origin.requestCount(0, big) == 2);
            auto small = fetch(second.port(), "/small");
            STRATA_CACHE_STATUS(small);
            CHECK(cacheStatusHas(small, "detail=l2"));
        }
    }

    TEST_CASE("a corrupt, truncated or foreign value in memcached is a miss, never a crash") {
        Origin origin;
        Memcached m1, m2;
        const std::vector<const Memcached*> mc = {&m1, &m2};
        const std::vector<std::string> urls = {"/x/garbage", "/x/truncated", "/x/foreign",
                                               "/x/empty", "/x/intact"};
        std::vector<std::string> keys;  // memcached key of each URL, in order
        {
            Strata first(l2Config(origin, mc));
            for (std::size_t i = 0; i < urls.size(); ++i) {
                REQUIRE(fetch(first.port(), urls[i]).status == 200);
                REQUIRE(waitForL2Sets(first.port("admin"), static_cast<double>(i + 1)));
                // The one key that appeared is this URL's.
                for (const auto& k : storedKeys(mc).records) {
                    if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
                        keys.push_back(k);
                    }
                }
                REQUIRE(keys.size() == i + 1);
            }
            CHECK(first.stop() == 0);
        }
        auto text_for = [&](const std::string& key) {
            return std::make_unique<MemcachedText>(serverHolding(mc, key));
        };
        const std::string intact_value = text_for(keys[4])->get(keys[4]).value();
        const std::string truncated_value = text_for(keys[1])->get(keys[1]).value();
        REQUIRE(intact_value.starts_with("STRC"));
        CHECK(text_for(keys[0])->set(keys[0], std::string(500, '\x5a') + "not a strata record"));
        CHECK(
            text_for(keys[1])->set(keys[1], truncated_value.substr(0, truncated_value.size() / 2)));
        // A valid record of another URL: its stored key does not match.
        CHECK(text_for(keys[2])->set(keys[2], intact_value));
        CHECK(text_for(keys[3])->set(keys[3], ""));

        Strata second(l2Config(origin, mc));
        for (std::size_t i = 0; i < urls.size(); ++i) {
            CAPTURE(urls[i]);
            auto r = fetch(second.port(), urls[i]);
            STRATA_CACHE_STATUS(r);
            REQUIRE(r.status == 200);
            CHECK(r.body == "strata-origin 0: GET " + urls[i] + "\n");
            if (i == 4) {
                CHECK(cacheStatusHas(r, "detail=l2"));
                CHECK(origin.requestCount(0, urls[i]) == 1);
            } else {
                CHECK(r.header("Cache-Status") == "strata; fwd=uri-miss; stored");
                CHECK(origin.requestCount(0, urls[i]) == 2);
            }
        }
        CHECK(l2Lookups(second.port("admin"), "error") == 4);
        CHECK(l2Lookups(second.port("admin"), "hit") == 1);
        // The re-fetched objects overwrite the bad values: a third instance hits all five.
        REQUIRE(waitForL2Sets(second.port("admin"), 4));
        Strata third(l2Config(origin, mc));
        for (const auto& url : urls) {
            CAPTURE(url);
            auto r = fetch(third.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(cacheStatusHas(r, "detail=l2"));
        }
    }
}
