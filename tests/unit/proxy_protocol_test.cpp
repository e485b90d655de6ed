#include "strata/net/proxy_protocol.h"

#include <string>
#include <string_view>

#include <doctest/doctest.h>

#include "strata/config/config.h"

using namespace strata;
using namespace strata::net;
namespace pp = strata::net::proxy_protocol;

namespace {

std::string bin(std::initializer_list<int> bytes) {
    std::string out;
    for (int b : bytes) {
        out += static_cast<char>(b);
    }
    return out;
}

const std::string kSig =
    bin({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a});

// A v2 header: signature, version/command, family/transport, the given body (length filled in).
std::string v2(int version_command, int family_transport, const std::string& body) {
    std::string out = kSig;
    out += static_cast<char>(version_command);
    out += static_cast<char>(family_transport);
    out += static_cast<char>((body.size() >> 8) & 0xff);
    out += static_cast<char>(body.size() & 0xff);
    return out + body;
}

// 192.0.2.1:56324 -> 198.51.100.7:443
const std::string kInetBlock = bin({192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb});
// 2001:db8::1:56324 -> 2001:db8::2:443
std::string inet6Block() {
    std::string out = bin({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    out += bin({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2});
    out += bin({0xdc, 0x04, 0x01, 0xbb});
    return out;
}

SocketAddress addr(const std::string& host, std::uint16_t port) {
    config::Endpoint e;
    e.host = host;
    e.port = port;
    auto r = SocketAddress::fromEndpoint(e);
    REQUIRE(r.ok());
    return r.value();
}

// A NOOP TLV that makes an INET6 header kMaxHeaderBytes + `over` long.
std::string fillerTlv(std::size_t over) {
    const std::size_t value = pp::kMaxHeaderBytes + over - pp::kV2PreambleBytes - 36 - 3;
    return bin({0x04, static_cast<int>(value >> 8), static_cast<int>(value & 0xff)}) +
           std::string(value, 'x');
}

struct Valid {
    std::string name;
    std::string bytes;
    int version;
    bool local;
    const char* source;  // toString(), "" when local
    const char* destination;
};

std::vector<Valid> validCases() {
    return {
        {"v1 TCP4", "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n", 1, false, "192.0.2.1:56324",
         "198.51.100.7:443"},
        {"v1 TCP6", "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n", 1, false,
         "[2001:db8::1]:56324", "[2001:db8::2]:443"},
        {"v1 longest TCP6 (107 bytes)",
         "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
         1, false, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
        {"v1 UNKNOWN", "PROXY UNKNOWN\r\n", 1, true, "", ""},
        {"v1 UNKNOWN with ignored fields", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", 1, true, "",
         ""},
        {"v1 port 0", "PROXY TCP4 10.0.0.1 10.0.0.2 0 0\r\n", 1, false, "10.0.0.1:0", "10.0.0.2:0"},
        {"v2 PROXY INET", v2(0x21, 0x11, kInetBlock), 2, false, "192.0.2.1:56324",
         "198.51.100.7:443"},
        {"v2 PROXY INET6", v2(0x21, 0x21, inet6Block()), 2, false, "[2001:db8::1]:56324",
         "[2001:db8::2]:443"},
        {"v2 LOCAL, no addresses", v2(0x20, 0x00, ""), 2, true, "", ""},
        {"v2 LOCAL with an address block and junk family", v2(0x20, 0x77, kInetBlock), 2, true, "",
         ""},
        {"v2 PROXY UNSPEC", v2(0x21, 0x00, ""), 2, true, "", ""},
        {"v2 PROXY UNIX", v2(0x21, 0x31, std::string(216, '\0')), 2, true, "", ""},
        {"v2 INET with TLVs (ALPN, authority, NOOP)",
         v2(0x21, 0x11,
            kInetBlock + bin({0x01, 0x00, 0x02, 'h', '2'}) +
                bin({0x02, 0x00, 0x03, 'a', '.', 'b'}) + bin({0x04, 0x00, 0x00})),
         2, false, "192.0.2.1:56324", "198.51.100.7:443"},
        {"v2 INET with a zero-length TLV at the end", v2(0x21, 0x11, kInetBlock + bin({5, 0, 0})),
         2, false, "192.0.2.1:56324", "198.51.100.7:443"},
        {"v2 INET6 with the largest allowed TLV", v2(0x21, 0x21, inet6Block() + fillerTlv(0)), 2,
         false, "[2001:db8::1]:56324", "[2001:db8::2]:443"},
    };
}

struct Invalid {
    std::string name;
    std::string bytes;
};

std::vector<Invalid> invalidCases() {
    return {
        {"HTTP request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
        {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
        {"TLS ClientHello", bin({0x16, 0x03, 0x01, 0x00, 0xa5, 0x01})},
        {"lower-case proxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
        {"v1 unknown protocol", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"},
        {"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"},
        {"v1 LF inside the line, then a CR (fuzzer)", "PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r"},
        {"v1 CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"},
        {"v1 double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"},
        {"v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"},
        {"v1 missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"},
        {"v1 extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"},
        {"v1 port too large", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"},
        {"v1 port not a number", "PROXY TCP4 1.2.3.4 5.6.7.8 1x 2\r\n"},
        {"v1 negative port", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"},
        {"v1 IPv6 address under TCP4", "PROXY TCP4 ::1 ::2 1 2\r\n"},
        {"v1 IPv4 address under TCP6", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"},
        {"v1 bad IPv4", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"},
        {"v1 host name", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n"},
        {"v1 no protocol", "PROXY \r\n"},
        {"v1 longer than 107 bytes",
         "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n"},
        {"v1 no CRLF within 107 bytes", "PROXY UNKNOWN " + std::string(200, 'a')},
        {"v2 bad signature", bin({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
                                  0x0b, 0x21, 0x11, 0x00, 0x0c}) +
                                 kInetBlock},
        {"v2 version 1", v2(0x11, 0x11, kInetBlock)},
        {"v2 version 3", v2(0x31, 0x11, kInetBlock)},
        {"v2 unknown command", v2(0x22, 0x11, kInetBlock)},
        {"v2 unknown family", v2(0x21, 0x41, kInetBlock)},
        {"v2 INET datagram", v2(0x21, 0x12, kInetBlock)},
        {"v2 INET unspecified transport", v2(0x21, 0x10, kInetBlock)},
        {"v2 INET block too short", v2(0x21, 0x11, kInetBlock.substr(0, 11))},
        {"v2 INET6 with an INET-sized block", v2(0x21, 0x21, kInetBlock)},
        {"v2 UNIX block too short", v2(0x21, 0x31, std::string(100, '\0'))},
        {"v2 truncated TLV header", v2(0x21, 0x11, kInetBlock + bin({0x01, 0x00}))},
        {"v2 TLV overruns the header", v2(0x21, 0x11, kInetBlock + bin({0x01, 0x00, 0x05, 'a'}))},
        {"v2 oversized by one byte", v2(0x21, 0x21, inet6Block() + fillerTlv(1))},
        {"v2 length 65535", kSig + bin({0x21, 0x11, 0xff, 0xff})},
    };
}

}  // namespace

TEST_SUITE("net/proxy_protocol") {
    TEST_CASE("parses the spec's valid headers, and a request behind one is not consumed") {
        for (const auto& c : validCases()) {
            CAPTURE(c.name);
            const std::string input = c.bytes + "GET / HTTP/1.1\r\n";
            const auto r = pp::parse(input);
            REQUIRE(r.status == pp::Status::Done);
            CHECK(r.consumed == c.bytes.size());
            CHECK(r.header.version == c.version);
            CHECK(r.header.local == c.local);
            if (!c.local) {
                CHECK(r.header.source.toString() == c.source);
                CHECK(r.header.destination.toString() == c.destination);
            }
        }
    }

    TEST_CASE("a valid header truncated at every byte needs more, never errs or overreads") {
        for (const auto& c : validCases()) {
            CAPTURE(c.name);
            for (std::size_t n = 0; n < c.bytes.size(); ++n) {
                CAPTURE(n);
                // A copy of exactly n bytes: under ASan, reading past it is caught.
                const std::string prefix = c.bytes.substr(0, n);
                const auto r = pp::parse(prefix);
                REQUIRE(r.status == pp::Status::NeedMore);
            }
        }
    }

    TEST_CASE("rejects malformed, oversized and foreign headers") {
        for (const auto& c : invalidCases()) {
            CAPTURE(c.name);
            const auto r = pp::parse(c.bytes);
            CHECK(r.status == pp::Status::Error);
            CHECK(std::string_view(r.error).size() > 0);
        }
    }

    TEST_CASE("rejects early: no prefix of an invalid header waits for more than it can hold") {
        for (const auto& c : invalidCases()) {
            CAPTURE(c.name);
            bool failed = false;
            for (std::size_t n = 1; n <= c.bytes.size() && !failed; ++n) {
                const std::string prefix = c.bytes.substr(0, n);
                const auto r = pp::parse(prefix);
                REQUIRE(r.status != pp::Status::Done);
                failed = r.status == pp::Status::Error;
            }
            CHECK(failed);
        }
    }

    TEST_CASE("an HTTP or TLS client without a header is refused at its first byte") {
        CHECK(pp::parse("G").status == pp::Status::Error);
        CHECK(pp::parse(bin({0x16})).status == pp::Status::Error);
        CHECK(pp::parse("PRO").status == pp::Status::NeedMore);
        CHECK(pp::parse("PRI").status == pp::Status::Error);
    }

    TEST_CASE("never waits past the size bound") {
        // An endless v1 line and a v2 header announcing more than the bound.
        CHECK(pp::parse("PROXY " + std::string(pp::kMaxV1Bytes, 'a')).status == pp::Status::Error);
        CHECK(pp::parse(kSig + bin({0x21, 0x11, 0x10, 0x00})).status == pp::Status::Error);
    }

    TEST_CASE("encodes v1 and v2 headers the parser reads back") {
        struct Case {
            const char* source_host;
            std::uint16_t source_port;
            const char* destination_host;
            std::uint16_t destination_port;
            const char* v1;
            const char* source;
            const char* destination;
        };
        const Case cases[] = {
            {"192.0.2.1", 56324, "198.51.100.7", 443,
             "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n", "192.0.2.1:56324",
             "198.51.100.7:443"},
            {"2001:db8::1", 1, "2001:db8::2", 65535,
             "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", "[2001:db8::1]:1",
             "[2001:db8::2]:65535"},
            {"2001:db8::1", 1, "10.0.0.1", 80, "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 80\r\n",
             "[2001:db8::1]:1", "[::ffff:10.0.0.1]:80"},
        };
        for (const auto& c : cases) {
            CAPTURE(c.v1);
            const auto source = addr(c.source_host, c.source_port);
            const auto destination = addr(c.destination_host, c.destination_port);
            const std::string one = pp::encodeV1(source, destination);
            CHECK(one == c.v1);
            const std::string two = pp::encodeV2(source, destination);
            for (const std::string* encoded : {&one, &two}) {
                const auto r = pp::parse(*encoded);
                REQUIRE(r.status == pp::Status::Done);
                CHECK(r.consumed == encoded->size());
                CHECK_FALSE(r.header.local);
                CHECK(r.header.source.toString() == c.source);
                CHECK(r.header.destination.toString() == c.destination);
            }
        }
        CHECK(pp::encodeV2(addr("192.0.2.1", 56324), addr("198.51.100.7", 443)) ==
              v2(0x21, 0x11, kInetBlock));
    }

    TEST_CASE("an address that is not IP encodes as UNKNOWN / LOCAL") {
        SocketAddress none;
        const auto ip = addr("10.0.0.1", 80);
        CHECK(pp::encodeV1(none, ip) == "PROXY UNKNOWN\r\n");
        const auto r = pp::parse(pp::encodeV2(none, ip));
        REQUIRE(r.status == pp::Status::Done);
        CHECK(r.header.local);
        CHECK(pp::encodeV2(none, ip) == v2(0x20, 0x00, ""));
    }
}
