// HTTP/2 header blocks to and from strata's message heads (RFC 9113 section 8).
//
// A request head is built only from fields that passed every check below; nothing the client
// sent is copied into it unchecked. In particular no framing field (Transfer-Encoding,
// Connection, a Content-Length that disagrees with itself) and no byte that would end a line in
// HTTP/1.1 can reach the request strata writes upstream. The checks on the start-line parts
// (method, path, authority) are the HTTP/1 parser's own (syntax.h), so a request means the same
// to strata whichever protocol carried it.
#include "strata/http/h2_mapping.h"

#include <string>

#include "strata/common/strings.h"

#include "syntax.h"

namespace strata::http {

namespace {

// RFC 9113 8.2.1: the bytes a field value may never hold in HTTP/2.
bool hasCrLfNul(std::string_view value) {
    return value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool isOws(char c) {
    return c == ' ' || c == '\t';
}

bool hasUpper(std::string_view name) {
    for (char c : name) {
        if (c >= 'A' && c <= 'Z') {
            return true;
        }
    }
    return false;
}

// RFC 9113 8.2.2: fields that only mean something to one HTTP/1.1 connection. TE is handled
// apart ("trailers" is allowed in requests).
bool isConnectionSpecific(std::string_view lower_name) {
    return lower_name == "connection" || lower_name == "keep-alive" ||
           lower_name == "proxy-connection" || lower_name == "transfer-encoding" ||
           lower_name == "upgrade";
}

}  // namespace

H2RequestBuilder::H2RequestBuilder(std::size_t max_header_bytes, std::size_t max_headers)
    : max_header_bytes_(max_header_bytes), max_headers_(max_headers) {}

bool H2RequestBuilder::fail(Error error, std::string detail) {
    if (error_ == Error::None) {
        error_ = error;
        detail_ = std::move(detail);
    }
    return false;
}

bool H2RequestBuilder::add(std::string_view name, std::string_view value) {
    if (error_ != Error::None) {
        return false;
    }
    if (finished_) {
        return fail(Error::Malformed, "field after the end of the header block");
    }
    // HPACK's accounting (RFC 7541 4.1), as SETTINGS_MAX_HEADER_LIST_SIZE counts: checked first
    // so an oversized block costs no more work than its decoding.
    header_bytes_ += name.size() + value.size() + 32;
    if (header_bytes_ > max_header_bytes_) {
        return fail(Error::HeadersTooLarge, "header block too large");
    }
    if (name.empty()) {
        return fail(Error::Malformed, "empty field name");
    }
    if (hasCrLfNul(value)) {
        return fail(Error::Malformed, "CR, LF or NUL in a field value");
    }
    return name.front() == ':' ? addPseudo(name, value) : addRegular(name, value);
}

bool H2RequestBuilder::addPseudo(std::string_view name, std::string_view value) {
    // RFC 9113 8.3: pseudo-header fields come first, each once, and only the defined ones.
    if (regular_seen_) {
        return fail(Error::Malformed, "pseudo-header field after a regular field");
    }
    std::string* slot = nullptr;
    bool* seen = nullptr;
    if (name == ":method") {
        slot = &method_;
        seen = &has_method_;
    } else if (name == ":scheme") {
        slot = &scheme_;
        seen = &has_scheme_;
    } else if (name == ":authority") {
        slot = &authority_;
        seen = &has_authority_;
    } else if (name == ":path") {
        slot = &path_;
        seen = &has_path_;
    } else if (name == ":protocol") {
        slot = &protocol_;
        seen = &has_protocol_;
    } else {
        return fail(Error::Malformed, "unknown pseudo-header field");
    }
    if (*seen) {
        return fail(Error::Malformed, "repeated pseudo-header field");
    }
    if (value.empty()) {
        return fail(Error::Malformed, "empty pseudo-header field");
    }
    if (slot == &method_) {
        if (!allOf(value, kTchar) || value.size() > kMaxMethodLength) {
            return fail(Error::Malformed, "invalid :method");
        }
    } else if (slot == &protocol_) {
        // RFC 8441 extended CONNECT: WebSocket is the one protocol bridged to HTTP/1.1.
        if (!equalsIgnoreCase(value, "websocket")) {
            return fail(Error::Unsupported, "extended CONNECT for a protocol other than websocket");
        }
    } else if (slot == &scheme_) {
        // An origin-facing proxy, as the HTTP/1 parser's absolute-form check: http(s) only.
        if (!equalsIgnoreCase(value, "http") && !equalsIgnoreCase(value, "https")) {
            return fail(Error::Malformed, "unsupported :scheme");
        }
    } else if (slot == &authority_) {
        // RFC 9113 8.3.1: no userinfo; isValidAuthority() refuses '@' with the rest.
        if (!isValidAuthority(value)) {
            return fail(Error::Malformed, "invalid :authority");
        }
    } else {
        // The path becomes the upstream request line: the HTTP/1 target bytes only, so no
        // space or control byte can split or extend that line.
        if (!allOf(value, kTargetByte) || (value.front() != '/' && value != "*")) {
            return fail(Error::Malformed, "invalid :path");
        }
    }
    slot->assign(value);
    *seen = true;
    return true;
}

bool H2RequestBuilder::addRegular(std::string_view name, std::string_view value) {
    regular_seen_ = true;
    if (++field_count_ > max_headers_) {
        return fail(Error::HeadersTooLarge, "too many fields");
    }
    // RFC 9113 8.2.1: upper-case names are malformed (HPACK carries them lowercased).
    if (hasUpper(name)) {
        return fail(Error::Malformed, "upper-case field name");
    }
    if (!allOf(name, kTchar)) {
        return fail(Error::Malformed, "invalid field name");
    }
    if (!value.empty() && (isOws(value.front()) || isOws(value.back()))) {
        return fail(Error::Malformed, "whitespace around a field value");
    }
    // The HTTP/1 parser's value bytes (nghttp2's check too): no other control byte either.
    if (!allOf(value, kFieldByte)) {
        return fail(Error::Malformed, "invalid character in a field value");
    }
    if (isConnectionSpecific(name)) {
        return fail(Error::Malformed, "connection-specific field");
    }
    if (name == "te") {
        if (!equalsIgnoreCase(value, "trailers")) {
            return fail(Error::Malformed, "te other than trailers");
        }
    } else if (name == "host") {
        // RFC 9112 3.2 as the HTTP/1 parser applies it: one valid Host.
        if (host_index_ != kNone) {
            return fail(Error::Malformed, "several Host fields");
        }
        if (!isValidAuthority(value)) {
            return fail(Error::Malformed, "invalid Host");
        }
        host_index_ = fields_.size();
    } else if (name == "content-length") {
        auto length = parseDecimal(value);
        if (!length) {
            return fail(Error::Malformed, "invalid content-length");
        }
        if (has_content_length_) {
            // Identical text only: "05" after "5" is a sender strata cannot vouch for.
            if (value != *fields_.get("content-length")) {
                return fail(Error::Malformed, "content-length values differ");
            }
            return true;  // folded: upstream sees one Content-Length
        }
        has_content_length_ = true;
        content_length_ = *length;
    } else if (name == "cookie") {
        // RFC 9113 8.2.3: crumbs are joined with "; " before going to HTTP/1.1, where a second
        // Cookie line is not allowed (RFC 6265 5.4).
        if (cookie_index_ != kNone) {
            std::string& joined = fields_.items()[cookie_index_].value;
            if (!value.empty()) {
                if (!joined.empty()) {
                    joined += "; ";
                }
                joined += value;
            }
            return true;
        }
        cookie_index_ = fields_.size();
    }
    fields_.add(name, value);
    return true;
}

bool H2RequestBuilder::finish(bool end_stream, RequestHead& out) {
    if (error_ != Error::None) {
        return false;
    }
    if (finished_) {
        return fail(Error::Malformed, "header block finished twice");
    }
    finished_ = true;
    // RFC 9113 8.3.1: every request but CONNECT has these three.
    if (!has_method_) {
        return fail(Error::Malformed, "missing :method");
    }
    // RFC 9113 8.5: a plain CONNECT asks for a TCP tunnel, which an origin-facing proxy does
    // not give; RFC 8441 4: :protocol only on CONNECT, which then has :scheme, :path and
    // :authority like any request.
    const bool extended = has_protocol_;
    if (method_ == "CONNECT" && !extended) {
        return fail(Error::Unsupported, "CONNECT");
    }
    if (extended && method_ != "CONNECT") {
        return fail(Error::Malformed, ":protocol without CONNECT");
    }
    if (extended && !has_authority_) {
        return fail(Error::Malformed, "extended CONNECT without :authority");
    }
    if (extended && (end_stream || has_content_length_)) {
        // Its DATA are the tunnel: a stream that ends at once, or a sized body, is no tunnel.
        return fail(Error::Malformed, "extended CONNECT with END_STREAM or content-length");
    }
    if (!has_scheme_) {
        return fail(Error::Malformed, "missing :scheme");
    }
    if (!has_path_) {
        return fail(Error::Malformed, "missing :path");
    }
    // RFC 9113 8.3.1: "*" is the path of a server-wide OPTIONS only.
    if (path_ == "*" && method_ != "OPTIONS") {
        return fail(Error::Malformed, ":path * without OPTIONS");
    }
    const std::string* host = host_index_ != kNone ? &fields_.items()[host_index_].value : nullptr;
    if (has_authority_ && host != nullptr && !equalsIgnoreCase(authority_, *host)) {
        return fail(Error::Malformed, ":authority and Host differ");
    }
    // What HTTP/1.1 requires (RFC 9112 3.2): strata's upstream request always names its host.
    if (!has_authority_ && host == nullptr) {
        return fail(Error::Malformed, "neither :authority nor Host");
    }
    // RFC 9113 8.1.1: the DATA frames must add up to content-length; with none to come, only 0.
    if (end_stream && has_content_length_ && content_length_ != 0) {
        return fail(Error::Malformed, "content-length on a stream without DATA");
    }

    out = RequestHead{};
    out.method = std::move(method_);
    if (path_ == "*") {
        out.path.assign(1, '*');
    } else {
        splitPathQuery(path_, out);
    }
    out.target = std::move(path_);
    setHost(has_authority_ ? std::string_view(authority_) : std::string_view(*host), out);
    out.version_major = 2;
    out.version_minor = 0;
    if (host == nullptr) {
        // Host first, where an HTTP/1.1 client puts it (RFC 9110 7.2).
        auto& items = fields_.items();
        items.insert(items.begin(), Field{"host", std::move(authority_)});
    }
    out.fields = std::move(fields_);
    out.framing = end_stream            ? BodyFraming::None
                  : has_content_length_ ? BodyFraming::Length
                                        : BodyFraming::Chunked;
    out.content_length = has_content_length_ ? content_length_ : 0;
    out.keep_alive = true;  // streams end, the connection is HTTP/2's to manage
    if (extended) {
        // The HTTP/1.1 handshake it stands for (RFC 6455 4.1); classifyUpgrade() checks the
        // version as for an HTTP/1.1 client.
        out.method = "GET";
        out.extended_connect = true;
        out.framing = BodyFraming::None;
        out.fields.add("upgrade", "websocket");
        out.fields.add("connection", "upgrade");
    }
    const std::string* expect = out.fields.get("expect");
    out.expect_continue = expect != nullptr && equalsIgnoreCase(*expect, "100-continue");
    return true;
}

namespace {

class H2ResponseFieldSink : public ForwardedFieldCallbacks {
public:
    H2ResponseFieldSink(std::vector<Field>& out, bool skip_length)
        : out_(out), skip_length_(skip_length) {}

