// TLS helpers for the t* cases: a throwaway PKI made with the openssl CLI in the case's temp
// dir, and a blocking OpenSSL client (SNI, versions, ALPN, sessions, client certificates) that
// reads responses with llhttp, like RawClient.
#pragma once

#include <arpa/inet.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <vector>

#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "e2e.h"

namespace strata::test {

// Runs a shell command; true on exit 0.
inline bool sh(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// A CA and leaf certificates signed by it, all in `dir`.
class Pki {
public:
    explicit Pki(std::string dir) : dir_(std::move(dir)) {
        REQUIRE(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
                   path("ca.key") + " -out " + path("ca.pem") +
                   " -days 2 -subj /CN=strata-test-ca"));
    }
    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    std::string ca() const { return path("ca.pem"); }
    // NAME's entry for a listener's tls.certificates list; `extra` adds keys (", ocsp_staple: F").
    std::string certificate(const std::string& name, const std::string& extra = "") const {
        return "{cert: " + path(name + ".pem") + ", key: " + path(name + ".key") + extra + "}";
    }

    // Makes NAME.pem / NAME.key. `kind`: "ec" (P-256) or "rsa" (2048). `sans`: "DNS:a.test,...".
    // `days` < 0 makes an expired certificate.
    void issue(const std::string& name, const std::string& cn, const std::string& sans,
               const std::string& kind = "ec", int days = 1, const std::string& ca = "ca") {
        const std::string key_args =
            kind == "rsa" ? "-newkey rsa:2048" : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
        writeFile(path(name + ".ext"),
                  sans.empty() ? "basicConstraints=CA:FALSE\n" : "subjectAltName=" + sans + "\n");
        REQUIRE(sh("openssl req " + key_args + " -nodes -keyout " + path(name + ".key") + " -out " +
                   path(name + ".csr") + " -subj /CN=" + cn));
        REQUIRE(sh("openssl x509 -req -in " + path(name + ".csr") + " -CA " + path(ca + ".pem") +
                   " -CAkey " + path(ca + ".key") + " -CAcreateserial -out " + path(name + ".pem") +
                   " -days " + std::to_string(days) + " -extfile " + path(name + ".ext")));
    }
    // Writes a DER OCSP response for NAME.pem to `out`, signed by the CA: "good", or "revoked"
    // an hour ago. Made by `openssl ocsp` as a responder over an index file, no network.
    void ocspResponse(const std::string& name, const std::string& status, const std::string& out) {
        std::string serial;
        if (FILE* p =
                ::popen(("openssl x509 -noout -serial -in " + path(name + ".pem")).c_str(), "r")) {
            char buf[256] = {};
            if (std::fgets(buf, sizeof buf, p) != nullptr) {
                serial = buf;  // "serial=HEX\n"
            }
            ::pclose(p);
        }
        REQUIRE(serial.rfind("serial=", 0) == 0);
        serial = serial.substr(7, serial.find_last_not_of("\r\n") - 6);
        auto stamp = [](std::time_t t) {  // the index file's YYMMDDHHMMSSZ
            std::tm tm{};
            gmtime_r(&t, &tm);
            char buf[32];
            std::strftime(buf, sizeof buf, "%Y%m%d%H%M%SZ", &tm);
            return std::string(buf).substr(2);  // UTCTime: two-digit year
        };
        const std::time_t now = std::time(nullptr);
        const std::string revoked = status == "revoked" ? stamp(now - 3600) : "";
        writeFile(path(name + ".index"), std::string(status == "revoked" ? "R" : "V") + "\t" +
                                             stamp(now + 86400) + "\t" + revoked + "\t" + serial +
                                             "\tunknown\t/CN=" + name + "\n");
        REQUIRE(sh("openssl ocsp -no_nonce -issuer " + ca() + " -cert " + path(name + ".pem") +
                   " -reqout " + path(name + ".ocsp-req")));
        REQUIRE(sh("openssl ocsp -index " + path(name + ".index") + " -rsigner " + ca() +
                   " -rkey " + path("ca.key") + " -CA " + ca() + " -reqin " +
                   path(name + ".ocsp-req") + " -respout " + out + " -ndays 1"));
    }
    // Another, unrelated CA (for "not signed by the trusted CA" cases).
    void otherCa(const std::string& name) {
        REQUIRE(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
                   path(name + ".key") + " -out " + path(name + ".pem") +
                   " -days 2 -subj /CN=" + name));
    }

private:
    std::string dir_;
};

// One HTTPS listener "https" on port 0 serving `certificates` (entries from
// Pki::certificate(), the first is the default), with `tls_extra` (more lines under tls:,
// indented six spaces) and `rest` (admin: ...) appended, in front of upstream "app" over
// `origin_servers` with a catch-all route.
inline std::string httpsConfig(const std::vector<std::string>& certificates,
                               const std::string& origin_servers, const std::string& tls_extra = "",
                               const std::string& rest = "") {
    std::string yaml =
        "listeners:\n"
        "  - name: https\n"
        "    bind: \"127.0.0.1:0\"\n"
        "    tls:\n"
        "      certificates:\n";
    for (const auto& certificate : certificates) {
        yaml += "        - " + certificate + "\n";
    }
    return yaml + tls_extra + rest + "upstreams: {app: {servers: " + origin_servers +
           "}}\n"
           "routes: [{match: {path_prefix: /}, upstream: app}]\n";
}

