// Route actions and header rules through the real binary (issue #12): redirects (http to https,
// prefix replacement, query dropped), fixed responses (GET and HEAD, nothing forwarded), path
// rewrites (prefix and regex; the cache key stays the client's URL), request header rules seen
// by the origin, response header rules on misses, hits and HTTP/2 answers alike, counted in
// strata_route_actions_total, and a reload that changes a fixed response.
#include <atomic>
#include <csignal>
#include <thread>

#include "admin_client.h"
#include "e2e.h"

using namespace strata::test;

namespace {

std::string actionsConfig(const Origin& origin, const std::string& robots_body = "User-agent: *") {
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\"}\n"
           "  - {name: h2c, bind: \"127.0.0.1:0\", protocols: [h2]}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  app: {servers: [\"" +
           origin.addr(0) +
           "\"]}\n"
           "routes:\n"
           "  - name: to-https\n"
           "    match: {path_prefix: /secure/}\n"
           "    redirect: {scheme: https, status: 308}\n"
           "  - name: moved\n"
           "    match: {path_prefix: /old/}\n"
           "    redirect: {prefix: /new/, query: drop, host: www.example.test}\n"
           "  - name: robots\n"
           "    match: {path: /robots.txt}\n"
           "    respond: {status: 200, content_type: text/plain, body: \"" +
           robots_body +
           "\"}\n"
           "    response_headers: {set: {X-Version: \"" +
           robots_body +
           "\"}}\n"
           "  - name: api\n"
           "    match: {path_prefix: /api/}\n"
           "    upstream: app\n"
           "    rewrite: {strip_prefix: /api}\n"
           "    cache: {enabled: true, default_ttl: 60s}\n"
           "    request_headers:\n"
           "      set: {X-Route: api, X-Client: \"${client_address}\", Host: backend.test}\n"
           "      remove: [X-Debug]\n"
           "    response_headers:\n"
           "      set: {Strict-Transport-Security: \"max-age=63072000\", X-Origin: hidden}\n"
           "      add: {X-Trace: \"${request_id}\"}\n"
           "  - name: rx\n"
           "    match: {path_prefix: /rx/}\n"
           "    upstream: app\n"
           "    rewrite: {regex: \"/rx/([a-z]+)/(.*)\", replace: \"/\\\\2?via=\\\\1\"}\n"
           "  - name: rest\n"
           "    match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    cache: {enabled: true, default_ttl: 60s}\n"
           "logging: {access_log: off}\n";
}

Response rawGet(std::uint16_t port, const std::string& target, const std::string& host,
                const std::string& extra = "") {
    RawClient c(port);
    REQUIRE(c.send("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"));
    return c.readResponse();
}

double actions(std::uint16_t admin, const std::string& route, const std::string& action) {
    return metric(admin, "strata_route_actions_total",
                  {"route=\"" + route + "\"", "action=\"" + action + "\""});
}

}  // namespace

