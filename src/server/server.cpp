// Process lifecycle. The main thread owns config loading, signals and reload; workers own the
// data path. A reload builds a complete new snapshot off the workers and posts it to each;
// requests in flight keep the snapshot they started with.
#include "strata/server/server.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <signal.h>
#include <thread>
#include <unistd.h>

#include <event2/event.h>

#include "strata/admin/admin.h"
#include "strata/cache/cache_runtime.h"
#include "strata/cache/key.h"
#include "strata/cache/l2_cache.h"
#include "strata/common/log.h"
#include "strata/config/config.h"
#include "strata/event/buffer_memory.h"
#include "strata/event/loop.h"
#include "strata/metrics/metrics.h"
#include "strata/net/socket.h"
#include "strata/net/tls_context.h"
#include "strata/proxy/snapshot.h"
#include "strata/upstream/balancer.h"

#include "health_checker.h"
#include "worker.h"

namespace strata::server {
namespace {

std::shared_ptr<const proxy::LogPrivacy> logPrivacy(const config::Logging& logging) {
    proxy::LogPrivacy::ClientMode mode = proxy::LogPrivacy::ClientMode::Full;
    proxy::LogPrivacy::parseMode(logging.client_address, mode);  // the config checked the name
    return std::make_shared<const proxy::LogPrivacy>(mode, logging.client_address_key,
                                                     logging.redact_query);
}

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
            proxy::ListenerInfo info{listener.name, listener.tls.has_value(),
                                     metrics::global().proxyListenerSlot(listener.name),
                                     !listener.tls && listener.allows("h2"),
                                     listener.allows("http/1.1")};
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

struct ListenerKey {
    std::string bind;
    bool tls = false;
    // Plain sockets are told at accept whether to look for the HTTP/2 preface or speak
    // HTTP/1.1: a change rebinds them (TLS listeners take it from their new context).
    bool h2c = false;
    bool http1 = true;
    bool operator==(const ListenerKey&) const = default;
};

ListenerKey keyOf(const config::Listener& l) {
    return ListenerKey{l.bind.text, l.tls.has_value(), !l.tls && l.allows("h2"),
                       l.allows("http/1.1")};
}

// A key the reload path cannot apply: the running process keeps the value it started with.
struct RestartOnlyChange {
    std::string key;
    std::string running;  // the value in effect, as an operator would write it
    std::string next;     // the value in the reloaded file
};

std::string joinEndpoints(const std::vector<config::Endpoint>& endpoints) {
    std::string out = "[";
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
        out += (i ? ", " : "") + endpoints[i].text;
    }
    return out + "]";
}

// Keys read only at start: the worker threads, the whole L2 client (built once and shared by
// every snapshot; the L1 budget is applied on reload by applyL1Budget()) and the error log target
// (reload changes its level only). `started` is the config the process started with, not the
// previous snapshot, so a change stays listed across later reloads until a restart (or until it is
// reverted).
std::vector<RestartOnlyChange> restartOnlyChanges(const config::Config& started,
                                                  const config::Config& next) {
    std::vector<RestartOnlyChange> changes;
    auto compare = [&](const char* key, std::string running, std::string wanted) {
        if (running != wanted) {
            changes.push_back({key, std::move(running), std::move(wanted)});
        }
    };
    auto boolText = [](bool b) { return std::string(b ? "true" : "false"); };
    compare("workers", std::to_string(resolveWorkers(started)),
            std::to_string(resolveWorkers(next)));
    const auto& l2_started = started.cache.l2;
    const auto& l2_next = next.cache.l2;
    compare("cache.l2.servers", joinEndpoints(l2_started.servers), joinEndpoints(l2_next.servers));
    compare("cache.l2.timeout", config::formatDuration(l2_started.timeout),
            config::formatDuration(l2_next.timeout));
    compare("cache.l2.max_object_bytes", config::formatBytes(l2_started.max_object_bytes),
            config::formatBytes(l2_next.max_object_bytes));
    compare("cache.l2.chunks", boolText(l2_started.chunks), boolText(l2_next.chunks));
    compare("cache.l2.namespace", l2_started.key_namespace, l2_next.key_namespace);
    compare("cache.l2.threads", std::to_string(l2_started.threads),
            std::to_string(l2_next.threads));
    compare("cache.l2.purge_poll", config::formatDuration(l2_started.purge_poll),
            config::formatDuration(l2_next.purge_poll));
    compare("cache.l2.max_ttl", config::formatDuration(l2_started.max_ttl),
            config::formatDuration(l2_next.max_ttl));
    compare("logging.error_log", started.logging.error_log, next.logging.error_log);
    return changes;
}

double unixNow() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

class Server final : private admin::StatusProvider,
                     private admin::ReloadHandler,
                     private admin::PurgeHandler,
                     private admin::CacheStatsProvider {
public:
    explicit Server(Options options) : options_(std::move(options)), health_(loop_) {}

    int run() {
        config::LoadResult loaded = config::loadFile(options_.config_path);
        if (!loaded.config) {
            printDiagnostics(loaded.errors);
            return kExitConfig;
        }
        // Certificates are opened here, so --check and reload report them like config errors.
        std::vector<config::Diagnostic> tls_errors;
        net::TlsContexts tls = net::buildTlsContexts(*loaded.config, resumption_, tls_errors);
        if (!tls_errors.empty()) {
            printDiagnostics(tls_errors);
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

        worker_count_ = resolveWorkers(cfg);
        std::vector<std::string> port_lines;
        auto bound = bindListeners(cfg, worker_count_, port_lines);
        if (!bound) {
            LOG_ERROR("%s", bound.error().c_str());
            return 1;
        }
        for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
            listener_lines_[cfg.listeners[i].name] = port_lines[i];
        }
        std::string admin_error;
        if (!applyAdmin(cfg, admin_error)) {
            LOG_ERROR("%s", admin_error.c_str());
            return 1;
        }
        snapshot_version_ = 1;
        auto first = std::make_shared<proxy::Snapshot>(loaded.config, registry_, snapshot_version_);
        first->attachTls(std::move(tls));
        current_ = first;
        started_config_ = loaded.config;
        loaded_at_ = unixNow();
        metrics::global().configReload(metrics::ReloadResult::Success, loaded_at_);
        registerGauges();
        for (unsigned w = 0; w < worker_count_; ++w) {
            workers_.push_back(std::make_unique<Worker>(w, std::move(bound.value()[w]), current_,
                                                        process_connections_, access_sink_,
                                                        &client_connections_));
        }
        running_workers_ = worker_count_;
        // The cache outlives config snapshots: it is built once, from the first config.
        cache::L1Options l1_options;
        l1_options.max_bytes = loaded.config->cache.l1.max_bytes;
        cache_ = std::make_unique<cache::CacheRuntime>(l1_options);
        metrics::global().setL1Source([l1 = cache_->l1.get()] {
            const cache::L1Stats stats = l1->stats();
            return metrics::Registry::L1Usage{stats.bytes, stats.objects, stats.evictions,
                                              stats.rejected_too_large, stats.rejected_disabled};
        });
        if (!loaded.config->cache.l2.servers.empty()) {
            // Other instances' purges (from the shared purge log) reach this L1 through here.
            cache::L1Cache* l1 = cache_->l1.get();
            l2_ = std::make_unique<cache::L2Cache>(
                cache::L2Options::fromConfig(loaded.config->cache.l2),
                [l1](const cache::PurgeRecord& record) {
                    switch (record.kind) {
                        case cache::PurgeKind::Url:
                            l1->purgeKey(record.value, record.soft);
                            break;
                        case cache::PurgeKind::Prefix:
                            l1->purgePrefix(record.value, record.soft);
                            break;
                        case cache::PurgeKind::Tag:
                            l1->purgeTag(record.value, record.soft);
                            break;
                        case cache::PurgeKind::All:
                            l1->clear();
                            break;
                    }
                });
            cache_->l2 = l2_.get();
            // A purge-log append is a few memcached round trips, each bounded by the timeout
            // (plus CAS back-off under contention); below the admin idle timeout (30 s).
            purge_wait_ =
                std::clamp(20 * loaded.config->cache.l2.timeout, std::chrono::milliseconds(1000),
                           std::chrono::milliseconds(20000));
        }
        for (auto& worker : workers_) {
            worker->setCache(cache_.get());
        }
        for (auto& worker : workers_) {
            worker->start([this] { loop_.post([this] { onWorkerExit(); }); });
        }
        health_.update(*current_);
        // Handlers first: a test or init system may signal as soon as the port file appears.
        installSignals();
        writePorts();
        written_admin_line_ = admin_line_;
        LOG_INFO("strata %s started with %u workers, config %s", STRATA_VERSION, worker_count_,
                 options_.config_path.c_str());
        ready_ = true;

        loop_.run();
        for (auto& worker : workers_) {
            worker->join();
        }
        workers_.clear();
        metrics::global().setL1Source(nullptr);  // the cache dies with the server
        LOG_INFO("strata stopped");
        return 0;
    }

private:
    // cache.l1.max_bytes is live: the L1 keeps what fits the new budget (issue 15).
    void applyL1Budget(const config::Config& cfg) {
        const std::uint64_t before = cache_->l1->maxBytes();
        const std::uint64_t after = cfg.cache.l1.max_bytes;
        if (before == after) {
            return;
        }
        cache_->l1->setMaxBytes(after);
        LOG_INFO("reload: cache.l1.max_bytes %s -> %s; L1 holds %s",
                 config::formatBytes(before).c_str(), config::formatBytes(after).c_str(),
                 config::formatBytes(cache_->l1->bytes()).c_str());
    }

    bool applyLogging(const config::Config& cfg) {
        log::Level level = log::Level::Info;
        log::parseLevel(cfg.logging.level, level);
        log::setLevel(level);
        std::string error;
        if (!log::setTarget(cfg.logging.error_log, error)) {
            std::fprintf(stderr, "strata: %s\n", error.c_str());
            return false;
        }
        auto sink = proxy::AccessLogSink::open(cfg.logging.access_log, cfg.logging.access_format,
                                               logPrivacy(cfg.logging), error);
        if (!sink) {
            LOG_ERROR("%s", error.c_str());
            return false;
        }
        access_sink_ = std::move(sink);
        return true;
    }

    // Binds (or keeps) the admin listener and reads its token. Changes nothing on failure.
    bool applyAdmin(const config::Config& cfg, std::string& error) {
        std::string token;
        if (!cfg.admin.token_file.empty() &&
            !admin::readTokenFile(cfg.admin.token_file, token, error)) {
            return false;
        }
        const std::string bind_text = cfg.admin.bind ? cfg.admin.bind->text : std::string();
        if (bind_text != admin_bind_text_ || (cfg.admin.bind && !admin_)) {
            std::unique_ptr<admin::AdminServer> next;
            std::string line;
            if (cfg.admin.bind) {
                auto address = net::SocketAddress::fromEndpoint(*cfg.admin.bind);
                if (!address) {
                    error = "admin: " + address.error();
                    return false;
                }
                auto fd = net::listenTcp(address.value(), /*reuse_port=*/false, 64);
                if (!fd) {
                    error = "admin: " + fd.error();
                    return false;
                }
                config::Endpoint resolved = *cfg.admin.bind;
                resolved.port = net::localPort(fd.value());
                line = "admin " + net::SocketAddress::fromEndpoint(resolved).value().toString();
                admin::Handlers handlers;
                handlers.status = this;
                handlers.reload = this;
                handlers.purge = this;
                handlers.cache = this;
                next = std::make_unique<admin::AdminServer>(loop_, fd.value(), handlers);
            }
            if (admin_) {
                admin_->close();
                // Not destroyed here: this may run inside an admin request (POST /reload).
                loop_.deferredDelete(event::deferrable(std::move(admin_)));
            }
            admin_ = std::move(next);
            admin_line_ = line;
            admin_bind_text_ = bind_text;
        }
        if (admin_) {
            admin_->setToken(token);
        }
        return true;
    }

    void writePorts() {
        std::vector<std::string> lines;
        for (const auto& [name, line] : listener_lines_) {
            lines.push_back(line);
        }
        if (!admin_line_.empty()) {
            lines.push_back(admin_line_);
        }
        if (!options_.port_file.empty() && !writePortFile(options_.port_file, lines)) {
            LOG_ERROR("cannot write port file %s", options_.port_file.c_str());
        }
        for (const auto& line : lines) {
            LOG_INFO("listening: %s", line.c_str());
        }
    }

    // Gauges read at scrape time, on the main thread (the admin listener's loop), where
    // current_ is owned.
    void registerGauges() {
        auto& registry = metrics::global();
        registry.addGauge(
            "strata_proxy_client_connections",
            "open client connections by protocol (http/1.1 until a connection chooses h2)",
            [this, &registry](std::vector<metrics::GaugeSample>& out) {
                const auto total =
                    static_cast<std::int64_t>(process_connections_.load(std::memory_order_relaxed));
                // Read after the total: a connection that closes in between is not counted twice.
                const std::int64_t h2 = std::min(total, registry.h2Connections());
                out.push_back({{{"protocol", std::string(metrics::name(metrics::Protocol::Http1))}},
                               static_cast<double>(total - h2)});
                out.push_back({{{"protocol", std::string(metrics::name(metrics::Protocol::H2))}},
                               static_cast<double>(h2)});
            });
        auto per_server = [this](auto value) {
            return [this, value](std::vector<metrics::GaugeSample>& out) {
                if (!current_) {
                    return;
                }
                auto now = std::chrono::steady_clock::now();
                for (const auto& [name, group] : current_->upstreams) {
                    for (const auto& s : group->servers()) {
                        out.push_back(
                            {{{"upstream", name}, {"server", s->label()}}, value(*s, now)});
                    }
                }
            };
        };
        registry.addGauge(
            "strata_proxy_client_connections_parked",
            "HTTP/1.1 keep-alive client connections idle for 250ms or more, held without a "
            "session until their next byte (included in strata_proxy_client_connections)",
            [&registry](std::vector<metrics::GaugeSample>& out) {
                out.push_back({{}, static_cast<double>(registry.parkedConnections())});
            });
        registry.addGauge(
            "strata_upstream_server_healthy",
            "1 when active health checks pass (or none are configured), 0 when ejected by them",
            per_server(
                [](const upstream::ServerState& s, auto) { return s.healthy() ? 1.0 : 0.0; }));
        registry.addGauge(
            "strata_upstream_server_available",
            "1 when the balancer may pick the server (healthy and not in passive back-off)",
            per_server([](const upstream::ServerState& s, auto now) {
                return s.isAvailable(now) ? 1.0 : 0.0;
            }));
        registry.addGauge(
            "strata_upstream_server_in_flight", "requests in flight to the server",
            per_server([](const upstream::ServerState& s, auto) {
                return static_cast<double>(s.in_flight.load(std::memory_order_relaxed));
            }));
        // Joined with strata_upstream_requests_total{upstream,server} (picks by server), it
        // gives picks by algorithm without a label that changes the series on every reload.
        registry.addGauge(
            "strata_upstream_balance_info",
            "1 for the upstream's balancing algorithm (upstreams.<name>.balance)",
            [this](std::vector<metrics::GaugeSample>& out) {
                if (!current_) {
                    return;
                }
                for (const auto& [name, group] : current_->upstreams) {
                    out.push_back(
                        {{{"upstream", name}, {"balance", group->config().balance}}, 1.0});
                }
            });
        registry.addGauge(
            "strata_rate_limit_keys",
            "buckets held by the route's rate_limit (at most its max_keys)",
            [this](std::vector<metrics::GaugeSample>& out) {
                if (!current_) {
                    return;
                }
                for (const auto& route : current_->routes) {
                    if (route.rate_limiter) {
                        out.push_back({{{"route", route.name}},
                                       static_cast<double>(route.rate_limiter->keys())});
                    }
                }
            });
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
        ready_ = false;
        health_.stop();
        // The admin listener stays up until the last worker exits (onWorkerExit): a load
        // balancer polling /readyz sees 503 and takes the node out, and /metrics stays
        // scrapable while requests in flight finish.
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
            admin_.reset();
            event_base_loopbreak(loop_.base());
        }
    }

