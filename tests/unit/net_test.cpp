#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "strata/net/tls_context.h"

using namespace strata;
using namespace std::chrono_literals;

namespace {

bool sh(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// A CA and certificates made with the openssl CLI in a temporary directory.
class Certs {
public:
    Certs() {
        char tmpl[] = "/tmp/strata-net-test-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        REQUIRE(
            sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
               "-keyout " +
               path("ca.key") + " -out " + path("ca.pem") + " -days 2 -subj /CN=ca"));
    }
    ~Certs() { std::filesystem::remove_all(dir_); }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    void issue(const std::string& name, const std::string& sans, const std::string& kind = "ec",
               int days = 1) {
        std::ofstream(path(name + ".ext")) << "subjectAltName=" << sans << "\n";
        const std::string key_args =
            kind == "rsa" ? "-newkey rsa:2048" : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
        REQUIRE(sh("openssl req " + key_args + " -nodes -keyout " + path(name + ".key") + " -out " +
                   path(name + ".csr") + " -subj /CN=" + name));
        REQUIRE(sh("openssl x509 -req -in " + path(name + ".csr") + " -CA " + path("ca.pem") +
                   " -CAkey " + path("ca.key") + " -CAcreateserial -days " + std::to_string(days) +
                   " -out " + path(name + ".pem") + " -extfile " + path(name + ".ext")));
    }
    config::TlsCertificate cert(const std::string& name, int index) const {
        config::TlsCertificate c;
        c.cert = path(name + ".pem");
        c.key = path(name + ".key");
        c.pos = {10 + index, 11, "listeners[0].tls.certificates[" + std::to_string(index) + "]"};
        return c;
    }

private:
    std::string dir_;
};

}  // namespace

