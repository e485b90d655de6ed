// WebSocket through strata (RFC 6455 over an HTTP/1.1 Upgrade, RFC 9110 7.8): a valid handshake
// becomes a byte tunnel to strata-origin's /ws echo; a route that refuses tunnels, a broken
// handshake and an upstream that declines never make one; idle tunnels end; tunnels are
// counted; a reload leaves open tunnels alone; TLS listeners tunnel too; a client that stops
// reading holds both directions back with bounded memory; a drain lets tunnels finish, up to
// limits.drain_timeout.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <poll.h>
#include <random>
#include <sys/socket.h>
#include <thread>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "admin_client.h"
#include "e2e.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

const std::string kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 1.3's sample key
const std::string kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

std::string handshake(const std::string& target, const std::string& extra = "",
                      const std::string& key = kKey, const std::string& version = "13") {
    std::string out = "GET " + target +
                      " HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n";
    if (!key.empty()) {
        out += "Sec-WebSocket-Key: " + key + "\r\n";
    }
    if (!version.empty()) {
        out += "Sec-WebSocket-Version: " + version + "\r\n";
    }
    return out + extra + "\r\n";
}

// A client frame: always masked (RFC 6455 5.3), with a fresh key each time.
std::string clientFrame(unsigned opcode, std::string_view payload) {
    static std::mt19937 rng(12345);
    std::string out;
    out += static_cast<char>(0x80 | opcode);
    const std::uint64_t n = payload.size();
    if (n < 126) {
        out += static_cast<char>(0x80 | n);
    } else if (n <= 0xffff) {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>(n >> 8);
        out += static_cast<char>(n & 0xff);
    } else {
        out += static_cast<char>(0x80 | 127);
        for (int i = 7; i >= 0; --i) {
            out += static_cast<char>((n >> (8 * i)) & 0xff);
        }
    }
    char mask[4];
    for (char& m : mask) {
        m = static_cast<char>(rng());
    }
    out.append(mask, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) {
        out += static_cast<char>(payload[i] ^ mask[i % 4]);
    }
    return out;
}

struct Frame {
    bool ok = false;
    bool fin = false;
    unsigned opcode = 0;
    bool masked = false;
    std::string payload;
};

// `Source` has RawClient's readExact(n, out).
template <typename Source>
Frame readFrame(Source& c) {
    Frame f;
    std::string h;
    if (!c.readExact(2, h)) {
        return f;
    }
    f.fin = (static_cast<unsigned char>(h[0]) & 0x80) != 0;
    f.opcode = static_cast<unsigned char>(h[0]) & 0x0f;
    f.masked = (static_cast<unsigned char>(h[1]) & 0x80) != 0;
    std::uint64_t n = static_cast<unsigned char>(h[1]) & 0x7f;
    if (n >= 126) {
        std::string ext;
        if (!c.readExact(n == 126 ? 2 : 8, ext)) {
            return f;
        }
        n = 0;
        for (char b : ext) {
            n = (n << 8) | static_cast<unsigned char>(b);
        }
    }
    if (!c.readExact(n, f.payload)) {
        return f;
    }
    f.ok = true;
    return f;
}

// A TLS client's bytes, read exactly, for readFrame().
class TlsBytes {
public:
    explicit TlsBytes(SSL* ssl) : ssl_(ssl) {}
    bool readExact(std::size_t n, std::string& out) {
        while (buffer_.size() < n) {
            char buf[16384];
            const int got = SSL_read(ssl_, buf, sizeof buf);
            if (got <= 0) {
                return false;
            }
            buffer_.append(buf, static_cast<std::size_t>(got));
        }
        out = buffer_.substr(0, n);
        buffer_.erase(0, n);
        return true;
    }
    bool send(std::string_view bytes) {
        return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
               static_cast<int>(bytes.size());
    }

private:
    SSL* ssl_;
    std::string buffer_;
};

