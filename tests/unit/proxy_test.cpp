#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

#include <doctest/doctest.h>

#include "strata/proxy/access_log.h"
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

#include "strata/cache/validation.h"

namespace {

strata::http::Fields fieldList(std::initializer_list<std::pair<const char*, const char*>> list) {
    strata::http::Fields f;
    for (const auto& [name, value] : list) {
        f.add(name, value);
    }
    return f;
}

std::string htmlBody(std::size_t n) {
    std::string body;
    for (std::size_t i = 0; body.size() < n; ++i) {
        body +=
            "<p id=\"l" + std::to_string(i) + "\">line " + std::to_string(i * 7 % 13) + "</p>\n";
    }
    body.resize(n);
    return body;
}

strata::cache::EntryPtr htmlEntry(strata::http::Fields fields, std::size_t n = 5000) {
    strata::cache::EntryMeta meta;
    meta.primary_key = "http://x/a";
    if (const std::string* etag = fields.get("ETag")) {
        meta.etag = *etag;
    }
    return std::make_shared<const strata::cache::CacheEntry>(
        200, "OK", std::move(fields), std::make_shared<const strata::cache::Body>(htmlBody(n)),
        std::move(meta));
}

strata::proxy::CompressionPolicy brGzip() {
    strata::config::RouteCompression c;
    c.enabled = true;
    return strata::proxy::compileCompression(c);
}

}  // namespace

