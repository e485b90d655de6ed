#include "strata/proxy/router.h"

#include <algorithm>
#include <limits>
#include <re2/re2.h>

#include "strata/common/strings.h"

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

namespace {

std::unique_ptr<re2::RE2> compile(const std::string& pattern) {
    if (pattern.empty()) {
        return nullptr;
    }
    re2::RE2::Options options;
    options.set_log_errors(false);
    // The loader compiled it already (a bad one never reaches a snapshot).
    return std::make_unique<re2::RE2>(pattern, options);
}

// "/api/v1/x" -> "api"; "/" or "" -> "".
std::string_view firstSegment(std::string_view path) {
    if (path.empty() || path.front() != '/') {
        return {};
    }
    path.remove_prefix(1);
    return path.substr(0, path.find('/'));
}

// The segment every path a route accepts starts with, when there is one: a prefix holding a
// whole first segment ("/api/"), or an exact path. Else "" (the generic list).
std::string_view indexSegment(const config::RouteConditions& c) {
    if (!c.path_regex.empty()) {
        return {};
    }
    if (!c.path.empty()) {
        return firstSegment(c.path);
    }
    std::string_view prefix = c.path_prefix;
    if (prefix.size() < 2 || prefix.front() != '/') {
        return {};
    }
    const auto slash = prefix.find('/', 1);
    return slash == std::string_view::npos ? std::string_view() : prefix.substr(1, slash - 1);
}

// The value of query parameter `name` ("a=1&b=2"), or null when absent; "a" alone is "".
bool queryValue(std::string_view query, std::string_view name, std::string_view& value) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
            return true;
        }
    }
    return false;
}

}  // namespace

struct Router::Conditions {
    struct Field {
        std::string name;
        std::string value;
        std::unique_ptr<re2::RE2> regex;
        bool present = true;

        bool holds(bool found, std::string_view actual) const {
            if (!found) {
                return !present;
            }
            if (!present) {
                return false;
            }
            if (regex) {
                return re2::RE2::FullMatch(actual, *regex);
            }
            return value.empty() || actual == value;
        }
    };
    struct Host {
        std::string name;  // exact, or ".example.com" for "*.example.com"
        bool wildcard = false;
    };

    explicit Conditions(const config::RouteConditions& c)
        : path_prefix(c.path_prefix),
          path(c.path),
          path_regex(compile(c.path_regex)),
          methods(c.methods),
          listeners(c.listeners),
          clients(c.clients) {
        for (const auto& host : c.hosts) {
            if (host.size() > 2 && host[0] == '*' && host[1] == '.') {
                hosts.push_back({host.substr(1), true});
            } else {
                hosts.push_back({host, false});
            }
        }
        auto fields = [](const std::vector<config::FieldCondition>& in, std::vector<Field>& out) {
            for (const auto& f : in) {
                out.push_back({f.name, f.value, compile(f.regex), f.present});
            }
        };
        fields(c.headers, headers);
        fields(c.query, query);
    }

    bool holds(const RouteRequest& r, std::string_view bare_host) const {
        if (!hosts.empty() && std::none_of(hosts.begin(), hosts.end(), [&](const Host& h) {
                // "*.example.com" matches "a.example.com" and "a.b.example.com", not
                // "example.com" itself.
                return h.wildcard ? bare_host.size() > h.name.size() && bare_host.ends_with(h.name)
                                  : bare_host == h.name;
            })) {
            return false;
        }
        if (!r.path.starts_with(path_prefix) || (!path.empty() && r.path != path) ||
            (path_regex && !re2::RE2::FullMatch(r.path, *path_regex))) {
            return false;
        }
        if (!methods.empty() &&
            std::find(methods.begin(), methods.end(), r.method) == methods.end()) {
            return false;
        }
        if (!listeners.empty() &&
            std::find(listeners.begin(), listeners.end(), r.listener) == listeners.end()) {
            return false;
        }
        if (!clients.empty() && (r.client == nullptr || !net::inCidrs(clients, *r.client))) {
            return false;
        }
        for (const Field& f : headers) {
            const std::string* value = r.fields != nullptr ? r.fields->get(f.name) : nullptr;
            if (!f.holds(value != nullptr, value != nullptr ? std::string_view(*value) : "")) {
                return false;
            }
        }
        for (const Field& f : query) {
            std::string_view value;
            const bool found = queryValue(r.query, f.name, value);
            if (!f.holds(found, value)) {
                return false;
            }
        }
        return true;
    }

