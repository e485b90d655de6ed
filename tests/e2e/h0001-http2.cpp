// HTTP/2 to clients: ALPN h2 over TLS, prior-knowledge h2c on a plain listener, protocols
// turning h2 off, many streams on one connection, a miss then a hit, HEAD, an upload, forbidden
// request fields (a frame-level client, tests/e2e/h2_client.py, since curl refuses to send
// them), rapid reset and drain. Real clients: curl and nghttp (nghttp2-client), python3-h2.
#include <array>
#include <csignal>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "admin_client.h"
#include "tls_support.h"

using namespace strata::test;

namespace {

std::string url(std::uint16_t port, const std::string& path, const std::string& scheme = "http") {
    return scheme + "://127.0.0.1:" + std::to_string(port) + path;
}

// One plain listener with `protocols`, upstream "app" over `servers_yaml`, route "site".
std::string h2cConfig(const std::string& servers_yaml,
                      const std::string& protocols = "[h2, http/1.1]") {
    return "listeners:\n"
           "  - name: http\n"
           "    bind: \"127.0.0.1:0\"\n"
           "    protocols: " +
           protocols +
           "\n"
           "upstreams:\n"
           "  app:\n"
           "    servers: " +
           servers_yaml +
           "\n"
           "routes:\n"
           "  - name: site\n"
           "    match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    cache: {enabled: true}\n"
           "cache: {l2: {servers: []}}\n";
}

std::string h2cConfig(const Origin& origin, const std::string& protocols = "[h2, http/1.1]") {
    return h2cConfig(origin.serversYaml(), protocols);
}

std::string h2ClientCommand(std::uint16_t port, const std::string& which) {
    return "/usr/bin/python3 " + std::string(STRATA_SOURCE_DIR) + "/tests/e2e/h2_client.py " +
           std::to_string(port) + " " + which;
}

std::string h2Client(std::uint16_t port, const std::string& which) {
    std::string out = runCommand(h2ClientCommand(port, which));
    return out.substr(0, out.find('\n'));
}

}  // namespace

