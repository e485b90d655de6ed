// Routes a request to a configured route: first match wins, in config order (DESIGN.md,
// "Request path" step 2). A route matches on host (exact, "*.suffix", or a list), path (prefix,
// exact, RE2 regular expression), method, request headers, query parameters and the listener,
// minus an optional `not` block.
//
// Cost. Matching is not linear in the number of routes: routes are indexed by host (exact names
// in a hash map, "*.suffix" patterns by suffix, the rest in an any-host bucket) and, inside each,
// by the first segment of their path ("/api/..." under "api"; a prefix without a whole first
// segment, an exact "/" or a regex goes in a per-host generic list). A request looks at the few
// candidate lists its host and first segment select and takes the lowest-indexed route whose
// full conditions hold, which is what a scan in config order would find.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/config/config.h"
#include "strata/http/message.h"
#include "strata/net/socket.h"

namespace re2 {
class RE2;
}

namespace strata::proxy {

// What a route can be matched on. `host` is lowercase and may carry a port (ignored).
struct RouteRequest {
    std::string_view host;
    std::string_view path;   // without the query
    std::string_view query;  // without the '?'
    std::string_view method;
    std::string_view listener;             // listener name; "" matches only listener-free routes
    const http::Fields* fields = nullptr;  // null: no request fields (header conditions fail)
    // The real client (behind the listener's trusted_proxies) or the peer; null: client
    // conditions fail.
    const net::SocketAddress* client = nullptr;
};

// A parsed request head (HTTP/1.1 or HTTP/2) as the router sees it.
inline RouteRequest routeRequest(const http::RequestHead& head, std::string_view listener,
                                 const net::SocketAddress* client = nullptr) {
    RouteRequest r;
    r.host = head.host;
    r.path = head.path;
    r.query = head.query;
    r.method = head.method;
    r.listener = listener;
    r.fields = &head.fields;
    r.client = client;
    return r;
}

class Router {
public:
    explicit Router(const std::vector<config::Route>& routes);
    ~Router();
    Router(Router&&) noexcept;
    Router& operator=(Router&&) noexcept;

    // Index into the routes vector, or -1.
    int match(const RouteRequest& request) const;
    // Host, path and method only (purge and invalidation keying): conditions on fields or
    // listeners do not hold.
    int match(std::string_view host, std::string_view path, std::string_view method) const;

    struct Conditions;  // compiled config::RouteConditions

private:
    // Looked up by string_view: no allocation per request.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    template <class V>
    using Map = std::unordered_map<std::string, V, Hash, std::equal_to<>>;
    struct Bucket {
        Map<std::vector<std::uint32_t>> by_segment;
        std::vector<std::uint32_t> generic;
    };
    void index(std::uint32_t route, const config::RouteConditions& c);
    static void add(Bucket& bucket, std::uint32_t route, const config::RouteConditions& c);

    std::vector<std::unique_ptr<Conditions>> routes_;
    std::vector<std::unique_ptr<Conditions>> negated_;  // parallel; null without `not`
    Map<Bucket> exact_hosts_;
    Map<Bucket> suffix_hosts_;  // ".example.com"
    Bucket any_host_;
};

// "Example.COM:8080" -> "example.com" (lowercase is already done by the parser; drops the port).
std::string_view hostWithoutPort(std::string_view host);

}  // namespace strata::proxy
