// What the access log and the duration histogram say is what happened: an exchange ends when
// its last byte is handed to the kernel (a slow reader of a large hit is not "0 s"), a request
// that never went upstream has no upstream time, and an error's reason reaches the error log.
#include <sys/socket.h>
#include <thread>

#include "admin_client.h"
#include "cache_support.h"
#include "e2e.h"
#include "raw_client.h"

using namespace strata::test;

namespace {

std::string cachedConfig(const std::string& servers_yaml, const std::string& format) {
    return "listeners: [{name: http, bind: \"127.0.0.1:0\"}]\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams: {app: {servers: " +
           servers_yaml +
           "}}\n"
           "routes: [{match: {path_prefix: /}, upstream: app, cache: {enabled: true}}]\n"
           "logging: {access_log: \"${tmp}/access.log\", access_format: " +
           format + "}\n";
}

// The logged value of `key=` in the first line of `log` that contains `needle`, or "".
std::string fieldOf(const std::string& log, const std::string& needle, const std::string& key) {
    std::istringstream in(log);
    std::string line;
    while (std::getline(in, line)) {
        if (line.find(needle) == std::string::npos) {
            continue;
        }
        const auto at = line.find(key);
        if (at == std::string::npos) {
            return "";
        }
        const auto begin = at + key.size();
        const auto end = line.find_first_of(" ,}", begin);
        return line.substr(begin, end - begin);
    }
    return "";
}

}  // namespace

