// Compression of cached answers (issue 13): the origin serves a compressible body once; strata
// stores it with a br and a gzip coding beside identity and answers every Accept-Encoding from
// that one object. What the client gets is decoded here with zlib and libbrotli (not strata's
// code) and compared byte for byte with the origin's body. Vary, per-coding ETags, 304s with
// either ETag, HEAD, Range (identity), and what is never compressed: no-transform, an origin
// Content-Encoding, tiny bodies, unlisted types, routes without compression.
#include <brotli/decode.h>
#include <fstream>
#include <sstream>
#include <string>
#include <zlib.h>

#include "cache_support.h"

using namespace strata::test;

namespace {

constexpr std::size_t kLength = 20000;

// strata-origin's /text/N body (tools/strata_origin.cpp).
std::string originText(std::size_t n) {
    std::string body;
    for (std::size_t i = 0; body.size() < n; ++i) {
        body += "<p id=\"l" + std::to_string(i) + "\">strata compresses this line " +
                std::to_string(i * 7919 % 1000) + "</p>\n";
    }
    body.resize(n);
    return body;
}

// A whole gzip stream decoded; "<bad gzip>" when it is not one (or has trailing bytes).
std::string gunzip(const std::string& data) {
    z_stream z{};
    REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    std::string out;
    char buf[16384];
    int rc = Z_OK;
    while (rc == Z_OK) {
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof(buf);
        rc = inflate(&z, Z_NO_FLUSH);
        out.append(buf, sizeof(buf) - z.avail_out);
    }
    const bool complete = rc == Z_STREAM_END && z.avail_in == 0;
    inflateEnd(&z);
    return complete ? out : "<bad gzip>";
}

// What a client decodes from the first bytes of a gzip stream that has not ended yet.
std::string gunzipPrefix(const std::string& data) {
    z_stream z{};
    REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    std::string out;
    char buf[16384];
    int rc = Z_OK;
    do {
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof(buf);
        rc = inflate(&z, Z_SYNC_FLUSH);
        out.append(buf, sizeof(buf) - z.avail_out);
    } while (rc == Z_OK && z.avail_in > 0);
    inflateEnd(&z);
    return out;
}

// A whole brotli stream decoded; "<bad br>" when it is not one.
std::string unbrotli(const std::string& data) {
    BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
    std::size_t avail_in = data.size();
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(data.data());
    std::string out;
    char buf[16384];
    BrotliDecoderResult rc;
    do {
        std::size_t avail_out = sizeof(buf);
        auto* next_out = reinterpret_cast<std::uint8_t*>(buf);
        rc = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, nullptr);
        out.append(buf, sizeof(buf) - avail_out);
    } while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT);
    BrotliDecoderDestroyInstance(s);
    return rc == BROTLI_DECODER_RESULT_SUCCESS && avail_in == 0 ? out : "<bad br>";
}

// The body as the client decodes it by its Content-Encoding.
std::string decoded(const Response& r) {
    const std::string coding = r.header("Content-Encoding");
    if (coding == "gzip") {
        return gunzip(r.body);
    }
    if (coding == "br") {
        return unbrotli(r.body);
    }
    return coding.empty() ? r.body : "<unexpected coding " + coding + ">";
}

// Whether any Vary line lists `name` (case-insensitive).
bool varies(const Response& r, std::string_view name) {
    for (const auto& [k, v] : r.headers) {
        if (!strata::equalsIgnoreCase(k, "Vary")) {
            continue;
        }
        bool found = false;
        strata::forEachListElement(
            v, [&](std::string_view e) { found = found || strata::equalsIgnoreCase(e, name); });
        if (found) {
            return true;
        }
    }
    return false;
}

