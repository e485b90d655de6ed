// Unit parsers ("250ms", "64MiB", "host:port") and their inverses. Strict on purpose: a config
// value that could mean two things ("1M": mebi or mega? minutes or megabytes?) is an error, not
// a guess.
#include "units.h"

#include <arpa/inet.h>
#include <array>
#include <limits>
#include <string_view>

#include "strata/common/strings.h"
#include "strata/config/config.h"

namespace strata::config {

namespace {

struct UnitScale {
    std::string_view suffix;
    std::uint64_t factor;
};

constexpr std::array<UnitScale, 6> kDurationUnits{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"d", 24 * 60 * 60 * 1000},
    {"", 1000},  // bare integer: seconds, as nginx and HAProxy read them
}};

constexpr std::uint64_t kKB = 1000;
constexpr std::uint64_t kTiB = 1024 * kGiB;

constexpr std::array<UnitScale, 11> kByteUnits{{
    {"KiB", kKiB},
    {"MiB", kMiB},
    {"GiB", kGiB},
    {"TiB", kTiB},
    {"kB", kKB},
    {"KB", kKB},
    {"MB", kKB* kKB},
    {"GB", kKB* kKB* kKB},
    {"TB", kKB* kKB* kKB* kKB},
    {"B", 1},
    {"", 1},
}};

// Splits "250ms" into 250 and "ms"; false unless the text is digits followed by letters only.
bool splitNumber(std::string_view text, std::uint64_t& number, std::string_view& suffix) {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        ++digits;
    }
    if (digits == 0) {
        return false;
    }
    auto value = parseDecimal(text.substr(0, digits));
    if (!value) {
        return false;  // more than 19 digits
    }
    number = *value;
    suffix = text.substr(digits);
    return true;
}

template <std::size_t N>
bool scale(std::string_view text, const std::array<UnitScale, N>& units, std::uint64_t limit,
           std::uint64_t& out) {
    std::uint64_t number = 0;
    std::string_view suffix;
    if (!splitNumber(text, number, suffix)) {
        return false;
    }
    for (const auto& unit : units) {
        if (unit.suffix == suffix) {
            if (number > limit / unit.factor) {
                return false;
            }
            out = number * unit.factor;
            return true;
        }
    }
    return false;
}

bool isDigits(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

}  // namespace

bool parseDuration(const std::string& text, Duration& out) {
    std::uint64_t ms = 0;
    if (!scale(text, kDurationUnits,
               static_cast<std::uint64_t>(std::numeric_limits<Duration::rep>::max()), ms)) {
        return false;
    }
    out = Duration(static_cast<Duration::rep>(ms));
    return true;
}

bool parseBytes(const std::string& text, std::uint64_t& out) {
    return scale(text, kByteUnits, std::numeric_limits<std::uint64_t>::max(), out);
}

std::string formatDuration(Duration d) {
    auto ms = d.count();
    if (ms == 0) {
        return "0s";
    }
    // Largest exact unit first, so defaults read as an operator would write them.
    static constexpr std::array<UnitScale, 5> kOrder{{
        {"d", 24 * 60 * 60 * 1000},
        {"h", 60 * 60 * 1000},
        {"m", 60 * 1000},
        {"s", 1000},
        {"ms", 1},
    }};
    for (const auto& unit : kOrder) {
        auto factor = static_cast<Duration::rep>(unit.factor);
        if (ms % factor == 0) {
            return std::to_string(ms / factor) + std::string(unit.suffix);
        }
    }
    return std::to_string(ms) + "ms";
}

std::string formatBytes(std::uint64_t bytes) {
    if (bytes == 0) {
        return "0";
    }
    static constexpr std::array<UnitScale, 8> kOrder{{
        {"TiB", kTiB},
        {"GiB", kGiB},
        {"MiB", kMiB},
        {"KiB", kKiB},
        {"TB", kKB * kKB * kKB * kKB},
        {"GB", kKB * kKB * kKB},
        {"MB", kKB * kKB},
        {"kB", kKB},
    }};
    for (const auto& unit : kOrder) {
        if (bytes % unit.factor == 0) {
            return std::to_string(bytes / unit.factor) + std::string(unit.suffix);
        }
    }
    return std::to_string(bytes);
}

