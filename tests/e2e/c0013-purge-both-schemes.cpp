// Purge and schemes: the cache key starts with the scheme, so a URL fetched over a plain and a
// TLS listener is stored twice. A purge of either URL takes both copies unless the operator
// asks for one scheme (&scheme=exact), and every purge leaves an audit line in the error log.
#include <optional>

#include "cache_support.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

struct SchemesFixture {
    SchemesFixture() {
        pki.issue("a", "a.test", "DNS:a.test");
        writeFile(dir.file("token"), "t0ken\n");
        strata.emplace(
            "listeners:\n"
            "  - {name: http, bind: \"127.0.0.1:0\"}\n"
            "  - name: https\n"
            "    bind: \"127.0.0.1:0\"\n"
            "    tls: {certificates: [" +
            pki.certificate("a") +
            "]}\n"
            "admin: {bind: \"127.0.0.1:0\", token_file: \"" +
            dir.file("token") +
            "\"}\n"
            "upstreams: {app: {servers: " +
            origin.serversYaml() +
            "}}\n"
            "routes:\n"
            "  - {match: {path_prefix: /}, upstream: app, cache: {enabled: true, default_ttl: "
            "60s}}\n"
            "logging: {access_log: off}\n");
    }

    Response plain(const std::string& path) {
        RawClient c(strata->port());
        REQUIRE(c.send("GET " + path + " HTTP/1.1\r\nHost: a.test\r\n\r\n"));
        return c.readResponse();
    }
    Response tls(const std::string& path) {
        TlsOptions o;
        o.sni = "a.test";
        o.ca = pki.ca();
        TlsClient client(strata->port("https"), o);
        REQUIRE(client.error.empty());
        return client.get(path);
    }
    // POST /purge?QUERY with the token; QUERY's values are already URL-encoded.
    Response purge(const std::string& query) {
        return request(strata->port("admin"), "POST", "/purge?" + query,
                       "Authorization: Bearer t0ken\r\n");
    }
    // Fetches `path` over both listeners twice: stored once per scheme, then hits.
    void cacheBoth(const std::string& path) {
        for (int i = 0; i < 2; ++i) {
            REQUIRE(plain(path).status == 200);
            REQUIRE(tls(path).status == 200);
        }
    }

    Origin origin;
    TempDir dir;
    Pki pki{dir.path().string()};
    std::optional<Strata> strata;
};

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("a purge of http:// also removes the copy cached through the TLS listener") {
        SchemesFixture f;
        f.cacheBoth("/bytes/10");
        REQUIRE(f.origin.requestCount(0, "/bytes/10") == 2);  // one per scheme
        REQUIRE(cacheStatusHas(f.tls("/bytes/10"), "hit"));

        Response r = f.purge("url=http%3A%2F%2Fa.test%2Fbytes%2F10");
        CHECK(r.status == 200);
        CHECK(r.body == "purged 2\n");
        Response after = f.tls("/bytes/10");
        STRATA_CACHE_STATUS(after);
        CHECK_FALSE(cacheStatusHas(after, "hit"));
        CHECK_FALSE(cacheStatusHas(f.plain("/bytes/10"), "hit"));
        CHECK(f.origin.requestCount(0, "/bytes/10") == 4);

        // The audit trail: who, what, both schemes, how many.
        const std::string log = f.strata->process().stderrText();
        CHECK(log.find("admin: purge by 127.0.0.1:") != std::string::npos);
        CHECK(log.find(": url http://a.test/bytes/10 (http and https): 200, 2 objects purged "
                       "from L1") != std::string::npos);
    }

    TEST_CASE("&scheme=exact purges only the scheme named; a prefix purge covers both") {
        SchemesFixture f;
        f.cacheBoth("/bytes/20");
        Response r = f.purge("url=https%3A%2F%2Fa.test%2Fbytes%2F20&scheme=exact&soft=0");
        CHECK(r.status == 200);
        CHECK(r.body == "purged 1\n");
        CHECK(cacheStatusHas(f.plain("/bytes/20"), "hit"));
        CHECK_FALSE(cacheStatusHas(f.tls("/bytes/20"), "hit"));  // refetched and stored again
        CHECK(f.origin.requestCount(0, "/bytes/20") == 3);

        Response p = f.purge("prefix=https%3A%2F%2Fa.test%2Fbytes%2F&soft=1");
        CHECK(p.status == 200);
        CHECK(p.body == "soft-purged 2\n");
        CHECK(f.purge("url=http%3A%2F%2Fa.test%2Fx&scheme=ftp").status == 400);

        const std::string log = f.strata->process().stderrText();
        CHECK(log.find(": url https://a.test/bytes/20 (this scheme only): 200, 1 objects purged "
                       "from L1") != std::string::npos);
        CHECK(log.find(": prefix https://a.test/bytes/ (soft) (http and https): 200, 2 objects "
                       "purged from L1") != std::string::npos);
    }
}