TEST_SUITE("e2e/route-actions") {
    TEST_CASE("redirects: http to https keeps path and query; a prefix redirect drops the query") {
        Origin origin;
        Strata strata(actionsConfig(origin));
        Response r = rawGet(strata.port(), "/secure/login?next=%2F", "shop.test:8080");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 308);
        CHECK(r.header("Location") == "https://shop.test/secure/login?next=%2F");
        CHECK(r.header("Content-Length") == "0");
        CHECK(r.hasHeader("Date"));

        Response moved = rawGet(strata.port(), "/old/a/b?x=1", "shop.test");
        CHECK(moved.status == 301);
        CHECK(moved.header("Location") == "http://www.example.test/new/a/b");
        CHECK(origin.requestCount(0, "/secure/login") == 0);
        const auto admin = strata.port("admin");
        CHECK(actions(admin, "to-https", "redirect") == 1);
        CHECK(actions(admin, "moved", "redirect") == 1);
    }

    TEST_CASE("respond: a fixed body for GET, its head for HEAD, the origin never asked") {
        Origin origin;
        Strata strata(actionsConfig(origin));
        Response r = get(strata.port(), "/robots.txt");
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.status == 200);
        CHECK(r.body == "User-agent: *");
        CHECK(r.header("Content-Type") == "text/plain");
        RawClient c(strata.port());
        REQUIRE(c.send("HEAD /robots.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        ReadOptions head_only;
        head_only.head = true;
        Response h = c.readResponse(head_only);
        CHECK(h.status == 200);
        CHECK(h.header("Content-Length") == "13");
        CHECK(h.body.empty());
        // The connection goes on: a second request on it is answered too.
        REQUIRE(c.send("GET /robots.txt HTTP/1.1\r\nHost: t\r\n\r\n"));
        CHECK(c.readResponse().body == "User-agent: *");
        CHECK(origin.requestCount(0, "/robots.txt") == 0);
        CHECK(actions(strata.port("admin"), "robots", "respond") == 3);
    }

    TEST_CASE("rewrite: the origin sees the new path; the cache keys the client's URL") {
        Origin origin;
        Strata strata(actionsConfig(origin));
        Response miss = get(strata.port(), "/api/headers");
        STRATA_REQUIRE_RESPONSE(miss);
        CHECK(EchoedHead(miss.body).request_line == "GET /headers HTTP/1.1");
        Response hit = get(strata.port(), "/api/headers");
        CHECK(hit.header("Cache-Status").find("hit") != std::string::npos);
        // /headers itself is another URL: not the /api/headers object.
        Response direct = get(strata.port(), "/headers");
        CHECK(direct.header("Cache-Status").find("hit") == std::string::npos);
        CHECK(origin.requestCount(0, "/headers") == 2);

        Response rx = get(strata.port(), "/rx/abc/headers?k=v");
        CHECK(EchoedHead(rx.body).request_line == "GET /headers?via=abc&k=v HTTP/1.1");
        const auto admin = strata.port("admin");
        CHECK(actions(admin, "api", "rewrite") == 1);  // the hit forwarded nothing
        CHECK(actions(admin, "rx", "rewrite") == 1);
    }

    TEST_CASE("request header rules: set, remove, variables and Host reach the origin") {
        Origin origin;
        Strata strata(actionsConfig(origin));
        Response r = get(strata.port(), "/api/headers", "X-Debug: 1\r\nX-Route: forged\r\n");
        STRATA_REQUIRE_RESPONSE(r);
        EchoedHead seen(r.body);
        CHECK(seen.value("X-Route") == "api");
        CHECK(seen.value("X-Client") == "127.0.0.1");
        CHECK(seen.value("Host") == "backend.test");
        CHECK_FALSE(seen.has("X-Debug"));
        // strata's own fields are still there, from the request as the client sent it.
        CHECK(seen.value("X-Forwarded-Host") == "127.0.0.1:" + std::to_string(strata.port()));
        CHECK(seen.value("X-Trace").empty());  // a response rule, not a request one
    }

    TEST_CASE("response header rules reach the miss, the hit and an HTTP/2 answer alike") {
        Origin origin;
        Strata strata(actionsConfig(origin));
        Response miss = get(strata.port(), "/api/bytes/10");
        STRATA_REQUIRE_RESPONSE(miss);
        CHECK(miss.header("Strict-Transport-Security") == "max-age=63072000");
        CHECK(miss.header("X-Origin") == "hidden");  // the origin's own value replaced
        CHECK(miss.headerCount("X-Origin") == 1);
        CHECK(miss.header("X-Trace").size() == 16);  // the exchange's request id
        Response hit = get(strata.port(), "/api/bytes/10");
        CHECK(hit.header("Cache-Status").find("hit") != std::string::npos);
        CHECK(hit.header("Strict-Transport-Security") == "max-age=63072000");
        CHECK(hit.header("X-Origin") == "hidden");
        CHECK(hit.headerCount("X-Origin") == 1);
        CHECK(hit.header("X-Trace") != miss.header("X-Trace"));  // each exchange its own
        CHECK(hit.body == miss.body);
        // The catch-all route has no rules: its hits stay as stored.
        get(strata.port(), "/bytes/10");
        Response plain = get(strata.port(), "/bytes/10");
        CHECK(plain.header("Cache-Status").find("hit") != std::string::npos);
        CHECK_FALSE(plain.hasHeader("Strict-Transport-Security"));
        CHECK(plain.header("X-Origin") == "0");

        // HTTP/2: its own authority (the h2c port) makes its own URL: a miss, then a hit.
        const std::string h2_get =
            "curl -s -D - -o /dev/null --http2-prior-knowledge http://127.0.0.1:" +
            std::to_string(strata.port("h2c")) + "/api/bytes/10";
        runCommand(h2_get);
        const std::string h2 = runCommand(h2_get);
        CHECK(h2.find("HTTP/2 200") == 0);
        CHECK(h2.find("cache-status: strata; hit") != std::string::npos);
        CHECK(h2.find("strict-transport-security: max-age=63072000") != std::string::npos);
        CHECK(h2.find("x-origin: hidden") != std::string::npos);
        CHECK(origin.requestCount(0, "/bytes/10") == 3);  // once per URL
    }

    TEST_CASE("a reload changes a fixed response for the next request") {
        Origin origin;
        Strata strata(actionsConfig(origin, "v1"));
        CHECK(get(strata.port(), "/robots.txt").body == "v1");
        writeFile(strata.configPath(), actionsConfig(origin, "v2"));
        strata.process().signal(SIGHUP);
        CHECK(eventually([&] { return get(strata.port(), "/robots.txt").body == "v2"; }));
    }

    TEST_CASE("reloads that change the rules under load: no failed request, none half-applied") {
        Origin origin;
        Strata strata(actionsConfig(origin, "v0"));
        std::atomic<int> mixed{0};
        // Even requests get the respond action, odd ones the forwarded route with its rules.
        BackgroundLoad load(
            strata.port(), 4,
            [](int i) {
                return std::string("GET ") + (i % 2 == 0 ? "/robots.txt" : "/api/bytes/100") +
                       " HTTP/1.1\r\nHost: t\r\n\r\n";
            },
            [&mixed](int i, const Response& r) {
                // One request sees one config: the body and the rule's header come from the
                // same version.
                if (i % 2 == 0 ? r.header("X-Version") != r.body
                               : r.header("Strict-Transport-Security").empty()) {
                    mixed++;
                }
            });
        for (int i = 1; i <= 20; ++i) {
            writeFile(strata.configPath(), actionsConfig(origin, "v" + std::to_string(i)));
            strata.process().signal(SIGHUP);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));  // pacing, not a wait
        }
        const auto admin = strata.port("admin");
        REQUIRE(eventually([&] {
            return metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) ==
                   21;
        }));
        CHECK(eventually([&] { return get(strata.port(), "/robots.txt").body == "v20"; }));
        load.stop();
        CHECK(load.ok() > 500);
        CHECK(load.bad() == 0);
        CHECK(mixed == 0);
    }
}
