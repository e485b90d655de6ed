#include "strata/net/tls_context.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "strata/common/log.h"
#include "strata/common/strings.h"
#include "strata/event/buffer_memory.h"
#include "strata/metrics/metrics.h"
#include "strata/net/connection.h"

namespace strata::net {
namespace {

// Mozilla's "intermediate" profile for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults, which
// are the same three the profile lists).
constexpr const char* kIntermediateCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// The TlsServerContext an SSL_CTX belongs to (set on every group's context).
int contextIndex() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// Fetched once: an implicit fetch per handshake would take OpenSSL's provider locks.
EVP_CIPHER* ticketCipher() {
    static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
    return cipher;
}

struct BioDeleter {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
    void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

class Reporter {
public:
    Reporter(const std::string& file, const config::SourcePos& pos,
             std::vector<config::Diagnostic>& errors)
        : file_(file), pos_(pos), errors_(errors) {}
    void error(std::string_view key, std::string message) {
        config::Diagnostic d;
        d.file = file_;
        d.line = pos_.line;
        d.column = pos_.column;
        d.path = key.empty() ? pos_.path : pos_.path + "." + std::string(key);
        d.message = std::move(message);
        errors_.push_back(std::move(d));
        ++count_;
    }
    int count() const { return count_; }

private:
    const std::string& file_;
    const config::SourcePos& pos_;
    std::vector<config::Diagnostic>& errors_;
    int count_ = 0;
};

std::string asn1TimeText(const ASN1_TIME* t) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    ASN1_TIME_print(bio.get(), t);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

// Every certificate in a PEM file, leaf first.
std::vector<X509Ptr> readCertificates(const std::string& path, std::string& error) {
    std::vector<X509Ptr> out;
    ERR_clear_error();
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio) {
        error = "cannot open \"" + path + "\": " + takeOpenSslErrors();
        return out;
    }
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        out.emplace_back(x);
    }
    unsigned long last = ERR_peek_last_error();
    if (out.empty()) {
        error = "\"" + path + "\" holds no PEM certificate (" + takeOpenSslErrors() + ")";
    } else if (ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
        error = "\"" + path + "\": bad PEM after certificate " + std::to_string(out.size()) + " (" +
                takeOpenSslErrors() + ")";
        out.clear();
    }
    ERR_clear_error();
    return out;
}

PkeyPtr readKey(const std::string& path, std::string& error) {
    ERR_clear_error();
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio) {
        error = "cannot open \"" + path + "\": " + takeOpenSslErrors();
        return nullptr;
    }
    PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        error = "\"" + path + "\" holds no PEM private key (" + takeOpenSslErrors() + ")";
    }
    return key;
}

bool readFile(const std::string& path, std::string& out) {
    BioPtr bio(BIO_new_file(path.c_str(), "rb"));
    if (!bio) {
        ERR_clear_error();
        return false;
    }
    char buf[4096];
    int n = 0;
    while ((n = BIO_read(bio.get(), buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<std::size_t>(n));
    }
    return true;
}

// DNS names of a certificate: subjectAltName DNS entries, or the CN when there are none.
std::vector<std::string> certificateNames(X509* x) {
    std::vector<std::string> names;
    auto* sans =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
    if (sans != nullptr) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
            const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
            if (name->type == GEN_DNS) {
                const auto* data = ASN1_STRING_get0_data(name->d.dNSName);
                names.push_back(toLower(std::string_view(reinterpret_cast<const char*>(data),
                                                         ASN1_STRING_length(name->d.dNSName))));
            }
        }
        GENERAL_NAMES_free(sans);
    }
    if (names.empty()) {
        X509_NAME* subject = X509_get_subject_name(x);
        int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (index >= 0) {
            ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
            names.push_back(toLower(std::string_view(
                reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)), ASN1_STRING_length(cn))));
        }
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return names;
}

// The host_name of a server_name extension's body (RFC 6066 3); empty when malformed.
std::string_view sniHostName(const unsigned char* p, std::size_t n) {
    if (n < 2 || ((std::size_t{p[0]} << 8) | p[1]) != n - 2) {
        return {};
    }
    p += 2;
    n -= 2;
    while (n >= 3) {
        const unsigned type = p[0];
        const std::size_t len = (std::size_t{p[1]} << 8) | p[2];
        p += 3;
        n -= 3;
        if (len > n) {
            return {};
        }
        if (type == TLSEXT_NAMETYPE_host_name) {
            return {reinterpret_cast<const char*>(p), len};
        }
        p += len;
        n -= len;
    }
    return {};
}

struct OcspResponseDeleter {
    void operator()(OCSP_RESPONSE* r) const { OCSP_RESPONSE_free(r); }
};
struct OcspBasicDeleter {
    void operator()(OCSP_BASICRESP* r) const { OCSP_BASICRESP_free(r); }
};

