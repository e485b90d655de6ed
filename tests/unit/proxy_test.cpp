#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

#include <doctest/doctest.h>

#include "strata/proxy/access_log.h"
#include "strata/proxy/client_connections.h"
#include "strata/proxy/real_client.h"
#include "strata/proxy/request_id.h"
#include "strata/proxy/router.h"
#include "strata/proxy/upgrade.h"

using namespace strata;

namespace {

config::Route route(std::string host, std::string prefix, std::vector<std::string> methods = {}) {
    config::Route r;
    if (!host.empty()) {
        r.match.hosts.push_back(std::move(host));
    }
    r.match.path_prefix = std::move(prefix);
    r.match.methods = std::move(methods);
    r.upstream = "app";
    return r;
}

// Appends `record` through a real sink (a file in /tmp) and returns the line written.
std::string logLine(const proxy::AccessRecord& record, const std::string& format,
                    std::shared_ptr<const proxy::LogPrivacy> privacy = nullptr) {
    char path[] = "/tmp/strata-access-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::string error;
    auto sink = proxy::AccessLogSink::open(path, format, std::move(privacy), error);
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
    TEST_CASE("a client's id is taken only when it is a short, log-safe token") {
        CHECK(proxy::acceptableRequestId("lb-4f2a:9"));
        CHECK(proxy::acceptableRequestId("0a0000000000002a"));
        CHECK(proxy::acceptableRequestId("3f2504e0-4f89-11d3-9a0c-0305e82c3301"));
        CHECK(proxy::acceptableRequestId("YWJj+/=_."));
        CHECK(proxy::acceptableRequestId(std::string(128, 'a')));
        CHECK_FALSE(proxy::acceptableRequestId(std::string(129, 'a')));
        CHECK_FALSE(proxy::acceptableRequestId(""));
        CHECK_FALSE(proxy::acceptableRequestId("a b"));
        CHECK_FALSE(proxy::acceptableRequestId("a\"b"));
        CHECK_FALSE(proxy::acceptableRequestId("a,b"));
        CHECK_FALSE(proxy::acceptableRequestId("a\tb"));
    }

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

    TEST_CASE("exact path, regex path, host lists, listeners") {
        std::vector<config::Route> routes(5);
        routes[0].match.path = "/robots.txt";
        routes[1].match.path_regex = "/img/[0-9]+\\.(png|jpg)";
        routes[2].match.hosts = {"a.example.com", "*.b.example.com"};
        routes[3].match.listeners = {"internal"};
        routes[4].match.path_prefix = "/";
        proxy::Router router(routes);
        auto at = [&](std::string_view host, std::string_view path,
                      std::string_view listener = "public") {
            proxy::RouteRequest r;
            r.host = host;
            r.path = path;
            r.method = "GET";
            r.listener = listener;
            return router.match(r);
        };
        CHECK(at("x", "/robots.txt") == 0);
        CHECK(at("x", "/robots.txt.bak") == 4);  // exact, not a prefix
        CHECK(at("x", "/img/12.png") == 1);
        CHECK(at("x", "/img/12.png/x") == 4);  // the regex covers the whole path
        CHECK(at("x", "/img/a.png") == 4);
        CHECK(at("a.example.com:8080", "/z") == 2);
        CHECK(at("q.b.example.com", "/z") == 2);
        CHECK(at("b.example.com", "/z") == 4);
        CHECK(at("x", "/z", "internal") == 3);
    }

    TEST_CASE("header and query conditions: present, exact, regex, absent; and `not`") {
        std::vector<config::Route> routes(6);
        routes[0].match.headers = {{"X-Env", "beta", "", true}};
        routes[1].match.headers = {{"User-Agent", "", ".*[Bb]ot.*", true}};
        routes[2].match.query = {{"debug", "", "", true}};
        routes[3].match.query = {{"v", "", "[0-9]+", true}};
        routes[4].match.path_prefix = "/api/";
        routes[4].match.has_negated = true;
        routes[4].match.negated.path_prefix = "/api/admin";
        routes[4].match.headers = {{"Authorization", "", "", false}};  // anonymous only
        routes[5].match.path_prefix = "/";
        proxy::Router router(routes);
        auto at = [&](std::string_view path, std::string_view query,
                      std::vector<std::pair<std::string, std::string>> fields) {
            http::Fields f;
            for (auto& [n, v] : fields) {
                f.add(n, v);
            }
            proxy::RouteRequest r;
            r.host = "h";
            r.path = path;
            r.query = query;
            r.method = "GET";
            r.fields = &f;
            return router.match(r);
        };
        CHECK(at("/", "", {{"x-env", "beta"}}) == 0);  // names compare case-insensitively
        CHECK(at("/", "", {{"X-Env", "beta2"}}) == 5);
        CHECK(at("/", "", {{"User-Agent", "Googlebot/2.1"}}) == 1);
        CHECK(at("/", "a=1&debug", {}) == 2);
        CHECK(at("/", "debugx=1", {}) == 5);
        CHECK(at("/", "v=42", {}) == 3);
        CHECK(at("/", "v=4a", {}) == 5);
        CHECK(at("/api/users", "", {}) == 4);
        CHECK(at("/api/admin/users", "", {}) == 5);  // excluded by `not`
        CHECK(at("/api/users", "", {{"Authorization", "Bearer x"}}) == 5);
        // Without request fields (purge keying): a presence condition fails, absence holds.
        CHECK(router.match("h", "/api/users", "GET") == 4);
        CHECK(router.match("h", "/", "GET") == 5);
    }

    TEST_CASE("the host/path index finds what a scan in config order finds") {
        std::vector<config::Route> routes;
        const std::vector<std::string> hosts = {"", "a.test", "*.a.test", "b.test", "*.test"};
        const std::vector<std::string> prefixes = {"", "/", "/api/", "/api", "/api/v1/", "/img/"};
        for (const auto& h : hosts) {
            for (const auto& p : prefixes) {
                routes.push_back(route(h, p, {}));
                routes.push_back(route(h, p, {"POST"}));
            }
        }
        std::rotate(routes.begin(), routes.begin() + 7, routes.end());  // mix the order
        proxy::Router router(routes);
        auto scan = [&](std::string_view host, std::string_view path, std::string_view method) {
            std::vector<config::Route> one(1);
            for (std::size_t i = 0; i < routes.size(); ++i) {
                one[0] = routes[i];
                if (proxy::Router(one).match(host, path, method) == 0) {
                    return static_cast<int>(i);
                }
            }
            return -1;
        };
        for (std::string_view host :
             {"a.test", "x.a.test", "y.x.a.test", "b.test", "c.test", "test", "other"}) {
            for (std::string_view path :
                 {"/", "/api", "/api/", "/api/v1/x", "/apix", "/img/1", "/imgs", ""}) {
                for (std::string_view method : {"GET", "POST"}) {
                    CAPTURE(host);
                    CAPTURE(path);
                    CAPTURE(method);
                    CHECK(router.match(host, path, method) == scan(host, path, method));
                }
            }
        }
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

    TEST_CASE("match.client: the route holds for clients in its blocks, `not` inverts it") {
        std::vector<strata::config::Route> routes(2);
        routes[0].match.clients = blocks({"10.0.0.0/8", "2001:db8::/32"});
        routes[0].match.path_prefix = "/";
        routes[1].match.path_prefix = "/";
        routes[1].match.has_negated = true;
        routes[1].match.negated.clients = blocks({"192.0.2.0/24"});
        sp::Router router(routes);
        strata::http::RequestHead head;
        head.host = "h";
        head.path = "/x";
        head.method = "GET";
        auto pick = [&](const std::string& address) {
            const auto client = ip(address);
            return router.match(sp::routeRequest(head, "", &client));
        };
        CHECK(pick("10.1.2.3") == 0);
        CHECK(pick("::ffff:10.1.2.3") == 0);  // IPv4-mapped
        CHECK(pick("2001:db8::9") == 0);
        CHECK(pick("198.51.100.1") == 1);
        CHECK(pick("192.0.2.9") == -1);                        // excluded by `not`
        CHECK(router.match(sp::routeRequest(head, "")) == 1);  // no address: client rules fail
    }

    TEST_CASE("client connection table: a slot per open connection, addresses dropped at 0") {
        sp::ClientConnectionTable table;
        CHECK(table.acquire(ip("192.0.2.1"), 2));
        CHECK(table.acquire(ip("192.0.2.1"), 2));
        CHECK_FALSE(table.acquire(ip("192.0.2.1"), 2));
        CHECK(table.acquire(ip("192.0.2.2"), 2));
        CHECK(table.addresses() == 2);
        table.release(ip("192.0.2.1"));
        CHECK(table.acquire(ip("192.0.2.1"), 2));
        table.release(ip("192.0.2.1"));
        table.release(ip("192.0.2.1"));
        table.release(ip("192.0.2.2"));
        CHECK(table.addresses() == 0);
        table.release(ip("192.0.2.3"));  // never held: nothing to give back
        CHECK(table.addresses() == 0);
    }

    TEST_CASE("Forwarded element: IPv6 quoted in brackets, host quoted when not a token") {
        CHECK(sp::forwardedElement("198.51.100.7", "example.com", false) ==
              "for=198.51.100.7;host=example.com;proto=http");
        CHECK(sp::forwardedElement("2001:db8::1", "example.com:8443", true) ==
              "for=\"[2001:db8::1]\";host=\"example.com:8443\";proto=https");
        CHECK(sp::forwardedElement("192.0.2.1", "", true) == "for=192.0.2.1;proto=https");
        CHECK(sp::forwardedElement("192.0.2.1", "a\"b", false) ==
              "for=192.0.2.1;host=\"a\\\"b\";proto=http");
    }
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

TEST_SUITE("proxy/log_privacy") {
    using Mode = proxy::LogPrivacy::ClientMode;

    TEST_CASE("truncate keeps an IPv4 /24 and an IPv6 /48") {
        proxy::LogPrivacy p(Mode::Truncate, "", {});
        std::string scratch;
        CHECK(p.client("192.0.2.77", scratch) == "192.0.2.0");
        CHECK(p.client("2001:db8:1:2:3:4:5:6", scratch) == "2001:db8:1::");
        CHECK(p.client("::1", scratch) == "::");
        CHECK(p.client("not-an-address", scratch) == "not-an-address");
        CHECK(p.client("", scratch).empty());
    }

    TEST_CASE("hash: 16 hex digits, equal for one address and key, different otherwise") {
        proxy::LogPrivacy a(Mode::Hash, "secret", {});
        proxy::LogPrivacy same_key(Mode::Hash, "secret", {});
        proxy::LogPrivacy other_key(Mode::Hash, "other", {});
        std::string s1, s2, s3;
        const std::string h = std::string(a.client("192.0.2.1", s1));
        CHECK(h.size() == 16);
        CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
        CHECK(h == same_key.client("192.0.2.1", s2));
        CHECK(h != other_key.client("192.0.2.1", s3));
        CHECK(h != a.client("192.0.2.2", s1));
        CHECK(h.find("192") == std::string::npos);
    }

    TEST_CASE("redact_query replaces the values of the named parameters, any case") {
        proxy::LogPrivacy p(Mode::Full, "", {"token", "Email"});
        std::string scratch;
        CHECK(p.target("/a?x=1&TOKEN=abc&email=a%40b.c&y", scratch) ==
              "/a?x=1&TOKEN=REDACTED&email=REDACTED&y");
        CHECK(p.target("/a?tokens=1&token", scratch) == "/a?tokens=1&token");
        CHECK(p.target("/no-query", scratch) == "/no-query");
        CHECK(p.client("192.0.2.1", scratch) == "192.0.2.1");  // full: addresses as they are
        CHECK(p.active());
        CHECK_FALSE(proxy::LogPrivacy(Mode::Full, "", {}).active());
    }

    TEST_CASE("the access log writes what the policy keeps, in both formats") {
        auto privacy = std::make_shared<const proxy::LogPrivacy>(Mode::Truncate, "",
                                                                 std::vector<std::string>{"token"});
        proxy::AccessRecord r = sampleRecord();
        r.client = "198.51.100.23";
        r.target = "/login?token=s3cret&next=/";
        for (const char* format : {"combined", "json"}) {
            const std::string line = logLine(r, format, privacy);
            CHECK(line.find("198.51.100.0") != std::string::npos);
            CHECK(line.find("198.51.100.23") == std::string::npos);
            CHECK(line.find("s3cret") == std::string::npos);
            CHECK(line.find("token=REDACTED&next=/") != std::string::npos);
        }
    }
}

TEST_SUITE("proxy/upgrade") {
    // A valid RFC 6455 handshake as the HTTP/1 parser or the h2 mapping hands it over.
    http::RequestHead handshake(std::string_view upgrade = "websocket") {
        http::RequestHead h;
        h.method = "GET";
        h.version_major = 1;
        h.version_minor = 1;
        h.fields.add("Host", "ws.test");
        h.fields.add("Upgrade", std::string(upgrade));
        h.fields.add("Connection", "Upgrade");
        h.fields.add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        h.fields.add("Sec-WebSocket-Version", "13");
        return h;
    }

    using Verdict = proxy::UpgradeDecision::Verdict;

    TEST_CASE("a valid WebSocket handshake tunnels; a route can refuse it") {
        config::Route r = route("", "/");
        auto d = proxy::classifyUpgrade(handshake(), r);
        CHECK(d.verdict == Verdict::Tunnel);
        CHECK(d.protocol == "websocket");
        r.websocket = false;
        CHECK(proxy::classifyUpgrade(handshake(), r).verdict == Verdict::Refused);
    }

    TEST_CASE("smuggling shapes never tunnel") {
        const config::Route r = route("", "/");
        auto post = handshake();
        post.method = "POST";
        CHECK(proxy::classifyUpgrade(post, r).verdict == Verdict::Invalid);
        auto body = handshake();
        body.framing = http::BodyFraming::Length;
        body.content_length = 5;
        CHECK(proxy::classifyUpgrade(body, r).verdict == Verdict::Invalid);
        auto key = handshake();
        key.fields.set("Sec-WebSocket-Key", "short");
        CHECK(proxy::classifyUpgrade(key, r).verdict == Verdict::Invalid);
        auto version = handshake();
        version.fields.set("Sec-WebSocket-Version", "8");
        CHECK(proxy::classifyUpgrade(version, r).verdict == Verdict::Invalid);
        // Upgrade is an HTTP/1.1 mechanism: 1.0 and plain HTTP/2 requests go on as HTTP.
        auto old = handshake();
        old.version_minor = 0;
        CHECK(proxy::classifyUpgrade(old, r).verdict == Verdict::None);
        auto h2 = handshake();
        h2.version_major = 2;
        h2.version_minor = 0;
        CHECK(proxy::classifyUpgrade(h2, r).verdict == Verdict::None);
        // h2c and unknown tokens are dropped, never tunnelled.
        CHECK(proxy::classifyUpgrade(handshake("h2c"), r).verdict == Verdict::None);
        CHECK(proxy::classifyUpgrade(handshake("foo/1"), r).verdict == Verdict::None);
    }

    TEST_CASE("an RFC 8441 extended CONNECT is classified like the HTTP/1.1 handshake") {
        const config::Route r = route("", "/");
        auto h2 = handshake();
        h2.version_major = 2;
        h2.version_minor = 0;
        h2.extended_connect = true;
        CHECK(proxy::classifyUpgrade(h2, r).verdict == Verdict::Tunnel);
        h2.fields.set("Sec-WebSocket-Version", "8");
        CHECK(proxy::classifyUpgrade(h2, r).verdict == Verdict::Invalid);
    }

    TEST_CASE("Sec-WebSocket-Key: base64 of exactly 16 bytes") {
        CHECK(proxy::validWebSocketKey("dGhlIHNhbXBsZSBub25jZQ=="));
        CHECK_FALSE(proxy::validWebSocketKey("dGhlIHNhbXBsZSBub25jZR=="));  // stray low bits
        CHECK_FALSE(proxy::validWebSocketKey("dGhlIHNhbXBsZSBub25jZQ="));
        CHECK_FALSE(proxy::validWebSocketKey("dGhlIHNhbXBsZSBub25j!Q=="));
    }
}
