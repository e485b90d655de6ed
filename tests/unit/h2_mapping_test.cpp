// Unit tests for the HTTP/2 header mapping (RFC 9113 section 8): every acceptance and refusal
// rule of H2RequestBuilder, the equality of its heads with the HTTP/1 parser's for the same
// request, and h2ResponseFields() against appendForwardedFields().
#include "strata/http/h2_mapping.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "strata/common/strings.h"
#include "strata/http/message.h"
#include "strata/http/parser.h"
#include "strata/http/response_out.h"

using namespace strata::http;
using namespace std::string_literals;
using Error = H2RequestBuilder::Error;

namespace {

using Block = std::vector<std::pair<std::string, std::string>>;

struct Built {
    bool ok = false;
    Error error = Error::None;
    std::string detail;
    RequestHead head;
};

Built build(const Block& block, bool end_stream = true, std::size_t max_bytes = 16 * 1024,
            std::size_t max_headers = 100) {
    H2RequestBuilder builder(max_bytes, max_headers);
    Built b;
    bool added = true;
    for (const auto& [name, value] : block) {
        if (!builder.add(name, value)) {
            added = false;
            break;
        }
    }
    b.ok = added && builder.finish(end_stream, b.head);
    b.error = builder.error();
    b.detail = builder.detail();
    CHECK(b.ok == (b.error == Error::None));
    CHECK(b.ok == b.detail.empty());
    return b;
}

// A GET for https://example.com/ plus `extra` regular fields.
Block get(const Block& extra = {}) {
    Block b = {
        {":method", "GET"}, {":scheme", "https"}, {":authority", "example.com"}, {":path", "/"}};
    b.insert(b.end(), extra.begin(), extra.end());
    return b;
}

// `block` with the pseudo-header field `name` replaced by `value`, or removed when `value` is
// nullopt.
Block withPseudo(const std::string& name, const std::optional<std::string>& value,
                 Block block = get()) {
    for (auto it = block.begin(); it != block.end(); ++it) {
        if (it->first == name) {
            if (!value) {
                block.erase(it);
            } else {
                it->second = *value;
            }
            return block;
        }
    }
    if (value) {
        block.insert(block.begin(), {name, *value});
    }
    return block;
}

Error refusal(const Block& block, bool end_stream = true) {
    Built b = build(block, end_stream);
    CHECK_FALSE(b.ok);
    return b.error;
}

struct OneRequest : RequestCallbacks {
    std::vector<RequestHead> heads;
    // http::RequestCallbacks
    void onRequestHead(RequestHead&& head) override { heads.push_back(std::move(head)); }
    void onRequestBody(std::string_view) override {}
    void onRequestComplete() override {}
};

RequestHead parseHttp1(std::string_view bytes) {
    OneRequest log;
    RequestParser parser(log, ParserLimits{});
    auto r = parser.feed(bytes);
    REQUIRE(r.status != ParseStatus::Error);
    REQUIRE(log.heads.size() == 1);
    return std::move(log.heads.front());
}

// The same request, whichever protocol carried it: only the version may differ, and field names
// only in case (HTTP/2 sends them lowercase).
void checkSameHead(const RequestHead& h1, const RequestHead& h2) {
    CHECK(h1.method == h2.method);
    CHECK(h1.target == h2.target);
    CHECK(h1.host == h2.host);
    CHECK(h1.path == h2.path);
    CHECK(h1.query == h2.query);
    CHECK(h1.framing == h2.framing);
    CHECK(h1.content_length == h2.content_length);
    CHECK(h1.keep_alive == h2.keep_alive);
    CHECK(h1.expect_continue == h2.expect_continue);
    REQUIRE(h1.fields.size() == h2.fields.size());
    for (std::size_t i = 0; i < h1.fields.size(); ++i) {
        CHECK(strata::equalsIgnoreCase(h1.fields.items()[i].name, h2.fields.items()[i].name));
        CHECK(h1.fields.items()[i].value == h2.fields.items()[i].value);
    }
    CHECK(h2.version_major == 2);
    CHECK(h2.version_minor == 0);
}

std::string serialize(const std::vector<Field>& fields) {
    std::string out;
    for (const auto& f : fields) {
        out += f.name + ": " + f.value + "\r\n";
    }
    return out;
}

std::string lowerNames(std::string_view http1_fields) {
    std::string out;
    std::size_t pos = 0;
    while (pos < http1_fields.size()) {
        std::size_t eol = http1_fields.find("\r\n", pos);
        std::string_view line = http1_fields.substr(pos, eol - pos);
        std::size_t colon = line.find(':');
        out += strata::toLower(line.substr(0, colon));
        out += line.substr(colon);
        out += "\r\n";
        pos = eol + 2;
    }
    return out;
}

struct Collect : ForwardedFieldCallbacks {
    std::string out;
    // http::ForwardedFieldCallbacks
    void onField(std::string_view name, std::string_view value,
                 std::span<const std::string_view> appended) override {
        out += std::string(name) + ": " + std::string(value);
        for (std::string_view more : appended) {
            out += ", " + std::string(more);
        }
        out += "\r\n";
    }
};

}  // namespace

