// CacheEntry: one stored response, immutable once built and shared by refcount
// (std::shared_ptr<const CacheEntry>). A hit copies the pre-serialized head and hands the body
// block to evbuffer_add_reference; the reference is dropped in the evbuffer cleanup callback,
// so eviction or purge never frees bytes still being written to a client.
//
//   buildEntry() ──▶ L1 / L2 ──▶ lookup ──▶ appendHead() + Body via retainBody()/releaseBody()
//        ▲                                        │ 304 from upstream
//        └──────────── mergeNotModified() ◀───────┘ (a new entry; the body block is shared)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/cache/freshness.h"
#include "strata/cache/key.h"
#include "strata/common/clock.h"
#include "strata/http/content_coding.h"
#include "strata/http/message.h"

namespace strata::cache {

// The body: one contiguous immutable block. Shared between an entry, its 304-refreshed
// successors, L1 and every response being written.
using Body = std::string;
using BodyPtr = std::shared_ptr<const Body>;

// evbuffer_add_reference glue without libevent here: retainBody() returns the `extra` argument
// (a heap-held reference) and releaseBody matches evbuffer_ref_cleanup_cb, dropping it:
//   evbuffer_add_reference(out, body->data(), body->size(), &releaseBody, retainBody(body));
void* retainBody(const BodyPtr& body);
void releaseBody(const void* data, std::size_t len, void* extra);

struct EntryMeta {
    std::string primary_key;
    std::string secondary_key;
    VarySpec vary;
    FreshnessInfo freshness;
    WallTime request_time;
    WallTime date;     // Date field, or response_time when absent
    std::string etag;  // as received, "" when absent
    std::optional<WallTime> last_modified;
    std::vector<std::string> tags;  // Surrogate-Key (space-separated), for purge by tag
};

// The body in one content coding, compressed once when the entry was stored (Varnish's fetch
// processor): hits in that coding reference it as they do the identity body. Its fields are the
// stored ones with the coding's ETag (http::encodedEtag) and Content-Encoding, kept whole so
// every codec serializes the same head; `head` is them serialized, as serializedHead().
struct EncodedBody {
    http::Coding coding = http::Coding::Identity;
    BodyPtr body;
    // Filled in by CacheEntry from its fields.
    http::Fields fields;
    std::string head;
};

class CacheEntry;
using EntryPtr = std::shared_ptr<const CacheEntry>;

class CacheEntry {
public:
    // Assembles an entry from parts already validated (L2 decode, 304 merge, buildEntry).
    // `encoded` needs only coding and body: the constructor derives their fields and heads.
    CacheEntry(int status, std::string reason, http::Fields fields, BodyPtr body, EntryMeta meta,
               std::vector<EncodedBody> encoded = {});

    int status() const { return status_; }
    const std::string& reason() const { return reason_; }
    // Stored fields: no hop-by-hop, framing (Content-Length, Transfer-Encoding) or Age fields.
    const http::Fields& fields() const { return fields_; }
    // Status line and stored fields, serialized once ("HTTP/1.1 200 OK\r\nA: b\r\n").
    const std::string& serializedHead() const { return head_; }
    const BodyPtr& body() const { return body_; }
    std::uint64_t bodySize() const { return body_ ? body_->size() : 0; }
    const EntryMeta& meta() const { return meta_; }
    const FreshnessInfo& freshness() const { return meta_.freshness; }
    // The other codings of the body, in the route's preference order; empty for most entries.
    const std::vector<EncodedBody>& encoded() const { return encoded_; }
    // Coding and body of each encoded(), for another entry of the same body (304 merge, soft
    // purge), which rebuilds their heads from its own fields.
    std::vector<EncodedBody> encodedBodies() const;

    // Appends the stored head plus "Age: N\r\n" (RFC 9111 5.1, computed at serve time). The
    // caller appends Cache-Status, Content-Length / Connection and the final CRLF.
    void appendHead(std::string& out, WallTime now) const;
    Seconds currentAge(WallTime now) const;
    LookupDecision decide(const CacheControl& request_cc, WallTime now) const {
        return decideLookup(meta_.freshness, request_cc, now);
    }

    // Bytes charged to the L1 budget: object, head, body, keys and fields.
    std::uint64_t charge() const;
    // A copy marked stale (soft purge); shares the body.
    EntryPtr withSoftPurge() const;

private:
    int status_;
    std::string reason_;
    http::Fields fields_;
    std::string head_;
    BodyPtr body_;
    EntryMeta meta_;
    std::vector<EncodedBody> encoded_;
};

// Fields never stored (RFC 9111 3.1): hop-by-hop, framing, Age, the targeted field meant for us,
// and any qualified private= / no-cache= names. Exposed for tests and the 304 merge.
void stripUnstoredFields(http::Fields& fields, const CacheControl& cc);

struct StoreInput {
    const http::RequestHead* request = nullptr;
    const http::ResponseHead* response = nullptr;
    const ResponseDirectives* directives = nullptr;
    const CachePolicy* policy = nullptr;
    // The route's key policy: its headers join the response's Vary (null: none).
    const KeyPolicy* key_policy = nullptr;
    std::string primary_key;
    BodyPtr body;  // may be null for an empty body
    WallTime request_time;
    WallTime response_time;
    // Response field holding space-separated purge tags.
    std::string_view tag_field = "Surrogate-Key";
};

// Builds the entry for a response checkStorable() accepted. The secondary key is computed from
// the request and the response's Vary plus the route's key headers.
EntryPtr buildEntry(const StoreInput& in);

}  // namespace strata::cache