    // admin::ReloadHandler. Also SIGHUP. Everything that can fail (parse, validation, binding
    // new listeners, the admin token) happens before anything is swapped; workers are only
    // posted a finished snapshot and already-bound sockets.
    admin::ReloadOutcome reload() override {
        admin::ReloadOutcome outcome;
        outcome.version = snapshot_version_;
        if (draining_) {
            outcome.errors.push_back("draining: reload ignored");
            return outcome;
        }
        auto fail = [&](const std::string& why) {
            LOG_ERROR("reload of %s failed; the running configuration (version %llu) stays%s%s",
                      options_.config_path.c_str(),
                      static_cast<unsigned long long>(snapshot_version_), why.empty() ? "" : ": ",
                      why.c_str());
            for (const auto& e : outcome.errors) {
                LOG_ERROR("%s", e.c_str());
            }
            metrics::global().configReload(metrics::ReloadResult::Failure, unixNow());
            return outcome;
        };
        config::LoadResult loaded = config::loadFile(options_.config_path);
        if (!loaded.config) {
            for (const auto& d : loaded.errors) {
                outcome.errors.push_back(d.format());
            }
            return fail("");
        }
        const config::Config& next = *loaded.config;
        const config::Config& running = *current_->config;
        // Bad certificates fail the reload like bad YAML: the old ones keep serving.
        std::vector<config::Diagnostic> tls_errors;
        net::TlsContexts tls = net::buildTlsContexts(next, resumption_, tls_errors);
        if (!tls_errors.empty()) {
            for (const auto& d : tls_errors) {
                outcome.errors.push_back(d.format());
            }
            return fail("");
        }

        // Listeners: by name. A changed bind or TLS mode is a remove plus an add.
        std::vector<std::string> removed;
        std::vector<const config::Listener*> added;
        for (const auto& l : running.listeners) {
            auto it = std::find_if(next.listeners.begin(), next.listeners.end(),
                                   [&](const auto& n) { return n.name == l.name; });
            if (it == next.listeners.end() || !(keyOf(*it) == keyOf(l))) {
                removed.push_back(l.name);
            }
        }
        for (const auto& n : next.listeners) {
            auto it = std::find_if(running.listeners.begin(), running.listeners.end(),
                                   [&](const auto& l) { return l.name == n.name; });
            if (it == running.listeners.end() || !(keyOf(*it) == keyOf(n))) {
                added.push_back(&n);
            }
        }
        config::Config only_added;
        for (const auto* l : added) {
            only_added.listeners.push_back(*l);
        }
        std::vector<std::string> added_lines;
        std::vector<std::vector<BoundListener>> bound(worker_count_);
        if (!added.empty()) {
            auto result = bindListeners(only_added, worker_count_, added_lines);
            if (!result) {
                outcome.errors.push_back(result.error());
                return fail("");
            }
            bound = std::move(result.value());
        }
        auto closeBound = [&] {
            for (auto& per_worker : bound) {
                for (auto& b : per_worker) {
                    ::close(b.fd);
                }
            }
        };
        std::string admin_error;
        if (!applyAdmin(next, admin_error)) {
            closeBound();
            outcome.errors.push_back(admin_error);
            return fail("");
        }
        // Logged on every reload that still differs from the running values, so the last
        // reload's log says what a restart would change.
        pending_restart_.clear();
        for (const auto& change : restartOnlyChanges(*started_config_, next)) {
            LOG_WARN("reload: %s changed %s -> %s; takes effect after a restart",
                     change.key.c_str(), change.running.c_str(), change.next.c_str());
            pending_restart_.push_back(change.key);
        }

        // Commit.
        auto snapshot =
            std::make_shared<proxy::Snapshot>(loaded.config, registry_, ++snapshot_version_);
        snapshot->attachTls(std::move(tls));  // new connections take the new certificates
        current_ = snapshot;
        loaded_at_ = unixNow();
        log::Level level = log::Level::Info;
        log::parseLevel(next.logging.level, level);
        log::setLevel(level);
        if (next.logging.access_log != running.logging.access_log ||
            next.logging.access_format != running.logging.access_format ||
            next.logging.client_address != running.logging.client_address ||
            next.logging.client_address_key != running.logging.client_address_key ||
            next.logging.redact_query != running.logging.redact_query) {
            std::string error;
            auto sink =
                proxy::AccessLogSink::open(next.logging.access_log, next.logging.access_format,
                                           logPrivacy(next.logging), error);
            if (sink) {
                access_sink_ = sink;
                for (auto& worker : workers_) {
                    worker->reopenLogs(sink);
                }
            } else {
                LOG_ERROR("reload: %s; access log unchanged", error.c_str());
            }
        }
        for (const auto& name : removed) {
            listener_lines_.erase(name);
            for (auto& worker : workers_) {
                worker->removeListener(name);
            }
        }
        for (std::size_t i = 0; i < added.size(); ++i) {
            listener_lines_[added[i]->name] = added_lines[i];
        }
        for (unsigned w = 0; w < worker_count_; ++w) {
            workers_[w]->updateSnapshot(snapshot);
            if (!bound[w].empty()) {
                workers_[w]->addListeners(std::move(bound[w]));
            }
        }
        health_.update(*snapshot);
        applyL1Budget(next);
        if (!added.empty() || !removed.empty() || admin_line_ != written_admin_line_) {
            writePorts();
        }
        written_admin_line_ = admin_line_;
        metrics::global().configReload(metrics::ReloadResult::Success, loaded_at_);
        LOG_INFO("configuration reloaded (version %llu; listeners +%zu -%zu)",
                 static_cast<unsigned long long>(snapshot_version_), added.size(), removed.size());
        outcome.ok = true;
        outcome.version = snapshot_version_;
        return outcome;
    }

