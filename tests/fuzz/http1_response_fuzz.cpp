// Fuzzes ResponseParser: after one control byte, a stream of responses; bit i of the control
// byte says whether the i-th response answers a HEAD. Parsed all at once and in random slices;
// both runs must agree on every completed response, and finish() on what is left.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "strata/http/parser.h"

namespace {

using namespace strata::http;

#define FUZZ_CHECK(cond)  \
    do {                  \
        if (!(cond)) {    \
            std::abort(); \
        }                 \
    } while (0)

struct Message {
    int status = 0;
    std::string reason;
    std::size_t fields = 0;
    BodyFraming framing = BodyFraming::None;
    std::uint64_t content_length = 0;
    bool keep_alive = false;
    std::string body;
    bool complete = false;
};

struct Log : ResponseCallbacks {
    std::vector<Message> messages;
    std::string_view fed;
    bool in_body = false;

    // http::ResponseCallbacks
    void onResponseHead(ResponseHead&& h) override {
        FUZZ_CHECK(!in_body);
        FUZZ_CHECK(h.status >= 100 && h.status <= 599);
        FUZZ_CHECK(h.framing != BodyFraming::UntilClose || !h.keep_alive);
        FUZZ_CHECK(h.status >= 200 || h.framing == BodyFraming::None);
        Message m;
        m.status = h.status;
        m.reason = h.reason;
        m.fields = h.fields.size();
        m.framing = h.framing;
        m.content_length = h.content_length;
        m.keep_alive = h.keep_alive;
        messages.push_back(std::move(m));
        in_body = true;
    }
    void onResponseBody(std::string_view d) override {
        FUZZ_CHECK(in_body);
        FUZZ_CHECK(!d.empty());
        FUZZ_CHECK(d.data() >= fed.data() && d.data() + d.size() <= fed.data() + fed.size());
        FUZZ_CHECK(messages.back().framing != BodyFraming::None);
        messages.back().body.append(d);
    }
    void onResponseComplete() override {
        FUZZ_CHECK(in_body);
        Message& m = messages.back();
        if (m.framing == BodyFraming::Length) {
            FUZZ_CHECK(m.body.size() == m.content_length);
        }
        m.complete = true;
        in_body = false;
    }
};

struct Run {
    Log log;
    bool error = false;
    ParseStatus finish = ParseStatus::Ok;
};

void parse(std::string_view input, std::uint8_t heads, std::uint32_t seed, Run& run) {
    ResponseParser parser(run.log, ParserLimits{});
    std::size_t finals = 0;
    auto expect = [&] { parser.expectResponseTo(((heads >> (finals % 8)) & 1) ? "HEAD" : "GET"); };
    expect();
    std::size_t off = 0;
    std::uint32_t rng = seed;
    while (off < input.size()) {
        std::size_t n = input.size() - off;
        if (seed != 0) {
            rng = rng * 1103515245u + 12345u;
            n = std::min<std::size_t>(n, 1 + ((rng >> 16) % 17));
        }
        std::string_view slice = input.substr(off, n);
        run.log.fed = slice;
        auto r = parser.feed(slice);
        FUZZ_CHECK(r.consumed <= n);
        off += r.consumed;
        if (r.status == ParseStatus::Error) {
            FUZZ_CHECK(parser.error() == ParseError::BadResponse);
            run.error = true;
            return;
        }
        if (r.status == ParseStatus::Complete) {
            FUZZ_CHECK(!parser.inMessage());
            FUZZ_CHECK(parser.feed(input.substr(off)).consumed == 0);
            if (run.log.messages.back().status >= 200) {
                ++finals;
            }
            parser.nextMessage();
            expect();
            continue;
        }
        FUZZ_CHECK(r.consumed == n);
    }
    run.log.fed = {};
    run.finish = parser.finish();
    if (run.finish == ParseStatus::Error) {
        FUZZ_CHECK(parser.error() == ParseError::Truncated);
    }
    // finish() is idempotent enough to be called again after the connection is gone.
    FUZZ_CHECK(parser.finish() != ParseStatus::Complete);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    std::uint8_t control = data[0];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    Run whole;
    parse(input, control, 0, whole);
    Run sliced;
    parse(input, control, 1u + control, sliced);
    FUZZ_CHECK(whole.error == sliced.error);
    FUZZ_CHECK(whole.finish == sliced.finish);
    FUZZ_CHECK(whole.log.messages.size() == sliced.log.messages.size());
    for (std::size_t i = 0; i < whole.log.messages.size(); ++i) {
        const Message& a = whole.log.messages[i];
        const Message& b = sliced.log.messages[i];
        FUZZ_CHECK(a.complete == b.complete);
        if (!a.complete) {
            continue;
        }
        FUZZ_CHECK(a.status == b.status && a.reason == b.reason && a.fields == b.fields);
        FUZZ_CHECK(a.framing == b.framing && a.keep_alive == b.keep_alive && a.body == b.body);
    }
    return 0;
}