// Caching and compression ({} = the defaults) on the catch-all route; a second route (/plain/)
// caches without compression.
std::string compressionConfig(const Origin& origin, const std::string& compression = "{}",
                              const std::string& extra = "") {
    return "listeners:\n"
           "  - {name: http, bind: \"127.0.0.1:0\", protocols: [h2, http/1.1]}\n"
           "admin: {bind: \"127.0.0.1:0\"}\n"
           "upstreams:\n"
           "  app: {servers: " +
           origin.serversYaml() +
           "}\n"
           "routes:\n"
           "  - match: {path_prefix: /plain/}\n"
           "    upstream: app\n"
           "    cache: {enabled: true, default_ttl: 60s}\n"
           "  - match: {path_prefix: /}\n"
           "    upstream: app\n"
           "    cache: {enabled: true, default_ttl: 60s}\n"
           "    compression: " +
           compression +
           "\n"
           "logging: {access_log: off}\n" +
           extra;
}

std::string ae(const std::string& value) {
    return "Accept-Encoding: " + value + "\r\n";
}

// A GET with one Host whatever the port, so two instances compute the same cache keys.
Response fetchShared(std::uint16_t port, const std::string& target, const std::string& extra = "") {
    RawClient c(port);
    if (!c.send("GET " + target + " HTTP/1.1\r\nHost: shared.test\r\n" + extra + "\r\n")) {
        Response r;
        r.error = "send failed";
        return r;
    }
    return c.readResponse();
}

// A stored /text object with a strong ETag; the miss that stores it is identity.
struct Stored {
    Origin origin;
    Strata strata;
    std::string path = "/text/" + std::to_string(kLength);
    std::string url = path + "?" + ccParam("max-age=60") + "&" + hParam("ETag", "\"v1\"");
    std::string full = originText(kLength);