TEST_SUITE("e2e/ops") {
    TEST_CASE("a slow reader of a large hit is logged and measured for the time it took") {
        Origin origin(1);
        Strata strata(cachedConfig(origin.serversYaml(), "combined"));
        const std::string url = "/bytes/6000000?" + ccParam("max-age=60");
        const std::string raw = "GET " + url + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        {
            RawClient fill(strata.port());  // same Host, same key: fills the L1
            REQUIRE(fill.send(raw));
            REQUIRE(fill.readResponse().status == 200);
        }

        RawClient client(strata.port());
        // A small receive window so that strata's last byte waits for this client's reads.
        int small = 16 * 1024;
        ::setsockopt(client.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        const auto sent = std::chrono::steady_clock::now();
        REQUIRE(client.send(raw));
        std::size_t received = 0;
        char chunk[16 * 1024];
        for (;;) {
            ssize_t n = ::recv(client.fd(), chunk, sizeof chunk, 0);
            if (n <= 0) {
                break;
            }
            received += static_cast<std::size_t>(n);
            // Reading slowly is what this test is about: it is the client's pace, not a wait.
            std::this_thread::sleep_for(std::chrono::milliseconds(3));
        }
        const double took =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
        REQUIRE(received > 6000000);
        REQUIRE(took > 0.5);

        const std::string log = strata.tmp() + "/access.log";
        REQUIRE(eventually([&] { return fieldOf(readFile(log), "cache=hit", "rt=") != ""; }));
        const std::string text = readFile(log);
        const double rt = std::stod(fieldOf(text, "cache=hit", "rt="));
        // The kernel's socket buffers hold the last few MB, so strata finishes somewhat before
        // the client; but far from 0.
        CHECK(rt > 0.2);
        CHECK(rt <= took);
        CHECK(fieldOf(text, "cache=hit", "urt=") == "-");
        CHECK(fieldOf(text, "cache=hit", "time=").size() == 24);  // 2026-12-02T13:59:59.123Z
        const double sum = metric(strata.port("admin"), "strata_proxy_request_duration_seconds_sum",
                                  {"cache=\"hit\""});
        CHECK(sum >= rt - 0.001);
    }

    TEST_CASE("json log: no upstream time and no upstream for a hit; null, not -1") {
        Origin origin(1);
        Strata strata(cachedConfig(origin.serversYaml(), "json"));
        const std::string url = "/j?" + ccParam("max-age=60");
        REQUIRE(get(strata.port(), url).status == 200);
        REQUIRE(get(strata.port(), url).status == 200);
        const std::string log = strata.tmp() + "/access.log";
        // Each worker flushes its own lines: wait for both, whichever worker served them.
        REQUIRE(eventually([&] {
            const std::string t = readFile(log);
            return t.find("\"cache\":\"hit\"") != std::string::npos &&
                   t.find("\"cache\":\"miss\"") != std::string::npos;
        }));
        const std::string text = readFile(log);
        CHECK(fieldOf(text, "\"cache\":\"hit\"", "\"upstream_time\":") == "null");
        CHECK(fieldOf(text, "\"cache\":\"hit\"", "\"upstream\":") == "null");
        CHECK(fieldOf(text, "\"cache\":\"miss\"", "\"upstream\":") == "\"" + origin.addr() + "\"");
        CHECK(text.find(":-1") == std::string::npos);
        // Millisecond timestamps, the field to sort merged worker output by.
        const std::string time = fieldOf(text, "\"cache\":\"hit\"", "\"time\":");
        REQUIRE(time.size() == 26);  // "2026-12-02T13:59:59.123Z" with its quotes
        CHECK(time[20] == '.');
        CHECK(time[24] == 'Z');
    }

    TEST_CASE("an error answer's reason reaches the error log") {
        // Nothing listens on port 1: the connect is refused.
        Strata strata(cachedConfig("[\"127.0.0.1:1\"]", "combined"));
        auto r = get(strata.port(), "/down");
        REQUIRE(r.status == 502);
        const std::string log = strata.tmp() + "/access.log";
        REQUIRE(eventually([&] { return readFile(log).find("/down") != std::string::npos; }));
        // The locally generated body is counted, not logged as 0 bytes.
        CHECK(readFile(log).find("\" 502 " + std::to_string(r.body.size()) + " ") !=
              std::string::npos);
        REQUIRE(eventually([&] {
            return strata.process().stderrText().find("answered 502: ") != std::string::npos;
        }));
    }

    TEST_CASE("a response forwarded without Date gets one (RFC 9110 6.6.1)") {
        Origin origin(1);  // strata-origin sends no Date
        Strata strata(proxyConfig(origin.serversYaml()));
        auto r = get(strata.port(), "/bytes/10");
        REQUIRE(r.status == 200);
        REQUIRE(r.hasHeader("Date"));
        CHECK(r.header("Date").find(" GMT") != std::string::npos);
    }

    TEST_CASE("a hit on a response stored without Date carries the Date the miss had") {
        Origin origin(1);  // strata-origin sends no Date
        Strata strata(cachedConfig(origin.serversYaml(), "combined"));
        const std::string url = "/dated?" + ccParam("max-age=60");
        auto miss = get(strata.port(), url);
        REQUIRE(miss.status == 200);
        REQUIRE(miss.hasHeader("Date"));
        auto hit = get(strata.port(), url);
        REQUIRE(hit.status == 200);
        REQUIRE(cacheStatusHas(hit, "hit"));
        // RFC 9110 6.6.1: the stored copy got a Date when it was received, the one forwarded.
        CHECK(hit.headerCount("Date") == 1);
        CHECK(hit.header("Date") == miss.header("Date"));
        // A 304 from the cache carries it too (RFC 9110 15.4.5).
        auto revalidated =
            get(strata.port(), url,
                "If-Modified-Since: " + miss.header("Date") + "\r\nIf-None-Match: *\r\n");
        REQUIRE(revalidated.status == 304);
        CHECK(revalidated.header("Date") == miss.header("Date"));
    }

    TEST_CASE("hit-for-pass: Cache-Status and the access log tell the same outcome") {
        Origin origin(1);
        Strata strata(cachedConfig(origin.serversYaml(), "combined"));
        const std::string url = "/hfp?" + ccParam("no-store");
        REQUIRE(get(strata.port(), url).status == 200);  // found uncacheable
        auto second = get(strata.port(), url);
        REQUIRE(second.status == 200);
        CHECK(second.header("Cache-Status").find("detail=hit-for-pass") != std::string::npos);
        const std::string log = strata.tmp() + "/access.log";
        REQUIRE(eventually([&] { return readFile(log).find("cache=pass") != std::string::npos; }));
    }
}
