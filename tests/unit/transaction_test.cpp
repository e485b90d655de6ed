// Unit tests for proxy::Transaction driven through a fake ClientStream: the transaction's states
// and what it hands to its client, with no client connection and no HTTP/1 bytes. The cache is
// a real L1; the upstream is a canned one on a thread, or a port nothing listens on.
#include "strata/proxy/transaction.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>

#include "strata/cache/cache_control.h"
#include "strata/cache/cache_runtime.h"
#include "strata/cache/entry.h"
#include "strata/cache/key.h"
#include "strata/config/config.h"
#include "strata/event/loop.h"
#include "strata/proxy/client_stream.h"
#include "strata/proxy/snapshot.h"
#include "strata/upstream/balancer.h"

using namespace strata;
using State = proxy::Transaction::State;

namespace {

// A loopback port with nothing listening: bound, then closed.
int deadPort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// An upstream on a thread: answers every request on every connection with `response` (which
// says Connection: close), and counts the requests.
class CannedUpstream {
public:
    explicit CannedUpstream(std::string response) : response_(std::move(response)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(fd_, 16) == 0);
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~CannedUpstream() {
        ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
        thread_.join();
        ::close(fd_);
    }
    int port() const { return port_; }
    int requests() const { return requests_.load(); }
    std::string lastRequest() {
        std::lock_guard<std::mutex> lock(mutex_);
        return last_request_;
    }

private:
    void serve() {
        for (;;) {
            int client = ::accept(fd_, nullptr, nullptr);
            if (client < 0) {
                return;
            }
            std::string request;
            char buf[4096];
            while (request.find("\r\n\r\n") == std::string::npos) {
                ssize_t n = ::read(client, buf, sizeof buf);
                if (n <= 0) {
                    break;
                }
                request.append(buf, static_cast<std::size_t>(n));
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                last_request_ = request;
            }
            ++requests_;
            (void)!::write(client, response_.data(), response_.size());
            ::close(client);
        }
    }

    std::string response_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<int> requests_{0};
    std::mutex mutex_;
    std::string last_request_;
    std::thread thread_;
};

// Records what the transaction hands to its client.
class FakeStream final : public proxy::ClientStream {
public:
    explicit FakeStream(proxy::WorkerContext& worker) : worker_(worker) {}

    proxy::WorkerContext& worker() override { return worker_; }
    const std::string& clientAddress() const override { return address_; }
    const proxy::ListenerInfo& listener() const override { return listener_; }
    std::uint64_t connectionId() const override { return 7; }
    const std::string& forwardSubjectHeader() const override { return none_; }
    std::string clientSubject() const override { return {}; }

    void sendInterim(const http::OutgoingResponse& head) override {
        ++interims;
        continues += head.status == 100 ? 1 : 0;
    }
    void sendHead(const http::OutgoingResponse& head) override {
        ++heads;
        status = head.status;
        body_kind = head.body;
        content_length = head.content_length;
        head_only = head.head_only;
        // Edits are views into the transaction's frame: copy what the test reads.
        std::string out;
        http::appendHttp1ResponseHead(out, head, 1, false);
        serialized = out;
    }
    void sendBody(std::string_view data) override { body.append(data); }
    using ClientStream::sendBody;
    void sendBody(const cache::BodyPtr& stored, std::uint64_t offset,
                  std::uint64_t length) override {
        body.append(std::string_view(*stored).substr(offset, length));
        ++zero_copy_bodies;
    }
    void flush() override {}
    void endResponse() override { ++ends; }
    void sendError(int error_status, std::string_view, std::string_view cache) override {
        ++errors;
        status = error_status;
        cache_status = cache;
        if (transaction != nullptr) {
            transaction->abort();  // as the HTTP/1 session does: the transaction is dropped
        }
    }
    void abortResponse() override { ++aborts; }
    std::size_t outputPending() const override { return 0; }
    void pauseRequestBody() override {}
    void resumeRequestBody() override {}
    void setCacheResult(metrics::CacheResult result) override { cache_result = result; }
    void logAccess(std::string_view, std::string_view, std::string_view, int, int status_logged,
                   std::uint64_t, std::string_view, std::string_view, std::string_view, double,
                   std::chrono::steady_clock::time_point) override {
        ++logs;
        logged_status = status_logged;
    }
    std::string_view requestId() const override { return "00000000000000ff"; }

