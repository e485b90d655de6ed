// Cache-Control parsing (RFC 9111 5.2) for requests and responses, the targeted fields
// CDN-Cache-Control (RFC 9213) and Strata-Cache-Control, and HTTP-date (RFC 9110 5.6.7).
//
// Odd input gets the most conservative reading the RFC allows: a directive that appears twice
// with different values, or with an invalid value, makes the response stale (RFC 9111 4.2.1)
// rather than fresher; unknown extensions are ignored (RFC 9111 5.2.3). Nothing here throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/common/clock.h"

namespace strata::http {
class Fields;
}

namespace strata::cache {

// RFC 9111 1.2.2: a delta-seconds too large to represent is taken as 2^31.
inline constexpr std::int64_t kDeltaSecondsMax = 2147483648LL;

// Parses delta-seconds (1*DIGIT). Overflow saturates at kDeltaSecondsMax; anything else that is
// not all digits (sign, space, empty, decimal point) is nullopt.
std::optional<std::int64_t> parseDeltaSeconds(std::string_view text);

// Directives of one message. Request-only and response-only directives share the struct; a
// parser fills whichever appear. Durations are in seconds.
struct CacheControl {
    // Response directives (RFC 9111 5.2.2, RFC 5861).
    std::optional<std::int64_t> max_age;                 // also a request directive (5.2.1.1)
    std::optional<std::int64_t> s_maxage;                // 5.2.2.10
    std::optional<std::int64_t> stale_while_revalidate;  // RFC 5861 3
    std::optional<std::int64_t> stale_if_error;          // RFC 5861 4 (request and response)
    bool no_store = false;                               // 5.2.2.5 / 5.2.1.5
    bool no_cache = false;                               // unqualified form, 5.2.2.4 / 5.2.1.4
    bool private_ = false;                               // unqualified form, 5.2.2.7
    bool public_ = false;                                // 5.2.2.9
    bool must_revalidate = false;                        // 5.2.2.2
    bool proxy_revalidate = false;                       // 5.2.2.8
    bool must_understand = false;                        // 5.2.2.3
    bool no_transform = false;                           // 5.2.2.6 / 5.2.1.6
    bool immutable = false;  // RFC 8246 (informational; not used for decisions)
    // Qualified forms list field names (lowercase) the cache must not store (private) or must not
    // reuse without revalidation (no-cache). strata strips them from the stored response.
    std::vector<std::string> private_fields;
    std::vector<std::string> no_cache_fields;

    // Request-only directives (RFC 9111 5.2.1).
    bool max_stale_any = false;             // "max-stale" without a value: any staleness
    std::optional<std::int64_t> max_stale;  // "max-stale=N"
    std::optional<std::int64_t> min_fresh;
    bool only_if_cached = false;

    // True when any directive was malformed or conflicting (for logs and metrics only; the
    // conservative reading is already applied to the fields above).
    bool had_invalid = false;
};

// Parses one or more Cache-Control field values (RFC 9110 5.6.1 list of
// token [ "=" ( token / quoted-string ) ]). Call repeatedly to accumulate several field lines.
void parseCacheControlInto(std::string_view value, CacheControl& out);
CacheControl parseCacheControl(std::string_view value);

// Parses a targeted cache-control field (RFC 9213 2.1: an RFC 8941 Dictionary). Returns nullopt
// when the value is not a valid Dictionary or is empty: the field is then ignored as if absent.
std::optional<CacheControl> parseTargetedCacheControl(std::string_view value);

enum class CacheControlSource {
    None,                // no caching field at all
    CacheControl,        // Cache-Control (and Expires applies)
    CdnCacheControl,     // CDN-Cache-Control (RFC 9213): Cache-Control and Expires ignored
    StrataCacheControl,  // Strata-Cache-Control: our own targeted field, highest priority
};

struct ResponseDirectives {
    CacheControl cc;
    CacheControlSource source = CacheControlSource::None;
    // RFC 9213 2.1: a cache that uses a targeted field ignores Cache-Control and Expires.
    bool expiresApplies() const {
        return source == CacheControlSource::None || source == CacheControlSource::CacheControl;
    }
};

// Picks the highest-priority valid targeted field (Strata-Cache-Control, then CDN-Cache-Control)
// and falls back to every Cache-Control line combined. Several lines of one targeted field are
// combined before parsing (RFC 8941 3.2).
ResponseDirectives responseDirectives(const http::Fields& response_fields);

// Request directives: every Cache-Control line; "Pragma: no-cache" counts as no-cache when the
// request has no Cache-Control (RFC 9111 5.4, kept for HTTP/1.0 clients).
CacheControl requestDirectives(const http::Fields& request_fields);

// HTTP-date (RFC 9110 5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime forms. An
// RFC 850 two-digit year more than 50 years ahead of `now` is taken as the past century.
// Dates are clamped to 1970..2200 so arithmetic on time points cannot overflow.
std::optional<WallTime> parseHttpDate(std::string_view text, WallTime now);
// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
std::string formatHttpDate(WallTime t);

}  // namespace strata::cache
