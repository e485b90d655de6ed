// Byte ranges answered from a stored object (RFC 9110 14): one range, suffix and open-ended
// forms, multipart/byteranges parsed back and compared byte for byte with the origin's body,
// merging, 416, If-Range, HEAD, a resumed curl download, and one range over HTTP/2. Offsets are
// odd on purpose: /bytes/N repeats every 64 bytes, so an aligned off-by-64 would pass unseen.
#include <array>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>
#include <tuple>

#include "cache_support.h"

using namespace strata::test;

namespace {

constexpr std::size_t kLength = 10000;

struct Part {
    std::string content_type;
    std::string content_range;
    std::string body;
};

// Splits a multipart/byteranges body on `boundary`; false when the framing is wrong.
bool parseMultipart(const std::string& body, const std::string& boundary, std::vector<Part>& out) {
    const std::string delimiter = "--" + boundary;
    if (!body.starts_with(delimiter + "\r\n")) {
        return false;
    }
    std::size_t at = delimiter.size() + 2;
    while (true) {
        const std::size_t head_end = body.find("\r\n\r\n", at);
        if (head_end == std::string::npos) {
            return false;
        }
        Part part;
        std::string_view head(body.data() + at, head_end - at);
        while (!head.empty()) {
            const std::size_t eol = head.find("\r\n");
            std::string_view line = head.substr(0, eol);
            const std::size_t colon = line.find(':');
            if (colon == std::string_view::npos) {
                return false;
            }
            std::string name(line.substr(0, colon));
            std::string value(strata::trimOws(line.substr(colon + 1)));
            if (name == "Content-Type") {
                part.content_type = value;
            } else if (name == "Content-Range") {
                part.content_range = value;
            }
            head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
        }
        const std::size_t data = head_end + 4;
        const std::size_t next = body.find("\r\n" + delimiter, data);
        if (next == std::string::npos) {
            return false;
        }
        part.body = body.substr(data, next - data);
        out.push_back(std::move(part));
        at = next + 2 + delimiter.size();
        if (body.compare(at, 4, "--\r\n") == 0) {
            return at + 4 == body.size();
        }
        if (body.compare(at, 2, "\r\n") != 0) {
            return false;
        }
        at += 2;
    }
}

// A cached /bytes object with a strong ETag: the miss that stores it returns the full body.
struct Stored {
    Origin origin;
    Strata strata;
    std::string url;
    std::string full;
    std::string type;

    Stored()
        : strata(cacheConfig(origin.serversYaml())),
          url("/bytes/" + std::to_string(kLength) + "?" + ccParam("max-age=60") + "&" +
              hParam("ETag", "\"v1\"")) {
        auto miss = get(strata.port(), url);
        REQUIRE(miss.status == 200);
        REQUIRE(cacheStatusHas(miss, "stored"));
        REQUIRE(miss.body.size() == kLength);
        full = miss.body;
        type = miss.header("Content-Type");
        REQUIRE_FALSE(type.empty());
    }

    // The Host get() sends: it is part of the cache key.
    std::string host() const { return "Host: 127.0.0.1:" + std::to_string(strata.port()) + "\r\n"; }

    Response range(const std::string& spec, const std::string& extra = "") {
        auto r = get(strata.port(), url, "Range: " + spec + "\r\n" + extra);
        CHECK(cacheStatusHas(r, "hit"));
        return r;
    }
};

}  // namespace