std::string serialText(const ASN1_INTEGER* serial) {
    BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
    char* hex = bn != nullptr ? BN_bn2hex(bn) : nullptr;
    std::string out = hex != nullptr ? hex : "?";
    OPENSSL_free(hex);
    BN_free(bn);
    return out;
}

bool sameBytes(const ASN1_OCTET_STRING* s, const unsigned char* p, unsigned int n) {
    return s != nullptr && ASN1_STRING_length(s) == static_cast<int>(n) &&
           std::memcmp(ASN1_STRING_get0_data(s), p, n) == 0;
}

// Checks a stapled OCSP response before serving it: a successful basic response holding a
// status for `leaf` (serial and issuer name; the issuer's key too when the chain has the
// issuer) that is current. A stale or foreign staple makes strict (must-staple) clients refuse
// the site, so it fails --check and reload like a bad certificate. The signature is the
// client's to verify. `error` completes "\"FILE\" ...".
bool checkStaple(const std::string& der, X509* leaf, X509* issuer, const std::string& cert_file,
                 std::string& error) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    std::unique_ptr<OCSP_RESPONSE, OcspResponseDeleter> response(
        d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
    if (!response || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
        ERR_clear_error();
        error = "is not a DER OCSP response";
        return false;
    }
    const int status = OCSP_response_status(response.get());
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        error = std::string("is an unsuccessful OCSP response (") +
                OCSP_response_status_str(status) + ")";
        return false;
    }
    std::unique_ptr<OCSP_BASICRESP, OcspBasicDeleter> basic(
        OCSP_response_get1_basic(response.get()));
    if (!basic) {
        ERR_clear_error();
        error = "holds no basic OCSP response";
        return false;
    }
    for (int i = 0; i < OCSP_resp_count(basic.get()); ++i) {
        OCSP_SINGLERESP* single = OCSP_resp_get0(basic.get(), i);
        ASN1_OCTET_STRING* name_hash = nullptr;
        ASN1_OBJECT* md_oid = nullptr;
        ASN1_OCTET_STRING* key_hash = nullptr;
        ASN1_INTEGER* serial = nullptr;
        // OCSP_id_get0_info takes a non-const id only to hand out pointers into it.
        OCSP_id_get0_info(&name_hash, &md_oid, &key_hash, &serial,
                          const_cast<OCSP_CERTID*>(OCSP_SINGLERESP_get0_id(single)));
        if (serial == nullptr || ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(leaf)) != 0) {
            continue;
        }
        const EVP_MD* md = EVP_get_digestbyobj(md_oid);
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int digest_len = 0;
        if (md == nullptr ||
            X509_NAME_digest(X509_get_issuer_name(leaf), md, digest, &digest_len) != 1 ||
            !sameBytes(name_hash, digest, digest_len)) {
            continue;
        }
        if (issuer != nullptr && (X509_pubkey_digest(issuer, md, digest, &digest_len) != 1 ||
                                  !sameBytes(key_hash, digest, digest_len))) {
            continue;
        }
        int reason = 0;
        ASN1_GENERALIZEDTIME* revoked_at = nullptr;
        ASN1_GENERALIZEDTIME* this_update = nullptr;
        ASN1_GENERALIZEDTIME* next_update = nullptr;
        OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);
        if (OCSP_check_validity(this_update, next_update, /*nsec=*/300, /*maxsec=*/-1) != 1) {
            ERR_clear_error();
            error = next_update != nullptr && X509_cmp_current_time(next_update) < 0
                        ? "is out of date (next update was " + asn1TimeText(next_update) + ")"
                        : "is not valid now (this update " +
                              (this_update != nullptr ? asn1TimeText(this_update) : "?") + ")";
            return false;
        }
        return true;
    }
    ERR_clear_error();
    error = "holds no status for certificate \"" + cert_file + "\" (serial " +
            serialText(X509_get0_serialNumber(leaf)) + ")";
    return false;
}

std::string sha256(const std::string& data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), digest, &n, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<const char*>(digest), n);
}

int protocolVersion(const std::string& text) {
    return text == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

}  // namespace

namespace {

void* tlsAlloc(std::size_t size, const char*, int) {
    return event::bufferAlloc(size);
}

void* tlsRealloc(void* block, std::size_t size, const char*, int) {
    return event::bufferRealloc(block, size);
}

void tlsFree(void* block, const char*, int) {
    event::bufferFree(block);
}

}  // namespace

void installTlsMemory() {
#if !defined(__SANITIZE_ADDRESS__)
    if (CRYPTO_set_mem_functions(&tlsAlloc, &tlsRealloc, &tlsFree) != 1) {
        LOG_WARN("OpenSSL allocated before its memory functions could be set; using malloc");
    }
#endif
}

