// CacheEntry construction and serving helpers.
#include "strata/cache/entry.h"

#include <algorithm>

#include "strata/common/strings.h"

namespace strata::cache {

void* retainBody(const BodyPtr& body) {
    return new BodyPtr(body);
}

void releaseBody(const void* /*data*/, std::size_t /*len*/, void* extra) {
    delete static_cast<BodyPtr*>(extra);
}

CacheEntry::CacheEntry(int status, std::string reason, http::Fields fields, BodyPtr body,
                       EntryMeta meta, std::vector<EncodedBody> encoded)
    : status_(status),
      reason_(std::move(reason)),
      fields_(std::move(fields)),
      body_(std::move(body)),
      meta_(std::move(meta)),
      encoded_(std::move(encoded)) {
    if (reason_.empty()) {
        reason_ = std::string(http::reasonPhrase(status_));
    }
    http::appendStatusLine(head_, status_, reason_, 1);
    http::appendFields(head_, fields_);
    for (EncodedBody& e : encoded_) {
        e.fields = fields_;
        // RFC 9110 8.8.3: the coded bytes are another representation, so another strong ETag.
        const std::string* etag = fields_.get("ETag");
        if (etag != nullptr) {
            std::string coded = http::encodedEtag(*etag, e.coding);
            if (coded.empty()) {
                e.fields.remove("ETag");
            } else {
                e.fields.set("ETag", coded);
            }
        }
        e.fields.remove("Content-Encoding");
        e.fields.add("Content-Encoding", http::codingToken(e.coding));
        e.head.clear();
        http::appendStatusLine(e.head, status_, reason_, 1);
        http::appendFields(e.head, e.fields);
    }
}

std::vector<EncodedBody> CacheEntry::encodedBodies() const {
    std::vector<EncodedBody> out;
    out.reserve(encoded_.size());
    for (const EncodedBody& e : encoded_) {
        out.push_back({e.coding, e.body, {}, {}});
    }
    return out;
}

Seconds CacheEntry::currentAge(WallTime now) const {
    return cache::currentAge(meta_.freshness.corrected_initial_age, meta_.freshness.response_time,
                             now);
}

void CacheEntry::appendHead(std::string& out, WallTime now) const {
    out.append(head_);
    out.append("Age: ");
    out.append(std::to_string(std::min<std::int64_t>(currentAge(now).count(), kDeltaSecondsMax)));
    out.append("\r\n");
}

std::uint64_t CacheEntry::charge() const {
    std::uint64_t n = sizeof(CacheEntry) + head_.capacity() + reason_.capacity();
    for (const auto& f : fields_) {
        n += sizeof(http::Field) + f.name.capacity() + f.value.capacity();
    }
    n += meta_.primary_key.capacity() + meta_.secondary_key.capacity() + meta_.etag.capacity();
    for (const auto& s : meta_.vary.names) {
        n += sizeof(std::string) + s.capacity();
    }
    for (const auto& s : meta_.tags) {
        n += sizeof(std::string) + s.capacity();
    }
    if (body_) {
        // The control block of make_shared plus the block itself.
        n += sizeof(Body) + 32 + body_->capacity();
    }
    for (const EncodedBody& e : encoded_) {
        n += sizeof(EncodedBody) + e.head.capacity();
        for (const auto& f : e.fields) {
            n += sizeof(http::Field) + f.name.capacity() + f.value.capacity();
        }
        if (e.body) {
            n += sizeof(Body) + 32 + e.body->capacity();
        }
    }
    return n;
}

EntryPtr CacheEntry::withSoftPurge() const {
    EntryMeta meta = meta_;
    meta.freshness.soft_purged = true;
    return std::make_shared<const CacheEntry>(status_, reason_, fields_, body_, std::move(meta),
                                              encodedBodies());
}

void stripUnstoredFields(http::Fields& fields, const CacheControl& cc) {
    // 3.1: hop-by-hop fields are not stored; framing is recomputed when serving; Age is
    // computed at serve time (5.1); Strata-Cache-Control is targeted at us (RFC 9213 2.1).
    http::removeHopByHop(fields);
    for (std::string_view name :
         {"Content-Length", "Transfer-Encoding", "Age", "Strata-Cache-Control"}) {
        fields.remove(name);
    }
    // 5.2.2.7 / 5.2.2.4 qualified forms: those fields are not shared / not reused.
    for (const auto& name : cc.private_fields) {
        fields.remove(name);
    }
    for (const auto& name : cc.no_cache_fields) {
        fields.remove(name);
    }
}

EntryPtr buildEntry(const StoreInput& in) {
    const http::ResponseHead& resp = *in.response;
    http::Fields fields = resp.fields;
    stripUnstoredFields(fields, in.directives->cc);
    if (!fields.has("Date")) {
        // RFC 9110 6.6.1: a cache with a clock that stores a response without Date appends one
        // for the time it was received, so every hit carries the same Date the miss did.
        fields.add("Date", formatHttpDate(in.response_time));
    }

    EntryMeta meta;
    meta.primary_key = in.primary_key;
    meta.vary = parseVary(resp.fields);
    if (in.key_policy != nullptr) {
        addKeyFields(meta.vary, *in.key_policy);
    }
    meta.secondary_key = secondaryKey(meta.vary, in.request->fields);
    meta.freshness =
        freshnessInfo(resp, *in.directives, *in.policy, in.request_time, in.response_time);
    meta.request_time = in.request_time;
    meta.date = ageInputs(resp, in.request_time, in.response_time).date_value;
    if (const std::string* etag = resp.fields.get("ETag")) {
        meta.etag = *etag;
    }
    if (const std::string* lm = resp.fields.get("Last-Modified")) {
        meta.last_modified = parseHttpDate(*lm, in.response_time);
    }
    for (const auto& f : resp.fields) {
        if (!equalsIgnoreCase(f.name, in.tag_field)) {
            continue;
        }
        std::string_view v = f.value;
        while (!v.empty()) {
            auto sp = v.find_first_of(" \t");
            std::string_view tag = v.substr(0, sp);
            if (!tag.empty() &&
                std::find(meta.tags.begin(), meta.tags.end(), tag) == meta.tags.end()) {
                meta.tags.emplace_back(tag);
            }
            if (sp == std::string_view::npos) {
                break;
            }
            v.remove_prefix(sp + 1);
        }
    }
    BodyPtr body = in.body ? in.body : std::make_shared<const Body>();
    return std::make_shared<const CacheEntry>(resp.status, resp.reason, std::move(fields),
                                              std::move(body), std::move(meta));
}

}  // namespace strata::cache
