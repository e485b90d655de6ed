// Any bytes as Cache-Control, a targeted field (RFC 9213), request directives and HTTP-dates:
// never a crash, and the conservative invariants hold.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "strata/cache/cache_control.h"
#include "strata/cache/freshness.h"
#include "strata/http/message.h"

using namespace strata;
using namespace strata::cache;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    const WallTime now{std::chrono::seconds(1'700'000'000)};

    CacheControl cc = parseCacheControl(in);
    auto checkDeltas = [](const CacheControl& c) {
        for (const auto& d : {c.max_age, c.s_maxage, c.stale_while_revalidate, c.stale_if_error,
                              c.max_stale, c.min_fresh}) {
            if (d && (*d < 0 || *d > kDeltaSecondsMax)) {
                std::abort();  // delta-seconds are never negative nor above 2^31
            }
        }
    };
    checkDeltas(cc);
    if (auto t = parseTargetedCacheControl(in)) {
        checkDeltas(*t);
    }

    http::Fields fields;
    fields.add("Cache-Control", in);
    fields.add("CDN-Cache-Control", in);
    fields.add("Expires", in);
    fields.add("Date", in);
    fields.add("Last-Modified", in);
    fields.add("Age", in);
    ResponseDirectives rd = responseDirectives(fields);
    checkDeltas(rd.cc);
    checkDeltas(requestDirectives(fields));

    http::ResponseHead resp;
    resp.status = 200;
    resp.fields = fields;
    Lifetime lt = freshnessLifetime(resp, rd, CachePolicy{}, now);
    if (lt.value.count() < 0) {
        std::abort();
    }
    FreshnessInfo fi = freshnessInfo(resp, rd, CachePolicy{}, now, now);
    (void)decideLookup(fi, cc, now + std::chrono::seconds(5));

    if (auto t = parseHttpDate(in, now)) {
        // A parsed date formats to IMF-fixdate and parses back to the same second.
        auto again = parseHttpDate(formatHttpDate(*t), now);
        if (!again || *again != std::chrono::floor<std::chrono::seconds>(*t)) {
            std::abort();
        }
    }
    (void)parseDeltaSeconds(in);
    return 0;
}