std::string takeOpenSslErrors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) {
            out += "; ";
        }
        out += buf;
    }
    return out.empty() ? "unknown error" : out;
}

// ---- TicketKeyRing ------------------------------------------------------------------------------

TicketKeyRing::TicketKeyRing(std::chrono::milliseconds rotation) : rotation_(rotation) {}

void TicketKeyRing::setRotation(std::chrono::milliseconds rotation) {
    std::lock_guard lock(mutex_);
    rotation_ = rotation;
}

void TicketKeyRing::rotateIfDue(std::chrono::steady_clock::time_point now) {
    if (!keys_.empty() && now - keys_.front().created < rotation_) {
        return;
    }
    Key key;
    RAND_bytes(key.name.data(), static_cast<int>(key.name.size()));
    RAND_priv_bytes(key.aes.data(), static_cast<int>(key.aes.size()));
    RAND_priv_bytes(key.hmac.data(), static_cast<int>(key.hmac.size()));
    key.created = now;
    keys_.push_front(key);
    while (keys_.size() > kKeptKeys) {
        OPENSSL_cleanse(&keys_.back(), sizeof(Key));
        keys_.pop_back();
    }
    if (keys_.size() > 1) {
        ++rotations_;
    }
}

TicketKeyRing::Key TicketKeyRing::encryptionKey(std::chrono::steady_clock::time_point now) {
    std::lock_guard lock(mutex_);
    rotateIfDue(now);
    return keys_.front();
}

std::optional<TicketKeyRing::Key> TicketKeyRing::decryptionKey(
    const unsigned char* name, std::chrono::steady_clock::time_point now, bool& renew) {
    std::lock_guard lock(mutex_);
    rotateIfDue(now);
    for (std::size_t i = 0; i < keys_.size(); ++i) {
        if (std::memcmp(keys_[i].name.data(), name, keys_[i].name.size()) == 0) {
            renew = i != 0;
            return keys_[i];
        }
    }
    return std::nullopt;
}

std::uint64_t TicketKeyRing::rotations() const {
    std::lock_guard lock(mutex_);
    return rotations_;
}

TicketKeyRingPtr TlsResumptionStore::ring(const std::string& listener,
                                          std::chrono::milliseconds rotation) {
    auto& ring = rings_[listener];
    if (!ring) {
        ring = std::make_shared<TicketKeyRing>(rotation);
    } else {
        ring->setRotation(rotation);
    }
    return ring;
}

TlsSessionCachePtr TlsResumptionStore::sessions(const std::string& listener, std::size_t capacity) {
    auto& cache = sessions_[listener];
    if (!cache) {
        cache = std::make_shared<TlsSessionCache>(capacity);
    } else {
        cache->setCapacity(capacity);
    }
    return cache;
}

HandshakeCountPtr TlsResumptionStore::handshakes(const std::string& listener,
                                                 const std::string& bind) {
    auto& count = handshakes_[listener][bind];
    if (!count) {
        count = std::make_shared<std::atomic<std::uint32_t>>(0);
    }
    return count;
}

void TlsResumptionStore::keepOnly(const std::vector<std::string>& names) {
    auto prune = [&](auto& map) {
        for (auto it = map.begin(); it != map.end();) {
            it = std::find(names.begin(), names.end(), it->first) == names.end() ? map.erase(it)
                                                                                 : std::next(it);
        }
    };
    prune(rings_);
    prune(sessions_);
    prune(handshakes_);
}

// ---- TlsSessionCache ----------------------------------------------------------------------------

TlsSessionCache::TlsSessionCache(std::size_t capacity) : capacity_(capacity) {}

void TlsSessionCache::setCapacity(std::size_t capacity) {
    std::lock_guard lock(mutex_);
    capacity_ = capacity;
    evictOverCapacity();
}

void TlsSessionCache::evictOverCapacity() {
    while (lru_.size() > capacity_) {
        by_id_.erase(lru_.back().id);
        lru_.pop_back();
    }
}

void TlsSessionCache::add(std::string id, std::string der, std::int64_t expires) {
    std::lock_guard lock(mutex_);
    if (auto it = by_id_.find(id); it != by_id_.end()) {
        auto entry = it->second;
        by_id_.erase(it);  // first: its key views the entry's id
        lru_.erase(entry);
    }
    lru_.push_front(Entry{std::move(id), std::move(der), expires});
    by_id_.emplace(lru_.front().id, lru_.begin());
    evictOverCapacity();
}

