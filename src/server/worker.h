// A worker thread: its own event loop, its own SO_REUSEPORT listening sockets, and every
// connection accepted on them for their whole life.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "strata/event/loop.h"
#include "strata/net/listener.h"
#include "strata/net/proxy_header_reader.h"
#include "strata/proxy/worker_context.h"

namespace strata::server {

struct BoundListener {
    proxy::ListenerInfo info;
    int fd;
};

class Worker {
public:
    Worker(unsigned id, std::vector<BoundListener> listeners, proxy::SnapshotPtr snapshot,
           std::atomic<std::uint32_t>& process_connections,
           std::shared_ptr<proxy::AccessLogSink> access_sink,
           proxy::ClientConnectionTable* client_connections = nullptr);
    ~Worker();

    // The process-wide cache every session of this worker uses (null: no caching). Before start().
    void setCache(cache::CacheRuntime* cache) { context_.cache = cache; }
    void start(std::function<void()> on_exit);
    void join();

    // Thread-safe: each posts to the worker's loop.
    void updateSnapshot(proxy::SnapshotPtr snapshot);
    void drain();
    void forceStop();
    void reopenLogs(std::shared_ptr<proxy::AccessLogSink> sink);
    // Reload: starts accepting on newly bound sockets / stops accepting on a listener (its
    // connections finish normally).
    void addListeners(std::vector<BoundListener> listeners);
    void removeListener(const std::string& name);

private:
    void accept(const proxy::ListenerInfo& info, int fd, const net::SocketAddress& peer);
    // Reads a PROXY protocol header first (listeners with proxy_protocol), then startSession().
    void readProxyHeader(const proxy::ListenerInfo& info, int fd, const net::SocketAddress& peer,
                         const config::Listener& listener);
    // `local`: what the client connected to when a PROXY header said so, else empty.
    void startSession(const proxy::ListenerInfo& info, int fd, const net::SocketAddress& peer,
                      const net::SocketAddress& local);
    void listen(const BoundListener& bound);
    void applyMetricsSwitch();

    unsigned id_;
    event::Loop loop_;
    proxy::WorkerContext context_;
    std::vector<BoundListener> bound_;
    std::vector<std::unique_ptr<net::Listener>> listeners_;
    std::unique_ptr<event::Timer> housekeeping_timer_;
    // Connections still sending their PROXY header: not sessions yet, but closed on shutdown.
    std::unordered_map<net::ProxyHeaderReader*, std::unique_ptr<net::ProxyHeaderReader>>
        header_readers_;
    std::thread thread_;
    metrics::WorkerMetrics& metrics_shard_;
};

}  // namespace strata::server