TEST_SUITE("net/tls") {
    TEST_CASE("SNI: exact names, one-label wildcards, case and trailing dot; else the default") {
        Certs certs;
        certs.issue("a", "DNS:a.test,DNS:www.a.test");
        certs.issue("a-rsa", "DNS:a.test,DNS:www.a.test", "rsa");
        certs.issue("b", "DNS:*.b.test");
        config::ListenerTls tls;
        tls.certificates = {certs.cert("a", 0), certs.cert("a-rsa", 1), certs.cert("b", 2)};
        std::vector<config::Diagnostic> errors;
        auto context = net::TlsServerContext::build(tls, "https", "strata.yaml", nullptr, errors);
        REQUIRE(errors.empty());
        REQUIRE(context);
        // RSA and ECDSA for the same names share one context (OpenSSL picks per client).
        CHECK(context->groupCount() == 2);
        CHECK(context->groupFor("a.test") == 0);
        CHECK(context->groupFor("www.a.test") == 0);
        CHECK(context->groupFor("x.b.test") == 1);
        CHECK(context->groupFor("X.B.Test.") == 1);
        CHECK(context->groupFor("b.test") == 0);           // the wildcard needs a label
        CHECK(context->groupFor("y.x.b.test") == 0);       // and covers exactly one
        CHECK(context->groupFor("unknown.example") == 0);  // default: the first certificate
        CHECK(context->groupFor("") == 0);
    }

    TEST_CASE("certificate problems are diagnostics naming the file at the entry's position") {
        Certs certs;
        certs.issue("good", "DNS:a.test");
        certs.issue("other", "DNS:a.test");
        certs.issue("old", "DNS:a.test", "ec", -1);
        std::ofstream(certs.path("bad.pem")) << "-----BEGIN CERTIFICATE-----\n!!\n";
        struct Case {
            std::string cert, key, key_path, expect;
        };
        for (const Case& c : {
                 Case{"missing.pem", "good.key", ".cert", "missing.pem"},
                 Case{"bad.pem", "good.key", ".cert", "bad.pem"},
                 Case{"good.pem", "other.key", ".key", "does not match certificate"},
                 Case{"old.pem", "old.key", ".cert", "expired on"},
                 Case{"good.pem", "good.pem", ".key", "no PEM private key"},
             }) {
            CAPTURE(c.cert);
            config::ListenerTls tls;
            auto entry = certs.cert("good", 0);
            entry.cert = certs.path(c.cert);
            entry.key = certs.path(c.key);
            tls.certificates = {entry};
            std::vector<config::Diagnostic> errors;
            auto context =
                net::TlsServerContext::build(tls, "https", "strata.yaml", nullptr, errors);
            CHECK_FALSE(context);
            REQUIRE(errors.size() == 1);
            CHECK(errors[0].line == 10);
            CHECK(errors[0].path == "listeners[0].tls.certificates[0]" + c.key_path);
            CHECK(errors[0].format().find(c.expect) != std::string::npos);
            CHECK(errors[0].format().rfind("strata.yaml:10:11: ", 0) == 0);
        }
    }

    TEST_CASE("a bad cipher list and an unreadable client CA are reported") {
        Certs certs;
        certs.issue("good", "DNS:a.test");
        config::ListenerTls tls;
        tls.certificates = {certs.cert("good", 0)};
        tls.ciphers = "NO-SUCH-CIPHER";
        tls.verify_client = "required";
        tls.client_ca = certs.path("good.key");
        tls.pos = {3, 5, "listeners[0].tls"};
        std::vector<config::Diagnostic> errors;
        CHECK_FALSE(net::TlsServerContext::build(tls, "https", "f.yaml", nullptr, errors));
        REQUIRE(errors.size() == 2);
        CHECK(errors[0].path == "listeners[0].tls.ciphers");
        CHECK(errors[1].path == "listeners[0].tls.client_ca");
    }

    TEST_CASE("ticket keys rotate on schedule; the two previous keys still decrypt and renew") {
        net::TicketKeyRing ring(60s);
        const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
        auto k1 = ring.encryptionKey(t0);
        CHECK(ring.encryptionKey(t0 + 59s).name == k1.name);
        CHECK(ring.rotations() == 0);
        auto k2 = ring.encryptionKey(t0 + 61s);
        CHECK(k2.name != k1.name);
        CHECK(ring.rotations() == 1);
        bool renew = false;
        auto found = ring.decryptionKey(k1.name.data(), t0 + 62s, renew);
        REQUIRE(found);
        CHECK(found->aes == k1.aes);
        CHECK(renew);
        found = ring.decryptionKey(k2.name.data(), t0 + 62s, renew);
        REQUIRE(found);
        CHECK_FALSE(renew);
        ring.encryptionKey(t0 + 122s);  // k3: k1 is the oldest kept
        CHECK(ring.decryptionKey(k1.name.data(), t0 + 122s, renew));
        ring.encryptionKey(t0 + 183s);  // k4: k1 is gone
        CHECK_FALSE(ring.decryptionKey(k1.name.data(), t0 + 183s, renew));
        CHECK(ring.rotations() == 3);
    }

    TEST_CASE("ticket key rings survive reloads, per listener") {
        net::TicketKeyStore store;
        auto a = store.ring("https", 60s);
        CHECK(store.ring("https", 120s) == a);
        CHECK(store.ring("other", 60s) != a);
    }

    TEST_CASE("upstream client context: key mismatch and unreadable CA are diagnostics") {
        Certs certs;
        certs.issue("client", "DNS:c.test");
        certs.issue("other", "DNS:c.test");
        config::UpstreamTls tls;
        tls.enabled = true;
        tls.ca_file = certs.path("ca.pem");
        tls.client_cert = certs.path("client.pem");
        tls.client_key = certs.path("client.key");
        tls.pos = {7, 5, "upstreams.app.tls"};
        std::vector<config::Diagnostic> errors;
        CHECK(net::TlsClientContext::build(tls, "f.yaml", errors));
        CHECK(errors.empty());
        tls.client_key = certs.path("other.key");
        tls.ca_file = certs.path("client.key");
        CHECK_FALSE(net::TlsClientContext::build(tls, "f.yaml", errors));
        REQUIRE(errors.size() == 2);
        CHECK(errors[0].path == "upstreams.app.tls.ca_file");
        CHECK(errors[1].path == "upstreams.app.tls.client_key");
    }
}
