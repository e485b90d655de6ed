// Resumption across reloads and names. Ticket keys and the session cache belong to the listener,
// not to the contexts a reload rebuilds: a reload that keeps the certificates keeps every
// session resumable (operators reload often; a full handshake for every returning client after
// each reload would spike CPU). A session never resumes where its certificate would not have
// been checked: not under another certificate's name, not after its own certificate changed,
// not after client verification was turned on.
#include <csignal>

#include "admin_client.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

// a.test (+www.a.test) and *.b.test, each ECDSA.
struct Site {
    TempDir dir;
    Pki pki{dir.path().string()};
    Origin origin;
    Site() {
        pki.issue("a", "a.test", "DNS:a.test,DNS:www.a.test");
        pki.issue("a2", "a2.test", "DNS:a.test,DNS:www.a.test");
        pki.issue("b", "wild.b.test", "DNS:*.b.test");
        pki.issue("client", "alice", "");
    }
    std::string config(const std::string& a = "a", const std::string& tls_extra = "") const {
        return httpsConfig({pki.certificate(a), pki.certificate("b")}, origin.serversYaml(),
                           tls_extra, "admin: {bind: \"127.0.0.1:0\"}\n");
    }
};

// How a client resumes: a TLS 1.3 ticket, or a TLS 1.2 session id from the server's cache.
struct Mode {
    const char* name;
    int max_version;
    bool tickets;
};
constexpr Mode kModes[] = {{"TLS 1.3 ticket", 0, true},
                           {"TLS 1.2 session cache", TLS1_2_VERSION, false}};

TlsOptions opts(const Site& site, const Mode& mode, const std::string& sni) {
    TlsOptions o;
    o.sni = sni;
    o.max_version = mode.max_version;
    o.tickets = mode.tickets;
    o.ca = site.pki.ca();
    return o;
}

// A session for `sni`, after one request (TLS 1.3 tickets arrive after the handshake).
SSL_SESSION* sessionFor(std::uint16_t port, const TlsOptions& o) {
    TlsClient client(port, o);
    REQUIRE(client.connected());
    REQUIRE(client.get("/").status == 200);
    return client.session();
}

struct Resumed {
    bool connected = false;
    bool reused = false;
    std::string peer;
    int status = 0;
};

Resumed offer(std::uint16_t port, TlsOptions o, SSL_SESSION* session) {
    o.session = session;
    TlsClient client(port, o);
    Resumed r;
    r.connected = client.connected();
    if (r.connected) {
        r.reused = client.reused();
        r.peer = client.peerName();
        r.status = client.get("/").status;  // TLS 1.3 refusals show on the first read
    }
    return r;
}

// SIGHUP with the config file as it is now; waits for the reload to be counted.
void reloadAndWait(Strata& strata, double& reloads) {
    strata.process().signal(SIGHUP);
    reloads += 1;
    REQUIRE(eventually([&] {
        return metric(strata.port("admin"), "strata_server_config_reloads_total",
                      {"result=\"success\""}) == reloads;
    }));
}

}  // namespace

