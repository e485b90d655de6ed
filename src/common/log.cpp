#include "strata/common/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <mutex>
#include <unistd.h>

namespace strata::log {
namespace {

std::atomic<Level> g_level{Level::Info};
std::atomic<std::uint64_t> g_internal_errors{0};
std::atomic<int> g_fd{STDERR_FILENO};
std::mutex g_target_mutex;  // guards g_path and fd swaps
std::string g_path;

const char* levelName(Level l) {
    switch (l) {
        case Level::Debug:
            return "debug";
        case Level::Info:
            return "info";
        case Level::Warn:
            return "warn";
        case Level::Error:
            return "error";
        case Level::Off:
            break;
    }
    return "off";
}

int openAppend(const std::string& path) {
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

}  // namespace

bool parseLevel(std::string_view text, Level& out) {
    static constexpr std::pair<std::string_view, Level> kLevels[] = {{"debug", Level::Debug},
                                                                     {"info", Level::Info},
                                                                     {"warn", Level::Warn},
                                                                     {"error", Level::Error},
                                                                     {"off", Level::Off}};
    for (const auto& [name, l] : kLevels) {
        if (text == name) {
            out = l;
            return true;
        }
    }
    return false;
}

bool setTarget(const std::string& target, std::string& error) {
    std::lock_guard lock(g_target_mutex);
    int fd;
    if (target == "stderr" || target.empty()) {
        fd = STDERR_FILENO;
    } else if (target == "stdout") {
        fd = STDOUT_FILENO;
    } else {
        fd = openAppend(target);
        if (fd < 0) {
            error = "cannot open " + target;
            return false;
        }
    }
    int old = g_fd.exchange(fd);
    if (old > STDERR_FILENO && old != fd) {
        ::close(old);
    }
    g_path = (fd > STDERR_FILENO) ? target : std::string();
    return true;
}

void reopen() {
    std::lock_guard lock(g_target_mutex);
    if (g_path.empty()) {
        return;
    }
    int fd = openAppend(g_path);
    if (fd < 0) {
        return;
    }
    int old = g_fd.exchange(fd);
    if (old > STDERR_FILENO) {
        ::close(old);
    }
}

void setLevel(Level l) {
    g_level.store(l, std::memory_order_relaxed);
}
Level level() {
    return g_level.load(std::memory_order_relaxed);
}

std::uint64_t internalErrors() {
    return g_internal_errors.load(std::memory_order_relaxed);
}
void countInternalError() {
    g_internal_errors.fetch_add(1, std::memory_order_relaxed);
}

void write(Level l, std::string_view message) {
    char stamp[64];
    std::timespec ts{};
    std::timespec_get(&ts, TIME_UTC);
    std::tm tm{};
    gmtime_r(&ts.tv_sec, &tm);
    std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);
    std::string line;
    line.reserve(message.size() + 48);
    line += stamp;
    line += ' ';
    line += levelName(l);
    line += ' ';
    line += message;
    line += '\n';
    // One write per line keeps lines whole when several threads log at once.
    ssize_t ignored = ::write(g_fd.load(std::memory_order_relaxed), line.data(), line.size());
    (void)ignored;
}

namespace detail {
void writef(Level l, const char* fmt, ...) {
    char buf[2048];
    va_list args;
    va_start(args, fmt);
    int n = std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    if (n < 0) {
        return;
    }
    std::size_t len = std::min(static_cast<std::size_t>(n), sizeof buf - 1);
    write(l, std::string_view(buf, len));
}
}  // namespace detail

}  // namespace strata::log