    std::vector<Host> hosts;
    std::string path_prefix;
    std::string path;
    std::unique_ptr<re2::RE2> path_regex;
    std::vector<std::string> methods;
    std::vector<std::string> listeners;
    std::vector<config::Cidr> clients;
    std::vector<Field> headers;
    std::vector<Field> query;
};

Router::Router(const std::vector<config::Route>& routes) {
    routes_.reserve(routes.size());
    negated_.reserve(routes.size());
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const config::RouteMatch& m = routes[i].match;
        routes_.push_back(std::make_unique<Conditions>(m));
        negated_.push_back(m.has_negated ? std::make_unique<Conditions>(m.negated) : nullptr);
        index(static_cast<std::uint32_t>(i), m);
    }
}

Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::add(Bucket& bucket, std::uint32_t route, const config::RouteConditions& c) {
    std::string_view segment = indexSegment(c);
    if (segment.empty()) {
        bucket.generic.push_back(route);
    } else {
        bucket.by_segment[std::string(segment)].push_back(route);
    }
}

void Router::index(std::uint32_t route, const config::RouteConditions& c) {
    if (c.hosts.empty()) {
        add(any_host_, route, c);
        return;
    }
    for (const auto& host : c.hosts) {
        if (host.size() > 2 && host[0] == '*' && host[1] == '.') {
            add(suffix_hosts_[host.substr(1)], route, c);
        } else {
            add(exact_hosts_[host], route, c);
        }
    }
}

int Router::match(const RouteRequest& request) const {
    const std::string_view bare_host = hostWithoutPort(request.host);
    const std::string_view segment = firstSegment(request.path);
    // At most: exact host, each "*.suffix" the host ends with, any host; two lists each.
    const std::vector<std::uint32_t>* lists[32];
    std::size_t count = 0;
    auto collect = [&](const Bucket& bucket) {
        if (!bucket.generic.empty() && count < std::size(lists)) {
            lists[count++] = &bucket.generic;
        }
        if (!bucket.by_segment.empty() && count < std::size(lists)) {
            if (auto it = bucket.by_segment.find(segment); it != bucket.by_segment.end()) {
                lists[count++] = &it->second;
            }
        }
    };
    if (!exact_hosts_.empty()) {
        if (auto it = exact_hosts_.find(bare_host); it != exact_hosts_.end()) {
            collect(it->second);
        }
    }
    if (!suffix_hosts_.empty()) {
        // Every proper suffix starting at a dot: "a.b.example.com" -> ".b.example.com", ...
        for (std::size_t dot = bare_host.find('.', 1); dot != std::string_view::npos;
             dot = bare_host.find('.', dot + 1)) {
            if (auto it = suffix_hosts_.find(bare_host.substr(dot)); it != suffix_hosts_.end()) {
                collect(it->second);
            }
        }
    }
    collect(any_host_);
    // The lowest route index that fully matches across the lists (each is in config order).
    std::uint32_t best = std::numeric_limits<std::uint32_t>::max();
    for (std::size_t l = 0; l < count; ++l) {
        for (std::uint32_t route : *lists[l]) {
            if (route >= best) {
                break;
            }
            if (routes_[route]->holds(request, bare_host) &&
                !(negated_[route] && negated_[route]->holds(request, bare_host))) {
                best = route;
                break;
            }
        }
    }
    return best == std::numeric_limits<std::uint32_t>::max() ? -1 : static_cast<int>(best);
}

int Router::match(std::string_view host, std::string_view path, std::string_view method) const {
    RouteRequest request;
    request.host = host;
    request.path = path;
    request.method = method;
    return match(request);
}

}  // namespace strata::proxy