    // admin::PurgeHandler. URLs are absolute ("http://host/path?query"), as cache keys are. A
    // soft purge marks the objects stale (revalidated before reuse, kept for stale-if-error).
    // L2 goes first: its record is applied to this process's L2 lookups before L1 is purged,
    // so a lookup racing the purge cannot promote the old object back into L1.
    //
    // both_schemes: the key starts with the scheme, so the other scheme's copy is its own key
    // (and its own purge-log record); the purge is confirmed only when both records are.
    void purgeUrl(std::string_view url, bool soft, bool both_schemes,
                  admin::PurgeDone done) override {
        std::vector<std::string> keys;
        for (const auto& scheme_url : schemeVariants(url, both_schemes)) {
            auto key = keyForUrl(scheme_url);
            if (!key) {
                return done({400, 0, "purge url must be absolute: http://host/path"});
            }
            keys.push_back(std::move(*key));
        }
        purgeBothTiers(
            soft, std::move(done),
            [&](event::Loop* loop, cache::L2Cache::DoneCallback l2_done) {
                auto part = joinL2(keys.size(), std::move(l2_done));
                for (const auto& key : keys) {
                    l2_->removeUrl(key, soft, loop, part);
                }
            },
            [&] {
                std::uint64_t purged = 0;
                for (const auto& key : keys) {
                    purged += cache_ ? cache_->l1->purgeKey(key, soft) : 0;
                }
                return purged;
            });
    }
    void purgePrefix(std::string_view prefix, bool soft, bool both_schemes,
                     admin::PurgeDone done) override {
        if (!prefix.starts_with("http://") && !prefix.starts_with("https://")) {
            return done({400, 0, "purge prefix must start with http:// or https://"});
        }
        const std::vector<std::string> prefixes = schemeVariants(prefix, both_schemes);
        purgeBothTiers(
            soft, std::move(done),
            [&](event::Loop* loop, cache::L2Cache::DoneCallback l2_done) {
                auto part = joinL2(prefixes.size(), std::move(l2_done));
                for (const auto& p : prefixes) {
                    l2_->purgePrefix(p, soft, loop, part);
                }
            },
            [&] {
                std::uint64_t purged = 0;
                for (const auto& p : prefixes) {
                    purged += cache_ ? cache_->l1->purgePrefix(p, soft) : 0;
                }
                return purged;
            });
    }

