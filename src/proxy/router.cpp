#include "strata/proxy/router.h"

#include <algorithm>

namespace strata::proxy {

std::string_view hostWithoutPort(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        auto close = host.find(']');
        return close == std::string_view::npos ? host : host.substr(0, close + 1);
    }
    auto colon = host.rfind(':');
    if (colon != std::string_view::npos) {
        return host.substr(0, colon);
    }
    return host;
}

Router::Router(const std::vector<config::Route>& routes) {
    routes_.reserve(routes.size());
    for (const auto& route : routes) {
        CompiledRoute compiled;
        const std::string& host = route.match.host;
        if (host.size() > 2 && host[0] == '*' && host[1] == '.') {
            compiled.wildcard = true;
            compiled.host = host.substr(1);  // ".example.com"
        } else {
            compiled.host = host;
        }
        compiled.path_prefix = route.match.path_prefix;
        compiled.methods = route.match.methods;
        routes_.push_back(std::move(compiled));
    }
}

int Router::match(std::string_view host, std::string_view path, std::string_view method) const {
    std::string_view bare_host = hostWithoutPort(host);
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        const CompiledRoute& route = routes_[i];
        if (!route.host.empty()) {
            if (route.wildcard) {
                // "*.example.com" matches "a.example.com" and "a.b.example.com", not
                // "example.com" itself.
                if (bare_host.size() <= route.host.size() || !bare_host.ends_with(route.host)) {
                    continue;
                }
            } else if (bare_host != route.host) {
                continue;
            }
        }
        if (!path.starts_with(route.path_prefix)) {
            continue;
        }
        if (!route.methods.empty() &&
            std::find(route.methods.begin(), route.methods.end(), method) == route.methods.end()) {
            continue;
        }
        return static_cast<int>(i);
    }
    return -1;
}

}  // namespace strata::proxy
