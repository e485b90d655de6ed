// TLS termination: certificates picked by SNI (exact, wildcard, default), RSA and ECDSA side by
// side, TLS 1.2/1.3 only, ALPN http/1.1 (h2: h0001), resumption by ticket and by session cache,
// mTLS with the verified subject forwarded, X-Forwarded-Proto, TLS version and cipher in the access
// log, the handshake timeout and the handshake cap (counted, and holding across a reload).
#include <memory>
#include <vector>

#include "admin_client.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

// Certificates: a.test (+www.a.test) ECDSA and RSA, *.b.test ECDSA, a client certificate.
struct Site {
    TempDir dir;
    Pki pki{dir.path().string()};
    Origin origin;
    Site() {
        pki.issue("a", "a.test", "DNS:a.test,DNS:www.a.test");
        pki.issue("a-rsa", "a.test", "DNS:a.test,DNS:www.a.test", "rsa");
        pki.issue("b", "wild.b.test", "DNS:*.b.test");
        pki.issue("client", "alice", "", "ec");
    }
    std::string config(const std::string& tls_extra = "", const std::string& rest = "") const {
        return httpsConfig({pki.certificate("a"), pki.certificate("a-rsa"), pki.certificate("b")},
                           origin.serversYaml(), tls_extra, rest);
    }
};

TlsOptions opts(const std::string& sni, const Site& site) {
    TlsOptions o;
    o.sni = sni;
    o.ca = site.pki.ca();
    return o;
}

}  // namespace

