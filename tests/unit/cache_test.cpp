// Unit tests of the cache module: RFC 9111 rules table-driven from the RFC text, L1 eviction
// and purge, the L2 record format.
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "strata/cache/cache_control.h"
#include "strata/cache/coalescer.h"
#include "strata/cache/entry.h"
#include "strata/cache/freshness.h"
#include "strata/cache/key.h"
#include "strata/cache/l1_cache.h"
#include "strata/cache/l2_record.h"
#include "strata/cache/validation.h"
#include "strata/event/loop.h"

namespace doctest {
template <>
struct StringMaker<std::string_view> {
    static String convert(std::string_view v) {
        return String(v.data(), static_cast<unsigned>(v.size()));
    }
};
}  // namespace doctest

using namespace strata;
using namespace strata::cache;
using std::chrono::seconds;

namespace {

// 2023-11-14T22:13:20Z, the ManualClock's default wall time.
const WallTime kNow = WallTime(seconds(1'700'000'000));

http::Fields fieldsOf(std::initializer_list<std::pair<const char*, const char*>> list) {
    http::Fields f;
    for (const auto& [n, v] : list) {
        f.add(n, v);
    }
    return f;
}

http::ResponseHead response(int status,
                            std::initializer_list<std::pair<const char*, const char*>> list) {
    http::ResponseHead r;
    r.status = status;
    r.fields = fieldsOf(list);
    return r;
}

http::RequestHead request(std::string method = "GET", std::string path = "/a",
                          std::string query = "") {
    http::RequestHead r;
    r.method = std::move(method);
    r.host = "example.com";
    r.path = std::move(path);
    r.query = std::move(query);
    return r;
}

EntryPtr makeEntry(const std::string& primary, const http::ResponseHead& resp,
                   const http::RequestHead& req, std::string body, WallTime t = kNow,
                   const CachePolicy& policy = CachePolicy{}) {
    ResponseDirectives d = responseDirectives(resp.fields);
    StoreInput in;
    in.request = &req;
    in.response = &resp;
    in.directives = &d;
    in.policy = &policy;
    in.primary_key = primary;
    in.body = std::make_shared<const Body>(std::move(body));
    in.request_time = t;
    in.response_time = t;
    return buildEntry(in);
}

}  // namespace

TEST_SUITE("cache/cache_control") {
    TEST_CASE("delta-seconds: digits only, overflow saturates at 2^31 (RFC 9111 1.2.2)") {
        struct Row {
            const char* in;
            std::optional<std::int64_t> want;
        };
        const Row rows[] = {
            {"0", 0},
            {"60", 60},
            {"2147483647", 2147483647},
            {"2147483648", kDeltaSecondsMax},
            {"99999999999999999999999", kDeltaSecondsMax},
            {"", std::nullopt},
            {"-1", std::nullopt},
            {"+5", std::nullopt},
            {"1.5", std::nullopt},
            {" 5", std::nullopt},
            {"5s", std::nullopt},
        };
        for (const auto& r : rows) {
            CAPTURE(r.in);
            CHECK(parseDeltaSeconds(r.in) == r.want);
        }
    }

    TEST_CASE("response directives") {
        auto cc = parseCacheControl(
            "public, max-age=60, s-maxage=\"30\", stale-while-revalidate=5, "
            "stale-if-error=600, must-revalidate, proxy-revalidate, no-transform, immutable");
        CHECK(cc.public_);
        CHECK(cc.max_age == 60);
        CHECK(cc.s_maxage == 30);  // 5.2: quoted form accepted
        CHECK(cc.stale_while_revalidate == 5);
        CHECK(cc.stale_if_error == 600);
        CHECK(cc.must_revalidate);
        CHECK(cc.proxy_revalidate);
        CHECK(cc.no_transform);
        CHECK(cc.immutable);
        CHECK_FALSE(cc.no_store);
        CHECK_FALSE(cc.had_invalid);
    }

    TEST_CASE("directive names are case-insensitive, whitespace and empty elements tolerated") {
        auto cc = parseCacheControl(" ,MAX-AGE = 10 ,, No-Store\t,");
        CHECK(cc.max_age == 10);
        CHECK(cc.no_store);
    }

    TEST_CASE("invalid or conflicting lifetimes give the conservative reading") {
        struct Row {
            const char* in;
            std::int64_t max_age;
            bool invalid;
        };
        const Row rows[] = {
            {"max-age=60", 60, false},
            {"max-age=60, max-age=60", 60, false},  // same value twice is fine
            {"max-age=60, max-age=120", 0, true},   // 4.2.1: conflicting -> stale
            {"max-age=-1", 0, true},                // negative is not delta-seconds
            {"max-age=abc", 0, true},
            {"max-age", 0, true},  // argument required
            {"max-age=\"\"", 0, true},
            {"max-age=1.5", 0, true},
            {"max-age=60 junk", 0, true},
            {"max-age=\"60", 0, true},  // unterminated quote
            {"max-age=99999999999999", kDeltaSecondsMax, false},
        };
        for (const auto& r : rows) {
            CAPTURE(r.in);
            auto cc = parseCacheControl(r.in);
            REQUIRE(cc.max_age.has_value());
            CHECK(*cc.max_age == r.max_age);
            CHECK(cc.had_invalid == r.invalid);
        }
    }

    TEST_CASE("qualified private and no-cache list field names; commas inside quotes") {
        auto cc = parseCacheControl("private=\"Set-Cookie, X-User\", no-cache=\"x-a\", max-age=5");
        CHECK_FALSE(cc.private_);
        CHECK(cc.private_fields == std::vector<std::string>{"set-cookie", "x-user"});
        CHECK_FALSE(cc.no_cache);
        CHECK(cc.no_cache_fields == std::vector<std::string>{"x-a"});
        CHECK(cc.max_age == 5);
        CHECK(parseCacheControl("private").private_);
        CHECK(parseCacheControl("private=\"\"").private_);  // names nothing: take it whole
        CHECK(parseCacheControl("no-cache=\"\"").no_cache);
    }

    TEST_CASE("request directives and Pragma") {
        auto cc = requestDirectives(fieldsOf(
            {{"Cache-Control", "max-stale, min-fresh=10"}, {"Cache-Control", "only-if-cached"}}));
        CHECK(cc.max_stale_any);
        CHECK(cc.min_fresh == 10);
        CHECK(cc.only_if_cached);
        CHECK(parseCacheControl("max-stale=30").max_stale == 30);
        CHECK_FALSE(parseCacheControl("max-stale=x").max_stale.has_value());
        CHECK(parseCacheControl("min-fresh=5, min-fresh=20").min_fresh == 20);
        // 5.4: Pragma: no-cache counts only when Cache-Control is absent.
        CHECK(requestDirectives(fieldsOf({{"Pragma", "no-cache"}})).no_cache);
        CHECK_FALSE(
            requestDirectives(fieldsOf({{"Pragma", "no-cache"}, {"Cache-Control", "max-age=5"}}))
                .no_cache);
    }

    TEST_CASE("unknown extensions are ignored (5.2.3)") {
        auto cc = parseCacheControl("foo, bar=\"baz, qux\", max-age=7, community=\"UCI\"");
        CHECK(cc.max_age == 7);
        CHECK_FALSE(cc.had_invalid);
    }

    TEST_CASE("targeted fields are RFC 8941 Dictionaries (RFC 9213 2.1)") {
        auto ok = parseTargetedCacheControl("max-age=60, stale-if-error=10;x=1, private=?0");
        REQUIRE(ok);
        CHECK(ok->max_age == 60);
        CHECK(ok->stale_if_error == 10);
        CHECK_FALSE(ok->private_);  // Boolean false: absent
        CHECK(parseTargetedCacheControl("no-store=?1")->no_store);
        CHECK(parseTargetedCacheControl("max-age=\"60\"")->max_age == 0);  // wrong type
        CHECK(parseTargetedCacheControl("max-age=-5")->max_age == 0);
        // Not a Dictionary: ignored entirely.
        for (const char* bad : {"", "Max-Age=60", "max-age=60,", "max-age=60 no-store",
                                "max-age=1234567890123456", "a=\"unterminated", "=5"}) {
            CAPTURE(bad);
            CHECK_FALSE(parseTargetedCacheControl(bad).has_value());
        }
    }

    TEST_CASE("targeted field precedence: Strata > CDN > Cache-Control") {
        auto all = fieldsOf({{"Cache-Control", "max-age=10"},
                             {"CDN-Cache-Control", "max-age=20"},
                             {"Strata-Cache-Control", "max-age=30"}});
        auto d = responseDirectives(all);
        CHECK(d.source == CacheControlSource::StrataCacheControl);
        CHECK(d.cc.max_age == 30);
        CHECK_FALSE(d.expiresApplies());
        all.remove("Strata-Cache-Control");
        d = responseDirectives(all);
        CHECK(d.source == CacheControlSource::CdnCacheControl);
        CHECK(d.cc.max_age == 20);
        // An invalid CDN-Cache-Control is ignored: back to Cache-Control.
        all.set("CDN-Cache-Control", "MAX-AGE=20");
        d = responseDirectives(all);
        CHECK(d.source == CacheControlSource::CacheControl);
        CHECK(d.cc.max_age == 10);
        CHECK(d.expiresApplies());
        CHECK(responseDirectives(http::Fields{}).source == CacheControlSource::None);
    }

    TEST_CASE("HTTP-date: the three formats of RFC 9110 5.6.7") {
        const WallTime want = WallTime(seconds(784111777));  // 1994-11-06T08:49:37Z
        CHECK(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT", kNow) == want);
        CHECK(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", kNow) == want);
        CHECK(parseHttpDate("Sun Nov  6 08:49:37 1994", kNow) == want);
        CHECK(formatHttpDate(want) == "Sun, 06 Nov 1994 08:49:37 GMT");
        CHECK(formatHttpDate(kNow) == "Tue, 14 Nov 2023 22:13:20 GMT");
        CHECK(parseHttpDate(formatHttpDate(kNow), kNow) == kNow);
        // RFC 850 two-digit year: more than 50 years ahead means the previous century.
        // kNow is in 2023: "74" is 2074 (51 years ahead) -> 1974; "73" is 2073 (50 years) stays.
        CHECK(parseHttpDate("Wednesday, 06-Nov-74 08:49:37 GMT", kNow) ==
              WallTime(seconds(152959777)));
        CHECK(parseHttpDate("Monday, 06-Nov-73 08:49:37 GMT", kNow) >
              WallTime(seconds(3277000000)));
        CHECK(parseHttpDate("Tuesday, 01-Jan-80 00:00:00 GMT", kNow) ==
              WallTime(seconds(315532800)));
        CHECK(parseHttpDate("Wed, 29 Feb 2024 00:00:00 GMT", kNow).has_value());
        for (const char* bad :
             {"0", "", "-1", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 32 Nov 1994 08:49:37 GMT",
              "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:49:37 GMT",
              "Thu, 29 Feb 2023 00:00:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
              "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun Nov 6 08:49:37 1994"}) {
            CAPTURE(bad);
            CHECK_FALSE(parseHttpDate(bad, kNow).has_value());
        }
        // Far future is clamped, never overflows.
        auto far = parseHttpDate("Fri, 31 Dec 9999 23:59:59 GMT", kNow);
        REQUIRE(far);
        CHECK(*far > kNow);
    }
}

TEST_SUITE("cache/storability") {
    TEST_CASE("RFC 9111 3: what a shared cache may store") {
        struct Row {
            const char* name;
            std::string method;
            int status;
            std::vector<std::pair<const char*, const char*>> resp;
            std::vector<std::pair<const char*, const char*>> req;
            StoreVerdict want;
        };
        const std::vector<Row> rows = {
            {"plain max-age",
             "GET",
             200,
             {{"Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Store},
            {"HEAD is not stored",
             "HEAD",
             200,
             {{"Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Method},
            {"POST is not stored",
             "POST",
             200,
             {{"Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Method},
            {"206 not understood",
             "GET",
             206,
             {{"Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Status},
            {"304 is not an entry",
             "GET",
             304,
             {{"Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Status},
            {"1xx", "GET", 103, {{"Cache-Control", "max-age=60"}}, {}, StoreVerdict::Status},
            {"no-store",
             "GET",
             200,
             {{"Cache-Control", "max-age=60, no-store"}},
             {},
             StoreVerdict::NoStore},
            {"request no-store",
             "GET",
             200,
             {{"Cache-Control", "max-age=60"}},
             {{"Cache-Control", "no-store"}},
             StoreVerdict::RequestNoStore},
            {"must-understand ignores no-store on an understood status",
             "GET",
             200,
             {{"Cache-Control", "max-age=60, no-store, must-understand"}},
             {},
             StoreVerdict::Store},
            {"must-understand on an unknown status",
             "GET",
             299,
             {{"Cache-Control", "max-age=60, no-store, must-understand"}},
             {},
             StoreVerdict::Status},
            {"private",
             "GET",
             200,
             {{"Cache-Control", "max-age=60, private"}},
             {},
             StoreVerdict::Private},
            {"qualified private is storable",
             "GET",
             200,
             {{"Cache-Control", "max-age=60, private=\"x-user\""}},
             {},
             StoreVerdict::Store},
            {"Authorization",
             "GET",
             200,
             {{"Cache-Control", "max-age=60"}},
             {{"Authorization", "Basic x"}},
             StoreVerdict::Authorization},
            {"Authorization + public",
             "GET",
             200,
             {{"Cache-Control", "max-age=60, public"}},
             {{"Authorization", "Basic x"}},
             StoreVerdict::Store},
            {"Authorization + s-maxage",
             "GET",
             200,
             {{"Cache-Control", "s-maxage=60"}},
             {{"Authorization", "Basic x"}},
             StoreVerdict::Store},
            {"Authorization + must-revalidate",
             "GET",
             200,
             {{"Cache-Control", "max-age=60, must-revalidate"}},
             {{"Authorization", "Basic x"}},
             StoreVerdict::Store},
            {"Set-Cookie",
             "GET",
             200,
             {{"Cache-Control", "max-age=60"}, {"Set-Cookie", "a=b"}},
             {},
             StoreVerdict::SetCookie},
            {"Vary: *",
             "GET",
             200,
             {{"Cache-Control", "max-age=60"}, {"Vary", "Accept, *"}},
             {},
             StoreVerdict::VaryStar},
            {"302 without lifetime", "GET", 302, {}, {}, StoreVerdict::NoLifetime},
            {"302 with max-age",
             "GET",
             302,
             {{"Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Store},
            {"500 with Expires",
             "GET",
             500,
             {{"Date", "Tue, 14 Nov 2023 22:13:20 GMT"},
              {"Expires", "Tue, 14 Nov 2023 22:14:20 GMT"}},
             {},
             StoreVerdict::Store},
            {"404 heuristic via Last-Modified",
             "GET",
             404,
             {{"Last-Modified", "Tue, 14 Nov 2023 20:00:00 GMT"}},
             {},
             StoreVerdict::Store},
            {"200 with only an ETag (revalidate each time)",
             "GET",
             200,
             {{"ETag", "\"x\""}},
             {},
             StoreVerdict::Store},
            {"200 with nothing at all", "GET", 200, {}, {}, StoreVerdict::NoLifetime},
            {"302 public is heuristically cacheable",
             "GET",
             302,
             {{"Cache-Control", "public"}, {"ETag", "\"x\""}},
             {},
             StoreVerdict::Store},
            {"no-cache is stored for revalidation",
             "GET",
             302,
             {{"Cache-Control", "no-cache"}},
             {},
             StoreVerdict::Store},
            {"CDN-Cache-Control overrides no-store in Cache-Control",
             "GET",
             200,
             {{"Cache-Control", "no-store"}, {"CDN-Cache-Control", "max-age=60"}},
             {},
             StoreVerdict::Store},
        };
        for (const auto& r : rows) {
            CAPTURE(std::string(r.name));
            auto req = request(r.method);
            for (const auto& [n, v] : r.req) {
                req.fields.add(n, v);
            }
            http::ResponseHead resp;
            resp.status = r.status;
            for (const auto& [n, v] : r.resp) {
                resp.fields.add(n, v);
            }
            CHECK(verdictName(checkStorable(req, resp, responseDirectives(resp.fields),
                                            CachePolicy{}, std::nullopt)) == verdictName(r.want));
        }
    }

    TEST_CASE("route policy: disabled, Set-Cookie allowed, default_ttl, size limit") {
        auto req = request();
        auto resp = response(200, {{"Set-Cookie", "a=b"}, {"Cache-Control", "max-age=5"}});
        CachePolicy p;
        p.allow_set_cookie = true;
        CHECK(checkStorable(req, resp, responseDirectives(resp.fields), p, 10) ==
              StoreVerdict::Store);
        p.max_object_bytes = 5;
        CHECK(checkStorable(req, resp, responseDirectives(resp.fields), p, 10) ==
              StoreVerdict::TooLarge);
        p.enabled = false;
        CHECK(checkStorable(req, resp, responseDirectives(resp.fields), p, 1) ==
              StoreVerdict::Disabled);
        auto bare = response(200, {});
        CachePolicy ttl;
        ttl.default_ttl = seconds(30);
        CHECK(checkStorable(req, bare, responseDirectives(bare.fields), ttl, 1) ==
              StoreVerdict::Store);
        // default_ttl never makes a non-heuristic status cacheable.
        auto redirect = response(302, {});
        CHECK(checkStorable(req, redirect, responseDirectives(redirect.fields), ttl, 1) ==
              StoreVerdict::NoLifetime);
    }
}

TEST_SUITE("cache/freshness") {
    TEST_CASE("lifetime precedence (RFC 9111 4.2.1)") {
        struct Row {
            const char* name;
            int status;
            std::vector<std::pair<const char*, const char*>> fields;
            std::int64_t want;
            LifetimeSource source;
        };
        const char* date = "Tue, 14 Nov 2023 22:13:20 GMT";  // == kNow
        const std::vector<Row> rows = {
            {"s-maxage wins",
             200,
             {{"Cache-Control", "max-age=10, s-maxage=20"},
              {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}},
             20,
             LifetimeSource::SMaxAge},
            {"max-age over Expires",
             200,
             {{"Cache-Control", "max-age=10"},
              {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"},
              {"Date", date}},
             10,
             LifetimeSource::MaxAge},
            {"Expires - Date",
             200,
             {{"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}, {"Date", date}},
             3600,
             LifetimeSource::Expires},
            {"Expires without Date uses response_time",
             200,
             {{"Expires", "Tue, 14 Nov 2023 22:14:20 GMT"}},
             60,
             LifetimeSource::Expires},
            {"Expires in the past",
             200,
             {{"Expires", "Tue, 14 Nov 2023 21:13:20 GMT"}, {"Date", date}},
             0,
             LifetimeSource::Expires},
            {"invalid Expires is in the past (5.3)",
             200,
             {{"Expires", "0"}, {"Date", date}, {"Last-Modified", "Mon, 13 Nov 2023 22:13:20 GMT"}},
             0,
             LifetimeSource::Expires},
            {"two different Expires: stale",
             200,
             {{"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"},
              {"Expires", "Tue, 14 Nov 2023 23:13:21 GMT"},
              {"Date", date}},
             0,
             LifetimeSource::Expires},
            {"heuristic 10% of Date - Last-Modified",
             200,
             {{"Date", date}, {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"}},
             3600,
             LifetimeSource::Heuristic},
            {"heuristic capped at 1 day",
             200,
             {{"Date", date}, {"Last-Modified", "Sun, 14 Nov 2021 22:13:20 GMT"}},
             86400,
             LifetimeSource::Heuristic},
            {"no heuristic for 302",
             302,
             {{"Date", date}, {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"}},
             0,
             LifetimeSource::None},
            {"heuristic for public 302",
             302,
             {{"Cache-Control", "public"},
              {"Date", date},
              {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"}},
             3600,
             LifetimeSource::Heuristic},
            {"Last-Modified in the future: no heuristic",
             200,
             {{"Date", date}, {"Last-Modified", "Wed, 15 Nov 2023 12:13:20 GMT"}},
             0,
             LifetimeSource::None},
            {"CDN-Cache-Control ignores Expires",
             200,
             {{"CDN-Cache-Control", "public"},
              {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"},
              {"Date", date}},
             0,
             LifetimeSource::None},
            {"huge max-age",
             200,
             {{"Cache-Control", "max-age=999999999999"}},
             kDeltaSecondsMax,
             LifetimeSource::MaxAge},
        };
        for (const auto& r : rows) {
            CAPTURE(std::string(r.name));
            http::ResponseHead resp;
            resp.status = r.status;
            for (const auto& [n, v] : r.fields) {
                resp.fields.add(n, v);
            }
            auto lt = freshnessLifetime(resp, responseDirectives(resp.fields), CachePolicy{}, kNow);
            CHECK(lt.value.count() == r.want);
            CHECK(static_cast<int>(lt.source) == static_cast<int>(r.source));
        }
    }

    TEST_CASE("route default_ttl applies only without explicit lifetime or Last-Modified") {
        CachePolicy p;
        p.default_ttl = seconds(42);
        auto bare = response(200, {});
        CHECK(freshnessLifetime(bare, responseDirectives(bare.fields), p, kNow).value.count() ==
              42);
        auto explicit_ = response(200, {{"Cache-Control", "max-age=7"}});
        CHECK(freshnessLifetime(explicit_, responseDirectives(explicit_.fields), p, kNow)
                  .value.count() == 7);
    }

    TEST_CASE("age calculation (RFC 9111 4.2.3)") {
        struct Row {
            const char* name;
            std::int64_t date_offset;  // Date relative to response_time
            const char* age;           // Age field or nullptr
            std::int64_t delay;        // response_time - request_time
            std::int64_t resident;     // now - response_time
            std::int64_t want;
        };
        const Row rows[] = {
            {"fresh from origin", 0, nullptr, 0, 0, 0},
            {"apparent age from an old Date", -30, nullptr, 0, 0, 30},
            {"Date in the future gives apparent_age 0", 30, nullptr, 0, 0, 0},
            {"Age plus response_delay", 0, "10", 2, 0, 12},
            {"max(apparent, corrected) picks apparent", -50, "10", 2, 0, 50},
            {"resident time adds", 0, "10", 0, 100, 110},
            {"invalid Age ignored", 0, "ten", 1, 5, 6},
            {"list Age uses first member", 0, "7, 100", 0, 0, 7},
            {"huge Age saturates", 0, "99999999999999", 0, 0, kDeltaSecondsMax},
        };
        for (const auto& r : rows) {
            CAPTURE(std::string(r.name));
            const WallTime response_time = kNow;
            const WallTime request_time = kNow - seconds(r.delay);
            http::ResponseHead resp;
            resp.status = 200;
            resp.fields.add("Date", formatHttpDate(response_time + seconds(r.date_offset)));
            if (r.age) {
                resp.fields.add("Age", r.age);
            }
            auto in = ageInputs(resp, request_time, response_time);
            auto cia = correctedInitialAge(in);
            CHECK(currentAge(cia, response_time, response_time + seconds(r.resident)).count() ==
                  r.want);
        }
    }

    TEST_CASE("lookup decisions (RFC 9111 4.2, 4.3, 5.2.1; RFC 5861)") {
        FreshnessInfo base;
        base.response_time = kNow;
        base.lifetime = seconds(100);
        struct Row {
            const char* name;
            std::int64_t elapsed;
            const char* req_cc;
            std::function<void(FreshnessInfo&)> tweak;
            Usability want;
            bool stale_on_error;
        };
        auto none = [](FreshnessInfo&) {};
        const std::vector<Row> rows = {
            {"fresh", 50, "", none, Usability::Fresh, true},
            // Stale by 0 whole seconds is still stale: without a window it may not cover errors.
            {"exactly at lifetime is stale", 100, "", none, Usability::Revalidate, false},
            {"stale", 150, "", none, Usability::Revalidate, false},
            {"request no-cache", 10, "no-cache", none, Usability::Revalidate, true},
            {"response no-cache", 10, "", [](FreshnessInfo& f) { f.no_cache = true; },
             Usability::Revalidate, true},
            {"request max-age=0", 10, "max-age=0", none, Usability::Revalidate, true},
            {"request max-age satisfied", 10, "max-age=20", none, Usability::Fresh, true},
            {"min-fresh unsatisfied", 50, "min-fresh=60", none, Usability::Revalidate, true},
            {"min-fresh satisfied", 50, "min-fresh=40", none, Usability::Fresh, true},
            {"max-stale without value", 1000, "max-stale", none, Usability::StaleAcceptable, false},
            {"max-stale within", 120, "max-stale=30", none, Usability::StaleAcceptable, false},
            {"max-stale exceeded", 140, "max-stale=30", none, Usability::Revalidate, false},
            {"must-revalidate beats max-stale", 120, "max-stale",
             [](FreshnessInfo& f) { f.must_revalidate = true; }, Usability::Revalidate, false},
            {"stale-while-revalidate window", 120, "",
             [](FreshnessInfo& f) { f.stale_while_revalidate = seconds(30); },
             Usability::StaleWhileRevalidate, false},
            {"past stale-while-revalidate", 131, "",
             [](FreshnessInfo& f) { f.stale_while_revalidate = seconds(30); },
             Usability::Revalidate, false},
            {"swr not under must-revalidate", 120, "",
             [](FreshnessInfo& f) {
                 f.stale_while_revalidate = seconds(30);
                 f.must_revalidate = true;
             },
             Usability::Revalidate, false},
            {"stale-if-error window", 150, "",
             [](FreshnessInfo& f) { f.stale_if_error = seconds(60); }, Usability::Revalidate, true},
            {"request stale-if-error widens", 150, "stale-if-error=100", none,
             Usability::Revalidate, true},
            {"only-if-cached and stale", 150, "only-if-cached", none, Usability::OnlyIfCachedMiss,
             false},
            {"only-if-cached and fresh", 10, "only-if-cached", none, Usability::Fresh, true},
            {"soft purged is stale", 10, "",
             [](FreshnessInfo& f) {
                 f.soft_purged = true;
                 f.stale_if_error = seconds(60);
             },
             Usability::Revalidate, true},
            {"corrected initial age counts", 60, "",
             [](FreshnessInfo& f) { f.corrected_initial_age = seconds(50); }, Usability::Revalidate,
             false},
        };
        for (const auto& r : rows) {
            CAPTURE(std::string(r.name));
            FreshnessInfo f = base;
            r.tweak(f);
            auto d = decideLookup(f, parseCacheControl(r.req_cc), kNow + seconds(r.elapsed));
            CHECK(usabilityName(d.usability) == usabilityName(r.want));
            CHECK(d.serve_stale_on_error == r.stale_on_error);
        }
    }

    TEST_CASE("freshnessInfo: directives and route windows; s-maxage implies proxy-revalidate") {
        CachePolicy p;
        p.stale_while_revalidate = seconds(30);
        p.stale_if_error = seconds(300);
        auto r1 = response(200, {{"Cache-Control", "max-age=60, stale-while-revalidate=5"}});
        auto f1 = freshnessInfo(r1, responseDirectives(r1.fields), p, kNow, kNow);
        CHECK(f1.lifetime == seconds(60));
        CHECK(f1.stale_while_revalidate == seconds(5));
        CHECK(f1.stale_if_error == seconds(300));
        CHECK_FALSE(f1.must_revalidate);
        auto r2 = response(200, {{"Cache-Control", "s-maxage=60"}});
        CHECK(freshnessInfo(r2, responseDirectives(r2.fields), p, kNow, kNow).must_revalidate);
        CHECK(storageTtl(f1, kNow) == seconds(60 + 300));
        CHECK(storageTtl(f1, kNow + seconds(1000)) == seconds(1));
    }
}

TEST_SUITE("cache/key") {
    TEST_CASE("primary key: host case, default port, query modes") {
        KeyPolicy sorted;
        auto req = request("GET", "/p", "b=2&a=1&&a=0");
        req.host = "Example.COM:80";
        CHECK(primaryKey("http", req, sorted) == "http://example.com/p?a=1&a=0&b=2");
        req.host = "example.com:443";
        CHECK(primaryKey("https", req, sorted) == "https://example.com/p?a=1&a=0&b=2");
        CHECK(primaryKey("http", req, sorted) == "http://example.com:443/p?a=1&a=0&b=2");
        KeyPolicy asis{QueryMode::AsIs, {}, {}};
        CHECK(primaryKey("https", req, asis) == "https://example.com/p?b=2&a=1&&a=0");
        KeyPolicy ignore{QueryMode::Ignore, {}, {}};
        CHECK(primaryKey("https", req, ignore) == "https://example.com/p");
        KeyPolicy allow{QueryMode::AllowList, {"b"}, {}};
        CHECK(primaryKey("https", req, allow) == "https://example.com/p?b=2");
        req.query.clear();
        CHECK(primaryKey("https", req, sorted) == "https://example.com/p");
        req.host = "[::1]:8080";
        CHECK(primaryKey("http", req, sorted) == "http://[::1]:8080/p");
    }

    TEST_CASE("route key headers select a variant, never change the primary key") {
        KeyPolicy p;
        p.headers = {"X-Tenant", "accept-language"};
        auto a = request();
        a.fields.add("x-tenant", " acme ");
        auto b = request();
        b.fields.add("X-Tenant", "globex");
        // One primary key per URL whatever the header says: purge by URL reaches every variant.
        CHECK(primaryKey("http", a, p) == "http://example.com/a");
        CHECK(primaryKey("http", a, p) == primaryKey("http", b, p));

        // The headers join the response's Vary (lowercase, sorted, unique).
        VarySpec vary = parseVary(fieldsOf({{"Vary", "Accept-Language, Accept"}}));
        addKeyFields(vary, p);
        CHECK(vary.names == std::vector<std::string>{"accept", "accept-language", "x-tenant"});
        VarySpec none;
        addKeyFields(none, KeyPolicy{});
        CHECK(none.empty());
        VarySpec star = parseVary(fieldsOf({{"Vary", "*"}}));
        addKeyFields(star, p);
        CHECK(star.star);  // Vary: * still never matches

        auto resp = response(200, {{"Cache-Control", "max-age=60"}});
        auto entryFor = [&](const http::RequestHead& req, const KeyPolicy* key_policy) {
            ResponseDirectives d = responseDirectives(resp.fields);
            CachePolicy policy;
            StoreInput in;
            in.request = &req;
            in.response = &resp;
            in.directives = &d;
            in.policy = &policy;
            in.key_policy = key_policy;
            in.primary_key = primaryKey("http", req, p);
            in.request_time = kNow;
            in.response_time = kNow;
            return buildEntry(in);
        };
        auto ea = entryFor(a, &p);
        auto eb = entryFor(b, &p);
        CHECK(ea->meta().vary.names == std::vector<std::string>{"accept-language", "x-tenant"});
        CHECK(ea->meta().secondary_key != eb->meta().secondary_key);
        CHECK_FALSE(ea->fields().has("Vary"));  // implicit: nothing added to the response
        CHECK(entryFor(a, nullptr)->meta().vary.empty());

        L1Cache l1(L1Options{1 << 20, 2, EvictionKind::Lru, 16});
        REQUIRE(l1.insert(ea));
        auto miss = l1.lookup("http://example.com/a", b.fields);
        CHECK_FALSE(miss.entry);
        CHECK(miss.miss == L1Miss::Vary);
        REQUIRE(l1.insert(eb));
        REQUIRE(l1.lookup("http://example.com/a", a.fields).entry);
        CHECK(l1.lookup("http://example.com/a", a.fields).entry->meta().secondary_key ==
              ea->meta().secondary_key);
        CHECK(l1.lookup("http://example.com/a", b.fields).entry->meta().secondary_key ==
              eb->meta().secondary_key);
        CHECK_FALSE(l1.lookup("http://example.com/a", request().fields).entry);  // absent header
        // Purge (or invalidation) of the URL removes every variant.
        CHECK(l1.purgeKey("http://example.com/a") == 2);
        CHECK_FALSE(l1.lookup("http://example.com/a", a.fields).entry);
    }

    TEST_CASE("soft purge keeps a variant as a stale copy") {
        auto req = request();
        auto e = makeEntry("http://example.com/a",
                           response(200, {{"Cache-Control", "max-age=60, stale-if-error=300"}}),
                           req, "x");
        L1Cache l1(L1Options{1 << 20, 2, EvictionKind::Lru, 16});
        REQUIRE(l1.insert(e));
        CHECK(l1.purgeKey("http://example.com/a", /*soft=*/true) == 1);
        auto soft = l1.lookup("http://example.com/a", req.fields);
        REQUIRE(soft.entry);
        CHECK(soft.entry->freshness().soft_purged);
        auto d = soft.entry->decide(CacheControl{}, kNow);
        CHECK(d.usability == Usability::Revalidate);
        CHECK(d.serve_stale_on_error);
    }

    TEST_CASE("Vary: Accept-Language and Accept-Charset are keyed as sets of lower-case members") {
        auto vary = parseVary(fieldsOf({{"Vary", "Accept-Language, Accept-Charset"}}));
        auto key = [&](std::initializer_list<std::pair<const char*, const char*>> fields) {
            return secondaryKey(vary, fieldsOf(fields));
        };
        // Case, whitespace, order, repeats, empty members and line splits do not matter.
        CHECK(key({{"Accept-Language", "en-US, fr;q=0.8"}}) ==
              key({{"Accept-Language", "fr; q=0.8 ,EN-us,,"}}));
        CHECK(key({{"Accept-Language", "en-US, fr;q=0.8"}}) ==
              key({{"Accept-Language", "fr;q=0.8"}, {"accept-language", "en-us, en-US"}}));
        CHECK(key({{"Accept-Charset", "UTF-8, iso-8859-1;q=0.5"}}) ==
              key({{"Accept-Charset", "ISO-8859-1;q=0.5,utf-8"}}));
        // What does matter: the members, their weights, absent versus empty.
        CHECK(key({{"Accept-Language", "en"}}) != key({{"Accept-Language", "fr"}}));
        CHECK(key({{"Accept-Language", "en, fr;q=0.8"}}) !=
              key({{"Accept-Language", "en, fr;q=0.5"}}));
        CHECK(key({}) != key({{"Accept-Language", ""}}));
        CHECK(key({{"Accept-Language", "en-US,fr;q=0.8"}}) ==
              "accept-charset!\naccept-language=en-us,fr;q=0.8\n");
    }

    TEST_CASE("Vary: normalised names, secondary key from request values (RFC 9111 4.1)") {
        auto vary = parseVary(fieldsOf({{"Vary", "Accept-Encoding, accept"}, {"vary", "ACCEPT"}}));
        CHECK(vary.names == std::vector<std::string>{"accept", "accept-encoding"});
        CHECK_FALSE(vary.star);
        CHECK(parseVary(fieldsOf({{"Vary", "*"}})).star);
        CHECK(parseVary(http::Fields{}).empty());

        auto k1 =
            secondaryKey(vary, fieldsOf({{"Accept-Encoding", "gzip,  br"}, {"Accept", "*/*"}}));
        auto k2 =
            secondaryKey(vary, fieldsOf({{"accept", "*/*"}, {"ACCEPT-ENCODING", "gzip , br"}}));
        CHECK(k1 == k2);  // whitespace and field-name case normalised
        auto k3 = secondaryKey(vary, fieldsOf({{"Accept-Encoding", "gzip"}, {"Accept", "*/*"}}));
        CHECK(k1 != k3);
        auto absent = secondaryKey(vary, fieldsOf({{"Accept-Encoding", "br"}}));
        auto empty = secondaryKey(vary, fieldsOf({{"Accept", ""}, {"Accept-Encoding", "br"}}));
        CHECK(absent != empty);
        // Accept-Encoding keys by variant class (http::acceptClass), so its spellings cannot
        // multiply the variants: absent, empty and identity-only all get identity.
        CHECK(secondaryKey(vary, fieldsOf({{"Accept", "x"}})) ==
              secondaryKey(vary, fieldsOf({{"Accept", "x"}, {"Accept-Encoding", "identity"}})));
        CHECK(secondaryKey(vary,
                           fieldsOf({{"Accept", "x"}, {"Accept-Encoding", "br;q=0.5, gzip"}})) ==
              secondaryKey(vary, fieldsOf({{"Accept", "x"}, {"Accept-Encoding", "GZIP,BR"}})));
        CHECK(secondaryKey(vary, fieldsOf({{"Accept", "x"}, {"Accept-Encoding", "gzip, br"}})) ==
              "accept=x\naccept-encoding=ae:3\n");
        // Several lines combine like one comma-joined line.
        auto lines = secondaryKey(
            vary,
            fieldsOf({{"Accept-Encoding", "gzip"}, {"Accept-Encoding", "br"}, {"Accept", "*/*"}}));
        CHECK(lines ==
              secondaryKey(vary, fieldsOf({{"Accept-Encoding", "gzip, br"}, {"Accept", "*/*"}})));
        CHECK(secondaryKey(VarySpec{}, fieldsOf({{"Accept", "x"}})).empty());
    }
}

TEST_SUITE("cache/entry") {
    TEST_CASE("buildEntry strips unstored fields, keeps metadata and serialises the head") {
        auto req = request();
        req.fields.add("Accept-Encoding", "gzip");
        auto resp = response(200, {{"Cache-Control", "max-age=60, private=\"X-User\""},
                                   {"Connection", "close, X-Hop"},
                                   {"X-Hop", "1"},
                                   {"Content-Length", "5"},
                                   {"Age", "3"},
                                   {"X-User", "bob"},
                                   {"ETag", "W/\"v1\""},
                                   {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"},
                                   {"Vary", "Accept-Encoding"},
                                   {"Surrogate-Key", "a  b\ta"},
                                   {"Content-Type", "text/plain"}});
        resp.reason = "OK";
        auto e = makeEntry("http://example.com/a", resp, req, "hello");
        CHECK_FALSE(e->fields().has("Connection"));
        CHECK_FALSE(e->fields().has("X-Hop"));
        CHECK_FALSE(e->fields().has("Content-Length"));
        CHECK_FALSE(e->fields().has("Age"));
        CHECK_FALSE(e->fields().has("X-User"));
        CHECK(e->fields().has("Content-Type"));
        CHECK(e->meta().etag == "W/\"v1\"");
        CHECK(e->meta().last_modified.has_value());
        CHECK(e->meta().tags == std::vector<std::string>{"a", "b"});
        CHECK(e->meta().secondary_key == "accept-encoding=ae:1\n");
        CHECK(e->freshness().corrected_initial_age == seconds(3));
        CHECK(e->bodySize() == 5);
        std::string head;
        e->appendHead(head, kNow + seconds(10));
        CHECK(head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
        CHECK(head.find("Content-Type: text/plain\r\n") != std::string::npos);
        CHECK(head.size() >= 9);
        CHECK(head.substr(head.size() - 9) == "Age: 13\r\n");
        CHECK(e->charge() > e->bodySize() + e->serializedHead().size());
    }

    TEST_CASE("a response stored without Date gets one for the time it was received") {
        auto req = request();
        auto without = makeEntry("http://example.com/a",
                                 response(200, {{"Cache-Control", "max-age=60"}}), req, "x");
        REQUIRE(without->fields().get("Date") != nullptr);
        CHECK(*without->fields().get("Date") == formatHttpDate(kNow));
        std::string head;
        without->appendHead(head, kNow + seconds(5));
        CHECK(head.find("Date: " + formatHttpDate(kNow) + "\r\n") != std::string::npos);
        CHECK(without->currentAge(kNow + seconds(5)) == seconds(5));

        // The origin's own Date is kept, whatever strata's clock says.
        const char* origin_date = "Tue, 14 Nov 2023 12:13:20 GMT";
        auto with = makeEntry(
            "http://example.com/a",
            response(200, {{"Cache-Control", "max-age=60"}, {"Date", origin_date}}), req, "x");
        CHECK(with->fields().count("Date") == 1);
        CHECK(*with->fields().get("Date") == origin_date);
    }

    TEST_CASE("retainBody/releaseBody keep the body alive while referenced") {
        auto body = std::make_shared<const Body>("bytes");
        std::weak_ptr<const Body> weak = body;
        void* extra = retainBody(body);
        body.reset();
        CHECK_FALSE(weak.expired());
        releaseBody(nullptr, 0, extra);
        CHECK(weak.expired());
    }
}

TEST_SUITE("cache/validation") {
    TEST_CASE("entity-tag comparison (RFC 9110 8.8.3.2)") {
        CHECK(strongEtagMatch("\"1\"", "\"1\""));
        CHECK_FALSE(strongEtagMatch("W/\"1\"", "W/\"1\""));
        CHECK_FALSE(strongEtagMatch("W/\"1\"", "\"1\""));
        CHECK_FALSE(strongEtagMatch("\"1\"", "\"2\""));
        CHECK(weakEtagMatch("W/\"1\"", "W/\"1\""));
        CHECK(weakEtagMatch("W/\"1\"", "\"1\""));
        CHECK_FALSE(weakEtagMatch("\"1\"", "\"2\""));
    }

    TEST_CASE("makeConditional sets validators and drops the client's") {
        auto resp = response(200, {{"ETag", "\"v1\""},
                                   {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"},
                                   {"Cache-Control", "max-age=1"}});
        auto e = makeEntry("k", resp, request(), "x");
        http::Fields f = fieldsOf({{"If-None-Match", "\"client\""}, {"If-Range", "\"z\""}});
        CHECK(makeConditional(*e, f));
        CHECK(*f.get("If-None-Match") == "\"v1\"");
        CHECK(*f.get("If-Modified-Since") == "Tue, 14 Nov 2023 12:13:20 GMT");
        CHECK_FALSE(f.has("If-Range"));
        auto bare = makeEntry("k", response(200, {{"Cache-Control", "max-age=1"}}), request(), "x");
        http::Fields g;
        CHECK_FALSE(makeConditional(*bare, g));
    }

    TEST_CASE("304 merge updates fields, keeps the body, restarts freshness (RFC 9111 4.3.4)") {
        auto resp = response(200, {{"ETag", "\"v1\""},
                                   {"Cache-Control", "max-age=10"},
                                   {"X-Old", "1"},
                                   {"Content-Type", "text/plain"}});
        auto e = makeEntry("k", resp, request(), "body");
        const WallTime later = kNow + seconds(100);
        auto nm = response(304, {{"ETag", "\"v1\""},
                                 {"Cache-Control", "max-age=60"},
                                 {"X-Old", "2"},
                                 {"Content-Length", "0"},
                                 {"Connection", "close"},
                                 {"Date", formatHttpDate(later).c_str()}});
        CHECK(notModifiedMatches(*e, nm));
        auto merged = mergeNotModified(*e, nm, CachePolicy{}, later, later);
        CHECK(*merged->fields().get("X-Old") == "2");
        CHECK(merged->fields().count("X-Old") == 1);
        CHECK(*merged->fields().get("Cache-Control") == "max-age=60");
        CHECK(*merged->fields().get("Content-Type") == "text/plain");
        CHECK_FALSE(merged->fields().has("Content-Length"));
        CHECK_FALSE(merged->fields().has("Connection"));
        CHECK(merged->body() == e->body());  // shared, not copied
        CHECK(merged->freshness().lifetime == seconds(60));
        CHECK(merged->decide(CacheControl{}, later + seconds(30)).usability == Usability::Fresh);
        CHECK(e->decide(CacheControl{}, later).usability == Usability::Revalidate);

        auto other = response(304, {{"ETag", "\"v2\""}});
        CHECK_FALSE(notModifiedMatches(*e, other));
        auto weak = response(304, {{"ETag", "W/\"v1\""}});
        CHECK(notModifiedMatches(*e, weak));
    }

    TEST_CASE("client conditionals answered from cache (RFC 9110 13.2.2)") {
        auto resp = response(200, {{"ETag", "\"v1\""},
                                   {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"},
                                   {"Cache-Control", "max-age=60"},
                                   {"Content-Type", "text/plain"}});
        auto e = makeEntry("k", resp, request(), "x");
        struct Row {
            const char* name;
            std::string method;
            std::vector<std::pair<const char*, const char*>> fields;
            ConditionalResult want;
        };
        const std::vector<Row> rows = {
            {"no conditionals", "GET", {}, ConditionalResult::None},
            {"INM match",
             "GET",
             {{"If-None-Match", "\"v0\", W/\"v1\""}},
             ConditionalResult::NotModified},
            {"INM star", "HEAD", {{"If-None-Match", "*"}}, ConditionalResult::NotModified},
            {"INM mismatch ignores IMS",
             "GET",
             {{"If-None-Match", "\"v9\""}, {"If-Modified-Since", "Tue, 14 Nov 2023 22:00:00 GMT"}},
             ConditionalResult::None},
            {"IMS after LM",
             "GET",
             {{"If-Modified-Since", "Tue, 14 Nov 2023 12:13:20 GMT"}},
             ConditionalResult::NotModified},
            {"IMS before LM",
             "GET",
             {{"If-Modified-Since", "Tue, 14 Nov 2023 12:13:19 GMT"}},
             ConditionalResult::None},
            {"invalid IMS ignored",
             "GET",
             {{"If-Modified-Since", "yesterday"}},
             ConditionalResult::None},
            {"POST is not answered", "POST", {{"If-None-Match", "*"}}, ConditionalResult::None},
        };
        for (const auto& r : rows) {
            CAPTURE(std::string(r.name));
            auto req = request(r.method);
            for (const auto& [n, v] : r.fields) {
                req.fields.add(n, v);
            }
            CHECK(evaluateConditionals(*e, req, kNow) == r.want);
        }
        auto nmf = notModifiedFields(*e);
        CHECK(nmf.has("ETag"));
        CHECK(nmf.has("Cache-Control"));
        CHECK_FALSE(nmf.has("Content-Type"));
    }

    TEST_CASE("invalidation by unsafe methods (RFC 9111 4.4)") {
        KeyPolicy kp;
        auto req = request("POST", "/items", "b=1&a=2");
        auto resp = response(
            201, {{"Location", "/items/7"}, {"Content-Location", "https://evil.example/items/7"}});
        auto keys = invalidationKeys("https", req, resp, kp);
        CHECK(keys == std::vector<std::string>{"https://example.com/items?a=2&b=1",
                                               "https://example.com/items/7"});
        auto same = response(200, {{"Content-Location", "https://EXAMPLE.com:443/x#frag"}});
        CHECK(invalidationKeys("https", req, same, kp).back() == "https://example.com/x");
        CHECK(invalidationKeys("https", req, response(500, {}), kp).empty());
        CHECK(invalidationKeys("https", request("GET"), response(200, {}), kp).empty());
        CHECK(invalidationKeys("https", request("DELETE"), response(204, {}), kp).size() == 1);
    }

    TEST_CASE("invalidation keys each URI with the policy of the route it belongs to") {
        // Paths under /search/ ignore the query; everything else keeps it sorted.
        KeyPolicy ignore{QueryMode::Ignore, {}, {}};
        KeyPolicy sorted;
        std::vector<std::string> asked;
        KeyPolicyFor policy_for = [&](std::string_view host,
                                      std::string_view path) -> const KeyPolicy& {
            asked.push_back(std::string(host) + std::string(path));
            return path.starts_with("/search/") ? ignore : sorted;
        };
        auto req = request("POST", "/items", "b=1&a=2");
        auto resp = response(201, {{"Location", "/search/x?q=1"}});
        auto keys = invalidationKeys("https", req, resp, policy_for);
        CHECK(keys == std::vector<std::string>{"https://example.com/items?a=2&b=1",
                                               "https://example.com/search/x"});
        CHECK(asked == std::vector<std::string>{"example.com/items", "example.com/search/x"});
    }
}

namespace {
EntryPtr sized(const std::string& primary, std::size_t body_bytes,
               std::vector<std::pair<const char*, const char*>> extra = {},
               http::Fields req_fields = {}) {
    auto resp = response(200, {{"Cache-Control", "max-age=60"}});
    for (const auto& [n, v] : extra) {
        resp.fields.add(n, v);
    }
    auto req = request();
    req.fields = std::move(req_fields);
    return makeEntry(primary, resp, req, std::string(body_bytes, 'x'));
}
}  // namespace

TEST_SUITE("cache/l1") {
    TEST_CASE("insert, lookup, replace, stats") {
        L1Cache l1(L1Options{1 << 20, 4, EvictionKind::S3Fifo, 16});
        CHECK(l1.lookup("a", {}).miss == L1Miss::Uri);
        CHECK(l1.insert(sized("a", 100)));
        auto hit = l1.lookup("a", {});
        REQUIRE(hit.entry);
        CHECK(hit.entry->bodySize() == 100);
        CHECK(l1.insert(sized("a", 200)));  // same keys: replaced
        CHECK(l1.lookup("a", {}).entry->bodySize() == 200);
        auto s = l1.stats();
        CHECK(s.objects == 1);
        CHECK(s.hits == 2);
        CHECK(s.misses == 1);
        CHECK(s.bytes == l1.bytes());
        CHECK(s.bytes > 200);
    }

    TEST_CASE("variants side by side, vary miss") {
        L1Cache l1(L1Options{1 << 20, 2, EvictionKind::Lru, 2});
        auto gz = fieldsOf({{"Accept-Encoding", "gzip"}});
        auto br = fieldsOf({{"Accept-Encoding", "br"}});
        auto id = fieldsOf({{"Accept-Encoding", "identity"}});
        CHECK(l1.insert(sized("u", 1, {{"Vary", "Accept-Encoding"}}, gz)));
        CHECK(l1.insert(sized("u", 2, {{"Vary", "Accept-Encoding"}}, br)));
        CHECK(l1.lookup("u", gz).entry->bodySize() == 1);
        CHECK(l1.lookup("u", br).entry->bodySize() == 2);
        CHECK(l1.lookup("u", id).miss == L1Miss::Vary);
        CHECK(l1.find("u", "accept-encoding=ae:2\n"));
        // A third variant pushes out the oldest (max 2 per key).
        CHECK(l1.insert(sized("u", 3, {{"Vary", "Accept-Encoding"}}, id)));
        CHECK(l1.lookup("u", gz).miss == L1Miss::Vary);
        CHECK(l1.stats().objects == 2);
        CHECK(l1.eraseVariant("u", "accept-encoding=ae:2\n"));
        CHECK(l1.stats().objects == 1);
    }

    TEST_CASE("byte budget bounds memory and evicts; eviction never frees a held entry") {
        for (auto kind : {EvictionKind::Lru, EvictionKind::S3Fifo}) {
            CAPTURE(static_cast<int>(kind));
            L1Cache l1(L1Options{64 * 1024, 1, kind, 16});
            EntryPtr held = sized("k0", 4000);
            std::weak_ptr<const Body> body = held->body();
            CHECK(l1.insert(held));
            for (int i = 1; i < 100; ++i) {
                CHECK(l1.insert(sized("k" + std::to_string(i), 4000)));
                CHECK(l1.bytes() <= l1.maxBytes());
            }
            auto s = l1.stats();
            CHECK(s.evictions > 0);
            CHECK(s.objects < 100);
            CHECK_FALSE(body.expired());  // still held by this test
            held.reset();
            CHECK(body.expired());  // k0 was evicted; nothing else kept it
            CHECK_FALSE(l1.insert(sized("huge", 100000)));
            CHECK(l1.stats().rejected == 1);
        }
    }

    TEST_CASE("an object larger than one shard's share is stored while it fits max_bytes") {
        for (auto kind : {EvictionKind::Lru, EvictionKind::S3Fifo}) {
            CAPTURE(static_cast<int>(kind));
            // 32 shards of 32 KiB: the old per-shard limit refused anything over 32 KiB.
            L1Cache l1(L1Options{1 << 20, 32, kind, 16});
            CHECK(l1.insert(sized("big", 300 * 1024)));
            REQUIRE(l1.lookup("big", {}).entry);
            CHECK(l1.lookup("big", {}).entry->bodySize() == 300 * 1024);
            // Small objects elsewhere fill the rest; the total stays within max_bytes.
            for (int i = 0; i < 400; ++i) {
                CHECK(l1.insert(sized("s" + std::to_string(i), 4000)));
                CHECK(l1.bytes() <= l1.maxBytes());
            }
            CHECK(l1.stats().evictions > 0);
            // Another large object still gets in: others are evicted to make room.
            CHECK(l1.insert(sized("big2", 700 * 1024)));
            CHECK(l1.lookup("big2", {}).entry);
            CHECK(l1.bytes() <= l1.maxBytes());
            // Only what exceeds the whole budget is refused, and counted by reason.
            CHECK_FALSE(l1.insert(sized("huge", 1 << 20)));
            CHECK(l1.stats().rejected_too_large == 1);
            CHECK_FALSE(l1.admits(l1.maxBytes() + 1));
            CHECK(l1.admits(l1.maxBytes()));
        }
        L1Cache off(L1Options{0, 32, EvictionKind::S3Fifo, 16});
        CHECK_FALSE(off.insert(sized("a", 10)));
        CHECK(off.stats().rejected_disabled == 1);
        CHECK(off.stats().rejected == 1);
    }

    TEST_CASE("setMaxBytes: growing keeps everything, shrinking evicts down to the new budget") {
        for (auto kind : {EvictionKind::Lru, EvictionKind::S3Fifo}) {
            CAPTURE(static_cast<int>(kind));
            L1Cache l1(L1Options{1 << 20, 8, kind, 16});
            for (int i = 0; i < 100; ++i) {
                CHECK(l1.insert(sized("k" + std::to_string(i), 4000)));
            }
            const auto before = l1.stats();
            CHECK(before.objects == 100);
            l1.setMaxBytes(2 << 20);
            CHECK(l1.maxBytes() == (2u << 20));
            CHECK(l1.stats().objects == 100);
            CHECK(l1.stats().evictions == before.evictions);
            l1.setMaxBytes(200 * 1024);
            const auto after = l1.stats();
            CHECK(after.bytes <= 200 * 1024);
            CHECK(after.bytes > 150 * 1024);  // evicted down to the budget, not emptied
            CHECK(after.objects + (after.evictions - before.evictions) == 100);
            // The new budget governs later inserts too.
            for (int i = 100; i < 200; ++i) {
                CHECK(l1.insert(sized("k" + std::to_string(i), 4000)));
                CHECK(l1.bytes() <= 200 * 1024);
            }
            CHECK_FALSE(l1.insert(sized("big", 300 * 1024)));
        }
    }

    TEST_CASE("LRU evicts the least recently used") {
        std::uint64_t one = 0;
        {
            L1Cache probe(L1Options{1 << 20, 1, EvictionKind::Lru, 16});
            CHECK(probe.insert(sized("a", 500)));
            one = probe.bytes();
        }
        L1Cache l1(L1Options{3 * one + one / 2, 1, EvictionKind::Lru, 16});
        CHECK(l1.insert(sized("a", 500)));
        CHECK(l1.insert(sized("b", 500)));
        CHECK(l1.lookup("a", {}).entry);  // a is now most recent
        CHECK(l1.insert(sized("c", 500)));
        CHECK(l1.insert(sized("d", 500)));  // over budget: b goes, a stays
        CHECK(l1.lookup("a", {}).entry);
        CHECK_FALSE(l1.lookup("b", {}).entry);
        CHECK(l1.lookup("c", {}).entry);
        CHECK(l1.lookup("d", {}).entry);
    }

    TEST_CASE("S3-FIFO keeps a hot object through a scan") {
        L1Cache l1(L1Options{40 * 1200, 1, EvictionKind::S3Fifo, 16});
        CHECK(l1.insert(sized("hot", 500)));
        for (int i = 0; i < 3; ++i) {
            CHECK(l1.lookup("hot", {}).entry);
        }
        for (int i = 0; i < 500; ++i) {
            l1.insert(sized("scan" + std::to_string(i), 500));
        }
        CHECK(l1.lookup("hot", {}).entry);
    }

    TEST_CASE("purge by key, prefix, tag; soft purge marks stale") {
        L1Cache l1(L1Options{1 << 20, 8, EvictionKind::S3Fifo, 16});
        CHECK(l1.insert(sized("https://h/a/1", 10, {{"Surrogate-Key", "t1 t2"}})));
        CHECK(l1.insert(sized("https://h/a/2", 10, {{"Surrogate-Key", "t2"}})));
        CHECK(l1.insert(sized("https://h/b/1", 10, {{"Surrogate-Key", "t3"}})));
        CHECK(l1.purgeTag("t2", /*soft=*/true) == 2);
        auto soft = l1.lookup("https://h/a/1", {});
        REQUIRE(soft.entry);
        CHECK(soft.entry->freshness().soft_purged);
        CHECK(soft.entry->decide(CacheControl{}, kNow).usability == Usability::Revalidate);
        CHECK(l1.stats().objects == 3);
        CHECK(l1.purgePrefix("https://h/a/") == 2);
        CHECK_FALSE(l1.lookup("https://h/a/2", {}).entry);
        CHECK(l1.purgeKey("https://h/b/1") == 1);
        CHECK(l1.stats().objects == 0);
        CHECK(l1.bytes() == 0);
        CHECK(l1.purgeKey("https://h/b/1") == 0);
    }

    TEST_CASE("concurrent lookups and inserts keep the accounting consistent") {
        L1Cache l1(L1Options{256 * 1024, 8, EvictionKind::S3Fifo, 16});
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&l1, t] {
                for (int i = 0; i < 500; ++i) {
                    std::string k = "k" + std::to_string((i * 7 + t) % 200);
                    if (!l1.lookup(k, {}).entry) {
                        l1.insert(sized(k, 1000));
                    }
                    if (i % 97 == 0) {
                        l1.purgePrefix("k1");
                    }
                }
            });
        }
        for (auto& th : threads) {
            th.join();
        }
        auto s = l1.stats();
        CHECK(s.bytes <= l1.maxBytes());
        CHECK(s.hits + s.misses == 2000);
        l1.clear();
        CHECK(l1.stats().objects == 0);
        CHECK(l1.bytes() == 0);
    }
}

TEST_SUITE("cache/l2") {
    TEST_CASE("hashes and checksums") {
        CHECK(crc32c("123456789") == 0xe3069283U);  // the CRC-32C check value
        CHECK(crc32c("") == 0);
        CHECK(crc32c("6789", crc32c("12345")) == crc32c("123456789"));
        std::string long_input(1000, 'q');
        CHECK(crc32c(long_input.substr(0, 333) + long_input.substr(333)) == crc32c(long_input));
        CHECK(hash128("a").hex().size() == 32);
        CHECK(hash128("a").hex() != hash128("b").hex());
        CHECK(hash128("a").hex() == hash128("a").hex());
        CHECK(hash64("abc") != hash64("abd"));
        // Every length up to two blocks hashes differently from its neighbour.
        std::string s;
        for (int i = 0; i < 40; ++i) {
            std::string next = s + 'x';
            CHECK(hash128(s).lo != hash128(next).lo);
            s = next;
        }
    }

    TEST_CASE("memcached keys: namespace, hex, length and charset") {
        std::string long_key(10000, 'k');
        auto k = memcachedKey("strata1", long_key, "accept=gzip\n");
        CHECK(k.size() == 8 + 32);
        CHECK(k.rfind("strata1:", 0) == 0);
        CHECK(isValidMemcachedKey(k));
        CHECK(memcachedKey("s", "a", "b") != memcachedKey("s", "ab", ""));
        CHECK(isValidMemcachedKey(chunkKey(k, 77, 3)));
        CHECK_FALSE(isValidMemcachedKey("has space"));
        CHECK_FALSE(isValidMemcachedKey(std::string(251, 'a')));
        CHECK_FALSE(isValidMemcachedKey(""));
    }

    TEST_CASE("entry round trip") {
        auto req = request();
        req.fields.add("Accept", "text/html");
        auto e = makeEntry("https://example.com/a",
                           response(200, {{"Cache-Control", "max-age=60, stale-if-error=9"},
                                          {"ETag", "\"e\""},
                                          {"Vary", "Accept"},
                                          {"Surrogate-Key", "x y"},
                                          {"Last-Modified", "Tue, 14 Nov 2023 12:13:20 GMT"}}),
                           req, std::string("body\0bytes", 10));
        auto plan = l2WritePlan(*e, "ns", 1 << 20, true, 1);
        REQUIRE(plan.size() == 2);  // entry + vary index
        CHECK(plan[1].key == memcachedKey("ns", "https://example.com/a", ""));
        auto idx = decodeRecord(plan[1].value, plan[1].key, "https://example.com/a", "");
        REQUIRE(idx.ok());
        CHECK(idx->kind == RecordKind::VaryIndex);
        CHECK(idx->vary.names == std::vector<std::string>{"accept"});
        std::string sec = secondaryKey(idx->vary, req.fields);
        CHECK(plan[0].key == memcachedKey("ns", "https://example.com/a", sec));
        auto dec = decodeRecord(plan[0].value, plan[0].key, "https://example.com/a", sec);
        REQUIRE(dec.ok());
        REQUIRE(dec->entry);
        const CacheEntry& d = *dec->entry;
        CHECK(d.serializedHead() == e->serializedHead());
        CHECK(*d.body() == *e->body());
        CHECK(d.meta().etag == "\"e\"");
        CHECK(d.meta().tags == e->meta().tags);
        CHECK(d.meta().last_modified == e->meta().last_modified);
        CHECK(d.freshness().lifetime == seconds(60));
        CHECK(d.freshness().stale_if_error == seconds(9));
        CHECK(d.freshness().response_time == e->freshness().response_time);
        CHECK(d.meta().vary.names == e->meta().vary.names);
        // Wrong key: a hash collision or a foreign value is a miss.
        CHECK_FALSE(decodeRecord(plan[0].value, plan[0].key, "https://example.com/b", sec).ok());
        CHECK_FALSE(decodeRecord(plan[0].value, plan[0].key, "https://example.com/a", "").ok());
    }

    TEST_CASE("corrupt, truncated, foreign and wrong-version values are misses") {
        auto e = sized("k", 300);
        std::string good = encodeEntryRecord(*e);
        REQUIRE(decodeRecord(good, "m", "k", "").ok());
        // Every truncation fails.
        for (std::size_t n = 0; n < good.size(); ++n) {
            CHECK_FALSE(decodeRecord(good.substr(0, n), "m", "k", "").ok());
        }
        // Every single-byte flip fails (checksum, magic, version, lengths).
        for (std::size_t i = 0; i < good.size(); ++i) {
            std::string bad = good;
            bad[i] = static_cast<char>(bad[i] ^ 0x01);
            CAPTURE(i);
            CHECK_FALSE(decodeRecord(bad, "m", "k", "").ok());
        }
        CHECK_FALSE(decodeRecord(good + "x", "m", "k", "").ok());
        CHECK_FALSE(decodeRecord("VALUE from another app", "m", "k", "").ok());
        std::string v2 = good;
        v2[4] = 2;
        auto r = decodeRecord(v2, "m", "k", "");
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().find("version") != std::string::npos);
    }

    TEST_CASE("chunked objects: manifest + chunks, verified on assembly") {
        std::string body;
        std::mt19937 rng(7);
        for (int i = 0; i < 10000; ++i) {
            body.push_back(static_cast<char>(rng()));
        }
        auto e =
            makeEntry("big", response(200, {{"Cache-Control", "max-age=60"}}), request(), body);
        CHECK(l2WritePlan(*e, "ns", 4096, /*allow_chunks=*/false, 9).empty());
        auto plan = l2WritePlan(*e, "ns", 4096, true, 9);
        REQUIRE(plan.size() == 4);  // 3 chunks + manifest
        for (const auto& w : plan) {
            CHECK(w.value.size() <= 4096);
            CHECK(isValidMemcachedKey(w.key));
        }
        const auto& main = plan.back();
        auto dec = decodeRecord(main.value, main.key, "big", "");
        REQUIRE(dec.ok());
        REQUIRE(dec->manifest);
        auto keys = dec->manifest->chunkKeys();
        REQUIRE(keys.size() == 3);
        std::vector<std::string_view> values;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            CHECK(keys[i] == plan[i].key);
            values.push_back(plan[i].value);
        }
        auto whole = assembleChunks(*dec->manifest, values);
        REQUIRE(whole.ok());
        CHECK(*whole.value()->body() == body);
        CHECK(whole.value()->serializedHead() == e->serializedHead());

        SUBCASE("missing chunk") {
            values.pop_back();
            CHECK_FALSE(assembleChunks(*dec->manifest, values).ok());
        }
        SUBCASE("chunks out of order") {
            std::swap(values[0], values[1]);
            CHECK_FALSE(assembleChunks(*dec->manifest, values).ok());
        }
        SUBCASE("chunk from another generation") {
            auto other = l2WritePlan(*e, "ns", 4096, true, 10);
            values[1] = other[1].value;
            CHECK_FALSE(assembleChunks(*dec->manifest, values).ok());
        }
        SUBCASE("corrupt chunk") {
            std::string bad(values[2]);
            bad[20] = static_cast<char>(bad[20] ^ 0x40);
            values[2] = bad;
            CHECK_FALSE(assembleChunks(*dec->manifest, values).ok());
        }
        SUBCASE("a chunk is not an object") {
            CHECK_FALSE(decodeRecord(plan[0].value, plan[0].key, "big", "").ok());
        }
    }
}

TEST_SUITE("cache/coalescer") {
    using cache::Coalescer;
    using Role = Coalescer::Role;

    cache::EntryPtr stubEntry(const std::string& primary) {
        cache::EntryMeta meta;
        meta.primary_key = primary;
        return std::make_shared<const cache::CacheEntry>(
            200, "OK", http::Fields{}, std::make_shared<const std::string>("x"), std::move(meta));
    }

    TEST_CASE("one leader per key, waiters woken on their loop with the outcome") {
        Coalescer c;
        event::Loop loop;
        const auto now = std::chrono::steady_clock::now();
        int woken = 0;
        cache::EntryPtr got;
        auto wake = [&](const Coalescer::Outcome& o) {
            ++woken;
            got = o.entry;
        };
        CHECK(c.join("k", loop, wake, now) == Role::Leader);
        CHECK(c.join("k", loop, wake, now) == Role::Waiter);
        CHECK(c.join("k", loop, wake, now) == Role::Waiter);
        CHECK(c.join("other", loop, wake, now) == Role::Leader);
        CHECK(c.inFlight() == 2);
        auto entry = stubEntry("k");
        c.finish("k", Coalescer::Outcome{entry, false}, now, std::chrono::milliseconds(1000));
        CHECK(woken == 0);  // posted, never inline
        loop.post([&] { loop.stop(); });
        loop.run();
        CHECK(woken == 2);
        CHECK(got == entry);
        CHECK(c.coalescedWaits() == 2);
        CHECK(c.join("k", loop, wake, now) == Role::Leader);  // the flight is over
    }

    TEST_CASE("an uncacheable outcome marks the key hit-for-pass for the period") {
        Coalescer c;
        event::Loop loop;
        const auto now = std::chrono::steady_clock::now();
        auto none = [](const Coalescer::Outcome&) {};
        REQUIRE(c.join("k", loop, none, now) == Role::Leader);
        c.finish("k", Coalescer::Outcome{nullptr, true}, now, std::chrono::milliseconds(1000));
        CHECK(c.join("k", loop, none, now + std::chrono::milliseconds(500)) == Role::Pass);
        CHECK(c.join("k", loop, none, now + std::chrono::milliseconds(1500)) == Role::Leader);
    }

    TEST_CASE("a refresh that offered its stale entry answers newcomers with it, no wait") {
        Coalescer c;
        event::Loop loop;
        const auto now = std::chrono::steady_clock::now();
        int woken = 0;
        auto wake = [&](const Coalescer::Outcome&) { ++woken; };
        REQUIRE(c.join("k", loop, wake, now) == Role::Leader);
        cache::EntryPtr offered;
        // Before the offer: an ordinary waiter.
        CHECK(c.join("k", loop, wake, now, &offered) == Role::Waiter);
        auto stale = stubEntry("k");
        c.offerStale("k", stale);
        CHECK(c.join("k", loop, wake, now, &offered) == Role::Stale);
        CHECK(offered == stale);
        // Without asking for it (the stale copy did not suit the request): a waiter.
        CHECK(c.join("k", loop, wake, now) == Role::Waiter);
        c.finish("k", Coalescer::Outcome{nullptr, false}, now, std::chrono::milliseconds(0));
        loop.post([&] { loop.stop(); });
        loop.run();
        CHECK(woken == 2);         // the Stale answer registered nothing
        c.offerStale("k", stale);  // no flight: nothing to offer to
        cache::EntryPtr none;
        CHECK(c.join("k", loop, wake, now, &none) == Role::Leader);
        CHECK(none == nullptr);
    }
}
