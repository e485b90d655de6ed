// Storability, freshness and age (RFC 9111 3 and 4.2) and the lookup decision (4.2, 4.3, 5.2.1).
#include "strata/cache/freshness.h"

#include <algorithm>

#include "strata/common/strings.h"
#include "strata/http/message.h"

namespace strata::cache {
namespace {

Seconds secs(std::int64_t v) {
    return Seconds(v);
}

// Seconds between two wall time points, floored.
Seconds diff(WallTime a, WallTime b) {
    return std::chrono::floor<Seconds>(a - b);
}

bool hasExplicitLifetime(const http::ResponseHead& response, const ResponseDirectives& d) {
    return d.cc.s_maxage || d.cc.max_age || (d.expiresApplies() && response.fields.has("Expires"));
}

}  // namespace

bool isHeuristicallyCacheable(int status) {
    switch (status) {
        case 200:
        case 203:
        case 204:
        case 206:
        case 300:
        case 301:
        case 308:
        case 404:
        case 405:
        case 410:
        case 414:
        case 501:
            return true;
        default:
            return false;
    }
}

bool isUnderstoodStatus(int status) {
    switch (status) {
        case 200:
        case 203:
        case 204:
        case 300:
        case 301:
        case 302:
        case 303:
        case 307:
        case 308:
        case 400:
        case 403:
        case 404:
        case 405:
        case 410:
        case 414:
        case 451:
        case 500:
        case 501:
        case 502:
        case 503:
        case 504:
            return true;
        default:
            return false;
    }
}

bool isSafeMethod(std::string_view m) {
    return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE";
}

std::string_view verdictName(StoreVerdict v) {
    switch (v) {
        case StoreVerdict::Store:
            return "store";
        case StoreVerdict::Disabled:
            return "disabled";
        case StoreVerdict::Method:
            return "method";
        case StoreVerdict::Status:
            return "status";
        case StoreVerdict::RequestNoStore:
            return "request-no-store";
        case StoreVerdict::NoStore:
            return "no-store";
        case StoreVerdict::Private:
            return "private";
        case StoreVerdict::Authorization:
            return "authorization";
        case StoreVerdict::SetCookie:
            return "set-cookie";
        case StoreVerdict::VaryStar:
            return "vary-star";
        case StoreVerdict::NoLifetime:
            return "no-lifetime";
        case StoreVerdict::TooLarge:
            return "too-large";
    }
    return "?";
}

std::string_view usabilityName(Usability u) {
    switch (u) {
        case Usability::Fresh:
            return "fresh";
        case Usability::StaleAcceptable:
            return "stale-acceptable";
        case Usability::StaleWhileRevalidate:
            return "stale-while-revalidate";
        case Usability::Revalidate:
            return "revalidate";
        case Usability::OnlyIfCachedMiss:
            return "only-if-cached-miss";
    }
    return "?";
}

StoreVerdict checkStorable(const http::RequestHead& request, const http::ResponseHead& response,
                           const ResponseDirectives& d, const CachePolicy& policy,
                           std::optional<std::uint64_t> body_size) {
    const CacheControl& cc = d.cc;
    if (!policy.enabled) {
        return StoreVerdict::Disabled;
    }
    // 3: "the request method is understood by the cache". strata stores GET only; a HEAD is
    // answered from a stored GET, and POST responses are never reused for a later GET here.
    if (request.method != "GET") {
        return StoreVerdict::Method;
    }
    const int status = response.status;
    // 3: a final status; 206 and 304 only when understood (strata does neither: no ranges, and
    // a 304 updates an entry, it is not one).
    if (status < 200 || status > 999 || status == 206 || status == 304) {
        return StoreVerdict::Status;
    }
    if (requestDirectives(request.fields).no_store) {
        return StoreVerdict::RequestNoStore;  // 5.2.1.5
    }
    if (cc.must_understand) {
        // 5.2.2.3: only a cache that understands the status may store; it then ignores no-store.
        if (!isUnderstoodStatus(status)) {
            return StoreVerdict::Status;
        }
    } else if (cc.no_store) {
        return StoreVerdict::NoStore;
    }
    if (cc.private_) {
        return StoreVerdict::Private;  // 5.2.2.7, shared cache
    }
    // 3.5: Authorization only with an explicit permission for shared caches.
    if (request.fields.has("Authorization") && !cc.public_ && !cc.s_maxage && !cc.must_revalidate) {
        return StoreVerdict::Authorization;
    }
    if (response.fields.has("Set-Cookie") && !policy.allow_set_cookie) {
        return StoreVerdict::SetCookie;
    }
    bool vary_star = false;
    for (const auto& f : response.fields) {
        if (equalsIgnoreCase(f.name, "Vary")) {
            forEachListElement(f.value, [&](std::string_view e) { vary_star |= e == "*"; });
        }
    }
    if (vary_star) {
        return StoreVerdict::VaryStar;  // 4.1: never matches, storing it is waste
    }
    // 3: explicit freshness, public, a heuristically cacheable status, or no-cache (stored for
    // revalidation) make the response storable.
    const bool explicit_lifetime = hasExplicitLifetime(response, d);
    const bool heuristic_ok = cc.public_ || isHeuristicallyCacheable(status);
    if (!explicit_lifetime && !heuristic_ok && !cc.no_cache) {
        return StoreVerdict::NoLifetime;
    }
    if (!explicit_lifetime && heuristic_ok && !cc.no_cache) {
        // Storable, but worthless with neither a lifetime nor a validator to revalidate with.
        Lifetime lt = freshnessLifetime(response, d, policy, WallTime{});
        bool has_validator = response.fields.has("ETag") || response.fields.has("Last-Modified");
        if (lt.value.count() <= 0 && !has_validator && policy.stale_if_error.count() <= 0 &&
            !cc.stale_if_error) {
            return StoreVerdict::NoLifetime;
        }
    }
    if (policy.max_object_bytes != 0 && body_size && *body_size > policy.max_object_bytes) {
        return StoreVerdict::TooLarge;
    }
    return StoreVerdict::Store;
}

Lifetime freshnessLifetime(const http::ResponseHead& response, const ResponseDirectives& d,
                           const CachePolicy& policy, WallTime response_time) {
    const CacheControl& cc = d.cc;
    // 4.2.1: s-maxage (shared caches), then max-age.
    if (cc.s_maxage) {
        return {secs(*cc.s_maxage), LifetimeSource::SMaxAge};
    }
    if (cc.max_age) {
        return {secs(*cc.max_age), LifetimeSource::MaxAge};
    }
    const auto& fields = response.fields;
    const std::string* date_field = fields.get("Date");
    std::optional<WallTime> date;
    if (date_field && fields.count("Date") == 1) {
        date = parseHttpDate(*date_field, response_time);
    }
    // RFC 9110 6.6.1: no (valid) Date means the time the message was received.
    const WallTime date_value = date.value_or(response_time);
    if (d.expiresApplies() && fields.has("Expires")) {
        // 5.3: an invalid date (e.g. "0") is in the past; 4.2.1: several different Expires
        // values make the response stale.
        std::optional<WallTime> expires;
        bool conflicting = false;
        for (const auto& f : fields) {
            if (!equalsIgnoreCase(f.name, "Expires")) {
                continue;
            }
            auto t = parseHttpDate(f.value, response_time);
            if (!t || (expires && *expires != *t)) {
                conflicting = true;
                break;
            }
            expires = t;
        }
        if (conflicting || !expires) {
            return {Seconds(0), LifetimeSource::Expires};
        }
        return {std::max(Seconds(0), diff(*expires, date_value)), LifetimeSource::Expires};
    }
    // 4.2.2: heuristic freshness only for heuristically cacheable statuses or public.
    if (!cc.public_ && !isHeuristicallyCacheable(response.status)) {
        return {};
    }
    if (const std::string* lm_field = fields.get("Last-Modified")) {
        if (auto lm = parseHttpDate(*lm_field, response_time); lm && *lm <= date_value) {
            auto age = std::chrono::duration<double>(date_value - *lm).count();
            auto h = static_cast<std::int64_t>(age * policy.heuristic_fraction);
            return {std::min(secs(h), policy.heuristic_max), LifetimeSource::Heuristic};
        }
    }
    if (policy.default_ttl.count() > 0) {
        return {policy.default_ttl, LifetimeSource::DefaultTtl};
    }
    return {};
}

AgeInputs ageInputs(const http::ResponseHead& response, WallTime request_time,
                    WallTime response_time) {
    AgeInputs in;
    in.request_time = request_time;
    in.response_time = response_time;
    in.date_value = response_time;
    if (const std::string* date = response.fields.get("Date")) {
        if (auto t = parseHttpDate(*date, response_time)) {
            in.date_value = *t;
        }
    }
    if (const std::string* age = response.fields.get("Age")) {
        // 5.1: a list-valued Age uses the first member; an invalid one is ignored.
        std::string_view first = *age;
        first = trimOws(first.substr(0, first.find(',')));
        if (auto v = parseDeltaSeconds(first)) {
            in.age_value = secs(*v);
        }
    }
    return in;
}

Seconds correctedInitialAge(const AgeInputs& in) {
    // RFC 9111 4.2.3, literally.
    const Seconds apparent_age = std::max(Seconds(0), diff(in.response_time, in.date_value));
    const Seconds response_delay = std::max(Seconds(0), diff(in.response_time, in.request_time));
    const Seconds corrected_age_value = in.age_value + response_delay;
    return std::max(apparent_age, corrected_age_value);
}

Seconds currentAge(Seconds corrected_initial_age, WallTime response_time, WallTime now) {
    const Seconds resident_time = std::max(Seconds(0), diff(now, response_time));
    return corrected_initial_age + resident_time;
}

FreshnessInfo freshnessInfo(const http::ResponseHead& response, const ResponseDirectives& d,
                            const CachePolicy& policy, WallTime request_time,
                            WallTime response_time) {
    FreshnessInfo fi;
    fi.corrected_initial_age =
        correctedInitialAge(ageInputs(response, request_time, response_time));
    fi.response_time = response_time;
    fi.lifetime = freshnessLifetime(response, d, policy, response_time).value;
    fi.no_cache = d.cc.no_cache;
    // 5.2.2.10: s-maxage implies proxy-revalidate for a shared cache.
    fi.must_revalidate = d.cc.must_revalidate || d.cc.proxy_revalidate || d.cc.s_maxage;
    fi.stale_while_revalidate = d.cc.stale_while_revalidate ? secs(*d.cc.stale_while_revalidate)
                                                            : policy.stale_while_revalidate;
    fi.stale_if_error = d.cc.stale_if_error ? secs(*d.cc.stale_if_error) : policy.stale_if_error;
    return fi;
}

LookupDecision decideLookup(const FreshnessInfo& s, const CacheControl& req, WallTime now) {
    LookupDecision out;
    out.age = currentAge(s.corrected_initial_age, s.response_time, now);
    const Seconds lifetime = s.soft_purged ? Seconds(0) : s.lifetime;
    out.ttl = lifetime - out.age;
    const bool fresh = lifetime > out.age;  // 4.2: fresh when lifetime > current_age
    const Seconds staleness = fresh ? Seconds(0) : out.age - lifetime;

    // stale-if-error (RFC 5861 4): the response's window (or the route's), widened by a
    // request stale-if-error; never when the response demands revalidation (5.2.2.2).
    Seconds sie = s.stale_if_error;
    if (req.stale_if_error) {
        sie = std::max(sie, secs(*req.stale_if_error));
    }
    // Ages are whole seconds: without a window, "0 s stale" must still not count as allowed.
    out.serve_stale_on_error =
        !s.must_revalidate && (fresh || (sie.count() > 0 && staleness <= sie));

    auto revalidate = [&] {
        out.usability = req.only_if_cached ? Usability::OnlyIfCachedMiss : Usability::Revalidate;
        return out;
    };
    // 5.2.1.4 request no-cache, 5.2.2.4 response no-cache: validate before every reuse.
    if (req.no_cache || s.no_cache) {
        return revalidate();
    }
    // 5.2.1.1: the client accepts no response older than max-age (unless max-stale allows).
    if (req.max_age && out.age > secs(*req.max_age) && !(req.max_stale_any || req.max_stale)) {
        return revalidate();
    }
    // 5.2.1.3: it wants at least min-fresh seconds of freshness left.
    if (req.min_fresh && out.ttl < secs(*req.min_fresh)) {
        return revalidate();
    }
    if (fresh) {
        out.usability = Usability::Fresh;
        return out;
    }
    // Stale. 4.2.4 / 5.2.2.2: must-revalidate (and proxy-revalidate, s-maxage) forbid any
    // stale use, whatever the client tolerates.
    if (s.must_revalidate) {
        return revalidate();
    }
    // 5.2.1.2: max-stale accepts staleness up to its value (any without one).
    if (req.max_stale_any || (req.max_stale && staleness <= secs(*req.max_stale))) {
        out.usability = Usability::StaleAcceptable;
        return out;
    }
    if (staleness <= s.stale_while_revalidate && s.stale_while_revalidate.count() > 0) {
        out.usability = Usability::StaleWhileRevalidate;
        return out;
    }
    return revalidate();
}

Seconds storageTtl(const FreshnessInfo& s, WallTime now) {
    const Seconds age = currentAge(s.corrected_initial_age, s.response_time, now);
    const Seconds window = std::max(s.stale_while_revalidate, s.stale_if_error);
    const Seconds ttl = s.lifetime + (s.must_revalidate ? Seconds(0) : window) - age;
    return std::max(ttl, Seconds(1));
}

}  // namespace strata::cache
