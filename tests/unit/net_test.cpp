#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>

#include "strata/common/log.h"
#include "strata/event/loop.h"
#include "strata/metrics/metrics.h"
#include "strata/net/connection.h"
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

template <typename T>
T* readPem(const std::string& path, T* (*read)(FILE*, T**, pem_password_cb*, void*)) {
    FILE* f = std::fopen(path.c_str(), "r");
    REQUIRE(f != nullptr);
    T* out = read(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    REQUIRE(out != nullptr);
    return out;
}

// A DER OCSP response for certificate `name`, signed by the CA, with its update times this
// many seconds from now (made with the API: the CLI cannot back-date one); no next update when
// null. `response_status` other than successful makes an error response.
std::string makeStaple(const Certs& certs, const std::string& name, long this_update,
                       std::optional<long> next_update,
                       int response_status = OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    OCSP_RESPONSE* response = nullptr;
    if (response_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        response = OCSP_response_create(response_status, nullptr);
    } else {
        X509* ca = readPem<X509>(certs.path("ca.pem"), &PEM_read_X509);
        EVP_PKEY* ca_key = readPem<EVP_PKEY>(certs.path("ca.key"), &PEM_read_PrivateKey);
        X509* leaf = readPem<X509>(certs.path(name + ".pem"), &PEM_read_X509);
        OCSP_BASICRESP* basic = OCSP_BASICRESP_new();
        ASN1_TIME* this_time = X509_gmtime_adj(nullptr, this_update);
        ASN1_TIME* next_time = next_update ? X509_gmtime_adj(nullptr, *next_update) : nullptr;
        OCSP_CERTID* id = OCSP_cert_to_id(nullptr, leaf, ca);
        OCSP_basic_add1_status(basic, id, V_OCSP_CERTSTATUS_GOOD, 0, nullptr, this_time, next_time);
        OCSP_CERTID_free(id);  // add1 keeps its own copy
        REQUIRE(OCSP_basic_sign(basic, ca, ca_key, EVP_sha256(), nullptr, 0) == 1);
        response = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic);
        ASN1_TIME_free(this_time);
        ASN1_TIME_free(next_time);
        OCSP_BASICRESP_free(basic);
        X509_free(leaf);
        EVP_PKEY_free(ca_key);
        X509_free(ca);
    }
    unsigned char* der = nullptr;
    const int n = i2d_OCSP_RESPONSE(response, &der);
    std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(n));
    OPENSSL_free(der);
    OCSP_RESPONSE_free(response);
    return out;
}

}  // namespace