struct TlsOptions {
    std::string sni;
    std::string ca;  // verify the server against this CA; empty: no verification
    int min_version = 0;
    int max_version = 0;
    std::string alpn = "http/1.1";   // comma-less single protocol; empty: no ALPN
    SSL_SESSION* session = nullptr;  // offered for resumption
    bool tickets = true;
    std::string cert;  // client certificate
    std::string key;
    std::string sigalgs;   // e.g. "ECDSA+SHA256" to ask for an ECDSA certificate
    bool ocsp = false;     // ask for a stapled OCSP response (status_request)
    std::string preamble;  // raw bytes before the ClientHello (a PROXY protocol header)
};

// The first bytes a TLS client sends: a real ClientHello for `sni`, made in memory.
inline std::string clientHelloBytes(const std::string& sni) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(ctx);
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, in, out);
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(sni.c_str()));
    SSL_connect(ssl);  // wants to read the ServerHello: the ClientHello is in `out`
    char* data = nullptr;
    const long n = BIO_get_mem_data(out, &data);
    std::string hello(data, static_cast<std::size_t>(n));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return hello;
}

class TlsClient {
public:
    TlsClient(std::uint16_t port, const TlsOptions& o) {
        // OpenSSL writes with write(): a server closing a refused connection must show as an
        // error here, not kill the test with SIGPIPE.
        static const bool kIgnoreSigpipe = [] { return ::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
        (void)kIgnoreSigpipe;
        ctx_ = SSL_CTX_new(TLS_client_method());
        if (o.min_version != 0) {
            SSL_CTX_set_min_proto_version(ctx_, o.min_version);
        }
        if (o.max_version != 0) {
            SSL_CTX_set_max_proto_version(ctx_, o.max_version);
        }
        if (o.min_version != 0 && o.min_version < TLS1_2_VERSION) {
            SSL_CTX_set_security_level(ctx_, 0);  // let the client even try TLS 1.1
            SSL_CTX_set_cipher_list(ctx_, "DEFAULT:@SECLEVEL=0");
        }
        if (!o.tickets) {
            SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
        }
        if (!o.ca.empty()) {
            SSL_CTX_load_verify_locations(ctx_, o.ca.c_str(), nullptr);
            SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
        }
        if (!o.cert.empty()) {
            SSL_CTX_use_certificate_chain_file(ctx_, o.cert.c_str());
            SSL_CTX_use_PrivateKey_file(ctx_, o.key.c_str(), SSL_FILETYPE_PEM);
        }
        if (!o.sigalgs.empty()) {
            SSL_CTX_set1_sigalgs_list(ctx_, o.sigalgs.c_str());
        }
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        timeval tv{10, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            error = "connect failed";
            return;
        }
        if (!o.preamble.empty() &&
            ::send(fd_, o.preamble.data(), o.preamble.size(), MSG_NOSIGNAL) !=
                static_cast<ssize_t>(o.preamble.size())) {
            error = "preamble not sent";
            return;
        }
        ssl_ = SSL_new(ctx_);
        SSL_set_fd(ssl_, fd_);
        if (!o.sni.empty()) {
            // The macro casts with a C-style cast; call what it expands to.
            SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(o.sni.c_str()));
        }
        if (!o.alpn.empty()) {
            std::string wire(1, static_cast<char>(o.alpn.size()));
            wire += o.alpn;
            SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size()));
        }
        if (o.session != nullptr) {
            SSL_set_session(ssl_, o.session);
        }
        if (o.ocsp) {
            SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_STATUS_REQ_TYPE, TLSEXT_STATUSTYPE_ocsp, nullptr);
        }
        ERR_clear_error();
        if (SSL_connect(ssl_) != 1) {
            char buf[256];
            ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
            error = std::string("handshake failed: ") + buf;
            return;
        }
        connected_ = true;
    }
    ~TlsClient() {
        if (ssl_ != nullptr) {
            if (connected_) {
                // Without close_notify OpenSSL marks the session not resumable (it is shared
                // with the next client in resumption tests).
                SSL_shutdown(ssl_);
            }
            SSL_free(ssl_);
        }
        if (fd_ >= 0) {
            ::close(fd_);
        }
        SSL_CTX_free(ctx_);
    }
    TlsClient(const TlsClient&) = delete;
    TlsClient& operator=(const TlsClient&) = delete;

    bool connected() const { return connected_; }
    SSL* ssl() const { return ssl_; }
    std::string version() const { return SSL_get_version(ssl_); }
    bool reused() const { return SSL_session_reused(ssl_) == 1; }
    std::string alpn() const {
        const unsigned char* p = nullptr;
        unsigned int n = 0;
        SSL_get0_alpn_selected(ssl_, &p, &n);
        return std::string(reinterpret_cast<const char*>(p), n);
    }
    // The server certificate's CN.
    std::string peerName() const {
        X509* cert = SSL_get0_peer_certificate(ssl_);
        if (cert == nullptr) {
            return "";
        }
        char buf[256] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
        return buf;
    }
    int peerKeyType() const {
        X509* cert = SSL_get0_peer_certificate(ssl_);
        return cert == nullptr ? 0 : EVP_PKEY_get_base_id(X509_get0_pubkey(cert));
    }
    std::string cipher() const { return SSL_get_cipher_name(ssl_); }
    // The stapled OCSP response's status for the server's certificate, checked against the CA
    // in `ca_file` (signature included): "good", "revoked", "unknown"; "none" when nothing was
    // stapled, or what is wrong with it.
    std::string ocspStatus(const std::string& ca_file) const {
        unsigned char* der = nullptr;
        const long n = SSL_ctrl(ssl_, SSL_CTRL_GET_TLSEXT_STATUS_REQ_OCSP_RESP, 0, &der);
        if (der == nullptr || n <= 0) {
            return "none";
        }
        const unsigned char* p = der;
        OCSP_RESPONSE* response = d2i_OCSP_RESPONSE(nullptr, &p, n);
        OCSP_BASICRESP* basic = response != nullptr ? OCSP_response_get1_basic(response) : nullptr;
        FILE* f = std::fopen(ca_file.c_str(), "r");
        X509* ca = f != nullptr ? PEM_read_X509(f, nullptr, nullptr, nullptr) : nullptr;
        if (f != nullptr) {
            std::fclose(f);
        }
        X509_STORE* store = X509_STORE_new();
        X509_STORE_add_cert(store, ca);
        std::string result;
        if (basic == nullptr || ca == nullptr) {
            result = "unparsable";
        } else if (OCSP_basic_verify(basic, nullptr, store, 0) != 1) {
            result = "bad signature";
        } else {
            OCSP_CERTID* id = OCSP_cert_to_id(nullptr, SSL_get0_peer_certificate(ssl_), ca);
            int status = -1;
            int reason = 0;
            ASN1_GENERALIZEDTIME* revoked = nullptr;
            ASN1_GENERALIZEDTIME* this_update = nullptr;
            ASN1_GENERALIZEDTIME* next_update = nullptr;
            if (OCSP_resp_find_status(basic, id, &status, &reason, &revoked, &this_update,
                                      &next_update) != 1) {
                result = "no status for this certificate";
            } else {
                result = OCSP_cert_status_str(status);
            }
            OCSP_CERTID_free(id);
        }
        ERR_clear_error();
        X509_STORE_free(store);
        X509_free(ca);
        OCSP_BASICRESP_free(basic);
        OCSP_RESPONSE_free(response);
        return result;
    }
    // Caller frees with SSL_SESSION_free. Read a response first: TLS 1.3 tickets come after
    // the handshake.
    SSL_SESSION* session() const { return SSL_get1_session(ssl_); }

    // Sends a GET and reads one response (keep-alive).
    Response get(const std::string& target, const std::string& extra = "",
                 const std::string& host = "a.test") {
        std::string request =
            "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n";
        if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <= 0) {
            Response r;
            r.error = "write failed";
            return r;
        }
        return read();
    }

    Response read() {
        Response r;
        llhttp_settings_t settings;
        llhttp_settings_init(&settings);
        struct State {
            Response* r;
            std::string field;
            bool done = false;
        } state{&r, {}, false};
        settings.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
            auto* s = static_cast<State*>(p->data);
            s->field.assign(at, n);
            return 0;
        };
        settings.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
            auto* s = static_cast<State*>(p->data);
            s->r->headers.emplace_back(s->field, std::string(at, n));
            return 0;
        };
        settings.on_body = [](llhttp_t* p, const char* at, size_t n) {
            auto* s = static_cast<State*>(p->data);
            s->r->body.append(at, n);
            s->r->body_bytes += n;
            return 0;
        };
        settings.on_message_complete = [](llhttp_t* p) {
            auto* s = static_cast<State*>(p->data);
            s->done = true;
            s->r->status = p->status_code;
            return static_cast<int>(HPE_PAUSED);
        };
        llhttp_t parser;
        llhttp_init(&parser, HTTP_RESPONSE, &settings);
        parser.data = &state;
        while (!state.done) {
            if (pending_.empty()) {
                char buf[16384];
                int n = SSL_read(ssl_, buf, sizeof buf);
                if (n <= 0) {
                    r.error = "connection closed or timed out";
                    r.status = 0;
                    return r;
                }
                pending_.assign(buf, static_cast<std::size_t>(n));
            }
            llhttp_errno_t rc = llhttp_execute(&parser, pending_.data(), pending_.size());
            if (rc == HPE_PAUSED) {
                std::size_t used =
                    static_cast<std::size_t>(llhttp_get_error_pos(&parser) - pending_.data());
                pending_.erase(0, used);
                break;
            }
            if (rc != HPE_OK) {
                r.error = llhttp_errno_name(rc);
                r.status = 0;
                return r;
            }
            pending_.clear();
        }
        return r;
    }

private:
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    int fd_ = -1;
    bool connected_ = false;
    std::string pending_;

public:
    std::string error;
};

}  // namespace strata::test
