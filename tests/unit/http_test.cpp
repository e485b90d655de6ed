// Unit tests for the http module: strict request/response framing over llhttp, pipelining and
// byte-split invariance, limits, header containers and serializers.
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "strata/http/message.h"
#include "strata/http/parser.h"
#include "strata/http/response_out.h"

using namespace strata::http;
using namespace std::string_literals;

namespace {

struct RequestLog : RequestCallbacks {
    std::vector<RequestHead> heads;
    std::vector<std::string> bodies;
    int completes = 0;

    // http::RequestCallbacks
    void onRequestHead(RequestHead&& head) override {
        heads.push_back(std::move(head));
        bodies.emplace_back();
    }
    void onRequestBody(std::string_view data) override {
        REQUIRE(!bodies.empty());
        bodies.back().append(data);
    }
    void onRequestComplete() override { ++completes; }
};

struct ResponseLog : ResponseCallbacks {
    std::vector<ResponseHead> heads;
    std::vector<std::string> bodies;
    int completes = 0;

    // http::ResponseCallbacks
    void onResponseHead(ResponseHead&& head) override {
        heads.push_back(std::move(head));
        bodies.emplace_back();
    }
    void onResponseBody(std::string_view data) override {
        REQUIRE(!bodies.empty());
        bodies.back().append(data);
    }
    void onResponseComplete() override { ++completes; }
};

struct RequestRun {
    RequestLog log;
    ParseStatus last = ParseStatus::Ok;
    ParseError error = ParseError::None;
    std::string detail;
    std::size_t consumed = 0;
    std::vector<std::size_t> message_ends;  // offsets in the input where each message ended
};

// Feeds `input` in slices of at most `step` bytes (the first slice is `first` bytes when
// non-zero), pipelining with nextMessage(), until Error or the input is used up.
RequestRun runRequests(std::string_view input, std::size_t step = SIZE_MAX,
                       const ParserLimits& limits = {}, std::size_t first = 0) {
    RequestRun run;
    RequestParser parser(run.log, limits);
    std::size_t off = 0;
    std::size_t fed_until = 0;  // end of the slice currently offered
    while (off < input.size()) {
        if (fed_until <= off) {
            std::size_t n = (off == 0 && first != 0) ? first : step;
            fed_until = off + std::min(n, input.size() - off);
        }
        auto r = parser.feed(input.substr(off, fed_until - off));
        REQUIRE(r.consumed <= fed_until - off);
        off += r.consumed;
        run.last = r.status;
        if (r.status == ParseStatus::Error) {
            run.error = parser.error();
            run.detail = parser.errorDetail();
            break;
        }
        if (r.status == ParseStatus::Complete) {
            run.message_ends.push_back(off);
            // Before nextMessage() nothing more is taken.
            auto again = parser.feed(input.substr(off));
            CHECK(again.consumed == 0);
            CHECK(again.status == ParseStatus::Complete);
            CHECK_FALSE(parser.inMessage());
            parser.nextMessage();
            continue;
        }
        CHECK(off == fed_until);  // Ok consumes the whole slice
    }
    run.consumed = off;
    return run;
}

struct ResponseRun {
    ResponseLog log;
    ParseStatus last = ParseStatus::Ok;
    ParseStatus finish = ParseStatus::Ok;
    ParseError error = ParseError::None;
    std::size_t consumed = 0;
};

// Same as runRequests for responses; `methods` gives the request method for each response in
// turn (default GET); finish() is called when the input is used up.
ResponseRun runResponses(std::string_view input, std::size_t step = SIZE_MAX,
                         std::vector<std::string> methods = {}, bool call_finish = true) {
    ResponseRun run;
    ResponseParser parser(run.log, ParserLimits{});
    std::size_t msg = 0;
    auto expect = [&] { parser.expectResponseTo(msg < methods.size() ? methods[msg] : "GET"); };
    expect();
    std::size_t off = 0;
    while (off < input.size()) {
        std::size_t n = std::min(step, input.size() - off);
        auto r = parser.feed(input.substr(off, n));
        REQUIRE(r.consumed <= n);
        off += r.consumed;
        run.last = r.status;
        if (r.status == ParseStatus::Error) {
            run.error = parser.error();
            break;
        }
        if (r.status == ParseStatus::Complete) {
            parser.nextMessage();
            // Interim responses answer the same request.
            if (run.log.heads.empty() || run.log.heads.back().status >= 200) {
                ++msg;
            }
            expect();
            continue;
        }
        CHECK(r.consumed == n);
    }
    run.consumed = off;
    if (call_finish && run.last != ParseStatus::Error) {
        run.finish = parser.finish();
        if (run.finish == ParseStatus::Error) {
            run.error = parser.error();
        }
    }
    return run;
}

const std::string kGet = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

}  // namespace

