#include "strata/proxy/route_actions.h"

#include <algorithm>
#include <re2/re2.h>

#include "strata/common/strings.h"

namespace strata::proxy {

ValueTemplate::ValueTemplate(std::string_view text) : text_(text) {
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t open = text.find("${", at);
        const std::size_t close = open == std::string_view::npos ? open : text.find('}', open);
        if (close == std::string_view::npos) {
            pieces_.push_back({std::string(text.substr(at)), -1});
            break;
        }
        if (open > at) {
            pieces_.push_back({std::string(text.substr(at, open - at)), -1});
        }
        const std::string_view name = text.substr(open + 2, close - open - 2);
        const auto* known =
            std::find(config::kHeaderVariables.begin(), config::kHeaderVariables.end(), name);
        // The config loader refuses unknown names, so `known` is found; kept literal if not.
        if (known == config::kHeaderVariables.end()) {
            pieces_.push_back({std::string(text.substr(open, close - open + 1)), -1});
        } else {
            pieces_.push_back({{}, static_cast<int>(known - config::kHeaderVariables.begin())});
            constant_ = false;
        }
        at = close + 1;
    }
}

void ValueTemplate::expand(const RuleVariables& vars, std::string& out) const {
    if (constant_) {
        out = text_;
        return;
    }
    out.clear();
    for (const Piece& piece : pieces_) {
        switch (piece.variable) {
            case -1:
                out += piece.literal;
                break;
            case 0:
                out += vars.client_address;
                break;
            case 1:
                out += vars.request_id;
                break;
            case 2:
                out += vars.scheme;
                break;
            default:
                out += vars.host;
                break;
        }
    }
}

HeaderRuleSet::HeaderRuleSet(const config::HeaderRules& rules) {
    for (const auto& name : rules.remove) {
        drops_.push_back(name);
    }
    for (const auto& [name, value] : rules.set) {
        drops_.push_back(name);
        adds_.push_back({name, ValueTemplate(value)});
    }
    for (const auto& [name, value] : rules.add) {
        adds_.push_back({name, ValueTemplate(value)});
    }
}

bool HeaderRuleSet::dropsAnyOf(const http::Fields& fields) const {
    return std::any_of(drops_.begin(), drops_.end(),
                       [&](const std::string& name) { return fields.has(name); });
}

bool HeaderRuleSet::adds(std::string_view name) const {
    return std::any_of(adds_.begin(), adds_.end(),
                       [&](const Add& add) { return equalsIgnoreCase(add.name, name); });
}

void HeaderRuleSet::apply(http::FieldEdits& edits, const RuleVariables& vars,
                          std::vector<std::string>& storage) const {
    for (const auto& name : drops_) {
        edits.drop(name);
    }
    storage.reserve(storage.size() + adds_.size());  // no reallocation: edits keep views
    for (const Add& add : adds_) {
        if (add.value.constant()) {
            edits.add(add.name, add.value.text());
            continue;
        }
        add.value.expand(vars, storage.emplace_back());
        edits.add(add.name, storage.back());
    }
}

PathRewrite::PathRewrite(const config::RouteRewrite& rewrite)
    : strip_prefix_(rewrite.strip_prefix),
      add_prefix_(rewrite.add_prefix),
      replace_(rewrite.replace) {
    if (!rewrite.regex.empty()) {
        RE2::Options options;
        options.set_log_errors(false);
        // Over the whole path: a partial match would leave the rest of the path in place,
        // which is seldom what a rule with captures meant. (?:) keeps the group numbers.
        regex_ = std::make_unique<re2::RE2>("^(?:" + rewrite.regex + ")$", options);
    }
}

PathRewrite::~PathRewrite() = default;
PathRewrite::PathRewrite(PathRewrite&&) noexcept = default;
PathRewrite& PathRewrite::operator=(PathRewrite&&) noexcept = default;

std::string PathRewrite::apply(std::string_view path) const {
    if (regex_) {
        std::string out(path);
        if (regex_->ok()) {
            RE2::Replace(&out, *regex_, replace_);  // anchored: the whole path or nothing
        }
        return out;
    }
    std::string_view rest = path;
    if (!strip_prefix_.empty() && rest.starts_with(strip_prefix_)) {
        rest.remove_prefix(strip_prefix_.size());
    }
    std::string out = add_prefix_;
    if (!out.empty() && out.back() == '/' && rest.starts_with('/')) {
        out.pop_back();  // "/v1/" + "/users" = "/v1/users"
    }
    out += rest;
    if (out.empty() || out.front() != '/') {
        out.insert(out.begin(), '/');  // "/api" stripped from "/api" is "/", never ""
    }
    return out;
}

std::string redirectLocation(const config::RouteRedirect& redirect, std::string_view match_prefix,
                             std::string_view scheme, std::string_view host, std::string_view path,
                             std::string_view query) {
    const std::string_view new_scheme = redirect.scheme.empty() ? scheme : redirect.scheme;
    std::string_view new_host = redirect.host.empty() ? host : redirect.host;
    if (redirect.host.empty() && (new_scheme != scheme || redirect.port != 0)) {
        // The request's port belonged to its scheme (or is being replaced): drop it.
        const std::size_t bracket = new_host.rfind(']');
        const std::size_t colon = new_host.rfind(':');
        if (colon != std::string_view::npos &&
            (bracket == std::string_view::npos || colon > bracket)) {
            new_host = new_host.substr(0, colon);
        }
    }
    std::string out;
    out.reserve(new_scheme.size() + new_host.size() + path.size() + query.size() + 16);
    out.append(new_scheme).append("://").append(new_host);
    const bool default_port = (new_scheme == "https" && redirect.port == 443) ||
                              (new_scheme == "http" && redirect.port == 80);
    if (redirect.port != 0 && !default_port) {
        out += ':';
        out += std::to_string(redirect.port);
    }
    if (!redirect.path.empty()) {
        out += redirect.path;
    } else if (!redirect.prefix.empty() && path.starts_with(match_prefix)) {
        std::string_view rest = path.substr(match_prefix.size());
        out += redirect.prefix;
        if (out.back() == '/' && rest.starts_with('/')) {
            out.pop_back();
        }
        out += rest;
    } else {
        out += path;
    }
    if (redirect.query == "keep" && !query.empty()) {
        out += '?';
        out += query;
    }
    return out;
}

RouteActions RouteActions::compile(const config::Route& route) {
    RouteActions out;
    out.request_headers = HeaderRuleSet(route.request_headers);
    out.response_headers = HeaderRuleSet(route.response_headers);
    if (!route.rewrite.empty()) {
        out.rewrite = std::make_unique<PathRewrite>(route.rewrite);
    }
    out.redirect = route.redirect.enabled ? &route.redirect : nullptr;
    out.respond = route.respond.enabled ? &route.respond : nullptr;
    return out;
}

}  // namespace strata::proxy
