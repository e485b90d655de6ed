#include "strata/proxy/real_client.h"

#include <string_view>

#include "strata/common/strings.h"

namespace strata::proxy {
namespace {

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// RFC 9110 5.6.2 tchar: what a Forwarded value may be without quotes (RFC 7239 4).
bool isToken(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (unsigned char c : s) {
        const bool alnum =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) ==
                          std::string_view::npos) {
            return false;
        }
    }
    return true;
}

void appendValue(std::string& out, std::string_view value) {
    if (isToken(value)) {
        out.append(value);
        return;
    }
    out.push_back('"');
    for (char c : value) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
        }
        out.push_back(c);
    }
    out.push_back('"');
}

}  // namespace

net::SocketAddress requestClient(const net::SocketAddress& peer, const http::Fields& fields,
                                 const config::Listener* listener) {
    if (listener != nullptr && !listener->trusted_proxies.empty()) {
        if (auto real = realClient(peer, fields, listener->trusted_proxies)) {
            return *real;
        }
    }
    return peer;
}

std::string forwardedElement(std::string_view peer, std::string_view host, bool https) {
    std::string out = "for=";
    if (peer.find(':') != std::string_view::npos) {
        out.append("\"[").append(peer).append("]\"");
    } else {
        appendValue(out, peer);
    }
    if (!host.empty()) {
        out.append(";host=");
        appendValue(out, host);
    }
    out.append(https ? ";proto=https" : ";proto=http");
    return out;
}

std::optional<net::SocketAddress> realClient(const net::SocketAddress& peer,
                                             const http::Fields& fields,
                                             const std::vector<config::Cidr>& trusted) {
    if (trusted.empty() || !net::inCidrs(trusted, peer)) {
        return std::nullopt;
    }
    // Entries right to left: fields last to first, each field's list from its end.
    std::optional<net::SocketAddress> leftmost;
    const auto& items = fields.items();
    for (auto field = items.rbegin(); field != items.rend(); ++field) {
        if (!equalsIgnoreCase(field->name, "X-Forwarded-For")) {
            continue;
        }
        std::string_view list = field->value;
        while (!list.empty()) {
            const std::size_t comma = list.rfind(',');
            const std::string_view entry =
                trimmed(comma == std::string_view::npos ? list : list.substr(comma + 1));
            list = comma == std::string_view::npos ? std::string_view() : list.substr(0, comma);
            if (entry.empty()) {
                continue;  // "a,,b": RFC 9110 5.6.1 empty list elements count for nothing
            }
            net::SocketAddress address;
            if (!net::parseIpLiteral(entry, address)) {
                return std::nullopt;
            }
            if (!net::inCidrs(trusted, address)) {
                return address;
            }
            leftmost = address;
        }
    }
    return leftmost;
}

}  // namespace strata::proxy
