// Arbitrary bytes to strata's HTTP/2 server session, right after the client preface: a real
// DownstreamSession on one end of a socket pair, on a worker with a snapshot whose routes answer
// locally, send to an upstream nothing listens on (502 at once) and tunnel WebSockets, and
// the fuzzer's bytes on the other end, which then closes. Invariants: the server's first frame
// is its SETTINGS (RFC 9113 3.4), its output is whole frames of defined types and nothing
// else, and the session ends, closing its end, once the client is gone (no stream or timer
// keeps it; ASan checks the memory).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#include "strata/cache/cache_runtime.h"
#include "strata/config/config.h"
#include "strata/event/loop.h"
#include "strata/proxy/access_log.h"
#include "strata/proxy/downstream_session.h"
#include "strata/proxy/snapshot.h"
#include "strata/upstream/balancer.h"

using namespace strata;

namespace {

// A loopback port nothing listens on: connects are refused at once.
std::uint16_t deadPort() {
    static const std::uint16_t port = [] {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        socklen_t len = sizeof addr;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        return ntohs(addr.sin_port);  // fd stays bound, never listening, for the process
    }();
    return port;
}

std::shared_ptr<proxy::AccessLogSink> offSink() {
    std::string error;
    return proxy::AccessLogSink::open("off", "combined", nullptr, error);
}

struct World {
    World() : runtime(cache::L1Options{}), worker(loop, 0, connections, offSink()) {
        const std::string yaml =
            "listeners:\n  - {name: http, bind: \"127.0.0.1:0\", protocols: [h2, http/1.1]}\n"
            "upstreams:\n  app:\n    servers: [\"127.0.0.1:" +
            std::to_string(deadPort()) +
            "\"]\n    max_tries: 1\n"
            "routes:\n"
            "  - {match: {path: /robots.txt}, respond: {status: 200, body: \"User-agent: *\\n\"}}\n"
            "  - {match: {path_prefix: /nows}, upstream: app, websocket: false}\n"
            "  - {match: {path_prefix: /}, upstream: app, cache: {enabled: true}}\n"
            "limits: {client_header_timeout: 1s, client_idle_timeout: 1s, send_timeout: 1s}\n"
            "logging: {access_log: off}\n";
        auto loaded = config::loadString(yaml, "fuzz.yaml");
        if (loaded.config == nullptr) {
            std::fprintf(stderr, "h2_session_fuzz: config refused\n");
            std::abort();
        }
        snapshot = std::make_shared<proxy::Snapshot>(loaded.config, registry, 1);
        worker.snapshot = snapshot;
        worker.cache = &runtime;
        listener.name = "http";
        listener.h2c = true;
        listener.http1 = true;
    }

    event::Loop loop;
    std::atomic<std::uint32_t> connections{0};
    upstream::ServerRegistry registry;
    cache::CacheRuntime runtime;
    proxy::WorkerContext worker;
    std::shared_ptr<proxy::Snapshot> snapshot;
    proxy::ListenerInfo listener;
};

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Walks the frames the server sent before it closed; aborts on what breaks RFC 9113 4.1.
void checkFrames(const std::string& out) {
    std::size_t at = 0;
    bool first = true;
    while (out.size() - at >= 9) {
        const auto* p = reinterpret_cast<const unsigned char*>(out.data() + at);
        const std::size_t length = (std::size_t{p[0]} << 16) | (std::size_t{p[1]} << 8) | p[2];
        const unsigned type = p[3];
        if (first && type != 0x4) {
            std::fprintf(stderr, "h2_session_fuzz: first frame is type %u, not SETTINGS\n", type);
            std::abort();
        }
        first = false;
        if (type > 0x9) {  // strata sends only RFC 9113's frame types
            std::fprintf(stderr, "h2_session_fuzz: frame type %u\n", type);
            std::abort();
        }
        at += 9 + length;
    }
    if (at != out.size()) {
        std::fprintf(stderr, "h2_session_fuzz: output ends inside a frame\n");
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static World* world = new World();  // kept: sessions are deleted later by the loop
    if (size > 256 * 1024) {
        return 0;
    }
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
        return 0;
    }
    const int client = fds[1];
    auto* session =
        new proxy::DownstreamSession(world->worker, fds[0], net::SocketAddress{}, world->listener);
    session->start();  // owns itself from here, deleted by the loop once it closes

    std::string input(kPreface, sizeof kPreface - 1);
    input.append(reinterpret_cast<const char*>(data), size);
    std::size_t sent = 0;
    bool shut = false;
    bool closed = false;
    std::string output;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    auto quiet_since = std::chrono::steady_clock::now();
    event::Timer tick(world->loop, [&] {
        while (sent < input.size()) {
            const ssize_t n = ::send(client, input.data() + sent, input.size() - sent,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            sent += static_cast<std::size_t>(n);
        }
        char buf[65536];
        for (;;) {
            const ssize_t n = ::recv(client, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                output.append(buf, static_cast<std::size_t>(n));
                quiet_since = std::chrono::steady_clock::now();
                continue;
            }
            closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
            break;
        }
        // Once the session has answered what it can (10 ms without output), the client goes.
        if (sent == input.size() && !shut &&
            std::chrono::steady_clock::now() - quiet_since >= std::chrono::milliseconds(10)) {
            shut = true;
            ::shutdown(client, SHUT_WR);  // the session must end now
        }
        if (closed || std::chrono::steady_clock::now() >= deadline) {
            world->loop.stop();
        } else {
            tick.arm(std::chrono::milliseconds(1));
        }
    });
    tick.arm(std::chrono::milliseconds(0));
    world->loop.run();
    ::close(client);
    if (!closed) {
        std::fprintf(stderr, "h2_session_fuzz: the session outlived its client by 5 s\n");
        std::abort();
    }
    checkFrames(output);
    if (std::getenv("H2_FUZZ_VERBOSE") != nullptr) {
        std::fprintf(stderr, "h2_session_fuzz: %zu bytes in, %zu bytes out\n", size, output.size());
    }
    // Let the loop delete the session (deferred) before the next input.
    event::Timer settle(world->loop, [&] { world->loop.stop(); });
    settle.arm(std::chrono::milliseconds(0));
    world->loop.run();
    return 0;
}
