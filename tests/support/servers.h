// The processes an end-to-end case runs against: strata itself, the strata-origin demo origin,
// memcached, and a scripted raw-TCP "bad origin". All bind 127.0.0.1 port 0 and report their
// ports through files, so cases run in parallel.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "process.h"
#include "raw_client.h"

namespace strata::test {

using Vars = std::map<std::string, std::string>;

// strata-origin with `listeners` servers on 127.0.0.1:0 (ids "0", "1", ...).
class Origin {
public:
    explicit Origin(int listeners = 1, const std::vector<std::string>& extra_args = {});
    // Stops the origin; a non-zero exit (crash, sanitizer report) fails the running test.
    ~Origin();

    int size() const { return static_cast<int>(ports_.size()); }
    std::uint16_t port(int i = 0) const { return ports_.at(static_cast<std::size_t>(i)); }
    std::string addr(int i = 0) const { return "127.0.0.1:" + std::to_string(port(i)); }
    // YAML flow list of every server, e.g. ["127.0.0.1:4001", "127.0.0.1:4002"].
    std::string serversYaml() const;
    // Requests server `i` answered for `path` (query excluded), from its /__stats.
    std::uint64_t requestCount(int i, const std::string& path);
    std::uint64_t totalCount(const std::string& path);  // over every server
    void reset();                                       // /__reset on every server
    Process& process() { return proc_; }

private:
    TempDir dir_;
    Process proc_;
    std::vector<std::uint16_t> ports_;
};

struct CheckResult {
    int exit_code = -1;
    std::string output;  // stdout + stderr
    std::string file;    // the config path strata was given
};

// The strata binary with a YAML config written to a temp dir. ${name} in the YAML is replaced
// from `vars`; ${tmp} is the temp dir. Waits until the port file lists every listener.
class Strata {
public:
    explicit Strata(const std::string& yaml, const Vars& vars = {},
                    const std::vector<std::string>& extra_args = {});
    // Stops strata if the test did not; a non-zero exit (crash, failed drain, sanitizer
    // report) fails the running test and shows strata's stderr.
    ~Strata();

    // Port of a listener from the port file ("http", "admin", ...); throws when absent.
    std::uint16_t port(const std::string& listener = "http") const;
    pid_t pid() const { return proc_.pid(); }
    Process& process() { return proc_; }
    const std::string& configPath() const { return config_path_; }
    std::string tmp() const { return dir_.path().string(); }
    // SIGTERM, wait (graceful drain) up to `grace`, then SIGKILL. Returns the exit code.
    int stop(std::chrono::milliseconds grace = 40000ms) { return proc_.stop(grace); }
    // SIGKILL, as a crash or an OOM kill would: the test expects it, so the destructor does
    // not report it. Returns once the process is reaped.
    void kill();

    // `strata --check -c FILE` on the YAML; never serves.
    static CheckResult check(const std::string& yaml, const Vars& vars = {});

private:
    TempDir dir_;
    std::string config_path_;
    Process proc_;
    std::map<std::string, std::uint16_t> ports_;
};

// The minimal proxy config: one http listener, upstream "app" over `servers_yaml` (a YAML flow
// list), one catch-all route; `extra` is appended verbatim (limits:, logging:, ...).
std::string proxyConfig(const std::string& servers_yaml, const std::string& extra = "",
                        const std::string& upstream_extra = "");

// A real memcached on 127.0.0.1, port learned from MEMCACHED_PORT_FILENAME (-p -1).
class Memcached {
public:
    explicit Memcached(const std::vector<std::string>& extra_args = {});
    std::uint16_t port() const { return port_; }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
    Process& process() { return proc_; }

private:
    TempDir dir_;
    Process proc_;
    std::uint16_t port_ = 0;
};

// A raw TCP server on 127.0.0.1:0 for scripted (usually broken) upstream behaviour: for every
// connection it reads a request head (up to the blank line), writes `reply` verbatim, then
// closes the connection (or keeps it when close_after is false).
class ScriptedServer {
public:
    explicit ScriptedServer(std::string reply, bool close_after = true);
    ~ScriptedServer();
    ScriptedServer(const ScriptedServer&) = delete;
    ScriptedServer& operator=(const ScriptedServer&) = delete;

    std::uint16_t port() const { return port_; }
    std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
    int connections() const { return connections_.load(); }

private:
    void run();

    std::string reply_;
    bool close_after_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::vector<int> kept_;
    std::thread thread_;
};

}  // namespace strata::test
