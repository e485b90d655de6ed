// A route's actions and rules, compiled once per config snapshot (CompiledRoute::actions):
// the answers a route gives itself (redirect, respond), the path it forwards (rewrite), and
// its header rules. Request rules edit the head sent upstream; response rules edit every
// answer of the route through Transaction's one response-head builder, so a rule reaches
// cache hits and forwarded answers alike.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "strata/config/config.h"
#include "strata/http/message.h"

namespace re2 {
class RE2;
}

namespace strata::proxy {

// What ${NAME} in a rule value stands for, per request (config::kHeaderVariables).
struct RuleVariables {
    std::string_view client_address;
    std::string_view request_id;
    std::string_view scheme;  // "http" | "https", the listener's
    std::string_view host;
};

// A rule value split once into literal text and variable references.
class ValueTemplate {
public:
    explicit ValueTemplate(std::string_view text);
    bool constant() const { return constant_; }
    const std::string& text() const { return text_; }  // the value as written
    void expand(const RuleVariables& vars, std::string& out) const;

private:
    struct Piece {
        std::string literal;
        int variable = -1;  // index into config::kHeaderVariables, or -1: the literal
    };
    std::vector<Piece> pieces_;
    std::string text_;
    bool constant_ = true;
};

class HeaderRuleSet {
public:
    HeaderRuleSet() = default;
    explicit HeaderRuleSet(const config::HeaderRules& rules);
    bool empty() const { return drops_.empty() && adds_.empty(); }
    // Whether a rule drops a field `fields` holds: a stored head serialized with it cannot be
    // sent as it is.
    bool dropsAnyOf(const http::Fields& fields) const;
    // Whether a rule adds a field of this name (set or add).
    bool adds(std::string_view name) const;
    // Adds the rules' edits. Expanded values live in `storage`, which must outlive `edits`.
    void apply(http::FieldEdits& edits, const RuleVariables& vars,
               std::vector<std::string>& storage) const;

private:
    struct Add {
        std::string name;
        ValueTemplate value;
    };
    std::vector<std::string> drops_;  // remove, and the names `set` replaces
    std::vector<Add> adds_;           // set, then add
};

// routes[].rewrite: the path sent upstream. Without one, the path stays the client's.
class PathRewrite {
public:
    explicit PathRewrite(const config::RouteRewrite& rewrite);
    ~PathRewrite();
    PathRewrite(PathRewrite&&) noexcept;
    PathRewrite& operator=(PathRewrite&&) noexcept;
    // The new path for `path` (no query); `path` itself when nothing applies.
    std::string apply(std::string_view path) const;

private:
    std::string strip_prefix_;
    std::string add_prefix_;
    std::unique_ptr<re2::RE2> regex_;
    std::string replace_;
};

// The Location of a routes[].redirect answer for a request to `scheme`://`host``path`?`query`
// on a route matching `match_prefix` (its match.path_prefix).
std::string redirectLocation(const config::RouteRedirect& redirect, std::string_view match_prefix,
                             std::string_view scheme, std::string_view host, std::string_view path,
                             std::string_view query);

struct RouteActions {
    HeaderRuleSet request_headers;
    HeaderRuleSet response_headers;
    std::unique_ptr<PathRewrite> rewrite;             // null: forward the client's path
    const config::RouteRedirect* redirect = nullptr;  // into the snapshot's config; null: none
    const config::RouteRespond* respond = nullptr;

    static RouteActions compile(const config::Route& route);
};

}  // namespace strata::proxy