TEST_SUITE("http/request") {
    TEST_CASE("parses an origin-form GET") {
        auto run = runRequests(
            "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: WWW.Example.com:8080\r\nUser-Agent:  t \t\r\n"
            "Accept: */*\r\n\r\n");
        REQUIRE(run.last == ParseStatus::Complete);
        REQUIRE(run.log.heads.size() == 1);
        const auto& h = run.log.heads[0];
        CHECK(h.method == "GET");
        CHECK(h.target == "/a/b?x=1&y=2");
        CHECK(h.host == "www.example.com:8080");
        CHECK(h.path == "/a/b");
        CHECK(h.query == "x=1&y=2");
        CHECK(h.version_minor == 1);
        CHECK(h.framing == BodyFraming::None);
        CHECK(h.keep_alive);
        CHECK_FALSE(h.expect_continue);
        REQUIRE(h.fields.size() == 3);
        CHECK(h.fields.items()[0].name == "Host");
        CHECK(h.fields.items()[1].name == "User-Agent");
        CHECK(h.fields.items()[1].value == "t");
        CHECK(*h.fields.get("accept") == "*/*");
        CHECK(run.log.completes == 1);
    }

    TEST_CASE("parses every good request shape") {
        struct Case {
            const char* name;
            std::string input;
            std::string method, host, path, query, body;
            BodyFraming framing;
            bool keep_alive;
        };
        const std::vector<Case> cases = {
            {"absolute-form, authority wins over Host",
             "GET http://Origin.Example:81/p/q?z HTTP/1.1\r\nHost: other\r\n\r\n", "GET",
             "origin.example:81", "/p/q", "z", "", BodyFraming::None, true},
            {"absolute-form without path", "GET https://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", "GET",
             "a.b", "/", "", "", BodyFraming::None, true},
            {"absolute-form with query only", "GET http://a.b?k=v HTTP/1.1\r\nHost: a.b\r\n\r\n",
             "GET", "a.b", "/", "k=v", "", BodyFraming::None, true},
            {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "a", "*", "", "",
             BodyFraming::None, true},
            {"extension method llhttp knows", "PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", "PURGE", "a",
             "/x", "", "", BodyFraming::None, true},
            {"extension method llhttp does not know",
             "BREW /pot HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\ntea", "BREW", "a", "/pot",
             "", "tea", BodyFraming::Length, true},
            {"lowercase method is an extension method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", "get",
             "a", "/", "", "", BodyFraming::None, true},
            {"method of 32 tchars",
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.!~* / HTTP/1.1\r\nHost: a\r\n\r\n",
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.!~*", "a", "/", "", "", BodyFraming::None, true},
            {"RTSP name as HTTP method", "PLAY / HTTP/1.1\r\nHost: a\r\n\r\n", "PLAY", "a", "/", "",
             "", BodyFraming::None, true},
            // llhttp 8.1 takes one extension per chunk ("5;a=b;c" is refused, which is safe).
            {"chunked with extensions and trailers",
             "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
             "5;name=value\r\nhello\r\n6;flag\r\n world\r\n0\r\nX-Trailer: t\r\n"
             "X-Other: u\r\n\r\n",
             "POST", "a", "/up", "", "hello world", BodyFraming::Chunked, true},
            {"Content-Length 0", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "POST",
             "a", "/", "", "", BodyFraming::Length, true},
            {"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "",
             "/", "", "", BodyFraming::None, true},
            {"HTTP/1.0 default close", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", "GET", "h", "/", "", "",
             BodyFraming::None, false},
            {"HTTP/1.1 Connection: close",
             "GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n", "GET", "a", "/", "", "",
             BodyFraming::None, false},
            {"empty lines before the request", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET",
             "a", "/", "", "", BodyFraming::None, true},
            {"CONNECT authority-form", "CONNECT Example.com:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
             "CONNECT", "example.com:443", "", "", "", BodyFraming::None, true},
            {"Upgrade is just reported",
             "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
             "GET", "a", "/ws", "", "", BodyFraming::None, true},
            {"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET", "[::1]:8080", "/",
             "", "", BodyFraming::None, true},
            {"obs-text and tabs in values", "GET / HTTP/1.1\r\nHost: a\r\nX: \xe9t\xe9\tok\r\n\r\n",
             "GET", "a", "/", "", "", BodyFraming::None, true},
            {"empty field value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nY: 1\r\n\r\n", "GET",
             "a", "/", "", "", BodyFraming::None, true},
        };
        for (const auto& c : cases) {
            SUBCASE(c.name) {
                for (std::size_t step : {SIZE_MAX, std::size_t{1}}) {
                    auto run = runRequests(c.input, step);
                    INFO("step=", step, " detail=", run.detail);
                    REQUIRE(run.last == ParseStatus::Complete);
                    REQUIRE(run.log.heads.size() == 1);
                    const auto& h = run.log.heads[0];
                    CHECK(h.method == c.method);
                    CHECK(h.host == c.host);
                    CHECK(h.path == c.path);
                    CHECK(h.query == c.query);
                    CHECK(h.framing == c.framing);
                    CHECK(h.keep_alive == c.keep_alive);
                    CHECK(run.log.bodies[0] == c.body);
                    CHECK(run.log.completes == 1);
                    CHECK(run.consumed == c.input.size());
                }
            }
        }
    }

    TEST_CASE("keeps values as received and trims OWS only") {
        auto run = runRequests("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t a  b \t\r\nx-b:c\r\n\r\n");
        REQUIRE(run.log.heads.size() == 1);
        const auto& f = run.log.heads[0].fields;
        CHECK(*f.get("X-A") == "a  b");
        CHECK(f.items()[2].name == "x-b");
        CHECK(*f.get("X-B") == "c");
    }

    TEST_CASE("reports Expect: 100-continue and the declared length") {
        auto run = runRequests(
            "PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\nabcd");
        REQUIRE(run.log.heads.size() == 1);
        CHECK(run.log.heads[0].expect_continue);
        CHECK(run.log.heads[0].content_length == 4);
        CHECK(run.log.bodies[0] == "abcd");
        // RFC 9110 10.1.1: ignored in HTTP/1.0.
        auto old =
            runRequests("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
        REQUIRE(old.log.heads.size() == 1);
        CHECK_FALSE(old.log.heads[0].expect_continue);
    }

    TEST_CASE("rejects every ambiguous or malformed request") {
        struct Case {
            const char* name;
            std::string input;
            ParseError error;
        };
        const std::string h = "Host: a\r\n";
        const std::vector<Case> cases = {
            // framing
            {"CL and TE",
             "POST / HTTP/1.1\r\n" + h +
                 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE and CL",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"two equal CL",
             "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
             ParseError::BadRequest},
            {"two different CL",
             "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
             ParseError::BadRequest},
            {"CL list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\n\r\nhello",
             ParseError::BadRequest},
            {"CL not a number", "POST / HTTP/1.1\r\n" + h + "Content-Length: abc\r\n\r\n",
             ParseError::BadRequest},
            {"CL negative", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n",
             ParseError::BadRequest},
            {"CL plus sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\nhello",
             ParseError::BadRequest},
            {"CL hex", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x5\r\n\r\nhello",
             ParseError::BadRequest},
            {"CL inner space", "POST / HTTP/1.1\r\n" + h + "Content-Length: 1 2\r\n\r\n",
             ParseError::BadRequest},
            {"CL empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n",
             ParseError::BadRequest},
            {"CL overflow",
             "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999999\r\n\r\n",
             ParseError::BadRequest},
            {"TE gzip", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip\r\n\r\n",
             ParseError::BadRequest},
            {"TE gzip, chunked",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE chunked, gzip",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n",
             ParseError::BadRequest},
            {"TE chunked twice in a list",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE in two fields",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE chunked twice in two fields",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE empty", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n\r\n",
             ParseError::BadRequest},
            {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"TE with a vertical tab",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: \x0b"
                 "chunked\r\n\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"CONNECT with a body",
             "CONNECT a:443 HTTP/1.1\r\n" + h + "Content-Length: 2\r\n\r\nab",
             ParseError::BadRequest},
            // chunk framing
            {"chunk size not hex",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
             ParseError::BadRequest},
            {"chunk size empty",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n\r\nab\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"chunk size overflow",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
             ParseError::BadRequest},
            {"chunk size with sign",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"chunk data longer than size",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"chunk size bare LF",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"chunk data bare LF",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
             ParseError::BadRequest},
            {"last chunk bare LF",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\n\r\n",
             ParseError::BadRequest},
            {"chunk end bare LF",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\n",
             ParseError::BadRequest},
            {"chunk size bare CR",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"chunk extension with CTL",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: chunked\r\n\r\n5;a\x01=b\r\nhello\r\n0\r\n\r\n",
             ParseError::BadRequest},
            {"trailer with obs-fold",
             "POST / HTTP/1.1\r\n" + h +
                 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n",
             ParseError::BadRequest},
            {"trailer with empty name",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n: a\r\n\r\n",
             ParseError::BadRequest},
            {"trailer with bad name",
             "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nX Y: a\r\n\r\n",
             ParseError::BadRequest},
            // line terminators
            {"bare LF after request line", "GET / HTTP/1.1\n" + h + "\r\n", ParseError::BadRequest},
            {"bare LF after field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
             ParseError::BadRequest},
            {"bare LF ends head", "GET / HTTP/1.1\r\n" + h + "\n", ParseError::BadRequest},
            {"bare CR in request line", "GET / HTTP/1.1\r" + h + "\r\n", ParseError::BadRequest},
            {"bare CR in field value", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
             ParseError::BadRequest},
            {"bare CR ends head", "GET / HTTP/1.1\r\n" + h + "\rX", ParseError::BadRequest},
            {"bare CR before request", "\rGET / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"bare LF before request", "\nGET / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            // field syntax
            {"obs-fold", "GET / HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n", ParseError::BadRequest},
            {"obs-fold with tab", "GET / HTTP/1.1\r\n" + h + "X: a\r\n\tb\r\n\r\n",
             ParseError::BadRequest},
            {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", ParseError::BadRequest},
            {"tab before colon", "GET / HTTP/1.1\r\n" + h + "X\t: a\r\n\r\n",
             ParseError::BadRequest},
            {"space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
             ParseError::BadRequest},
            {"no colon", "GET / HTTP/1.1\r\n" + h + "Xyz\r\n\r\n", ParseError::BadRequest},
            {"empty field name", "GET / HTTP/1.1\r\n" + h + ": a\r\n\r\n", ParseError::BadRequest},
            {"parenthesis in name", "GET / HTTP/1.1\r\n" + h + "X(y): a\r\n\r\n",
             ParseError::BadRequest},
            {"at sign in name", "GET / HTTP/1.1\r\n" + h + "X@y: a\r\n\r\n",
             ParseError::BadRequest},
            {"non-ASCII in name", "GET / HTTP/1.1\r\n" + h + "X\xc3\xa9: a\r\n\r\n",
             ParseError::BadRequest},
            {"NUL in value", "GET / HTTP/1.1\r\n" + h + "X: a\0b\r\n\r\n"s, ParseError::BadRequest},
            {"CTL in value",
             "GET / HTTP/1.1\r\n" + h +
                 "X: a\x01"
                 "b\r\n\r\n",
             ParseError::BadRequest},
            {"ESC in value",
             "GET / HTTP/1.1\r\n" + h +
                 "X: a\x1b"
                 "b\r\n\r\n",
             ParseError::BadRequest},
            {"DEL in value",
             "GET / HTTP/1.1\r\n" + h +
                 "X: a\x7f"
                 "b\r\n\r\n",
             ParseError::BadRequest},
            // method
            {"invalid method char", "G(ET / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"method with colon", "GE:T / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"method of 33 chars", std::string(33, 'A') + " / HTTP/1.1\r\n" + h + "\r\n",
             ParseError::BadRequest},
            {"empty method", " / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"method then CRLF", "GET\r\n" + h + "\r\n", ParseError::BadRequest},
            {"tab after method", "GET\t/ HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            // request target
            {"relative target", "GET foo HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"two spaces after method", "GET  / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"space in target", "GET /a b HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"fragment in target", "GET /a#frag HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"CTL in target", "GET /a\x01 HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"DEL in target", "GET /a\x7f HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"non-ASCII in target", "GET /\xc3\xa9 HTTP/1.1\r\n" + h + "\r\n",
             ParseError::BadRequest},
            {"asterisk without OPTIONS", "GET * HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"other scheme", "GET ftp://a/ HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"userinfo in authority", "GET http://u@a/ HTTP/1.1\r\n" + h + "\r\n",
             ParseError::BadRequest},
            {"empty authority", "GET http:///x HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"authority-form without CONNECT", "GET a:443 HTTP/1.1\r\n" + h + "\r\n",
             ParseError::BadRequest},
            {"CONNECT without port", "CONNECT a HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"CONNECT origin-form", "CONNECT / HTTP/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            // version
            {"HTTP/2.0", "GET / HTTP/2.0\r\n" + h + "\r\n", ParseError::BadRequest},
            {"HTTP/0.9", "GET / HTTP/0.9\r\n" + h + "\r\n", ParseError::BadRequest},
            {"HTTP/1.2", "GET / HTTP/1.2\r\n" + h + "\r\n", ParseError::BadRequest},
            {"HTTP/1.10", "GET / HTTP/1.10\r\n" + h + "\r\n", ParseError::BadRequest},
            {"lowercase http", "GET / http/1.1\r\n" + h + "\r\n", ParseError::BadRequest},
            {"no version", "GET /\r\n" + h + "\r\n", ParseError::BadRequest},
            {"RTSP version", "GET / RTSP/1.0\r\n" + h + "\r\n", ParseError::BadRequest},
            {"PRI preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ParseError::BadRequest},
            {"space after version", "GET / HTTP/1.1 \r\n" + h + "\r\n", ParseError::BadRequest},
            // Host
            {"no Host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", ParseError::BadRequest},
            {"no Host with absolute-form", "GET http://a/ HTTP/1.1\r\n\r\n",
             ParseError::BadRequest},
            {"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", ParseError::BadRequest},
            {"two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
             ParseError::BadRequest},
            {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", ParseError::BadRequest},
            {"Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", ParseError::BadRequest},
            {"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ParseError::BadRequest},
            {"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", ParseError::BadRequest},
            {"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", ParseError::BadRequest},
            {"Host bad port", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", ParseError::BadRequest},
            {"Host long port", "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", ParseError::BadRequest},
            {"Host empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", ParseError::BadRequest},
            {"Host bad IPv6", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", ParseError::BadRequest},
            {"Host bad percent", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", ParseError::BadRequest},
            {"invalid Host with absolute-form", "GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n",
             ParseError::BadRequest},
        };
        for (const auto& c : cases) {
            SUBCASE(c.name) {
                for (std::size_t step : {SIZE_MAX, std::size_t{1}, std::size_t{7}}) {
                    auto run = runRequests(c.input, step);
                    INFO("step=", step, " detail=", run.detail);
                    CHECK(run.last == ParseStatus::Error);
                    CHECK(run.error == c.error);
                    CHECK(run.log.completes == 0);
                    CHECK(run.consumed <= c.input.size());
                }
            }
        }
    }

    TEST_CASE("enforces the start line, head, field count and body limits") {
        ParserLimits limits;
        limits.max_request_line_bytes = 64;
        limits.max_header_bytes = 256;
        limits.max_headers = 4;
        limits.max_body_bytes = 10;
        auto check = [&](const std::string& input, ParseError expected, bool head_seen = false) {
            for (std::size_t step : {SIZE_MAX, std::size_t{1}, std::size_t{5}}) {
                auto run = runRequests(input, step, limits);
                INFO("step=", step, " detail=", run.detail);
                if (expected == ParseError::None) {
                    CHECK(run.last == ParseStatus::Complete);
                } else {
                    CHECK(run.last == ParseStatus::Error);
                    CHECK(run.error == expected);
                    CHECK(run.log.heads.size() == (head_seen ? 1 : 0));
                }
            }
        };
        // "GET " + target + " HTTP/1.1" is the request line, CRLF not counted.
        auto line = [](std::size_t len) {
            return "GET /" + std::string(len - 14, 'a') + " HTTP/1.1";
        };
        SUBCASE("request line at and over the limit") {
            check(line(64) + "\r\nHost: a\r\n\r\n", ParseError::None);
            check(line(65) + "\r\nHost: a\r\n\r\n", ParseError::UriTooLong);
            check(line(65), ParseError::UriTooLong);  // detected before the line ends
            check(std::string(40, 'M') + " / HTTP/1.1\r\n\r\n", ParseError::BadRequest);
        }
        SUBCASE("head at and over the limit") {
            std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
            std::string filler(256 - head.size() - 4, 'v');
            check(head + filler + "\r\n\r\n", ParseError::None);
            check(head + filler + "v\r\n\r\n", ParseError::HeadersTooLarge);
            check(head + std::string(1000, 'v'), ParseError::HeadersTooLarge);
            check("GET / HTTP/1.1\r\nHost: a\r\n" + std::string(300, 'X'),
                  ParseError::HeadersTooLarge);
        }
        SUBCASE("field count") {
            check("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", ParseError::None);
            check("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
                  ParseError::HeadersTooLarge);
        }
        SUBCASE("declared and streamed body") {
            check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
                  ParseError::None);
            check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
                  ParseError::BodyTooLarge);
            check(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
                ParseError::None);
            std::string over =
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\n01234\r\n6\r\n567890\r\n0\r\n\r\n";
            check(over, ParseError::BodyTooLarge, /*head_seen=*/true);
            // The oversized chunk is refused before any of it is delivered.
            auto run = runRequests(over, SIZE_MAX, limits);
            REQUIRE(run.log.bodies.size() == 1);
            CHECK(run.log.bodies[0] == "01234");
        }
    }

    TEST_CASE("maps errors to status codes") {
        CHECK(httpStatus(ParseError::BadRequest) == 400);
        CHECK(httpStatus(ParseError::UriTooLong) == 414);
        CHECK(httpStatus(ParseError::HeadersTooLarge) == 431);
        CHECK(httpStatus(ParseError::BodyTooLarge) == 413);
        CHECK(httpStatus(ParseError::BadResponse) == 502);
        CHECK(httpStatus(ParseError::Truncated) == 400);
        CHECK(httpStatus(ParseError::UnderscoreField) == 400);
    }

    TEST_CASE("request fields named with '_' are kept, dropped or refused as configured") {
        const std::string input =
            "POST / HTTP/1.1\r\nHost: a\r\nX_Forwarded_Foo: 1\r\nX-Ok: 2\r\n"
            "x_second: 3\r\nContent-Length: 2\r\n\r\nhi";
        auto run = [&](UnderscoreFields mode, const std::string& in, std::size_t step) {
            ParserLimits limits;
            limits.underscores = mode;
            return runRequests(in, step, limits);
        };
        for (std::size_t step : {SIZE_MAX, std::size_t{1}, std::size_t{7}}) {
            CAPTURE(step);
            SUBCASE("allow keeps them as received (the parser's default)") {
                auto r = runRequests(input, step);
                REQUIRE(r.log.heads.size() == 1);
                const RequestHead& h = r.log.heads[0];
                CHECK(h.fields.get("X_Forwarded_Foo") != nullptr);
                CHECK(h.fields.get("x_second") != nullptr);
                CHECK(h.underscore_fields_dropped == 0);
                CHECK(r.log.bodies[0] == "hi");
            }
            SUBCASE("drop removes every one of them, keeps the rest and the body") {
                auto r = run(UnderscoreFields::Drop, input, step);
                REQUIRE(r.log.heads.size() == 1);
                const RequestHead& h = r.log.heads[0];
                CHECK(h.fields.get("X_Forwarded_Foo") == nullptr);
                CHECK(h.fields.get("x_second") == nullptr);
                CHECK(h.fields.size() == 3);  // Host, X-Ok, Content-Length in their order
                CHECK(h.fields.items()[1].name == "X-Ok");
                CHECK(h.underscore_fields_dropped == 2);
                CHECK(r.log.bodies[0] == "hi");
                CHECK(r.log.completes == 1);
            }
            SUBCASE("reject refuses the request before its head is delivered") {
                auto r = run(UnderscoreFields::Reject, input, step);
                CHECK(r.last == ParseStatus::Error);
                CHECK(r.error == ParseError::UnderscoreField);
                CHECK(r.log.heads.empty());
                // Without such a name the request passes.
                auto clean =
                    run(UnderscoreFields::Reject, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", step);
                CHECK(clean.last == ParseStatus::Complete);
            }
        }
    }

    TEST_CASE("a name that reads as a framing field with '_' for '-' is refused in every mode") {
        const std::string cl = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n";
        for (UnderscoreFields mode :
             {UnderscoreFields::Allow, UnderscoreFields::Drop, UnderscoreFields::Reject}) {
            CAPTURE(static_cast<int>(mode));
            ParserLimits limits;
            limits.underscores = mode;
            for (const std::string& field :
                 {std::string("Content_Length: 10"), std::string("content_length: 5"),
                  std::string("Transfer_Encoding: chunked"), std::string("TRANSFER_encoding: x")}) {
                CAPTURE(field);
                auto r = runRequests(cl + field + "\r\n\r\nhello", SIZE_MAX, limits);
                CHECK(r.last == ParseStatus::Error);
                CHECK(r.error == ParseError::UnderscoreField);
                CHECK(r.log.heads.empty());
            }
            // Same length, not a framing name: only the mode decides.
            auto other = runRequests(cl + "Content_Lengthx: 1\r\n\r\nhello", SIZE_MAX, limits);
            CHECK((other.last == ParseStatus::Error) == (mode == UnderscoreFields::Reject));
        }
    }

    TEST_CASE("pipelined requests stop exactly at each message end") {
        const std::string a = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
        const std::string b = "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        const std::string c =
            "PUT /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n"
            "2\r\nde\r\n0\r\nT: v\r\n\r\n";
        const std::string d = "BREW /4?q HTTP/1.1\r\nHost: B\r\nContent-Length: 2\r\n\r\nxy";
        const std::string e = "\r\nGET /5 HTTP/1.0\r\n\r\n";
        const std::string all = a + b + c + d + e;

        auto base = runRequests(all);
        REQUIRE(base.log.heads.size() == 5);
        CHECK(base.log.completes == 5);
        CHECK(base.message_ends ==
              std::vector<std::size_t>{a.size(), a.size() + b.size(),
                                       a.size() + b.size() + c.size(),
                                       a.size() + b.size() + c.size() + d.size(), all.size()});
        CHECK(base.log.bodies == std::vector<std::string>{"", "hello", "abcde", "xy", ""});
        CHECK(base.log.heads[3].method == "BREW");
        CHECK(base.log.heads[3].host == "b");
        CHECK(base.log.heads[4].path == "/5");

        auto same = [&](const RequestRun& run) {
            REQUIRE(run.log.heads.size() == base.log.heads.size());
            for (std::size_t i = 0; i < run.log.heads.size(); ++i) {
                CHECK(run.log.heads[i].method == base.log.heads[i].method);
                CHECK(run.log.heads[i].target == base.log.heads[i].target);
                CHECK(run.log.heads[i].fields.size() == base.log.heads[i].fields.size());
            }
            CHECK(run.log.bodies == base.log.bodies);
            CHECK(run.message_ends == base.message_ends);
            CHECK(run.consumed == all.size());
        };
        SUBCASE("one byte at a time") {
            same(runRequests(all, 1));
        }
        SUBCASE("every split point") {
            for (std::size_t k = 1; k < all.size(); ++k) {
                INFO("split at ", k);
                same(runRequests(all, SIZE_MAX, {}, k));
            }
        }
        SUBCASE("odd slice sizes") {
            for (std::size_t step : {2, 3, 5, 11, 64}) {
                same(runRequests(all, step));
            }
        }
    }

    TEST_CASE("an error in a later pipelined request leaves earlier ones delivered") {
        auto run = runRequests(kGet + "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        CHECK(run.log.completes == 1);
        CHECK(run.error == ParseError::BadRequest);
        CHECK(run.message_ends == std::vector<std::size_t>{kGet.size()});
    }

    TEST_CASE("a request after Connection: close is still parsed after nextMessage") {
        auto run = runRequests("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + kGet);
        CHECK(run.log.completes == 2);
        CHECK_FALSE(run.log.heads[0].keep_alive);
        CHECK(run.log.heads[1].keep_alive);
    }

    TEST_CASE("tracks inHead and inMessage") {
        RequestLog log;
        RequestParser p(log, ParserLimits{});
        CHECK_FALSE(p.inHead());
        CHECK_FALSE(p.inMessage());
        CHECK(p.feed("G").status == ParseStatus::Ok);
        CHECK(p.inHead());
        CHECK(p.inMessage());
        CHECK(p.feed("ET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab").consumed == 47);
        CHECK_FALSE(p.inHead());
        CHECK(p.inMessage());
        REQUIRE(log.heads.size() == 1);
        auto r = p.feed("cGET");
        CHECK(r.status == ParseStatus::Complete);
        CHECK(r.consumed == 1);
        CHECK_FALSE(p.inMessage());
        p.nextMessage();
        CHECK_FALSE(p.inHead());
        CHECK(p.feed("GET").consumed == 3);
        CHECK(p.inHead());
        CHECK(p.error() == ParseError::None);
    }

    TEST_CASE("errors are sticky") {
        RequestLog log;
        RequestParser p(log, ParserLimits{});
        CHECK(p.feed("GET / HTTP/1.1\r\nHost : a\r\n\r\n").status == ParseStatus::Error);
        CHECK(p.error() == ParseError::BadRequest);
        CHECK_FALSE(p.errorDetail().empty());
        auto r = p.feed(kGet);
        CHECK(r.status == ParseStatus::Error);
        CHECK(r.consumed == 0);
        p.nextMessage();
        CHECK(p.feed(kGet).status == ParseStatus::Error);
    }

    TEST_CASE("a rejected request's start line is known as far as it was read") {
        ParserLimits limits;
        limits.max_request_line_bytes = 64;
        limits.max_header_bytes = 256;
        struct Case {
            std::string input;
            std::string method;
            std::string target;
            int version_minor;
        };
        const std::vector<Case> cases{
            {"GET /a HTTP/1.0\r\nHost : a\r\n\r\n", "GET", "/a", 0},  // bad field: 400
            {"PURGE /p HTTP/1.1\r\nX: " + std::string(300, 'v'), "PURGE", "/p", 1},  // 431
            {"GET /" + std::string(100, 'l'), "GET", "", 1},  // target unfinished: 414
            {"GE\x01T / HTTP/1.1\r\n", "", "", 1},            // the method itself is bad
            {"GET /\x7f HTTP/1.1\r\n", "GET", "", 1},         // so is the target
        };
        for (const auto& c : cases) {
            for (std::size_t step : {SIZE_MAX, std::size_t{1}, std::size_t{7}}) {
                INFO("input=", c.input, " step=", step);
                RequestLog log;
                RequestParser p(log, limits);
                ParseStatus status = ParseStatus::Ok;
                for (std::size_t off = 0; off < c.input.size() && status == ParseStatus::Ok;) {
                    auto r = p.feed(std::string_view(c.input).substr(off, step));
                    status = r.status;
                    off += r.consumed;
                }
                REQUIRE(status == ParseStatus::Error);
                const RequestParser::StartLine line = p.startLineSoFar();
                CHECK(line.method == c.method);
                CHECK(line.target == c.target);
                CHECK(line.version_minor == c.version_minor);
            }
        }
    }

    TEST_CASE("the start line so far is empty once the head was delivered, and after reset") {
        RequestLog log;
        RequestParser p(log, ParserLimits{});
        CHECK(p.feed("GET /x HTTP/1.1\r\nHost: a\r\n\r\n").status == ParseStatus::Complete);
        CHECK(p.startLineSoFar().method.empty());
        CHECK(p.startLineSoFar().target.empty());
        p.nextMessage();
        CHECK(p.feed("POST /y HTTP").status == ParseStatus::Ok);
        CHECK(p.startLineSoFar().method == "POST");
        CHECK(p.startLineSoFar().target == "/y");
        p.nextMessage();
        CHECK(p.startLineSoFar().method.empty());
    }

    TEST_CASE("body slices point into the fed buffer") {
        struct Slices : RequestLog {
            std::vector<const char*> starts;
            void onRequestBody(std::string_view d) override {
                starts.push_back(d.data());
                RequestLog::onRequestBody(d);
            }
        } log;
        RequestParser p(log, ParserLimits{});
        std::string in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz";
        CHECK(p.feed(in).status == ParseStatus::Complete);
        REQUIRE(log.starts.size() == 1);
        CHECK(log.starts[0] == in.data() + in.size() - 3);
    }
}

TEST_SUITE("http/response") {
    TEST_CASE("frames responses") {
        struct Case {
            const char* name;
            std::string input;
            std::string method;
            BodyFraming framing;
            std::string body;
            bool keep_alive;
            int status;
        };
        const std::vector<Case> cases = {
            {"Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET",
             BodyFraming::Length, "hello", true, 200},
            {"chunked",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "GET",
             BodyFraming::Chunked, "hello", true, 200},
            {"HEAD ignores Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD",
             BodyFraming::None, "", true, 200},
            {"HEAD ignores chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
             "HEAD", BodyFraming::None, "", true, 200},
            {"204", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", "GET",
             BodyFraming::None, "", true, 204},
            {"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", "GET",
             BodyFraming::None, "", true, 304},
            {"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", "GET",
             BodyFraming::Length, "x", false, 200},
            {"HTTP/1.0 keep-alive",
             "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", "GET",
             BodyFraming::Length, "x", true, 200},
            {"Connection: close",
             "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", "GET",
             BodyFraming::Length, "x", false, 200},
            {"101 has no body",
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
             "Upgrade\r\n\r\n",
             "GET", BodyFraming::None, "", true, 101},
            {"no reason phrase", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", "GET",
             BodyFraming::Length, "", true, 404},
        };
        for (const auto& c : cases) {
            SUBCASE(c.name) {
                for (std::size_t step : {SIZE_MAX, std::size_t{1}}) {
                    auto run = runResponses(c.input, step, {c.method});
                    REQUIRE(run.last == ParseStatus::Complete);
                    REQUIRE(run.log.heads.size() == 1);
                    CHECK(run.log.heads[0].status == c.status);
                    CHECK(run.log.heads[0].framing == c.framing);
                    CHECK(run.log.heads[0].keep_alive == c.keep_alive);
                    CHECK(run.log.bodies[0] == c.body);
                    CHECK(run.consumed == c.input.size());
                    CHECK(run.finish == ParseStatus::Ok);
                }
            }
        }
    }

    TEST_CASE("keeps the status line") {
        auto run = runResponses(
            "HTTP/1.1 503 Service  Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n");
        REQUIRE(run.log.heads.size() == 1);
        CHECK(run.log.heads[0].reason == "Service  Unavailable");
        CHECK(run.log.heads[0].version_minor == 1);
        CHECK(*run.log.heads[0].fields.get("retry-after") == "1");
    }

    TEST_CASE("reads until close and completes on finish") {
        for (std::size_t step : {SIZE_MAX, std::size_t{1}}) {
            auto run = runResponses("HTTP/1.1 200 OK\r\nX: y\r\n\r\nall of this", step);
            CHECK(run.last == ParseStatus::Ok);
            REQUIRE(run.log.heads.size() == 1);
            CHECK(run.log.heads[0].framing == BodyFraming::UntilClose);
            CHECK_FALSE(run.log.heads[0].keep_alive);
            CHECK(run.finish == ParseStatus::Complete);
            CHECK(run.log.completes == 1);
            CHECK(run.log.bodies[0] == "all of this");
        }
    }

    TEST_CASE("reports a truncated body on finish") {
        auto run = runResponses("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        CHECK(run.finish == ParseStatus::Error);
        CHECK(run.error == ParseError::Truncated);
        auto head = runResponses("HTTP/1.1 200 OK\r\nContent-Le");
        CHECK(head.finish == ParseStatus::Error);
        CHECK(head.error == ParseError::Truncated);
        auto chunk = runResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
        CHECK(chunk.finish == ParseStatus::Error);
        CHECK(chunk.error == ParseError::Truncated);
    }

    TEST_CASE("finish between messages is Ok") {
        ResponseLog log;
        ResponseParser p(log, ParserLimits{});
        CHECK(p.finish() == ParseStatus::Ok);
        CHECK(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").status ==
              ParseStatus::Complete);
        p.nextMessage();
        CHECK_FALSE(p.inMessage());
        CHECK(p.finish() == ParseStatus::Ok);
        CHECK(log.completes == 1);
    }

    TEST_CASE("interim responses are messages of their own") {
        std::string in =
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
            "HTTP/1.1 150 Odd\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for (std::size_t step : {SIZE_MAX, std::size_t{1}, std::size_t{3}}) {
            auto run = runResponses(in, step);
            REQUIRE(run.log.heads.size() == 4);
            CHECK(run.log.heads[0].status == 100);
            CHECK(run.log.heads[0].framing == BodyFraming::None);
            CHECK(run.log.heads[1].status == 103);
            CHECK(run.log.heads[2].status == 150);
            CHECK(run.log.heads[2].framing == BodyFraming::None);
            CHECK(run.log.heads[3].status == 200);
            CHECK(run.log.bodies[3] == "ok");
            CHECK(run.log.completes == 4);
            CHECK(run.consumed == in.size());
        }
    }

    TEST_CASE("pipelined responses split anywhere") {
        std::string all =
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"  // answers a HEAD
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\n\r\n"
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n";
        std::vector<std::string> methods = {"GET", "HEAD", "GET", "GET"};
        auto base = runResponses(all, SIZE_MAX, methods);
        REQUIRE(base.log.heads.size() == 4);
        CHECK(base.log.bodies == std::vector<std::string>{"abc", "", "nope", ""});
        for (std::size_t step = 1; step < 20; ++step) {
            auto run = runResponses(all, step, methods);
            CHECK(run.log.bodies == base.log.bodies);
            CHECK(run.log.completes == 4);
            CHECK(run.consumed == all.size());
        }
    }

    TEST_CASE("rejects malformed responses") {
        struct Case {
            const char* name;
            std::string input;
        };
        const std::vector<Case> cases = {
            {"CL and TE",
             "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
            {"two CL", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"},
            {"CL list", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"},
            {"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"},
            {"TE gzip, chunked",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
            {"TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
            {"status 99", "HTTP/1.1 099 Low\r\n\r\n"},
            {"status 600", "HTTP/1.1 600 High\r\n\r\n"},
            {"status two digits", "HTTP/1.1 20 OK\r\n\r\n"},
            {"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n"},
            {"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"},
            {"not HTTP", "ICY 200 OK\r\n\r\n"},
            {"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
            {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
            {"bare LF in head", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"},
            {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
            {"bad field name", "HTTP/1.1 200 OK\r\nX\"y: 1\r\n\r\n"},
            {"CTL in value", "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n"},
            {"CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"},
            {"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n"},
            {"empty line before status line", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
            {"RTSP", "RTSP/1.0 200 OK\r\n\r\n"},
            {"two spaces before status", "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n"},
            {"status with four digits", "HTTP/1.1 2000 OK\r\n\r\n"},
            {"bare LF ends chunked body",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n"},
            {"head too large", "HTTP/1.1 200 OK\r\nX: " + std::string(40000, 'a') + "\r\n\r\n"},
        };
        for (const auto& c : cases) {
            SUBCASE(c.name) {
                for (std::size_t step : {SIZE_MAX, std::size_t{1}}) {
                    auto run = runResponses(c.input, step, {}, /*call_finish=*/false);
                    CHECK(run.last == ParseStatus::Error);
                    CHECK(run.error == ParseError::BadResponse);
                    CHECK(run.log.completes == 0);
                }
            }
        }
    }
}

TEST_SUITE("http/message") {
    TEST_CASE("Fields are ordered and case-insensitive") {
        Fields f;
        f.add("Host", "a");
        f.add("Accept", "x");
        f.add("accept", "y");
        CHECK(f.size() == 3);
        CHECK(*f.get("ACCEPT") == "x");
        CHECK(f.count("Accept") == 2);
        CHECK(f.get("Missing") == nullptr);
        CHECK_FALSE(f.has("Missing"));
        f.set("ACCEPT", "z");
        REQUIRE(f.size() == 2);
        CHECK(f.items()[1].name == "Accept");
        CHECK(f.items()[1].value == "z");
        f.set("New", "1");
        CHECK(f.items().back().name == "New");
        CHECK(f.remove("host") == 1);
        CHECK(f.remove("host") == 0);
        CHECK(f.items()[0].name == "Accept");
        f.clear();
        CHECK(f.empty());
    }

    TEST_CASE("hasToken matches list elements") {
        Fields f;
        f.add("Connection", "keep-alive , Upgrade");
        f.add("connection", "CLOSE");
        CHECK(f.hasToken("Connection", "upgrade"));
        CHECK(f.hasToken("connection", "close"));
        CHECK(f.hasToken("Connection", "Keep-Alive"));
        CHECK_FALSE(f.hasToken("Connection", "keep"));
        CHECK_FALSE(f.hasToken("Upgrade", "close"));
    }

    TEST_CASE("appendToList extends the first line of a list field or adds one") {
        Fields f;
        f.appendToList("Via", "1.1 strata");
        REQUIRE(f.get("via") != nullptr);
        CHECK(*f.get("via") == "1.1 strata");
        f.add("X-Forwarded-For", "10.0.0.1");
        f.add("x-forwarded-for", "10.0.0.2");
        f.appendToList("X-Forwarded-For", "127.0.0.1");
        CHECK(f.count("X-Forwarded-For") == 2);
        CHECK(*f.get("X-Forwarded-For") == "10.0.0.1, 127.0.0.1");
    }

    TEST_CASE("removeHopByHop drops hop-by-hop fields and those Connection names") {
        Fields f;
        f.add("Host", "a");
        f.add("Connection", "keep-alive, X-Secret");
        f.add("Keep-Alive", "timeout=5");
        f.add("x-secret", "1");
        f.add("Proxy-Connection", "close");
        f.add("TE", "trailers");
        f.add("Trailer", "X");
        f.add("Transfer-Encoding", "chunked");
        f.add("Upgrade", "h2c");
        f.add("Cache-Control", "no-cache");
        removeHopByHop(f);
        REQUIRE(f.size() == 2);
        CHECK(f.items()[0].name == "Host");
        CHECK(f.items()[1].name == "Cache-Control");
    }

    TEST_CASE("appendForwardedFields writes what editing a copy would") {
        Fields f;
        f.add("Host", "a");
        f.add("Connection", "keep-alive, X-Secret");
        f.add("X-Forwarded-For", "10.0.0.1");
        f.add("x-secret", "1");
        f.add("TE", "trailers");
        f.add("Expect", "100-continue");
        f.add("Via", "1.0 edge");
        f.add("expect", "again");
        f.add("Cache-Control", "no-cache");
        f.add("X-Forwarded-For", "10.0.0.2");

        FieldEdits edits;
        edits.drop("Expect");
        edits.appendToList("X-Forwarded-For", "127.0.0.1");
        edits.appendToList("Forwarded-Absent", "x");
        edits.appendToList("via", "1.1 strata");
        edits.add("X-Forwarded-Proto", "https");
        std::string direct;
        appendForwardedFields(direct, f, edits);

        Fields edited = f;
        removeHopByHop(edited);
        edited.remove("Expect");
        edited.appendToList("X-Forwarded-For", "127.0.0.1");
        edited.appendToList("Forwarded-Absent", "x");
        edited.appendToList("via", "1.1 strata");
        edited.add("X-Forwarded-Proto", "https");
        std::string copied;
        appendFields(copied, edited);
        CHECK(direct == copied);
        CHECK(direct ==
              "Host: a\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nVia: 1.0 edge, 1.1 strata\r\n"
              "Cache-Control: no-cache\r\nX-Forwarded-For: 10.0.0.2\r\nForwarded-Absent: x\r\n"
              "X-Forwarded-Proto: https\r\n");
    }

    TEST_CASE("applyUnderscorePolicy: the one rule for HTTP/1 and HTTP/2 request heads") {
        auto fields = [] {
            Fields f;
            f.add("Host", "a");
            f.add("X_A", "1");
            f.add("X-B", "2");
            f.add("x_c", "3");
            return f;
        };
        Fields allowed = fields();
        UnderscoreResult r = applyUnderscorePolicy(allowed, UnderscoreFields::Allow);
        CHECK(r.refused == nullptr);
        CHECK(r.dropped == 0);
        CHECK(allowed.size() == 4);
        Fields dropped = fields();
        r = applyUnderscorePolicy(dropped, UnderscoreFields::Drop);
        CHECK(r.refused == nullptr);
        CHECK(r.dropped == 2);
        REQUIRE(dropped.size() == 2);
        CHECK(dropped.items()[0].name == "Host");
        CHECK(dropped.items()[1].name == "X-B");
        Fields rejected = fields();
        CHECK(applyUnderscorePolicy(rejected, UnderscoreFields::Reject).refused != nullptr);
        for (UnderscoreFields mode :
             {UnderscoreFields::Allow, UnderscoreFields::Drop, UnderscoreFields::Reject}) {
            Fields framing = fields();
            framing.add("transfer_ENCODING", "chunked");
            r = applyUnderscorePolicy(framing, mode);
            CHECK(r.refused != nullptr);
            CHECK(framing.size() == 5);  // refused, not edited
        }
    }

    TEST_CASE("FieldEdits: every edit up to the capacity is applied; one more is reported") {
        Fields f;
        f.add("Host", "a");
        FieldEdits edits;
        std::vector<std::string> names;
        for (std::size_t i = 0; i < FieldEdits::kCapacity; ++i) {
            names.push_back("X-Drop-" + std::to_string(i));
            f.add(names.back(), "1");
        }
        for (const auto& name : names) {
            edits.drop(name);
        }
        CHECK(edits.complete());
        std::string out;
        appendForwardedFields(out, f, edits);
        CHECK(out == "Host: a\r\n");
        edits.drop("X-One-Too-Many");
        CHECK_FALSE(edits.complete());  // never silently forwarded without that edit
    }

    TEST_CASE("appendForwardedFields: a field Connection names loses a list edit's original") {
        Fields f;
        f.add("Connection", "Via");
        f.add("Via", "1.0 spoofed");
        FieldEdits edits;
        edits.appendToList("Via", "1.1 strata");
        std::string out;
        appendForwardedFields(out, f, edits);
        CHECK(out == "Via: 1.1 strata\r\n");
    }

    TEST_CASE("reasonPhrase knows the RFC 9110 codes") {
        CHECK(reasonPhrase(200) == "OK");
        CHECK(reasonPhrase(100) == "Continue");
        CHECK(reasonPhrase(206) == "Partial Content");
        CHECK(reasonPhrase(308) == "Permanent Redirect");
        CHECK(reasonPhrase(413) == "Content Too Large");
        CHECK(reasonPhrase(421) == "Misdirected Request");
        CHECK(reasonPhrase(422) == "Unprocessable Content");
        CHECK(reasonPhrase(431) == "Request Header Fields Too Large");
        CHECK(reasonPhrase(502) == "Bad Gateway");
        CHECK(reasonPhrase(505) == "HTTP Version Not Supported");
        CHECK(reasonPhrase(299) == "Unknown");
        for (int code : {100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305,
                         307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412,
                         413, 414, 415, 416, 417, 421, 422, 426, 500, 501, 502, 503, 504, 505}) {
            CHECK_MESSAGE(reasonPhrase(code) != "Unknown", code);
        }
    }

    TEST_CASE("serializers") {
        std::string out;
        appendRequestLine(out, "PURGE", "/a?b", 1);
        CHECK(out == "PURGE /a?b HTTP/1.1\r\n");
        out.clear();
        appendRequestLine(out, "GET", "/", 0);
        CHECK(out == "GET / HTTP/1.0\r\n");
        out.clear();
        appendStatusLine(out, 404, "Not Found", 1);
        CHECK(out == "HTTP/1.1 404 Not Found\r\n");
        out.clear();
        appendStatusLine(out, 200, "", 0);
        CHECK(out == "HTTP/1.0 200 \r\n");
        out.clear();
        Fields f;
        f.add("A", "1");
        f.add("b-c", "x y");
        appendFields(out, f);
        CHECK(out == "A: 1\r\nb-c: x y\r\n");
        out.clear();
        appendChunkHeader(out, 0);
        appendChunkHeader(out, 10);
        appendChunkHeader(out, 0x1f2e);
        appendChunkHeader(out, SIZE_MAX);
        CHECK(out == "0\r\na\r\n1f2e\r\nffffffffffffffff\r\n");
        CHECK(kLastChunk == "0\r\n\r\n");
    }

    TEST_CASE("serialized requests parse back to the same head") {
        Fields f;
        f.add("Host", "round.trip");
        f.add("X-N", "v");
        std::string out;
        appendRequestLine(out, "DELETE", "/r?t", 1);
        appendFields(out, f);
        out += "\r\n";
        auto run = runRequests(out);
        REQUIRE(run.log.heads.size() == 1);
        CHECK(run.log.heads[0].method == "DELETE");
        CHECK(run.log.heads[0].host == "round.trip");
        CHECK(run.log.heads[0].fields.size() == 2);
    }

    TEST_CASE("isIdempotent") {
        for (auto m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
            CHECK_MESSAGE(isIdempotent(m), m);
        }
        for (auto m : {"POST", "PATCH", "CONNECT", "PURGE", "get", ""}) {
            CHECK_FALSE_MESSAGE(isIdempotent(m), m);
        }
    }
}

TEST_CASE("HTTP/1 response head: framing and Connection follow the client's version") {
    Fields fields;
    fields.add("Content-Type", "text/plain");
    fields.add("Connection", "X-Private");
    fields.add("X-Private", "hop");
    FieldEdits edits;
    edits.add("Via", "1.1 strata");
    OutgoingResponse head;
    head.status = 200;
    head.fields = &fields;
    head.edits = &edits;
    head.body = ResponseBody::Stream;

    SUBCASE("an HTTP/1.1 client gets a streamed body chunked, hop-by-hop fields dropped") {
        std::string out;
        auto framing = appendHttp1ResponseHead(out, head, 1, false);
        CHECK(framing.chunked);
        CHECK_FALSE(framing.close);
        CHECK(out ==
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 strata\r\n"
              "Transfer-Encoding: chunked\r\n\r\n");
    }
    SUBCASE("an HTTP/1.0 client gets it delimited by the close, never chunked") {
        std::string out;
        auto framing = appendHttp1ResponseHead(out, head, 0, false);
        CHECK_FALSE(framing.chunked);
        CHECK(framing.close);
        CHECK(out.ends_with("Via: 1.1 strata\r\nConnection: close\r\n\r\n"));
    }
    SUBCASE("a stated length, keep-alive for HTTP/1.0, nothing chunked for HEAD") {
        head.body = ResponseBody::Length;
        head.content_length = 42;
        head.state_length = true;
        head.head_only = true;
        std::string out;
        auto framing = appendHttp1ResponseHead(out, head, 0, false);
        CHECK_FALSE(framing.chunked);
        CHECK_FALSE(framing.close);
        CHECK(out.ends_with("Content-Length: 42\r\nConnection: keep-alive\r\n\r\n"));
    }
    SUBCASE("a pre-serialized head is copied, the edits follow it") {
        head.serialized_http1 = "HTTP/1.1 203 Stored\r\nA: b\r\n";
        head.body = ResponseBody::None;
        std::string out;
        appendHttp1ResponseHead(out, head, 1, true);
        CHECK(out == "HTTP/1.1 203 Stored\r\nA: b\r\nVia: 1.1 strata\r\nConnection: close\r\n\r\n");
    }
}

TEST_CASE("ErrorAnswer: a short text/plain body with its length and Cache-Status") {
    const ErrorAnswer answer(404, "strata; fwd=bypass");
    CHECK(answer.body() == "404 Not Found\n");
    std::string out;
    appendHttp1ResponseHead(out, answer.head(), 1, true);
    CHECK(out ==
          "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nCache-Status: strata; "
          "fwd=bypass\r\nContent-Length: 14\r\nConnection: close\r\n\r\n");
}
