// HTTP/1.x message heads as value types. No sockets here: the http module is pure so it can be
// fuzzed and unit-tested byte by byte.
#pragma once

#include <cstdint>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata::http {

struct Field {
    std::string name;   // as received (case preserved); compare with equalsIgnoreCase
    std::string value;  // OWS-trimmed
};

// Ordered header fields. Lookups are case-insensitive and linear: heads are small and a linear
// scan over a contiguous vector beats hashing at these sizes.
class Fields {
public:
    void add(std::string_view name, std::string_view value);
    // Replaces every field of that name with one field (appends when absent).
    void set(std::string_view name, std::string_view value);
    // Adds `value` to a list-valued field: appended to the first line of that name after ", "
    // (RFC 9110 5.3 allows combining), or added when absent. For Via, X-Forwarded-For.
    void appendToList(std::string_view name, std::string_view value);
    // First value or nullptr.
    const std::string* get(std::string_view name) const;
    bool has(std::string_view name) const { return get(name) != nullptr; }
    std::size_t count(std::string_view name) const;
    // Removes every field of that name; returns how many were removed.
    std::size_t remove(std::string_view name);
    // True when any field of that name has `token` as one of its comma-separated elements
    // (case-insensitive), e.g. hasToken("Connection", "close").
    bool hasToken(std::string_view name, std::string_view token) const;

    std::size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    void clear() { items_.clear(); }
    auto begin() const { return items_.begin(); }
    auto end() const { return items_.end(); }
    std::vector<Field>& items() { return items_; }
    const std::vector<Field>& items() const { return items_; }

private:
    std::vector<Field> items_;
};

// How a message body is delimited (RFC 9112 section 6).
enum class BodyFraming {
    None,        // no body (GET without CL/TE, 204, 304, HEAD answers, 1xx)
    Length,      // Content-Length bytes
    Chunked,     // Transfer-Encoding: chunked
    UntilClose,  // response only: read until the connection closes
};

struct RequestHead {
    std::string method;  // as received, e.g. "GET", or an extension method "PURGE", "FOO"
    std::string target;  // request-target as received (origin-form or absolute-form)
    std::string host;    // from absolute-form authority, else the Host field; lowercase, port kept
    std::string path;    // target path without query ("/a/b"); "*" for OPTIONS *
    std::string query;   // without '?', may be empty
    int version_major = 1;  // 2 for a request that came over HTTP/2
    int version_minor = 1;
    Fields fields;
    BodyFraming framing = BodyFraming::None;
    std::uint64_t content_length = 0;  // when framing == Length
    bool keep_alive = true;            // client wants the connection kept after this exchange
    bool expect_continue = false;      // "Expect: 100-continue" was present
    // RFC 8441: an HTTP/2 CONNECT with :protocol websocket, mapped to the GET with Upgrade it
    // becomes upstream; its stream's DATA are the tunnel's bytes, not a body.
    bool extended_connect = false;
    // Fields with '_' in their name the parser removed (UnderscoreFields::Drop), for metrics.
    std::uint32_t underscore_fields_dropped = 0;

    bool isHead() const { return method == "HEAD"; }
};

struct ResponseHead {
    int status = 0;
    std::string reason;
    int version_minor = 1;
    Fields fields;
    BodyFraming framing = BodyFraming::None;
    std::uint64_t content_length = 0;
    bool keep_alive = true;  // upstream allows reuse of the connection after this response
};

// Request field names with '_': valid tokens (RFC 9110 5.1), but CGI-style back-ends (gunicorn,
// puma, waitress, PHP) map '_' to '-', so "Content_Length" next to "Content-Length" is a second
// framing to them. A name that reads as Content-Length or Transfer-Encoding that way is refused
// whatever the mode.
enum class UnderscoreFields : std::uint8_t {
    Allow,   // kept as received
    Drop,    // removed from the head (nginx's underscores_in_headers off); counted in the head
    Reject,  // the request is refused (HTTP/1: ParseError::UnderscoreField)
};

struct UnderscoreResult {
    const char* refused = nullptr;  // why the request must be refused (400), or nullptr
    std::uint32_t dropped = 0;      // fields removed under Drop
};
// Applies `mode` to a request head's fields, before anything reads them: the HTTP/1 parser and
// the HTTP/2 mapping alike, so a dropped field is gone for routing, the key and the upstream.
UnderscoreResult applyUnderscorePolicy(Fields& fields, UnderscoreFields mode);

