// Primary keys (URL) and secondary keys (Vary values), RFC 9111 2 and 4.1.
#include "strata/cache/key.h"

#include <algorithm>

#include "strata/common/strings.h"
#include "strata/http/content_coding.h"
#include "strata/http/message.h"

namespace strata::cache {
namespace {

std::string_view paramName(std::string_view param) {
    return param.substr(0, param.find('='));
}

// Appends the query as the policy keys it (without '?'); returns whether anything was added.
bool appendQuery(std::string& out, std::string_view query, const KeyPolicy& policy) {
    switch (policy.query) {
        case QueryMode::AsIs:
            out.append(query);
            return !query.empty();
        case QueryMode::Ignore:
            return false;
        case QueryMode::Sorted:
        case QueryMode::AllowList:
            break;
    }
    // Most queries have a handful of parameters: sort views of them on the stack.
    constexpr std::size_t kInline = 16;
    std::string_view inline_params[kInline];
    std::vector<std::string_view> many;
    std::size_t count = 0;
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view p = query.substr(0, amp);
        if (!p.empty()) {
            bool keep = policy.query != QueryMode::AllowList ||
                        std::find(policy.query_allow.begin(), policy.query_allow.end(),
                                  paramName(p)) != policy.query_allow.end();
            if (keep) {
                if (count < kInline) {
                    inline_params[count] = p;
                } else {
                    if (many.empty()) {
                        many.assign(inline_params, inline_params + kInline);
                    }
                    many.push_back(p);
                }
                ++count;
            }
        }
        if (amp == std::string_view::npos) {
            break;
        }
        query.remove_prefix(amp + 1);
    }
    std::string_view* begin = many.empty() ? inline_params : many.data();
    std::string_view* end = begin + count;
    // Stable: same-name parameters keep their order ("a=1&a=2" differs from "a=2&a=1").
    // Insertion sort for the usual handful (std::stable_sort allocates a scratch buffer).
    auto before = [](std::string_view a, std::string_view b) {
        return paramName(a) < paramName(b);
    };
    if (count <= kInline) {
        for (auto* p = begin + 1; p < end; ++p) {
            std::string_view moving = *p;
            auto* q = p;
            for (; q > begin && before(moving, *(q - 1)); --q) {
                *q = *(q - 1);
            }
            *q = moving;
        }
    } else {
        std::stable_sort(begin, end, before);
    }
    for (auto* p = begin; p != end; ++p) {
        if (p != begin) {
            out.push_back('&');
        }
        out.append(*p);
    }
    return count > 0;
}

// Appends the lowercase host without the scheme's default port. IPv6 literals keep their
// brackets.
void appendHost(std::string& out, std::string_view scheme, std::string_view host) {
    const std::size_t start = out.size();
    for (char c : host) {
        out.push_back(asciiLower(c));
    }
    std::string_view h = std::string_view(out).substr(start);
    auto colon = h.rfind(':');
    if (colon != std::string_view::npos && h.find(']', colon) == std::string_view::npos) {
        std::string_view port = h.substr(colon + 1);
        if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443") ||
            port.empty()) {
            out.resize(start + colon);
        }
    }
}

std::string buildKey(std::string_view scheme, std::string_view host, std::string_view path,
                     std::string_view query, bool has_query, const KeyPolicy& policy) {
    std::string key;
    key.reserve(scheme.size() + host.size() + path.size() + query.size() + 5);
    key.append(scheme);
    key.append("://");
    appendHost(key, scheme, host);
    key.append(path.empty() ? std::string_view("/") : path);
    if (has_query) {
        key.push_back('?');
        if (!appendQuery(key, query, policy)) {
            key.pop_back();
        }
    }
    return key;
}

// Appends a field value with list whitespace normalised: OWS around commas removed, inner
// whitespace runs collapsed to one space.
void appendNormalized(std::string& out, std::string_view value) {
    value = trimOws(value);
    bool space = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') {
            space = true;
            continue;
        }
        if (c == ',') {
            space = false;
            out.push_back(',');
            continue;
        }
        if (space && !out.empty() && out.back() != ',') {
            out.push_back(' ');
        }
        space = false;
        out.push_back(c);
    }
}

