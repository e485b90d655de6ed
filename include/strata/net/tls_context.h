// OpenSSL contexts. Built on the main thread at load and reload, then shared read-only by every
// worker (an SSL_CTX is thread-safe once configured): a reload builds new contexts, new
// connections take them, established ones keep the old ones alive through their SSL's reference.
//
// Listener side: one SSL_CTX per group of certificates that carry the same names, so an RSA and
// an ECDSA certificate for the same site sit in one context and OpenSSL picks by the client's
// signature algorithms. The ClientHello callback switches an SSL to the group whose names match
// the SNI (exact first, then a "*.suffix" wildcard one label deep); the first certificate's group
// is the default. The session callbacks (cache, tickets) are those of the default context, where
// OpenSSL looks for them whatever group was picked.
//
// Resumption across reloads and names: ticket keys and the session cache belong to the listener
// (TlsResumptionStore) and outlive the contexts a reload replaces. What a session may resume
// against is its session id context, one per group: a digest of the listener, the group's
// certificates and the settings a resumed handshake skips (client verification, ciphers, minimum
// version). A reload that keeps them keeps sessions resumable; a new certificate or a stricter
// client check makes that group's old sessions fall back to a full handshake. The group is picked
// from the ClientHello's SNI before OpenSSL looks the session up, so a session made for one name
// never resumes under another group's name.
//
// The handshake cap (tls.max_handshakes) belongs to the listener too: its in-flight count is
// kept in the TlsResumptionStore and shared by every context a reload builds for a listener
// that keeps its name and bind, so handshakes still running on connections that took the old
// context count against the new one (a fresh count per reload let 2 x the cap in right after
// a SIGHUP). Refusals are counted per listener (strata_tls_handshakes_refused_total).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/config/config.h"
#include "strata/net/socket.h"

struct ssl_st;
struct ssl_ctx_st;
struct ssl_session_st;
using SSL = ssl_st;
using SSL_CTX = ssl_ctx_st;
using SSL_SESSION = ssl_session_st;

namespace strata::event {
class Loop;
}

namespace strata::net {

class Connection;

// Session ticket keys for one listener, shared by all workers (the SSL_CTX is shared) and kept
// across reloads, so tickets issued before a reload still resume. Rotated lazily on use: the
// newest key encrypts for `rotation`, the two before it still decrypt (and the ticket is then
// renewed), so a ticket lives at most three periods.
class TicketKeyRing {
public:
    struct Key {
        std::array<unsigned char, 16> name{};
        std::array<unsigned char, 32> aes{};
        std::array<unsigned char, 32> hmac{};
        std::chrono::steady_clock::time_point created;
    };
    static constexpr std::size_t kKeptKeys = 3;

    explicit TicketKeyRing(std::chrono::milliseconds rotation);
    void setRotation(std::chrono::milliseconds rotation);

    // The key to encrypt a new ticket with, after rotating if the current one is due.
    Key encryptionKey(std::chrono::steady_clock::time_point now);
    // The key a ticket names, if still kept. `renew` is set when it is not the newest.
    std::optional<Key> decryptionKey(const unsigned char* name,
                                     std::chrono::steady_clock::time_point now, bool& renew);
    std::uint64_t rotations() const;

private:
    void rotateIfDue(std::chrono::steady_clock::time_point now);  // mutex_ held

    mutable std::mutex mutex_;
    std::chrono::milliseconds rotation_;
    std::deque<Key> keys_;  // front: newest
    std::uint64_t rotations_ = 0;
};

using TicketKeyRingPtr = std::shared_ptr<TicketKeyRing>;

// Server-side session cache of one listener (TLS 1.2 session ids; TLS 1.3 stateful tickets when
// tickets are off), shared by all workers and kept across reloads: OpenSSL's own cache lives in
// an SSL_CTX, which every reload replaces. Sessions are kept serialized, least recently used
// evicted first; OpenSSL still checks on lookup that a session belongs to the context resuming it.
class TlsSessionCache {
public:
    explicit TlsSessionCache(std::size_t capacity);
    void setCapacity(std::size_t capacity);