    proxy::Transaction* transaction = nullptr;
    int continues = 0, interims = 0, heads = 0, ends = 0, errors = 0, aborts = 0, logs = 0;
    int zero_copy_bodies = 0;
    int status = 0, logged_status = 0;
    http::ResponseBody body_kind = http::ResponseBody::None;
    std::uint64_t content_length = 0;
    bool head_only = false;
    std::string serialized, body, cache_status;
    metrics::CacheResult cache_result = metrics::CacheResult::Bypass;

private:
    proxy::WorkerContext& worker_;
    std::string address_ = "127.0.0.1";
    proxy::ListenerInfo listener_{"http", false};
    std::string none_;
};

// A worker with a real L1, one route to `app` (cached when `cached`), and a snapshot.
struct Harness {
    // `upstream_port` 0: a port nothing listens on.
    explicit Harness(bool cached, int upstream_port = 0)
        : runtime(cache::L1Options{}), worker(loop, 0, connections, offSink()) {
        std::string yaml =
            "listeners:\n  - {name: http, bind: \"127.0.0.1:0\"}\n"
            "upstreams:\n  app:\n    servers: [\"127.0.0.1:" +
            std::to_string(upstream_port != 0 ? upstream_port : deadPort()) +
            "\"]\n    max_tries: 1\n"
            "routes:\n  - {match: {path_prefix: /}, upstream: app" +
            std::string(cached ? ", cache: {enabled: true, default_ttl: 60s}" : "") +
            "}\nlogging: {access_log: off}\n";
        auto loaded = config::loadString(yaml, "t.yaml");
        REQUIRE(loaded.config != nullptr);
        snapshot = std::make_shared<proxy::Snapshot>(loaded.config, registry, 1);
        worker.snapshot = snapshot;
        worker.cache = &runtime;
    }

    static http::RequestHead get(std::string path = "/a") {
        http::RequestHead r;
        r.method = "GET";
        r.target = path;
        r.path = path;
        r.host = "example.com";
        r.fields.add("Host", "example.com");
        return r;
    }

    // Stores a 200 with `body` under the key a GET of `path` on this route looks up.
    void store(const std::string& path, std::string body,
               const std::string& cache_control = "max-age=60", const std::string& etag = "") {
        http::RequestHead request = get(path);
        http::ResponseHead response;
        response.status = 200;
        response.reason = "OK";
        response.fields.add("Cache-Control", cache_control);
        if (!etag.empty()) {
            response.fields.add("ETag", etag);
        }
        response.fields.add("Content-Type", "text/plain");
        auto directives = cache::responseDirectives(response.fields);
        cache::CachePolicy policy;
        cache::StoreInput in;
        in.request = &request;
        in.response = &response;
        in.directives = &directives;
        in.policy = &policy;
        in.key_policy = &snapshot->route(0).cache.key;
        in.primary_key = cache::primaryKey("http", request, snapshot->route(0).cache.key);
        in.body = std::make_shared<const cache::Body>(std::move(body));
        in.request_time = std::chrono::system_clock::now();
        in.response_time = in.request_time;
        runtime.keep(cache::buildEntry(in), in.response_time);
    }

    static std::shared_ptr<proxy::AccessLogSink> offSink() {
        std::string error;
        return proxy::AccessLogSink::open("off", "combined", nullptr, error);
    }

    // Runs the loop until `done` holds (checked every 5 ms) or two seconds pass.
    template <typename Predicate>
    bool runUntil(Predicate done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        event::Timer tick(loop, [&] {
            if (done() || std::chrono::steady_clock::now() >= deadline) {
                loop.stop();
            } else {
                tick.arm(std::chrono::milliseconds(5));
            }
        });
        tick.arm(std::chrono::milliseconds(0));
        loop.run();
        return done();
    }

    event::Loop loop;
    std::atomic<std::uint32_t> connections{0};
    upstream::ServerRegistry registry;
    cache::CacheRuntime runtime;
    proxy::WorkerContext worker;
    std::shared_ptr<proxy::Snapshot> snapshot;
};

}  // namespace

