// Certificates on --check and reload: a missing file, a key that does not match, an expired
// certificate or a bad PEM is an error naming the file (and keeps the old certificates on
// reload); a good reload serves the new certificate to new connections while an established
// connection carries on.
#include <signal.h>
#include <thread>

#include "tls_support.h"

using namespace strata::test;

namespace {

std::string tlsConfig(const std::string& cert, const std::string& key, const std::string& origin) {
    return httpsConfig({"{cert: " + cert + ", key: " + key + "}"}, origin);
}

}  // namespace

TEST_SUITE("e2e/tls") {
    TEST_CASE("--check names the file of a missing, mismatched, expired or bad certificate") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("good", "a.test", "DNS:a.test");
        pki.issue("other", "a.test", "DNS:a.test");
        pki.issue("old", "a.test", "DNS:a.test", "ec", -1);
        writeFile(pki.path("garbage.pem"), "-----BEGIN CERTIFICATE-----\nnot base64!\n");
        const std::string origin = "[\"127.0.0.1:8000\"]";

        CheckResult ok =
            Strata::check(tlsConfig(pki.path("good.pem"), pki.path("good.key"), origin));
        CAPTURE(ok.output);
        CHECK(ok.exit_code == 0);

        struct Bad {
            std::string cert, key, expect;
        };
        for (const Bad& bad : {
                 Bad{pki.path("missing.pem"), pki.path("good.key"), "missing.pem"},
                 Bad{pki.path("good.pem"), pki.path("other.key"), "does not match"},
                 Bad{pki.path("old.pem"), pki.path("old.key"), "expired"},
                 Bad{pki.path("garbage.pem"), pki.path("good.key"), "garbage.pem"},
                 Bad{pki.path("good.pem"), pki.path("good.pem"), "no PEM private key"},
             }) {
            CheckResult r = Strata::check(tlsConfig(bad.cert, bad.key, origin));
            CAPTURE(r.output);
            CHECK(r.exit_code == 78);
            CHECK(r.output.find(bad.expect) != std::string::npos);
            // FILE:LINE:COL: key.path: message, at the certificate's entry (line 6)
            CHECK(r.output.find(r.file + ":6:") != std::string::npos);
            CHECK(r.output.find("listeners[0].tls.certificates[0]") != std::string::npos);
        }
    }

    TEST_CASE("SIGHUP with a new certificate: new connections get it, an open one carries on") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("v1", "v1.a.test", "DNS:a.test");
        pki.issue("v2", "v2.a.test", "DNS:a.test");
        pki.issue("old", "a.test", "DNS:a.test", "ec", -1);
        Origin origin;
        Strata strata(tlsConfig(pki.path("v1.pem"), pki.path("v1.key"), origin.serversYaml()));
        TlsOptions o;
        o.sni = "a.test";
        o.ca = pki.ca();
        TlsClient open(strata.port("https"), o);
        REQUIRE(open.connected());
        REQUIRE(open.get("/").status == 200);
        CHECK(open.peerName() == "v1.a.test");

        // A reload with an expired certificate is refused: v1 keeps serving.
        writeFile(strata.configPath(),
                  tlsConfig(pki.path("old.pem"), pki.path("old.key"), origin.serversYaml()));
        strata.process().signal(SIGHUP);
        bool logged = false;
        for (int i = 0; i < 100 && !logged; ++i) {
            logged = strata.process().stderrText().find("expired") != std::string::npos;
            if (!logged) {
                std::this_thread::sleep_for(50ms);  // polling the log, not waiting for behaviour
            }
        }
        CHECK(logged);
        {
            TlsClient c(strata.port("https"), o);
            REQUIRE(c.connected());
            CHECK(c.peerName() == "v1.a.test");
        }

        writeFile(strata.configPath(),
                  tlsConfig(pki.path("v2.pem"), pki.path("v2.key"), origin.serversYaml()));
        strata.process().signal(SIGHUP);
        std::string seen;
        for (int i = 0; i < 100 && seen != "v2.a.test"; ++i) {
            TlsClient c(strata.port("https"), o);
            REQUIRE(c.connected());
            seen = c.peerName();
            if (seen != "v2.a.test") {
                std::this_thread::sleep_for(50ms);
            }
        }
        CHECK(seen == "v2.a.test");
        // The connection opened before both reloads still works.
        Response r = open.get("/");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
    }
}