TEST_SUITE("net/tls") {
    TEST_CASE(
        "OCSP staple: a current response for the certificate passes; else the file is named") {
        Certs certs;
        certs.issue("a", "DNS:a.test");
        certs.issue("b", "DNS:b.test");
        struct Case {
            std::string der, expect;  // expect empty: accepted
        };
        for (const Case& c : {
                 Case{makeStaple(certs, "a", -60, 86400), ""},
                 Case{makeStaple(certs, "a", -60, std::nullopt), ""},  // no next update
                 Case{makeStaple(certs, "a", -7200, -3600), "is out of date (next update was"},
                 Case{makeStaple(certs, "a", 3600, 7200), "is not valid now"},
                 Case{makeStaple(certs, "b", -60, 86400), "holds no status for certificate"},
                 Case{makeStaple(certs, "a", 0, 0, OCSP_RESPONSE_STATUS_TRYLATER),
                      "is an unsuccessful OCSP response (trylater)"},
                 Case{"\x30\x03\x0a\x01", "is not a DER OCSP response"},
             }) {
            CAPTURE(c.expect);
            std::ofstream(certs.path("a.ocsp"), std::ios::binary) << c.der;
            config::ListenerTls tls;
            tls.certificates = {certs.cert("a", 0)};
            tls.certificates[0].ocsp_staple = certs.path("a.ocsp");
            std::vector<config::Diagnostic> errors;
            auto context =
                net::TlsServerContext::build(tls, "https", "strata.yaml", nullptr, nullptr, errors);
            if (c.expect.empty()) {
                CHECK(context);
                CHECK(errors.empty());
                continue;
            }
            CHECK_FALSE(context);
            REQUIRE(errors.size() == 1);
            CHECK(errors[0].path == "listeners[0].tls.certificates[0].ocsp_staple");
            CHECK(errors[0].message.find("\"" + certs.path("a.ocsp") + "\" " + c.expect) !=
                  std::string::npos);
        }
    }

    TEST_CASE("SNI: exact names, one-label wildcards, case and trailing dot; else the default") {
        Certs certs;
        certs.issue("a", "DNS:a.test,DNS:www.a.test");
        certs.issue("a-rsa", "DNS:a.test,DNS:www.a.test", "rsa");
        certs.issue("b", "DNS:*.b.test");
        config::ListenerTls tls;
        tls.certificates = {certs.cert("a", 0), certs.cert("a-rsa", 1), certs.cert("b", 2)};
        std::vector<config::Diagnostic> errors;
        auto context =
            net::TlsServerContext::build(tls, "https", "strata.yaml", nullptr, nullptr, errors);
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
                net::TlsServerContext::build(tls, "https", "strata.yaml", nullptr, nullptr, errors);
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
        CHECK_FALSE(net::TlsServerContext::build(tls, "https", "f.yaml", nullptr, nullptr, errors));
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

    TEST_CASE("ticket key rings and session caches survive reloads, per listener") {
        net::TlsResumptionStore store;
        auto a = store.ring("https", 60s);
        auto cache = store.sessions("https", 10);
        CHECK(store.ring("https", 120s) == a);
        CHECK(store.ring("other", 60s) != a);
        CHECK(store.sessions("https", 20) == cache);
        CHECK(store.sessions("other", 10) != cache);
        store.keepOnly({"other"});  // "https" was removed from the config
        CHECK(store.ring("https", 60s) != a);
        CHECK(store.sessions("https", 10) != cache);
    }

    TEST_CASE("the in-flight handshake count is the listener's: a reload keeps it") {
        // A fresh count per reload let 2 x max_handshakes in right after a SIGHUP.
        Certs certs;
        certs.issue("a", "DNS:a.test");
        config::Config cfg;
        config::Listener listener;
        listener.name = "hs";
        listener.bind.text = "127.0.0.1:8443";
        listener.tls.emplace();
        listener.tls->certificates = {certs.cert("a", 0)};
        cfg.listeners.push_back(listener);
        net::TlsResumptionStore store;
        std::vector<config::Diagnostic> errors;
        auto first = net::buildTlsContexts(cfg, store, errors);
        REQUIRE(errors.empty());
        REQUIRE(first.listeners.count("hs") == 1);
        first.listeners["hs"]->handshakes().fetch_add(2);  // two handshakes still running

        auto reloaded = net::buildTlsContexts(cfg, store, errors);
        REQUIRE(errors.empty());
        CHECK(reloaded.listeners["hs"] != first.listeners["hs"]);   // a new context...
        CHECK(reloaded.listeners["hs"]->handshakes().load() == 2);  // ...the same count
        CHECK(&reloaded.listeners["hs"]->handshakes() == &first.listeners["hs"]->handshakes());
        // Refusals are counted under the listener's name, whatever context refused.
        CHECK(reloaded.listeners["hs"]->metricsSlot() == first.listeners["hs"]->metricsSlot());
        CHECK(reloaded.listeners["hs"]->metricsSlot() ==
              strata::metrics::global().listenerSlot("hs"));
        first.listeners["hs"]->handshakes().fetch_sub(1);  // one finishes on the old context
        CHECK(reloaded.listeners["hs"]->handshakes().load() == 1);

        // Another bind is another socket: the server rebinds it, and it counts afresh.
        cfg.listeners[0].bind.text = "127.0.0.1:9443";
        auto rebound = net::buildTlsContexts(cfg, store, errors);
        REQUIRE(errors.empty());
        CHECK(rebound.listeners["hs"]->handshakes().load() == 0);
        // A reload that failed after building (or one reverting the bind) finds the count again.
        cfg.listeners[0].bind.text = "127.0.0.1:8443";
        CHECK(net::buildTlsContexts(cfg, store, errors).listeners["hs"]->handshakes().load() == 1);
        // So does a listener removed and added back.
        cfg.listeners[0].name = "other";
        net::buildTlsContexts(cfg, store, errors);
        cfg.listeners[0].name = "hs";
        CHECK(net::buildTlsContexts(cfg, store, errors).listeners["hs"]->handshakes().load() == 0);
        CHECK(errors.empty());
    }

    TEST_CASE("session cache: least recently used evicted, expired ones not returned") {
        net::TlsSessionCache cache(2);
        cache.add("a", "A", /*expires=*/100);
        cache.add("b", "B", 100);
        CHECK(cache.find("a", 50) == std::optional<std::string>("A"));  // a is now the newest
        cache.add("c", "C", 100);                                       // evicts b
        CHECK_FALSE(cache.find("b", 50));
        CHECK(cache.find("a", 50));
        CHECK(cache.find("c", 50));
        CHECK_FALSE(cache.find("c", 100));  // expired, and dropped
        CHECK(cache.size() == 1);
        cache.add("a", "A2", 200);  // replaces
        CHECK(cache.find("a", 150) == std::optional<std::string>("A2"));
        cache.add("d", "D", 200);
        cache.setCapacity(1);
        CHECK(cache.size() == 1);
        CHECK(cache.find("d", 150));
    }

    TEST_CASE("session id contexts: per certificate group, changed by what a resumption skips") {
        Certs certs;
        certs.issue("a", "DNS:a.test");
        certs.issue("a2", "DNS:a.test");
        certs.issue("b", "DNS:*.b.test");
        auto build = [&](const std::string& a,
                         const std::function<void(config::ListenerTls&)>& edit) {
            config::ListenerTls tls;
            tls.certificates = {certs.cert(a, 0), certs.cert("b", 1)};
            edit(tls);
            std::vector<config::Diagnostic> errors;
            auto context =
                net::TlsServerContext::build(tls, "https", "strata.yaml", nullptr, nullptr, errors);
            REQUIRE(context);
            return std::make_pair(context->sessionIdContext(0), context->sessionIdContext(1));
        };
        auto same = [](config::ListenerTls&) {};
        const auto base = build("a", same);
        CHECK(base.first.size() == 32);
        CHECK(base.first != base.second);  // one name's session never resumes under the other
        CHECK(build("a", same) == base);   // a reload that changes nothing keeps sessions
        const auto renewed = build("a2", same);
        CHECK(renewed.first != base.first);  // a's sessions need the new certificate
        CHECK(renewed.second == base.second);
        auto mtls = [&](config::ListenerTls& tls) {
            tls.verify_client = "required";
            tls.client_ca = certs.path("ca.pem");
        };
        const auto verified = build("a", mtls);
        CHECK(verified.first != base.first);
        CHECK(verified.second != base.second);
        const auto ciphers = build(
            "a", [](config::ListenerTls& tls) { tls.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"; });
        CHECK(ciphers.first != base.first);
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

namespace {

// An owner whose chosen callback throws, as a bug in session code would.
class ThrowingOwner : public net::ConnectionCallbacks {
public:
    bool throw_on_readable = false;
    bool throw_on_writable = false;
    int errors = 0;
    void onReadable() override {
        if (throw_on_readable) {
            throw std::runtime_error("bug in onReadable");
        }
    }
    void onWritable() override {
        if (throw_on_writable) {
            throw std::runtime_error("bug in onWritable");
        }
    }
    void onConnected(bool) override {}
    void onError() override { ++errors; }
};

// Runs the loop one iteration at a time until `done` holds, at most `iterations` times.
bool runUntil(event::Loop& loop, const std::function<bool()>& done, int iterations = 100) {
    for (int i = 0; i < iterations && !done(); ++i) {
        event_base_loop(loop.base(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    return done();
}

}  // namespace

TEST_SUITE("net/connection") {
    TEST_CASE(
        "a throwing callback closes only its connection, is counted, and the loop serves on") {
        log::setLevel(log::Level::Off);
        event::Loop loop;
        int throwing_pair[2];
        int healthy_pair[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, throwing_pair) == 0);
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, healthy_pair) == 0);
        ThrowingOwner throwing_owner;
        ThrowingOwner healthy_owner;
        net::Connection throwing(loop, throwing_pair[0]);
        net::Connection healthy(loop, healthy_pair[0]);
        throwing.setCallbacks(&throwing_owner);
        healthy.setCallbacks(&healthy_owner);
        const std::uint64_t errors_before = log::internalErrors();
        SUBCASE("onReadable") {
            throwing_owner.throw_on_readable = true;
            REQUIRE(::write(throwing_pair[1], "x", 1) == 1);
            REQUIRE(runUntil(loop, [&] { return throwing.closed(); }));
        }
        SUBCASE("onWritable") {
            // More than the socket takes: onWritable() comes when the peer has read it all.
            throwing_owner.throw_on_writable = true;
            const std::string big(4 << 20, 'b');
            evbuffer_add(throwing.output(), big.data(), big.size());
            throwing.flush();
            REQUIRE(throwing.outputLength() > 0);
            char sink[64 * 1024];
            REQUIRE(runUntil(
                loop,
                [&] {
                    while (::read(throwing_pair[1], sink, sizeof sink) > 0) {
                    }
                    return throwing.closed();
                },
                10000));
        }
        REQUIRE(::write(healthy_pair[1], "y", 1) == 1);
        REQUIRE(runUntil(loop, [&] { return evbuffer_get_length(healthy.input()) > 0; }));

        CHECK(log::internalErrors() == errors_before + 1);
        CHECK(throwing_owner.errors == 1);  // the owner can release what it holds
        CHECK(throwing.failed());
        char byte;
        ssize_t last = 1;
        while (last > 0) {
            last = ::read(throwing_pair[1], &byte, 1);
        }
        CHECK(last == 0);  // the peer sees the close

        // The other connection on the same loop still works.
        CHECK_FALSE(healthy.closed());
        evbuffer_drain(healthy.input(), 1 << 20);
        REQUIRE(::write(healthy_pair[1], "z", 1) == 1);
        bool posted_ran = false;
        loop.post([&] { posted_ran = true; });
        CHECK(
            runUntil(loop, [&] { return posted_ran && evbuffer_get_length(healthy.input()) > 0; }));
        CHECK(healthy_owner.errors == 0);
        ::close(throwing_pair[1]);
        ::close(healthy_pair[1]);
    }
}