TEST_SUITE("e2e/cache") {
    TEST_CASE("a full hit advertises Accept-Ranges: bytes") {
        Stored s;
        auto r = get(s.strata.port(), s.url);
        CHECK(r.status == 200);
        CHECK(r.header("Accept-Ranges") == "bytes");
        CHECK(r.body == s.full);
    }

    TEST_CASE("one range, a suffix range and an open-ended range: 206 with Content-Range") {
        Stored s;
        struct Case {
            std::string spec;
            std::size_t first;
            std::size_t last;
        };
        const std::vector<Case> cases = {
            {"bytes=101-1100", 101, 1100},
            {"bytes=-777", kLength - 777, kLength - 1},
            {"bytes=9001-", 9001, kLength - 1},
            {"bytes=9990-20000", 9990, kLength - 1},  // the end is clamped
            {"bytes=0-0", 0, 0},
        };
        for (const auto& k : cases) {
            CAPTURE(k.spec);
            auto r = s.range(k.spec);
            STRATA_CACHE_STATUS(r);
            REQUIRE(r.status == 206);
            CHECK(r.header("Content-Range") == "bytes " + std::to_string(k.first) + "-" +
                                                   std::to_string(k.last) + "/" +
                                                   std::to_string(kLength));
            CHECK(r.header("Content-Length") == std::to_string(k.last - k.first + 1));
            CHECK(r.header("Content-Type") == s.type);
            CHECK(r.hasHeader("Age"));
            CHECK(r.header("Via") == "1.1 strata");
            CHECK(r.body == s.full.substr(k.first, k.last - k.first + 1));
        }
        CHECK(s.origin.requestCount(0, "/bytes/" + std::to_string(kLength)) == 1);
    }

    TEST_CASE("several ranges: multipart/byteranges, byte-exact; overlapping ones merged") {
        Stored s;
        auto r = s.range("bytes=5001-5100, 13-99,-17");
        REQUIRE(r.status == 206);
        const std::string type = r.header("Content-Type");
        const std::string prefix = "multipart/byteranges; boundary=";
        REQUIRE(type.starts_with(prefix));
        CHECK_FALSE(r.hasHeader("Content-Range"));
        CHECK(r.header("Content-Length") == std::to_string(r.body.size()));
        std::vector<Part> parts;
        REQUIRE(parseMultipart(r.body, type.substr(prefix.size()), parts));
        REQUIRE(parts.size() == 3);
        // Sorted by offset, each part with the stored Content-Type.
        const std::array<std::pair<std::size_t, std::size_t>, 3> want = {
            {{13, 99}, {5001, 5100}, {kLength - 17, kLength - 1}}};
        for (std::size_t i = 0; i < parts.size(); ++i) {
            CAPTURE(i);
            const auto [first, last] = want[i];
            CHECK(parts[i].content_type == s.type);
            CHECK(parts[i].content_range == "bytes " + std::to_string(first) + "-" +
                                                std::to_string(last) + "/" +
                                                std::to_string(kLength));
            CHECK(parts[i].body == s.full.substr(first, last - first + 1));
        }

        // Overlapping and adjacent ranges become one: a plain 206, not multipart.
        auto merged = s.range("bytes=201-300,250-400,401-555");
        REQUIRE(merged.status == 206);
        CHECK(merged.header("Content-Range") == "bytes 201-555/" + std::to_string(kLength));
        CHECK(merged.body == s.full.substr(201, 355));
    }

    TEST_CASE("an unsatisfiable range: 416 with Content-Range: bytes */LENGTH") {
        Stored s;
        auto r = s.range("bytes=10000-10010");
        CHECK(r.status == 416);
        CHECK(r.header("Content-Range") == "bytes */" + std::to_string(kLength));
        CHECK(r.header("Content-Length") == "0");
        CHECK(r.body.empty());
        // A malformed Range is ignored: the whole object.
        auto bad = s.range("bytes=9-3");
        CHECK(bad.status == 200);
        CHECK(bad.body == s.full);
    }

    TEST_CASE("If-Range: the stored strong ETag gives the range, another one the whole object") {
        Stored s;
        auto match = s.range("bytes=11-20", "If-Range: \"v1\"\r\n");
        CHECK(match.status == 206);
        CHECK(match.body == s.full.substr(11, 10));
        auto other = s.range("bytes=11-20", "If-Range: \"v2\"\r\n");
        CHECK(other.status == 200);
        CHECK(other.body == s.full);
        auto weak = s.range("bytes=11-20", "If-Range: W/\"v1\"\r\n");
        CHECK(weak.status == 200);
    }

    TEST_CASE("HEAD and other methods ignore Range") {
        Stored s;
        RawClient c(s.strata.port());
        REQUIRE(c.send("HEAD " + s.url + " HTTP/1.1\r\n" + s.host() + "Range: bytes=0-9\r\n\r\n"));
        ReadOptions head_only;
        head_only.head = true;
        auto h = c.readResponse(head_only);
        STRATA_REQUIRE_RESPONSE(h);
        CHECK(h.status == 200);
        CHECK(h.header("Content-Length") == std::to_string(kLength));
        CHECK(h.header("Accept-Ranges") == "bytes");
        CHECK_FALSE(h.hasHeader("Content-Range"));
        CHECK(cacheStatusHas(h, "hit"));
        // The connection is still framed correctly afterwards.
        REQUIRE(c.send("GET " + s.url + " HTTP/1.1\r\n" + s.host() + "Range: bytes=3-5\r\n\r\n"));
        auto next = c.readResponse();
        STRATA_REQUIRE_RESPONSE(next);
        CHECK(next.status == 206);
        CHECK(next.body == s.full.substr(3, 3));
    }

    TEST_CASE("curl -C - resumes a partial download to the full body") {
        Stored s;
        TempDir dir;
        const std::string file = dir.path().string() + "/download";
        {
            std::ofstream part(file, std::ios::binary);
            part << s.full.substr(0, 4321);
        }
        const std::string code =
            runCommand("curl -s -C - -o " + file + " -w '%{http_code}' 'http://127.0.0.1:" +
                       std::to_string(s.strata.port()) + s.url + "'");
        CHECK(code == "206");
        const std::string got = readFile(file);
        CHECK(got.size() == kLength);
        CHECK(got == s.full);
    }

    TEST_CASE("one range over HTTP/2 (h2c prior knowledge)") {
        Origin origin;
        const std::string yaml = cacheConfig(origin.serversYaml());
        // The same configuration, its listener speaking h2c as well.
        std::string h2 = yaml;
        const std::string listener = "  - {name: http, bind: \"127.0.0.1:0\"}\n";
        h2.replace(h2.find(listener), listener.size(),
                   "  - {name: http, bind: \"127.0.0.1:0\", protocols: [h2, http/1.1]}\n");
        Strata strata(h2);
        const std::string url = "http://127.0.0.1:" + std::to_string(strata.port()) + "/bytes/" +
                                std::to_string(kLength) + "?" + ccParam("max-age=60");
        const std::string full = runCommand("curl -s --http2-prior-knowledge '" + url + "'");
        REQUIRE(full.size() == kLength);
        const std::string out =
            runCommand("curl -s --http2-prior-knowledge -D - -r 1234-5678 '" + url + "'");
        const std::size_t end = out.find("\r\n\r\n");
        REQUIRE(end != std::string::npos);
        const std::string head = out.substr(0, end);
        INFO(head);
        CHECK(head.starts_with("HTTP/2 206"));
        CHECK(head.find("content-range: bytes 1234-5678/" + std::to_string(kLength)) !=
              std::string::npos);
        CHECK(head.find("content-length: 4445") != std::string::npos);
        CHECK(out.substr(end + 4) == full.substr(1234, 4445));
        CHECK(origin.requestCount(0, "/bytes/" + std::to_string(kLength)) == 1);
    }

    TEST_CASE("too large to cache: the first range gets the whole 200, later ones a relayed 206") {
        Origin origin;
        // cache.max_object_bytes below the object: it is never stored.
        const std::string config = cacheConfig(origin.serversYaml());
        const std::string small =
            std::regex_replace(config, std::regex("cache: \\{enabled: true"),
                               "cache: {enabled: true, max_object_bytes: 4KiB");
        REQUIRE(small != config);
        Strata strata(small);
        const std::string url = "/bytes/" + std::to_string(kLength) + "?ranges=1";
        std::string full(kLength, '\0');
        originPattern(0, full);
        // The first request does not know the size: it asks for the whole object and the client
        // gets it (RFC 9110 14.2 allows ignoring Range), not stored.
        Response first = get(strata.port(), url, "Range: bytes=1234-5678\r\n");
        STRATA_CACHE_STATUS(first);
        CHECK(first.status == 200);
        CHECK(first.body == full);
        CHECK_FALSE(cacheStatusHas(first, "stored"));
        // From then on the URL passes, Range and all: the origin's 206 is relayed.
        for (const auto& [range, from, to] :
             std::vector<std::tuple<std::string, std::size_t, std::size_t>>{
                 {"bytes=1234-5678", 1234, 5678}, {"bytes=9001-", 9001, kLength - 1}}) {
            INFO(range);
            Response r = get(strata.port(), url, "Range: " + range + "\r\n");
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 206);
            CHECK(cacheStatusHas(r, "detail=hit-for-pass"));
            CHECK(r.header("Content-Range") == "bytes " + std::to_string(from) + "-" +
                                                   std::to_string(to) + "/" +
                                                   std::to_string(kLength));
            CHECK(r.body == full.substr(from, to - from + 1));
        }
        // A request without Range still gets the whole object.
        Response whole = get(strata.port(), url);
        CHECK(whole.status == 200);
        CHECK(whole.body == full);
        CHECK(origin.requestCount(0, "/bytes/" + std::to_string(kLength)) == 4);
    }
}