    // `url` itself, then (with both) the same URL under the other scheme. Anything that is
    // neither http:// nor https:// is returned alone, for the caller to reject.
    static std::vector<std::string> schemeVariants(std::string_view url, bool both) {
        std::vector<std::string> out{std::string(url)};
        if (!both) {
            return out;
        }
        constexpr std::string_view kHttp = "http://";
        constexpr std::string_view kHttps = "https://";
        if (url.starts_with(kHttp)) {
            out.push_back(std::string(kHttps) + std::string(url.substr(kHttp.size())));
        } else if (url.starts_with(kHttps)) {
            out.push_back(std::string(kHttp) + std::string(url.substr(kHttps.size())));
        }
        return out;
    }

    // One completion for `parts` L2 operations: ok only when every part was. The parts finish
    // on loop_ (posted, never inline), so the count needs no lock.
    static cache::L2Cache::DoneCallback joinL2(std::size_t parts,
                                               cache::L2Cache::DoneCallback done) {
        struct Joined {
            std::size_t remaining;
            bool ok = true;
            cache::L2Cache::DoneCallback done;
        };
        auto joined = std::make_shared<Joined>(Joined{parts, true, std::move(done)});
        return [joined](bool ok) {
            joined->ok = joined->ok && ok;
            if (--joined->remaining == 0) {
                joined->done(joined->ok);
            }
        };
    }
    void purgeTag(std::string_view tag, bool soft, admin::PurgeDone done) override {
        if (tag.empty()) {
            return done({400, 0, "empty tag"});
        }
        purgeBothTiers(
            soft, std::move(done),
            [&](event::Loop* loop, cache::L2Cache::DoneCallback l2_done) {
                l2_->purgeTag(std::string(tag), soft, loop, std::move(l2_done));
            },
            [&] { return cache_ ? cache_->l1->purgeTag(tag, soft) : 0; });
    }