std::optional<std::string> TlsSessionCache::find(std::string_view id, std::int64_t now) {
    std::lock_guard lock(mutex_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) {
        return std::nullopt;
    }
    auto entry = it->second;
    if (entry->expires <= now) {
        by_id_.erase(it);
        lru_.erase(entry);
        return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, entry);  // iterators stay valid
    return entry->der;
}

std::size_t TlsSessionCache::size() const {
    std::lock_guard lock(mutex_);
    return lru_.size();
}

// ---- TlsServerContext ---------------------------------------------------------------------------

struct TlsServerCallbacks {
    static const TlsServerContext* self(SSL* ssl) {
        return static_cast<const TlsServerContext*>(
            SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), contextIndex()));
    }

    // Picks the certificate group by SNI. Runs before OpenSSL looks up the session the client
    // offers (the SNI callback runs after), so the lookup checks the session against the
    // picked group's session id context. Runs again on a second ClientHello (after a
    // HelloRetryRequest), which must name the same server.
    static int onClientHello(SSL* ssl, int* /*alert*/, void* /*arg*/) {
        const TlsServerContext* context = self(ssl);
        if (context == nullptr || context->groups_.size() < 2) {
            return SSL_CLIENT_HELLO_SUCCESS;  // one certificate group: nothing to pick
        }
        const unsigned char* ext = nullptr;
        std::size_t ext_len = 0;
        std::size_t group = 0;  // no or unknown SNI: the default certificate
        if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1) {
            group = context->groupFor(sniHostName(ext, ext_len));
        }
        SSL_CTX* target = context->groups_[group].ctx;
        if (SSL_get_SSL_CTX(ssl) != target) {
            SSL_set_SSL_CTX(ssl, target);
        }
        return SSL_CLIENT_HELLO_SUCCESS;
    }

    // The group was picked in onClientHello; this only acknowledges the name, so OpenSSL keeps
    // it in the session.
    static int onServerName(SSL*, int* /*alert*/, void* /*arg*/) { return SSL_TLSEXT_ERR_OK; }

    // Sessions go to the listener's TlsSessionCache (the internal cache is off). TLS 1.3
    // sessions behind stateless tickets are announced too but need no storing.
    static int onNewSession(SSL* ssl, SSL_SESSION* session) {
        const TlsServerContext* context = self(ssl);
        if (context == nullptr || !context->sessions_ ||
            (SSL_version(ssl) == TLS1_3_VERSION &&
             (SSL_get_options(ssl) & SSL_OP_NO_TICKET) == 0)) {
            return 0;
        }
        unsigned int id_len = 0;
        const unsigned char* id = SSL_SESSION_get_id(session, &id_len);
        const int der_len = i2d_SSL_SESSION(session, nullptr);
        if (id_len == 0 || der_len <= 0) {
            return 0;
        }
        std::string der(static_cast<std::size_t>(der_len), '\0');
        auto* out = reinterpret_cast<unsigned char*>(der.data());
        if (i2d_SSL_SESSION(session, &out) != der_len) {
            return 0;
        }
        const std::int64_t expires = static_cast<std::int64_t>(SSL_SESSION_get_time(session)) +
                                     static_cast<std::int64_t>(SSL_SESSION_get_timeout(session));
        context->sessions_->add(std::string(reinterpret_cast<const char*>(id), id_len),
                                std::move(der), expires);
        return 0;  // OpenSSL keeps its reference: the cache holds a copy
    }

    static SSL_SESSION* onGetSession(SSL* ssl, const unsigned char* id, int id_len, int* copy) {
        *copy = 0;  // a fresh session, owned by the caller
        const TlsServerContext* context = self(ssl);
        if (context == nullptr || !context->sessions_ || id_len <= 0) {
            return nullptr;
        }
        auto der = context->sessions_->find(
            std::string_view(reinterpret_cast<const char*>(id), static_cast<std::size_t>(id_len)),
            static_cast<std::int64_t>(std::time(nullptr)));
        if (!der) {
            return nullptr;
        }
        const auto* p = reinterpret_cast<const unsigned char*>(der->data());
        SSL_SESSION* session = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(der->size()));
        if (session == nullptr) {
            ERR_clear_error();
        }
        return session;
    }

    static int onAlpn(SSL* ssl, const unsigned char** out, unsigned char* out_len,
                      const unsigned char* in, unsigned int in_len, void*) {
        const TlsServerContext* context = self(ssl);
        const std::string* alpn = context != nullptr ? &context->alpn_ : nullptr;
        const auto* ours =
            alpn != nullptr ? reinterpret_cast<const unsigned char*>(alpn->data()) : kAlpnHttp11;
        const auto ours_len =
            static_cast<unsigned int>(alpn != nullptr ? alpn->size() : sizeof kAlpnHttp11);
        unsigned char* selected = nullptr;
        // OpenSSL walks our list first: the listener's order is the preference (h2 first).
        if (SSL_select_next_proto(&selected, out_len, ours, ours_len, in, in_len) !=
            OPENSSL_NPN_NEGOTIATED) {
            return SSL_TLSEXT_ERR_NOACK;  // nothing in common: carry on without ALPN (HTTP/1.1)
        }
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }

    static int onTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv,
                           EVP_CIPHER_CTX* cipher_ctx, EVP_MAC_CTX* mac_ctx, int encrypt) {
        const TlsServerContext* context = self(ssl);
        if (context == nullptr || !context->keys_) {
            return 0;
        }
        const auto now = std::chrono::steady_clock::now();
        TicketKeyRing::Key key;
        int result = 1;
        if (encrypt != 0) {
            key = context->keys_->encryptionKey(now);
            if (RAND_bytes(iv, 16) != 1) {
                return -1;
            }
            std::memcpy(name, key.name.data(), key.name.size());
        } else {
            bool renew = false;
            auto found = context->keys_->decryptionKey(name, now, renew);
            if (!found) {
                return 0;  // unknown or expired key: full handshake
            }
            key = *found;
            // Always issue a fresh ticket (2 = renew), not only for an older key: with TLS 1.3
            // OpenSSL otherwise sends nothing after the client's Finished, and a client whose
            // request waits behind Nagle for that ACK stalls a delayed-ACK period (40 ms).
            // It also keeps a client from replaying one ticket forever.
            (void)renew;
            result = 2;
        }
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac.data(), key.hmac.size()),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_MAC_CTX_set_params(mac_ctx, params) != 1) {
            return -1;
        }
        const int ok =
            encrypt != 0
                ? EVP_EncryptInit_ex(cipher_ctx, ticketCipher(), nullptr, key.aes.data(), iv)
                : EVP_DecryptInit_ex(cipher_ctx, ticketCipher(), nullptr, key.aes.data(), iv);
        OPENSSL_cleanse(&key, sizeof key);
        return ok == 1 ? result : -1;
    }

    static int onStatus(SSL* ssl, void*) {
        const TlsServerContext* context = self(ssl);
        X509* cert = SSL_get_certificate(ssl);
        if (context == nullptr || cert == nullptr) {
            return SSL_TLSEXT_ERR_NOACK;
        }
        for (const auto& group : context->groups_) {
            for (const auto& [leaf, staple] : group.staples) {
                if (leaf != cert) {
                    continue;
                }
                auto* copy = static_cast<unsigned char*>(OPENSSL_malloc(staple.size()));
                if (copy == nullptr) {
                    return SSL_TLSEXT_ERR_NOACK;
                }
                std::memcpy(copy, staple.data(), staple.size());
                SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(staple.size()));
                return SSL_TLSEXT_ERR_OK;
            }
        }
        return SSL_TLSEXT_ERR_NOACK;
    }
};

