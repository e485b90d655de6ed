// The request-target and authority checks shared by the HTTP/1 parser and the HTTP/2 mapping.
#include "syntax.h"

#include "strata/common/strings.h"

namespace strata::http {

bool isValidAuthority(std::string_view a) {
    if (a.empty()) {
        return false;
    }
    std::string_view host = a;
    std::string_view port;
    bool has_port = false;
    if (a.front() == '[') {
        auto close = a.find(']');
        if (close == std::string_view::npos || close < 2) {
            return false;
        }
        for (char c : a.substr(1, close - 1)) {
            if (!isHexDigit(c) && c != ':' && c != '.') {
                return false;
            }
        }
        host = a.substr(0, close + 1);
        std::string_view rest = a.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return false;
            }
            has_port = true;
            port = rest.substr(1);
        }
    } else {
        auto colon = a.find(':');
        if (colon != std::string_view::npos) {
            has_port = true;
            host = a.substr(0, colon);
            port = a.substr(colon + 1);
        }
        if (host.empty() || !allOf(host.data(), host.size(), kRegName)) {
            return false;
        }
        for (std::size_t i = 0; i < host.size(); ++i) {
            if (host[i] == '%' &&
                (i + 2 >= host.size() || !isHexDigit(host[i + 1]) || !isHexDigit(host[i + 2]))) {
                return false;
            }
        }
    }
    if (has_port) {
        if (port.empty() || port.size() > 5) {
            return false;
        }
        for (char c : port) {
            if (c < '0' || c > '9') {
                return false;
            }
        }
    }
    return true;
}

void splitPathQuery(std::string_view pq, RequestHead& head) {
    auto q = pq.find('?');
    if (q == std::string_view::npos) {
        head.path.assign(pq);
        head.query.clear();
    } else {
        head.path.assign(pq.substr(0, q));
        head.query.assign(pq.substr(q + 1));
    }
}

void setHost(std::string_view authority, RequestHead& head) {
    head.host.resize(authority.size());
    for (std::size_t i = 0; i < authority.size(); ++i) {
        head.host[i] = asciiLower(authority[i]);
    }
}

}  // namespace strata::http