TEST_SUITE("e2e/http2") {
    TEST_CASE("TLS: ALPN chooses h2 when offered, http/1.1 otherwise") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("a", "a.test", "DNS:a.test");
        Origin origin;
        Strata strata(httpsConfig({pki.certificate("a")}, origin.serversYaml()));
        const auto port = strata.port("https");
        const std::string curl = "curl -s --cacert " + pki.ca() +
                                 " --resolve a.test:" + std::to_string(port) +
                                 ":127.0.0.1 -o /dev/null -w '%{http_version} %{http_code}' ";
        const std::string base = "https://a.test:" + std::to_string(port);
        CHECK(runCommand(curl + "--http2 " + base + "/bytes/100") == "2 200");
        CHECK(runCommand(curl + "--http1.1 " + base + "/bytes/100") == "1.1 200");
        TlsOptions o;
        o.sni = "a.test";
        o.ca = pki.ca();
        o.alpn = "h2";
        TlsClient client(port, o);
        REQUIRE(client.connected());
        CHECK(client.alpn() == "h2");
    }

    TEST_CASE("TLS listener with protocols [http/1.1]: h2 is not negotiated") {
        TempDir dir;
        Pki pki(dir.path().string());
        pki.issue("a", "a.test", "DNS:a.test");
        Origin origin;
        std::string yaml = httpsConfig({pki.certificate("a")}, origin.serversYaml());
        const std::string bind = "    bind: \"127.0.0.1:0\"\n";
        yaml.replace(yaml.find(bind), bind.size(), bind + "    protocols: [http/1.1]\n");
        Strata strata(yaml);
        const auto port = strata.port("https");
        CHECK(runCommand("curl -s --http2 --cacert " + pki.ca() + " --resolve a.test:" +
                         std::to_string(port) + ":127.0.0.1 -o /dev/null -w '%{http_version}' " +
                         "https://a.test:" + std::to_string(port) + "/") == "1.1");
    }

    TEST_CASE("h2c with prior knowledge; HTTP/1.1 still served on the same listener") {
        Origin origin;
        Strata strata(h2cConfig(origin));
        const auto port = strata.port();
        const std::string curl = "curl -s -o /dev/null -w '%{http_version} %{http_code}' ";
        CHECK(runCommand(curl + "--http2-prior-knowledge " + url(port, "/bytes/1000")) == "2 200");
        CHECK(runCommand(curl + url(port, "/bytes/1000")) == "1.1 200");
    }

    TEST_CASE("a plain listener without h2 does not speak HTTP/2") {
        Origin origin;
        Strata strata(h2cConfig(origin, "[http/1.1]"));
        CHECK(runCommand("curl -s -m 5 -o /dev/null -w '%{http_version}' --http2-prior-knowledge " +
                         url(strata.port(), "/")) != "2");
    }

    TEST_CASE("50 streams on one connection, a miss then a hit, HEAD, an upload") {
        Origin origin;
        Strata strata(h2cConfig(origin));
        const auto port = strata.port();
        // nghttp -n -m 50: one connection, 50 concurrent streams.
        const std::string stats = runCommand("nghttp -n -s -m 50 " + url(port, "/bytes/100000"));
        std::size_t ok = 0;
        for (std::size_t at = stats.find(" 200 "); at != std::string::npos;
             at = stats.find(" 200 ", at + 1)) {
            ++ok;
        }
        CHECK(ok == 50);

        const std::string headers = "curl -s --http2-prior-knowledge -D - -o /dev/null ";
        const std::string path = "/cached?cc=max-age%3D60";
        std::string miss = runCommand(headers + url(port, path));
        CHECK(miss.find("HTTP/2 200") == 0);
        CHECK(miss.find("cache-status: strata; fwd=uri-miss; stored") != std::string::npos);
        std::string hit = runCommand(headers + url(port, path));
        CHECK(hit.find("cache-status: strata; hit") != std::string::npos);
        CHECK(origin.requestCount(0, "/cached") == 1);

        std::string head =
            runCommand("curl -s --http2-prior-knowledge -I " + url(port, "/bytes/5000"));
        CHECK(head.find("HTTP/2 200") == 0);

        TempDir dir;
        std::string body(300000, 'x');
        for (std::size_t i = 0; i < body.size(); ++i) {
            body[i] = static_cast<char>('a' + i % 23);
        }
        writeFile(dir.path().string() + "/up", body);
        Fnv1a64 hash;
        hash.update(body);
        std::string echoed = runCommand("curl -s --http2-prior-knowledge --data-binary @" +
                                        dir.path().string() + "/up " + url(port, "/upload"));
        CHECK(echoed.find("\"bytes\":300000") != std::string::npos);
        CHECK(echoed.find(hash.hex()) != std::string::npos);
    }

    TEST_CASE("bodies larger than the connection's output bound arrive whole, miss and hit") {
        // Regression: frames nghttp2 could not hand over while the output was full were only
        // sent again on a writable event, which never comes when a flush drains at once: a
        // 256 KiB answer stalled until the send timeout.
        Origin origin;
        Strata strata(h2cConfig(origin));
        const std::string u = url(strata.port(), "/bytes/262144?cc=max-age%3D60");
        for (const char* round : {"miss", "hit"}) {
            CAPTURE(round);
            CHECK(runCommand("curl -s --http2-prior-knowledge --max-time 5 -o /dev/null -w "
                             "'%{http_version} %{http_code} %{size_download}' '" +
                             u + "'") == "2 200 262144");
        }
        CHECK(origin.requestCount(0, "/bytes/262144") == 1);
    }

    TEST_CASE("forbidden request fields reset the stream; the origin sees nothing") {
        Origin origin;
        Strata strata(h2cConfig(origin) + "admin: {bind: \"127.0.0.1:0\"}\n");
        const auto port = strata.port();
        for (const char* which : {"transfer-encoding", "connection", "upper-case"}) {
            CAPTURE(which);
            CHECK(h2Client(port, which) == "reset 1");  // PROTOCOL_ERROR
        }
        CHECK(h2Client(port, "content-length") == "reset 1");
        CHECK(origin.requestCount(0, "/h2bad") == 0);
        // Each was an HTTP/2 connection whose stream strata reset for a protocol error.
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_http2_events_total", {"event=\"connection\""}) == 4);
        CHECK(metric(admin, "strata_http2_events_total", {"event=\"stream_opened\""}) == 4);
        CHECK(metric(admin, "strata_http2_events_total", {"event=\"protocol_error\""}) == 4);
    }

    TEST_CASE("a header block over limits.max_header_bytes gets 431 on its stream only") {
        Origin origin;
        Strata strata(h2cConfig(origin) + "limits: {max_header_bytes: 8192}\n" +
                      "admin: {bind: \"127.0.0.1:0\"}\n");
        CHECK(h2Client(strata.port(), "header-size") == "response 431");
        CHECK(origin.requestCount(0, "/h2bad") == 0);
        CHECK(metric(strata.port("admin"), "strata_proxy_requests_total",
                     {"protocol=\"h2\"", "status_class=\"4xx\""}) == 1);
    }

    TEST_CASE("a CONTINUATION flood ends the connection with GOAWAY; the origin sees nothing") {
        Origin origin;
        Strata strata(h2cConfig(origin) + "admin: {bind: \"127.0.0.1:0\"}\n");
        const std::string outcome = h2Client(strata.port(), "continuation-flood");
        CAPTURE(outcome);
        CHECK(outcome == "goaway 11");  // ENHANCE_YOUR_CALM
        CHECK(origin.requestCount(0, "/h2bad") == 0);
        CHECK(metric(strata.port("admin"), "strata_http2_goaway_sent_total",
                     {"code=\"enhance_your_calm\""}) == 1);
        // strata keeps serving other clients.
        CHECK(
            runCommand(
                "curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' " +
                url(strata.port(), "/bytes/10")) == "2 200");
    }

    TEST_CASE("reload: an open HTTP/2 connection's next stream uses the new config") {
        Origin origin(2);
        auto config = [&](int server) {
            return h2cConfig("[\"" + origin.addr(server) + "\"]") +
                   "admin: {bind: \"127.0.0.1:0\"}\n";
        };
        Strata strata(config(0));
        const auto admin = strata.port("admin");
        FILE* p =
            ::popen((h2ClientCommand(strata.port(), "reload") + " " + strata.tmp()).c_str(), "r");
        REQUIRE(p != nullptr);
        REQUIRE(eventually([&] { return ::access((strata.tmp() + "/ready").c_str(), F_OK) == 0; }));
        CHECK(metric(admin, "strata_proxy_client_connections", {"protocol=\"h2\""}) == 1);
        writeFile(strata.configPath(), config(1));
        strata.process().signal(SIGHUP);
        REQUIRE(eventually([&] {
            return metric(admin, "strata_server_config_reloads_total", {"result=\"success\""}) == 2;
        }));
        writeFile(strata.tmp() + "/go", "");
        std::array<char, 64> buf{};
        const std::size_t n = std::fread(buf.data(), 1, buf.size(), p);
        ::pclose(p);
        CHECK(std::string(buf.data(), n) == "response 200 200\n");
        CHECK(origin.requestCount(0, "/h2reload/a") == 1);
        CHECK(origin.requestCount(1, "/h2reload/b") == 1);
        CHECK(origin.requestCount(0, "/h2reload/b") == 0);
        CHECK(metric(admin, "strata_proxy_requests_total", {"protocol=\"h2\""}) == 2);
        // Per-route sent bytes count the streams' frames: two HEADERS + DATA, 9-byte heads each.
        CHECK(metric(admin, "strata_proxy_sent_bytes_total", {"route=\"site\""}) > 2 * 9);
    }

    TEST_CASE("a stream whose client does not read stalls alone; the connection goes on") {
        Origin origin;
        Strata strata(h2cConfig(origin));
        const std::string out = h2Client(strata.port(), "slow-reader");
        CAPTURE(out);
        // The slow stream got no more than its 64 KiB window (the client never reopened it).
        unsigned long slow_bytes = 0;
        REQUIRE(std::sscanf(out.c_str(), "fast 200 slow-bytes %lu", &slow_bytes) == 1);
        CHECK(slow_bytes <= 65535);
        CHECK(origin.requestCount(0, "/bytes/1024") == 1);
    }

    TEST_CASE("rapid reset tears the connection down with GOAWAY") {
        Origin origin;
        Strata strata(h2cConfig(origin) + "http2: {reset_burst: 20, reset_rate: 1}\n" +
                      "admin: {bind: \"127.0.0.1:0\"}\n");
        CHECK(h2Client(strata.port(), "rapid-reset") == "goaway 11");  // ENHANCE_YOUR_CALM
        const auto admin = strata.port("admin");
        CHECK(metric(admin, "strata_http2_events_total", {"event=\"client_reset\""}) >= 20);
        CHECK(metric(admin, "strata_http2_goaway_sent_total", {"code=\"enhance_your_calm\""}) == 1);
    }

    TEST_CASE("drain: GOAWAY, the in-flight stream finishes") {
        Origin origin;
        Strata strata(h2cConfig(origin));
        const std::string out_file = strata.tmp() + "/slow.out";
        FILE* p =
            ::popen(("curl -s --http2-prior-knowledge -o " + out_file +
                     " -w '%{http_version} %{http_code}' " + url(strata.port(), "/delay/1500"))
                        .c_str(),
                    "r");
        REQUIRE(p != nullptr);
        // The request reaches the origin before the drain starts.
        for (int i = 0; i < 200 && origin.requestCount(0, "/delay/1500") == 0; ++i) {
            ::usleep(10000);
        }
        REQUIRE(origin.requestCount(0, "/delay/1500") == 1);
        CHECK(strata.stop() == 0);
        std::array<char, 64> buf{};
        std::size_t n = std::fread(buf.data(), 1, buf.size(), p);
        ::pclose(p);
        CHECK(std::string(buf.data(), n) == "2 200");
    }
}