    // http::ForwardedFieldCallbacks
    void onField(std::string_view name, std::string_view value,
                 std::span<const std::string_view> appended) override {
        std::string lower = toLower(name);
        // Edits are not filtered by appendForwardedFields(); in HTTP/2 none of these may pass
        // (RFC 9113 8.2.2), from whichever source.
        if (isConnectionSpecific(lower) || lower == "te" || lower == "trailer") {
            return;
        }
        if (skip_length_ && lower == "content-length") {
            return;  // the stated length is the one that counts; never send two
        }
        Field& f = out_.emplace_back();
        f.name = std::move(lower);
        f.value.assign(value);
        for (std::string_view more : appended) {
            f.value += ", ";
            f.value += more;
        }
    }

private:
    std::vector<Field>& out_;  // the caller's, outlives the visit
    const bool skip_length_;
};

}  // namespace

void h2ResponseFields(const OutgoingResponse& response, std::vector<Field>& out) {
    static const Fields kNoFields;
    static const FieldEdits kNoEdits;
    // serialized_http1 is the HTTP/1 codec's shortcut; `fields` carries the same head.
    const Fields& fields = response.fields != nullptr ? *response.fields : kNoFields;
    const FieldEdits& edits = response.edits != nullptr ? *response.edits : kNoEdits;
    const bool stated = response.state_length && response.body == ResponseBody::Length;
    H2ResponseFieldSink sink(out, stated);
    forEachForwardedField(fields, edits, sink);
    if (stated) {
        out.push_back(Field{"content-length", std::to_string(response.content_length)});
    }
}

}  // namespace strata::http
