#include "strata/proxy/body_processor.h"

#include <algorithm>

#include "strata/cache/cache_control.h"
#include "strata/common/log.h"
#include "strata/common/strings.h"

namespace strata::proxy {
RangeSet parseRange(std::string_view value, std::uint64_t length) {
    RangeSet out;
    value = trimOws(value);
    const auto eq = value.find('=');
    if (eq == std::string_view::npos || !equalsIgnoreCase(trimOws(value.substr(0, eq)), "bytes")) {
        return out;  // other range units are ignored (RFC 9110 14.1)
    }
    std::string_view rest = value.substr(eq + 1);
    std::vector<ByteRange> ranges;
    bool any_spec = false;
    while (true) {
        const auto comma = rest.find(',');
        std::string_view spec = trimOws(rest.substr(0, comma));
        if (!spec.empty()) {  // empty list elements are allowed (RFC 9110 5.6.1)
            any_spec = true;
            const auto dash = spec.find('-');
            if (dash == std::string_view::npos) {
                return out;
            }
            std::string_view a = spec.substr(0, dash);
            std::string_view b = spec.substr(dash + 1);
            if (a.empty()) {
                auto suffix = parseDecimal(b);
                if (!suffix) {
                    return out;
                }
                // A zero-length suffix or an empty representation selects nothing.
                if (*suffix > 0 && length > 0) {
                    ranges.push_back({length - std::min(*suffix, length), length - 1});
                }
            } else {
                auto first = parseDecimal(a);
                std::optional<std::uint64_t> last;
                if (!first) {
                    return out;
                }
                if (!b.empty()) {
                    last = parseDecimal(b);
                    if (!last || *last < *first) {
                        return out;  // invalid: the whole field is ignored (RFC 9110 14.1.1)
                    }
                }
                if (*first < length) {
                    ranges.push_back({*first, last ? std::min(*last, length - 1) : length - 1});
                }
            }
        }
        if (comma == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(comma + 1);
    }
    if (!any_spec) {
        return out;
    }
    if (ranges.empty()) {
        out.kind = RangeSet::Kind::Unsatisfiable;
        return out;
    }
    std::sort(ranges.begin(), ranges.end(),
              [](const ByteRange& x, const ByteRange& y) { return x.first < y.first; });
    std::vector<ByteRange> merged;
    for (const ByteRange& r : ranges) {
        if (!merged.empty() && r.first <= merged.back().last + 1) {
            merged.back().last = std::max(merged.back().last, r.last);
        } else {
            merged.push_back(r);
        }
    }
    if (merged.size() > kMaxRanges) {
        return out;
    }
    out.kind = RangeSet::Kind::Ranges;
    out.ranges = std::move(merged);
    return out;
}

std::string contentRange(const ByteRange& range, std::uint64_t length) {
    return "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) + "/" +
           std::to_string(length);
}

bool ifRangeMatches(std::string_view if_range, const cache::EntryMeta& meta, WallTime now) {
    if_range = trimOws(if_range);
    if (if_range.starts_with("W/")) {
        return false;  // a weak validator never allows a range (RFC 9110 13.1.5)
    }
    if (if_range.starts_with('"')) {
        std::string_view stored = trimOws(meta.etag);
        return !stored.starts_with("W/") && stored == if_range;
    }
    auto date = cache::parseHttpDate(if_range, now);
    return date && meta.last_modified && *date == *meta.last_modified;
}

std::vector<BodyPart> multipartParts(const std::vector<ByteRange>& ranges, std::uint64_t length,
                                     std::string_view content_type, std::string_view boundary) {
    std::vector<BodyPart> parts;
    bool first = true;
    for (const ByteRange& r : ranges) {
        std::string head = first ? "--" : "\r\n--";
        first = false;
        head.append(boundary);
        head.append("\r\n");
        if (!content_type.empty()) {
            head.append("Content-Type: ").append(content_type).append("\r\n");
        }
        head.append("Content-Range: ").append(contentRange(r, length)).append("\r\n\r\n");
        parts.push_back({std::move(head), 0, 0});
        parts.push_back({{}, r.first, r.last - r.first + 1});
    }
    parts.push_back({"\r\n--" + std::string(boundary) + "--\r\n", 0, 0});
    return parts;
}

DeliveryPlan planDelivery(const cache::CacheEntry& entry, std::string_view method,
                          std::string_view range, std::string_view if_range,
                          const http::Fields& request_fields, WallTime now,
                          std::string_view boundary) {
    DeliveryPlan plan;
    plan.status = entry.status();
    const std::uint64_t length = entry.bodySize();
    plan.content_length = length;
    if (entry.status() != 200) {
        return plan;  // ranges apply to a complete 200 representation only
    }
    const cache::EncodedBody* coded =
        range.empty() ? chooseStoredCoding(entry, method, request_fields) : nullptr;
    if (coded != nullptr) {
        // A stored coding: its whole body and head. Accept-Ranges is not offered for it, since
        // a range request is answered from identity (the origin's own field stays as stored).
        plan.coded = coded;
        plan.content_length = coded->body ? coded->body->size() : 0;
        return plan;
    }
    // The origin's own Accept-Ranges stays as stored (a whole answer's head is not re-serialized,
    // so it could not be dropped); otherwise the cache says what it can do.
    plan.accept_ranges = !entry.fields().has("Accept-Ranges");
    // GET is the only method with range semantics (RFC 9110 14.2): HEAD gets the full head.
    if (method != "GET" || range.empty()) {
        return plan;
    }
    if (!if_range.empty() && !ifRangeMatches(if_range, entry.meta(), now)) {
        return plan;
    }
    RangeSet set = parseRange(range, length);
    if (set.kind == RangeSet::Kind::Ignore) {
        return plan;
    }
    plan.whole_body = false;
    if (set.kind == RangeSet::Kind::Unsatisfiable) {
        plan.status = 416;
        plan.content_length = 0;
        plan.fields.emplace_back("Content-Range", "bytes */" + std::to_string(length));
        return plan;
    }
    plan.status = 206;
    if (set.ranges.size() == 1) {
        const ByteRange& r = set.ranges.front();
        plan.fields.emplace_back("Content-Range", contentRange(r, length));
        plan.parts.push_back({{}, r.first, r.last - r.first + 1});
        plan.content_length = r.last - r.first + 1;
        return plan;
    }
    const std::string* type = entry.fields().get("Content-Type");
    plan.parts = multipartParts(set.ranges, length, type ? std::string_view(*type) : "", boundary);
    plan.replace_content_type = true;
    plan.fields.emplace_back("Content-Type",
                             "multipart/byteranges; boundary=" + std::string(boundary));
    plan.content_length = 0;
    for (const BodyPart& p : plan.parts) {
        plan.content_length += p.length > 0 ? p.length : p.literal.size();
    }
    return plan;
}

CompressionPolicy compileCompression(const config::RouteCompression& config) {
    CompressionPolicy policy;
    policy.enabled = config.enabled;
    for (const std::string& token : config.encodings) {
        if (auto coding = http::parseCodingToken(token)) {
            policy.codings.push_back(*coding);
        }
    }
    policy.enabled = policy.enabled && !policy.codings.empty();
    policy.min_bytes = config.min_bytes;
    policy.types = config.types;
    policy.level = static_cast<int>(config.level);
    return policy;
}

bool compressible(const CompressionPolicy& policy, int status, const http::Fields& fields,
                  std::optional<std::uint64_t> length) {
    if (!policy.enabled || status != 200) {
        return false;
    }
    if (fields.has("Content-Encoding") || fields.has("Content-Range")) {
        return false;  // already coded by the origin (kept as it is), or a part of one
    }
    if (length && *length < policy.min_bytes) {
        return false;
    }
    const std::string* type = fields.get("Content-Type");
    if (type == nullptr || !http::typeListed(*type, policy.types)) {
        return false;
    }
    return !cache::responseDirectives(fields).cc.no_transform;
}

cache::EntryPtr encodeForStore(const cache::EntryPtr& entry, const CompressionPolicy& policy) {
    if (!entry || !entry->encoded().empty() ||
        !compressible(policy, entry->status(), entry->fields(), entry->bodySize())) {
        return entry;
    }
    std::vector<cache::EncodedBody> encoded;
    const std::string_view body = entry->body() ? std::string_view(*entry->body()) : "";
    for (http::Coding coding : policy.codings) {
        auto packed = http::compressBody(coding, body, policy.level);
        if (!packed) {
            LOG_WARN("compression: %.*s failed for a stored body; sent as identity",
                     static_cast<int>(http::codingToken(coding).size()),
                     http::codingToken(coding).data());
            continue;
        }
        if (packed->size() >= body.size()) {
            continue;  // incompressible (already packed data under a text type): not worth it
        }
        encoded.push_back(
            {coding, std::make_shared<const cache::Body>(std::move(*packed)), {}, {}});
    }
    // Vary: Accept-Encoding even when no coding paid off: the miss before the store said so,
    // and hits must agree with it.
    http::Fields fields = entry->fields();
    if (!fields.hasToken("Vary", "accept-encoding")) {
        fields.appendToList("Vary", "Accept-Encoding");
    }
    // The identity head and every coding's share the fields; meta (and so the secondary key)
    // is the origin's: one stored object answers every Accept-Encoding.
    return std::make_shared<const cache::CacheEntry>(entry->status(), entry->reason(),
                                                     std::move(fields), entry->body(),
                                                     entry->meta(), std::move(encoded));
}

const cache::EncodedBody* chooseStoredCoding(const cache::CacheEntry& entry,
                                             std::string_view method,
                                             const http::Fields& request_fields) {
    if (entry.encoded().empty() || entry.status() != 200 || (method != "GET" && method != "HEAD") ||
        request_fields.has("Range")) {
        return nullptr;
    }
    if (request_fields.has("Cache-Control") &&
        cache::requestDirectives(request_fields).no_transform) {
        return nullptr;
    }
    const http::AcceptEncoding accept = http::acceptEncodingOf(request_fields);
    if (!accept.present) {
        return nullptr;
    }
    http::Coding available[http::kCodingCount];
    std::size_t n = 0;
    for (const cache::EncodedBody& e : entry.encoded()) {
        if (n < std::size(available)) {
            available[n++] = e.coding;
        }
    }
    const http::Coding chosen =
        http::chooseCoding(accept, std::span<const http::Coding>(available, n));
    for (const cache::EncodedBody& e : entry.encoded()) {
        if (e.coding == chosen) {
            return &e;
        }
    }
    return nullptr;
}

}  // namespace strata::proxy
