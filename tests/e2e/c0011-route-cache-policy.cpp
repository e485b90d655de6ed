// Per-route cache policy (routes[].cache): the query and header composition of the key, the
// largest object stored, Set-Cookie sharing; purge and invalidation key a URL the way its route
// does, and a soft purge (POST /purge?...&soft=1) marks objects stale instead of removing them.
#include <optional>
#include <utility>

#include "cache_support.h"

using namespace strata::test;

namespace {

// Two routes on upstream "app": /alt/ with `alt_cache`, everything else with `cache` (both
// YAML flow mappings), an admin listener whose token is in `token_file`.
std::string policyConfig(const std::string& servers_yaml, const std::string& cache,
                         const std::string& token_file, const std::string& alt_cache = "",
                         const std::string& extra = "") {
    std::string yaml =
        "listeners:\n"
        "  - {name: http, bind: \"127.0.0.1:0\"}\n"
        "admin: {bind: \"127.0.0.1:0\", token_file: \"" +
        token_file +
        "\"}\n"
        "upstreams:\n"
        "  app: {servers: " +
        servers_yaml +
        "}\n"
        "routes:\n";
    if (!alt_cache.empty()) {
        yaml += "  - {match: {path_prefix: /alt/}, upstream: app, cache: " + alt_cache + "}\n";
    }
    yaml += "  - {match: {path_prefix: /}, upstream: app, cache: " + cache +
            "}\n"
            "logging: {access_log: off}\n" +
            extra;
    return yaml;
}

// A strata with policyConfig() and the admin token it needs for purges.
struct PolicyFixture {
    explicit PolicyFixture(Origin& origin, const std::string& cache,
                           const std::string& alt_cache = "", const std::string& extra = "")
        : token_file(tokenFile(dir)),
          strata(policyConfig(origin.serversYaml(), cache, token_file, alt_cache, extra)) {}

    static std::string tokenFile(TempDir& d) {
        writeFile(d.file("token"), "t0ken\n");
        return d.file("token");
    }
    std::string host() const { return "127.0.0.1:" + std::to_string(strata.port()); }
    // POST /purge?url=http://HOST<path_and_query>[&soft=1]; the response's body.
    Response purge(const std::string& path_and_query, bool soft = false) {
        std::string encoded;
        for (char c : "http://" + host() + path_and_query) {
            if (c == ':' || c == '/' || c == '?' || c == '&' || c == '=' || c == '%') {
                static const char* kHex = "0123456789ABCDEF";
                encoded += '%';
                encoded += kHex[(static_cast<unsigned char>(c) >> 4) & 0xf];
                encoded += kHex[static_cast<unsigned char>(c) & 0xf];
            } else {
                encoded += c;
            }
        }
        return request(strata.port("admin"), "POST",
                       "/purge?url=" + encoded + (soft ? "&soft=1" : ""),
                       "Authorization: Bearer t0ken\r\n");
    }

