// The validated, immutable configuration snapshot. Built once per load or reload by
// config::load*(), then shared read-only as std::shared_ptr<const Config>: in-flight requests
// keep the snapshot they started with, a reload swaps the pointer (DESIGN.md, "Process and
// threads"). Defaults here are the documented defaults (conf/strata.yaml lists every key).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata::config {

using Duration = std::chrono::milliseconds;

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = 1024 * kKiB;
inline constexpr std::uint64_t kGiB = 1024 * kMiB;

// "host:port", "[v6]:port" or ":port" (all addresses). host is kept textual (numeric IPs only;
// names are resolved never: a proxy must not block on DNS in the data path).
struct Endpoint {
    std::string host;  // "" means any address
    std::uint16_t port = 0;
    std::string text;  // as written, for logs and metrics labels
};

// Where a key was written, so checks that run after loading (the net module opens
// certificates) still report "FILE:LINE:COL: key.path: message".
struct SourcePos {
    int line = 0;  // 1-based; 0 when unknown
    int column = 0;
    std::string path;  // "listeners[1].tls.certificates[0]"
};

struct TlsCertificate {
    std::string cert;         // PEM path (chain allowed)
    std::string key;          // PEM path
    std::string ocsp_staple;  // DER OCSP response file; empty: no stapling
    SourcePos pos;
};

struct ListenerTls {
    std::vector<TlsCertificate> certificates;
    std::string min_version = "1.2";     // "1.2" | "1.3"
    std::string ciphers;                 // empty: built-in intermediate profile
    std::string client_ca;               // PEM CA bundle for client certificates (mTLS)
    std::string verify_client = "off";   // "off" | "optional" | "required"
    std::string forward_client_subject;  // header carrying the verified subject; empty: none
    bool session_tickets = true;
    Duration ticket_key_rotation{3600 * 1000};  // a key encrypts this long, decrypts twice as long
    std::uint32_t session_cache_size = 20480;   // sessions; 0 disables the cache
    Duration handshake_timeout{10000};
    std::uint32_t max_handshakes = 1024;  // concurrent handshakes per listener, whole process
    SourcePos pos;
};

// An address block, "10.0.0.0/8", "2001:db8::/32", or one address ("192.0.2.7" = /32).
struct Cidr {
    bool v6 = false;
    std::array<std::uint8_t, 16> address{};  // network order, host bits zero; v4 in the first 4
    std::uint8_t prefix = 0;
    std::string text;  // as written

    // `bytes`: 4 (v4) or 16 (v6) address bytes in network order. An IPv4 block never holds an
    // IPv6 address: callers unmap IPv4-mapped addresses first (net::inCidrs does).
    bool contains(bool address_v6, const std::uint8_t* bytes) const;
    // Parses `text`; false (and `error`) when it is not a numeric block.
    static bool parse(std::string_view text, Cidr& out, std::string& error);
};

// allow/deny by client address (routes[].access, listeners[].access): a client in `deny` is
// refused; with an `allow` list, so is every client not in it.
struct AccessList {
    std::vector<Cidr> allow;
    std::vector<Cidr> deny;
    bool empty() const { return allow.empty() && deny.empty(); }
};

struct Listener {
    std::string name;
    Endpoint bind;
    std::optional<ListenerTls> tls;
    // Every connection starts with a PROXY protocol header (v1 or v2, read before TLS), whose
    // client address stands in for the peer's. Only peers in trusted_sources may connect.
    bool proxy_protocol = false;
    std::vector<Cidr> trusted_sources;
    // Peers whose X-Forwarded-For is believed: the client is the right-most address in it that
    // is not itself in trusted_proxies (nginx real_ip_recursive). Empty: never believed.
    std::vector<Cidr> trusted_proxies;
    // "h2" and/or "http/1.1", in preference order. Empty in the file means the default:
    // [h2, http/1.1] with TLS (ALPN), [http/1.1] without; "h2" on a plain listener is HTTP/2
    // with prior knowledge (h2c, told apart by the connection preface).
    std::vector<std::string> protocols;
    AccessList access;  // per request, by the real client: 403
    // Open connections one client address may hold on this listener (nginx limit_conn); 0: any.
    std::uint32_t max_connections_per_client = 0;

