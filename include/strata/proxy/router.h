// Routes a request to a configured route: first match wins, in config order (DESIGN.md,
// "Request path" step 2). Matching is on host (exact or "*.suffix"), path prefix and method.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "strata/config/config.h"

namespace strata::proxy {

class Router {
public:
    explicit Router(const std::vector<config::Route>& routes);

    // Index into the routes vector, or -1. host is lowercase and may carry a port, which is
    // ignored for matching.
    int match(std::string_view host, std::string_view path, std::string_view method) const;

private:
    struct CompiledRoute {
        std::string host;  // exact host, or the suffix ".example.com" for wildcards
        bool wildcard = false;
        std::string path_prefix;
        std::vector<std::string> methods;
    };
    std::vector<CompiledRoute> routes_;
};

// "Example.COM:8080" -> "example.com" (lowercase is already done by the parser; drops the port).
std::string_view hostWithoutPort(std::string_view host);

}  // namespace strata::proxy
