#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

#include <doctest/doctest.h>

#include "strata/proxy/access_log.h"
#include "strata/proxy/real_client.h"
#include "strata/proxy/request_id.h"
#include "strata/proxy/router.h"

using namespace strata;

namespace {

config::Route route(std::string host, std::string prefix, std::vector<std::string> methods = {}) {
    config::Route r;
    r.match.host = std::move(host);
    r.match.path_prefix = std::move(prefix);
    r.match.methods = std::move(methods);
    r.upstream = "app";
    return r;
}

// Appends `record` through a real sink (a file in /tmp) and returns the line written.
std::string logLine(const proxy::AccessRecord& record, const std::string& format) {
    char path[] = "/tmp/strata-access-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::string error;
    auto sink = proxy::AccessLogSink::open(path, format, error);
    REQUIRE(sink);
    {
        proxy::AccessLogBuffer buffer(sink);
        buffer.append(record);
    }  // flushed
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::remove(path);
    return text.str();
}

proxy::AccessRecord sampleRecord() {
    proxy::AccessRecord r;
    r.client = "127.0.0.1";
    r.method = "GET";
    r.target = "/a";
    r.status = 200;
    r.upstream = "-";
    r.cache = "hit";
    r.host = "example.com:8080";
    r.route = "static";
    r.listener = "front";
    r.request_id = "0a0000000000002a";
    return r;
}

}  // namespace

TEST_SUITE("proxy/request_id") {
    TEST_CASE("16 hex digits: the worker in the top byte, a counter from the random start") {
        proxy::RequestIdGenerator ids(/*worker_id=*/3, /*random_start=*/0x00ffffffffffffffULL);
        CHECK(proxy::view(ids.next()) == "03ffffffffffffff");
        // The counter wraps within its 56 bits, never into the worker's byte.
        CHECK(proxy::view(ids.next()) == "0300000000000000");
        CHECK(proxy::view(ids.next()) == "0300000000000001");
        CHECK(proxy::view(proxy::RequestIdGenerator::format(0xabcdef)) == "0000000000abcdef");
    }

    TEST_CASE("workers started with the same random value still never share an id") {
        proxy::RequestIdGenerator a(0, 42);
        proxy::RequestIdGenerator b(1, 42);
        std::set<std::string> seen;
        for (int i = 0; i < 1000; ++i) {
            seen.emplace(proxy::view(a.next()));
            seen.emplace(proxy::view(b.next()));
        }
        CHECK(seen.size() == 2000);
    }

    TEST_CASE("the random start differs between runs") {
        // Two draws from the system source: equal with probability 2^-64.
        CHECK(proxy::RequestIdGenerator::randomSeed() != proxy::RequestIdGenerator::randomSeed());
    }
}

TEST_SUITE("proxy/access_log") {
    TEST_CASE("combined: host, route, listener and request id follow time=") {
        const std::string line = logLine(sampleRecord(), "combined");
        const auto time = line.find(" time=");
        REQUIRE(time != std::string::npos);
        CHECK(line.substr(time + 6 + 24) ==
              " host=example.com:8080 route=static listener=front request_id=0a0000000000002a\n");
    }

    TEST_CASE("combined: unknown values are '-', and a value cannot add a field") {
        proxy::AccessRecord r = sampleRecord();
        r.host = "";
        r.route = "a b\"c";
        const std::string line = logLine(r, "combined");
        CHECK(line.find(" host=- route=a?b?c listener=front ") != std::string::npos);
    }

    TEST_CASE("json: the same fields, null when unknown") {
        proxy::AccessRecord r = sampleRecord();
        r.route = "";
        const std::string line = logLine(r, "json");
        CHECK(line.find(",\"host\":\"example.com:8080\",\"route\":null,\"listener\":\"front\","
                        "\"request_id\":\"0a0000000000002a\"}\n") != std::string::npos);
    }
}

TEST_SUITE("proxy/router") {
    TEST_CASE("first matching route wins, in config order") {
        proxy::Router router({route("api.example.com", "/v1/"), route("", "/v1/"), route("", "/")});
        CHECK(router.match("api.example.com", "/v1/users", "GET") == 0);
        CHECK(router.match("www.example.com", "/v1/users", "GET") == 1);
        CHECK(router.match("www.example.com", "/static/a.css", "GET") == 2);
    }

    TEST_CASE("host match ignores the port and wildcards need a subdomain") {
        proxy::Router router({route("*.example.com", "/"), route("example.com", "/")});
        CHECK(router.match("a.example.com", "/", "GET") == 0);
        CHECK(router.match("a.b.example.com:8080", "/", "GET") == 0);
        CHECK(router.match("example.com", "/", "GET") == 1);
        CHECK(router.match("example.com:80", "/", "GET") == 1);
        CHECK(router.match("badexample.com", "/", "GET") == -1);
        CHECK(router.match("other.org", "/", "GET") == -1);
    }

    TEST_CASE("method lists restrict a route") {
        proxy::Router router({route("", "/", {"GET", "HEAD"}), route("", "/", {"POST"})});
        CHECK(router.match("h", "/x", "GET") == 0);
        CHECK(router.match("h", "/x", "HEAD") == 0);
        CHECK(router.match("h", "/x", "POST") == 1);
        CHECK(router.match("h", "/x", "DELETE") == -1);
    }

    TEST_CASE("path prefix is a plain prefix") {
        proxy::Router router({route("", "/api")});
        CHECK(router.match("h", "/api", "GET") == 0);
        CHECK(router.match("h", "/api/x", "GET") == 0);
        CHECK(router.match("h", "/ap", "GET") == -1);
    }

    TEST_CASE("hostWithoutPort handles IPv6 literals") {
        CHECK(proxy::hostWithoutPort("[::1]:8080") == "[::1]");
        CHECK(proxy::hostWithoutPort("[::1]") == "[::1]");
        CHECK(proxy::hostWithoutPort("example.com:81") == "example.com");
        CHECK(proxy::hostWithoutPort("example.com") == "example.com");
    }
}