    bool allows(std::string_view protocol) const {
        for (const auto& p : protocols) {
            if (p == protocol) {
                return true;
            }
        }
        return false;
    }
};

struct Admin {
    std::optional<Endpoint> bind;  // absent: no admin listener
    std::string token_file;
};

struct L1Cache {
    std::uint64_t max_bytes = 256 * kMiB;
};

struct L2Cache {
    std::vector<Endpoint> servers;  // empty: no L2
    Duration timeout{50};
    std::uint64_t max_object_bytes = 1 * kMiB;
    bool chunks = true;                    // over max_object_bytes: chunked, else skipped
    std::string key_namespace = "strata";  // "namespace": memcached key prefix
    std::uint32_t threads = 2;             // blocking libmemcached threads per process
    Duration purge_poll{1000};             // other instances' purges are read this often
    Duration max_ttl{86400 * 1000};        // memcached expiration cap; purge log retention
    // Objects with a validator stay this long past their stale windows, for a 304 (Varnish keep).
    Duration keep{3600 * 1000};
    // Longest a miss waits for another instance's fetch of the same URL (fill lease); 0: off.
    Duration lease_wait{5000};
};

struct Cache {
    L1Cache l1;
    L2Cache l2;
};

struct UpstreamServer {
    Endpoint address;
    std::uint32_t weight = 1;  // 1..1000
    // Requests in flight to this server at once, all workers together; 0 = unlimited. Over the
    // limit a request waits in the upstream's queue (HAProxy's maxconn).
    std::uint32_t max_connections = 0;
};

struct HealthCheck {
    bool enabled = false;  // true once a health_check block is present
    std::string method = "GET";
    std::string path = "/healthz";
    Duration interval{2000};
    Duration timeout{1000};
    std::uint32_t rise = 2;
    std::uint32_t fall = 3;
    int expect_status_min = 200;  // expected status range, inclusive
    int expect_status_max = 399;
};

struct UpstreamTimeouts {
    Duration connect{1000};
    Duration response{30000};       // until the response head, and between reads of its body
    Duration idle{60000};           // a pooled keep-alive connection unused this long is closed
    Duration tunnel_idle{3600000};  // an Upgrade tunnel with no byte either way this long ends
};

// TLS towards an upstream's servers.
struct UpstreamTls {
    bool enabled = false;
    bool verify = true;       // verify the server certificate (chain, and name or IP)
    std::string ca_file;      // PEM CA bundle; empty: the system's default trust store
    std::string sni;          // server name sent and verified; empty: verify the IP address
    std::string client_cert;  // PEM, for servers that require client certificates
    std::string client_key;
    SourcePos pos;
};

// Requests waiting for a server slot when every eligible server is at max_connections.
struct UpstreamQueue {
    std::uint32_t max = 1000;  // waiting requests per upstream; more get 503 at once
    Duration timeout{5000};    // a request waiting longer gets 503
};

// Envoy's retry budget: retries in flight stay within ratio x requests in flight (at least
// min_retries). Absent: only max_tries bounds retries.
struct RetryBudget {
    bool enabled = false;  // true once a retry_budget block is present
    double ratio = 0.2;
    std::uint32_t min_retries = 3;
};

// Where consistent_hash takes its key from (upstreams.<name>.hash).
struct UpstreamHash {
    std::string key = "uri";  // uri (path and query) | client | header:NAME | cookie:NAME
};

struct Upstream {
    std::string name;
    std::vector<UpstreamServer> servers;
    HealthCheck health_check;
    UpstreamTimeouts timeouts;
    std::uint32_t max_idle_connections = 64;  // per worker and server
    std::uint32_t max_tries = 3;              // per request, for idempotent requests
    Duration fail_backoff{5000};              // a server refusing connections is skipped this long
    UpstreamTls tls;
    // round_robin | least_connections | random_two | consistent_hash | first
    std::string balance = "round_robin";
    UpstreamHash hash;
    // "off" | "v1" | "v2": a PROXY protocol header opens every connection to the servers (before
    // TLS), carrying the client's address. Such connections are pooled per client address.
    std::string proxy_protocol = "off";
    // Also send RFC 7239 Forwarded (beside X-Forwarded-*), for servers that read it.
    bool forwarded = false;
    // A server coming back (health check passing again, or added by a reload) ramps from 10%
    // of its weight to all of it over this long; 0 = at once.
    Duration slow_start{0};
    UpstreamQueue queue;
    RetryBudget retry_budget;
};

