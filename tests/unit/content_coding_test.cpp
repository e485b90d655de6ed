// Unit tests for http/content_coding: Accept-Encoding negotiation, variant classes, encoded
// ETags, type lists, and the gzip / br codecs (whole body and streaming) round-tripping.
#include "strata/http/content_coding.h"

#include <brotli/decode.h>
#include <string>
#include <string_view>
#include <vector>
#include <zlib.h>

#include <doctest/doctest.h>

using namespace strata::http;

namespace {

constexpr Coding kBoth[] = {Coding::Br, Coding::Gzip};
constexpr Coding kGzipFirst[] = {Coding::Gzip, Coding::Br};
constexpr Coding kGzipOnly[] = {Coding::Gzip};

// Compressible text with some variety, `n` bytes.
std::string sampleText(std::size_t n) {
    std::string out;
    unsigned x = 12345;
    while (out.size() < n) {
        x = x * 1103515245u + 12345u;
        out += "<li class=\"item-" + std::to_string((x >> 16) % 97) + "\">entry</li>\n";
    }
    out.resize(n);
    return out;
}

// What a client decodes from the first bytes of a stream that has not ended yet.
std::string decodePrefix(Coding coding, std::string_view data) {
    std::string out;
    char buf[65536];
    if (coding == Coding::Gzip) {
        z_stream z{};
        REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
        z.avail_in = static_cast<uInt>(data.size());
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
    BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
    std::size_t avail_in = data.size();
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(data.data());
    BrotliDecoderResult rc;
    do {
        std::size_t avail_out = sizeof(buf);
        auto* next_out = reinterpret_cast<std::uint8_t*>(buf);
        rc = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, nullptr);
        out.append(buf, sizeof(buf) - avail_out);
    } while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT);
    BrotliDecoderDestroyInstance(s);
    return out;
}

}  // namespace