TlsServerContext::~TlsServerContext() {
    for (auto& group : groups_) {
        SSL_CTX_free(group.ctx);
    }
}

std::size_t TlsServerContext::groupFor(std::string_view server_name) const {
    std::string name = toLower(server_name);
    if (!name.empty() && name.back() == '.') {
        name.pop_back();  // an absolute name
    }
    if (auto it = exact_.find(name); it != exact_.end()) {
        return it->second;
    }
    // A wildcard covers exactly one label (RFC 6125 6.4.3): *.example.com matches
    // a.example.com but neither example.com nor a.b.example.com.
    auto dot = name.find('.');
    if (dot != std::string::npos && dot > 0) {
        if (auto it = wildcard_.find(std::string_view(name).substr(dot + 1));
            it != wildcard_.end()) {
            return it->second;
        }
    }
    return 0;
}

SSL* TlsServerContext::newSsl(int fd) const {
    SSL* ssl = SSL_new(groups_.front().ctx);
    if (ssl == nullptr) {
        return nullptr;
    }
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
    return ssl;
}

std::shared_ptr<TlsServerContext> TlsServerContext::build(
    const config::ListenerTls& tls, const std::string& listener_name, const std::string& file,
    TicketKeyRingPtr keys, TlsSessionCachePtr sessions, std::vector<config::Diagnostic>& errors,
    HandshakeCountPtr handshakes, const std::vector<std::string>& protocols) {
    std::shared_ptr<TlsServerContext> context(new TlsServerContext());
    for (const std::string& protocol : protocols) {
        context->alpn_ += static_cast<char>(protocol.size());  // RFC 7301 wire format
        context->alpn_ += protocol;
    }
    context->handshake_timeout_ = tls.handshake_timeout;
    context->max_handshakes_ = tls.max_handshakes;
    context->handshakes_ =
        handshakes ? std::move(handshakes) : std::make_shared<std::atomic<std::uint32_t>>(0);
    context->metrics_slot_ = metrics::global().listenerSlot(listener_name);
    context->forward_subject_ = tls.forward_client_subject;
    if (tls.session_tickets) {
        context->keys_ =
            keys ? std::move(keys) : std::make_shared<TicketKeyRing>(tls.ticket_key_rotation);
    }
    if (tls.session_cache_size > 0) {
        context->sessions_ = sessions ? std::move(sessions)
                                      : std::make_shared<TlsSessionCache>(tls.session_cache_size);
    }
    Reporter listener_report(file, tls.pos, errors);

    // One context per group, configured identically: after SNI switches an SSL to a group's
    // context, OpenSSL verifies client certificates against that context's store.
    auto newContext = [&]() -> SSL_CTX* {
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        if (ctx == nullptr) {
            listener_report.error("", "cannot create TLS context: " + takeOpenSslErrors());
            return nullptr;
        }
        SSL_CTX_set_ex_data(ctx, contextIndex(), context.get());
        SSL_CTX_set_min_proto_version(ctx, protocolVersion(tls.min_version));
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
        // No renegotiation (a client-driven CPU sink); an EOF without close_notify is a plain
        // EOF: HTTP framing catches truncation, as every browser and proxy does.
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                     SSL_OP_NO_COMPRESSION |
                                     (tls.session_tickets ? 0 : SSL_OP_NO_TICKET));
        // Writes come from evbuffers that move between retries; partial writes let a large
        // buffer go out record by record. Reading ahead saves a read() per record. An idle
        // connection gives its record buffers (about 34 KiB) back, as nginx's do: with
        // thousands of idle HTTP/2 or keep-alive clients they were most of strata's memory.
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_dh_auto(ctx, 1);
        // One TLS 1.3 ticket per handshake: one is all an HTTP/1.1 client reuses.
        SSL_CTX_set_num_tickets(ctx, 1);
        // The session id context is set once the group's certificates are known.
        SSL_CTX_set_client_hello_cb(ctx, &TlsServerCallbacks::onClientHello, nullptr);
        SSL_CTX_set_alpn_select_cb(ctx, &TlsServerCallbacks::onAlpn, nullptr);
        // The OpenSSL macros for these two cast with C casts; same calls, C++ casts.
        SSL_CTX_callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                              reinterpret_cast<void (*)()>(&TlsServerCallbacks::onServerName));
        SSL_CTX_callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB,
                              reinterpret_cast<void (*)()>(&TlsServerCallbacks::onStatus));
        if (tls.session_tickets) {
            SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TlsServerCallbacks::onTicketKey);
        }
        if (tls.session_cache_size > 0) {
            // The listener's cache, which outlives this context; OpenSSL's internal one is off.
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
            SSL_CTX_sess_set_new_cb(ctx, &TlsServerCallbacks::onNewSession);
            SSL_CTX_sess_set_get_cb(ctx, &TlsServerCallbacks::onGetSession);
        } else {
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        }
        const char* ciphers = tls.ciphers.empty() ? kIntermediateCiphers : tls.ciphers.c_str();
        if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
            listener_report.error("ciphers", "OpenSSL accepts no cipher of \"" +
                                                 std::string(ciphers) +
                                                 "\": " + takeOpenSslErrors());
        }
        if (tls.verify_client != "off" && !tls.client_ca.empty()) {
            if (SSL_CTX_load_verify_locations(ctx, tls.client_ca.c_str(), nullptr) != 1) {
                listener_report.error("client_ca", "\"" + tls.client_ca +
                                                       "\" holds no PEM CA certificate (" +
                                                       takeOpenSslErrors() + ")");
            } else if (STACK_OF(X509_NAME)* names =
                           SSL_load_client_CA_file(tls.client_ca.c_str())) {
                SSL_CTX_set_client_CA_list(ctx, names);
            }
            int mode = SSL_VERIFY_PEER;
            if (tls.verify_client == "required") {
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            }
            SSL_CTX_set_verify(ctx, mode, nullptr);
        }
        return ctx;
    };

    std::set<std::pair<std::vector<std::string>, int>> seen_kinds;
    for (const auto& cert : tls.certificates) {
        Reporter report(file, cert.pos, errors);
        std::string error;
        auto chain = readCertificates(cert.cert, error);
        if (chain.empty()) {
            report.error("cert", error);
            continue;
        }
        auto key = readKey(cert.key, error);
        if (!key) {
            report.error("key", error);
            continue;
        }
        X509* leaf = chain.front().get();
        if (X509_check_private_key(leaf, key.get()) != 1) {
            ERR_clear_error();
            report.error(
                "key", "key \"" + cert.key + "\" does not match certificate \"" + cert.cert + "\"");
            continue;
        }
        if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
            report.error("cert", "certificate \"" + cert.cert + "\" expired on " +
                                     asn1TimeText(X509_get0_notAfter(leaf)));
            continue;
        }
        if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
            report.error("cert", "certificate \"" + cert.cert + "\" is not valid before " +
                                     asn1TimeText(X509_get0_notBefore(leaf)));
            continue;
        }
        std::string staple;
        if (!cert.ocsp_staple.empty()) {
            if (!readFile(cert.ocsp_staple, staple)) {
                report.error("ocsp_staple", "cannot read \"" + cert.ocsp_staple + "\"");
                continue;
            }
            X509* issuer = chain.size() > 1 && X509_check_issued(chain[1].get(), leaf) == X509_V_OK
                               ? chain[1].get()
                               : nullptr;
            if (!checkStaple(staple, leaf, issuer, cert.cert, error)) {
                report.error("ocsp_staple", "\"" + cert.ocsp_staple + "\" " + error);
                continue;
            }
        }
        auto names = certificateNames(leaf);
        const int kind = EVP_PKEY_get_base_id(key.get());
        if (!seen_kinds.emplace(names, kind).second) {
            report.error("cert", "certificate \"" + cert.cert +
                                     "\" has the same names and key type as an earlier one");
            continue;
        }
        auto group_it = std::find_if(context->groups_.begin(), context->groups_.end(),
                                     [&](const Group& g) { return g.names == names; });
        if (group_it == context->groups_.end()) {
            SSL_CTX* ctx = newContext();
            if (ctx == nullptr) {
                continue;
            }
            Group group;
            group.ctx = ctx;
            group.names = names;
            context->groups_.push_back(std::move(group));
            group_it = context->groups_.end() - 1;
        }
        STACK_OF(X509)* extra = sk_X509_new_null();
        for (std::size_t i = 1; i < chain.size(); ++i) {
            sk_X509_push(extra, chain[i].get());
        }
        const int ok = SSL_CTX_use_cert_and_key(group_it->ctx, leaf, key.get(), extra, 1);
        sk_X509_free(extra);
        if (ok != 1) {
            report.error("cert", "OpenSSL refused \"" + cert.cert + "\": " + takeOpenSslErrors());
            continue;
        }
        if (!staple.empty()) {
            group_it->staples.emplace_back(SSL_CTX_get0_certificate(group_it->ctx),
                                           std::move(staple));
        }
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int digest_len = 0;
        X509_digest(leaf, EVP_sha256(), digest, &digest_len);
        group_it->certificates.append(reinterpret_cast<const char*>(digest), digest_len);
        const std::size_t index = static_cast<std::size_t>(group_it - context->groups_.begin());
        for (const auto& name : names) {
            if (name.rfind("*.", 0) == 0) {
                context->wildcard_.emplace(name.substr(2), index);  // the first listed wins
            } else {
                context->exact_.emplace(name, index);
            }
        }
    }
    if (listener_report.count() > 0 || context->groups_.empty()) {
        return nullptr;
    }
    // Session id contexts (see the header): everything a resumed handshake skips checking.
    std::string settings = "strata\n" + listener_name + "\n" + tls.min_version + "\n" +
                           tls.ciphers + "\n" + tls.verify_client + "\n";
    if (tls.verify_client != "off" && !tls.client_ca.empty()) {
        std::string ca;
        readFile(tls.client_ca, ca);
        settings += sha256(ca);
    }
    for (auto& group : context->groups_) {
        group.sid_ctx = sha256(settings + "\n" + group.certificates);
        static_assert(SSL_MAX_SID_CTX_LENGTH >= 32, "a SHA-256 digest fits");
        SSL_CTX_set_session_id_context(group.ctx,
                                       reinterpret_cast<const unsigned char*>(group.sid_ctx.data()),
                                       static_cast<unsigned int>(group.sid_ctx.size()));
    }
    return context;
}

