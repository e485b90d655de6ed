// PROXY protocol (v1 and v2): received on listeners with proxy_protocol (plain and TLS, the header
// before the ClientHello), its client address in the access log and in the X-Forwarded-For the
// origin gets; untrusted peers and bad, truncated, oversized or slow headers closed without an
// answer and counted (strata_proxy_protocol_total); LOCAL keeps the peer's address. Sent on
// upstreams with proxy_protocol to an origin that insists on it (strata-origin --expect-proxy),
// per client connection, health checks as LOCAL, and before TLS to another strata that reads it.
// HTTP/2 (h2c and ALPN h2) behind a header, trusted_proxies (the real client from
// X-Forwarded-For), --check errors, and a reload turning proxy_protocol on.
#include <string>
#include <vector>

#include "admin_client.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

std::string bytes(std::initializer_list<int> list) {
    std::string out;
    for (int b : list) {
        out += static_cast<char>(b);
    }
    return out;
}

const std::string kV2Signature =
    bytes({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a});

// v2 PROXY TCP over IPv4: 203.0.113.9:4242 -> 198.51.100.1:443.
const std::string kV2Inet = kV2Signature + bytes({0x21, 0x11, 0x00, 0x0c}) +
                            bytes({203, 0, 113, 9, 198, 51, 100, 1, 0x10, 0x92, 0x01, 0xbb});
// v2 PROXY TCP over IPv6 2001:db8::7 -> 2001:db8::1, with an ALPN TLV behind the addresses.
const std::string kV2Inet6 = kV2Signature + bytes({0x21, 0x21, 0x00, 0x29}) +
                             bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}) +
                             bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) +
                             bytes({0x04, 0xd2, 0x00, 0x50}) + bytes({0x01, 0x00, 0x02, 'h', '2'});
const std::string kV2Local = kV2Signature + bytes({0x20, 0x00, 0x00, 0x00});
const std::string kV1 = "PROXY TCP4 192.0.2.10 198.51.100.1 51000 80\r\n";

const std::string kGetHeaders = "GET /headers HTTP/1.1\r\nHost: pp.test\r\n\r\n";

// Listener `lb` reads PROXY headers from loopback, `far` only from 10.0.0.0/8 (so not from the
// test), `plain` reads none. The origin echoes request fields (/headers).
std::string receiverConfig(const Origin& origin, const std::string& tls = "") {
    return "listeners:\n"
           "  - {name: lb, bind: \"127.0.0.1:0\", proxy_protocol: true,\n"
           "     trusted_sources: [127.0.0.0/8, \"::1\"]" +
           tls +
           "}\n"
           "  - {name: far, bind: \"127.0.0.1:0\", proxy_protocol: true,\n"
           "     trusted_sources: [10.0.0.0/8]}\n"
           "  - {name: plain, bind: \"127.0.0.1:0\"}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams: {app: {servers: " +
           origin.serversYaml() +
           "}}\n"
           "routes: [{match: {path_prefix: /}, upstream: app}]\n"
           "limits: {client_header_timeout: 500ms}\n"
           "logging: {access_log: \"${tmp}/access.log\"}\n";
}

double proxyResult(std::uint16_t admin, const std::string& result) {
    return metric(admin, "strata_proxy_protocol_total", {"result=\"" + result + "\""});
}

// One request after `preamble` on a fresh connection; the origin's view of it.
Response viaHeader(std::uint16_t port, const std::string& preamble,
                   const std::string& request = kGetHeaders) {
    RawClient client(port);
    REQUIRE(client.send(preamble + request));
    return client.readResponse();
}

// True once the access log holds a line starting with `client ` (written within a second).
bool loggedClient(const Strata& strata, const std::string& client) {
    return eventually([&] {
        const std::string log = readFile(strata.tmp() + "/access.log");
        return log.rfind(client + " ", 0) == 0 ||
               log.find("\n" + client + " ") != std::string::npos;
    });
}

// The connection is closed with nothing written back.
void requireRefused(RawClient& client) {
    const std::string answer = client.readAvailable(std::chrono::milliseconds(3000));
    CHECK(answer.empty());
    CHECK(client.isClosed(std::chrono::milliseconds(3000)));
}

