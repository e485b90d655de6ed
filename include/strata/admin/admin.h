// The admin API: a small HTTP/1.1 server on `admin.bind`, run by the main thread's loop (never a
// worker's), so a slow scrape or a reload cannot stall the data path.
//
//   GET  /metrics                 Prometheus text format (metrics::Registry)
//   GET  /healthz                 200 while the process runs
//   GET  /readyz                  200 once listeners are bound and a config is loaded, else 503
//   GET  /status                  JSON: config version and load time, upstream servers with
//                                 health and in-flight counts, cache sizes
//   POST /reload                  re-reads the config file (token)
//   POST /purge?url=URL           purge by key / URL prefix / surrogate tag (token); 501 until
//   POST /purge?prefix=PREFIX     the cache provides a PurgeHandler. With "&soft=1" (or true)
//   POST /purge?tag=TAG           matching objects are marked stale instead of removed: they
//                                 are revalidated before reuse and still serve stale-if-error
//
// Anything that changes state requires "Authorization: Bearer TOKEN" with the token read from
// admin.token_file; a wrong or missing token gets 401, is logged and counted. Without a token
// file those endpoints answer 403: they are disabled.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "strata/event/loop.h"

namespace strata::admin {

// ---- interfaces the rest of the process implements ---------------------------------------------

struct ServerStatus {
    std::string address;  // as configured, "127.0.0.1:8000"
    std::uint32_t weight = 1;
    bool healthy = true;    // active checks (true without checks)
    bool available = true;  // healthy and not in passive back-off
    std::uint32_t consecutive_failures = 0;
    std::int64_t in_flight = 0;
};

struct UpstreamStatus {
    std::string name;
    bool health_check = false;
    std::vector<ServerStatus> servers;
};

struct Status {
    std::uint64_t config_version = 0;
    double config_loaded_at = 0;  // unix seconds
    std::string config_path;
    bool ready = false;  // listeners bound, config loaded
    bool draining = false;
    unsigned workers = 0;
    std::uint64_t client_connections = 0;
    std::vector<std::string> listeners;  // "http 127.0.0.1:8080"
    std::vector<UpstreamStatus> upstreams;
};

// Implemented by the server (it owns the snapshot and the upstream state).
class StatusProvider {
public:
    virtual ~StatusProvider() = default;
    virtual Status status() = 0;
};

struct ReloadOutcome {
    bool ok = false;
    std::uint64_t version = 0;        // the version running after the attempt
    std::vector<std::string> errors;  // "FILE:LINE:COL: key.path: message"
};

class ReloadHandler {
public:
    virtual ~ReloadHandler() = default;
    // Runs on the main loop; validates completely before changing anything.
    virtual ReloadOutcome reload() = 0;
};

struct CacheStats {
    std::uint64_t l1_bytes = 0;
    std::uint64_t l1_max_bytes = 0;
    std::uint64_t l1_objects = 0;
    std::uint64_t l2_servers = 0;
    std::uint64_t l2_breakers_open = 0;
};

// Implemented by the cache integration; until then the server passes none and /status shows
// zeros.
class CacheStatsProvider {
public:
    virtual ~CacheStatsProvider() = default;
    virtual CacheStats cacheStats() = 0;
};

struct PurgeResult {
    int status = 200;  // 200 purged (count may be 0), 400 bad argument, 501 unsupported
    std::uint64_t purged = 0;
    std::string message;
};

// Implemented by the cache integration. Calls run on the main loop and must not block it: a
// purge marks entries and lets the L1/L2 owners drop them. `soft`: mark them stale instead.
class PurgeHandler {
public:
    virtual ~PurgeHandler() = default;
    virtual PurgeResult purgeUrl(std::string_view url, bool soft) = 0;
    virtual PurgeResult purgePrefix(std::string_view prefix, bool soft) = 0;
    virtual PurgeResult purgeTag(std::string_view tag, bool soft) = 0;
};

// ---- routing (no sockets: unit-testable) -------------------------------------------------------

struct Request {
    std::string method;
    std::string path;
    std::string query;          // without '?'
    std::string authorization;  // the Authorization field, "" when absent
};

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

struct Handlers {
    StatusProvider* status = nullptr;     // required for /status and /readyz
    ReloadHandler* reload = nullptr;      // null: /reload answers 501
    PurgeHandler* purge = nullptr;        // null: purge answers 501
    CacheStatsProvider* cache = nullptr;  // null: cache sizes are zeros
    std::string metrics_text_for_test;    // non-empty: /metrics answers this (unit tests)
};

class Router {
public:
    explicit Router(Handlers handlers) : handlers_(std::move(handlers)) {}

    // "" disables the state-changing endpoints (403).
    void setToken(std::string token) { token_ = std::move(token); }
    Response handle(const Request& request);

private:
    bool authorized(const Request& request, Response& refusal) const;

    Handlers handlers_;
    std::string token_;
};

// Compares without an early exit, so response time does not reveal how much of a guess matched.
bool constantTimeEquals(std::string_view a, std::string_view b);
// Value of `key` in an application/x-www-form-urlencoded query, percent-decoded; false if absent
// or malformed.
bool queryParam(std::string_view query, std::string_view key, std::string& value);
// Reads the token file: its content with surrounding whitespace trimmed. False with `error`.
bool readTokenFile(const std::string& path, std::string& token, std::string& error);
std::string renderStatusJson(const Status& status, const CacheStats& cache);

// ---- the listener ------------------------------------------------------------------------------

class AdminServer {
public:
    // Takes ownership of a bound, listening, non-blocking socket.
    AdminServer(event::Loop& loop, int listen_fd, Handlers handlers);
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    void setToken(std::string token) { router_.setToken(std::move(token)); }
    // Stops accepting and closes every admin connection.
    void close();

private:
    class Session;
    friend class Session;
    void accept(int fd);
    void remove(Session* session);

    event::Loop& loop_;
    Router router_;
    struct ListenerHolder;
    std::unique_ptr<ListenerHolder> listener_;
    std::vector<Session*> sessions_;
};

}  // namespace strata::admin
