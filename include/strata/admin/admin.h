// The admin API: a small HTTP/1.1 server on `admin.bind`, run by the main thread's loop (never a
// worker's), so a slow scrape or a reload cannot stall the data path.
//
//   GET  /metrics                 Prometheus text format (metrics::Registry)
//   GET  /healthz                 200 while the process runs
//   GET  /readyz                  200 once listeners are bound and a config is loaded, else 503
//   GET  /status                  JSON: config version and load time, keys waiting for a
//                                 restart, upstream servers with health and in-flight counts,
//                                 cache sizes
//   POST /reload                  re-reads the config file (token)
//   POST /purge?url=URL           purge by key / URL prefix / surrogate tag (token); 501 until
//   POST /purge?prefix=PREFIX     the cache provides a PurgeHandler. With "&soft=1" (or true)
//   POST /purge?tag=TAG           matching objects are marked stale instead of removed: they
//                                 are revalidated before reuse and still serve stale-if-error.
//                                 A url or prefix purge covers both http:// and https:// unless
//                                 "&scheme=exact". Every purge is logged (who, what, how many).
//                                 200 only once the shared tier (L2) took the purge too; 503
//                                 when it failed, 504 when it did not confirm in time (this
//                                 process's L1 is purged either way). See PurgeHandler.
//
// Answers are asynchronous where they must be: Router::handle() hands its Response to a
// callback, inline for every endpoint except a purge that waits for L2. The session stops
// reading that connection until the answer is written, so pipelined requests stay in order;
// nothing blocks the loop meanwhile.
//
// Anything that changes state requires "Authorization: Bearer TOKEN" with the token read from
// admin.token_file; a wrong or missing token gets 401, is logged and counted. Without a token
// file those endpoints answer 403: they are disabled.
#pragma once

#include <cstdint>
#include <functional>
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
    // Config keys changed by a reload that only take effect after a restart ("workers").
    std::vector<std::string> pending_restart;
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
    // 200 purged everywhere this process can reach (count may be 0); 400 bad argument; 503 the
    // shared tier (L2) refused or failed the purge; 504 it did not confirm it in time. With
    // 503/504 the local L1 was purged all the same and `purged` counts it.
    int status = 200;
    std::uint64_t purged = 0;  // objects purged from this process's L1
    std::string message;       // the body of a non-200 answer
};
using PurgeDone = std::function<void(PurgeResult)>;

// Implemented by the cache integration. Calls run on the admin (main) loop and must not block
// it. L1 is purged at once; the shared tier (L2) through its purge log, whose append runs on
// the L2 pool: `done` runs exactly once, inline (bad argument, no L2) or later on the admin
// loop when the append finished, and the implementation bounds that wait. Other instances
// sharing the L2 keep serving the objects when the append failed, so the operator must hear
// it: that is why the answer waits. `soft`: mark the objects stale instead of removing them.
// `both_schemes`: a URL or prefix purge also purges the same URL under the other scheme
// (http:// and https:// copies are cached apart but are one resource to most sites).
class PurgeHandler {
public:
    virtual ~PurgeHandler() = default;
    virtual void purgeUrl(std::string_view url, bool soft, bool both_schemes, PurgeDone done) = 0;
    virtual void purgePrefix(std::string_view prefix, bool soft, bool both_schemes,
                             PurgeDone done) = 0;
    virtual void purgeTag(std::string_view tag, bool soft, PurgeDone done) = 0;
};

// ---- routing (no sockets: unit-testable) -------------------------------------------------------

struct Request {
    std::string method;
    std::string path;
    std::string query;          // without '?'
    std::string authorization;  // the Authorization field, "" when absent
    std::string peer;           // the client's address, "127.0.0.1:50123", for the audit log
};

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string allow;  // the Allow field of a 405: "GET, HEAD", "POST"
};

struct Handlers {
    StatusProvider* status = nullptr;     // required for /status and /readyz
    ReloadHandler* reload = nullptr;      // null: /reload answers 501
    PurgeHandler* purge = nullptr;        // null: purge answers 501
    CacheStatsProvider* cache = nullptr;  // null: cache sizes are zeros
    std::string metrics_text_for_test;    // non-empty: /metrics answers this (unit tests)
};

using Responder = std::function<void(Response)>;

class Router {
public:
    explicit Router(Handlers handlers) : handlers_(std::move(handlers)) {}

    // "" disables the state-changing endpoints (403).
    void setToken(std::string token) { token_ = std::move(token); }
    // `respond` runs exactly once: inline, or later on this loop for a purge waiting for L2
    // (it must then still be safe to call: capture a liveness guard, not a bare `this`).
    // Every answer is counted in strata_admin_requests_total when it is given.
    void handle(const Request& request, Responder respond);

private:
    Response answer(const Request& request);  // every endpoint but /purge: inline
    void purge(const Request& request, Responder respond);
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
    void accept(int fd, std::string peer);
    void remove(Session* session);

    event::Loop& loop_;
    Router router_;
    struct ListenerHolder;
    std::unique_ptr<ListenerHolder> listener_;
    std::vector<Session*> sessions_;
};

}  // namespace strata::admin