// GET /headers over HTTP/2 after `header` (tests/e2e/p0001_h2.py): the X-Forwarded-For the
// origin received, or "error ...".
std::string h2XffAfter(std::uint16_t port, const std::string& header, bool tls) {
    static const char* kHex = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : header) {
        hex += kHex[c >> 4];
        hex += kHex[c & 15];
    }
    const std::string out = runCommand("/usr/bin/python3 " + std::string(STRATA_SOURCE_DIR) +
                                       "/tests/e2e/p0001_h2.py " + std::to_string(port) + " " +
                                       hex + (tls ? " tls" : " plain"));
    return out.substr(0, out.find('\n'));
}

}  // namespace

TEST_SUITE("e2e/proxy-protocol") {
    TEST_CASE("v1 and v2 headers on a plain listener: the header's client is the client") {
        Origin origin;
        Strata strata(receiverConfig(origin));
        const auto port = strata.port("lb");
        const auto admin = strata.port("admin");

        Response v1 = viaHeader(port, kV1);
        STRATA_REQUIRE_RESPONSE(v1);
        CHECK(v1.status == 200);
        CHECK(EchoedHead(v1.body).value("X-Forwarded-For") == "192.0.2.10");

        Response v2 = viaHeader(port, kV2Inet);
        STRATA_REQUIRE_RESPONSE(v2);
        CHECK(EchoedHead(v2.body).value("X-Forwarded-For") == "203.0.113.9");

        Response v2_inet6 = viaHeader(port, kV2Inet6);
        STRATA_REQUIRE_RESPONSE(v2_inet6);
        CHECK(EchoedHead(v2_inet6.body).value("X-Forwarded-For") == "2001:db8::7");

        // A client X-Forwarded-For is kept and the header's client appended to it.
        Response appended = viaHeader(port, kV1,
                                      "GET /headers HTTP/1.1\r\nHost: pp.test\r\n"
                                      "X-Forwarded-For: 10.9.9.9\r\n\r\n");
        STRATA_REQUIRE_RESPONSE(appended);
        CHECK(EchoedHead(appended.body).value("X-Forwarded-For") == "10.9.9.9, 192.0.2.10");

        // The header counts for the whole connection: keep-alive requests carry it too, and a
        // header split over several writes is read whole.
        RawClient split(port);
        REQUIRE(split.send(kV2Inet.substr(0, 7)));
        REQUIRE(split.send(kV2Inet.substr(7)));
        for (int i = 0; i < 2; ++i) {
            REQUIRE(split.send(kGetHeaders));
            Response r = split.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(EchoedHead(r.body).value("X-Forwarded-For") == "203.0.113.9");
        }

        CHECK(loggedClient(strata, "192.0.2.10"));
        CHECK(loggedClient(strata, "203.0.113.9"));
        CHECK(loggedClient(strata, "2001:db8::7"));
        CHECK(proxyResult(admin, "ok") == 5);
        CHECK(proxyResult(admin, "malformed") == 0);
    }

    TEST_CASE("v2 LOCAL and v1 UNKNOWN keep the peer's own address") {
        Origin origin;
        Strata strata(receiverConfig(origin));
        Response local = viaHeader(strata.port("lb"), kV2Local);
        STRATA_REQUIRE_RESPONSE(local);
        CHECK(local.status == 200);
        CHECK(EchoedHead(local.body).value("X-Forwarded-For") == "127.0.0.1");
        Response unknown = viaHeader(strata.port("lb"), "PROXY UNKNOWN\r\n");
        STRATA_REQUIRE_RESPONSE(unknown);
        CHECK(EchoedHead(unknown.body).value("X-Forwarded-For") == "127.0.0.1");
        CHECK(proxyResult(strata.port("admin"), "local") == 2);
        CHECK(proxyResult(strata.port("admin"), "ok") == 0);
    }

    TEST_CASE("a peer outside trusted_sources is closed at once, header or not") {
        Origin origin;
        Strata strata(receiverConfig(origin));
        RawClient with_header(strata.port("far"));
        with_header.send(kV1 + kGetHeaders);
        requireRefused(with_header);
        RawClient without(strata.port("far"));
        without.send(kGetHeaders);
        requireRefused(without);
        CHECK(proxyResult(strata.port("admin"), "untrusted") == 2);
        CHECK(origin.totalCount("/headers") == 0);
        // The listener without proxy_protocol is untouched: a header there is no request.
        CHECK(get(strata.port("plain"), "/headers").status == 200);
    }

    TEST_CASE("malformed, truncated, oversized and slow headers close the connection, counted") {
        Origin origin;
        Strata strata(receiverConfig(origin));
        const auto port = strata.port("lb");
        const auto admin = strata.port("admin");
        const std::vector<std::string> malformed{
            kGetHeaders,                                        // no header at all
            "PROXY TCP4 192.0.2.10 198.51.100.1 65536 80\r\n",  // port out of range
            "PROXY TCP4 2001:db8::1 198.51.100.1 1 80\r\n",     // address not of the family
            "PROXY TCP4 192.0.2.10 198.51.100.1 1 80\n",        // bare LF
            "PROXY UNKNOWN " + std::string(120, 'x') + "\r\n",  // longer than 107 bytes
            kV2Signature.substr(0, 11) + "X" + bytes({0x21, 0x11, 0x00, 0x0c}) +
                std::string(12, '\0'),  // bad signature
            kV2Signature + bytes({0x21, 0x51, 0x00, 0x0c}) + std::string(12, '\0'),  // family 5
            kV2Signature + bytes({0x21, 0x21, 0x00, 0x0c}) + std::string(12, '\0'),  // short v6
            kV2Signature + bytes({0x21, 0x11, 0xff, 0xff}) + std::string(64, '\0'),  // oversized
            kV2Signature + bytes({0x21, 0x11, 0x00, 0x10}) + kV2Inet.substr(16, 12) +
                bytes({0x01, 0x00, 0x09, 'x'}),  // a TLV running past the header
        };
        for (std::size_t i = 0; i < malformed.size(); ++i) {
            CAPTURE(i);
            RawClient client(port);
            client.send(malformed[i] + kGetHeaders);
            requireRefused(client);
        }
        // Truncated: the peer ends its side inside the header.
        RawClient truncated(port);
        REQUIRE(truncated.send(kV2Inet.substr(0, 20)));
        truncated.shutdownWrite();
        requireRefused(truncated);
        CHECK(eventually([&] {
            return proxyResult(admin, "malformed") == static_cast<double>(malformed.size() + 1);
        }));

        // Slow: part of a header, then nothing; closed after client_header_timeout (500ms).
        RawClient slow(port);
        REQUIRE(slow.send(kV1.substr(0, 20)));
        CHECK(slow.isClosed(std::chrono::milliseconds(5000)));
        RawClient silent(port);
        CHECK(silent.isClosed(std::chrono::milliseconds(5000)));
        CHECK(eventually([&] { return proxyResult(admin, "timeout") == 2; }));
        CHECK(origin.totalCount("/headers") == 0);
        CHECK(proxyResult(admin, "ok") == 0);
    }

    TEST_CASE("TLS listener: the header comes before the ClientHello") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("a", "a.test", "DNS:a.test");
        Origin origin;
        Strata strata(
            receiverConfig(origin, ",\n     tls: {certificates: [" + pki.certificate("a") + "]}"));
        const auto port = strata.port("lb");
        const auto admin = strata.port("admin");
        TlsOptions o;
        o.sni = "a.test";
        o.ca = pki.ca();
        for (const std::string* header : {&kV1, &kV2Inet}) {
            o.preamble = *header;
            TlsClient client(port, o);
            INFO(client.error);
            REQUIRE(client.connected());
            Response r = client.get("/headers");
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
            CHECK(EchoedHead(r.body).value("X-Forwarded-For") ==
                  (header == &kV1 ? "192.0.2.10" : "203.0.113.9"));
            CHECK(EchoedHead(r.body).value("X-Forwarded-Proto") == "https");
        }
        CHECK(loggedClient(strata, "192.0.2.10"));
        CHECK(loggedClient(strata, "203.0.113.9"));
        CHECK(proxyResult(admin, "ok") == 2);

        // A TLS client without a header: its ClientHello is a malformed header.
        o.preamble.clear();
        TlsClient bare(port, o);
        CHECK_FALSE(bare.connected());
        CHECK(eventually([&] { return proxyResult(admin, "malformed") == 1; }));
    }

    TEST_CASE("upstream proxy_protocol v2 and v1: the origin reads the client on each connection") {
        Origin origin(1, {"--expect-proxy"});
        Strata strata(
            "listeners:\n"
            "  - {name: lb, bind: \"127.0.0.1:0\", proxy_protocol: true,\n"
            "     trusted_sources: [127.0.0.1]}\n"
            "  - {name: plain, bind: \"127.0.0.1:0\"}\n"
            "admin: {bind: \"127.0.0.1:0\"}\n"
            "upstreams:\n"
            "  two: {servers: " +
            origin.serversYaml() +
            ", proxy_protocol: v2,\n"
            "        health_check: {path: /, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}}\n"
            "  one: {servers: " +
            origin.serversYaml() +
            ", proxy_protocol: v1}\n"
            "routes:\n"
            "  - {match: {path_prefix: /v1/}, upstream: one}\n"
            "  - {match: {path_prefix: /}, upstream: two}\n"
            "logging: {access_log: off}\n");
        const auto admin = strata.port("admin");

        // The header received from the client is what the origin is told: source and
        // destination both.
        Response v2 = viaHeader(strata.port("lb"), kV1);
        STRATA_REQUIRE_RESPONSE(v2);
        CHECK(v2.status == 200);
        CHECK(v2.header("X-Proxy-Protocol") == "v2 192.0.2.10:51000 198.51.100.1:80");
        Response v1 = viaHeader(strata.port("lb"), kV2Inet6,
                                "GET /v1/headers HTTP/1.1\r\nHost: pp.test\r\n\r\n");
        STRATA_REQUIRE_RESPONSE(v1);
        CHECK(v1.header("X-Proxy-Protocol") == "v1 [2001:db8::7]:1234 [2001:db8::1]:80");

        // Without an incoming header: the client's socket address and the listener's.
        RawClient a(strata.port("plain"));
        const std::string listener = "127.0.0.1:" + std::to_string(strata.port("plain"));
        REQUIRE(a.send(kGetHeaders));
        Response a1 = a.readResponse();
        STRATA_REQUIRE_RESPONSE(a1);
        const std::string a_header = a1.header("X-Proxy-Protocol");
        CHECK(a_header.rfind("v2 127.0.0.1:", 0) == 0);
        CHECK(a_header.substr(a_header.size() - listener.size()) == listener);
        // Another client's request never rides a connection opened for the first: its own
        // header reaches the origin (the first client's connection is idle in the pool now).
        RawClient b(strata.port("plain"));
        REQUIRE(b.send(kGetHeaders));
        Response b1 = b.readResponse();
        STRATA_REQUIRE_RESPONSE(b1);
        CHECK(b1.header("X-Proxy-Protocol").rfind("v2 127.0.0.1:", 0) == 0);
        CHECK(b1.header("X-Proxy-Protocol") != a_header);
        // The first client's next request is still described by its own header.
        REQUIRE(a.send(kGetHeaders));
        Response a2 = a.readResponse();
        STRATA_REQUIRE_RESPONSE(a2);
        CHECK(a2.header("X-Proxy-Protocol") == a_header);

        // Health probes open with LOCAL, which an origin expecting headers accepts.
        const std::vector<std::string> passes{
            "upstream=\"two\"", "server=\"" + origin.addr() + "\"", "result=\"pass\""};
        const std::vector<std::string> fails{"upstream=\"two\"", "server=\"" + origin.addr() + "\"",
                                             "result=\"fail\""};
        CHECK(eventually(
            [&] { return metric(admin, "strata_upstream_health_checks_total", passes) >= 3; }));
        CHECK(metric(admin, "strata_upstream_health_checks_total", fails) == 0);
    }

    TEST_CASE("sent before TLS: a second strata reads the header on its TLS listener") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("edge", "edge.test", "DNS:edge.test");
        Origin origin;
        Strata inner(receiverConfig(
            origin, ",\n     tls: {certificates: [" + pki.certificate("edge") + "]}"));
        Strata outer(
            "listeners:\n"
            "  - {name: lb, bind: \"127.0.0.1:0\", proxy_protocol: true,\n"
            "     trusted_sources: [127.0.0.1]}\n"
            "upstreams:\n"
            "  inner: {servers: [\"127.0.0.1:" +
            std::to_string(inner.port("lb")) +
            "\"], proxy_protocol: v2,\n"
            "          tls: {ca_file: " +
            pki.ca() +
            ", sni: edge.test}}\n"
            "routes: [{match: {path_prefix: /}, upstream: inner}]\n"
            "logging: {access_log: off}\n");
        Response r = viaHeader(outer.port("lb"), kV1);
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        // The outer strata appended the client; the inner one read the same client from the
        // header, so it appended it again rather than the outer strata's own address.
        CHECK(EchoedHead(r.body).value("X-Forwarded-For") == "192.0.2.10, 192.0.2.10");
        CHECK(loggedClient(inner, "192.0.2.10"));
        CHECK(proxyResult(inner.port("admin"), "ok") == 1);
    }

    TEST_CASE("trusted_proxies: behind trusted hops the client is the right-most untrusted entry") {
        Origin origin(1, {"--expect-proxy"});
        Strata strata(
            "listeners:\n"
            "  - {name: lb, bind: \"127.0.0.1:0\", proxy_protocol: true,\n"
            "     trusted_sources: [127.0.0.1], trusted_proxies: [192.0.2.0/24, 10.0.0.0/8]}\n"
            "admin: {bind: \"127.0.0.1:0\"}\n"
            "upstreams: {app: {servers: " +
            origin.serversYaml() +
            ", proxy_protocol: v2}}\n"
            "routes: [{match: {path_prefix: /}, upstream: app}]\n"
            "logging: {access_log: \"${tmp}/access.log\"}\n");
        const auto port = strata.port("lb");
        // 192.0.2.10 (the PROXY header's client) is a trusted proxy, and so is 10.1.1.1.
        Response trusted =
            viaHeader(port, kV1,
                      "GET /headers HTTP/1.1\r\nHost: pp.test\r\n"
                      "X-Forwarded-For: 203.0.113.250, 198.51.100.77, 10.1.1.1\r\n\r\n");
        STRATA_REQUIRE_RESPONSE(trusted);
        CHECK(trusted.status == 200);
        // Upstream the list grows by the peer as always; the PROXY header names the real client.
        CHECK(EchoedHead(trusted.body).value("X-Forwarded-For") ==
              "203.0.113.250, 198.51.100.77, 10.1.1.1, 192.0.2.10");
        CHECK(trusted.header("X-Proxy-Protocol") == "v2 198.51.100.77:0 198.51.100.1:80");
        CHECK(loggedClient(strata, "198.51.100.77"));

        // 203.0.113.9 is no trusted proxy: what it claims is passed on, never believed.
        Response untrusted = viaHeader(port, kV2Inet,
                                       "GET /headers HTTP/1.1\r\nHost: pp.test\r\n"
                                       "X-Forwarded-For: 198.51.100.78\r\n\r\n");
        STRATA_REQUIRE_RESPONSE(untrusted);
        CHECK(EchoedHead(untrusted.body).value("X-Forwarded-For") == "198.51.100.78, 203.0.113.9");
        CHECK(untrusted.header("X-Proxy-Protocol") == "v2 203.0.113.9:4242 198.51.100.1:443");
        CHECK(loggedClient(strata, "203.0.113.9"));
        CHECK(readFile(strata.tmp() + "/access.log").find("198.51.100.78 ") == std::string::npos);
    }

    TEST_CASE("HTTP/2 behind the header: h2c prior knowledge and ALPN h2") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("a", "a.test", "DNS:a.test");
        Origin origin;
        Strata strata(
            "listeners:\n"
            "  - {name: h2c, bind: \"127.0.0.1:0\", proxy_protocol: true, protocols: [h2, "
            "http/1.1],\n"
            "     trusted_sources: [127.0.0.1]}\n"
            "  - {name: h2, bind: \"127.0.0.1:0\", proxy_protocol: true,\n"
            "     trusted_sources: [127.0.0.1], tls: {certificates: [" +
            pki.certificate("a") +
            "]}}\n"
            "admin: {bind: \"127.0.0.1:0\"}\n"
            "upstreams: {app: {servers: " +
            origin.serversYaml() +
            "}}\n"
            "routes: [{match: {path_prefix: /}, upstream: app}]\n"
            "logging: {access_log: off}\n");
        CHECK(h2XffAfter(strata.port("h2c"), kV1, false) == "192.0.2.10");
        CHECK(h2XffAfter(strata.port("h2c"), kV2Inet6, false) == "2001:db8::7");
        CHECK(h2XffAfter(strata.port("h2"), kV2Inet, true) == "203.0.113.9");
        CHECK(metric(strata.port("admin"), "strata_http2_events_total", {"event=\"connection\""}) ==
              3);
        CHECK(proxyResult(strata.port("admin"), "ok") == 3);
    }

    TEST_CASE("--check: proxy_protocol without trusted_sources, bad blocks and versions") {
        CheckResult r = Strata::check(
            "listeners:\n"
            "  - {name: lb, bind: \"127.0.0.1:0\", proxy_protocol: true}\n"
            "  - {name: lb2, bind: \"127.0.0.1:0\", proxy_protocol: true, trusted_sources: "
            "[10.0.0.0/40]}\n"
            "upstreams: {app: {servers: [\"127.0.0.1:8000\"], proxy_protocol: v3}}\n"
            "routes: [{match: {path_prefix: /}, upstream: app}]\n");
        CAPTURE(r.output);
        CHECK(r.exit_code == 78);
        CHECK(r.output.find(":2:53: listeners[0].proxy_protocol: proxy_protocol needs "
                            "trusted_sources") != std::string::npos);
        CHECK(r.output.find("listeners[1].trusted_sources[0]: \"10.0.0.0/40\": prefix length "
                            "must be 0..32") != std::string::npos);
        CHECK(r.output.find("upstreams.app.proxy_protocol") != std::string::npos);
    }

    TEST_CASE("a reload turns proxy_protocol on for the next connections of a listener") {
        Origin origin;
        auto config = [&](const std::string& listener_extra) {
            return "listeners: [{name: http, bind: \"127.0.0.1:0\"" + listener_extra +
                   "}]\n"
                   "admin: {bind: \"127.0.0.1:0\"}\n"
                   "upstreams: {app: {servers: " +
                   origin.serversYaml() +
                   "}}\n"
                   "routes: [{match: {path_prefix: /}, upstream: app}]\n"
                   "logging: {access_log: off}\n";
        };
        Strata strata(config(""));
        const auto admin = strata.port("admin");
        RawClient before(strata.port());  // opened before the reload: stays plain HTTP
        REQUIRE(before.send(kGetHeaders));
        STRATA_REQUIRE_RESPONSE(before.readResponse());
        writeFile(strata.configPath(),
                  config(", proxy_protocol: true, trusted_sources: [127.0.0.1]"));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(admin, "/status").body.find("\"version\":2,") != std::string::npos;
        }));
        REQUIRE(eventually([&] {
            RawClient probe(strata.port());
            probe.send(kGetHeaders);
            return probe.isClosed(std::chrono::milliseconds(2000)) &&
                   proxyResult(admin, "malformed") >= 1;
        }));
        Response r = viaHeader(strata.port(), kV1);
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(EchoedHead(r.body).value("X-Forwarded-For") == "192.0.2.10");
        REQUIRE(before.send(kGetHeaders));
        Response again = before.readResponse();
        STRATA_REQUIRE_RESPONSE(again);
        CHECK(EchoedHead(again.body).value("X-Forwarded-For") == "127.0.0.1");
    }
}
