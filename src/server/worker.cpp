#include "worker.h"

#include <unistd.h>

#include "strata/common/log.h"
#include "strata/common/memory.h"
#include "strata/proxy/downstream_session.h"

namespace strata::server {
namespace {
// Access-log flush and freed-memory release.
constexpr std::chrono::milliseconds kHousekeepingInterval{1000};
}  // namespace

Worker::Worker(unsigned id, std::vector<BoundListener> listeners, proxy::SnapshotPtr snapshot,
               std::atomic<std::uint32_t>& process_connections,
               std::shared_ptr<proxy::AccessLogSink> access_sink,
               proxy::ClientConnectionTable* client_connections)
    : id_(id),
      context_(loop_, id, process_connections, std::move(access_sink)),
      bound_(std::move(listeners)),
      metrics_shard_(metrics::global().worker(id)) {
    context_.snapshot = std::move(snapshot);
    context_.client_connections = client_connections;
    applyMetricsSwitch();
    for (const auto& bound : bound_) {
        listen(bound);
    }
    housekeeping_timer_ = std::make_unique<event::Timer>(loop_, [this] {
        context_.access_log.flush();
        memory::releaseFreedMemory();
        housekeeping_timer_->arm(kHousekeepingInterval);
    });
}

Worker::~Worker() {
    join();
    listeners_.clear();
    header_readers_.clear();
    context_.closeAllSessions();
    context_.access_log.flush();
}

void Worker::listen(const BoundListener& bound) {
    proxy::ListenerInfo info = bound.info;
    listeners_.push_back(std::make_unique<net::Listener>(
        loop_, bound.fd,
        [this, info](int fd, const net::SocketAddress& peer) { accept(info, fd, peer); }));
}

void Worker::applyMetricsSwitch() {
    context_.metrics = context_.snapshot->config->metrics.enabled ? &metrics_shard_ : nullptr;
}

void Worker::addListeners(std::vector<BoundListener> listeners) {
    loop_.post([this, listeners = std::move(listeners)]() {
        for (const auto& bound : listeners) {
            if (context_.draining()) {
                ::close(bound.fd);
                continue;
            }
            bound_.push_back(bound);
            listen(bound);
        }
    });
}

void Worker::removeListener(const std::string& name) {
    loop_.post([this, name] {
        for (std::size_t i = 0; i < bound_.size();) {
            if (bound_[i].info.name == name) {
                listeners_[i]->close();
                listeners_.erase(listeners_.begin() + static_cast<std::ptrdiff_t>(i));
                bound_.erase(bound_.begin() + static_cast<std::ptrdiff_t>(i));
            } else {
                ++i;
            }
        }
    });
}

void Worker::start(std::function<void()> on_exit) {
    thread_ = std::thread([this, on_exit = std::move(on_exit)] {
        housekeeping_timer_->arm(kHousekeepingInterval);
        loop_.run();
        context_.access_log.flush();
        on_exit();
    });
}

void Worker::join() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Worker::accept(const proxy::ListenerInfo& info, int fd, const net::SocketAddress& peer) {
    const auto& limits = context_.snapshot->config->limits;
    if (context_.draining() || context_.process_connections.load(std::memory_order_relaxed) >=
                                   limits.max_client_connections) {
        // Over the connection cap: closing at once is cheaper for everyone than queueing.
        ::close(fd);
        return;
    }
    if (const config::Listener* listener = context_.snapshot->listenerConfig(info.name);
        listener != nullptr && listener->proxy_protocol) {
        readProxyHeader(info, fd, peer, *listener);
        return;
    }
    startSession(info, fd, peer, net::SocketAddress{});
}

void Worker::readProxyHeader(const proxy::ListenerInfo& info, int fd,
                             const net::SocketAddress& peer, const config::Listener& listener) {
    if (!net::inCidrs(listener.trusted_sources, peer)) {
        // A header from anyone else is a claim nobody vouches for; without one the peer is
        // not what this listener serves. Closed before a byte is read.
        if (context_.metrics != nullptr) {
            context_.metrics->proxyProtocol(metrics::ProxyProtocolResult::Untrusted);
        }
        ::close(fd);
        return;
    }
    // The header comes before the request head, so it shares its deadline (a silent peer is
    // the same slowloris either way).
    const auto timeout = context_.snapshot->config->limits.client_header_timeout;
    auto reader = std::make_unique<net::ProxyHeaderReader>(
        loop_, fd, timeout,
        [this, info, peer](net::ProxyHeaderReader& done, net::ProxyHeaderReader::Outcome outcome,
                           int session_fd, const net::proxy_protocol::Header& header,
                           const char* error) {
            if (auto it = header_readers_.find(&done); it != header_readers_.end()) {
                loop_.deferredDelete(std::move(it->second));  // we are inside its callback
                header_readers_.erase(it);
            }
            using Outcome = net::ProxyHeaderReader::Outcome;
            metrics::ProxyProtocolResult result = metrics::ProxyProtocolResult::Ok;
            if (outcome == Outcome::Timeout) {
                result = metrics::ProxyProtocolResult::Timeout;
            } else if (outcome == Outcome::Malformed) {
                result = metrics::ProxyProtocolResult::Malformed;
            } else if (header.local) {
                result = metrics::ProxyProtocolResult::Local;
            }
            if (context_.metrics != nullptr) {
                context_.metrics->proxyProtocol(result);
            }
            if (outcome != Outcome::Ok) {
                LOG_DEBUG("[w%u] PROXY header from %s refused: %s", id_, peer.toString().c_str(),
                          error);
                return;
            }
            if (header.local) {
                startSession(info, session_fd, peer, net::SocketAddress{});
            } else {
                startSession(info, session_fd, header.source, header.destination);
            }
        });
    net::ProxyHeaderReader* raw = reader.get();
    header_readers_.emplace(raw, std::move(reader));
    raw->start();
}

void Worker::startSession(const proxy::ListenerInfo& info, int fd, const net::SocketAddress& peer,
                          const net::SocketAddress& local) {
    if (context_.draining()) {
        ::close(fd);
        return;
    }
    net::TlsServerContextPtr tls;
    if (info.tls) {
        tls = context_.snapshot->tlsFor(info.name);
        if (!tls || tls->handshakes().load(std::memory_order_relaxed) >= tls->maxHandshakes()) {
            // A handshake flood must not starve established connections of CPU.
            if (tls && context_.metrics != nullptr) {
                context_.metrics->tlsHandshakeRefused(tls->metricsSlot());
            }
            ::close(fd);
            return;
        }
    }
    bool holds_slot = false;
    if (const config::Listener* listener = context_.snapshot->listenerConfig(info.name);
        listener != nullptr && listener->max_connections_per_client > 0 &&
        context_.client_connections != nullptr) {
        if (!context_.client_connections->acquire(peer, listener->max_connections_per_client)) {
            if (context_.metrics != nullptr) {
                context_.metrics->perClientConnectionRefused();
            }
            ::close(fd);
            return;
        }
        holds_slot = true;
    }
    auto* session = new proxy::DownstreamSession(context_, fd, peer, info, std::move(tls), local);
    if (holds_slot) {
        session->holdClientSlot();  // released when the session closes
    }
    session->start();  // from here the session owns itself and dies through deferredDelete
}

void Worker::updateSnapshot(proxy::SnapshotPtr snapshot) {
    loop_.post([this, snapshot = std::move(snapshot)]() mutable {
        context_.snapshot = std::move(snapshot);
        applyMetricsSwitch();
    });
}

void Worker::drain() {
    loop_.post([this] {
        for (auto& listener : listeners_) {
            listener->close();
        }
        header_readers_.clear();  // no request yet: nothing to finish
        context_.beginDrain([this] { loop_.stop(); });
    });
}

void Worker::forceStop() {
    loop_.post([this] {
        header_readers_.clear();
        context_.closeAllSessions();
        loop_.stop();
    });
}

void Worker::reopenLogs(std::shared_ptr<proxy::AccessLogSink> sink) {
    loop_.post(
        [this, sink = std::move(sink)]() mutable { context_.access_log.setSink(std::move(sink)); });
}

}  // namespace strata::server