#include "strata/proxy/body_processor.h"

TEST_CASE("range parser and normaliser (RFC 9110 14.1.2 examples)") {
    using strata::proxy::parseRange;
    using K = strata::proxy::RangeSet::Kind;
    auto r = parseRange("bytes=0-499", 10000);
    REQUIRE(r.kind == K::Ranges);
    CHECK(r.ranges == std::vector<strata::proxy::ByteRange>{{0, 499}});
    r = parseRange("bytes=-500", 10000);
    CHECK(r.ranges == std::vector<strata::proxy::ByteRange>{{9500, 9999}});
    r = parseRange("bytes=9500-", 10000);
    CHECK(r.ranges == std::vector<strata::proxy::ByteRange>{{9500, 9999}});
    r = parseRange("bytes=0-0, -1", 10000);
    CHECK(r.ranges == std::vector<strata::proxy::ByteRange>{{0, 0}, {9999, 9999}});
    r = parseRange("bytes=500-600,601-999", 10000);  // adjacent: merged
    CHECK(r.ranges == std::vector<strata::proxy::ByteRange>{{500, 999}});
    r = parseRange("bytes=500-700,601-999", 10000);  // overlapping: merged
    CHECK(r.ranges == std::vector<strata::proxy::ByteRange>{{500, 999}});
    CHECK(parseRange("bytes=20000-", 10000).kind == K::Unsatisfiable);
    CHECK(parseRange("bytes=-0", 10000).kind == K::Unsatisfiable);
    CHECK(parseRange("bytes=5-1", 10000).kind == K::Ignore);
    CHECK(parseRange("items=0-1", 10000).kind == K::Ignore);
    CHECK(parseRange("bytes=x-1", 10000).kind == K::Ignore);
    CHECK(parseRange("bytes=", 10000).kind == K::Ignore);
    std::string many = "bytes=";
    for (int i = 0; i < 20; ++i) {
        many += std::to_string(i * 10) + "-" + std::to_string(i * 10 + 1) + ",";
    }
    CHECK(parseRange(many, 10000).kind == K::Ignore);  // over the cap: the full 200
}

TEST_CASE("multipart/byteranges framing") {
    auto parts = strata::proxy::multipartParts({{0, 1}, {5, 6}}, 10, "text/plain", "B");
    REQUIRE(parts.size() == 5);
    CHECK(parts[0].literal ==
          "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n");
    CHECK(parts[1].offset == 0);
    CHECK(parts[1].length == 2);
    CHECK(parts[2].literal ==
          "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/10\r\n\r\n");
    CHECK(parts[4].literal == "\r\n--B--\r\n");
}

TEST_SUITE("proxy/real_client") {
    namespace sp = strata::proxy;
    strata::net::SocketAddress ip(const std::string& text) {
        strata::net::SocketAddress out;
        REQUIRE(strata::net::parseIpLiteral(text, out));
        return out;
    }
    std::vector<strata::config::Cidr> blocks(std::initializer_list<const char*> list) {
        std::vector<strata::config::Cidr> out;
        for (const char* text : list) {
            strata::config::Cidr c;
            std::string error;
            REQUIRE(strata::config::Cidr::parse(text, c, error));
            out.push_back(c);
        }
        return out;
    }
    // The real client for `xff` fields from `peer`, "" when the peer stays the client.
    std::string resolve(const std::string& peer, std::vector<std::string> xff) {
        strata::http::Fields fields;
        fields.add("Host", "a");
        for (const auto& v : xff) {
            fields.add("X-Forwarded-For", v);
        }
        auto r = sp::realClient(ip(peer), fields, blocks({"10.0.0.0/8", "2001:db8::/32"}));
        return r ? r->hostString() : "";
    }

    TEST_CASE("right-most untrusted X-Forwarded-For entry, from a trusted peer only") {
        CHECK(resolve("10.0.0.1", {"198.51.100.7"}) == "198.51.100.7");
        CHECK(resolve("10.0.0.1", {"203.0.113.1, 198.51.100.7, 10.1.1.1"}) == "198.51.100.7");
        CHECK(resolve("10.0.0.1", {"203.0.113.1", "198.51.100.7,10.2.2.2", "10.1.1.1"}) ==
              "198.51.100.7");
        CHECK(resolve("10.0.0.1", {"10.3.3.3, 10.1.1.1"}) == "10.3.3.3");  // all trusted
        CHECK(resolve("10.0.0.1", {"2001:db8::5, 2001:4860::1"}) == "2001:4860::1");
        CHECK(resolve("10.0.0.1", {"[2001:4860::1]:443"}) == "2001:4860::1");
        CHECK(resolve("10.0.0.1", {"198.51.100.7:5555"}) == "198.51.100.7");
        CHECK(resolve("10.0.0.1", {"198.51.100.7,,"}) == "198.51.100.7");
        CHECK(resolve("::ffff:10.0.0.1", {"198.51.100.7"}) == "198.51.100.7");  // mapped peer
        // Not believed: an untrusted peer, no entry, or a garbled hop.
        CHECK(resolve("192.0.2.1", {"198.51.100.7"}).empty());
        CHECK(resolve("10.0.0.1", {}).empty());
        CHECK(resolve("10.0.0.1", {"unknown, 10.1.1.1"}).empty());
        CHECK(resolve("10.0.0.1", {"198.51.100.7, _hidden"}).empty());
        CHECK(resolve("10.0.0.1", {"[2001:4860::1"}).empty());
    }
}