    TempDir dir;
    std::string token_file;
    Strata strata;
};

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("key.query allow_list: parameters outside the list share one entry") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true, key: {query: allow_list, query_params: [id]}}");
        const auto port = f.strata.port();
        const std::string cc = ccParam("max-age=60");
        auto first = get(port, "/seq-al?id=1&utm=a&" + cc);
        STRATA_CACHE_STATUS(first);
        CHECK(first.body == "seq 1 /seq-al\n");
        CHECK(cacheStatusHas(first, "stored"));
        auto shared = get(port, "/seq-al?utm=b&" + cc + "&id=1");
        STRATA_CACHE_STATUS(shared);
        CHECK(cacheStatusHas(shared, "hit"));
        CHECK(shared.body == "seq 1 /seq-al\n");
        auto other = get(port, "/seq-al?id=2&" + cc);  // a listed parameter differs
        CHECK(other.body == "seq 2 /seq-al\n");
        CHECK(origin.requestCount(0, "/seq-al") == 2);
        // Purge by URL keys the query as the route does: utm is not part of the key.
        CHECK(f.purge("/seq-al?id=1&utm=zzz").body == "purged 1\n");
        CHECK(get(port, "/seq-al?id=1&" + cc).body == "seq 3 /seq-al\n");
        CHECK(cacheStatusHas(get(port, "/seq-al?id=2&" + cc), "hit"));
    }

    TEST_CASE("key.query ignore: the query never splits an entry, nor escapes invalidation") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true, default_ttl: 60s, key: {query: ignore}}");
        const auto port = f.strata.port();
        CHECK(get(port, "/seq-ig?a=1").body == "seq 1 /seq-ig\n");
        auto r = get(port, "/seq-ig?b=2");
        STRATA_CACHE_STATUS(r);
        CHECK(cacheStatusHas(r, "hit"));
        CHECK(r.body == "seq 1 /seq-ig\n");
        CHECK(cacheStatusHas(get(port, "/seq-ig"), "hit"));
        // A POST with another query still names the same stored object (RFC 9111 4.4).
        CHECK(request(port, "POST", "/seq-ig?c=3", "", "x").status == 200);
        auto after = get(port, "/seq-ig?a=1");
        STRATA_CACHE_STATUS(after);
        CHECK(cacheStatusHas(after, "fwd=uri-miss"));
        CHECK(after.body == "seq 3 /seq-ig\n");  // GET, POST, GET
    }

    TEST_CASE("a Location in another route is invalidated with that route's key policy") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true, default_ttl: 60s}",
                        "{enabled: true, default_ttl: 60s, key: {query: ignore}}");
        const auto port = f.strata.port();
        REQUIRE(get(port, "/alt/item?v=1").status == 200);
        REQUIRE(cacheStatusHas(get(port, "/alt/item?v=2"), "hit"));
        // POST on the catch-all route; its Location points into /alt/ with another query.
        CHECK(request(port, "POST", "/create?" + hParam("Location", "/alt/item?v=9"), "", "x")
                  .status == 200);
        auto after = get(port, "/alt/item?v=1");
        STRATA_CACHE_STATUS(after);
        CHECK(cacheStatusHas(after, "fwd=uri-miss"));
        CHECK(origin.requestCount(0, "/alt/item") == 2);
    }

    TEST_CASE("key.headers: each value of a key header is its own entry; purge removes all") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true, key: {headers: [X-Tenant]}}");
        const auto port = f.strata.port();
        const std::string url = "/seq-kh?" + ccParam("max-age=60");
        auto a = get(port, url, "X-Tenant: a\r\n");
        CHECK(a.body == "seq 1 /seq-kh\n");
        CHECK_FALSE(a.hasHeader("Vary"));  // the key header is not advertised as Vary
        auto b = get(port, url, "X-Tenant: b\r\n");
        STRATA_CACHE_STATUS(b);
        CHECK(b.body == "seq 2 /seq-kh\n");
        CHECK(cacheStatusHas(b, "fwd=vary-miss"));
        CHECK(get(port, url, "x-tenant:  a \r\n").body == "seq 1 /seq-kh\n");
        auto hit_b = get(port, url, "X-Tenant: b\r\n");
        CHECK(cacheStatusHas(hit_b, "hit"));
        CHECK(hit_b.body == "seq 2 /seq-kh\n");
        CHECK(get(port, url).body == "seq 3 /seq-kh\n");  // no X-Tenant: a third variant
        CHECK(origin.requestCount(0, "/seq-kh") == 3);

        CHECK(f.purge(url).body == "purged 3\n");
        CHECK(get(port, url, "X-Tenant: a\r\n").body == "seq 4 /seq-kh\n");
        CHECK(get(port, url, "X-Tenant: b\r\n").body == "seq 5 /seq-kh\n");
    }

    TEST_CASE("key.headers through L2: variants found by the URL's Vary index; purge removes all") {
        Memcached mc;
        Origin origin;
        // L1 holds nothing (1 byte): every hit comes from memcached.
        PolicyFixture f(origin, "{enabled: true, key: {headers: [X-Tenant]}}", "",
                        "cache: {l1: {max_bytes: 1}, l2: {servers: [\"" + mc.addr() + "\"]}}\n");
        const auto port = f.strata.port();
        const auto admin = f.strata.port("admin");
        auto sets = [&] {
            return metric(admin, "strata_cache_l2_operation_duration_seconds_count",
                          {"op=\"set\""});
        };
        const std::string url = "/seq-l2kh?" + ccParam("max-age=60");
        CHECK(get(port, url, "X-Tenant: a\r\n").body == "seq 1 /seq-l2kh\n");
        REQUIRE(eventually([&] { return sets() >= 2; }));  // the variant and the Vary index
        CHECK(get(port, url, "X-Tenant: b\r\n").body == "seq 2 /seq-l2kh\n");
        REQUIRE(eventually([&] { return sets() >= 4; }));
        for (std::string tenant : {"a", "b"}) {
            auto r = get(port, url, "X-Tenant: " + tenant + "\r\n");
            STRATA_CACHE_STATUS(r);
            CHECK(cacheStatusHas(r, "detail=l2"));
            CHECK(r.body == (tenant == "a" ? "seq 1 /seq-l2kh\n" : "seq 2 /seq-l2kh\n"));
        }
        CHECK(origin.requestCount(0, "/seq-l2kh") == 2);
        REQUIRE(f.purge(url).status == 200);
        // The purge deletes the index and logs the URL, so no variant is reachable again.
        CHECK(
            eventually([&] { return !cacheStatusHas(get(port, url, "X-Tenant: b\r\n"), "hit"); }));
        CHECK(get(port, url, "X-Tenant: a\r\n").body != "seq 1 /seq-l2kh\n");
    }

    TEST_CASE("max_object_bytes: a larger response streams uncached, a smaller one is stored") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true, max_object_bytes: 1KiB}");
        const auto port = f.strata.port();
        const std::string cc = ccParam("max-age=60");
        // Content-Length (refused on the head), then chunked (given up as the body grows).
        const std::pair<std::string, std::string> large[] = {{"/bytes/2000", ""},
                                                             {"/bytes/2001", "&chunked=1"}};
        for (const auto& [path, extra] : large) {
            const std::string url = path + "?" + cc + extra;
            const std::size_t size = std::stoul(path.substr(7));
            CAPTURE(url);
            for (std::uint64_t i = 1; i <= 2; ++i) {
                auto r = get(port, url);
                STRATA_CACHE_STATUS(r);
                CHECK(r.status == 200);
                std::string want(size, '\0');
                originPattern(0, want);
                CHECK(r.body == want);  // streamed whole
                CHECK(cacheStatusHas(r, "fwd=uri-miss"));
                CHECK_FALSE(cacheStatusHas(r, "hit"));
                if (extra.empty()) {
                    // (A chunked head leaves before its size is known and says "stored".)
                    CHECK_FALSE(cacheStatusHas(r, "stored"));
                }
                CHECK(origin.requestCount(0, path) == i);  // never answered from the cache
            }
        }
        const std::string small = "/bytes/1024?" + cc;
        auto stored = get(port, small);
        STRATA_CACHE_STATUS(stored);
        CHECK(cacheStatusHas(stored, "stored"));
        auto hit = get(port, small);
        CHECK(cacheStatusHas(hit, "hit"));
        CHECK(hit.body == stored.body);
        CHECK(hit.body.size() == 1024);
        CHECK(origin.requestCount(0, "/bytes/1024") == 1);
    }

    TEST_CASE("allow_set_cookie: true stores a Set-Cookie response, false does not") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true}", "{enabled: true, allow_set_cookie: true}");
        const auto port = f.strata.port();
        const std::string q = "?" + ccParam("max-age=60") + "&" + hParam("Set-Cookie", "s=1");
        for (int i = 0; i < 2; ++i) {
            auto r = get(port, "/alt/cookie" + q);
            STRATA_CACHE_STATUS(r);
            CHECK(r.header("Set-Cookie") == "s=1");
            CHECK(cacheStatusHas(r, i == 0 ? "stored" : "hit"));
        }
        CHECK(origin.requestCount(0, "/alt/cookie") == 1);
        for (int i = 0; i < 2; ++i) {
            auto r = get(port, "/cookie" + q);
            STRATA_CACHE_STATUS(r);
            CHECK(r.header("Set-Cookie") == "s=1");
            CHECK_FALSE(cacheStatusHas(r, "stored"));
            CHECK_FALSE(cacheStatusHas(r, "hit"));
        }
        CHECK(origin.requestCount(0, "/cookie") == 2);
    }

    TEST_CASE("soft purge: the next request revalidates, a 304 makes the object fresh again") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true}");
        const auto port = f.strata.port();
        const std::string url = "/seq-sp?" + ccParam("max-age=60") + "&" + hParam("ETag", "\"v\"");
        REQUIRE(get(port, url).body == "seq 1 /seq-sp\n");
        REQUIRE(cacheStatusHas(get(port, url), "hit"));
        CHECK(f.purge(url, /*soft=*/true).body == "soft-purged 1\n");
        auto r = get(port, url);
        STRATA_CACHE_STATUS(r);
        CHECK(r.status == 200);
        CHECK(r.body == "seq 1 /seq-sp\n");  // the stored body, confirmed by a 304
        CHECK(cacheStatusHas(r, "fwd=stale"));
        CHECK(cacheStatusHas(r, "fwd-status=304"));
        CHECK(origin.requestCount(0, "/seq-sp") == 2);
        auto again = get(port, url);
        STRATA_CACHE_STATUS(again);
        CHECK(cacheStatusHas(again, "hit"));
        CHECK(cacheStatusTtl(again) > 50);
        CHECK(origin.requestCount(0, "/seq-sp") == 2);
    }

    TEST_CASE(
        "stale_if_error: a soft-purged object is served while the origin is down, a hard-"
        "purged one is not") {
        std::optional<Origin> origin(std::in_place);
        PolicyFixture f(*origin, "{enabled: true, stale_if_error: 60s}");
        const auto port = f.strata.port();
        const std::string q = "?" + ccParam("max-age=60");
        REQUIRE(get(port, "/seq-soft" + q).body == "seq 1 /seq-soft\n");
        REQUIRE(get(port, "/seq-hard" + q).body == "seq 1 /seq-hard\n");
        CHECK(f.purge("/seq-soft" + q, /*soft=*/true).body == "soft-purged 1\n");
        CHECK(f.purge("/seq-hard" + q).body == "purged 1\n");
        origin.reset();
        auto soft = get(port, "/seq-soft" + q);
        STRATA_CACHE_STATUS(soft);
        CHECK(soft.status == 200);
        CHECK(soft.body == "seq 1 /seq-soft\n");
        CHECK(cacheStatusHas(soft, "fwd=stale"));
        CHECK(cacheStatusHas(soft, "detail=stale-if-error"));
        auto hard = get(port, "/seq-hard" + q);
        STRATA_CACHE_STATUS(hard);
        CHECK(hard.status == 502);
        // The error still says what the cache did: a miss, forwarded (RFC 9211).
        CHECK(hard.header("Cache-Status") == "strata; fwd=uri-miss");
    }

    TEST_CASE("soft=1 on prefix and tag purges; a bad soft value is refused") {
        Origin origin;
        PolicyFixture f(origin, "{enabled: true}");
        const auto port = f.strata.port();
        const auto admin = f.strata.port("admin");
        const std::string q = "?" + ccParam("max-age=60") + "&" + hParam("Surrogate-Key", "k1");
        REQUIRE(get(port, "/seq-pt" + q).status == 200);
        auto tag =
            request(admin, "POST", "/purge?tag=k1&soft=true", "Authorization: Bearer t0ken\r\n");
        CHECK(tag.body == "soft-purged 1\n");
        CHECK(cacheStatusHas(get(port, "/seq-pt" + q), "fwd=stale"));  // refetched: no validator
        CHECK(origin.requestCount(0, "/seq-pt") == 2);
        auto prefix =
            request(admin, "POST", "/purge?prefix=http%3A%2F%2F" + f.host() + "%2Fseq-pt&soft=1",
                    "Authorization: Bearer t0ken\r\n");
        CHECK(prefix.body == "soft-purged 1\n");
        CHECK_FALSE(cacheStatusHas(get(port, "/seq-pt" + q), "hit"));
        CHECK(origin.requestCount(0, "/seq-pt") == 3);
        CHECK(request(admin, "POST", "/purge?tag=k1&soft=2", "Authorization: Bearer t0ken\r\n")
                  .status == 400);
    }
}