    // Without L2 the purge is done once L1 is. With L2 the answer waits for the purge-log
    // append (posted back to this loop by the L2 pool) or for purge_wait_, whichever comes
    // first; the loop runs on meanwhile. Only a 200 promises that every instance sharing the
    // L2 drops the objects (within cache.l2.purge_poll + 2 x timeout).
    //
    //   purge ──▶ L2 append queued ──▶ L1 purged ──┬─ append ok ─────▶ 200 "purged N"
    //                                              ├─ append failed ─▶ 503 (L1 purged)
    //                                              └─ purge_wait_ ───▶ 504 (L1 purged; the
    //                                                                  append may still land)
    template <class StartL2, class PurgeL1>
    void purgeBothTiers(bool soft, admin::PurgeDone done, StartL2 start_l2, PurgeL1 purge_l1) {
        if (!l2_ || !l2_->enabled()) {
            return done({200, purge_l1(), ""});
        }
        const std::uint64_t id = ++last_purge_id_;
        PendingPurge& pending = pending_purges_[id];  // std::map: the reference stays valid
        pending.done = std::move(done);
        pending.soft = soft;
        pending.deadline = std::make_unique<event::Timer>(
            loop_, [this, id] { finishPurge(id, SharedPurge::TimedOut); });
        pending.deadline->arm(purge_wait_);
        // The completion is posted to loop_, never run inline, so `pending` is complete first.
        start_l2(&loop_, [this, id](bool ok) {
            finishPurge(id, ok ? SharedPurge::Done : SharedPurge::Failed);
        });
        pending.purged = purge_l1();
    }

