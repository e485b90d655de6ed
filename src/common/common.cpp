#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "strata/common/assert.h"
#include "strata/common/clock.h"
#include "strata/common/log.h"
#include "strata/common/strings.h"

namespace strata {

SystemClock& SystemClock::instance() {
    static SystemClock clock;
    return clock;
}

std::optional<std::uint64_t> parseDecimal(std::string_view s) {
    if (s.empty() || s.size() > 19) {
        return std::nullopt;
    }
    std::uint64_t value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value;
}

namespace detail {

void assertFailed(const char* expr, const char* file, int line) {
    std::fprintf(stderr, "strata: assertion failed: %s at %s:%d\n", expr, file, line);
    std::abort();
}

void bugReported(const char* what, const char* file, int line) {
#ifndef NDEBUG
    assertFailed(what, file, line);
#else
    log::countInternalError();
    LOG_ERROR("internal error: %s at %s:%d", what, file, line);
#endif
}

}  // namespace detail
}  // namespace strata
