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

}  // namespace

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
