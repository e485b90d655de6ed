// TEMPORARY stand-in for src/http/h2_mapping.cpp (branch h2-map), so the HTTP/2 session can be
// tested before that lands. Deleted when h2-map is merged.
#include <algorithm>

#include "strata/common/strings.h"
#include "strata/http/h2_mapping.h"

namespace strata::http {
namespace {

bool hasForbiddenByte(std::string_view value) {
    return value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool isConnectionSpecific(std::string_view name) {
    return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
           name == "transfer-encoding" || name == "upgrade";
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
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
    header_bytes_ += name.size() + value.size() + 32;
    if (header_bytes_ > max_header_bytes_ || fields_.size() >= max_headers_) {
        return fail(Error::HeadersTooLarge, "header list too large");
    }
    if (name.empty()) {
        return fail(Error::Malformed, "empty field name");
    }
    for (char c : name) {
        if (c >= 'A' && c <= 'Z') {
            return fail(Error::Malformed, "upper-case field name");
        }
    }
    if (hasForbiddenByte(value)) {
        return fail(Error::Malformed, "CR, LF or NUL in a field value");
    }
    if (name[0] == ':') {
        if (regular_seen_) {
            return fail(Error::Malformed, "pseudo-header after a regular field");
        }
        auto take = [&](bool& has, std::string& out) {
            if (has) {
                return fail(Error::Malformed, "duplicate " + std::string(name));
            }
            has = true;
            out.assign(value);
            return true;
        };
        if (name == ":method") {
            return take(has_method_, method_);
        }
        if (name == ":scheme") {
            return take(has_scheme_, scheme_);
        }
        if (name == ":authority") {
            return take(has_authority_, authority_);
        }
        if (name == ":path") {
            return take(has_path_, path_);
        }
        return fail(Error::Malformed, "unknown pseudo-header " + std::string(name));
    }
    regular_seen_ = true;
    if (isConnectionSpecific(name)) {
        return fail(Error::Malformed, "connection-specific field " + std::string(name));
    }
    if (name == "te" && value != "trailers") {
        return fail(Error::Malformed, "te other than trailers");
    }
    if (name == "cookie") {
        cookies_.emplace_back(value);
        return true;
    }
    fields_.add(name, value);
    return true;
}

bool H2RequestBuilder::finish(bool end_stream, RequestHead& out) {
    if (error_ != Error::None) {
        return false;
    }
    if (has_method_ && method_ == "CONNECT") {
        return fail(Error::Unsupported, "CONNECT");
    }
    if (!has_method_ || !has_scheme_ || !has_path_ || path_.empty()) {
        return fail(Error::Malformed, "missing pseudo-header");
    }
    if (path_[0] != '/' && !(path_ == "*" && method_ == "OPTIONS")) {
        return fail(Error::Malformed, "bad :path");
    }
    std::string host;
    if (has_authority_) {
        host = lower(authority_);
    } else if (const std::string* h = fields_.get("host")) {
        host = lower(*h);
    }
    const std::string* cl = fields_.get("content-length");
    std::uint64_t length = 0;
    if (cl != nullptr) {
        if (fields_.count("content-length") > 1 || cl->empty() ||
            !std::all_of(cl->begin(), cl->end(), [](char c) { return c >= '0' && c <= '9'; }) ||
            cl->size() > 18) {
            return fail(Error::Malformed, "bad content-length");
        }
        length = std::stoull(*cl);
    }
    out.method = method_;
    out.target = path_;
    out.host = host;
    auto q = path_.find('?');
    out.path = path_.substr(0, q);
    out.query = q == std::string::npos ? std::string() : path_.substr(q + 1);
    out.version_major = 2;
    out.version_minor = 0;
    out.fields = Fields();
    if (has_authority_) {
        out.fields.add("host", authority_);
    }
    for (const auto& f : fields_) {
        if (has_authority_ && f.name == "host") {
            continue;
        }
        out.fields.add(f.name, f.value);
    }
    if (!cookies_.empty()) {
        std::string joined;
        for (const auto& c : cookies_) {
            if (!joined.empty()) {
                joined += "; ";
            }
            joined += c;
        }
        out.fields.add("cookie", joined);
    }
    if (end_stream) {
        if (cl != nullptr && length != 0) {
            return fail(Error::Malformed, "content-length with no body");
        }
        out.framing = BodyFraming::None;
    } else if (cl != nullptr) {
        out.framing = BodyFraming::Length;
        out.content_length = length;
    } else {
        out.framing = BodyFraming::Chunked;
    }
    if (const std::string* expect = fields_.get("expect")) {
        out.expect_continue = lower(*expect) == "100-continue";
    }
    return true;
}

void h2ResponseFields(const OutgoingResponse& response, std::vector<Field>& out) {
    // Stub: the HTTP/1 serializer applies the edits and drops hop-by-hop fields; parse back.
    static const Fields kEmpty;
    static const FieldEdits kNoEdits;
    std::string text;
    appendForwardedFields(text, response.fields ? *response.fields : kEmpty,
                          response.edits ? *response.edits : kNoEdits);
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto eol = text.find("\r\n", pos);
        if (eol == std::string::npos) {
            break;
        }
        std::string_view line(text.data() + pos, eol - pos);
        pos = eol + 2;
        auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            continue;
        }
        std::string name = lower(line.substr(0, colon));
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
        if (isConnectionSpecific(name) || name == "te" || name == "trailer") {
            continue;
        }
        if (name == "content-length" &&
            (response.state_length || response.body != ResponseBody::Length)) {
            continue;
        }
        out.push_back(Field{std::move(name), std::string(value)});
    }
    if (response.state_length && response.body == ResponseBody::Length) {
        out.push_back(Field{"content-length", std::to_string(response.content_length)});
    }
}

}  // namespace strata::http