// Sends one message and checks it comes back as the same, unmasked.
template <typename Client>
void echoes(Client& c, unsigned opcode, const std::string& payload) {
    REQUIRE(c.send(clientFrame(opcode, payload)));
    Frame f = readFrame(c);
    REQUIRE(f.ok);
    CHECK(f.fin);
    CHECK_FALSE(f.masked);
    CHECK(f.opcode == opcode);
    CHECK(f.payload.size() == payload.size());
    CHECK(f.payload == payload);
}

// Upgrades `c` through strata; REQUIREs the 101.
Response upgrade(RawClient& c, const std::string& target = "/ws") {
    REQUIRE(c.send(handshake(target)));
    Response r = c.readResponse();
    STRATA_REQUIRE_RESPONSE(r);
    REQUIRE(r.status == 101);
    return r;
}

std::string config(const std::string& servers, const std::string& tunnel_idle = "",
                   const std::string& extra_route = "") {
    std::string out =
        "listeners:\n"
        "  - {name: http, bind: \"127.0.0.1:0\"}\n"
        "admin: {bind: \"127.0.0.1:0\"}\n"
        "upstreams:\n"
        "  app:\n"
        "    servers: " +
        servers + "\n";
    if (!tunnel_idle.empty()) {
        out += "    timeouts: {tunnel_idle: " + tunnel_idle + "}\n";
    }
    out +=
        "routes:\n"
        "  - {name: nows, match: {path_prefix: /nows}, upstream: app, websocket: false}\n" +
        extra_route +
        "  - {name: main, match: {path_prefix: /}, upstream: app}\n"
        "logging: {access_log: off}\n";
    return out;
}

}  // namespace

