#include "strata/http/response_out.h"

#include <charconv>
#include <cstring>

namespace strata::http {

ErrorAnswer::ErrorAnswer(int status, std::string_view cache_status)
    : body_(std::to_string(status) + " " + std::string(reasonPhrase(status)) + "\n") {
    edits_.add("Content-Type", "text/plain");
    edits_.add("Cache-Status", cache_status);
    head_.status = status;
    head_.edits = &edits_;
    head_.body = ResponseBody::Length;
    head_.content_length = body_.size();
    head_.state_length = true;
}

Http1Framing appendHttp1ResponseHead(std::string& out, const OutgoingResponse& response,
                                     int client_minor, bool close) {
    static const Fields kNoFields;
    static const FieldEdits kNoEdits;
    Http1Framing framing;
    framing.close = close;
    const bool streamed = response.body == ResponseBody::Stream && !response.head_only;
    if (streamed) {
        if (client_minor == 0) {
            framing.close = true;  // the end of the body is the end of the connection
        } else {
            framing.chunked = true;
        }
    }
    const Fields& fields = response.fields != nullptr ? *response.fields : kNoFields;
    const FieldEdits& edits = response.edits != nullptr ? *response.edits : kNoEdits;
    // The framing fields and the end of the head, put together on the stack first: this runs
    // for every answer, cache hits included.
    char tail[96];
    char* t = tail;
    auto put = [&t](std::string_view piece) {
        std::memcpy(t, piece.data(), piece.size());
        t += piece.size();
    };
    if (response.state_length && response.body == ResponseBody::Length) {
        put("Content-Length: ");
        t = std::to_chars(t, t + 24, response.content_length).ptr;  // 24 hold any 64-bit value
        put("\r\n");
    }
    if (framing.chunked) {
        put("Transfer-Encoding: chunked\r\n");
    }
    if (framing.close) {
        put("Connection: close\r\n");
    } else if (client_minor == 0) {
        put("Connection: keep-alive\r\n");
    }
    put("\r\n");
    const auto tail_size = static_cast<std::size_t>(t - tail);
    if (!response.serialized_http1.empty()) {
        // One resize and three copies: a stored head, the added fields, the tail.
        const std::size_t start = out.size();
        out.resize(start + response.serialized_http1.size() + edits.addedBytes() + tail_size);
        char* p = out.data() + start;
        std::memcpy(p, response.serialized_http1.data(), response.serialized_http1.size());
        p = edits.copyAdded(p + response.serialized_http1.size());
        std::memcpy(p, tail, tail_size);
        return framing;
    }
    appendStatusLine(out, response.status,
                     response.reason.empty() ? reasonPhrase(response.status) : response.reason, 1);
    appendForwardedFields(out, fields, edits);
    out.append(tail, tail_size);
    return framing;
}

}  // namespace strata::http
