// Conditional requests, 304 merging, client conditionals and invalidation (RFC 9111 4.3, 4.4).
#include "strata/cache/validation.h"

#include <algorithm>

#include "strata/common/strings.h"

namespace strata::cache {
namespace {

std::string_view opaqueTag(std::string_view tag, bool& weak) {
    tag = trimOws(tag);
    weak = tag.size() >= 2 && tag[0] == 'W' && tag[1] == '/';
    if (weak) {
        tag.remove_prefix(2);
    }
    return tag;
}

// Splits an If-None-Match list; entity-tags are quoted and cannot contain '"', so a comma
// inside quotes cannot occur in a valid tag, but we still only split outside quotes.
template <typename Fn>
void forEachTag(std::string_view list, Fn&& fn) {
    std::size_t start = 0;
    bool quoted = false;
    for (std::size_t i = 0; i <= list.size(); ++i) {
        if (i == list.size() || (list[i] == ',' && !quoted)) {
            auto item = trimOws(list.substr(start, i - start));
            if (!item.empty()) {
                fn(item);
            }
            start = i + 1;
        } else if (list[i] == '"') {
            quoted = !quoted;
        }
    }
}

// Splits an absolute or relative URI reference into (scheme, authority, path-and-query);
// returns false for forms strata does not resolve (e.g. "../x", fragments are dropped).
bool splitUri(std::string_view uri, std::string_view& scheme, std::string_view& authority,
              std::string_view& rest) {
    uri = uri.substr(0, uri.find('#'));
    auto sep = uri.find("://");
    if (sep != std::string_view::npos && sep > 0 && uri.find('/') > sep) {
        scheme = uri.substr(0, sep);
        std::string_view after = uri.substr(sep + 3);
        auto slash = after.find_first_of("/?");
        authority = after.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view("/") : after.substr(slash);
        return true;
    }
    if (!uri.empty() && uri[0] == '/' && !(uri.size() > 1 && uri[1] == '/')) {
        scheme = {};
        authority = {};
        rest = uri;
        return true;
    }
    return false;
}

}  // namespace

bool strongEtagMatch(std::string_view a, std::string_view b) {
    bool wa = false;
    bool wb = false;
    auto oa = opaqueTag(a, wa);
    auto ob = opaqueTag(b, wb);
    return !wa && !wb && !oa.empty() && oa == ob;
}

bool weakEtagMatch(std::string_view a, std::string_view b) {
    bool wa = false;
    bool wb = false;
    auto oa = opaqueTag(a, wa);
    auto ob = opaqueTag(b, wb);
    return !oa.empty() && oa == ob;
}

bool makeConditional(const CacheEntry& stored, http::Fields& f) {
    for (std::string_view name :
         {"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"}) {
        f.remove(name);
    }
    bool any = false;
    if (!stored.meta().etag.empty()) {
        f.set("If-None-Match", stored.meta().etag);
        any = true;
    }
    if (const std::string* lm = stored.fields().get("Last-Modified")) {
        f.set("If-Modified-Since", *lm);
        any = true;
    }
    return any;
}

bool notModifiedMatches(const CacheEntry& stored, const http::ResponseHead& nm) {
    // 4.3.4: select by strong validator first, then Last-Modified, else the one validated.
    if (const std::string* etag = nm.fields.get("ETag")) {
        bool weak = false;
        opaqueTag(*etag, weak);
        return weak ? weakEtagMatch(*etag, stored.meta().etag)
                    : strongEtagMatch(*etag, stored.meta().etag);
    }
    if (const std::string* lm = nm.fields.get("Last-Modified")) {
        const std::string* stored_lm = stored.fields().get("Last-Modified");
        return stored_lm && *stored_lm == *lm;
    }
    return true;
}

EntryPtr mergeNotModified(const CacheEntry& stored, const http::ResponseHead& nm,
                          const CachePolicy& policy, WallTime request_time,
                          WallTime response_time) {
    http::Fields update = nm.fields;
    ResponseDirectives upd_dir = responseDirectives(nm.fields);
    stripUnstoredFields(update, upd_dir.cc);
    http::Fields merged = stored.fields();
    // 4.3.4: replace stored fields by those the 304 carries (all lines of each name).
    for (const auto& f : update) {
        merged.remove(f.name);
    }
    for (const auto& f : update) {
        merged.add(f.name, f.value);
    }
    // Freshness is recomputed from the merged head as if it had just arrived: the 304's own
    // Date/Age/Cache-Control count, with the stored ones where it sent none.
    http::ResponseHead head;
    head.status = stored.status();
    head.reason = stored.reason();
    head.fields = merged;
    if (const std::string* age = nm.fields.get("Age")) {
        head.fields.set("Age", *age);  // 4.2.3 input only; stripped from the stored fields
    }
    if (!nm.fields.has("Date")) {
        // The stored Date is from the old exchange; age restarts at this one (RFC 9110 6.6.1).
        head.fields.remove("Date");
    }
    ResponseDirectives dir = responseDirectives(head.fields);
    EntryMeta meta = stored.meta();
    meta.freshness = freshnessInfo(head, dir, policy, request_time, response_time);
    meta.request_time = request_time;
    meta.date = ageInputs(head, request_time, response_time).date_value;
    if (const std::string* etag = merged.get("ETag")) {
        meta.etag = *etag;
    }
    if (const std::string* lm = merged.get("Last-Modified")) {
        meta.last_modified = parseHttpDate(*lm, response_time);
    }
    if (!stored.encoded().empty() && !merged.hasToken("Vary", "accept-encoding")) {
        // The stored codings still answer by Accept-Encoding, whatever Vary the 304 brought.
        merged.appendToList("Vary", "Accept-Encoding");
    }
    return std::make_shared<const CacheEntry>(stored.status(), stored.reason(), std::move(merged),
                                              stored.body(), std::move(meta),
                                              stored.encodedBodies());
}

ConditionalResult evaluateConditionals(const CacheEntry& stored, const http::RequestHead& req,
                                       WallTime now) {
    if (req.method != "GET" && req.method != "HEAD") {
        return ConditionalResult::None;
    }
    // RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it.
    bool has_inm = false;
    bool matched = false;
    for (const auto& f : req.fields) {
        if (!equalsIgnoreCase(f.name, "If-None-Match")) {
            continue;
        }
        has_inm = true;
        forEachTag(f.value, [&](std::string_view tag) {
            if (tag == "*" ||
                (!stored.meta().etag.empty() && weakEtagMatch(tag, stored.meta().etag))) {
                matched = true;
                return;
            }
            // A client holding one of the stored codings validates with its ETag ("abc-br"):
            // the same stored response, so the same 304 (RFC 9110 8.8.3 tags per coding).
            if (!stored.encoded().empty() && !stored.meta().etag.empty()) {
                if (auto identity = http::identityEtag(tag);
                    identity && weakEtagMatch(*identity, stored.meta().etag)) {
                    matched = true;
                }
            }
        });
    }
    if (has_inm) {
        return matched ? ConditionalResult::NotModified : ConditionalResult::None;
    }
    const std::string* ims = req.fields.get("If-Modified-Since");
    if (!ims) {
        return ConditionalResult::None;
    }
    auto since = parseHttpDate(*ims, now);
    if (!since) {
        return ConditionalResult::None;  // RFC 9110 13.1.3: invalid date, ignore the field
    }
    // RFC 9111 4.3.2: Last-Modified, else the stored Date (time of origination).
    WallTime modified = stored.meta().last_modified.value_or(stored.meta().date);
    return modified <= *since ? ConditionalResult::NotModified : ConditionalResult::None;
}

http::Fields notModifiedFields(const CacheEntry& stored) {
    http::Fields out;
    for (const auto& f : stored.fields()) {
        for (std::string_view name : {"Cache-Control", "Content-Location", "Date", "ETag",
                                      "Expires", "Vary", "CDN-Cache-Control", "Last-Modified"}) {
            if (equalsIgnoreCase(f.name, name)) {
                out.add(f.name, f.value);
                break;
            }
        }
    }
    return out;
}

std::vector<std::string> invalidationKeys(std::string_view scheme, const http::RequestHead& request,
                                          const http::ResponseHead& response,
                                          const KeyPolicy& policy) {
    return invalidationKeys(
        scheme, request, response,
        [&policy](std::string_view, std::string_view) -> const KeyPolicy& { return policy; });
}

std::vector<std::string> invalidationKeys(std::string_view scheme, const http::RequestHead& request,
                                          const http::ResponseHead& response,
                                          const KeyPolicyFor& policy_for) {
    std::vector<std::string> keys;
    // 4.4: unsafe methods with a non-error status (2xx or 3xx).
    if (isSafeMethod(request.method) || response.status < 200 || response.status >= 400) {
        return keys;
    }
    auto add = [&](std::string key) {
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
            keys.push_back(std::move(key));
        }
    };
    std::string target = request.path;
    if (!request.query.empty()) {
        target += "?" + request.query;
    }
    auto keyFor = [&](std::string_view path_and_query) {
        std::string_view path = path_and_query.substr(0, path_and_query.find('?'));
        const KeyPolicy& policy = policy_for(request.host, path.empty() ? "/" : path);
        return primaryKeyForUri(scheme, request.host, path_and_query, policy);
    };
    add(keyFor(target));
    // Only scheme and host are compared: the query policy plays no part.
    const KeyPolicy plain;
    const std::string own_host = primaryKeyForUri(scheme, request.host, "/", plain);
    for (std::string_view name : {"Location", "Content-Location"}) {
        const std::string* value = response.fields.get(name);
        if (!value) {
            continue;
        }
        std::string_view s;
        std::string_view authority;
        std::string_view rest;
        if (!splitUri(*value, s, authority, rest)) {
            continue;
        }
        if (s.empty()) {
            add(keyFor(rest));
            continue;
        }
        // Only the same origin: an attacker must not purge other hosts' entries (4.4).
        std::string other = primaryKeyForUri(toLower(s), authority, "/", plain);
        if (other == own_host) {
            add(keyFor(rest));
        }
    }
    return keys;
}

}  // namespace strata::cache
