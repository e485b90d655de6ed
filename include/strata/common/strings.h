// Small ASCII string helpers shared by the HTTP, config and cache code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strata {

inline char asciiLower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    // Field names mostly arrive in the case they are compared with: equal bytes skip lowering.
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i] != b[i] && asciiLower(a[i]) != asciiLower(b[i])) {
            return false;
        }
    }
    return true;
}

inline std::string toLower(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        c = asciiLower(c);
    }
    return out;
}

inline std::string_view trimOws(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Calls fn(token) for each comma-separated element of an HTTP list, trimmed, empty ones skipped.
template <typename Fn>
void forEachListElement(std::string_view list, Fn&& fn) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto item = trimOws(list.substr(0, comma));
        if (!item.empty()) {
            fn(item);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        list.remove_prefix(comma + 1);
    }
}

// Parses a non-negative decimal integer without sign, spaces or overflow.
std::optional<std::uint64_t> parseDecimal(std::string_view s);

}  // namespace strata