std::string TlsServerContext::sessionIdContext(std::size_t group) const {
    return group < groups_.size() ? groups_[group].sid_ctx : std::string();
}

// ---- TlsClientContext ---------------------------------------------------------------------------

TlsClientContext::~TlsClientContext() {
    SSL_CTX_free(ctx_);
}

std::shared_ptr<TlsClientContext> TlsClientContext::build(const config::UpstreamTls& tls,
                                                          const std::string& file,
                                                          std::vector<config::Diagnostic>& errors) {
    Reporter report(file, tls.pos, errors);
    std::shared_ptr<TlsClientContext> context(new TlsClientContext());
    context->verify_ = tls.verify;
    context->sni_ = tls.sni;
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) {
        report.error("", "cannot create TLS context: " + takeOpenSslErrors());
        return nullptr;
    }
    context->ctx_ = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_cipher_list(ctx, kIntermediateCiphers);
    SSL_CTX_set_alpn_protos(ctx, kAlpnHttp11, sizeof kAlpnHttp11);
    // Sessions are kept by the connection pool, per server.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (tls.verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        const bool loaded = tls.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx) == 1
                                                : SSL_CTX_load_verify_locations(
                                                      ctx, tls.ca_file.c_str(), nullptr) == 1;
        if (!loaded) {
            report.error("ca_file",
                         tls.ca_file.empty()
                             ? "cannot load the system trust store: " + takeOpenSslErrors()
                             : "\"" + tls.ca_file + "\" holds no PEM CA certificate (" +
                                   takeOpenSslErrors() + ")");
        }
    }
    if (!tls.client_cert.empty()) {
        std::string error;
        auto chain = readCertificates(tls.client_cert, error);
        auto key = chain.empty() ? nullptr : readKey(tls.client_key, error);
        if (chain.empty()) {
            report.error("client_cert", error);
        } else if (!key) {
            report.error("client_key", error);
        } else if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
            ERR_clear_error();
            report.error("client_key", "key \"" + tls.client_key +
                                           "\" does not match certificate \"" + tls.client_cert +
                                           "\"");
        } else if (X509_cmp_current_time(X509_get0_notAfter(chain.front().get())) <= 0) {
            report.error("client_cert", "certificate \"" + tls.client_cert + "\" expired on " +
                                            asn1TimeText(X509_get0_notAfter(chain.front().get())));
        } else {
            STACK_OF(X509)* extra = sk_X509_new_null();
            for (std::size_t i = 1; i < chain.size(); ++i) {
                sk_X509_push(extra, chain[i].get());
            }
            if (SSL_CTX_use_cert_and_key(ctx, chain.front().get(), key.get(), extra, 1) != 1) {
                report.error("client_cert",
                             "OpenSSL refused \"" + tls.client_cert + "\": " + takeOpenSslErrors());
            }
            sk_X509_free(extra);
        }
    }
    return report.count() > 0 ? nullptr : context;
}

