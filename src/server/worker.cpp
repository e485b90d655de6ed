#include "worker.h"

#include <unistd.h>

#include "strata/common/log.h"
#include "strata/proxy/downstream_session.h"

namespace strata::server {
namespace {
constexpr std::chrono::milliseconds kAccessLogFlushInterval{1000};
}

Worker::Worker(unsigned id, std::vector<BoundListener> listeners, proxy::SnapshotPtr snapshot,
               std::atomic<std::uint32_t>& process_connections,
               std::shared_ptr<proxy::AccessLogSink> access_sink)
    : id_(id),
      context_(loop_, id, process_connections, std::move(access_sink)),
      bound_(std::move(listeners)),
      metrics_shard_(metrics::global().worker(id)) {
    context_.snapshot = std::move(snapshot);
    applyMetricsSwitch();
    for (const auto& bound : bound_) {
        listen(bound);
    }
    flush_timer_ = std::make_unique<event::Timer>(loop_, [this] {
        context_.access_log.flush();
        flush_timer_->arm(kAccessLogFlushInterval);
    });
}

Worker::~Worker() {
    join();
    listeners_.clear();
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
        flush_timer_->arm(kAccessLogFlushInterval);
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
    auto* session = new proxy::DownstreamSession(context_, fd, peer, info, std::move(tls));
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
        context_.beginDrain([this] { loop_.stop(); });
    });
}

void Worker::forceStop() {
    loop_.post([this] {
        context_.closeAllSessions();
        loop_.stop();
    });
}

void Worker::reopenLogs(std::shared_ptr<proxy::AccessLogSink> sink) {
    loop_.post(
        [this, sink = std::move(sink)]() mutable { context_.access_log.setSink(std::move(sink)); });
}

}  // namespace strata::server