    // `der` is the serialized session; `expires` in seconds since the epoch, as OpenSSL keeps it.
    void add(std::string id, std::string der, std::int64_t expires);
    // The serialized session, unless unknown or expired at `now`.
    std::optional<std::string> find(std::string_view id, std::int64_t now);
    std::size_t size() const;

private:
    struct Entry {
        std::string id;
        std::string der;
        std::int64_t expires = 0;
    };
    void evictOverCapacity();  // mutex_ held

    mutable std::mutex mutex_;
    std::size_t capacity_;
    std::list<Entry> lru_;  // front: most recently used
    std::unordered_map<std::string_view, std::list<Entry>::iterator> by_id_;  // keys view lru_
};

using TlsSessionCachePtr = std::shared_ptr<TlsSessionCache>;

// Handshakes in progress on a listener's connections, whatever context they took.
using HandshakeCountPtr = std::shared_ptr<std::atomic<std::uint32_t>>;

// The server context of one TLS listener.
class TlsServerContext {
public:
    ~TlsServerContext();
    TlsServerContext(const TlsServerContext&) = delete;
    TlsServerContext& operator=(const TlsServerContext&) = delete;

    // Opens and checks every file (PEM parses, key matches its certificate, certificate valid
    // now, OCSP response parses) and appends a diagnostic naming the file for each problem.
    // Null when anything was wrong. `file` is the config file, for the diagnostics' position.
    // `keys`, `sessions` and `handshakes` come from the listener's TlsResumptionStore; null
    // makes fresh ones (tests). `protocols`: what ALPN may select, in preference order.
    static std::shared_ptr<TlsServerContext> build(
        const config::ListenerTls& tls, const std::string& listener_name, const std::string& file,
        TicketKeyRingPtr keys, TlsSessionCachePtr sessions, std::vector<config::Diagnostic>& errors,
        HandshakeCountPtr handshakes = nullptr,
        const std::vector<std::string>& protocols = {"http/1.1"});

    // A server-side SSL on `fd`, in accept state. The caller owns it.
    SSL* newSsl(int fd) const;

    // Index of the certificate group serving `server_name` (0 = the default group).
    std::size_t groupFor(std::string_view server_name) const;
    std::size_t groupCount() const { return groups_.size(); }

    std::chrono::milliseconds handshakeTimeout() const { return handshake_timeout_; }
    std::uint32_t maxHandshakes() const { return max_handshakes_; }
    // Handshakes in progress on the listener's connections (Connection counts them), shared
    // with the listener's contexts before and after a reload.
    std::atomic<std::uint32_t>& handshakes() const { return *handshakes_; }
    // The listener's slot in metrics::Registry (listenerSlot), for refusals at accept.
    std::uint16_t metricsSlot() const { return metrics_slot_; }
    const std::string& forwardSubjectHeader() const { return forward_subject_; }
    const TicketKeyRingPtr& ticketKeys() const { return keys_; }
    const TlsSessionCachePtr& sessionCache() const { return sessions_; }
    // The session id context of a group (see the top of this file).
    std::string sessionIdContext(std::size_t group) const;

private:
    struct Group {
        SSL_CTX* ctx = nullptr;
        std::vector<std::string> names;
        // Stapled OCSP response (DER) per leaf certificate of this group.
        std::vector<std::pair<const void*, std::string>> staples;
        std::string certificates;  // SHA-256 of each leaf, in order
        std::string sid_ctx;       // session id context
    };

    friend struct TlsServerCallbacks;  // the OpenSSL callbacks, in tls_context.cpp
    TlsServerContext() = default;

