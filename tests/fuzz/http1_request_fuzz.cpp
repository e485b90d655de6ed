// Fuzzes RequestParser: the input (after one control byte) is a stream of pipelined requests.
// It is parsed twice, all at once and in random-size slices derived from the control byte, and
// both runs must agree on every completed message: framing must not depend on how TCP splits
// the bytes. Also checks the pipelining contract (consumed <= offered, Ok takes everything,
// nothing is taken after Complete until nextMessage) and that body slices lie in the fed buffer.
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
    std::string method, target, host, path, query;
    std::size_t fields = 0;
    BodyFraming framing = BodyFraming::None;
    std::uint64_t content_length = 0;
    std::string body;
    bool complete = false;
};

// The name with '_' read as '-', case-folded, is Content-Length or Transfer-Encoding.
bool readsAsFraming(std::string_view name) {
    std::string folded;
    for (char c : name) {
        folded += c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    }
    return folded == "content-length" || folded == "transfer-encoding";
}

struct Log : RequestCallbacks {
    std::vector<Message> messages;
    std::string_view fed;  // the slice being fed: body data must point into it
    bool in_body = false;
    UnderscoreFields underscores = UnderscoreFields::Allow;

    // http::RequestCallbacks
    void onRequestHead(RequestHead&& h) override {
        FUZZ_CHECK(!in_body);
        FUZZ_CHECK(!h.method.empty() && h.method.size() <= 32);
        FUZZ_CHECK(h.version_minor == 0 || h.version_minor == 1);
        FUZZ_CHECK(h.version_minor == 0 || !h.host.empty());
        for (const auto& f : h.fields) {
            // Dropped or refused unless allowed; a framing look-alike never passes.
            const bool underscore = f.name.find('_') != std::string::npos;
            FUZZ_CHECK(!underscore || underscores == UnderscoreFields::Allow);
            FUZZ_CHECK(!underscore || !readsAsFraming(f.name));
        }
        FUZZ_CHECK(h.underscore_fields_dropped == 0 || underscores == UnderscoreFields::Drop);
        Message m;
        m.method = h.method;
        m.target = h.target;
        m.host = h.host;
        m.path = h.path;
        m.query = h.query;
        m.fields = h.fields.size();
        m.framing = h.framing;
        m.content_length = h.content_length;
        messages.push_back(std::move(m));
        in_body = true;
    }
    void onRequestBody(std::string_view d) override {
        FUZZ_CHECK(in_body);
        FUZZ_CHECK(!d.empty());
        FUZZ_CHECK(d.data() >= fed.data() && d.data() + d.size() <= fed.data() + fed.size());
        messages.back().body.append(d);
    }
    void onRequestComplete() override {
        FUZZ_CHECK(in_body);
        Message& m = messages.back();
        if (m.framing == BodyFraming::Length) {
            FUZZ_CHECK(m.body.size() == m.content_length);
        } else if (m.framing == BodyFraming::None) {
            FUZZ_CHECK(m.body.empty());
        }
        m.complete = true;
        in_body = false;
    }
};

struct Run {
    Log log;
    bool error = false;
};

void parse(std::string_view input, const ParserLimits& limits, std::uint32_t seed, Run& run) {
    RequestParser parser(run.log, limits);
    std::size_t off = 0;
    std::uint32_t rng = seed;
    while (off < input.size()) {
        std::size_t n = input.size() - off;
        if (seed != 0) {
            rng = rng * 1103515245u + 12345u;
            std::size_t cap = 1 + ((rng >> 16) % 17);
            n = std::min(n, cap);
        }
        std::string_view slice = input.substr(off, n);
        run.log.fed = slice;
        auto r = parser.feed(slice);
        FUZZ_CHECK(r.consumed <= n);
        off += r.consumed;
        if (r.status == ParseStatus::Error) {
            FUZZ_CHECK(parser.error() != ParseError::None);
            FUZZ_CHECK(parser.feed(slice).consumed == 0);
            run.error = true;
            return;
        }
        if (r.status == ParseStatus::Complete) {
            FUZZ_CHECK(!run.log.messages.empty() && run.log.messages.back().complete);
            FUZZ_CHECK(!parser.inMessage());
            auto again = parser.feed(input.substr(off));
            FUZZ_CHECK(again.consumed == 0 && again.status == ParseStatus::Complete);
            parser.nextMessage();
            continue;
        }
        FUZZ_CHECK(r.consumed == n);
        // Mid-message exactly when the owner has seen a head that has not completed, or none.
        FUZZ_CHECK(!run.log.in_body || parser.inMessage());
        FUZZ_CHECK(!parser.inHead() || !run.log.in_body);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    std::uint8_t control = data[0];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    ParserLimits limits;
    if (control & 0x80) {
        // Small limits so the 414/431/413 paths are reachable with short inputs.
        limits.max_request_line_bytes = 48;
        limits.max_header_bytes = 160;
        limits.max_headers = 6;
        limits.max_body_bytes = 24;
    }
    // Bits 5-6 pick the underscore mode (they also vary the slice size below; both are fine).
    const unsigned mode = (control >> 5) & 3;
    limits.underscores = mode == 1   ? UnderscoreFields::Drop
                         : mode == 2 ? UnderscoreFields::Reject
                                     : UnderscoreFields::Allow;
    Run whole;
    whole.log.underscores = limits.underscores;
    parse(input, limits, 0, whole);
    Run sliced;
    sliced.log.underscores = limits.underscores;
    parse(input, limits, 1u + (control & 0x7f), sliced);
    // Every message completed in one run is completed identically in the other.
    std::size_t done_whole = 0;
    std::size_t done_sliced = 0;
    for (const auto& m : whole.log.messages) {
        done_whole += m.complete ? 1 : 0;
    }
    for (const auto& m : sliced.log.messages) {
        done_sliced += m.complete ? 1 : 0;
    }
    FUZZ_CHECK(done_whole == done_sliced);
    FUZZ_CHECK(whole.error == sliced.error);
    for (std::size_t i = 0; i < done_whole; ++i) {
        const Message& a = whole.log.messages[i];
        const Message& b = sliced.log.messages[i];
        FUZZ_CHECK(a.method == b.method && a.target == b.target && a.host == b.host);
        FUZZ_CHECK(a.path == b.path && a.query == b.query && a.fields == b.fields);
        FUZZ_CHECK(a.framing == b.framing && a.body == b.body);
    }
    return 0;
}
