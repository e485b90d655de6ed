// Child processes and scratch directories for end-to-end tests. Everything a test starts is
// stopped by PID and reaped by a destructor, even when an assertion fails half-way.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace strata::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A fresh directory under $TMPDIR (or /tmp), removed recursively at destruction unless
// STRATA_KEEP_TMP is set (for post-mortems).
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

// posix_spawn'ed child with stdout/stderr in files. The destructor stops and reaps it.
class Process {
public:
    Process() = default;
    // Starts `argv[0]` (a path) with `argv`; `env` entries are added to (or override) ours.
    // stdout/stderr go to `log_prefix`.out / .err. Throws std::runtime_error when spawn fails.
    Process(const std::vector<std::string>& argv, const std::string& log_prefix,
            const std::map<std::string, std::string>& env = {});
    ~Process();
    Process(Process&& other) noexcept;
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    bool running();  // false once it exited (reaps it)
    void signal(int sig);
    // Waits up to `timeout` for exit; returns the status as from exitCode(), nullopt on timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout);
    // SIGTERM, wait up to `grace`, then SIGKILL. Returns exitCode().
    int stop(std::chrono::milliseconds grace = 5000ms);
    // Exit status, or 128+signal when killed by a signal; -1 while running.
    int exitCode() const { return exit_code_; }

    std::string stdoutText() const;
    std::string stderrText() const;

private:
    void reap(int status);

    pid_t pid_ = -1;
    int exit_code_ = -1;
    std::string out_path_;
    std::string err_path_;
};

std::string readFile(const std::string& path);
// Runs a shell command (stderr discarded) and returns its stdout; "" when it cannot start.
std::string runCommand(const std::string& command);
void writeFile(const std::string& path, const std::string& text);  // tmp + rename

// Polls (short sleeps) for a file to exist, up to `timeout`. Readiness polling only: never use
// this to wait for behaviour. If `proc` dies meanwhile, returns false at once.
bool waitForFile(const std::string& path, std::chrono::milliseconds timeout,
                 Process* proc = nullptr);

// Binary from an env var set by meson (STRATA_BIN, STRATA_ORIGIN_BIN); throws when unset.
std::string binaryFromEnv(const char* var);

// VmRSS of a process in bytes (from /proc/PID/status); 0 when unreadable.
std::uint64_t residentBytes(pid_t pid);

// Replaces ${name} in `text` with vars[name]; unknown names are left as is.
std::string substitute(const std::string& text, const std::map<std::string, std::string>& vars);

}  // namespace strata::test
