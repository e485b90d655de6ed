// Fuzzes H2RequestBuilder, the gate between what an HTTP/2 client sends and the HTTP/1.1
// request strata writes upstream. Input: one control byte (bit 0: END_STREAM with the headers,
// bit 1: small limits), then one field per line, "name value" split at the first space, with
// the escapes \n \r \0 \\ so a field can hold any byte.
//
// Run with -dict=tests/fuzz/h2_mapping.dict.
//
// A head that comes out must hold nothing HTTP/1.1 could read differently: no CR, LF or NUL, no
// framing or connection field, framing that follows content-length and END_STREAM. And the
// HTTP/1.1 request made from it, as the upstream side makes it, must parse with strata's own
// HTTP/1 parser into the same request (the h2-to-h1 downgrade cannot smuggle). The same fields
// also go through h2ResponseFields(), which must never emit a connection-specific field.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/common/strings.h"
#include "strata/http/h2_mapping.h"
#include "strata/http/message.h"
#include "strata/http/parser.h"
#include "strata/http/response_out.h"

namespace {

using namespace strata::http;
using strata::equalsIgnoreCase;

#define FUZZ_CHECK(cond)  \
    do {                  \
        if (!(cond)) {    \
            std::abort(); \
        }                 \
    } while (0)

std::vector<std::pair<std::string, std::string>> splitFields(std::string_view input) {
    std::vector<std::pair<std::string, std::string>> out;
    while (!input.empty()) {
        std::size_t eol = input.find('\n');
        std::string_view line = input.substr(0, eol);
        input.remove_prefix(eol == std::string_view::npos ? input.size() : eol + 1);
        // The name ends at the first unescaped space, so an escaped byte never splits.
        std::string name;
        std::string value;
        std::string* into = &name;
        for (std::size_t i = 0; i < line.size(); ++i) {
            if (line[i] == '\\' && i + 1 < line.size()) {
                char e = line[++i];
                into->push_back(e == 'n' ? '\n' : e == 'r' ? '\r' : e == '0' ? '\0' : e);
            } else if (line[i] == ' ' && into == &name) {
                into = &value;
            } else {
                into->push_back(line[i]);
            }
        }
        out.emplace_back(std::move(name), std::move(value));
    }
    return out;
}

bool isConnectionSpecific(std::string_view name) {
    return equalsIgnoreCase(name, "connection") || equalsIgnoreCase(name, "keep-alive") ||
           equalsIgnoreCase(name, "proxy-connection") ||
           equalsIgnoreCase(name, "transfer-encoding") || equalsIgnoreCase(name, "upgrade");
}

bool hasLineBreakOrNul(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool hasUpper(std::string_view s) {
    for (char c : s) {
        if (c >= 'A' && c <= 'Z') {
            return true;
        }
    }
    return false;
}

struct OneRequest : RequestCallbacks {
    std::vector<RequestHead> heads;
    // http::RequestCallbacks
    void onRequestHead(RequestHead&& head) override { heads.push_back(std::move(head)); }
    void onRequestBody(std::string_view) override {}
    void onRequestComplete() override {}
};

void checkHead(const RequestHead& h, bool end_stream, std::size_t max_headers) {
    FUZZ_CHECK(h.version_major == 2 && h.version_minor == 0);
    FUZZ_CHECK(h.keep_alive);
    FUZZ_CHECK(!h.method.empty() && h.method != "CONNECT");
    FUZZ_CHECK(!h.host.empty() && !hasUpper(h.host));
    FUZZ_CHECK(h.path == "*" ? h.method == "OPTIONS" && h.target == "*"
                             : !h.path.empty() && h.path.front() == '/');
    if (h.path != "*") {
        FUZZ_CHECK(h.target ==
                   (h.target.find('?') == std::string::npos ? h.path : h.path + "?" + h.query));
    }
    for (std::string_view part :
         {std::string_view(h.method), std::string_view(h.target), std::string_view(h.host)}) {
        FUZZ_CHECK(!hasLineBreakOrNul(part));
        FUZZ_CHECK(part.find(' ') == std::string_view::npos);
    }
    std::size_t hosts = 0;
    std::size_t lengths = 0;
    std::size_t cookies = 0;
    for (const auto& f : h.fields) {
        FUZZ_CHECK(!f.name.empty() && f.name.front() != ':' && !hasUpper(f.name));
        FUZZ_CHECK(!hasLineBreakOrNul(f.name) && !hasLineBreakOrNul(f.value));
        FUZZ_CHECK(f.name.find_first_of(" \t") == std::string::npos);
        FUZZ_CHECK(f.value.empty() || (f.value.front() != ' ' && f.value.front() != '\t' &&
                                       f.value.back() != ' ' && f.value.back() != '\t'));
        FUZZ_CHECK(!isConnectionSpecific(f.name));
        FUZZ_CHECK(f.name != "te" || equalsIgnoreCase(f.value, "trailers"));
        hosts += f.name == "host" ? 1 : 0;
        lengths += f.name == "content-length" ? 1 : 0;
        cookies += f.name == "cookie" ? 1 : 0;
    }
    FUZZ_CHECK(hosts == 1 && lengths <= 1 && cookies <= 1);
    FUZZ_CHECK(h.fields.size() <= max_headers + 1);  // + the Host made from :authority
    const std::string* cl = h.fields.get("content-length");
    if (cl != nullptr) {
        auto v = strata::parseDecimal(*cl);
        FUZZ_CHECK(v && *v == h.content_length);
    } else {
        FUZZ_CHECK(h.content_length == 0);
    }
    if (end_stream) {
        FUZZ_CHECK(h.framing == BodyFraming::None && h.content_length == 0);
    } else {
        FUZZ_CHECK(h.framing == (cl != nullptr ? BodyFraming::Length : BodyFraming::Chunked));
    }
}

// The upstream side's request (proxy/transaction.cpp): request line, the fields, and its own
// framing. strata's HTTP/1 parser must read it back as the same request.
void checkDowngrade(const RequestHead& h, std::size_t max_headers) {
    std::string bytes;
    appendRequestLine(bytes, h.method, h.target, 1);
    appendFields(bytes, h.fields);
    if (h.framing == BodyFraming::Chunked) {
        bytes += "Transfer-Encoding: chunked\r\n";
    }
    bytes += "\r\n";
    ParserLimits limits;
    limits.max_request_line_bytes = 1u << 20;
    limits.max_header_bytes = 1u << 22;
    limits.max_headers = static_cast<std::uint32_t>(max_headers + 2);
    OneRequest log;
    RequestParser parser(log, limits);
    auto r = parser.feed(bytes);
    FUZZ_CHECK(r.status != ParseStatus::Error);
    FUZZ_CHECK(r.consumed == bytes.size());
    FUZZ_CHECK(log.heads.size() == 1);
    const RequestHead& h1 = log.heads.front();
    FUZZ_CHECK(h1.method == h.method && h1.target == h.target && h1.host == h.host);
    FUZZ_CHECK(h1.path == h.path && h1.query == h.query);
    FUZZ_CHECK(h1.expect_continue == h.expect_continue);
    if (h.framing == BodyFraming::None) {
        // "content-length: 0" with END_STREAM reads as an empty Length body in HTTP/1.
        FUZZ_CHECK(h1.framing == BodyFraming::None ||
                   (h1.framing == BodyFraming::Length && h1.content_length == 0));
    } else {
        FUZZ_CHECK(h1.framing == h.framing && h1.content_length == h.content_length);
    }
    const std::size_t extra = h.framing == BodyFraming::Chunked ? 1 : 0;
    FUZZ_CHECK(h1.fields.size() == h.fields.size() + extra);
    for (std::size_t i = 0; i < h.fields.size(); ++i) {
        FUZZ_CHECK(h1.fields.items()[i].name == h.fields.items()[i].name);
        FUZZ_CHECK(h1.fields.items()[i].value == h.fields.items()[i].value);
    }
}

// Whatever the fields and edits, HTTP/2 response fields are lowercase and never
// connection-specific, and state one content-length when asked.
void checkResponse(const std::vector<std::pair<std::string, std::string>>& pairs,
                   std::uint8_t control) {
    Fields fields;
    FieldEdits edits;
    std::size_t i = 0;
    for (const auto& [name, value] : pairs) {
        switch (((control >> 2) + i++) & 3) {
            case 0:
            case 1:
                fields.add(name, value);
                break;
            case 2:
                edits.drop(name);
                edits.add(name, value);
                break;
            default:
                edits.appendToList(name, value);
                break;
        }
    }
    OutgoingResponse response;
    response.status = 200;
    response.fields = &fields;
    response.edits = &edits;
    response.body = (control & 4) != 0 ? ResponseBody::Length : ResponseBody::Stream;
    response.content_length = pairs.size();
    response.state_length = (control & 8) != 0;
    std::vector<Field> out;
    h2ResponseFields(response, out);
    std::size_t lengths = 0;
    for (const auto& f : out) {
        FUZZ_CHECK(!hasUpper(f.name));
        FUZZ_CHECK(!isConnectionSpecific(f.name) && f.name != "te");
        lengths += f.name == "content-length" ? 1 : 0;
    }
    if (response.state_length && response.body == ResponseBody::Length) {
        FUZZ_CHECK(lengths == 1 && out.back().name == "content-length" &&
                   out.back().value == std::to_string(pairs.size()));
    }
    if (edits.complete()) {
        // The same fields as the HTTP/1 serializer writes, less the ones HTTP/2 may not carry.
        std::string http1;
        appendForwardedFields(http1, fields, edits);
        std::size_t lines = 0;
        for (std::size_t at = http1.find("\r\n"); at != std::string::npos;
             at = http1.find("\r\n", at + 2)) {
            ++lines;
        }
        FUZZ_CHECK(out.size() <= lines + (response.state_length ? 1 : 0));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::uint8_t control = data[0];
    const bool end_stream = (control & 1) != 0;
    const std::size_t max_bytes = (control & 2) != 0 ? 512 : 64 * 1024;
    const std::size_t max_headers = (control & 2) != 0 ? 6 : 100;
    auto pairs = splitFields(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));

    H2RequestBuilder builder(max_bytes, max_headers);
    bool ok = true;
    std::size_t accounted = 0;
    for (const auto& [name, value] : pairs) {
        accounted += name.size() + value.size() + 32;
        if (!builder.add(name, value)) {
            ok = false;
            break;
        }
    }
    RequestHead head;
    if (ok) {
        ok = builder.finish(end_stream, head);
    }
    FUZZ_CHECK(ok == (builder.error() == H2RequestBuilder::Error::None));
    FUZZ_CHECK(ok == builder.detail().empty());
    // The refusal sticks.
    FUZZ_CHECK(!builder.add("x", "y"));
    if (ok) {
        FUZZ_CHECK(accounted <= max_bytes);
        checkHead(head, end_stream, max_headers);
        checkDowngrade(head, max_headers);
    }
    checkResponse(pairs, control);
    return 0;
}