TEST_SUITE("e2e/tls") {
    TEST_CASE("a reload that keeps the certificates keeps sessions resumable") {
        for (const Mode& mode : kModes) {
            CAPTURE(mode.name);
            Site site;
            Strata strata(site.config());
            const auto port = strata.port("https");
            double reloads = 1;
            SSL_SESSION* a = sessionFor(port, opts(site, mode, "a.test"));
            SSL_SESSION* b = sessionFor(port, opts(site, mode, "x.b.test"));
            REQUIRE(offer(port, opts(site, mode, "a.test"), a).reused);

            // Reload twice, once with an unrelated change: the sessions made before still
            // resume, on whichever worker the connection lands.
            reloadAndWait(strata, reloads);
            writeFile(strata.configPath(), site.config("a", "      max_handshakes: 500\n"));
            reloadAndWait(strata, reloads);
            for (int i = 0; i < 4; ++i) {
                Resumed ra = offer(port, opts(site, mode, "a.test"), a);
                CHECK(ra.reused);
                CHECK(ra.status == 200);
                Resumed rb = offer(port, opts(site, mode, "x.b.test"), b);
                CHECK(rb.reused);
                CHECK(rb.status == 200);
            }
            SSL_SESSION_free(a);
            SSL_SESSION_free(b);
        }
    }

    TEST_CASE("a new certificate on reload: its names do a full handshake, other names resume") {
        for (const Mode& mode : kModes) {
            CAPTURE(mode.name);
            Site site;
            Strata strata(site.config());
            const auto port = strata.port("https");
            double reloads = 1;
            SSL_SESSION* a = sessionFor(port, opts(site, mode, "a.test"));
            SSL_SESSION* b = sessionFor(port, opts(site, mode, "x.b.test"));

            writeFile(strata.configPath(), site.config("a2"));
            reloadAndWait(strata, reloads);
            Resumed ra = offer(port, opts(site, mode, "a.test"), a);
            REQUIRE(ra.connected);
            CHECK_FALSE(ra.reused);
            CHECK(ra.peer == "a2.test");  // the client saw (and verified) the new certificate
            CHECK(ra.status == 200);
            Resumed rb = offer(port, opts(site, mode, "x.b.test"), b);
            CHECK(rb.reused);
            CHECK(rb.status == 200);
            SSL_SESSION_free(a);
            SSL_SESSION_free(b);
        }
    }

    TEST_CASE("a session made for one certificate's name does not resume under another's") {
        for (const Mode& mode : kModes) {
            CAPTURE(mode.name);
            Site site;
            Strata strata(site.config());
            const auto port = strata.port("https");
            SSL_SESSION* a = sessionFor(port, opts(site, mode, "a.test"));
            // Same certificate, other name: fine.
            Resumed www = offer(port, opts(site, mode, "www.a.test"), a);
            CHECK(www.reused);
            // Another certificate's name: a full handshake that shows that certificate.
            Resumed other = offer(port, opts(site, mode, "x.b.test"), a);
            REQUIRE(other.connected);
            CHECK_FALSE(other.reused);
            CHECK(other.peer == "wild.b.test");
            CHECK(other.status == 200);
            SSL_SESSION_free(a);
        }
    }

    TEST_CASE("TLS 1.3 without tickets resumes from the session cache across a reload") {
        Site site;
        Strata strata(site.config("a", "      session_tickets: false\n"));
        const auto port = strata.port("https");
        double reloads = 1;
        TlsOptions o;
        o.sni = "a.test";
        o.ca = site.pki.ca();
        o.min_version = TLS1_3_VERSION;
        SSL_SESSION* a = sessionFor(port, o);
        reloadAndWait(strata, reloads);
        Resumed r = offer(port, o, a);
        CHECK(r.reused);
        CHECK(r.status == 200);
        SSL_SESSION_free(a);
    }

    TEST_CASE("client verification turned on by a reload: older sessions cannot skip it") {
        for (const Mode& mode : kModes) {
            CAPTURE(mode.name);
            Site site;
            Strata strata(site.config());
            const auto port = strata.port("https");
            double reloads = 1;
            SSL_SESSION* a = sessionFor(port, opts(site, mode, "a.test"));  // no client cert
            writeFile(strata.configPath(),
                      site.config("a", "      client_ca: " + site.pki.ca() +
                                           "\n      verify_client: required\n"));
            reloadAndWait(strata, reloads);
            Resumed anonymous = offer(port, opts(site, mode, "a.test"), a);
            CHECK_FALSE(anonymous.reused);
            CHECK(anonymous.status != 200);
            TlsOptions alice = opts(site, mode, "a.test");
            alice.cert = site.pki.path("client.pem");
            alice.key = site.pki.path("client.key");
            Resumed with_cert = offer(port, alice, a);
            CHECK_FALSE(with_cert.reused);
            CHECK(with_cert.status == 200);
            SSL_SESSION_free(a);
        }
    }
}
