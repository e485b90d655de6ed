// Fuzzes the chunked transfer coding: the input is the body of a chunked request. Parsed all at
// once and byte-split; both runs must agree. A body that decodes is re-encoded with
// appendChunkHeader and must decode to the same bytes (serializer and parser agree).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "strata/http/message.h"
#include "strata/http/parser.h"

namespace {

using namespace strata::http;

#define FUZZ_CHECK(cond)  \
    do {                  \
        if (!(cond)) {    \
            std::abort(); \
        }                 \
    } while (0)

constexpr std::string_view kHead =
    "POST /upload HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n";

struct Log : RequestCallbacks {
    std::string body;
    int heads = 0;
    int completes = 0;

    // http::RequestCallbacks
    void onRequestHead(RequestHead&& h) override {
        FUZZ_CHECK(h.framing == BodyFraming::Chunked);
        ++heads;
    }
    void onRequestBody(std::string_view d) override {
        FUZZ_CHECK(heads == 1 && completes == 0);
        body.append(d);
    }
    void onRequestComplete() override { ++completes; }
};

struct Result {
    std::string body;
    bool complete = false;
    bool error = false;
    std::size_t consumed = 0;
};

Result decode(std::string_view chunked, std::size_t step, std::uint64_t max_body) {
    Log log;
    ParserLimits limits;
    limits.max_body_bytes = max_body;
    RequestParser parser(log, limits);
    std::string input(kHead);
    input.append(chunked);
    Result res;
    std::size_t off = 0;
    while (off < input.size()) {
        std::size_t n = std::min(step, input.size() - off);
        auto r = parser.feed(std::string_view(input).substr(off, n));
        FUZZ_CHECK(r.consumed <= n);
        off += r.consumed;
        if (r.status == ParseStatus::Error) {
            res.error = true;
            break;
        }
        if (r.status == ParseStatus::Complete) {
            res.complete = true;
            break;
        }
        FUZZ_CHECK(r.consumed == n);
    }
    FUZZ_CHECK(log.heads == 1 || res.error);
    FUZZ_CHECK(log.completes == (res.complete ? 1 : 0));
    FUZZ_CHECK(log.body.size() <= max_body);
    res.body = std::move(log.body);
    res.consumed = off;
    return res;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view chunked(reinterpret_cast<const char*>(data), size);
    Result whole = decode(chunked, SIZE_MAX, UINT64_MAX);
    // Decoding never produces more bytes than it was given.
    FUZZ_CHECK(whole.body.size() <= size);
    Result bytes = decode(chunked, 1 + size % 7, UINT64_MAX);
    FUZZ_CHECK(whole.error == bytes.error && whole.complete == bytes.complete);
    if (whole.complete) {
        FUZZ_CHECK(whole.consumed == bytes.consumed);
        FUZZ_CHECK(whole.body == bytes.body);
        // Re-encode in two chunks and decode again.
        std::string again;
        std::size_t half = whole.body.size() / 2;
        if (half > 0) {
            appendChunkHeader(again, half);
            again.append(whole.body, 0, half);
            again.append("\r\n");
        }
        if (whole.body.size() > half) {
            appendChunkHeader(again, whole.body.size() - half);
            again.append(whole.body, half);
            again.append("\r\n");
        }
        again.append(kLastChunk);
        Result round = decode(again, SIZE_MAX, UINT64_MAX);
        FUZZ_CHECK(round.complete && round.body == whole.body);
        // A body limit below the decoded size is always enforced.
        if (!whole.body.empty()) {
            Result limited = decode(chunked, SIZE_MAX, whole.body.size() - 1);
            FUZZ_CHECK(limited.error && !limited.complete);
        }
    }
    return 0;
}