bool parseEndpoint(const std::string& text, Endpoint& out, std::string& error) {
    return detail::parseEndpointWithMinPort(text, 0, out, error);
}

namespace detail {

bool parseEndpointWithMinPort(const std::string& text, int min_port, Endpoint& out,
                              std::string& error) {
    constexpr std::string_view kExpected = "expected host:port, [ipv6]:port or :port";
    std::string_view s(text);
    if (s.empty()) {
        error = "empty address; " + std::string(kExpected);
        return false;
    }
    std::string host;
    std::string_view port_text;
    if (s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) {
            error = "missing ']' after IPv6 address; " + std::string(kExpected);
            return false;
        }
        host = std::string(s.substr(1, close - 1));
        auto rest = s.substr(close + 1);
        if (rest.empty() || rest.front() != ':') {
            error = "missing port after ']'; " + std::string(kExpected);
            return false;
        }
        port_text = rest.substr(1);
        in6_addr addr6{};
        if (::inet_pton(AF_INET6, host.c_str(), &addr6) != 1) {
            error = "invalid IPv6 address \"" + host + "\"";
            return false;
        }
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos) {
            error = "missing port in \"" + text + "\"; " + std::string(kExpected);
            return false;
        }
        auto host_view = s.substr(0, colon);
        port_text = s.substr(colon + 1);
        if (host_view.find(':') != std::string_view::npos) {
            error = "IPv6 address must be in brackets, e.g. \"[::1]:8080\"";
            return false;
        }
        host = std::string(host_view);
        if (equalsIgnoreCase(host, "localhost")) {
            host = "127.0.0.1";
        } else if (!host.empty()) {
            in_addr addr4{};
            if (::inet_pton(AF_INET, host.c_str(), &addr4) != 1) {
                bool has_letter = false;
                for (char c : host) {
                    has_letter = has_letter || (asciiLower(c) >= 'a' && asciiLower(c) <= 'z');
                }
                if (has_letter) {
                    error = "host \"" + host +
                            "\" is a name; strata never resolves DNS, use a numeric IPv4 or "
                            "[IPv6] address";
                } else {
                    error = "invalid IPv4 address \"" + host + "\"";
                }
                return false;
            }
        }
    }
    if (!isDigits(port_text)) {
        error = port_text.empty() ? "missing port; " + std::string(kExpected)
                                  : "invalid port \"" + std::string(port_text) + "\"";
        return false;
    }
    auto port = parseDecimal(port_text);
    if (!port || *port > 65535 || *port < static_cast<std::uint64_t>(min_port)) {
        error = "port " + std::string(port_text) + " out of range " + std::to_string(min_port) +
                "..65535";
        return false;
    }
    out.host = std::move(host);
    out.port = static_cast<std::uint16_t>(*port);
    out.text = text;
    return true;
}

std::string canonicalHost(const std::string& host) {
    // "" (":port") is bound as 0.0.0.0 by the net module, which also sets IPV6_V6ONLY: the v4
    // and v6 wildcards are distinct sockets.
    if (host.empty()) {
        return "0.0.0.0";
    }
    char buf[INET6_ADDRSTRLEN] = {};
    in_addr addr4{};
    in6_addr addr6{};
    if (::inet_pton(AF_INET, host.c_str(), &addr4) == 1) {
        return ::inet_ntop(AF_INET, &addr4, buf, sizeof(buf)) ? std::string(buf) : host;
    }
    if (::inet_pton(AF_INET6, host.c_str(), &addr6) == 1) {
        return ::inet_ntop(AF_INET6, &addr6, buf, sizeof(buf)) ? std::string(buf) : host;
    }
    return host;
}

}  // namespace detail

}  // namespace strata::config
