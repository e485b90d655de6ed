// Character classes and request-target helpers shared by the HTTP/1 parser and the HTTP/2
// header mapping, so that both protocols accept the same bytes and produce the same heads for
// the same request. Internal to the http module.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "strata/http/message.h"

namespace strata::http {

inline constexpr std::size_t kMaxMethodLength = 32;

// Byte classes, one table lookup per byte on the hot path.
enum : std::uint8_t {
    kTchar = 1,       // RFC 9110 5.6.2 token
    kFieldByte = 2,   // field-value / reason-phrase: HTAB, SP, VCHAR, obs-text
    kTargetByte = 4,  // request-target: VCHAR except '#' (fragments are never sent)
    kRegName = 8,     // RFC 3986 reg-name: unreserved / sub-delims / '%'
};

constexpr std::array<std::uint8_t, 256> makeByteClasses() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        std::uint8_t v = 0;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool digit = c >= '0' && c <= '9';
        std::string_view tspecial = "!#$%&'*+-.^_`|~";
        if (alpha || digit || (c < 128 && tspecial.find(static_cast<char>(c)) != tspecial.npos)) {
            v |= kTchar;
        }
        if (c == '\t' || (c >= 0x20 && c != 0x7f)) {
            v |= kFieldByte;
        }
        if (c > 0x20 && c < 0x7f && c != '#') {
            v |= kTargetByte;
        }
        std::string_view reg = "-._~!$&'()*+,;=%";
        if (alpha || digit || (c < 128 && reg.find(static_cast<char>(c)) != reg.npos)) {
            v |= kRegName;
        }
        t[static_cast<std::size_t>(c)] = v;
    }
    return t;
}
inline constexpr std::array<std::uint8_t, 256> kByteClasses = makeByteClasses();

// Branch-free over the span (the common case is all valid): AND the classes of every byte.
inline bool allOf(const char* p, std::size_t n, std::uint8_t cls) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    std::uint8_t all = 0xff;
    std::size_t i = 0;
    // Four lookups per step: this runs over every byte of every head.
    for (; i + 4 <= n; i += 4) {
        all &= static_cast<std::uint8_t>(kByteClasses[u[i]] & kByteClasses[u[i + 1]] &
                                         kByteClasses[u[i + 2]] & kByteClasses[u[i + 3]]);
    }
    for (; i < n; ++i) {
        all &= kByteClasses[u[i]];
    }
    return (all & cls) != 0;
}
inline bool allOf(std::string_view s, std::uint8_t cls) {
    return allOf(s.data(), s.size(), cls);
}

inline bool isHexDigit(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// uri-host [ ":" port ] (RFC 9110 7.2). The port must be 1..5 digits when the colon is present.
bool isValidAuthority(std::string_view a);

// Sets head.path and head.query from an origin-form "path?query".
void splitPathQuery(std::string_view pq, RequestHead& head);

// head.host from an authority: lowercase, port kept.
void setHost(std::string_view authority, RequestHead& head);

}  // namespace strata::http
