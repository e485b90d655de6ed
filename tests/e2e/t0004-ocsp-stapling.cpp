// OCSP stapling from a file: a client asking for status gets the response the operator put in
// the file (real DER made by `openssl ocsp` over an index file), checked by signature against
// the CA; a reload with a refreshed file staples the new one to new connections; a file that is
// not an OCSP response for that certificate is a --check and reload error naming the file.
#include "admin_client.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

struct Site {
    TempDir dir;
    Pki pki{dir.path().string()};
    Origin origin;
    Site() {
        pki.issue("a", "a.test", "DNS:a.test");
        pki.issue("b", "wild.b.test", "DNS:*.b.test");
        writeFile(pki.path("token"), "t0k3n\n");
    }
    // a.test staples `staple`; *.b.test staples nothing.
    std::string config(const std::string& staple) const {
        return httpsConfig(
            {pki.certificate("a", ", ocsp_staple: " + staple), pki.certificate("b")},
            origin.serversYaml(), "",
            "admin: {bind: \"127.0.0.1:0\", token_file: " + pki.path("token") + "}\n");
    }
    TlsOptions opts(const std::string& sni, int max_version = 0) const {
        TlsOptions o;
        o.sni = sni;
        o.ca = pki.ca();
        o.ocsp = true;
        o.max_version = max_version;
        return o;
    }
};

Response reload(std::uint16_t admin) {
    return request(admin, "POST", "/reload", "Authorization: Bearer t0k3n\r\n");
}

}  // namespace

TEST_SUITE("e2e/tls") {
    TEST_CASE("the stapled response is served and says good; a reload with a new file staples it") {
        Site site;
        const std::string staple = site.pki.path("a.ocsp");
        site.pki.ocspResponse("a", "good", staple);
        Strata strata(site.config(staple));
        const auto port = strata.port("https");

        for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
            CAPTURE(version);
            TlsClient client(port, site.opts("a.test", version));
            REQUIRE(client.connected());
            CHECK(client.ocspStatus(site.pki.ca()) == "good");
            CHECK(client.get("/").status == 200);
        }
        {
            // Only when asked for, and only for the certificate it belongs to.
            TlsOptions quiet = site.opts("a.test");
            quiet.ocsp = false;
            TlsClient a(port, quiet);
            REQUIRE(a.connected());
            CHECK(a.ocspStatus(site.pki.ca()) == "none");
            TlsClient b(port, site.opts("x.b.test"));
            REQUIRE(b.connected());
            CHECK(b.peerName() == "wild.b.test");
            CHECK(b.ocspStatus(site.pki.ca()) == "none");
        }

        // The operator's refresh job replaces the file (here: the certificate got revoked).
        TlsClient before(port, site.opts("a.test"));
        REQUIRE(before.connected());
        site.pki.ocspResponse("a", "revoked", staple);
        const Response r = reload(strata.port("admin"));
        CAPTURE(r.body);
        REQUIRE(r.status == 200);
        TlsClient after(port, site.opts("a.test"));
        REQUIRE(after.connected());
        CHECK(after.ocspStatus(site.pki.ca()) == "revoked");
        // The connection made before the reload carries on.
        CHECK(before.get("/").status == 200);
    }

    TEST_CASE(
        "a staple that is not an OCSP response for the certificate fails --check and reload") {
        Site site;
        const std::string good = site.pki.path("a.ocsp");
        site.pki.ocspResponse("a", "good", good);
        const std::string foreign = site.pki.path("b.ocsp");
        site.pki.ocspResponse("b", "good", foreign);  // signed by the same CA, for another cert
        const std::string garbage = site.pki.path("garbage.ocsp");
        writeFile(garbage, "this is not DER\n");

        CheckResult ok = Strata::check(site.config(good));
        CAPTURE(ok.output);
        CHECK(ok.exit_code == 0);

        struct Bad {
            std::string file, expect;
        };
        for (const Bad& bad : {
                 Bad{garbage, "is not a DER OCSP response"},
                 Bad{foreign, "holds no status for certificate \"" + site.pki.path("a.pem")},
                 Bad{site.pki.path("missing.ocsp"), "cannot read"},
             }) {
            CheckResult r = Strata::check(site.config(bad.file));
            CAPTURE(r.output);
            CHECK(r.exit_code == 78);
            CHECK(r.output.find("\"" + bad.file + "\"") != std::string::npos);
            CHECK(r.output.find(bad.expect) != std::string::npos);
            CHECK(r.output.find("listeners[0].tls.certificates[0].ocsp_staple") !=
                  std::string::npos);
        }

        // On reload the old staple keeps serving.
        Strata strata(site.config(good));
        writeFile(good, "truncated");
        const Response r = reload(strata.port("admin"));
        CHECK(r.status != 200);
        CHECK(r.body.find("is not a DER OCSP response") != std::string::npos);
        TlsClient client(strata.port("https"), site.opts("a.test"));
        REQUIRE(client.connected());
        CHECK(client.ocspStatus(site.pki.ca()) == "good");
    }
}