    enum class SharedPurge : std::uint8_t { Done, Failed, TimedOut };

    void finishPurge(std::uint64_t id, SharedPurge outcome) {
        auto it = pending_purges_.find(id);
        if (it == pending_purges_.end()) {
            return;  // answered already: the append finished after the deadline
        }
        PendingPurge pending = std::move(it->second);
        pending_purges_.erase(it);
        pending.deadline->cancel();
        // Not destroyed here: this may be the timer's own callback.
        loop_.deferredDelete(event::deferrable(std::move(pending.deadline)));
        std::string local = (pending.soft ? "soft-purged " : "purged ") +
                            std::to_string(pending.purged) + " locally; ";
        switch (outcome) {
            case SharedPurge::Done:
                pending.done({200, pending.purged, ""});
                return;
            case SharedPurge::Failed:
                LOG_WARN(
                    "admin: purge: the shared cache (L2) purge log could not be written; "
                    "other instances may still serve the objects");
                pending.done({503, pending.purged,
                              local + "shared cache (L2) purge failed: the purge log could not be "
                                      "written (memcached unreachable or too slow, or the L2 queue "
                                      "full; see the error log), so other instances sharing the L2 "
                                      "may still serve the objects; retry once L2 is back"});
                return;
            case SharedPurge::TimedOut:
                LOG_WARN("admin: purge: the shared cache (L2) did not confirm within %lld ms",
                         static_cast<long long>(purge_wait_.count()));
                pending.done({504, pending.purged,
                              local + "shared cache (L2) purge not confirmed within " +
                                  std::to_string(purge_wait_.count()) +
                                  " ms: it may still land, but until it does other instances "
                                  "sharing the L2 may serve the objects; retry to be sure"});
                return;
        }
    }