TEST_SUITE("e2e/tls") {
    TEST_CASE("SNI picks each certificate, wildcards match one label, unknown gets the default") {
        Site site;
        Strata strata(site.config());
        const auto port = strata.port("https");
        struct Case {
            std::string sni;
            std::string cn;
        };
        for (const Case& c : {Case{"a.test", "a.test"}, Case{"www.a.test", "a.test"},
                              Case{"x.b.test", "wild.b.test"}, Case{"WWW.B.TEST", "wild.b.test"},
                              Case{"b.test", "a.test"}, Case{"deep.x.b.test", "a.test"},
                              Case{"unknown.test", "a.test"}, Case{"", "a.test"}}) {
            CAPTURE(c.sni);
            TlsOptions o = opts(c.sni, site);
            o.ca.clear();  // the default certificate does not name every SNI asked for
            TlsClient client(port, o);
            REQUIRE(client.connected());
            CHECK(client.peerName() == c.cn);
            Response r = client.get("/");
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
        }
    }

    TEST_CASE("RSA and ECDSA certificates for the same names: the client's algorithms pick") {
        Site site;
        Strata strata(site.config());
        TlsOptions ec = opts("a.test", site);
        ec.sigalgs = "ECDSA+SHA256";
        TlsClient a(strata.port("https"), ec);
        REQUIRE(a.connected());
        CHECK(a.peerKeyType() == EVP_PKEY_EC);
        TlsOptions rsa = opts("a.test", site);
        rsa.sigalgs = "rsa_pss_rsae_sha256:RSA+SHA256";
        TlsClient b(strata.port("https"), rsa);
        REQUIRE(b.connected());
        CHECK(b.peerKeyType() == EVP_PKEY_RSA);
        rsa.max_version = TLS1_2_VERSION;
        TlsClient c(strata.port("https"), rsa);
        REQUIRE(c.connected());
        CHECK(c.peerKeyType() == EVP_PKEY_RSA);
    }

    TEST_CASE("TLS 1.3 and 1.2 are accepted, 1.1 is refused; min_version 1.3 refuses 1.2") {
        Site site;
        Strata strata(site.config() + "admin: {bind: \"127.0.0.1:0\"}\n");
        TlsOptions v13 = opts("a.test", site);
        v13.min_version = TLS1_3_VERSION;
        TlsClient a(strata.port("https"), v13);
        REQUIRE(a.connected());
        CHECK(a.version() == "TLSv1.3");
        CHECK(a.get("/").status == 200);

        TlsOptions v12 = opts("a.test", site);
        v12.max_version = TLS1_2_VERSION;
        TlsClient b(strata.port("https"), v12);
        REQUIRE(b.connected());
        CHECK(b.version() == "TLSv1.2");
        CHECK(b.get("/").status == 200);

        TlsOptions v11 = opts("a.test", site);
        v11.min_version = TLS1_1_VERSION;
        v11.max_version = TLS1_1_VERSION;
        TlsClient c(strata.port("https"), v11);
        CHECK_FALSE(c.connected());
        // Handshakes are counted by result and version (the refused 1.1 one as failed).
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_tls_handshakes_total", {"result=\"ok\"", "version=\"1.3\""}) ==
              1);
        CHECK(metric(admin, "strata_tls_handshakes_total", {"result=\"ok\"", "version=\"1.2\""}) ==
              1);
        CHECK(eventually([&] {
            return metric(admin, "strata_tls_handshakes_total", {"result=\"failed\""}) >= 1;
        }));

        Strata strict(site.config("      min_version: \"1.3\"\n"));
        TlsClient d(strict.port("https"), v12);
        CHECK_FALSE(d.connected());
    }

    TEST_CASE("ALPN selects http/1.1 and ignores protocols strata does not speak") {
        Site site;
        Strata strata(site.config());
        TlsClient a(strata.port("https"), opts("a.test", site));
        REQUIRE(a.connected());
        CHECK(a.alpn() == "http/1.1");
        TlsOptions spdy = opts("a.test", site);
        spdy.alpn = "spdy/3.1";
        TlsClient b(strata.port("https"), spdy);
        REQUIRE(b.connected());
        CHECK(b.alpn().empty());
        CHECK(b.get("/").status == 200);
    }

    TEST_CASE("X-Forwarded-Proto is https and keep-alive works over TLS") {
        Site site;
        Strata strata(site.config());
        TlsClient client(strata.port("https"), opts("a.test", site));
        REQUIRE(client.connected());
        for (int i = 0; i < 5; ++i) {
            Response r = client.get("/headers");
            STRATA_REQUIRE_RESPONSE(r);
            EchoedHead seen(r.body);
            CHECK(seen.value("X-Forwarded-Proto") == "https");
        }
        Response big = client.get("/bytes/1000000");
        STRATA_REQUIRE_RESPONSE(big);
        CHECK(big.body_bytes == 1000000);
    }

    TEST_CASE("a TLS 1.3 ticket resumes; so does a TLS 1.2 session id from the shared cache") {
        Site site;
        Strata strata(site.config());
        SUBCASE("ticket") {
            TlsClient first(strata.port("https"), opts("a.test", site));
            REQUIRE(first.connected());
            REQUIRE(first.get("/").status == 200);  // the ticket arrives after the handshake
            SSL_SESSION* session = first.session();
            REQUIRE(session != nullptr);
            int reused = 0;
            for (int i = 0; i < 4; ++i) {  // connections land on different workers
                TlsOptions o = opts("a.test", site);
                o.session = session;
                TlsClient again(strata.port("https"), o);
                REQUIRE(again.connected());
                reused += again.reused() ? 1 : 0;
                CHECK(again.get("/").status == 200);
            }
            CHECK(reused == 4);
            SSL_SESSION_free(session);
        }
        SUBCASE("session cache") {
            TlsOptions o = opts("a.test", site);
            o.max_version = TLS1_2_VERSION;
            o.tickets = false;
            TlsClient first(strata.port("https"), o);
            REQUIRE(first.connected());
            REQUIRE(first.get("/").status == 200);
            SSL_SESSION* session = first.session();
            REQUIRE(session != nullptr);
            int reused = 0;
            for (int i = 0; i < 4; ++i) {
                o.session = session;
                TlsClient again(strata.port("https"), o);
                REQUIRE(again.connected());
                reused += again.reused() ? 1 : 0;
            }
            CHECK(reused == 4);
            SSL_SESSION_free(session);
        }
    }

    TEST_CASE("mTLS: a client certificate from the CA is required and its subject forwarded") {
        Site site;
        site.pki.otherCa("rogue");
        site.pki.issue("mallory", "mallory", "", "ec", 1, "rogue");
        Strata strata(site.config("      client_ca: " + site.pki.ca() +
                                  "\n      verify_client: required\n"
                                  "      forward_client_subject: X-Client-Subject\n"));
        TlsOptions good = opts("a.test", site);
        good.cert = site.pki.path("client.pem");
        good.key = site.pki.path("client.key");
        TlsClient alice(strata.port("https"), good);
        REQUIRE(alice.connected());
        Response r = alice.get("/headers", "X-Client-Subject: CN=forged\r\n");
        STRATA_REQUIRE_RESPONSE(r);
        EchoedHead seen(r.body);
        CHECK(seen.value("X-Client-Subject") == "CN=alice");

        // TLS 1.3: the client finishes before the server checks; the refusal shows on read.
        TlsClient anonymous(strata.port("https"), opts("a.test", site));
        CHECK_FALSE((anonymous.connected() && anonymous.get("/").ok()));

        TlsOptions rogue = opts("a.test", site);
        rogue.cert = site.pki.path("mallory.pem");
        rogue.key = site.pki.path("mallory.key");
        TlsClient mallory(strata.port("https"), rogue);
        CHECK_FALSE((mallory.connected() && mallory.get("/").ok()));
    }

    TEST_CASE("a silent connection is closed at the handshake timeout") {
        Site site;
        Strata strata(site.config("      handshake_timeout: 300ms\n"));
        RawClient silent(strata.port("https"));
        CHECK(silent.isClosed(3000ms));
    }

    TEST_CASE("half a ClientHello is closed at the handshake timeout, not before") {
        Site site;
        Strata strata(site.config("      handshake_timeout: 600ms\n"));
        const std::string hello = clientHelloBytes("a.test");
        REQUIRE(hello.size() > 100);
        // From before the connect: the handshake timer starts at accept (see s0001).
        const auto start = std::chrono::steady_clock::now();
        RawClient half(strata.port("https"));
        half.send(hello.substr(0, hello.size() / 2));
        CHECK_FALSE(half.isClosed(200ms));  // still waiting for the rest
        CHECK(half.isClosed(5000ms));
        CHECK(std::chrono::steady_clock::now() - start >= 550ms);
        // The timeout is for the handshake only: a full handshake then idles under the
        // (longer) header timeout.
        TlsClient client(strata.port("https"), opts("a.test", site));
        REQUIRE(client.connected());
        CHECK(client.get("/").status == 200);
    }

    TEST_CASE("a flood of idle handshakes: established connections are served, slots come back") {
        Site site;
        Strata strata(site.config("      handshake_timeout: 2s\n      max_handshakes: 2\n"));
        const auto port = strata.port("https");
        TlsClient established(port, opts("a.test", site));
        REQUIRE(established.connected());
        REQUIRE(established.get("/").status == 200);

        // 10 TCP connections that never finish a handshake: half send nothing, half send half a
        // ClientHello. Two take the handshake slots; the cap closes the rest at once.
        const std::string hello = clientHelloBytes("a.test");
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::unique_ptr<RawClient>> flood;
        for (int i = 0; i < 10; ++i) {
            flood.push_back(std::make_unique<RawClient>(port));
            if (i % 2 == 1) {
                flood.back()->send(hello.substr(0, hello.size() / 2));
            }
        }
        for (int i = 0; i < 3; ++i) {  // keep-alive requests while the slots are held
            Response r = established.get("/");
            STRATA_REQUIRE_RESPONSE(r);
            CHECK(r.status == 200);
        }
        // A new handshake while the slots are held is refused.
        bool refused = false;
        for (int i = 0; i < 20 && !refused; ++i) {
            TlsClient late(port, opts("a.test", site));
            refused = !late.connected();
        }
        CHECK(refused);
        // The cap: most of the flood was closed at once, long before any handshake timeout.
        int refused_at_once = 0;
        for (auto& c : flood) {
            refused_at_once += c->isClosed(20ms) ? 1 : 0;
        }
        REQUIRE(std::chrono::steady_clock::now() - start < 1500ms);  // so none timed out yet
        CHECK(refused_at_once >= 6);  // all but the 2 slot holders (+ workers racing for a slot)
        CHECK(refused_at_once <= 9);  // someone holds a slot until the timeout
        // The timeout: the slot holders are closed when it expires.
        for (auto& c : flood) {
            REQUIRE(c->isClosed(5000ms));
        }
        CHECK(std::chrono::steady_clock::now() - start >= 1900ms);
        // The slots are free again: new handshakes succeed, the established one carries on.
        TlsClient after(port, opts("a.test", site));
        REQUIRE(after.connected());
        CHECK(after.get("/").status == 200);
        CHECK(established.get("/").status == 200);
    }

    TEST_CASE("the access log shows the TLS version and cipher, json and combined") {
        Site site;
        SUBCASE("json") {
            Strata strata(site.config() +
                          "logging: {access_log: \"${tmp}/access.log\", access_format: json}\n");
            TlsClient client(strata.port("https"), opts("a.test", site));
            REQUIRE(client.connected());
            REQUIRE(client.get("/json-line").status == 200);
            const std::string log = strata.tmp() + "/access.log";
            REQUIRE(
                eventually([&] { return readFile(log).find("/json-line") != std::string::npos; }));
            const std::string text = readFile(log);
            CAPTURE(text);
            CHECK(client.version() == "TLSv1.3");
            CHECK(text.find("\"tls_version\":\"1.3\"") != std::string::npos);
            CHECK(text.find("\"tls_cipher\":\"" + client.cipher() + "\"") != std::string::npos);
        }
        SUBCASE("combined") {
            Strata strata(site.config() + "logging: {access_log: \"${tmp}/access.log\"}\n");
            TlsOptions o = opts("a.test", site);
            o.max_version = TLS1_2_VERSION;
            TlsClient client(strata.port("https"), o);
            REQUIRE(client.connected());
            REQUIRE(client.get("/combined-line").status == 200);
            const std::string log = strata.tmp() + "/access.log";
            REQUIRE(eventually(
                [&] { return readFile(log).find("/combined-line") != std::string::npos; }));
            const std::string text = readFile(log);
            CAPTURE(text);
            CHECK(client.cipher().rfind("ECDHE-ECDSA-", 0) == 0);  // a TLS 1.2 suite name
            CHECK(text.find(" tls=1.2 cipher=" + client.cipher() + " time=") != std::string::npos);
        }
    }

    TEST_CASE("over max_handshakes, new connections are closed; established ones carry on") {
        Site site;
        Strata strata(site.config("      max_handshakes: 2\n"));
        TlsClient established(strata.port("https"), opts("a.test", site));
        REQUIRE(established.connected());
        // The client is done before the server has read its Finished: until an answer comes
        // back, `established` may still hold a handshake slot, and s2 below would be refused
        // instead of holding the second one (then no later connection is ever refused).
        REQUIRE(established.get("/warm").status == 200);
        RawClient s1(strata.port("https"));
        RawClient s2(strata.port("https"));
        s1.send("\x16");  // part of a ClientHello: both stay mid-handshake
        s2.send("\x16");
        bool refused = false;
        // Until both are counted by their workers. A connection that gets in first holds a
        // slot itself (and may have taken s2's): it stays open, so the count only grows.
        std::vector<std::unique_ptr<RawClient>> held;
        for (int i = 0; i < 50 && !refused; ++i) {
            auto third = std::make_unique<RawClient>(strata.port("https"));
            refused = third->isClosed(200ms);
            if (!refused) {
                held.push_back(std::move(third));
            }
        }
        CHECK(refused);
        Response r = established.get("/");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
    }

    TEST_CASE("the handshake cap holds across a reload; refusals are counted per listener") {
        Site site;
        // One worker: a request answered after the reload proves it runs the new snapshot.
        Strata strata(site.config("      max_handshakes: 2\n",
                                  "workers: 1\nadmin: {bind: \"127.0.0.1:0\"}\n"));
        const auto admin = strata.port("admin");
        auto refusals = [&] {
            return metric(admin, "strata_tls_handshakes_refused_total", {"listener=\"https\""});
        };
        CHECK(refusals() == 0);  // the series exists before the first refusal
        TlsClient established(strata.port("https"), opts("a.test", site));
        REQUIRE(established.get("/warm").status == 200);  // its handshake slot is free again
        RawClient s1(strata.port("https"));
        RawClient s2(strata.port("https"));
        s1.send("\x16");  // part of a ClientHello: both stay mid-handshake, holding the slots
        s2.send("\x16");
        bool refused = false;
        std::vector<std::unique_ptr<RawClient>> held;  // see the case above
        for (int i = 0; i < 50 && !refused; ++i) {
            auto next = std::make_unique<RawClient>(strata.port("https"));
            refused = next->isClosed(200ms);
            if (!refused) {
                held.push_back(std::move(next));
            }
        }
        REQUIRE(refused);
        CHECK(eventually([&] { return refusals() >= 1; }));
        const double before = refusals();

        // SIGHUP with the listener unchanged: a new context, the same count of handshakes.
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) == 2;
        }));
        Response r = established.get("/after-reload");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        RawClient after(strata.port("https"));
        CHECK(after.isClosed(2000ms));  // a fresh count would let it (and one more) in
        CHECK(eventually([&] { return refusals() == before + 1; }));
    }
}