    explicit Stored(const std::string& compression = "{}")
        : strata(compressionConfig(origin, compression)) {
        auto miss = get(strata.port(), url, ae("gzip, br"));
        STRATA_CACHE_STATUS(miss);
        REQUIRE(miss.status == 200);
        REQUIRE(cacheStatusHas(miss, "stored"));
        // The miss streams what the origin sent; it varies as the hits after it will.
        CHECK_FALSE(miss.hasHeader("Content-Encoding"));
        CHECK(varies(miss, "Accept-Encoding"));
        CHECK(miss.body == full);
    }
};

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("one stored object answers gzip, br, gzip;q=0 br and no Accept-Encoding") {
        Stored s;
        struct Case {
            std::string accept;  // "" = no Accept-Encoding field
            std::string coding;  // "" = identity
            std::string etag;
        };
        const std::vector<Case> cases = {
            {"gzip", "gzip", "\"v1-gzip\""},
            {"br", "br", "\"v1-br\""},
            {"gzip;q=0, br", "br", "\"v1-br\""},
            {"br;q=0.5, gzip", "gzip", "\"v1-gzip\""},
            {"gzip, deflate, br", "br", "\"v1-br\""},
            {"", "", "\"v1\""},
            {"identity", "", "\"v1\""},
            {"br;q=0, gzip;q=0", "", "\"v1\""},
        };
        for (const auto& k : cases) {
            CAPTURE(k.accept);
            auto r = get(s.strata.port(), s.url, k.accept.empty() ? "" : ae(k.accept));
            STRATA_CACHE_STATUS(r);
            REQUIRE(r.status == 200);
            CHECK(cacheStatusHas(r, "hit"));
            CHECK(r.header("Content-Encoding") == k.coding);
            CHECK(r.header("ETag") == k.etag);
            CHECK(varies(r, "Accept-Encoding"));
            CHECK(r.header("Content-Length") == std::to_string(r.body.size()));
            CHECK(r.header("Content-Type") == "text/html");
            if (!k.coding.empty()) {
                CHECK(r.body.size() < kLength / 4);  // it really is compressed
            }
            CHECK(decoded(r) == s.full);
        }
        // Stored once, compressed once: every variant came from one origin fetch.
        CHECK(s.origin.requestCount(0, s.path) == 1);
        const std::uint16_t admin = s.strata.port("admin");
        for (const char* coding : {"br", "gzip"}) {
            CAPTURE(coding);
            const std::string c = std::string("coding=\"") + coding + "\"";
            CHECK(metric(admin, "strata_compression_bodies_total", {"stage=\"store\"", c}) == 1);
            CHECK(metric(admin, "strata_compression_bytes_total",
                         {"stage=\"store\"", c, "direction=\"in\""}) == kLength);
            CHECK(metric(admin, "strata_compression_bytes_total",
                         {"stage=\"store\"", c, "direction=\"out\""}) < kLength / 4);
        }
    }

    TEST_CASE("If-None-Match with the identity or an encoded ETag: 304 for every variant") {
        Stored s;
        struct Case {
            std::string accept;
            std::string if_none_match;
            std::string etag;  // the 304's: the one the 200 would carry
        };
        const std::vector<Case> cases = {
            {"br", "\"v1-br\"", "\"v1-br\""},
            {"gzip", "\"v1-br\"", "\"v1-gzip\""},
            {"br", "\"v1\"", "\"v1-br\""},
            {"", "\"v1-gzip\"", "\"v1\""},
            {"gzip", "\"other\", \"v1-gzip\"", "\"v1-gzip\""},
        };
        for (const auto& k : cases) {
            CAPTURE(k.accept);
            CAPTURE(k.if_none_match);
            auto r = get(s.strata.port(), s.url,
                         (k.accept.empty() ? "" : ae(k.accept)) +
                             "If-None-Match: " + k.if_none_match + "\r\n");
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 304);
            CHECK(r.header("ETag") == k.etag);
            CHECK(varies(r, "Accept-Encoding"));
            CHECK(r.body.empty());
        }
        // A tag of another version is no match, encoded or not.
        auto other = get(s.strata.port(), s.url, ae("br") + "If-None-Match: \"v2-br\"\r\n");
        CHECK(other.status == 200);
        CHECK(decoded(other) == s.full);
        CHECK(s.origin.requestCount(0, s.path) == 1);
    }

    TEST_CASE("HEAD gets the head GET would send; a Range request gets identity bytes") {
        Stored s;
        auto full = get(s.strata.port(), s.url, ae("br"));
        REQUIRE(full.header("Content-Encoding") == "br");
        auto head = request(s.strata.port(), "HEAD", s.url, ae("br"));
        CHECK(head.status == 200);
        CHECK(head.body.empty());
        for (const char* name :
             {"Content-Encoding", "Content-Length", "ETag", "Vary", "Content-Type"}) {
            CAPTURE(name);
            CHECK(head.header(name) == full.header(name));
        }
        // Ranges apply to the identity representation: its bytes, and no Content-Encoding.
        auto range = get(s.strata.port(), s.url, ae("br, gzip") + "Range: bytes=1001-2000\r\n");
        CHECK(range.status == 206);
        CHECK_FALSE(range.hasHeader("Content-Encoding"));
        CHECK(range.header("Content-Range") == "bytes 1001-2000/" + std::to_string(kLength));
        CHECK(range.body == s.full.substr(1001, 1000));
        CHECK(varies(range, "Accept-Encoding"));
        // A client asking for no transformation gets identity too.
        auto nt = get(s.strata.port(), s.url, ae("br") + "Cache-Control: no-transform\r\n");
        CHECK(nt.status == 200);
        CHECK_FALSE(nt.hasHeader("Content-Encoding"));
        CHECK(nt.body == s.full);
        CHECK(s.origin.requestCount(0, s.path) == 1);
    }

    TEST_CASE("never compressed: no-transform, origin Content-Encoding, tiny, unlisted, off") {
        Origin origin;
        Strata strata(compressionConfig(origin));
        struct Case {
            std::string what;
            std::string url;
            std::string encoding;  // what the origin's Content-Encoding was, kept as it is
        };
        const std::string text = "/text/" + std::to_string(kLength);
        const std::vector<Case> cases = {
            {"no-transform", text + "?" + ccParam("max-age=60, no-transform"), ""},
            {"origin coding",
             text + "?" + ccParam("max-age=60") + "&" + hParam("Content-Encoding", "gzip") + "&x=1",
             "gzip"},
            {"below min_bytes", "/text/1000?" + ccParam("max-age=60"), ""},
            {"type not listed", text + "?" + ccParam("max-age=60") + "&type=image/png", ""},
            {"route without compression", "/plain" + text + "?" + ccParam("max-age=60"), ""},
        };
        for (const auto& k : cases) {
            CAPTURE(k.what);
            for (int i = 0; i < 2; ++i) {  // the miss, then the hit from the stored object
                CAPTURE(i);
                auto r = get(strata.port(), k.url, ae("br, gzip"));
                STRATA_CACHE_STATUS(r);
                REQUIRE(r.status == 200);
                CHECK(cacheStatusHas(r, i == 0 ? "stored" : "hit"));
                CHECK(r.header("Content-Encoding") == k.encoding);
                CHECK(r.headerCount("Content-Encoding") == (k.encoding.empty() ? 0u : 1u));
                CHECK_FALSE(varies(r, "Accept-Encoding"));
                const std::size_t n = k.url.starts_with("/text/1000?") ? 1000 : kLength;
                CHECK(r.body == originText(n));  // byte for byte what the origin sent
            }
        }
    }

    TEST_CASE("an origin Vary is merged, an origin Vary: Accept-Encoding keys by class") {
        Origin origin;
        Strata strata(compressionConfig(origin));
        const std::string url =
            "/text/5000?" + ccParam("max-age=60") + "&" + hParam("Vary", "Accept-Language");
        REQUIRE(get(strata.port(), url, ae("br")).status == 200);
        auto hit = get(strata.port(), url, ae("br"));
        CHECK(cacheStatusHas(hit, "hit"));
        CHECK(hit.header("Vary") == "Accept-Language, Accept-Encoding");
        CHECK(hit.headerCount("Vary") == 1);
        CHECK(decoded(hit) == originText(5000));

        // The origin varies by Accept-Encoding itself: spellings of one class share a variant,
        // so the hundred ways clients write "gzip, br" cannot multiply the stored objects.
        const std::string ae_url =
            "/text/6000?" + ccParam("max-age=60") + "&" + hParam("Vary", "Accept-Encoding");
        REQUIRE(get(strata.port(), ae_url, ae("gzip, br")).status == 200);
        for (const char* spelling : {"br, gzip", "GZIP;q=0.8, br", "gzip,br"}) {
            CAPTURE(spelling);
            auto r = get(strata.port(), ae_url, ae(spelling));
            CHECK(cacheStatusHas(r, "hit"));
            CHECK(r.headerCount("Vary") == 1);
            CHECK(decoded(r) == originText(6000));
        }
        CHECK(origin.requestCount(0, "/text/6000") == 1);
        auto gzip_only = get(strata.port(), ae_url, ae("gzip"));  // another class
        CHECK(cacheStatusHas(gzip_only, "fwd=vary-miss"));
        CHECK(origin.requestCount(0, "/text/6000") == 2);
    }

    TEST_CASE("encodings: [gzip] and level 1: only gzip is offered") {
        Stored s("{encodings: [gzip], level: 1}");
        auto br = get(s.strata.port(), s.url, ae("br"));
        CHECK_FALSE(br.hasHeader("Content-Encoding"));
        CHECK(br.body == s.full);
        auto gz = get(s.strata.port(), s.url, ae("br, gzip"));
        CHECK(gz.header("Content-Encoding") == "gzip");
        CHECK(decoded(gz) == s.full);
    }

    TEST_CASE("L2 keeps identity; another instance re-encodes on promotion, once") {
        Origin origin;
        Memcached memcached;
        const std::string l2 =
            "cache:\n  l2:\n    servers: [\"" + memcached.addr() + "\"]\n    timeout: 500ms\n";
        Strata a(compressionConfig(origin, "{}", l2));
        Strata b(compressionConfig(origin, "{}", l2));
        const std::string url =
            "/text/30000?" + ccParam("max-age=60") + "&" + hParam("ETag", "\"l2\"");
        REQUIRE(fetchShared(a.port(), url).status == 200);
        REQUIRE(waitForL2Sets(a.port("admin"), 1));
        // b has never seen it: its first answer comes from L2, in the accepted coding.
        auto first = fetchShared(b.port(), url, ae("br"));
        STRATA_CACHE_STATUS(first);
        CHECK(cacheStatusHas(first, "detail=l2"));
        CHECK(first.header("Content-Encoding") == "br");
        CHECK(first.header("ETag") == "\"l2-br\"");
        CHECK(decoded(first) == originText(30000));
        for (const char* accept : {"gzip", "identity", "br"}) {
            CAPTURE(accept);
            auto r = fetchShared(b.port(), url, ae(accept));
            STRATA_CACHE_STATUS(r);
            CHECK(cacheStatusHas(r, "detail=l1"));  // promoted with its codings
            CHECK(r.header("Content-Encoding") ==
                  (std::string(accept) == "identity" ? "" : accept));
            CHECK(varies(r, "Accept-Encoding"));
            CHECK(decoded(r) == originText(30000));
        }
        CHECK(origin.requestCount(0, "/text/30000") == 1);
    }

    TEST_CASE("with no L1, an L2 hit is identity (never compressed per request)") {
        Origin origin;
        Memcached memcached;
        Strata strata(compressionConfig(origin, "{}",
                                        "cache:\n  l1: {max_bytes: 0}\n  l2:\n    servers: [\"" +
                                            memcached.addr() + "\"]\n    timeout: 500ms\n"));
        const std::string url = "/text/30000?" + ccParam("max-age=60");
        REQUIRE(get(strata.port(), url).status == 200);
        REQUIRE(waitForL2Sets(strata.port("admin"), 1));
        auto r = get(strata.port(), url, ae("br"));
        STRATA_CACHE_STATUS(r);
        CHECK(cacheStatusHas(r, "detail=l2"));
        CHECK_FALSE(r.hasHeader("Content-Encoding"));
        CHECK(varies(r, "Accept-Encoding"));  // stored with the object: the answer still varies
        CHECK(r.body == originText(30000));
    }

    TEST_CASE("uncacheable answers are compressed while streaming, with a weak ETag") {
        Origin origin;
        Strata strata(compressionConfig(origin));
        const std::string url = "/text/" + std::to_string(kLength) + "?" + ccParam("no-store") +
                                "&" + hParam("ETag", "\"s1\"");
        for (const char* coding : {"gzip", "br"}) {
            CAPTURE(coding);
            auto r = get(strata.port(), url, ae(coding));
            STRATA_CACHE_STATUS(r);
            REQUIRE(r.status == 200);
            CHECK_FALSE(cacheStatusHas(r, "stored"));
            CHECK(r.header("Content-Encoding") == coding);
            CHECK_FALSE(r.hasHeader("Content-Length"));  // length unknown until the end
            CHECK(r.chunked);
            // The bytes depend on how the origin's reads fell: not the strong "s1" any more.
            CHECK(r.header("ETag") == "W/\"s1\"");
            CHECK(varies(r, "Accept-Encoding"));
            CHECK(r.body.size() < kLength / 3);
            CHECK(decoded(r) == originText(kLength));
        }
        auto identity = get(strata.port(), url);
        CHECK_FALSE(identity.hasHeader("Content-Encoding"));
        CHECK(identity.header("Content-Length") == std::to_string(kLength));
        CHECK(identity.header("ETag") == "\"s1\"");
        CHECK(varies(identity, "Accept-Encoding"));  // it is still one of the variants
        CHECK(identity.body == originText(kLength));
        // HEAD gets the head GET gets; a no-transform request gets identity.
        auto head = request(strata.port(), "HEAD", url, ae("gzip"));
        CHECK(head.status == 200);
        CHECK(head.header("Content-Encoding") == "gzip");
        CHECK_FALSE(head.hasHeader("Content-Length"));
        CHECK(head.header("ETag") == "W/\"s1\"");
        CHECK(varies(head, "Accept-Encoding"));
        CHECK(head.body.empty());
        auto nt = get(strata.port(), url, ae("gzip") + "Cache-Control: no-transform\r\n");
        CHECK_FALSE(nt.hasHeader("Content-Encoding"));
        CHECK(nt.body == originText(kLength));
        CHECK(origin.requestCount(0, "/text/" + std::to_string(kLength)) == 5);
        const std::uint16_t admin = strata.port("admin");
        CHECK(metric(admin, "strata_compression_bodies_total",
                     {"stage=\"stream\"", "coding=\"gzip\""}) == 1);
        CHECK(metric(admin, "strata_compression_bytes_total",
                     {"stage=\"stream\"", "coding=\"br\"", "direction=\"in\""}) == kLength);
        CHECK(metric(admin, "strata_compression_bodies_total",
                     {"stage=\"store\"", "coding=\"gzip\""}) == 0);
    }

    TEST_CASE("a compressed event stream is flushed per upstream chunk: no event held back") {
        Origin origin;
        Strata strata(compressionConfig(origin, "{types: [text/event-stream]}"));
        RawClient client(strata.port());
        const auto start = std::chrono::steady_clock::now();
        REQUIRE(client.send("GET /events/1500?" + ccParam("no-store") +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + ae("gzip") + "\r\n"));
        std::string wire;
        std::chrono::milliseconds first_event{-1};
        ReadOptions options;
        options.on_body = [&](std::string_view bytes) {
            wire.append(bytes);
            if (first_event.count() < 0 &&
                gunzipPrefix(wire).find("data: first") != std::string::npos) {
                first_event = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start);
            }
        };
        auto r = client.readResponse(options);
        const auto total = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
        STRATA_REQUIRE_RESPONSE(r);
        CHECK(r.header("Content-Encoding") == "gzip");
        CHECK(r.header("Content-Type") == "text/event-stream");
        // The first event was readable long before the origin sent the second (1.5 s later).
        CHECK(first_event.count() >= 0);
        CHECK(first_event < std::chrono::milliseconds(1000));
        CHECK(total >= std::chrono::milliseconds(1400));
        CHECK(gunzip(wire) == "data: first\n\ndata: second\n\n");
    }

    TEST_CASE("HTTP/2 (curl --compressed, h2c): the coded hit has the same head and decodes") {
        Stored s;
        const std::string base = "http://127.0.0.1:" + std::to_string(s.strata.port());
        const std::string out = s.strata.tmp() + "/body";
        for (const char* coding : {"br", "gzip"}) {
            CAPTURE(coding);
            const std::string head =
                runCommand("curl -s --http2-prior-knowledge -D - -o " + out + ".raw -H " +
                           "'Accept-Encoding: " + coding + "' '" + base + s.url + "'");
            CHECK(head.find("HTTP/2 200") == 0);
            CHECK(head.find(std::string("content-encoding: ") + coding + "\r\n") !=
                  std::string::npos);
            CHECK(head.find(std::string("etag: \"v1-") + coding + "\"\r\n") != std::string::npos);
            CHECK(head.find("vary: Accept-Encoding\r\n") != std::string::npos);
            // curl decodes what it asked for; the result is the origin's body.
            runCommand("curl -s --http2-prior-knowledge --compressed -H 'Accept-Encoding: " +
                       std::string(coding) + "' -o " + out + " '" + base + s.url + "'");
            std::ifstream f(out, std::ios::binary);
            std::stringstream body;
            body << f.rdbuf();
            CHECK(body.str() == s.full);
        }
        CHECK(s.origin.requestCount(0, s.path) == 1);
    }
}