TEST_SUITE("proxy/compression") {
    TEST_CASE("compressible: what strata never compresses") {
        using strata::proxy::compressible;
        const auto policy = brGzip();
        const auto html = fieldList({{"Content-Type", "text/html; charset=utf-8"}});
        CHECK(compressible(policy, 200, html, 5000));
        CHECK(compressible(policy, 200, html, std::nullopt));  // length unknown yet
        CHECK_FALSE(compressible(policy, 200, html, 1023));    // below min_bytes (1KiB)
        CHECK(compressible(policy, 200, html, 1024));
        CHECK_FALSE(compressible(policy, 206, html, 5000));
        CHECK_FALSE(compressible(policy, 404, html, 5000));
        CHECK_FALSE(compressible(policy, 200, fieldList({{"Content-Type", "image/png"}}), 5000));
        CHECK_FALSE(compressible(policy, 200, strata::http::Fields{}, 5000));  // no type
        CHECK_FALSE(compressible(
            policy, 200, fieldList({{"Content-Type", "text/html"}, {"Content-Encoding", "gzip"}}),
            5000));
        CHECK_FALSE(compressible(policy, 200,
                                 fieldList({{"Content-Type", "text/html"},
                                            {"Cache-Control", "max-age=9, no-transform"}}),
                                 5000));
        strata::proxy::CompressionPolicy off;
        CHECK_FALSE(compressible(off, 200, html, 5000));
    }

    TEST_CASE("encodeForStore keeps each coding beside identity with its own ETag and Vary") {
        auto entry = htmlEntry(fieldList(
            {{"Content-Type", "text/html"}, {"ETag", "\"v1\""}, {"Vary", "Accept-Language"}}));
        auto coded = strata::proxy::encodeForStore(entry, brGzip());
        REQUIRE(coded != entry);
        REQUIRE(coded->encoded().size() == 2);
        CHECK(coded->body() == entry->body());  // identity shared, not copied
        CHECK(coded->fields().get("Vary") != nullptr);
        CHECK(*coded->fields().get("Vary") == "Accept-Language, Accept-Encoding");
        const char* etags[] = {"\"v1-br\"", "\"v1-gzip\""};
        const char* tokens[] = {"br", "gzip"};
        for (std::size_t i = 0; i < 2; ++i) {
            const auto& e = coded->encoded()[i];
            CAPTURE(tokens[i]);
            CHECK(strata::http::codingToken(e.coding) == tokens[i]);
            CHECK(*e.fields.get("ETag") == etags[i]);
            CHECK(*e.fields.get("Content-Encoding") == tokens[i]);
            CHECK(*e.fields.get("Vary") == "Accept-Language, Accept-Encoding");
            CHECK(e.head.find(std::string("ETag: ") + etags[i] + "\r\n") != std::string::npos);
            CHECK(e.body->size() < entry->bodySize() / 3);
            CHECK(strata::http::decompressBody(e.coding, *e.body, 1 << 20) == *entry->body());
        }
        CHECK(coded->charge() > entry->charge());  // the codings count against L1
        // Already coded: not again.
        CHECK(strata::proxy::encodeForStore(coded, brGzip()) == coded);
        // Not compressible: the same entry back.
        auto png = htmlEntry(fieldList({{"Content-Type", "image/png"}}));
        CHECK(strata::proxy::encodeForStore(png, brGzip()) == png);
        auto tiny = htmlEntry(fieldList({{"Content-Type", "text/html"}}), 100);
        CHECK(strata::proxy::encodeForStore(tiny, brGzip()) == tiny);
    }

    TEST_CASE(
        "chooseStoredCoding and planDelivery: per client, identity for Range and no-transform") {
        auto coded = strata::proxy::encodeForStore(
            htmlEntry(fieldList({{"Content-Type", "text/html"}, {"ETag", "\"v1\""}})), brGzip());
        struct Row {
            const char* method;
            std::initializer_list<std::pair<const char*, const char*>> fields;
            const char* want;  // "" = identity
        };
        const Row rows[] = {
            {"GET", {}, ""},
            {"GET", {{"Accept-Encoding", "gzip"}}, "gzip"},
            {"GET", {{"Accept-Encoding", "gzip, br"}}, "br"},
            {"GET", {{"Accept-Encoding", "gzip"}, {"Accept-Encoding", "br"}}, "br"},
            {"GET", {{"Accept-Encoding", "gzip;q=0, br"}}, "br"},
            {"GET", {{"Accept-Encoding", "br;q=0, gzip;q=0"}}, ""},
            {"GET", {{"Accept-Encoding", "identity"}}, ""},
            {"HEAD", {{"Accept-Encoding", "br"}}, "br"},
            {"POST", {{"Accept-Encoding", "br"}}, ""},
            {"GET", {{"Accept-Encoding", "br"}, {"Range", "bytes=0-9"}}, ""},
            {"GET", {{"Accept-Encoding", "br"}, {"Cache-Control", "no-transform"}}, ""},
        };
        for (const Row& r : rows) {
            auto fields = fieldList(r.fields);
            CAPTURE(r.method);
            CAPTURE(r.want);
            const auto* chosen = strata::proxy::chooseStoredCoding(*coded, r.method, fields);
            if (std::string_view(r.want).empty()) {
                CHECK(chosen == nullptr);
            } else {
                REQUIRE(chosen != nullptr);
                CHECK(strata::http::codingToken(chosen->coding) == r.want);
            }
        }
        auto br = fieldList({{"Accept-Encoding", "br"}});
        auto plan = strata::proxy::planDelivery(*coded, "GET", "", "", br, {}, "B");
        REQUIRE(plan.coded != nullptr);
        CHECK(plan.whole_body);
        CHECK(plan.content_length == plan.coded->body->size());
        CHECK_FALSE(plan.accept_ranges);
        // A range of the object: identity bytes, whatever the client accepts.
        auto ranged = strata::proxy::planDelivery(*coded, "GET", "bytes=0-9", "", br, {}, "B");
        CHECK(ranged.coded == nullptr);
        CHECK(ranged.status == 206);
        CHECK(ranged.content_length == 10);
    }

    TEST_CASE(
        "If-None-Match with an encoded ETag matches the stored entry; 304 merge keeps codings") {
        auto coded = strata::proxy::encodeForStore(
            htmlEntry(fieldList({{"Content-Type", "text/html"}, {"ETag", "\"v1\""}})), brGzip());
        auto ask = [&](const char* inm) {
            strata::http::RequestHead req;
            req.method = "GET";
            req.fields.add("If-None-Match", inm);
            return strata::cache::evaluateConditionals(*coded, req, {});
        };
        using strata::cache::ConditionalResult;
        CHECK(ask("\"v1\"") == ConditionalResult::NotModified);
        CHECK(ask("\"v1-br\"") == ConditionalResult::NotModified);
        CHECK(ask("\"x\", \"v1-gzip\"") == ConditionalResult::NotModified);
        CHECK(ask("\"v1-gzip\", \"x\"") == ConditionalResult::NotModified);
        CHECK(ask("\"v2-br\"") == ConditionalResult::None);
        CHECK(ask("\"v1-zstd\"") == ConditionalResult::None);

        strata::http::ResponseHead nm;
        nm.status = 304;
        nm.fields.add("ETag", "\"v1\"");
        nm.fields.add("Vary", "Accept-Language");  // replaces the stored Vary...
        strata::cache::CachePolicy policy;
        auto merged = strata::cache::mergeNotModified(*coded, nm, policy, {}, {});
        REQUIRE(merged->encoded().size() == 2);
        CHECK(merged->encoded()[0].body == coded->encoded()[0].body);  // shared, not redone
        // ...but the codings still answer by Accept-Encoding.
        CHECK(merged->fields().hasToken("Vary", "accept-encoding"));
        CHECK(merged->encoded()[0].fields.hasToken("Vary", "accept-encoding"));
        CHECK(merged->withSoftPurge()->encoded().size() == 2);
    }
}