// Fields whose lists are sets of case-insensitive tokens with optional q-values (RFC 9110
// 12.5.3, 12.5.4; language tags and charsets compare without case): their members are keyed
// without whitespace, lower-cased and sorted, so "en-US, fr;q=0.8" and "fr; q=0.8,en-us" share
// one variant (RFC 9111 4.1). Order carries no meaning once weights are stated: equal weights
// are equally preferred.
bool isTokenSetField(std::string_view lower_name) {
    return lower_name == "accept-language" || lower_name == "accept-charset";
}

// False when the request has no such field.
bool appendTokenSet(std::string& out, const http::Fields& request_fields, std::string_view name) {
    std::vector<std::string> members;
    bool present = false;
    for (const auto& f : request_fields) {
        if (!equalsIgnoreCase(f.name, name)) {
            continue;
        }
        present = true;
        std::string_view list = f.value;
        while (!list.empty()) {
            const auto comma = list.find(',');
            std::string member;
            for (char c : list.substr(0, comma)) {
                if (c != ' ' && c != '\t') {
                    member.push_back(asciiLower(c));
                }
            }
            if (!member.empty()) {  // empty list elements do not count (RFC 9110 5.6.1)
                members.push_back(std::move(member));
            }
            list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        }
    }
    if (!present) {
        return false;
    }
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    out.push_back('=');
    for (std::size_t i = 0; i < members.size(); ++i) {
        if (i > 0) {
            out.push_back(',');
        }
        out.append(members[i]);
    }
    return true;
}

}  // namespace

std::string primaryKeyForUri(std::string_view scheme, std::string_view host,
                             std::string_view path_and_query, const KeyPolicy& policy) {
    auto q = path_and_query.find('?');
    if (q == std::string_view::npos) {
        return buildKey(scheme, host, path_and_query, {}, false, policy);
    }
    return buildKey(scheme, host, path_and_query.substr(0, q), path_and_query.substr(q + 1), true,
                    policy);
}

std::string primaryKey(std::string_view scheme, const http::RequestHead& request,
                       const KeyPolicy& policy) {
    return buildKey(scheme, request.host, request.path, request.query, !request.query.empty(),
                    policy);
}

VarySpec parseVary(const http::Fields& fields) {
    VarySpec spec;
    for (const auto& f : fields) {
        if (!equalsIgnoreCase(f.name, "Vary")) {
            continue;
        }
        forEachListElement(f.value, [&](std::string_view e) {
            if (e == "*") {
                spec.star = true;
            } else {
                spec.names.push_back(toLower(e));
            }
        });
    }
    std::sort(spec.names.begin(), spec.names.end());
    spec.names.erase(std::unique(spec.names.begin(), spec.names.end()), spec.names.end());
    return spec;
}

void addKeyFields(VarySpec& vary, const KeyPolicy& policy) {
    if (policy.headers.empty()) {
        return;
    }
    for (const auto& name : policy.headers) {
        vary.names.push_back(toLower(name));
    }
    std::sort(vary.names.begin(), vary.names.end());
    vary.names.erase(std::unique(vary.names.begin(), vary.names.end()), vary.names.end());
}

std::string secondaryKey(const VarySpec& vary, const http::Fields& request_fields) {
    if (vary.star) {
        return std::string(1, '*');  // Vary: * entries are never stored, so never equal
    }
    std::string out;
    for (const auto& name : vary.names) {
        out.append(name);
        if (name == "accept-encoding") {
            // By variant class, not by value: every spelling of "gzip, br" shares one variant,
            // and what varies by coding makes at most 16 (http::acceptClass()).
            out.push_back('=');
            out.append(http::acceptClassKey(http::acceptEncodingOf(request_fields)));
            out.push_back('\n');
            continue;
        }
        if (isTokenSetField(name)) {
            if (!appendTokenSet(out, request_fields, name)) {
                out.push_back('!');
            }
            out.push_back('\n');
            continue;
        }
        bool present = false;
        for (const auto& f : request_fields) {
            if (equalsIgnoreCase(f.name, name)) {
                out.push_back(present ? ',' : '=');
                appendNormalized(out, f.value);
                present = true;
            }
        }
        if (!present) {
            out.push_back('!');  // absent differs from empty ("name=")
        }
        out.push_back('\n');
    }
    return out;
}

}  // namespace strata::cache
