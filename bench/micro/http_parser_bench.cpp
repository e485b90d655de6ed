// RequestParser/ResponseParser throughput on typical heads: the per-request CPU the proxy pays
// before routing. Reported as bytes/s and items (messages)/s.
#include <string>
#include <string_view>

#include <benchmark/benchmark.h>

#include "strata/http/message.h"
#include "strata/http/parser.h"

namespace {

using namespace strata::http;

// A browser-like GET: ~450 bytes, 9 fields.
const std::string kBrowserGet =
    "GET /static/app/main.3f9a1c.js?v=42 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/index.html\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
    "Sec-Fetch-Dest: script\r\n"
    "\r\n";

// What wrk sends.
const std::string kSmallGet = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

struct NullRequest : RequestCallbacks {
    std::size_t fields = 0;
    void onRequestHead(RequestHead&& h) override { fields += h.fields.size(); }
    void onRequestBody(std::string_view) override {}
    void onRequestComplete() override {}
};

struct NullResponse : ResponseCallbacks {
    std::size_t bytes = 0;
    void onResponseHead(ResponseHead&& h) override { bytes += h.fields.size(); }
    void onResponseBody(std::string_view d) override { bytes += d.size(); }
    void onResponseComplete() override {}
};

void parseRequests(benchmark::State& state, const std::string& one) {
    // 16 pipelined requests per buffer, as a keep-alive connection would see them.
    std::string buf;
    for (int i = 0; i < 16; ++i) {
        buf += one;
    }
    NullRequest cb;
    RequestParser parser(cb, ParserLimits{});
    for (auto _ : state) {
        std::string_view in = buf;
        while (!in.empty()) {
            auto r = parser.feed(in);
            in.remove_prefix(r.consumed);
            parser.nextMessage();
        }
    }
    benchmark::DoNotOptimize(cb.fields);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 16));
}

void BM_RequestSmallGet(benchmark::State& state) {
    parseRequests(state, kSmallGet);
}
void BM_RequestBrowserGet(benchmark::State& state) {
    parseRequests(state, kBrowserGet);
}

void BM_RequestChunkedPost(benchmark::State& state) {
    std::string body(16 * 1024, 'x');
    std::string one = "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 4; ++i) {
        appendChunkHeader(one, body.size());
        one += body;
        one += "\r\n";
    }
    one += kLastChunk;
    parseRequests(state, one);
}

void BM_ResponseWithBody(benchmark::State& state) {
    std::string one =
        "HTTP/1.1 200 OK\r\nServer: origin\r\nContent-Type: text/html\r\nCache-Control: "
        "max-age=60\r\nContent-Length: 1024\r\n\r\n" +
        std::string(1024, 'b');
    NullResponse cb;
    ResponseParser parser(cb, ParserLimits{});
    for (auto _ : state) {
        parser.expectResponseTo("GET");
        auto r = parser.feed(one);
        benchmark::DoNotOptimize(r.consumed);
        parser.nextMessage();
    }
    benchmark::DoNotOptimize(cb.bytes);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_SerializeHead(benchmark::State& state) {
    Fields f;
    f.add("Host", "www.example.com");
    f.add("User-Agent", "bench");
    f.add("Accept", "*/*");
    f.add("X-Forwarded-For", "192.0.2.1");
    std::string out;
    for (auto _ : state) {
        out.clear();
        appendRequestLine(out, "GET", "/static/app/main.js", 1);
        appendFields(out, f);
        out += "\r\n";
        benchmark::DoNotOptimize(out.data());
    }
}

}  // namespace

BENCHMARK(BM_RequestSmallGet);
BENCHMARK(BM_RequestBrowserGet);
BENCHMARK(BM_RequestChunkedPost);
BENCHMARK(BM_ResponseWithBody);
BENCHMARK(BM_SerializeHead);
BENCHMARK_MAIN();
