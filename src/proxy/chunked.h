// Chunked transfer coding onto an evbuffer (RFC 9112 7.1), shared by the client and upstream
// halves of an exchange. Private to the proxy module.
#pragma once

#include <cstdio>
#include <string_view>

#include <event2/buffer.h>

namespace strata::proxy {

// One chunk: hex size, CRLF, data, CRLF. Empty data would end the body, so callers skip it.
inline void appendChunk(evbuffer* out, std::string_view data) {
    char header[24];
    int n = std::snprintf(header, sizeof header, "%zx\r\n", data.size());
    evbuffer_add(out, header, static_cast<std::size_t>(n));
    evbuffer_add(out, data.data(), data.size());
    evbuffer_add(out, "\r\n", 2);
}

}  // namespace strata::proxy
