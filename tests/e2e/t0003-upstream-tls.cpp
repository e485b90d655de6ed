// TLS to upstreams. The TLS origin is a second strata terminating TLS in front of a plain
// origin. Verification on (the default) with the right CA and name works and reuses pooled
// connections; a certificate the CA did not sign, or one naming another host, is a 502 with a
// log line naming the upstream and the verify error, never a plain-text fallback.
#include "admin_client.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

struct TlsOrigin {
    TempDir dir;
    Pki pki{dir.path().string()};
    Origin origin;
    std::unique_ptr<Strata> front;
    TlsOrigin() {
        pki.issue("backend", "backend.test", "DNS:backend.test,IP:127.0.0.1");
        front = std::make_unique<Strata>(
            "listeners:\n"
            "  - name: https\n"
            "    bind: \"127.0.0.1:0\"\n"
            "    tls:\n"
            "      certificates: [{cert: " +
            pki.path("backend.pem") + ", key: " + pki.path("backend.key") +
            "}]\n"
            "upstreams: {app: {servers: " +
            origin.serversYaml() +
            "}}\n"
            "routes: [{match: {path_prefix: /}, upstream: app}]\n");
    }
    std::string addr() const { return "127.0.0.1:" + std::to_string(front->port("https")); }
};

std::string proxyTo(const std::string& addr, const std::string& tls) {
    return "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
           "upstreams:\n"
           "  secure:\n"
           "    servers: [\"" +
           addr +
           "\"]\n"
           "    max_tries: 1\n"
           "    tls: " +
           tls +
           "\n"
           "routes: [{match: {path_prefix: /}, upstream: secure}]\n";
}

// An upstream over TLS with active checks, and the admin listener to watch them.
std::string checkedProxyTo(const std::string& addr, const std::string& tls) {
    return "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  secure:\n"
           "    servers: [\"" +
           addr +
           "\"]\n"
           "    tls: " +
           tls +
           "\n"
           "    health_check: {path: /, interval: 100ms, timeout: 80ms, rise: 1, fall: 2}\n"
           "routes: [{match: {path_prefix: /}, upstream: secure}]\n";
}

}  // namespace

TEST_SUITE("e2e/tls") {
    TEST_CASE("health checks probe a TLS upstream over TLS, with its verification") {
        TlsOrigin backend;
        const std::string server = "server=\"" + backend.addr() + "\"";
        SUBCASE("a verified server passes its checks") {
            Strata strata(checkedProxyTo(backend.addr(),
                                         "{ca_file: " + backend.pki.ca() + ", sni: backend.test}"));
            const auto admin = strata.port("admin");
            REQUIRE(eventually([&] {
                return metric(admin, "strata_upstream_health_checks_total",
                              {server, "result=\"pass\""}) >= 3;
            }));
            CHECK(metric(admin, "strata_upstream_health_checks_total",
                         {server, "result=\"fail\""}) == 0);
            CHECK(metric(admin, "strata_upstream_server_healthy", {server}) == 1);
            CHECK(get(strata.port(), "/").status == 200);
        }
        SUBCASE("a certificate that does not verify fails them") {
            backend.pki.otherCa("rogue");
            Strata strata(checkedProxyTo(
                backend.addr(),
                "{ca_file: " + backend.pki.path("rogue.pem") + ", sni: backend.test}"));
            const auto admin = strata.port("admin");
            REQUIRE(eventually(
                [&] { return metric(admin, "strata_upstream_server_healthy", {server}) == 0; }));
            CHECK(metric(admin, "strata_upstream_health_checks_total",
                         {server, "result=\"pass\""}) == 0);
            const std::string log = strata.process().stderrText();
            CAPTURE(log);
            CHECK(log.find("server " + backend.addr() +
                           " is down (2 checks failed; last: certificate verify failed") !=
                  std::string::npos);
        }
    }

    TEST_CASE("upstream TLS with verification by name and by IP; connections are reused") {
        TlsOrigin backend;
        Strata by_name(
            proxyTo(backend.addr(), "{ca_file: " + backend.pki.ca() + ", sni: backend.test}"));
        for (int i = 0; i < 5; ++i) {
            Response r = get(by_name.port(), "/headers");
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
            EchoedHead seen(r.body);
            // The backend strata saw TLS from the front strata.
            CHECK(seen.value("X-Forwarded-Proto") == "https");
        }
        // Keep-alive: one connection (per worker) carried the five requests.
        RawClient c(by_name.port());
        for (int i = 0; i < 3; ++i) {
            c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            Response r = c.readResponse();
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
        }

        Strata by_ip(proxyTo(backend.addr(), "{ca_file: " + backend.pki.ca() + "}"));
        CHECK(get(by_ip.port(), "/").status == 200);
    }

    TEST_CASE("a certificate that fails verification is a 502 with a clear log line") {
        TlsOrigin backend;
        backend.pki.otherCa("rogue");
        SUBCASE("untrusted CA") {
            Strata strata(proxyTo(backend.addr(), "{ca_file: " + backend.pki.path("rogue.pem") +
                                                      ", sni: backend.test}"));
            Response r = get(strata.port(), "/");
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 502);
            const std::string log = strata.process().stderrText();
            CAPTURE(log);
            CHECK(log.find("upstream secure: TLS handshake with " + backend.addr() +
                           " failed: certificate verify failed") != std::string::npos);
        }
        SUBCASE("wrong name") {
            Strata strata(
                proxyTo(backend.addr(), "{ca_file: " + backend.pki.ca() + ", sni: other.test}"));
            Response r = get(strata.port(), "/");
            CHECK(r.status == 502);
            CHECK(strata.process().stderrText().find("hostname mismatch") != std::string::npos);
        }
        SUBCASE("verify: false accepts it") {
            Strata strata(proxyTo(backend.addr(), "{verify: false}"));
            CHECK(get(strata.port(), "/").status == 200);
        }
    }

    TEST_CASE("a plain-text upstream behind a tls block fails, never downgrades") {
        Origin plain;
        TempDir dir;
        Pki pki(dir.path().string());
        Strata strata(proxyTo(plain.addr(), "{ca_file: " + pki.ca() + "}"));
        CHECK(get(strata.port(), "/").status == 502);
        CHECK(plain.totalCount("/") == 0);
    }
}
