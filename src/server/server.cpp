// Process lifecycle. The main thread owns config loading, signals and reload; workers own the
// data path. A reload builds a complete new snapshot off the workers and posts it to each;
// requests in flight keep the snapshot they started with.
#include "strata/server/server.h"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <signal.h>
#include <thread>
#include <unistd.h>

#include <event2/event.h>

#include "strata/common/log.h"
#include "strata/config/config.h"
#include "strata/event/loop.h"
#include "strata/net/socket.h"
#include "strata/proxy/snapshot.h"
#include "strata/upstream/balancer.h"

#include "worker.h"

namespace strata::server {
namespace {

constexpr int kExitConfig = 78;  // EX_CONFIG (sysexits.h)
constexpr int kListenBacklog = 4096;

void printDiagnostics(const std::vector<config::Diagnostic>& errors) {
    for (const auto& d : errors) {
        std::fprintf(stderr, "%s\n", d.format().c_str());
    }
}

unsigned resolveWorkers(const config::Config& cfg) {
    if (cfg.workers > 0) {
        return cfg.workers;
    }
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : n;
}

// Every worker binds its own socket to the same address (SO_REUSEPORT). With port 0 the first
// bind picks the port and the others reuse it.
Result<std::vector<std::vector<BoundListener>>> bindListeners(
    const config::Config& cfg, unsigned workers, std::vector<std::string>& port_lines) {
    std::vector<std::vector<BoundListener>> per_worker(workers);
    for (const auto& listener : cfg.listeners) {
        auto address = net::SocketAddress::fromEndpoint(listener.bind);
        if (!address) {
            return Error{"listener " + listener.name + ": " + address.error()};
        }
        net::SocketAddress bind_address = address.value();
        for (unsigned w = 0; w < workers; ++w) {
            auto fd = net::listenTcp(bind_address, /*reuse_port=*/true, kListenBacklog);
            if (!fd) {
                return Error{"listener " + listener.name + ": " + fd.error()};
            }
            if (w == 0) {
                std::uint16_t port = net::localPort(fd.value());
                config::Endpoint resolved = listener.bind;
                resolved.port = port;
                auto with_port = net::SocketAddress::fromEndpoint(resolved);
                bind_address = with_port.value();
                port_lines.push_back(listener.name + " " + bind_address.toString());
            }
            proxy::ListenerInfo info{listener.name, listener.tls.has_value()};
            per_worker[w].push_back(BoundListener{info, fd.value()});
        }
    }
    return per_worker;
}

bool writePortFile(const std::string& path, const std::vector<std::string>& lines) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        for (const auto& line : lines) {
            out << line << "\n";
        }
        if (!out) {
            return false;
        }
    }
    // rename() is atomic: a reader never sees a half-written file.
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

class Server {
public:
    explicit Server(Options options) : options_(std::move(options)) {}

    int run() {
        config::LoadResult loaded = config::loadFile(options_.config_path);
        if (!loaded.config) {
            printDiagnostics(loaded.errors);
            return kExitConfig;
        }
        if (options_.check_only) {
            std::printf("%s: configuration ok\n", options_.config_path.c_str());
            return 0;
        }
        const config::Config& cfg = *loaded.config;
        if (!applyLogging(cfg)) {
            return 1;
        }
        ::signal(SIGPIPE, SIG_IGN);

        unsigned worker_count = resolveWorkers(cfg);
        std::vector<std::string> port_lines;
        auto bound = bindListeners(cfg, worker_count, port_lines);
        if (!bound) {
            LOG_ERROR("%s", bound.error().c_str());
            return 1;
        }
        snapshot_version_ = 1;
        current_ =
            std::make_shared<const proxy::Snapshot>(loaded.config, registry_, snapshot_version_);
        for (unsigned w = 0; w < worker_count; ++w) {
            workers_.push_back(std::make_unique<Worker>(w, std::move(bound.value()[w]), current_,
                                                        process_connections_, access_sink_));
        }
        running_workers_ = worker_count;
        for (auto& worker : workers_) {
            worker->start([this] { loop_.post([this] { onWorkerExit(); }); });
        }
        if (!options_.port_file.empty() && !writePortFile(options_.port_file, port_lines)) {
            LOG_ERROR("cannot write port file %s", options_.port_file.c_str());
        }
        for (const auto& line : port_lines) {
            LOG_INFO("listening: %s", line.c_str());
        }
        LOG_INFO("strata %s started with %u workers, config %s", STRATA_VERSION, worker_count,
                 options_.config_path.c_str());

        installSignals();
        loop_.run();
        for (auto& worker : workers_) {
            worker->join();
        }
        workers_.clear();
        LOG_INFO("strata stopped");
        return 0;
    }

private:
    bool applyLogging(const config::Config& cfg) {
        log::Level level = log::Level::Info;
        log::parseLevel(cfg.logging.level, level);
        log::setLevel(level);
        std::string error;
        if (!log::setTarget(cfg.logging.error_log, error)) {
            std::fprintf(stderr, "strata: %s\n", error.c_str());
            return false;
        }
        auto sink =
            proxy::AccessLogSink::open(cfg.logging.access_log, cfg.logging.access_format, error);
        if (!sink) {
            LOG_ERROR("%s", error.c_str());
            return false;
        }
        access_sink_ = std::move(sink);
        return true;
    }

