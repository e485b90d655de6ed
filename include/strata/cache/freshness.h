// Storability (RFC 9111 3), freshness lifetime (4.2.1, 4.2.2), age (4.2.3) and the decision a
// lookup makes for a stored response (4.2, 4.3, 5.2.1, RFC 5861). All time is passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "strata/cache/cache_control.h"
#include "strata/common/clock.h"

namespace strata::http {
struct RequestHead;
struct ResponseHead;
}  // namespace strata::http

namespace strata::cache {

using Seconds = std::chrono::seconds;

// Per-route cache policy, built by the proxy from config::RouteCache (plus strata defaults).
struct CachePolicy {
    bool enabled = true;
    // Lifetime for a response that may be cached but states none and has no Last-Modified to
    // base a heuristic on (0: none). Used only where RFC 9111 4.2.2 allows heuristic freshness.
    Seconds default_ttl{0};
    // Route defaults for the RFC 5861 windows when the response has no such directive.
    Seconds stale_while_revalidate{0};
    Seconds stale_if_error{0};
    // How long past freshness a stored answer may stand in while the origin cannot be reached
    // (RFC 9111 4.2.4, "disconnected"); 0: never.
    Seconds stale_if_unreachable{0};
    // Set-Cookie responses are never shared unless the route says so.
    bool allow_set_cookie = false;
    // Largest body stored (0: no limit).
    std::uint64_t max_object_bytes = 0;
    // Heuristic freshness (4.2.2): this fraction of (Date - Last-Modified), capped.
    double heuristic_fraction = 0.1;
    Seconds heuristic_max{86400};
};

// Status codes RFC 9110 15.1 defines as heuristically cacheable.
bool isHeuristicallyCacheable(int status);
// Status codes whose caching semantics strata implements (for must-understand, RFC 9111
// 5.2.2.3). 206 is not among them: strata stores no partial content.
bool isUnderstoodStatus(int status);
// RFC 9110 9.2.1.
bool isSafeMethod(std::string_view method);

enum class StoreVerdict {
    Store,
    Disabled,        // route has caching off
    Method,          // only GET is stored (HEAD answers come from a stored GET, never stored)
    Status,          // not final, 206/304, or not understood with must-understand
    RequestNoStore,  // request no-store (5.2.1.5)
    NoStore,         // response no-store (without must-understand on an understood status)
    Private,         // unqualified private: a shared cache must not store (5.2.2.7)
    Authorization,  // 3.5: request had Authorization and response lacks public/s-maxage/must-reval.
    SetCookie,      // route does not allow sharing Set-Cookie responses
    VaryStar,       // Vary: * never matches a later request (4.1)
    NoLifetime,     // not explicitly cacheable, not heuristically cacheable, nothing to revalidate
    TooLarge,       // body over the route's max_object_bytes
};
std::string_view verdictName(StoreVerdict v);

// RFC 9111 3. `body_size` is the known size (Content-Length or bytes read so far); a later
// size check happens again when the body completes.
StoreVerdict checkStorable(const http::RequestHead& request, const http::ResponseHead& response,
                           const ResponseDirectives& directives, const CachePolicy& policy,
                           std::optional<std::uint64_t> body_size);

enum class LifetimeSource { SMaxAge, MaxAge, Expires, Heuristic, DefaultTtl, None };

struct Lifetime {
    Seconds value{0};
    LifetimeSource source = LifetimeSource::None;
};

// RFC 9111 4.2.1: s-maxage > max-age > Expires - Date > heuristic (4.2.2) > route default_ttl.
// A missing Date is replaced by `response_time`. Invalid or duplicate-conflicting Expires means
// already expired (5.3).
Lifetime freshnessLifetime(const http::ResponseHead& response, const ResponseDirectives& directives,
                           const CachePolicy& policy, WallTime response_time);

// The RFC 9111 4.2.3 inputs known when a response arrives. `age_value` is the Age field (0
// when absent or invalid, 5.1), `date_value` the Date field (response_time when absent).
struct AgeInputs {
    Seconds age_value{0};
    WallTime date_value;
    WallTime request_time;
    WallTime response_time;
};
AgeInputs ageInputs(const http::ResponseHead& response, WallTime request_time,
                    WallTime response_time);

// corrected_initial_age = max(apparent_age, age_value + response_delay), 4.2.3.
Seconds correctedInitialAge(const AgeInputs& in);
// current_age = corrected_initial_age + (now - response_time), 4.2.3. Never negative.
Seconds currentAge(Seconds corrected_initial_age, WallTime response_time, WallTime now);

// What a stored response needs for lookup decisions (kept in CacheEntry and the L2 record).
struct FreshnessInfo {
    Seconds corrected_initial_age{0};
    WallTime response_time;
    Seconds lifetime{0};
    Seconds stale_while_revalidate{0};  // directive, else route value at store time
    Seconds stale_if_error{0};
    bool no_cache = false;         // unqualified no-cache: validate before every reuse
    bool must_revalidate = false;  // must-revalidate, proxy-revalidate or s-maxage (5.2.2.10)
    bool soft_purged = false;      // purged softly: stale from now on, kept for stale-if-error
};

// Fills FreshnessInfo for a response about to be stored.
FreshnessInfo freshnessInfo(const http::ResponseHead& response,
                            const ResponseDirectives& directives, const CachePolicy& policy,
                            WallTime request_time, WallTime response_time);

enum class Usability {
    Fresh,                 // serve as is
    StaleAcceptable,       // stale, but the client's max-stale accepts it: serve, no refresh
    StaleWhileRevalidate,  // serve stale and start exactly one background refresh
    Revalidate,            // send a conditional request upstream before using it
    OnlyIfCachedMiss,      // request only-if-cached and the entry cannot be used: answer 504
};
std::string_view usabilityName(Usability u);

struct LookupDecision {
    Usability usability = Usability::Revalidate;
    Seconds age{0};  // current_age, for the Age header
    // lifetime - age: remaining freshness (negative when stale); Cache-Status "ttl".
    Seconds ttl{0};
    // When revalidation fails (error, timeout, 5xx) the stale entry may be served instead
    // (RFC 5861 4; never under must-revalidate).
    bool serve_stale_on_error = false;

    // The stored response answers the request as it is, without asking the origin.
    bool servable() const {
        return usability == Usability::Fresh || usability == Usability::StaleAcceptable;
    }
};

// Decides how a stored response may answer a request (RFC 9111 4.2, 4.3, 5.2.1; RFC 5861).
LookupDecision decideLookup(const FreshnessInfo& stored, const CacheControl& request_cc,
                            WallTime now);

// The memcached TTL (and an L1 hint): lifetime + the longer stale window, minus the age the
// object already has, at least 1s. RFC 5861 windows keep it useful after it turns stale.
Seconds storageTtl(const FreshnessInfo& stored, WallTime now);

}  // namespace strata::cache