SSL* TlsClientContext::newSsl(int fd, const SocketAddress& peer, SSL_SESSION* session) const {
    SSL* ssl = SSL_new(ctx_);
    if (ssl == nullptr) {
        return nullptr;
    }
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    if (!sni_.empty()) {
        SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(sni_.c_str()));
    }
    if (verify_) {
        // Never just "some valid certificate": it must name the server we meant.
        if (!sni_.empty()) {
            SSL_set1_host(ssl, sni_.c_str());
        } else {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peer.hostString().c_str());
        }
    }
    if (session != nullptr) {
        SSL_set_session(ssl, session);
    }
    return ssl;
}

std::unique_ptr<Connection> TlsClientContext::connect(event::Loop& loop,
                                                      const SocketAddress& address,
                                                      SSL_SESSION* session) const {
    struct Args {
        const TlsClientContext* tls;
        SSL_SESSION* session;
    } args{this, session};
    return Connection::connectTo(
        loop, address,
        [](int fd, const SocketAddress& peer, void* arg) {
            auto* a = static_cast<Args*>(arg);
            return a->tls->newSsl(fd, peer, a->session);
        },
        &args);
}

// ---- all of a config ----------------------------------------------------------------------------

TlsContexts buildTlsContexts(const config::Config& cfg, TlsResumptionStore& resumption,
                             std::vector<config::Diagnostic>& errors) {
    TlsContexts out;
    std::vector<std::string> tls_listeners;
    for (const auto& listener : cfg.listeners) {
        if (listener.tls) {
            tls_listeners.push_back(listener.name);
        }
    }
    resumption.keepOnly(tls_listeners);
    for (const auto& listener : cfg.listeners) {
        if (!listener.tls) {
            continue;
        }
        auto context = TlsServerContext::build(
            *listener.tls, listener.name, cfg.source,
            resumption.ring(listener.name, listener.tls->ticket_key_rotation),
            resumption.sessions(listener.name, listener.tls->session_cache_size), errors,
            resumption.handshakes(listener.name, listener.bind.text), listener.protocols);
        if (context) {
            out.listeners.emplace(listener.name, std::move(context));
        }
    }
    for (const auto& [name, upstream] : cfg.upstreams) {
        if (!upstream.tls.enabled) {
            continue;
        }
        auto context = TlsClientContext::build(upstream.tls, cfg.source, errors);
        if (context) {
            out.upstreams.emplace(name, std::move(context));
        }
    }
    return out;
}

}  // namespace strata::net
