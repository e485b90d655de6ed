// Invariant checks. Never use these on bytes from clients, upstreams or memcached: those are
// untrusted and get an error answer, not an abort.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace strata::detail {
[[noreturn]] void assertFailed(const char* expr, const char* file, int line);
void bugReported(const char* what, const char* file, int line);
}  // namespace strata::detail

#define STRATA_RELEASE_ASSERT(expr) \
    ((expr) ? static_cast<void>(0) : ::strata::detail::assertFailed(#expr, __FILE__, __LINE__))

#ifdef NDEBUG
#define STRATA_ASSERT(expr) static_cast<void>(0)
#else
#define STRATA_ASSERT(expr) STRATA_RELEASE_ASSERT(expr)
#endif

// A bug that must not take the process down in production: aborts in debug builds, is logged
// and counted (strata_internal_errors_total) in release builds.
#define STRATA_BUG(what) ::strata::detail::bugReported(what, __FILE__, __LINE__)
