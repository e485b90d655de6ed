// Everything a worker thread owns and its sessions share: the loop, the current snapshot, the
// upstream connection pool, the access log buffer. Touched only on the worker's own thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "strata/cache/cache_runtime.h"
#include "strata/event/loop.h"
#include "strata/metrics/metrics.h"
#include "strata/proxy/access_log.h"
#include "strata/proxy/client_connections.h"
#include "strata/proxy/request_id.h"
#include "strata/proxy/snapshot.h"
#include "strata/upstream/pool.h"

namespace strata::proxy {

class DownstreamSession;
class ParkedConnection;

// What a session needs to know about the listener that accepted it.
struct ListenerInfo {
    std::string name;
    bool tls = false;
    std::uint16_t metric_slot = 0;  // metrics::Registry::proxyListenerSlot(name)
    // A plain listener with h2 in its protocols: a connection opening with the HTTP/2 preface
    // speaks HTTP/2 (prior knowledge). TLS listeners choose by ALPN instead.
    bool h2c = false;
    bool http1 = true;  // http/1.1 is among its protocols
};

class WorkerContext {
public:
    WorkerContext(event::Loop& worker_loop, unsigned worker_id,
                  std::atomic<std::uint32_t>& connections, std::shared_ptr<AccessLogSink> sink)
        : loop(worker_loop),
          id(worker_id),
          pool(worker_loop),
          access_log(std::move(sink)),
          request_ids(worker_id, RequestIdGenerator::randomSeed()),
          process_connections(connections) {}

    event::Loop& loop;
    const unsigned id;
    SnapshotPtr snapshot;  // replaced (on this thread) when a reload is posted
    upstream::ConnectionPool pool;
    AccessLogBuffer access_log;
    RequestIdGenerator request_ids;
    std::atomic<std::uint32_t>& process_connections;  // client connections, all workers
    // Per-address counts for listeners[].max_connections_per_client (shared by all workers).
    ClientConnectionTable* client_connections = nullptr;
    std::uint64_t next_connection_id = 1;
    // This worker's metric shard; null while metrics.enabled is false (nothing is recorded).
    metrics::WorkerMetrics* metrics = nullptr;
    // The process-wide cache (L1, coalescing, L2); null when caching is off entirely.
    cache::CacheRuntime* cache = nullptr;

    // Work that outlives the request that started it (background cache refreshes). Owned here
    // so shutdown frees it; a task removes itself when done.
    void addBackground(std::unique_ptr<event::DeferredDeletable> task);
    void removeBackground(event::DeferredDeletable* task);
    std::size_t backgroundCount() const { return background_.size(); }

    bool draining() const { return draining_; }
    // Stops keep-alive everywhere: idle sessions close now, busy ones after their response.
    // on_drained runs once no session is left.
    void beginDrain(std::function<void()> on_drained);

    void addSession(DownstreamSession* session) { sessions_.insert(session); }
    void removeSession(DownstreamSession* session);
    std::size_t sessionCount() const { return sessions_.size(); }
    // Closes every session at once (drain timeout expired).
    void closeAllSessions();

private:
    friend class ParkedConnection;

    bool draining_ = false;
    std::function<void()> on_drained_;
    std::unordered_set<DownstreamSession*> sessions_;
    ParkedConnection* parked_ = nullptr;  // an intrusive list: no allocation per connection
    std::unordered_map<event::DeferredDeletable*, std::unique_ptr<event::DeferredDeletable>>
        background_;
};

}  // namespace strata::proxy
