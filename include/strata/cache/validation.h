// Validation (RFC 9111 4.3): conditional requests to refresh stored responses, merging a 304
// into a stored response, answering client conditionals from the cache, and the invalidation
// an unsafe method causes (4.4).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/cache/entry.h"
#include "strata/cache/key.h"
#include "strata/common/clock.h"
#include "strata/http/message.h"

namespace strata::cache {

// Turns the forwarded request into a conditional one for `stored` (4.3.1): the client's own
// validators are removed (the cache answers them itself afterwards, 4.3.2), then
// If-None-Match: <stored ETag> and If-Modified-Since: <stored Last-Modified> are set when known.
// Returns false when the entry has no validator (an unconditional fetch is needed).
bool makeConditional(const CacheEntry& stored, http::Fields& upstream_request_fields);

// Whether a 304 applies to `stored` (4.3.4): when the 304 carries an ETag it must match the
// stored one (strong match for a strong tag, weak otherwise); with no ETag and a Last-Modified,
// that must match; with neither, it applies to the one entry that was validated.
bool notModifiedMatches(const CacheEntry& stored, const http::ResponseHead& not_modified);

// Freshens `stored` with a 304 (4.3.4): every stored field the 304 carries is replaced, except
// the unstored ones (3.1) and Content-Length; freshness and age restart from this exchange.
// The body block is shared, not copied.
EntryPtr mergeNotModified(const CacheEntry& stored, const http::ResponseHead& not_modified,
                          const CachePolicy& policy, WallTime request_time, WallTime response_time);

// RFC 9110 8.8.3.2 weak comparison of two entity-tags (W/ ignored, opaque tags equal).
bool weakEtagMatch(std::string_view a, std::string_view b);
bool strongEtagMatch(std::string_view a, std::string_view b);

enum class ConditionalResult { None, NotModified };

// Evaluates the client's If-None-Match (weak comparison, "*" matches) or, when absent,
// If-Modified-Since against the stored response, for GET and HEAD (RFC 9110 13.2.2, RFC 9111
// 4.3.2). An invalid If-Modified-Since date is ignored.
ConditionalResult evaluateConditionals(const CacheEntry& stored, const http::RequestHead& request,
                                       WallTime now);

// Fields of a 304 sent from cache (RFC 9110 15.4.5): Cache-Control, Content-Location, Date,
// ETag, Expires, Vary from the stored response. The caller adds Age and Cache-Status.
http::Fields notModifiedFields(const CacheEntry& stored);

// The key policy of the route a GET for host + path (no query) would take; used to key each
// URI an invalidation names (a Location may belong to another route than the request).
using KeyPolicyFor = std::function<const KeyPolicy&(std::string_view host, std::string_view path)>;

// Primary keys a non-error (2xx/3xx) answer to an unsafe method invalidates (4.4): the target
// URI and the Location / Content-Location URIs whose scheme and host match the request's.
// Empty for safe methods or error statuses.
std::vector<std::string> invalidationKeys(std::string_view scheme, const http::RequestHead& request,
                                          const http::ResponseHead& response,
                                          const KeyPolicyFor& policy_for);
// The same with one policy for every URI.
std::vector<std::string> invalidationKeys(std::string_view scheme, const http::RequestHead& request,
                                          const http::ResponseHead& response,
                                          const KeyPolicy& policy);

}  // namespace strata::cache