TEST_SUITE("e2e/websocket") {
    TEST_CASE("RFC 6455 sample key gives the sample accept (the test's own arithmetic)") {
        std::string text = kKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
        unsigned char b64[32];
        const int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
        CHECK(std::string(reinterpret_cast<char*>(b64), static_cast<std::size_t>(n)) == kAccept);
    }

    TEST_CASE("upgrade through strata: 101 with the origin's accept, messages echo both ways") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        RawClient c(strata.port());
        // ?hello=: the origin sends a frame in the same write as its 101.
        Response r = upgrade(c, "/ws?hello=from-origin");
        CHECK(r.header("Sec-WebSocket-Accept") == kAccept);
        CHECK(strata::equalsIgnoreCase(r.header("Upgrade"), "websocket"));
        CHECK(r.header("X-Origin") == "0");
        Frame hello = readFrame(c);
        REQUIRE(hello.ok);
        CHECK(hello.opcode == 0x1);
        CHECK(hello.payload == "from-origin");

        echoes(c, 0x1, "hello");
        echoes(c, 0x2, std::string("\0\1\2\3binary\xff", 11));
        echoes(c, 0x1, std::string(1000, 'm'));
        std::string big;
        originPattern(0, big.assign(70000, '\0'));  // 64-bit length form
        echoes(c, 0x2, big);
        // Larger than every buffer on the way: back-pressure both ways, nothing lost.
        std::string huge;
        originPattern(7, huge.assign(3 << 20, '\0'));
        echoes(c, 0x2, huge);
        echoes(c, 0x1, "after the big one");

        // Several messages in one write come back in order.
        REQUIRE(
            c.send(clientFrame(0x1, "one") + clientFrame(0x1, "two") + clientFrame(0x1, "three")));
        CHECK(readFrame(c).payload == "one");
        CHECK(readFrame(c).payload == "two");
        CHECK(readFrame(c).payload == "three");

        REQUIRE(c.send(clientFrame(0x9, "ping!")));
        Frame pong = readFrame(c);
        CHECK(pong.opcode == 0xa);
        CHECK(pong.payload == "ping!");

        REQUIRE(c.send(clientFrame(0x8, std::string("\x03\xe8", 2))));
        Frame close = readFrame(c);
        CHECK(close.opcode == 0x8);
        CHECK(close.payload == std::string("\x03\xe8", 2));
        // The origin closes after its close frame; strata passes the end on.
        CHECK(c.isClosed(5000ms));
        CHECK(origin.requestCount(0, "/ws") == 1);
    }

    TEST_CASE("frames sent right behind the handshake are held until the 101, then delivered") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        RawClient c(strata.port());
        REQUIRE(c.send(handshake("/ws") + clientFrame(0x1, "early")));
        Response r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        REQUIRE(r.status == 101);
        Frame f = readFrame(c);
        REQUIRE(f.ok);
        CHECK(f.payload == "early");
        echoes(c, 0x1, "later");
    }

    TEST_CASE("a route with websocket: false refuses the upgrade with 403") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        RawClient c(strata.port());
        REQUIRE(c.send(handshake("/nows/ws")));
        Response r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 403);
        CHECK(origin.requestCount(0, "/nows/ws") == 0);
        // A refusal is an ordinary answer: the connection goes on as HTTP/1.1.
        REQUIRE(c.send("GET /nows/plain HTTP/1.1\r\nHost: ws.test\r\n\r\n"));
        Response next = c.readResponse();
        STRATA_REQUIRE_RESPONSE(next);
        CHECK(next.status == 200);
        CHECK(next.body.find("GET /nows/plain") != std::string::npos);
        // The other route still tunnels.
        RawClient ok(strata.port());
        upgrade(ok);
        echoes(ok, 0x1, "fine here");
    }

    TEST_CASE("an invalid handshake gets 400 and never reaches the origin") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        struct Case {
            const char* what;
            std::string request;
        };
        const std::vector<Case> cases = {
            {"no Sec-WebSocket-Key", handshake("/ws", "", /*key=*/"")},
            {"malformed Sec-WebSocket-Key", handshake("/ws", "", "not-base64-of-16-bytes")},
            {"no Sec-WebSocket-Version", handshake("/ws", "", kKey, /*version=*/"")},
            {"Sec-WebSocket-Version 8", handshake("/ws", "", kKey, "8")},
            {"POST",
             "POST /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: " +
                 kKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"},
            {"a body", handshake("/ws", "Content-Length: 5\r\n") + "hello"},
        };
        for (const auto& tc : cases) {
            CAPTURE(tc.what);
            RawClient c(strata.port());
            REQUIRE(c.send(tc.request));
            Response r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 400);
            // A broken handshake may be a smuggling attempt: the connection ends with it.
            CHECK(c.isClosed(5000ms));
        }
        CHECK(origin.requestCount(0, "/ws") == 0);
    }

    TEST_CASE("an upstream answer other than 101 is an ordinary response, no tunnel") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        RawClient c(strata.port());
        REQUIRE(c.send(handshake("/status/426")));
        Response r = c.readResponse();
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 426);
        REQUIRE(c.send("GET /headers HTTP/1.1\r\nHost: ws.test\r\n\r\n"));
        Response next = c.readResponse();
        STRATA_REQUIRE_RESPONSE(next);
        CHECK(next.status == 200);
        const std::string admin_text = scrape(strata.port("admin"));
        CHECK(metricIn(admin_text, "strata_tunnels_total",
                       {"route=\"main\"", "result=\"declined\""}) == 1);
        CHECK(metricIn(admin_text, "strata_tunnels_open") == 0);
    }

    TEST_CASE("timeouts.tunnel_idle ends a tunnel nothing moved through") {
        Origin origin;
        Strata strata(config(origin.serversYaml(), "500ms"));
        const auto admin = strata.port("admin");
        RawClient c(strata.port());
        upgrade(c);
        echoes(c, 0x1, "before idling");
        const auto idle_from = std::chrono::steady_clock::now();
        CHECK(c.isClosed(10000ms));
        // Not before the timeout (traffic rearmed it): at least the idle time passed.
        CHECK(std::chrono::steady_clock::now() - idle_from >= 300ms);
        CHECK(eventually([&] { return metric(admin, "strata_tunnels_open") == 0; }));
    }

    TEST_CASE("tunnel metrics: opened by route and result, open gauge, bytes each way") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        const auto admin = strata.port("admin");
        {
            RawClient a(strata.port());
            RawClient b(strata.port());
            upgrade(a);
            upgrade(b);
            echoes(a, 0x1, "0123456789");
            echoes(b, 0x1, "x");
            std::string text = scrape(admin);
            CHECK(metricIn(text, "strata_tunnels_total", {"route=\"main\"", "result=\"opened\""}) ==
                  2);
            CHECK(metricIn(text, "strata_tunnels_open") == 2);

            RawClient refused(strata.port());
            REQUIRE(refused.send(handshake("/nows/x")));
            CHECK(refused.readResponse().status == 403);
            RawClient invalid(strata.port());
            REQUIRE(invalid.send(handshake("/ws", "", "")));
            CHECK(invalid.readResponse().status == 400);

            // Ending `a` from the client side: its close frame, then the origin's, then EOF.
            REQUIRE(a.send(clientFrame(0x8, "")));
            CHECK(readFrame(a).opcode == 0x8);
            CHECK(a.isClosed(5000ms));
            // That EOF was passed on as a half-close: the tunnel lasts until the client's
            // direction ends too.
            CHECK(metric(admin, "strata_tunnels_open") == 2);
            a.shutdownWrite();
            CHECK(eventually([&] { return metric(admin, "strata_tunnels_open") == 1; }));
        }
        // `b` was closed by the client without a close frame.
        CHECK(eventually([&] { return metric(admin, "strata_tunnels_open") == 0; }));
        std::string text = scrape(admin);
        CHECK(metricIn(text, "strata_tunnels_total", {"route=\"nows\"", "result=\"refused\""}) ==
              1);
        CHECK(metricIn(text, "strata_tunnels_total", {"route=\"main\"", "result=\"invalid\""}) ==
              1);
        // Client frames carry a 4-byte mask and the origin's do not: 2+4+10, 2+4+1, 2+4 up;
        // 2+10, 2+1, 2 down.
        CHECK(metricIn(text, "strata_tunnel_bytes_total", {"direction=\"upstream\""}) == 29);
        CHECK(metricIn(text, "strata_tunnel_bytes_total", {"direction=\"downstream\""}) == 17);
    }

    TEST_CASE("the access log writes one line when the tunnel ends, with bytes each way") {
        Origin origin;
        std::string yaml = config(origin.serversYaml());
        yaml.replace(yaml.find("logging: {access_log: off}"), 26,
                     "logging: {access_log: \"${tmp}/access.log\"}");
        Strata strata(yaml);
        {
            RawClient c(strata.port());
            upgrade(c, "/ws?log=1");
            echoes(c, 0x1, "0123456789");
            REQUIRE(c.send(clientFrame(0x8, "")));
            CHECK(readFrame(c).opcode == 0x8);
            CHECK(c.isClosed(5000ms));
        }
        std::string line;
        REQUIRE(eventually([&] {
            const std::string log = readFile(strata.tmp() + "/access.log");
            const auto at = log.find("/ws?log=1");
            if (at == std::string::npos) {
                return false;
            }
            line = log.substr(log.rfind('\n', at) + 1);
            line = line.substr(0, line.find('\n'));
            return true;
        }));
        CAPTURE(line);
        CHECK(line.find("\"GET /ws?log=1 HTTP/1.1\" 101 ") != std::string::npos);
        // 2+4+10 and 2+4 up; 2+10 and 2 down (the 101 head is not counted).
        CHECK(line.find(" tunnel_up=22 tunnel_down=14") != std::string::npos);
    }

    TEST_CASE("a reload while a tunnel is open leaves it working") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        const auto admin = strata.port("admin");
        RawClient c(strata.port());
        upgrade(c);
        echoes(c, 0x1, "before reload");
        // The new config adds a route in front; the tunnel keeps the snapshot it started on.
        writeFile(strata.configPath(),
                  config(origin.serversYaml(), "",
                         "  - {name: extra, match: {path_prefix: /extra}, upstream: app}\n"));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) == 2;
        }));
        echoes(c, 0x1, "after reload");
        std::string big;
        originPattern(0, big.assign(200000, '\0'));
        echoes(c, 0x2, big);
        // New tunnels use the new snapshot.
        RawClient d(strata.port());
        upgrade(d, "/extra/ws");
        CHECK(eventually([&] {
            return metric(admin, "strata_tunnels_total",
                          {"route=\"extra\"", "result=\"opened\""}) == 1;
        }));
        CHECK(metric(admin, "strata_tunnels_open") == 2);
        echoes(c, 0x1, "still here");
    }
    TEST_CASE("over a TLS listener: 101, small and large messages echo both ways") {
        TempDir dir;
        Pki pki{dir.path().string()};
        pki.issue("ws", "ws.test", "DNS:ws.test");
        Origin origin;
        Strata strata(httpsConfig({pki.certificate("ws")}, origin.serversYaml()));
        TlsOptions o;
        o.sni = "ws.test";
        o.ca = pki.ca();
        TlsClient tls(strata.port("https"), o);
        REQUIRE(tls.connected());
        TlsBytes c(tls.ssl());
        REQUIRE(c.send(handshake("/ws")));
        Response r = tls.read();
        STRATA_REQUIRE_RESPONSE(r);
        REQUIRE(r.status == 101);
        CHECK(r.header("Sec-WebSocket-Accept") == kAccept);
        echoes(c, 0x1, "hello over TLS");
        std::string big;
        originPattern(3, big.assign(1 << 20, '\0'));
        echoes(c, 0x2, big);
        echoes(c, 0x1, "after the big one");
        REQUIRE(c.send(clientFrame(0x8, std::string("\x03\xe8", 2))));
        Frame close = readFrame(c);
        CHECK(close.opcode == 0x8);
    }

    TEST_CASE("a client that stops reading holds both directions back, memory bounded") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        RawClient c(strata.port());
        upgrade(c);
        echoes(c, 0x1, "warm");
        const std::uint64_t rss_before = residentBytes(strata.pid());

        // 96 messages of 1 MiB, echoed by the origin into a client that does not read: the
        // client's socket fills, strata stops reading the origin, the origin stops reading
        // strata, strata stops reading the client, and the client's writes stall.
        constexpr int kMessages = 96;
        std::string payload(1 << 20, '\0');
        originPattern(0, payload);
        std::string frames;
        for (int i = 0; i < kMessages; ++i) {
            frames += clientFrame(0x2, payload);
        }
        // Writes without blocking until nothing more is taken for 500 ms: the chain is full.
        std::size_t accepted = 0;
        std::uint64_t max_rss = 0;
        for (;;) {
            const ssize_t n = ::send(c.fd(), frames.data() + accepted, frames.size() - accepted,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                accepted += static_cast<std::size_t>(n);
                continue;
            }
            REQUIRE((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
            max_rss = std::max(max_rss, residentBytes(strata.pid()));
            pollfd pfd{c.fd(), POLLOUT, 0};
            if (::poll(&pfd, 1, 500) == 0) {
                break;
            }
        }
        max_rss = std::max(max_rss, residentBytes(strata.pid()));
        INFO("bytes taken before the writes stalled: " << accepted << " of " << frames.size());
        CHECK(accepted < frames.size() * 3 / 4);
        MESSAGE("strata VmRSS growth while the client did not read: "
                << ((max_rss - std::min(max_rss, rss_before)) >> 10) << " KiB, " << (accepted >> 10)
                << " KiB sent before the writes stalled");
        CHECK(max_rss - std::min(max_rss, rss_before) < rssBound(16ULL << 20));

        std::atomic<bool> sent_all{false};
        std::thread writer([&] { sent_all = c.send(std::string_view(frames).substr(accepted)); });
        // Reading again releases everything, in order and intact.
        bool all_intact = true;
        for (int i = 0; i < kMessages; ++i) {
            Frame f = readFrame(c);
            REQUIRE(f.ok);
            all_intact = all_intact && f.opcode == 0x2 && f.payload == payload;
        }
        writer.join();
        CHECK(sent_all.load());
        CHECK(all_intact);
        echoes(c, 0x1, "still going");
    }

    TEST_CASE("a drain lets a tunnel run until it ends, then strata exits 0") {
        Origin origin;
        Strata strata(config(origin.serversYaml()));
        const auto port = strata.port();
        RawClient c(port);
        upgrade(c);
        echoes(c, 0x1, "before SIGTERM");
        const auto signalled = Clock::now();
        strata.process().signal(SIGTERM);
        CHECK(eventually([&] { return connectRefused(port); }, 1500ms));
        // The tunnel is in flight: it keeps working through the drain.
        echoes(c, 0x1, "during the drain");
        std::string big;
        originPattern(0, big.assign(100000, '\0'));
        echoes(c, 0x2, big);
        CHECK(strata.process().running());
        REQUIRE(c.send(clientFrame(0x8, "")));
        CHECK(readFrame(c).opcode == 0x8);
        CHECK(c.isClosed(5000ms));
        c.shutdownWrite();  // the client's direction ends too: the tunnel is over
        // Its end is the last thing the drain waited for (drain_timeout is the default 30 s).
        auto code = strata.process().wait(10000ms);
        REQUIRE(code.has_value());
        CHECK(*code == 0);
        CHECK(Clock::now() - signalled < 10s);
    }

    TEST_CASE("a tunnel still open when limits.drain_timeout expires is ended, strata exits") {
        Origin origin;
        std::string yaml = config(origin.serversYaml());
        yaml += "limits: {drain_timeout: 1s}\n";
        Strata strata(yaml);
        RawClient c(strata.port());
        upgrade(c);
        echoes(c, 0x1, "open");
        const auto signalled = Clock::now();
        strata.process().signal(SIGTERM);
        echoes(c, 0x1, "still open while draining");
        CHECK(c.isClosed(10000ms));
        CHECK(Clock::now() - signalled >= 900ms);
        auto code = strata.process().wait(10000ms);
        REQUIRE(code.has_value());
        CHECK(*code == 0);
        CHECK(Clock::now() - signalled < 8s);
    }

    TEST_CASE("WebSocket over HTTP/2 (RFC 8441): extended CONNECT bridged to an HTTP/1.1 upgrade") {
        Origin origin;
        std::string yaml = config(origin.serversYaml());
        const std::string plain = "{name: http, bind: \"127.0.0.1:0\"}";
        yaml.replace(yaml.find(plain), plain.size(),
                     "{name: http, bind: \"127.0.0.1:0\", protocols: [h2, http/1.1]}");
        Strata strata(yaml);
        const auto admin = strata.port("admin");
        auto client = [&](const std::string& which) {
            std::string out = runCommand("/usr/bin/python3 " + std::string(STRATA_SOURCE_DIR) +
                                         "/tests/e2e/ws_h2_client.py " +
                                         std::to_string(strata.port()) + " " + which + " 2>&1");
            return out.substr(0, out.find_last_not_of("\r\n") + 1);
        };
        // SETTINGS_ENABLE_CONNECT_PROTOCOL, the origin's hello, text, 200 kB binary, ping,
        // close, and the stream ended both ways.
        CHECK(client("echo") == "ok");
        CHECK(origin.requestCount(0, "/ws") == 1);
        // The handshake checks of HTTP/1.1 apply; nothing else is tunnelled.
        CHECK(client("version") == "status 400");
        CHECK(client("refused") == "status 403");
        CHECK(client("other") == "status 501");
        CHECK(origin.requestCount(0, "/ws") == 1);
        CHECK(origin.requestCount(0, "/nows/ws") == 0);
        const std::string text = scrape(admin);
        CHECK(metricIn(text, "strata_tunnels_total", {"route=\"main\"", "result=\"opened\""}) == 1);
        CHECK(metricIn(text, "strata_tunnels_total", {"route=\"main\"", "result=\"invalid\""}) ==
              1);
        CHECK(metricIn(text, "strata_tunnels_total", {"route=\"nows\"", "result=\"refused\""}) ==
              1);
        CHECK(eventually([&] { return metric(admin, "strata_tunnels_open") == 0; }));
        CHECK(metric(admin, "strata_tunnel_bytes_total", {"direction=\"upstream\""}) > 200000);
        CHECK(metric(admin, "strata_tunnel_bytes_total", {"direction=\"downstream\""}) > 200000);
    }
}
