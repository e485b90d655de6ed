// The mapping between HTTP/2 header blocks and strata's message heads (RFC 9113 section 8).
// Pure, like the HTTP/1 parser: the HTTP/2 session hands it the fields nghttp2 decoded, and the
// request that comes out is built from validated parts only, so what strata forwards upstream
// as HTTP/1.1 can never carry framing or fields the HTTP/2 request did not mean (the h2-to-h1
// "downgrade smuggling" class).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "strata/http/message.h"
#include "strata/http/response_out.h"

namespace strata::http {

// Collects one request header block and turns it into a RequestHead. Any violation of RFC 9113
// 8.1.1, 8.2 and 8.3 is a stream error: the session resets the stream (PROTOCOL_ERROR) or, for
// a block over the size limits, answers 431.
class H2RequestBuilder {
public:
    // `max_header_bytes` bounds the block as HPACK counts it (name + value + 32 per field,
    // pseudo-header fields included); `max_headers` bounds the regular fields, as the HTTP/1
    // parser counts them.
    H2RequestBuilder(std::size_t max_header_bytes, std::size_t max_headers);

    // One field as decoded from HPACK (pseudo-header fields included). False: the block is
    // refused; error() and detail() say why, and every later call returns false. Also false
    // after finish(): a builder takes one block.
    bool add(std::string_view name, std::string_view value);
    // The header block ended; `end_stream` when no DATA follows. Fills `out`: method, target
    // (":path"), host (":authority", else Host; lowercase), path, query, fields (cookie crumbs
    // joined, Host set from ":authority"), framing (None with end_stream, else Length when a
    // content-length was sent, else Chunked), content_length, version 2.0. An extended CONNECT
    // (RFC 8441, :protocol websocket) becomes a GET with Upgrade: websocket and Connection:
    // upgrade, framing None and extended_connect set; the caller adds its Sec-WebSocket-Key.
    // False on an error.
    bool finish(bool end_stream, RequestHead& out);

    enum class Error {
        None,
        Malformed,        // stream error PROTOCOL_ERROR (RFC 9113 8.1.1)
        HeadersTooLarge,  // over max_header_bytes or max_headers: answer 431
        Unsupported,      // CONNECT, or extended CONNECT for other than websocket: answer 501
    };
    Error error() const { return error_; }
    const std::string& detail() const { return detail_; }

private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    bool fail(Error error, std::string detail);
    bool addPseudo(std::string_view name, std::string_view value);
    bool addRegular(std::string_view name, std::string_view value);

    std::size_t max_header_bytes_;
    std::size_t max_headers_;
    std::size_t header_bytes_ = 0;
    bool regular_seen_ = false;  // a regular field came: no pseudo-header may follow
    std::string method_, scheme_, authority_, path_, protocol_;
    bool has_method_ = false, has_scheme_ = false, has_authority_ = false, has_path_ = false,
         has_protocol_ = false;
    std::size_t field_count_ = 0;  // regular fields, against max_headers_ as HTTP/1 counts
    // Indexes into fields_ of the joined cookie field and of the Host field (npos: none yet).
    std::size_t cookie_index_ = kNone;
    std::size_t host_index_ = kNone;
    bool has_content_length_ = false;
    std::uint64_t content_length_ = 0;
    bool expect_continue_ = false;
    bool finished_ = false;
    Fields fields_;
    Error error_ = Error::None;
    std::string detail_;
};

// The fields of a response head as HTTP/2 sends them after ":status": names lowercased, the
// hop-by-hop and connection-specific fields left out (RFC 9113 8.2.2), `edits` applied, and
// content-length stated when the response asks for it. Appends to `out`.
void h2ResponseFields(const OutgoingResponse& response, std::vector<Field>& out);

}  // namespace strata::http