// A request header or query parameter a route requires (routes[].match.headers / .query).
struct FieldCondition {
    std::string name;     // header names compare case-insensitively, parameters exactly
    std::string value;    // the exact value; "" (and no regex): presence alone
    std::string regex;    // RE2, matched against the whole value
    bool present = true;  // false: the route requires the field to be absent
};

// Everything a route match can ask of a request; every condition given must hold.
struct RouteConditions {
    std::vector<std::string> hosts;    // empty: any; "api.example.com" or "*.example.com"
    std::string path_prefix;           // "" any
    std::string path;                  // exact path (no query); "" any
    std::string path_regex;            // RE2 over the whole path (no query); "" any
    std::vector<std::string> methods;  // empty: any
    std::vector<FieldCondition> headers;
    std::vector<FieldCondition> query;
    std::vector<std::string> listeners;  // listener names; empty: any
    std::vector<Cidr> clients;           // client address blocks; empty: any
};

struct RouteMatch : RouteConditions {
    // `not`: the route does not match a request that meets all of these.
    RouteConditions negated;
    bool has_negated = false;
};

// What names a stored object: the URL with its query as `query` says, plus the values of the
// request fields in `headers`, which select a variant like an implicit Vary (the URL stays the
// primary key, so a purge or invalidation of the URL removes every variant).
struct RouteCacheKey {
    std::string query = "sorted";           // sorted | as_is | ignore | allow_list
    std::vector<std::string> query_params;  // allow_list: the parameters kept (exact names)
    std::vector<std::string> headers;       // request field names, as written
};

// Request fields that frameworks honour to change the URL, method, scheme or host they act on.
// The cache key contains none of them, so on a cacheable route one client could make the origin
// answer a different resource and have that stored for everyone: strata drops them there unless
// the route's cache.allow_override_headers lists one. Spelled as the config accepts them.
inline constexpr std::array<std::string_view, 10> kOverrideFields{
    "X-Original-URL",         "X-Rewrite-URL",
    "X-HTTP-Method-Override", "X-HTTP-Method",
    "X-Method-Override",      "X-Forwarded-Scheme",
    "X-Forwarded-Server",     "X-Forwarded-Prefix",
    "X-Original-Host",        "X-Host",
};

struct RouteCache {
    bool enabled = false;
    Duration default_ttl{0};
    Duration stale_while_revalidate{0};
    Duration stale_if_error{0};
    // RFC 9111 4.2.4: while no server of the upstream can be reached (connect refused or timed
    // out, none healthy), a stale answer is served for this long past its freshness.
    Duration stale_if_unreachable{std::chrono::minutes(5)};
    // Larger bodies stream to the client uncached (also the most buffered for storing).
    std::uint64_t max_object_bytes = 16 * kMiB;
    bool allow_set_cookie = false;  // share responses carrying Set-Cookie
    RouteCacheKey key;
    // Names from kOverrideFields (as spelled there) forwarded on this route all the same.
    std::vector<std::string> allow_override_headers;
};

// Content codings strata applies for clients that accept them (routes[].compression). Off unless
// the key is written: compressing changes what clients receive (Content-Encoding, ETag, Vary) and
// costs CPU, so an operator opts a route in; `compression: {}` takes every default below.
struct RouteCompression {
    bool enabled = false;                              // the key is present
    std::vector<std::string> encodings{"br", "gzip"};  // preference order on a tie
    std::uint64_t min_bytes = 1 * kKiB;                // smaller bodies are sent as they are
    // Media types compressed (lowercase; "text/*" for a whole top-level type).
    std::vector<std::string> types{"text/html",
                                   "text/css",
                                   "text/plain",
                                   "text/xml",
                                   "text/javascript",
                                   "application/javascript",
                                   "application/json",
                                   "application/xml",
                                   "application/rss+xml",
                                   "application/atom+xml",
                                   "application/manifest+json",
                                   "application/wasm",
                                   "image/svg+xml"};
    std::uint32_t level = 6;  // gzip level and brotli quality, 1..9
};

