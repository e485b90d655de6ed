// Cache keys. The primary key names a URL ("https://example.com/a?x=1"); the secondary key names
// one variant of it: the request's values of the stored response's Vary fields (RFC 9111 4.1),
// plus the route's key headers (KeyPolicy::headers), which act as an implicit Vary. Several
// variants of one URL live side by side under one primary key, so a purge or an invalidation
// of a URL (which names only the primary key) removes all of them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace strata::http {
class Fields;
struct RequestHead;
}  // namespace strata::http

namespace strata::cache {

enum class QueryMode {
    // Keep every parameter, sorted by name; parameters sharing a name keep their relative order
    // (so "a=1&a=2" and "a=2&a=1" stay distinct, "b=1&a=1" and "a=1&b=1" share an entry). Empty
    // parameters ("&&") are dropped. The default: reordering is almost never meaningful.
    Sorted,
    AsIs,       // keep the query byte for byte
    Ignore,     // drop the whole query
    AllowList,  // keep only the parameters named in KeyPolicy::query_allow, sorted as above
};

struct KeyPolicy {
    QueryMode query = QueryMode::Sorted;
    std::vector<std::string> query_allow;  // parameter names for AllowList (exact match)
    // Request fields (per route) whose values select a variant, as if every response of the
    // route carried "Vary: <them>": they join the secondary key, never the primary one, so a
    // URL keeps one primary key for purge and invalidation (see addKeyFields()).
    std::vector<std::string> headers;
};

// "scheme://host[:port]path[?query]". The host is lowercased and the scheme's default port
// (80/443) stripped; the path is kept as received. `scheme` is "http" or "https" (the
// listener's). KeyPolicy::headers play no part here (see addKeyFields()).
std::string primaryKey(std::string_view scheme, const http::RequestHead& request,
                       const KeyPolicy& policy);
// The same for an absolute URI string (e.g. a Location value), used by invalidation and purge.
std::string primaryKeyForUri(std::string_view scheme, std::string_view host,
                             std::string_view path_and_query, const KeyPolicy& policy);

// Normalised Vary of a stored response: lowercase field names, sorted, deduplicated.
struct VarySpec {
    bool star = false;  // Vary: * (never matches, RFC 9111 4.1)
    std::vector<std::string> names;
    bool empty() const { return !star && names.empty(); }
};
VarySpec parseVary(const http::Fields& response_fields);
// Adds the route's key headers to a stored response's Vary (the implicit Vary), keeping the
// names lowercase, sorted and unique as parseVary() leaves them.
void addKeyFields(VarySpec& vary, const KeyPolicy& policy);

// The request's values of `vary`'s fields: per name, every field line joined by ","; spaces
// and tabs around list commas removed and runs of whitespace collapsed (RFC 9111 4.1 allows
// such normalisation). An absent field encodes differently from an empty one. "" for no Vary.
std::string secondaryKey(const VarySpec& vary, const http::Fields& request_fields);

}  // namespace strata::cache
