// A response head as the proxy hands it to a client-side codec, and the HTTP/1.1 codec's
// serializer for it. The transaction says what the answer is (status, fields, how long the body
// is); the codec of the client's protocol decides how it is written: status line, framing
// fields and Connection for HTTP/1.x, HEADERS for HTTP/2. Every HTTP/1 response head strata
// writes to a client comes from appendHttp1ResponseHead().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "strata/http/message.h"

namespace strata::http {

enum class ResponseBody {
    None,    // no body and no length: 1xx, 204, 304, and answers to HEAD forwarded as received
    Length,  // exactly `content_length` bytes
    Stream,  // length unknown until the end (chunked upstream, or delimited by its close)
};

struct OutgoingResponse {
    int status = 0;
    std::string_view reason;  // empty: reasonPhrase(status)
    // The fields, hop-by-hop ones left out, with `edits` applied. Either may be null.
    const Fields* fields = nullptr;
    const FieldEdits* edits = nullptr;
    // An HTTP/1.1 status line and `fields` already serialized (a stored entry's head): the
    // HTTP/1 codec copies it instead of serializing `fields`; other codecs ignore it.
    std::string_view serialized_http1;
    ResponseBody body = ResponseBody::None;
    std::uint64_t content_length = 0;
    // The codec states Content-Length itself (a stored answer: its fields hold none); otherwise
    // a forwarded Content-Length is among `fields`.
    bool state_length = false;
    // Framing fields are written but no body follows (an answer to HEAD).
    bool head_only = false;
};

// The short text/plain answer strata writes itself for an error status ("404 Not Found\n"),
// the same for every protocol. Its head points into it: not copyable.
class ErrorAnswer {
public:
    ErrorAnswer(int status, std::string_view cache_status);
    ErrorAnswer(const ErrorAnswer&) = delete;
    ErrorAnswer& operator=(const ErrorAnswer&) = delete;

    const OutgoingResponse& head() const { return head_; }
    const std::string& body() const { return body_; }

private:
    std::string body_;
    FieldEdits edits_;
    OutgoingResponse head_;
};

// What the HTTP/1 connection must do after appendHttp1ResponseHead().
struct Http1Framing {
    bool chunked = false;  // body bytes go out chunk-encoded, ended by kLastChunk
    bool close = false;    // the connection ends after this response
};

// Serializes `response` for an HTTP/1.`client_minor` client. `close` asks for the connection to
// end after it; a body of unknown length to an HTTP/1.0 client forces it (HTTP/1.0 has no
// chunked coding).
Http1Framing appendHttp1ResponseHead(std::string& out, const OutgoingResponse& response,
                                     int client_minor, bool close);

}  // namespace strata::http