// Header rules of a route (request_headers, response_headers): `remove` drops every field of
// a name, `set` replaces them with one, `add` appends one. Values may name ${client_address},
// ${request_id}, ${scheme} and ${host}, filled in per request.
struct HeaderRules {
    std::vector<std::pair<std::string, std::string>> set;
    std::vector<std::pair<std::string, std::string>> add;
    std::vector<std::string> remove;
    bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};
// What a header rule value may name as ${NAME}.
inline constexpr std::array<std::string_view, 4> kHeaderVariables{"client_address", "request_id",
                                                                  "scheme", "host"};
// The two directions refuse different fields (framing, and what strata itself writes).
struct RequestHeaderRules : HeaderRules {};
struct ResponseHeaderRules : HeaderRules {};

// routes[].redirect: answer with a Location built from the request, never forwarded.
struct RouteRedirect {
    bool enabled = false;        // the key is present
    std::uint32_t status = 301;  // 301 | 302 | 303 | 307 | 308
    std::string scheme;          // "" = the request's
    std::string host;        // "" = the request's (without its port when scheme or port changes)
    std::uint32_t port = 0;  // 0 = the scheme's default (no port written)
    std::string path;        // replaces the whole path; "" = keep it
    std::string prefix;      // replaces match.path_prefix at the front of the path
    std::string query = "keep";  // keep | drop
};

// routes[].respond: a fixed answer (maintenance page, robots.txt), never forwarded.
struct RouteRespond {
    bool enabled = false;
    std::uint32_t status = 200;
    std::string content_type = "text/plain";
    std::string body;
};

// routes[].rewrite: the path sent upstream (the cache key stays the client's URL).
struct RouteRewrite {
    std::string strip_prefix;  // removed from the front when present
    std::string add_prefix;    // then put in front ("" none): strip + add replaces a prefix
    std::string regex;         // RE2 over the whole path, or ""
    std::string replace;       // with \1..\9 for its groups
    bool empty() const { return strip_prefix.empty() && add_prefix.empty() && regex.empty(); }
};

// routes[].rate_limit: requests per key at most `rate` on average, `burst` at once (GCRA).
struct RateLimit {
    bool enabled = false;  // the key is present
    std::string rate;      // as written: "100/s", "600/m", "10/h"
    double rate_per_second = 0;
    std::uint32_t burst = 1;          // requests allowed at once (nginx's burst + 1)
    std::string key = "client";       // client | route | header:NAME
    std::uint32_t max_keys = 100000;  // buckets kept; the least recently used is forgotten
};

struct Route {
    std::string name;  // metric label and logs; "" = the route's index ("0", "1", ...)
    RouteMatch match;
    std::string upstream;  // "" when the route answers itself (redirect or respond)
    RouteRedirect redirect;
    RouteRespond respond;
    RouteRewrite rewrite;
    RequestHeaderRules request_headers;
    ResponseHeaderRules response_headers;
    AccessList access;                         // 403 for clients it refuses
    std::vector<std::string> methods_allowed;  // empty: any; else others get 405 with Allow
    std::uint64_t max_request_body_bytes = 0;  // 0: limits.max_request_body_bytes; else 413
    RateLimit rate_limit;
    RouteCache cache;
    RouteCompression compression;
    bool websocket = true;  // tunnel WebSocket upgrades; false: refuse them with 403
    // Other Upgrade tokens tunnelled as websocket is (lowercase); h2c never is.
    std::vector<std::string> upgrade_protocols;
};

struct Limits {
    Duration client_header_timeout{10000};  // from first byte of a request to its end of head
    Duration client_idle_timeout{60000};    // keep-alive idle between requests
    Duration client_body_timeout{60000};    // between reads of a request body
    Duration send_timeout{60000};           // a client not reading the response this long
    std::uint64_t max_request_body_bytes = 1 * kGiB;
    std::uint32_t max_request_line_bytes = 8 * kKiB;
    std::uint32_t max_header_bytes = 32 * kKiB;  // whole request head
    std::uint32_t max_headers = 100;
    std::uint32_t max_client_connections = 10000;  // whole process
    Duration drain_timeout{30000};
    // Request fields named with '_': "drop" | "allow" | "reject". Whatever the mode, one that
    // reads as Content-Length or Transfer-Encoding with '_' for '-' is refused (400).
    std::string underscores_in_headers = "drop";
};