TEST_SUITE("http/h2_request") {
    TEST_CASE("a simple GET becomes an HTTP/2.0 head with Host from :authority") {
        Built b = build(get({{"accept", "*/*"}}));
        REQUIRE(b.ok);
        const RequestHead& h = b.head;
        CHECK(h.method == "GET");
        CHECK(h.target == "/");
        CHECK(h.path == "/");
        CHECK(h.query.empty());
        CHECK(h.host == "example.com");
        CHECK(h.version_major == 2);
        CHECK(h.version_minor == 0);
        CHECK(h.framing == BodyFraming::None);
        CHECK(h.content_length == 0);
        CHECK(h.keep_alive);
        CHECK_FALSE(h.expect_continue);
        REQUIRE(h.fields.size() == 2);
        CHECK(h.fields.items()[0].name == "host");
        CHECK(h.fields.items()[0].value == "example.com");
        CHECK(h.fields.items()[1].name == "accept");
        CHECK(h.fields.items()[1].value == "*/*");
    }

    TEST_CASE("path and query split at the first '?'; host is lowercased, port kept") {
        Built b =
            build(withPseudo(":authority", "Example.COM:8443", withPseudo(":path", "/a/b?x=1?y")));
        REQUIRE(b.ok);
        CHECK(b.head.target == "/a/b?x=1?y");
        CHECK(b.head.path == "/a/b");
        CHECK(b.head.query == "x=1?y");
        CHECK(b.head.host == "example.com:8443");
        // The added Host keeps the authority as sent, as an HTTP/1 Host field would be.
        CHECK(*b.head.fields.get("host") == "Example.COM:8443");
    }

    TEST_CASE("the head equals the HTTP/1 parser's for the same request") {
        SUBCASE("GET with a query, cookies and an upper-case authority") {
            RequestHead h1 = parseHttp1(
                "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n"
                "Cookie: a=1; b=2\r\nUser-Agent: t\r\n\r\n");
            Built b = build({{":method", "GET"},
                             {":scheme", "http"},
                             {":authority", "Example.COM:8080"},
                             {":path", "/a/b?x=1"},
                             {"accept", "*/*"},
                             {"cookie", "a=1"},
                             {"cookie", "b=2"},
                             {"user-agent", "t"}});
            REQUIRE(b.ok);
            checkSameHead(h1, b.head);
        }
        SUBCASE("POST with a length and 100-continue") {
            RequestHead h1 = parseHttp1(
                "POST /up HTTP/1.1\r\nHost: h.example\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n");
            Built b = build({{":method", "POST"},
                             {":scheme", "https"},
                             {":path", "/up"},
                             {"host", "h.example"},
                             {"content-length", "5"},
                             {"expect", "100-continue"}},
                            /*end_stream=*/false);
            REQUIRE(b.ok);
            checkSameHead(h1, b.head);
        }
        SUBCASE("OPTIONS *") {
            RequestHead h1 = parseHttp1("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
            Built b = build({{":method", "OPTIONS"},
                             {":scheme", "https"},
                             {":authority", "h"},
                             {":path", "*"}});
            REQUIRE(b.ok);
            checkSameHead(h1, b.head);
        }
    }

    TEST_CASE("extension and lower-case methods pass as sent") {
        Built b = build(withPseudo(":method", "PURGE"));
        REQUIRE(b.ok);
        CHECK(b.head.method == "PURGE");
        b = build(withPseudo(":method", "get"));
        REQUIRE(b.ok);
        CHECK(b.head.method == "get");
        CHECK(refusal(withPseudo(":method", "G T")) == Error::Malformed);
        CHECK(refusal(withPseudo(":method", std::string(33, 'A'))) == Error::Malformed);
    }

    TEST_CASE("extended CONNECT (RFC 8441) becomes the HTTP/1.1 WebSocket handshake") {
        const Block connect = {{":method", "CONNECT"},
                               {":protocol", "websocket"},
                               {":scheme", "https"},
                               {":authority", "example.com"},
                               {":path", "/chat?room=1"},
                               {"sec-websocket-version", "13"},
                               {"sec-websocket-protocol", "chat"}};
        Built b = build(connect, /*end_stream=*/false);
        REQUIRE(b.ok);
        CHECK(b.head.method == "GET");
        CHECK(b.head.extended_connect);
        CHECK(b.head.framing == BodyFraming::None);
        CHECK(b.head.target == "/chat?room=1");
        CHECK(b.head.host == "example.com");
        CHECK(b.head.fields.hasToken("Connection", "upgrade"));
        REQUIRE(b.head.fields.get("Upgrade") != nullptr);
        CHECK(*b.head.fields.get("Upgrade") == "websocket");
        CHECK(*b.head.fields.get("Sec-WebSocket-Protocol") == "chat");
        CHECK_FALSE(build(get(), true).head.extended_connect);

        SUBCASE("only websocket") {
            CHECK(refusal(withPseudo(":protocol", "connect-udp", connect), false) ==
                  Error::Unsupported);
        }
        SUBCASE("every pseudo-header field, :authority too") {
            for (const char* name : {":scheme", ":path", ":authority"}) {
                CAPTURE(name);
                CHECK(refusal(withPseudo(name, std::nullopt, connect), false) == Error::Malformed);
            }
        }
        SUBCASE("the stream carries the tunnel: no END_STREAM, no content-length") {
            CHECK(refusal(connect, true) == Error::Malformed);
            Block sized = connect;
            sized.push_back({"content-length", "5"});
            CHECK(refusal(sized, false) == Error::Malformed);
        }
    }

    TEST_CASE("pseudo-header fields only before regular ones") {
        Block b = {{":method", "GET"},
                   {":scheme", "https"},
                   {"accept", "*/*"},
                   {":authority", "example.com"},
                   {":path", "/"}};
        CHECK(refusal(b) == Error::Malformed);
    }

    TEST_CASE("only the four request pseudo-header fields, each once, none empty") {
        SUBCASE(":protocol without CONNECT") {
            CHECK(refusal(withPseudo(":protocol", "websocket"), false) == Error::Malformed);
        }
        SUBCASE("CONNECT") {
            CHECK(refusal(withPseudo(":method", "CONNECT")) == Error::Unsupported);
        }
        SUBCASE("unknown") {
            CHECK(refusal(withPseudo(":foo", "x")) == Error::Malformed);
        }
        SUBCASE(":status in a request") {
            CHECK(refusal(withPseudo(":status", "200")) == Error::Malformed);
        }
        SUBCASE("repeated") {
            for (const char* name : {":method", ":scheme", ":authority", ":path"}) {
                CAPTURE(name);
                Block b = get();
                b.insert(b.begin() + 2, {name, name == ":path"s ? "/" : "x"});
                CHECK(refusal(b) == Error::Malformed);
            }
        }
        SUBCASE("repeated with the same value") {
            Block b = get();
            b.insert(b.begin(), {":path", "/"});
            CHECK(refusal(b) == Error::Malformed);
        }
        SUBCASE("empty") {
            for (const char* name : {":method", ":scheme", ":authority", ":path"}) {
                CAPTURE(name);
                CHECK(refusal(withPseudo(name, "")) == Error::Malformed);
            }
        }
    }

    TEST_CASE(":method, :scheme and :path are required; :authority or Host") {
        for (const char* name : {":method", ":scheme", ":path"}) {
            CAPTURE(name);
            Built b = build(withPseudo(name, std::nullopt));
            CHECK(b.error == Error::Malformed);
            CHECK(b.detail == "missing "s + name);
        }
        CHECK(refusal(withPseudo(":authority", std::nullopt)) == Error::Malformed);
        Built b = build(withPseudo(":authority", std::nullopt, get({{"host", "Only.Host"}})));
        REQUIRE(b.ok);
        CHECK(b.head.host == "only.host");
        REQUIRE(b.head.fields.size() == 1);
        CHECK(b.head.fields.items()[0].name == "host");
    }

    TEST_CASE(":path starts with '/' or is '*' for OPTIONS, in request-target bytes") {
        CHECK(refusal(withPseudo(":path", "a/b")) == Error::Malformed);
        CHECK(refusal(withPseudo(":path", "http://example.com/")) == Error::Malformed);
        CHECK(refusal(withPseudo(":path", "*")) == Error::Malformed);  // GET *
        CHECK(refusal(withPseudo(":path", "/a b")) == Error::Malformed);
        CHECK(refusal(withPseudo(":path", "/a HTTP/1.1\tx")) == Error::Malformed);
        CHECK(refusal(withPseudo(":path", "/a#frag")) == Error::Malformed);
        CHECK(refusal(withPseudo(":path", "/\x7f")) == Error::Malformed);
        CHECK(refusal(withPseudo(":path", "/\x80")) == Error::Malformed);
        Built b = build(withPseudo(":method", "OPTIONS", withPseudo(":path", "*")));
        REQUIRE(b.ok);
        CHECK(b.head.path == "*");
        CHECK(b.head.target == "*");
    }

    TEST_CASE(":scheme is http or https") {
        CHECK(refusal(withPseudo(":scheme", "ftp")) == Error::Malformed);
        CHECK(refusal(withPseudo(":scheme", "https ")) == Error::Malformed);
        CHECK(build(withPseudo(":scheme", "HTTP")).ok);
        CHECK(build(withPseudo(":scheme", "http")).ok);
    }

    TEST_CASE(":authority is a valid host and port, without userinfo") {
        CHECK(refusal(withPseudo(":authority", "user@example.com")) == Error::Malformed);
        CHECK(refusal(withPseudo(":authority", "example.com:")) == Error::Malformed);
        CHECK(refusal(withPseudo(":authority", "example.com:123456")) == Error::Malformed);
        CHECK(refusal(withPseudo(":authority", "exa mple.com")) == Error::Malformed);
        CHECK(refusal(withPseudo(":authority", "a/b")) == Error::Malformed);
        Built b = build(withPseudo(":authority", "[::1]:8080"));
        REQUIRE(b.ok);
        CHECK(b.head.host == "[::1]:8080");
    }

    TEST_CASE("field names: lowercase tokens only") {
        Built b = build(get({{"Accept", "*/*"}}));
        CHECK(b.error == Error::Malformed);
        CHECK(b.detail == "upper-case field name");
        CHECK(refusal(get({{"x-Foo", "1"}})) == Error::Malformed);
        CHECK(refusal(get({{"a b", "1"}})) == Error::Malformed);
        CHECK(refusal(get({{"a:b", "1"}})) == Error::Malformed);
        CHECK(refusal(get({{"a\r\nb", "1"}})) == Error::Malformed);
        CHECK(refusal(get({{"", "1"}})) == Error::Malformed);
        CHECK(refusal(get({{"caf\xc3\xa9", "1"}})) == Error::Malformed);
        CHECK(build(get({{"x-a_b.c~!", "1"}})).ok);
    }

    TEST_CASE("field values: no CR, LF or NUL anywhere, no whitespace at either end") {
        for (std::string bad : {"a\rb"s, "a\nb"s, "a\0b"s, "\r\n"s, "x\r\nevil: 1"s}) {
            CAPTURE(bad);
            Built b = build(get({{"x-v", bad}}));
            CHECK(b.error == Error::Malformed);
            CHECK(b.detail == "CR, LF or NUL in a field value");
            // Pseudo-header values as well.
            CHECK(refusal(withPseudo(":path", "/" + bad)) == Error::Malformed);
        }
        CHECK(refusal(withPseudo(":authority", "a\nb")) == Error::Malformed);
        for (std::string bad : {" a"s, "a "s, "\ta"s, "a\t"s, " "s}) {
            CAPTURE(bad);
            CHECK(refusal(get({{"x-v", bad}})) == Error::Malformed);
        }
        // Other control bytes are refused as by the HTTP/1 parser.
        CHECK(refusal(get({{"x-v",
                            "a\x01"
                            "b"}})) == Error::Malformed);
        CHECK(refusal(get({{"x-v", "a\x7f"}})) == Error::Malformed);
        Built b = build(get({{"x-v", "a b\tc"}, {"x-empty", ""}, {"x-obs", "caf\xc3\xa9"}}));
        REQUIRE(b.ok);
        CHECK(*b.head.fields.get("x-v") == "a b\tc");
        CHECK(*b.head.fields.get("x-empty") == "");
        CHECK(*b.head.fields.get("x-obs") == "caf\xc3\xa9");
    }

    TEST_CASE("connection-specific fields are refused; te only as trailers") {
        for (const char* name :
             {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}) {
            CAPTURE(name);
            Built b = build(get({{name, "x"}}), /*end_stream=*/false);
            CHECK(b.error == Error::Malformed);
            CHECK(b.detail == "connection-specific field");
        }
        CHECK(refusal(get({{"transfer-encoding", "chunked"}, {"content-length", "3"}}), false) ==
              Error::Malformed);
        CHECK(refusal(get({{"te", "gzip"}})) == Error::Malformed);
        CHECK(refusal(get({{"te", "trailers, gzip"}})) == Error::Malformed);
        CHECK(build(get({{"te", "trailers"}})).ok);
        CHECK(build(get({{"te", "Trailers"}})).ok);
        // Names are matched whole: these are ordinary fields.
        CHECK(build(get({{"x-connection", "close"}, {"upgrade-insecure-requests", "1"}})).ok);
    }

    TEST_CASE("host with :authority must agree, case-insensitively") {
        Built b = build(get({{"host", "EXAMPLE.com"}}));
        REQUIRE(b.ok);
        CHECK(b.head.host == "example.com");
        REQUIRE(b.head.fields.size() == 1);  // no second Host added
        CHECK(b.head.fields.items()[0].value == "EXAMPLE.com");
        CHECK(refusal(get({{"host", "other.example"}})) == Error::Malformed);
        CHECK(refusal(get({{"host", "example.com:443"}})) == Error::Malformed);
        CHECK(refusal(get({{"host", "example.com"}, {"host", "example.com"}})) == Error::Malformed);
        CHECK(refusal(withPseudo(":authority", std::nullopt, get({{"host", "a b"}}))) ==
              Error::Malformed);
    }

    TEST_CASE("content-length: digits, one value, and no DATA means 0") {
        SUBCASE("framing follows end_stream and content-length") {
            Built b = build(get({{"content-length", "12"}}), /*end_stream=*/false);
            REQUIRE(b.ok);
            CHECK(b.head.framing == BodyFraming::Length);
            CHECK(b.head.content_length == 12);
            b = build(get(), /*end_stream=*/false);
            REQUIRE(b.ok);
            CHECK(b.head.framing == BodyFraming::Chunked);
            b = build(get({{"content-length", "0"}}), /*end_stream=*/false);
            REQUIRE(b.ok);
            CHECK(b.head.framing == BodyFraming::Length);
            CHECK(b.head.content_length == 0);
            b = build(get({{"content-length", "0"}}), /*end_stream=*/true);
            REQUIRE(b.ok);
            CHECK(b.head.framing == BodyFraming::None);
            CHECK(b.head.content_length == 0);
        }
        SUBCASE("not a decimal number") {
            for (const char* bad :
                 {"abc", "-1", "+1", "1,1", "1 1", "", "0x10", "1.0", "99999999999999999999999"}) {
                CAPTURE(bad);
                Built b = build(get({{"content-length", bad}}), /*end_stream=*/false);
                CHECK(b.error == Error::Malformed);
            }
        }
        SUBCASE("equal duplicates fold into one field") {
            Built b = build(get({{"content-length", "5"}, {"x", "y"}, {"content-length", "5"}}),
                            /*end_stream=*/false);
            REQUIRE(b.ok);
            CHECK(b.head.fields.count("content-length") == 1);
            CHECK(b.head.content_length == 5);
            CHECK(b.head.fields.items()[1].name == "content-length");
        }
        SUBCASE("different values") {
            CHECK(refusal(get({{"content-length", "5"}, {"content-length", "6"}}), false) ==
                  Error::Malformed);
            CHECK(refusal(get({{"content-length", "5"}, {"content-length", "05"}}), false) ==
                  Error::Malformed);
        }
        SUBCASE("a non-zero length on a stream that ended with its headers") {
            Built b = build(get({{"content-length", "5"}}), /*end_stream=*/true);
            CHECK(b.error == Error::Malformed);
        }
    }

    TEST_CASE("cookie crumbs are joined with \"; \" into one field where the first was") {
        Built b = build(get({{"cookie", "a=1"},
                             {"accept", "*/*"},
                             {"cookie", "b=2"},
                             {"cookie", ""},
                             {"cookie", "c=3"}}));
        REQUIRE(b.ok);
        CHECK(b.head.fields.count("cookie") == 1);
        CHECK(b.head.fields.items()[1].name == "cookie");
        CHECK(b.head.fields.items()[1].value == "a=1; b=2; c=3");
        CHECK(b.head.fields.items()[2].name == "accept");
        b = build(get({{"cookie", "only=1"}}));
        REQUIRE(b.ok);
        CHECK(*b.head.fields.get("cookie") == "only=1");
    }

    TEST_CASE("size limits count name + value + 32 per field, and regular fields") {
        // The GET block: 7+3 + 7+5 + 10+11 + 5+1 + 4 * 32 = 177 bytes.
        constexpr std::size_t kGetBytes = 177;
        Block b = get({{"x", "12345"}});  // +38
        CHECK(build(b, true, kGetBytes + 38).ok);
        Built over = build(b, true, kGetBytes + 37);
        CHECK(over.error == Error::HeadersTooLarge);
        // Pseudo-header fields count in bytes too.
        CHECK(build(get(), true, kGetBytes - 1).error == Error::HeadersTooLarge);
        // Every crumb counts.
        Block crumbs = get();
        for (int i = 0; i < 10; ++i) {
            crumbs.push_back({"cookie", "k=v"});
        }
        CHECK(build(crumbs, true, kGetBytes + 10 * 41).ok);
        CHECK(build(crumbs, true, kGetBytes + 10 * 41 - 1).error == Error::HeadersTooLarge);

        Block three = get({{"a", "1"}, {"b", "2"}, {"c", "3"}});
        CHECK(build(three, true, 16 * 1024, 3).ok);
        Built many = build(three, true, 16 * 1024, 2);
        CHECK(many.error == Error::HeadersTooLarge);
        CHECK(many.detail == "too many fields");
    }

    TEST_CASE("expect_continue only for expect: 100-continue") {
        Built b = build(get({{"expect", "100-continue"}}), false);
        REQUIRE(b.ok);
        CHECK(b.head.expect_continue);
        b = build(get({{"expect", "100-Continue"}}), false);
        REQUIRE(b.ok);
        CHECK(b.head.expect_continue);
        b = build(get({{"expect", "something"}}), false);
        REQUIRE(b.ok);
        CHECK_FALSE(b.head.expect_continue);
    }

    TEST_CASE("the first refusal sticks") {
        H2RequestBuilder builder(16 * 1024, 100);
        CHECK(builder.add(":method", "GET"));
        CHECK_FALSE(builder.add("Bad", "x"));
        CHECK(builder.error() == Error::Malformed);
        CHECK(builder.detail() == "upper-case field name");
        CHECK_FALSE(builder.add(":protocol", "websocket"));
        CHECK_FALSE(builder.add("ok", "x"));
        CHECK(builder.error() == Error::Malformed);
        CHECK(builder.detail() == "upper-case field name");
        RequestHead out;
        out.method = "untouched";
        CHECK_FALSE(builder.finish(true, out));
        CHECK(out.method == "untouched");
    }

    TEST_CASE("a finished block takes nothing more") {
        H2RequestBuilder builder(16 * 1024, 100);
        for (const auto& [name, value] : get()) {
            REQUIRE(builder.add(name, value));
        }
        RequestHead out;
        REQUIRE(builder.finish(true, out));
        CHECK_FALSE(builder.add("x", "1"));
        RequestHead again;
        CHECK_FALSE(builder.finish(true, again));
    }
}

TEST_SUITE("http/h2_response") {
    TEST_CASE("fields lose hop-by-hop and connection-specific ones and are lowercased") {
        Fields f;
        f.add("Content-Type", "text/plain");
        f.add("Connection", "close, X-Named");
        f.add("Keep-Alive", "timeout=5");
        f.add("Transfer-Encoding", "chunked");
        f.add("Upgrade", "h2c");
        f.add("Proxy-Connection", "keep-alive");
        f.add("X-Named", "1");
        f.add("TE", "trailers");
        f.add("ETag", "\"v1\"");
        OutgoingResponse r;
        r.status = 200;
        r.fields = &f;
        r.body = ResponseBody::Stream;
        std::vector<Field> out;
        h2ResponseFields(r, out);
        CHECK(serialize(out) == "content-type: text/plain\r\netag: \"v1\"\r\n");
    }

    TEST_CASE("edits apply as appendForwardedFields applies them") {
        Fields f;
        f.add("Via", "1.1 origin");
        f.add("Age", "3");
        f.add("Cache-Control", "max-age=60");
        f.add("Connection", "X-Hop");
        f.add("X-Hop", "gone");
        f.add("Via", "1.0 second");
        FieldEdits edits;
        edits.drop("Age");
        edits.appendToList("via", "1.1 strata");
        edits.appendToList("Via", "2.0 again");
        edits.appendToList("X-Forwarded-For", "10.0.0.1");
        edits.appendToList("X-Forwarded-For", "10.0.0.2");
        edits.appendToList("X-Hop", "new");  // the dropped field does not take it
        edits.add("Cache-Status", "strata; hit");
        edits.add("Age", "7");  // adds are not subject to the drops
        std::string http1;
        appendForwardedFields(http1, f, edits);
        Collect visited;
        forEachForwardedField(f, edits, visited);
        CHECK(visited.out == http1);
        OutgoingResponse r;
        r.status = 200;
        r.fields = &f;
        r.edits = &edits;
        std::vector<Field> out;
        h2ResponseFields(r, out);
        CHECK(serialize(out) == lowerNames(http1));
        CHECK(serialize(out) ==
              "via: 1.1 origin, 1.1 strata, 2.0 again\r\n"
              "cache-control: max-age=60\r\n"
              "via: 1.0 second\r\n"
              "x-forwarded-for: 10.0.0.1\r\n"
              "x-forwarded-for: 10.0.0.2\r\n"
              "x-hop: new\r\n"
              "cache-status: strata; hit\r\n"
              "age: 7\r\n");
    }

    TEST_CASE("the visitor matches appendForwardedFields on assorted heads") {
        std::vector<Fields> heads(4);
        heads[1].add("A", "1");
        for (int i = 0; i < 80; ++i) {  // beyond appendForwardedFields' remembered verdicts
            heads[2].add(i % 7 == 0 ? "Drop-Me" : "F" + std::to_string(i % 5), std::to_string(i));
        }
        heads[3].add("Connection", "f1, keep-alive");
        heads[3].add("F1", "x");
        heads[3].add("F2", "y");
        std::vector<FieldEdits> edit_sets(3);
        edit_sets[1].drop("drop-me");
        edit_sets[1].appendToList("F3", "l");
        edit_sets[2].appendToList("f2", "m");
        edit_sets[2].appendToList("F9", "n");
        edit_sets[2].add("F2", "z");
        for (const auto& fields : heads) {
            for (const auto& edits : edit_sets) {
                std::string http1;
                appendForwardedFields(http1, fields, edits);
                Collect visited;
                forEachForwardedField(fields, edits, visited);
                CHECK(visited.out == http1);
            }
        }
    }

    TEST_CASE("content-length is stated when asked, and never twice") {
        Fields f;
        f.add("Content-Type", "text/plain");
        OutgoingResponse r;
        r.status = 200;
        r.fields = &f;
        r.body = ResponseBody::Length;
        r.content_length = 1234;
        r.state_length = true;
        std::vector<Field> out;
        h2ResponseFields(r, out);
        CHECK(serialize(out) == "content-type: text/plain\r\ncontent-length: 1234\r\n");

        SUBCASE("a HEAD answer states it too") {
            r.head_only = true;
            out.clear();
            h2ResponseFields(r, out);
            CHECK(serialize(out) == "content-type: text/plain\r\ncontent-length: 1234\r\n");
        }
        SUBCASE("a forwarded length passes as forwarded") {
            f.add("Content-Length", "99");
            r.state_length = false;
            r.content_length = 99;
            out.clear();
            h2ResponseFields(r, out);
            CHECK(serialize(out) == "content-type: text/plain\r\ncontent-length: 99\r\n");
        }
        SUBCASE("a stated length replaces a stray one") {
            f.add("Content-Length", "5");
            out.clear();
            h2ResponseFields(r, out);
            CHECK(serialize(out) == "content-type: text/plain\r\ncontent-length: 1234\r\n");
        }
        SUBCASE("no length for a body of unknown length or none") {
            r.body = ResponseBody::Stream;
            out.clear();
            h2ResponseFields(r, out);
            CHECK(serialize(out) == "content-type: text/plain\r\n");
            r.body = ResponseBody::None;
            out.clear();
            h2ResponseFields(r, out);
            CHECK(serialize(out) == "content-type: text/plain\r\n");
        }
    }

    TEST_CASE("never transfer-encoding or connection, even from edits") {
        FieldEdits edits;
        edits.add("Transfer-Encoding", "chunked");
        edits.add("Connection", "close");
        edits.appendToList("Keep-Alive", "timeout=1");
        edits.add("Server", "strata");
        OutgoingResponse r;
        r.status = 502;
        r.edits = &edits;  // no fields at all
        r.body = ResponseBody::Stream;
        std::vector<Field> out;
        h2ResponseFields(r, out);
        CHECK(serialize(out) == "server: strata\r\n");
    }

    TEST_CASE("serialized_http1 is ignored: the fields carry the head") {
        Fields f;
        f.add("ETag", "\"a\"");
        FieldEdits edits;
        edits.add("Age", "1");
        OutgoingResponse r;
        r.status = 200;
        r.fields = &f;
        r.edits = &edits;
        r.serialized_http1 = "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nConnection: close\r\n";
        std::vector<Field> out;
        h2ResponseFields(r, out);
        CHECK(serialize(out) == "etag: \"a\"\r\nage: 1\r\n");
    }

    TEST_CASE("appends to what is already in out") {
        std::vector<Field> out = {Field{":status", "200"}};
        OutgoingResponse r;
        r.status = 200;
        h2ResponseFields(r, out);
        REQUIRE(out.size() == 1);
        CHECK(out[0].name == ":status");
    }
}
