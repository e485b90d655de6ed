// What an operator needs to find one request everywhere: the access log names the host, the
// route, the listener and a request id that the origin received as X-Request-Id; requests the
// parser rejected keep what was known of them; /metrics splits by listener and route.
#include <csignal>
#include <set>

#include "admin_client.h"
#include "cache_support.h"
#include "e2e.h"
#include "raw_client.h"

using namespace strata::test;

namespace {

// Two listeners and two named routes: the fields must name the ones that served the request.
// Without `catch_all`, paths outside /seq have no route (strata answers 404).
std::string twoListenerConfig(const std::string& servers_yaml, const std::string& format,
                              bool catch_all = true, const std::string& extra = "") {
    const std::string site =
        catch_all ? "  - {name: site, match: {path_prefix: /}, upstream: app}\n" : "";
    return "listeners:\n"
           "  - {name: front, bind: \"127.0.0.1:0\"}\n"
           "  - {name: internal, bind: \"127.0.0.1:0\"}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams: {app: {servers: " +
           servers_yaml +
           "}}\n"
           "routes:\n"
           "  - {name: cached, match: {path_prefix: /seq}, upstream: app, cache: {enabled: "
           "true}}\n" +
           site + "logging: {access_log: \"${tmp}/access.log\", access_format: " + format + "}\n" +
           extra;
}

// The first line of `log` containing `needle`, or "".
std::string lineWith(const std::string& log, const std::string& needle) {
    std::istringstream in(log);
    std::string line;
    while (std::getline(in, line)) {
        if (line.find(needle) != std::string::npos) {
            return line;
        }
    }
    return "";
}

// The value of `key` (e.g. " route=" or "\"route\":") in `line`, up to the next space, comma or
// closing brace; "" when the key is absent.
std::string valueOf(const std::string& line, const std::string& key) {
    const auto at = line.find(key);
    if (at == std::string::npos) {
        return "";
    }
    const auto begin = at + key.size();
    const auto end = line.find_first_of(" ,}", begin);
    return line.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

bool isRequestId(const std::string& id) {
    return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string waitForLine(Strata& strata, const std::string& needle) {
    const std::string log = strata.tmp() + "/access.log";
    std::string line;
    eventually([&] {
        line = lineWith(readFile(log), needle);
        return !line.empty();
    });
    return line;
}

}  // namespace

TEST_SUITE("e2e/ops") {
    TEST_CASE("combined log: host, route, listener and the request id the origin received") {
        Origin origin(1);
        Strata strata(twoListenerConfig(origin.serversYaml(), "combined"));
        // A client's own X-Request-Id is replaced: strata's id is the one both logs share.
        auto r = get(strata.port("internal"), "/headers?probe=1", "X-Request-Id: client-made\r\n");
        REQUIRE(r.status == 200);
        const std::string sent = EchoedHead(r.body).value("X-Request-Id");
        CHECK(isRequestId(sent));

        const std::string line = waitForLine(strata, "/headers?probe=1");
        REQUIRE(!line.empty());
        CHECK(valueOf(line, " request_id=") == sent);
        CHECK(valueOf(line, " host=") == "127.0.0.1:" + std::to_string(strata.port("internal")));
        CHECK(valueOf(line, " route=") == "site");
        CHECK(valueOf(line, " listener=") == "internal");
        // The new fields come after time=, which keeps its place and millisecond form.
        CHECK(valueOf(line, " time=").size() == 24);
        CHECK(line.find(" time=") < line.find(" host="));

        // Every exchange gets its own id, whichever worker served it.
        std::set<std::string> ids{sent};
        for (int i = 0; i < 20; ++i) {
            auto again = get(strata.port("front"), "/headers?n=" + std::to_string(i));
            REQUIRE(again.status == 200);
            ids.insert(EchoedHead(again.body).value("X-Request-Id"));
        }
        CHECK(ids.size() == 21);
        const std::string front = waitForLine(strata, "/headers?n=0 ");
        CHECK(valueOf(front, " listener=") == "front");
    }

    TEST_CASE("a trusted proxy's X-Request-Id is the exchange's id; others get strata's") {
        Origin origin(1);
        std::string c = twoListenerConfig(origin.serversYaml(), "combined");
        const std::string internal = "{name: internal, bind: \"127.0.0.1:0\"";
        c.insert(c.find(internal) + internal.size(), ", trusted_proxies: [\"127.0.0.1/32\"]");
        Strata strata(c);
        auto r = get(strata.port("internal"), "/headers?trusted=1", "X-Request-Id: lb-4f2a:9\r\n");
        REQUIRE(r.status == 200);
        CHECK(EchoedHead(r.body).value("X-Request-Id") == "lb-4f2a:9");
        CHECK(valueOf(waitForLine(strata, "/headers?trusted=1"), " request_id=") == "lb-4f2a:9");
        // An id that could forge log fields, or two ids, are not taken even from a trusted peer.
        auto spaced =
            get(strata.port("internal"), "/headers?trusted=2", "X-Request-Id: a b\" c=d\r\n");
        CHECK(isRequestId(EchoedHead(spaced.body).value("X-Request-Id")));
        auto twice = get(strata.port("internal"), "/headers?trusted=3",
                         "X-Request-Id: one\r\nX-Request-Id: two\r\n");
        CHECK(isRequestId(EchoedHead(twice.body).value("X-Request-Id")));
        // The other listener trusts nobody.
        auto front = get(strata.port("front"), "/headers?trusted=4", "X-Request-Id: lb-1\r\n");
        CHECK(isRequestId(EchoedHead(front.body).value("X-Request-Id")));
    }

    TEST_CASE("privacy: truncated or hashed client addresses, redacted query values, on reload") {
        Origin origin(1);
        const auto configWith = [&](const std::string& format, const std::string& privacy) {
            std::string c = twoListenerConfig(origin.serversYaml(), format);
            const std::string at = "access_format: " + format;
            c.insert(c.find(at) + at.size(), ", " + privacy);
            return c;
        };
        Strata strata(configWith("combined", "client_address: truncate, redact_query: [token]"));
        REQUIRE(get(strata.port("front"), "/headers?token=s3cret&page=2").status == 200);
        const std::string line = waitForLine(strata, "/headers?token=");
        REQUIRE(!line.empty());
        CHECK(line.rfind("127.0.0.0 - - [", 0) == 0);
        CHECK(line.find("127.0.0.1 ") == std::string::npos);
        CHECK(line.find("s3cret") == std::string::npos);
        CHECK(line.find("/headers?token=REDACTED&page=2 ") != std::string::npos);
        // The origin still gets the real query: only the log forgets it.
        auto echoed = get(strata.port("front"), "/headers?token=kept");
        CHECK(echoed.body.find("token=kept") != std::string::npos);

        std::string json = configWith("json", "client_address: hash, client_address_key: k1");
        const std::string tmp_var = "${tmp}";
        json.replace(json.find(tmp_var), tmp_var.size(), strata.tmp());
        writeFile(strata.configPath(), json);
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return get(strata.port("admin"), "/status").body.find("\"version\":2,") !=
                   std::string::npos;
        }));
        REQUIRE(get(strata.port("front"), "/headers?hashed=1").status == 200);
        REQUIRE(get(strata.port("front"), "/headers?hashed=2").status == 200);
        const std::string one = waitForLine(strata, "/headers?hashed=1");
        const std::string two = waitForLine(strata, "/headers?hashed=2");
        const std::string client = valueOf(one, "\"client\":\"");
        CHECK(client.size() == 17);  // 16 hex digits and the closing quote
        CHECK(isRequestId(client.substr(0, 16)));
        CHECK(valueOf(two, "\"client\":\"") == client);  // stable for one address and key
        CHECK(one.find("\"client\":\"127.0.0.1\"") == std::string::npos);
    }

    TEST_CASE("json log carries the same fields") {
        Origin origin(1);
        Strata strata(twoListenerConfig(origin.serversYaml(), "json"));
        auto r = get(strata.port("front"), "/headers?json=1");
        REQUIRE(r.status == 200);
        const std::string sent = EchoedHead(r.body).value("X-Request-Id");
        REQUIRE(isRequestId(sent));
        const std::string line = waitForLine(strata, "/headers?json=1");
        REQUIRE(!line.empty());
        CHECK(valueOf(line, "\"request_id\":") == "\"" + sent + "\"");
        CHECK(valueOf(line, "\"route\":") == "\"site\"");
        CHECK(valueOf(line, "\"listener\":") == "\"front\"");
        CHECK(valueOf(line, "\"host\":") ==
              "\"127.0.0.1:" + std::to_string(strata.port("front")) + "\"");
    }

    TEST_CASE("json log: a request without Host on no route logs null host and route") {
        Origin origin(1);
        Strata none(twoListenerConfig(origin.serversYaml(), "json", /*catch_all=*/false));
        // HTTP/1.0 may omit Host; no route takes /unrouted: strata's own 404.
        RawClient d(none.port("internal"));
        REQUIRE(d.send("GET /unrouted HTTP/1.0\r\n\r\n"));
        REQUIRE(d.readResponse().status == 404);
        const std::string unrouted = waitForLine(none, "/unrouted");
        REQUIRE(!unrouted.empty());
        CHECK(valueOf(unrouted, "\"route\":") == "null");
        CHECK(valueOf(unrouted, "\"host\":") == "null");
        CHECK(valueOf(unrouted, "\"listener\":") == "\"internal\"");
        CHECK(isRequestId(valueOf(unrouted, "\"request_id\":").substr(1, 16)));
    }

    TEST_CASE("rejected requests are logged with the method and target the parser had read") {
        Origin origin(1);
        Strata strata(twoListenerConfig(origin.serversYaml(), "combined", true,
                                        "limits: {client_header_timeout: 300ms}\n"));
        auto reject = [&](const std::string& bytes) {
            RawClient c(strata.port("front"));
            REQUIRE(c.send(bytes));
            return c.readResponse().status;
        };
        CHECK(reject("GET /bad-field HTTP/1.0\r\nHost : a\r\n\r\n") == 400);
        CHECK(reject("POST /huge-head HTTP/1.1\r\nHost: a\r\nX: " + std::string(40000, 'v') +
                     "\r\n\r\n") == 431);
        CHECK(reject("PUT /" + std::string(9000, 'l') + " HTTP/1.1\r\nHost: a\r\n\r\n") == 414);
        // The header timeout ends a head that never completes: 408, logged too.
        CHECK(reject("DELETE /never-done HTTP/1.1\r\nHost: a\r\n") == 408);

        const std::string bad = waitForLine(strata, "\" 400 ");
        CHECK(bad.find("\"GET /bad-field HTTP/1.0\" 400 ") != std::string::npos);
        CHECK(isRequestId(valueOf(bad, " request_id=")));
        CHECK(valueOf(bad, " route=") == "-");
        CHECK(valueOf(bad, " listener=") == "front");
        CHECK(waitForLine(strata, "\"POST /huge-head HTTP/1.1\" 431 ") != "");
        // The target was cut short by the limit: only the method is known.
        CHECK(waitForLine(strata, "\"PUT - HTTP/1.1\" 414 ") != "");
        CHECK(waitForLine(strata, "\"DELETE /never-done HTTP/1.1\" 408 ") != "");
        CHECK(readFile(strata.tmp() + "/access.log").find("\"- - HTTP") == std::string::npos);
        CHECK(metric(strata.port("admin"), "strata_proxy_requests_total",
                     {"route=\"none\"", "method=\"DELETE\"", "status_class=\"4xx\""}) == 1);
    }

    TEST_CASE("request counts by listener; bytes received and sent by route") {
        Origin origin(1);
        Strata strata(twoListenerConfig(origin.serversYaml(), "combined"));
        const auto admin = strata.port("admin");
        for (int i = 0; i < 3; ++i) {
            REQUIRE(get(strata.port("front"), "/bytes/10").status == 200);
        }
        REQUIRE(get(strata.port("internal"), "/bytes/10").status == 200);
        auto requests = [&](const std::string& listener) {
            return metric(admin, "strata_proxy_requests_total",
                          {"route=\"site\"", "listener=\"" + listener + "\"", "method=\"GET\"",
                           "status_class=\"2xx\""});
        };
        CHECK(eventually([&] { return requests("front") == 3 && requests("internal") == 1; }));

        // Exact byte counts of one exchange on its own connection: what the client wrote, and
        // every byte it read until strata closed.
        const double received_before =
            metric(admin, "strata_proxy_received_bytes_total", {"route=\"cached\""});
        const double sent_before =
            metric(admin, "strata_proxy_sent_bytes_total", {"route=\"cached\""});
        CHECK(received_before == 0);
        CHECK(sent_before == 0);
        const std::string request =
            "GET /seq-bytes HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        RawClient c(strata.port("front"));
        REQUIRE(c.send(request));
        const std::string answer = c.readAvailable(std::chrono::milliseconds(5000));
        REQUIRE(answer.rfind("HTTP/1.1 200", 0) == 0);
        REQUIRE(c.isClosed());
        CHECK(eventually([&] {
            return metric(admin, "strata_proxy_received_bytes_total", {"route=\"cached\""}) ==
                       static_cast<double>(request.size()) &&
                   metric(admin, "strata_proxy_sent_bytes_total", {"route=\"cached\""}) ==
                       static_cast<double>(answer.size());
        }));
        // The other route's counters hold only its own four exchanges.
        CHECK(metric(admin, "strata_proxy_sent_bytes_total", {"route=\"site\""}) > 0);
    }

    TEST_CASE("cache lookups by route; known-uncacheable requests apart from misses") {
        Origin origin(1);
        Strata strata(twoListenerConfig(origin.serversYaml(), "combined"));
        const auto admin = strata.port("admin");
        auto lookups = [&](const std::string& route, const std::string& result) {
            return metric(admin, "strata_cache_lookups_total",
                          {"route=\"" + route + "\"", "tier=\"l1\"", "result=\"" + result + "\""});
        };
        const std::string fresh = "/seq-fresh?" + ccParam("max-age=60");
        REQUIRE(get(strata.port("front"), fresh).status == 200);
        REQUIRE(get(strata.port("front"), fresh).status == 200);
        CHECK(lookups("cached", "miss") == 1);
        CHECK(lookups("cached", "hit") == 1);
        CHECK(lookups("site", "miss") == 0);  // no cache on that route: never looked up
        CHECK(lookups("site", "hit") == 0);

        // no-store: the first fetch finds it uncacheable; the next ones pass straight through.
        const std::string uncacheable = "/seq-nostore?" + ccParam("no-store");
        for (int i = 0; i < 3; ++i) {
            REQUIRE(get(strata.port("front"), uncacheable).status == 200);
        }
        CHECK(lookups("cached", "miss") == 2);
        CHECK(lookups("cached", "hit_for_pass") == 2);
        // Recorded once each answer's last byte left, which may be just after the client read it.
        CHECK(eventually([&] {
            return metric(admin, "strata_proxy_request_duration_seconds_count",
                          {"route=\"cached\"", "cache=\"pass\""}) == 2;
        }));
    }
}