TEST_SUITE("proxy/transaction") {
    TEST_CASE("a fresh L1 entry answers at once: one head, the stored body by reference, end") {
        Harness h(true);
        h.store("/a", "stored body");
        FakeStream stream(h.worker);
        proxy::Transaction t(stream, h.snapshot, 0, Harness::get("/a"));
        stream.transaction = &t;
        t.start();
        CHECK(t.state() == State::Finished);
        CHECK(stream.heads == 1);
        CHECK(stream.ends == 1);
        CHECK(stream.errors == 0);
        CHECK(stream.status == 200);
        CHECK(stream.body_kind == http::ResponseBody::Length);
        CHECK(stream.content_length == 11);
        CHECK(stream.zero_copy_bodies == 1);
        CHECK(stream.body == "stored body");
        CHECK(stream.cache_result == metrics::CacheResult::Hit);
        CHECK(stream.serialized.find("Cache-Status: strata; hit; detail=l1; ttl=") !=
              std::string::npos);
        CHECK(stream.serialized.find("Content-Length: 11\r\n") != std::string::npos);
        CHECK(stream.logs == 1);
        CHECK_FALSE(t.canSendError());
    }

    TEST_CASE("HEAD of a stored entry states its length and sends no body") {
        Harness h(true);
        h.store("/a", "stored body");
        FakeStream stream(h.worker);
        http::RequestHead head = Harness::get("/a");
        head.method = "HEAD";
        proxy::Transaction t(stream, h.snapshot, 0, std::move(head));
        t.start();
        CHECK(t.state() == State::Finished);
        CHECK(stream.head_only);
        CHECK(stream.content_length == 11);
        CHECK(stream.body.empty());
        CHECK(stream.ends == 1);
    }

    TEST_CASE("only-if-cached with nothing stored: 504, never forwarded") {
        Harness h(true);
        FakeStream stream(h.worker);
        http::RequestHead request = Harness::get("/missing");
        request.fields.add("Cache-Control", "only-if-cached");
        proxy::Transaction t(stream, h.snapshot, 0, std::move(request));
        stream.transaction = &t;
        t.start();
        CHECK(t.state() == State::Finished);
        CHECK(stream.errors == 1);
        CHECK(stream.status == 504);
        CHECK(stream.heads == 0);
        CHECK(stream.cache_status == "strata; fwd=uri-miss");
    }

    TEST_CASE("a dead upstream: Forwarding, then a 502 error answer instead of a head") {
        Harness h(false);
        FakeStream stream(h.worker);
        proxy::Transaction t(stream, h.snapshot, 0, Harness::get("/a"));
        stream.transaction = &t;
        t.start();
        CHECK(t.state() == State::Forwarding);
        CHECK(t.canSendError());
        REQUIRE(h.runUntil([&] { return stream.errors > 0; }));
        CHECK(t.state() == State::Finished);
        CHECK(stream.status == 502);
        CHECK(stream.heads == 0);
        CHECK(stream.logged_status == 502);
        CHECK(stream.cache_status == "strata; fwd=bypass");
    }

    TEST_CASE("the client leaving while forwarding aborts: nothing more reaches the stream") {
        Harness h(false);
        FakeStream stream(h.worker);
        proxy::Transaction t(stream, h.snapshot, 0, Harness::get("/a"));
        t.start();
        REQUIRE(t.state() == State::Forwarding);
        t.abort();
        CHECK(t.state() == State::Aborted);
        h.runUntil([] { return false; });  // the loop runs the refused connect to its end
        CHECK(stream.errors == 0);
        CHECK(stream.heads == 0);
        CHECK(stream.aborts == 0);
        t.abort();  // a second abort is harmless
        CHECK(t.state() == State::Aborted);
    }

    TEST_CASE("a miss streams the upstream's answer, stores it, and the next request hits") {
        CannedUpstream upstream(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n"
            "Connection: close\r\n\r\nfresh");
        Harness h(true, upstream.port());
        FakeStream stream(h.worker);
        proxy::Transaction t(stream, h.snapshot, 0, Harness::get("/m"));
        t.start();
        CHECK(t.state() == State::Forwarding);
        REQUIRE(h.runUntil([&] { return stream.ends > 0; }));
        CHECK(t.state() == State::Finished);
        CHECK(stream.status == 200);
        CHECK(stream.body == "fresh");
        CHECK(stream.cache_result == metrics::CacheResult::Miss);
        CHECK(stream.serialized.find("Cache-Status: strata; fwd=uri-miss; stored\r\n") !=
              std::string::npos);

        FakeStream second(h.worker);
        proxy::Transaction hit(second, h.snapshot, 0, Harness::get("/m"));
        hit.start();
        CHECK(hit.state() == State::Finished);
        CHECK(second.cache_result == metrics::CacheResult::Hit);
        CHECK(second.body == "fresh");
        CHECK(upstream.requests() == 1);
    }

    TEST_CASE("the upstream gets the stream's request id, not the client's X-Request-Id") {
        CannedUpstream upstream("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        Harness h(false, upstream.port());
        FakeStream stream(h.worker);
        http::RequestHead request = Harness::get("/id");
        request.fields.add("X-Request-Id", "from-the-client");
        proxy::Transaction t(stream, h.snapshot, 0, std::move(request));
        t.start();
        REQUIRE(h.runUntil([&] { return stream.ends > 0; }));
        const std::string sent = upstream.lastRequest();
        CHECK(sent.find("X-Request-Id: 00000000000000ff\r\n") != std::string::npos);
        CHECK(sent.find("from-the-client") == std::string::npos);
    }

    TEST_CASE("a response stored without Date: the miss and the hit carry the same Date") {
        CannedUpstream upstream(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n"
            "Connection: close\r\n\r\nfresh");
        Harness h(true, upstream.port());
        FakeStream miss(h.worker);
        proxy::Transaction t(miss, h.snapshot, 0, Harness::get("/dated"));
        t.start();
        REQUIRE(h.runUntil([&] { return miss.ends > 0; }));
        FakeStream hit(h.worker);
        proxy::Transaction second(hit, h.snapshot, 0, Harness::get("/dated"));
        second.start();
        REQUIRE(hit.ends == 1);
        auto dateOf = [](const std::string& head) {
            const auto at = head.find("\r\nDate: ");
            return at == std::string::npos
                       ? std::string()
                       : head.substr(at + 8, head.find("\r\n", at + 2) - at - 8);
        };
        CHECK(dateOf(miss.serialized).size() == 29);  // "Wed, 02 Dec 2026 17:14:08 GMT"
        CHECK(dateOf(hit.serialized) == dateOf(miss.serialized));
    }

    TEST_CASE("a client's validators on a miss: the head is held, the stored entry answers 304") {
        CannedUpstream upstream(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n"
            "Content-Length: 5\r\nConnection: close\r\n\r\nfresh");
        Harness h(true, upstream.port());
        FakeStream stream(h.worker);
        http::RequestHead request = Harness::get("/c");
        request.fields.add("If-None-Match", "\"v1\"");
        proxy::Transaction t(stream, h.snapshot, 0, std::move(request));
        t.start();
        REQUIRE(h.runUntil([&] { return stream.ends > 0; }));
        CHECK(t.state() == State::Finished);
        CHECK(stream.heads == 1);
        CHECK(stream.status == 304);
        CHECK(stream.body.empty());
        // The validators were held back: the cache needed the whole body.
        CHECK(upstream.lastRequest().find("If-None-Match") == std::string::npos);
    }

    TEST_CASE("a revalidation answered in full is logged as the miss it was, not as stale") {
        CannedUpstream upstream(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"v2\"\r\n"
            "Content-Length: 3\r\nConnection: close\r\n\r\nnew");
        Harness h(true, upstream.port());
        h.store("/r", "old", "max-age=0", "\"v1\"");
        FakeStream stream(h.worker);
        proxy::Transaction t(stream, h.snapshot, 0, Harness::get("/r"));
        t.start();
        REQUIRE(h.runUntil([&] { return stream.ends > 0; }));
        CHECK(upstream.lastRequest().find("If-None-Match: \"v1\"") != std::string::npos);
        CHECK(stream.body == "new");
        CHECK(stream.cache_result == metrics::CacheResult::Miss);
        CHECK(stream.serialized.find("Cache-Status: strata; fwd=stale; stored; fwd-status=200") !=
              std::string::npos);
    }

    TEST_CASE("only-if-cached's 504 is logged as a miss, as its Cache-Status says") {
        Harness h(true);
        FakeStream stream(h.worker);
        http::RequestHead request = Harness::get("/none");
        request.fields.add("Cache-Control", "only-if-cached");
        proxy::Transaction t(stream, h.snapshot, 0, std::move(request));
        stream.transaction = &t;
        t.start();
        CHECK(stream.status == 504);
        CHECK(stream.cache_result == metrics::CacheResult::Miss);
    }

    TEST_CASE("the transition table: forward progress only, nothing leaves Finished") {
        using T = proxy::Transaction;
        CHECK(T::allowed(State::Created, State::Forwarding));
        CHECK(T::allowed(State::Created, State::Finished));
        CHECK(T::allowed(State::Forwarding, State::HoldingHead));
        CHECK(T::allowed(State::HoldingHead, State::Streaming));
        CHECK(T::allowed(State::Streaming, State::Aborted));
        CHECK_FALSE(T::allowed(State::Streaming, State::Validated));
        CHECK_FALSE(T::allowed(State::Streaming, State::Forwarding));
        CHECK_FALSE(T::allowed(State::Validated, State::Streaming));
        CHECK_FALSE(T::allowed(State::Finished, State::Aborted));
        CHECK_FALSE(T::allowed(State::Aborted, State::Finished));
        CHECK_FALSE(T::allowed(State::Created, State::Streaming));
    }
}