TEST_SUITE("http/content_coding") {
    TEST_CASE("qualities follow RFC 9110 12.5.3") {
        struct Row {
            const char* value;
            bool present;
            int gzip, br, identity;
        };
        const Row rows[] = {
            {"", false, 0, 0, 1000},
            {"", true, 0, 0, 1000},
            {"gzip", true, 1000, 0, 1000},
            {"GZIP, Br", true, 1000, 1000, 1000},
            {"x-gzip", true, 1000, 0, 1000},
            {"gzip;q=0.5, br;q=0.25", true, 500, 250, 1000},
            {"gzip ; q=0.5", true, 500, 0, 1000},
            {"gzip;Q=1.000", true, 1000, 0, 1000},
            {"gzip;q=0, br", true, 0, 1000, 1000},
            {"*", true, 1000, 1000, 1000},
            {"*;q=0.3, gzip", true, 1000, 300, 1000},
            {"*;q=0", true, 0, 0, 0},
            {"*;q=0, identity", true, 0, 0, 1000},
            {"identity;q=0, gzip", true, 1000, 0, 0},
            {"gzip;q=1.5", true, 0, 0, 1000},  // invalid qvalue: element ignored
            {"gzip;q=0.1234, br", true, 0, 1000, 1000},
            {"gzip;q=, br", true, 0, 1000, 1000},
            {"gzip;level=1", true, 0, 0, 1000},       // parameter without '=' value is fine...
            {"gzip, gzip;q=0", true, 1000, 0, 1000},  // first one wins
            {" , ,gzip,", true, 1000, 0, 1000},
        };
        for (const Row& r : rows) {
            CAPTURE(r.value);
            AcceptEncoding ae = parseAcceptEncoding(r.value, r.present);
            if (std::string_view(r.value) == "gzip;level=1") {
                // "level=1" is a parameter with a value: not q, so gzip keeps q=1.
                CHECK(ae.quality(Coding::Gzip) == 1000);
                continue;
            }
            CHECK(ae.quality(Coding::Gzip) == r.gzip);
            CHECK(ae.quality(Coding::Br) == r.br);
            CHECK(ae.quality(Coding::Identity) == r.identity);
        }
    }

    TEST_CASE("chooseCoding picks the most wanted available coding") {
        struct Row {
            const char* value;
            bool present;
            std::span<const Coding> available;
            Coding want;
        };
        const Row rows[] = {
            {"", false, kBoth, Coding::Identity},
            {"", true, kBoth, Coding::Identity},
            {"gzip", true, kBoth, Coding::Gzip},
            {"br", true, kBoth, Coding::Br},
            {"gzip, br", true, kBoth, Coding::Br},  // tie: the route's order
            {"gzip, br", true, kGzipFirst, Coding::Gzip},
            {"gzip;q=0, br", true, kBoth, Coding::Br},
            {"gzip, br;q=0", true, kBoth, Coding::Gzip},
            {"br;q=0.5, gzip", true, kBoth, Coding::Gzip},  // the client's preference first
            {"br", true, kGzipOnly, Coding::Identity},      // nothing acceptable is stored
            {"gzip;q=0.5, identity", true, kBoth, Coding::Identity},
            {"gzip, identity", true, kBoth, Coding::Gzip},
            {"*", true, kBoth, Coding::Br},
            {"*;q=0", true, kBoth, Coding::Identity},  // refuses all: identity, not 406
            {"deflate, zstd", true, kBoth, Coding::Identity},
            {"identity;q=0, gzip", true, kBoth, Coding::Gzip},
            {"gzip", true, {}, Coding::Identity},
        };
        for (const Row& r : rows) {
            CAPTURE(r.value);
            CHECK(chooseCoding(parseAcceptEncoding(r.value, r.present), r.available) == r.want);
        }
    }

    TEST_CASE("Accept-Encoding normalises into at most 16 variant classes") {
        struct Row {
            const char* value;
            bool present;
            const char* key;
        };
        const Row rows[] = {
            {"", false, "ae:0"},
            {"", true, "ae:0"},
            {"identity", true, "ae:0"},
            {"gzip", true, "ae:1"},
            {"x-gzip;q=0.9", true, "ae:1"},
            {"br", true, "ae:2"},
            {"gzip, deflate, br", true, "ae:7"},
            {"br;q=1.0, gzip;q=0.8, *;q=0.1", true, "ae:f"},
            {"gzip, deflate, br, zstd", true, "ae:f"},
            {"gzip;q=0, br", true, "ae:2"},
            {"*;q=0", true, "ae:0"},
            {"compress, sdch", true, "ae:0"},
        };
        for (const Row& r : rows) {
            CAPTURE(r.value);
            CHECK(acceptClassKey(r.value, r.present) == r.key);
        }
        // Spellings differing only in order, case, spaces and preference share a class.
        CHECK(acceptClassKey("gzip, br", true) == acceptClassKey("BR;q=0.5 ,GZIP", true));
    }

    TEST_CASE("encoded ETags are distinct per coding and map back") {
        struct Row {
            const char* identity;
            Coding coding;
            const char* encoded;
        };
        const Row rows[] = {
            {"\"abc\"", Coding::Gzip, "\"abc-gzip\""},
            {"\"abc\"", Coding::Br, "\"abc-br\""},
            {"\"abc\"", Coding::Identity, "\"abc\""},
            {"\"\"", Coding::Br, "\"-br\""},
            {"W/\"abc\"", Coding::Br, "W/\"abc\""},  // weak: equivalent representations share it
            {"abc", Coding::Br, ""},                 // not an entity-tag: dropped
            {"\"a\"b\"", Coding::Gzip, ""},
            {"", Coding::Gzip, ""},
        };
        for (const Row& r : rows) {
            CAPTURE(r.identity);
            CHECK(encodedEtag(r.identity, r.coding) == r.encoded);
        }
        CHECK(identityEtag("\"abc-br\"") == "\"abc\"");
        CHECK(identityEtag("\"abc-gzip\"") == "\"abc\"");
        CHECK(identityEtag(" \"x-y-gzip\" ") == "\"x-y\"");
        CHECK_FALSE(identityEtag("\"abc\""));
        CHECK_FALSE(identityEtag("\"-br\""));  // nothing left: not one of ours
        CHECK_FALSE(identityEtag("W/\"abc-br\""));
        CHECK_FALSE(identityEtag("\"abc-zstd\""));
    }

    TEST_CASE("content types match by media type or top-level wildcard") {
        const std::vector<std::string> types{"text/html", "application/json", "image/svg+xml",
                                             "text/*"};
        CHECK(typeListed("text/html; charset=utf-8", types));
        CHECK(typeListed("Application/JSON", types));
        CHECK(typeListed("text/csv", types));
        CHECK(typeListed(" image/svg+xml ", types));
        CHECK_FALSE(typeListed("image/png", types));
        CHECK_FALSE(typeListed("application/jsonx", types));
        CHECK_FALSE(typeListed("", types));
        CHECK_FALSE(typeListed("texthtml", types));
    }

    TEST_CASE("whole bodies round-trip through gzip and br") {
        for (Coding c : {Coding::Gzip, Coding::Br}) {
            CAPTURE(codingToken(c));
            for (std::size_t n :
                 {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{300000}}) {
                CAPTURE(n);
                const std::string body = sampleText(n);
                auto packed = compressBody(c, body, kDefaultLevel);
                REQUIRE(packed);
                if (n >= 1000) {
                    CHECK(packed->size() < body.size() / 2);
                }
                auto unpacked = decompressBody(c, *packed, 1 << 20);
                REQUIRE(unpacked);
                CHECK(*unpacked == body);
            }
        }
        // gzip's magic, so any client's gunzip reads it.
        auto gz = compressBody(Coding::Gzip, "hello", 6);
        REQUIRE(gz);
        CHECK(static_cast<unsigned char>((*gz)[0]) == 0x1f);
        CHECK(static_cast<unsigned char>((*gz)[1]) == 0x8b);
    }

    TEST_CASE("decoding refuses garbage, truncation and bombs") {
        const std::string body = sampleText(100000);
        for (Coding c : {Coding::Gzip, Coding::Br}) {
            CAPTURE(codingToken(c));
            auto packed = compressBody(c, body, 6);
            REQUIRE(packed);
            CHECK_FALSE(decompressBody(c, packed->substr(0, packed->size() / 2), 1 << 20));
            CHECK_FALSE(decompressBody(c, *packed, 1000));  // decoded size over the limit
            CHECK_FALSE(decompressBody(c, "definitely not compressed", 1 << 20));
        }
    }

    TEST_CASE("streaming: every flush is decodable at once, finish ends the stream") {
        for (Coding c : {Coding::Gzip, Coding::Br}) {
            CAPTURE(codingToken(c));
            StreamEncoderPtr enc = makeStreamEncoder(c, kDefaultLevel);
            REQUIRE(enc);
            std::string wire;
            std::string expected;
            for (int event = 0; event < 5; ++event) {
                const std::string chunk = "data: event " + std::to_string(event) + "\n\n";
                expected += chunk;
                REQUIRE(enc->write(chunk, wire));
                REQUIRE(enc->flush(wire));
                // What the client has so far shows everything written: nothing held back
                // (a server-sent event reaches the page when it is sent).
                CHECK(decodePrefix(c, wire) == expected);
            }
            const std::string big = sampleText(200000);
            expected += big;
            REQUIRE(enc->write(big, wire));
            REQUIRE(enc->finish(wire));
            auto decoded = decompressBody(c, wire, 1 << 20);
            REQUIRE(decoded);
            CHECK(*decoded == expected);
        }
        CHECK(makeStreamEncoder(Coding::Identity, 6) == nullptr);
    }

    TEST_CASE("coding tokens") {
        CHECK(parseCodingToken("gzip") == Coding::Gzip);
        CHECK(parseCodingToken("X-GZIP") == Coding::Gzip);
        CHECK(parseCodingToken("br") == Coding::Br);
        CHECK_FALSE(parseCodingToken("identity"));
        CHECK_FALSE(parseCodingToken("zstd"));
        CHECK(codingToken(Coding::Br) == "br");
    }
}