    void installSignals() {
        auto add = [this](int signo, void (*fn)(evutil_socket_t, short, void*)) {
            ::event* ev = evsignal_new(loop_.base(), signo, fn, this);
            evsignal_add(ev, nullptr);
            signal_events_.push_back(ev);
        };
        add(SIGTERM, &Server::onTerminate);
        add(SIGINT, &Server::onTerminate);
        add(SIGHUP, &Server::onReload);
        add(SIGUSR1, &Server::onReopenLogs);
    }

    static void onTerminate(evutil_socket_t, short, void* arg) {
        static_cast<Server*>(arg)->beginDrain();
    }
    static void onReload(evutil_socket_t, short, void* arg) { static_cast<Server*>(arg)->reload(); }
    static void onReopenLogs(evutil_socket_t, short, void* arg) {
        auto* self = static_cast<Server*>(arg);
        log::reopen();
        if (self->access_sink_) {
            self->access_sink_->reopen();
        }
        LOG_INFO("log files reopened");
    }

    void beginDrain() {
        if (draining_) {
            return;
        }
        draining_ = true;
        const auto timeout = current_->config->limits.drain_timeout;
        LOG_INFO("draining: no new connections, finishing requests in flight (up to %lld ms)",
                 static_cast<long long>(timeout.count()));
        for (auto& worker : workers_) {
            worker->drain();
        }
        drain_timer_ = std::make_unique<event::Timer>(loop_, [this] {
            LOG_WARN("drain timeout: closing remaining connections");
            for (auto& worker : workers_) {
                worker->forceStop();
            }
        });
        drain_timer_->arm(timeout);
    }

    void onWorkerExit() {
        if (--running_workers_ == 0) {
            for (::event* ev : signal_events_) {
                event_free(ev);
            }
            signal_events_.clear();
            drain_timer_.reset();
            event_base_loopbreak(loop_.base());
        }
    }

    void reload() {
        if (draining_) {
            return;
        }
        config::LoadResult loaded = config::loadFile(options_.config_path);
        if (!loaded.config) {
            LOG_ERROR("reload of %s failed; the running configuration (version %llu) stays",
                      options_.config_path.c_str(),
                      static_cast<unsigned long long>(snapshot_version_));
            for (const auto& d : loaded.errors) {
                LOG_ERROR("%s", d.format().c_str());
            }
            return;
        }
        // TODO(lead): listener, worker-count and log-target changes need a restart until the
        // operations issue lands (#5).
        auto snapshot =
            std::make_shared<const proxy::Snapshot>(loaded.config, registry_, ++snapshot_version_);
        current_ = snapshot;
        for (auto& worker : workers_) {
            worker->updateSnapshot(snapshot);
        }
        LOG_INFO("configuration reloaded (version %llu)",
                 static_cast<unsigned long long>(snapshot_version_));
    }

    Options options_;
    event::Loop loop_;
    upstream::ServerRegistry registry_;
    proxy::SnapshotPtr current_;
    std::uint64_t snapshot_version_ = 0;
    std::shared_ptr<proxy::AccessLogSink> access_sink_;
    std::atomic<std::uint32_t> process_connections_{0};
    std::vector<std::unique_ptr<Worker>> workers_;
    unsigned running_workers_ = 0;
    std::vector<::event*> signal_events_;
    std::unique_ptr<event::Timer> drain_timer_;
    bool draining_ = false;
};

}  // namespace

int run(int argc, const char* const* argv) {
    auto options = parseOptions(argc, argv);
    if (!options) {
        std::fprintf(stderr, "strata: %s\n%s", options.error().c_str(), usage().c_str());
        return 2;
    }
    if (options->show_help) {
        std::printf("%s", usage().c_str());
        return 0;
    }
    if (options->show_version) {
        std::printf("strata %s\n", STRATA_VERSION);
        return 0;
    }
    Server server(std::move(options.value()));
    return server.run();
}

}  // namespace strata::server