    // The URL's primary key, with the query as the route a GET for it takes keys it. Every
    // variant (Vary, route key headers) lives under that one key.
    std::optional<std::string> keyForUrl(std::string_view url) const {
        std::string_view scheme;
        if (url.starts_with("http://")) {
            scheme = "http";
        } else if (url.starts_with("https://")) {
            scheme = "https";
        } else {
            return std::nullopt;
        }
        std::string_view rest = url.substr(scheme.size() + 3);
        auto slash = rest.find_first_of("/?");
        std::string_view host = rest.substr(0, slash);
        std::string_view path = slash == std::string_view::npos ? "/" : rest.substr(slash);
        if (host.empty()) {
            return std::nullopt;
        }
        static const cache::KeyPolicy kDefault;
        std::string_view bare_path = path.substr(0, path.find('?'));
        const cache::KeyPolicy& policy =
            current_ ? current_->keyPolicyFor(host, bare_path.empty() ? "/" : bare_path) : kDefault;
        return cache::primaryKeyForUri(scheme, host, path, policy);
    }

    // admin::CacheStatsProvider
    admin::CacheStats cacheStats() override {
        admin::CacheStats stats;
        if (cache_) {
            auto l1 = cache_->l1->stats();
            stats.l1_bytes = l1.bytes;
            stats.l1_max_bytes = cache_->l1->maxBytes();
            stats.l1_objects = l1.objects;
        }
        if (l2_) {
            const cache::L2Stats l2 = l2_->stats();
            stats.l2_servers = l2.servers;
            stats.l2_breakers_open = l2.breakers_open;
        }
        return stats;
    }