    std::vector<Group> groups_;
    std::map<std::string, std::size_t, std::less<>> exact_;     // name -> group
    std::map<std::string, std::size_t, std::less<>> wildcard_;  // "example.com" for *.example.com
    std::chrono::milliseconds handshake_timeout_{10000};
    std::uint32_t max_handshakes_ = 1024;
    std::string forward_subject_;
    TicketKeyRingPtr keys_;
    TlsSessionCachePtr sessions_;
    HandshakeCountPtr handshakes_;  // never null
    std::string alpn_;              // the listener's protocols, ALPN wire format
    std::uint16_t metrics_slot_ = 0;
};

using TlsServerContextPtr = std::shared_ptr<const TlsServerContext>;

// The client context of one upstream with `tls.enabled`.
class TlsClientContext {
public:
    ~TlsClientContext();
    TlsClientContext(const TlsClientContext&) = delete;
    TlsClientContext& operator=(const TlsClientContext&) = delete;

    static std::shared_ptr<TlsClientContext> build(const config::UpstreamTls& tls,
                                                   const std::string& file,
                                                   std::vector<config::Diagnostic>& errors);

    // A client SSL on `fd` in connect state, with SNI and the name (or IP) to verify set.
    // `session`, if not null, is offered for resumption.
    SSL* newSsl(int fd, const SocketAddress& peer, SSL_SESSION* session) const;

    // Starts a non-blocking connect to `address` whose handshake runs with newSsl() once the
    // socket connects. Requests and health probes both reach a TLS server through this, so a
    // probe checks exactly what a request would meet. Null on immediate failure.
    std::unique_ptr<Connection> connect(event::Loop& loop, const SocketAddress& address,
                                        SSL_SESSION* session) const;

private:
    TlsClientContext() = default;
    SSL_CTX* ctx_ = nullptr;
    bool verify_ = true;
    std::string sni_;
};

using TlsClientContextPtr = std::shared_ptr<const TlsClientContext>;

// The TLS contexts of one configuration: built together so --check and reload report every
// certificate problem in one go.
struct TlsContexts {
    std::map<std::string, TlsServerContextPtr> listeners;  // by listener name
    std::map<std::string, TlsClientContextPtr> upstreams;  // by upstream name
};

// Keeps each TLS listener's state across reloads, by listener name: ticket keys and session
// cache, so a reload does not turn every returning client into a full handshake, and the count
// of handshakes in flight, so the cap holds across a reload. Main thread only.
class TlsResumptionStore {
public:
    TicketKeyRingPtr ring(const std::string& listener, std::chrono::milliseconds rotation);
    TlsSessionCachePtr sessions(const std::string& listener, std::size_t capacity);
    // A listener whose bind changed is a new listener (the server rebinds it): its own count.
    // Counts are kept per bind, so a reload that fails after this was called (another
    // listener's bad certificate) cannot split the count of the listener still serving.
    HandshakeCountPtr handshakes(const std::string& listener, const std::string& bind);
    // Drops the state of listeners not in `names` (renamed or removed ones).
    void keepOnly(const std::vector<std::string>& names);

private:
    std::map<std::string, TicketKeyRingPtr> rings_;
    std::map<std::string, TlsSessionCachePtr> sessions_;
    std::map<std::string, std::map<std::string, HandshakeCountPtr>> handshakes_;  // name, bind
};

// Builds every context `cfg` needs; `errors` gets one diagnostic per problem. On errors the
// result must not be used (the old contexts keep serving).
TlsContexts buildTlsContexts(const config::Config& cfg, TlsResumptionStore& resumption,
                             std::vector<config::Diagnostic>& errors);

// The OpenSSL error queue as one line ("error:0A000086:SSL routines::certificate verify
// failed"), emptied.
std::string takeOpenSslErrors();

// Routes OpenSSL's allocations through event's per-thread size-class lists (a handshake makes
// a few hundred short-lived allocations; glibc's slow paths took several percent of its CPU).
// Call first thing in main(), before OpenSSL allocates anything; a no-op under ASan.
void installTlsMemory();

}  // namespace strata::net
