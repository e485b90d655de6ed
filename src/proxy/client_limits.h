// The client-side limits of config::Limits in the http module's terms, for both codecs: the
// HTTP/1 parser gets them all, the HTTP/2 stream applies the same underscore rule to its fields.
#pragma once

#include "strata/config/config.h"
#include "strata/http/message.h"
#include "strata/http/parser.h"

namespace strata::proxy {

inline http::UnderscoreFields underscoreMode(const config::Limits& limits) {
    return limits.underscores_in_headers == "allow"    ? http::UnderscoreFields::Allow
           : limits.underscores_in_headers == "reject" ? http::UnderscoreFields::Reject
                                                       : http::UnderscoreFields::Drop;
}

inline http::ParserLimits parserLimits(const config::Limits& limits) {
    http::ParserLimits out;
    out.max_request_line_bytes = limits.max_request_line_bytes;
    out.max_header_bytes = limits.max_header_bytes;
    out.max_headers = limits.max_headers;
    out.max_body_bytes = limits.max_request_body_bytes;
    out.underscores = underscoreMode(limits);
    return out;
}

}  // namespace strata::proxy