    // admin::StatusProvider
    admin::Status status() override {
        admin::Status s;
        s.config_version = snapshot_version_;
        s.config_loaded_at = loaded_at_;
        s.config_path = options_.config_path;
        s.ready = ready_ && !draining_;
        s.draining = draining_;
        s.workers = worker_count_;
        s.pending_restart = pending_restart_;
        s.client_connections = process_connections_.load(std::memory_order_relaxed);
        for (const auto& [name, line] : listener_lines_) {
            s.listeners.push_back(line);
        }
        if (!current_) {
            return s;
        }
        auto now = std::chrono::steady_clock::now();
        for (const auto& [name, group] : current_->upstreams) {
            admin::UpstreamStatus up;
            up.name = name;
            up.health_check = group->config().health_check.enabled;
            const auto& servers = group->servers();
            for (std::size_t i = 0; i < servers.size(); ++i) {
                const auto& srv = *servers[i];
                admin::ServerStatus ss;
                ss.address = srv.label();
                ss.weight = group->config().servers[i].weight;
                ss.healthy = srv.healthy();
                ss.available = srv.isAvailable(now);
                ss.consecutive_failures = srv.consecutiveFailures();
                ss.in_flight = srv.in_flight.load(std::memory_order_relaxed);
                up.servers.push_back(std::move(ss));
            }
            s.upstreams.push_back(std::move(up));
        }
        return s;
    }

    Options options_;
    event::Loop loop_;
    upstream::ServerRegistry registry_;
    net::TlsResumptionStore resumption_;  // ticket keys and session caches outlive reloads
    proxy::SnapshotPtr current_;
    config::ConfigPtr started_config_;  // what the start-only keys were read from
    // Keys whose reloaded value differs from started_config_'s (restartOnlyChanges).
    std::vector<std::string> pending_restart_;
    std::uint64_t snapshot_version_ = 0;
    double loaded_at_ = 0;
    std::shared_ptr<proxy::AccessLogSink> access_sink_;
    std::atomic<std::uint32_t> process_connections_{0};
    proxy::ClientConnectionTable client_connections_;  // listeners[].max_connections_per_client
    unsigned worker_count_ = 0;
    std::unique_ptr<cache::CacheRuntime> cache_;  // declared before workers_: outlives them
    std::unique_ptr<cache::L2Cache> l2_;          // null without cache.l2.servers
    // Admin purges waiting for the L2 purge-log append (purgeBothTiers), by id; main loop only.
    struct PendingPurge {
        admin::PurgeDone done;
        std::uint64_t purged = 0;  // from L1
        bool soft = false;
        std::unique_ptr<event::Timer> deadline;
    };
    std::map<std::uint64_t, PendingPurge> pending_purges_;
    std::uint64_t last_purge_id_ = 0;
    std::chrono::milliseconds purge_wait_{1000};  // set with l2_
    std::vector<std::unique_ptr<Worker>> workers_;
    unsigned running_workers_ = 0;
    std::vector<::event*> signal_events_;
    std::unique_ptr<event::Timer> drain_timer_;
    std::map<std::string, std::string> listener_lines_;  // name -> "name HOST:PORT"
    std::unique_ptr<admin::AdminServer> admin_;
    std::string admin_bind_text_;
    std::string admin_line_;
    std::string written_admin_line_;
    HealthChecker health_;
    bool draining_ = false;
    bool ready_ = false;
};

}  // namespace

int run(int argc, const char* const* argv) {
    event::installBufferMemory();
    net::installTlsMemory();
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