// Hop-by-hop fields (RFC 9110 7.6.1): Connection, every field Connection names, Keep-Alive,
// Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade. Removed before forwarding;
// the proxy sets its own framing.
void removeHopByHop(Fields& fields);

class ForwardedFieldCallbacks;

// Edits applied while a forwarded head is serialized, so the proxy writes it in one pass
// instead of copying and editing its fields first. Names and values are views: they must
// outlive the appendForwardedFields() call. Small fixed capacity: a proxy makes a handful of
// edits per message (an upstream request on a cacheable route: about 20 drops, with the
// override fields).
class FieldEdits {
public:
    static constexpr std::size_t kCapacity = 24;
    // Every field of that name is left out.
    void drop(std::string_view name) { push(drops_, drop_count_, {name, {}}); }
    // ", value" after the first field of that name (RFC 9110 5.3), or a new field at the end.
    void appendToList(std::string_view name, std::string_view value) {
        push(lists_, list_count_, {name, value});
    }
    // A new field at the end, after every original one.
    void add(std::string_view name, std::string_view value) {
        push(adds_, add_count_, {name, value});
    }
    // False once an edit did not fit: the caller must not send what it serializes.
    bool complete() const { return !overflowed_; }
    // Only the added fields, for a head whose other fields are already serialized (a stored
    // entry's), where drops and list edits have nothing to act on: their size, and a copy
    // to `p` (addedBytes() of room) returning the end.
    std::size_t addedBytes() const;
    char* copyAdded(char* p) const;

private:
    friend void appendForwardedFields(std::string&, const class Fields&, const FieldEdits&);
    friend void forEachForwardedField(const class Fields&, const FieldEdits&,
                                      ForwardedFieldCallbacks&);
    struct Edit {
        std::string_view name;
        std::string_view value;
    };
    // Slots stay uninitialized until pushed: a FieldEdits is built for every answer, and
    // zeroing every slot cost more than the few edits it holds (callgrind, cache hits).
    struct Slots {
        Slots() {}  // NOLINT: leaves `items` uninitialized on purpose
        union {
            Edit items[kCapacity];
        };
        const Edit& operator[](std::size_t i) const { return items[i]; }
    };
    void push(Slots& slots, std::size_t& count, Edit edit) {
        if (count < kCapacity) {
            new (&slots.items[count++]) Edit(edit);
        } else {
            overflowed_ = true;
        }
    }
    Slots drops_;
    Slots lists_;
    Slots adds_;
    std::size_t drop_count_ = 0;
    std::size_t list_count_ = 0;
    std::size_t add_count_ = 0;
    bool overflowed_ = false;
};

// Serializes `fields` without the hop-by-hop ones (as removeHopByHop()) and with `edits`
// applied. The same bytes as editing a copy of the fields and calling appendFields().
void appendForwardedFields(std::string& out, const Fields& fields, const FieldEdits& edits);

// Receives the fields appendForwardedFields() would write, one at a time, for a codec that
// does not write HTTP/1 bytes (HTTP/2 HEADERS).
class ForwardedFieldCallbacks {
public:
    virtual ~ForwardedFieldCallbacks() = default;
    // The field's value is `value` followed by ", " and each of `appended` (list edits, RFC 9110
    // 5.3). The views last until onField() returns.
    virtual void onField(std::string_view name, std::string_view value,
                         std::span<const std::string_view> appended) = 0;
};

// Calls `callbacks` for every field appendForwardedFields(out, fields, edits) writes, in the
// same order, with the same names and values.
void forEachForwardedField(const Fields& fields, const FieldEdits& edits,
                           ForwardedFieldCallbacks& callbacks);

// Reason phrase for a status code ("OK", "Bad Gateway"); "Unknown" otherwise.
std::string_view reasonPhrase(int status);

// Serializers append to `out`. Field values are emitted as stored.
void appendRequestLine(std::string& out, std::string_view method, std::string_view target,
                       int version_minor);
void appendStatusLine(std::string& out, int status, std::string_view reason, int version_minor);
void appendFields(std::string& out, const Fields& fields);
// Chunked transfer coding: one chunk header + data + CRLF; the last chunk is "0\r\n\r\n".
void appendChunkHeader(std::string& out, std::size_t size);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// True for methods RFC 9110 9.2.2 calls idempotent (safe to retry on another server).
bool isIdempotent(std::string_view method);

}  // namespace strata::http