// HTTP/2 connections (RFC 9113) and their abuse limits (CVE-2023-44487 and kin).
struct Http2 {
    std::uint32_t max_concurrent_streams = 100;  // SETTINGS_MAX_CONCURRENT_STREAMS
    // Rapid reset: streams the client may cancel in a burst, and refilled per second; beyond
    // that nghttp2 tears the connection down with GOAWAY.
    std::uint32_t reset_burst = 1000;
    std::uint32_t reset_rate = 33;
    std::uint32_t max_continuations = 8;     // CONTINUATION frames per header block
    std::uint32_t max_settings = 32;         // entries in one SETTINGS frame
    std::uint32_t window_bytes = 64 * kKiB;  // initial per-stream receive window
};

struct Logging {
    std::string access_log = "stdout";       // "stdout" | "stderr" | "off" | path
    std::string access_format = "combined";  // "combined" | "json"
    std::string error_log = "stderr";        // "stdout" | "stderr" | path
    std::string level = "info";              // debug | info | warn | error
    // What the access log keeps of a client's address: full | truncate (IPv4 /24, IPv6 /48) |
    // hash (keyed HMAC with client_address_key; empty key: random per start and reload).
    std::string client_address = "full";
    std::string client_address_key;
    std::vector<std::string> redact_query;  // parameters whose values the log replaces
};

struct Metrics {
    bool enabled = true;  // false: the data path records nothing (/metrics still answers)
};

struct Config {
    unsigned workers = 0;  // 0 = auto (number of cores), resolved by the server
    std::vector<Listener> listeners;
    Admin admin;
    Cache cache;
    std::map<std::string, Upstream> upstreams;
    std::vector<Route> routes;
    Limits limits;
    Http2 http2;
    Logging logging;
    Metrics metrics;

    std::string source;  // file path (or name given to loadString)
};

using ConfigPtr = std::shared_ptr<const Config>;

// One problem found while loading, formatted "FILE:LINE:COL: key.path: message".
struct Diagnostic {
    std::string file;
    int line = 0;  // 1-based; 0 when unknown (file unreadable)
    int column = 0;
    std::string path;  // "upstreams.app.servers[1]"
    std::string message;

    std::string format() const;
};

struct LoadResult {
    ConfigPtr config;  // null when errors is not empty
    std::vector<Diagnostic> errors;
};

// Parses and validates completely: every error is reported, not just the first. Never throws.
LoadResult loadFile(const std::string& path);
LoadResult loadString(const std::string& text, const std::string& name);

// Unit parsers, exposed for tests: "250ms", "2s", "1m", "1h", "7d", bare integer = seconds;
// "64MiB", "1KiB", "512", "512B", "1GB" (powers of 1000 for kB/KB/MB/GB/TB, of 1024 for
// KiB/MiB/GiB/TiB). No signs, spaces or fractions; overflow is a parse failure.
bool parseDuration(const std::string& text, Duration& out);
bool parseBytes(const std::string& text, std::uint64_t& out);
// Accepts ports 0..65535 (0 = ephemeral); "localhost" becomes 127.0.0.1; a v6 host is stored
// without its brackets. Names other than localhost are rejected: strata never resolves DNS.
bool parseEndpoint(const std::string& text, Endpoint& out, std::string& error);

// Inverse of the parsers, in the largest exact unit: 90000ms -> "90s", 1048576 -> "1MiB".
std::string formatDuration(Duration d);
std::string formatBytes(std::uint64_t bytes);

// One key of the schema the loader validates against, for docs and tests ("every key of the
// schema is documented in conf/strata.yaml"). Paths use "[]" for list items and "<name>" for
// map entries: "upstreams.<name>.servers[].weight".
struct SchemaKey {
    std::string path;
    std::string type;           // "duration", "bytes", "integer", "bool", "string", "a|b|c", ...
    std::string default_value;  // as YAML text; "" when the key has no default (required or none)
    std::string range;          // "1..256", "1ms..1h"; "" when unbounded
    std::string doc;            // one line
    bool required = false;
};
const std::vector<SchemaKey>& schema();

}  // namespace strata::config
