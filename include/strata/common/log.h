// Error log with levels. Thread-safe; one write(2) per line so lines from workers never
// interleave. Lines carry the caller's context ids: "[w2][c1834] upstream app: connect timeout".
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace strata::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

// Parses "debug", "info", "warn", "error", "off".
bool parseLevel(std::string_view text, Level& out);

// Where error-log lines go: "stderr", "stdout" or a file path (opened for append). Reopen()
// re-opens a file path after logrotate moved it (SIGUSR1).
bool setTarget(const std::string& target, std::string& error);
void reopen();

void setLevel(Level level);
Level level();
inline bool enabled(Level l) {
    return l >= level();
}

// Counts internal errors (STRATA_BUG in release builds, exceptions caught in trampolines).
std::uint64_t internalErrors();
void countInternalError();

void write(Level level, std::string_view message);

}  // namespace strata::log

// printf-style helpers; the format is checked by the compiler.
namespace strata::log::detail {
void writef(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
}

#define STRATA_LOG(lvl, ...)                                 \
    do {                                                     \
        if (::strata::log::enabled(lvl)) {                   \
            ::strata::log::detail::writef(lvl, __VA_ARGS__); \
        }                                                    \
    } while (0)
#define LOG_DEBUG(...) STRATA_LOG(::strata::log::Level::Debug, __VA_ARGS__)
#define LOG_INFO(...) STRATA_LOG(::strata::log::Level::Info, __VA_ARGS__)
#define LOG_WARN(...) STRATA_LOG(::strata::log::Level::Warn, __VA_ARGS__)
#define LOG_ERROR(...) STRATA_LOG(::strata::log::Level::Error, __VA_ARGS__)
