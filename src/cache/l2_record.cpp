// L2 record encoding and the defensive decoder (see l2_record.h for the layout).
#include "strata/cache/l2_record.h"

#include <algorithm>
#include <cstring>

namespace strata::cache {
namespace {

constexpr std::string_view kMagic = "STRC";
constexpr std::size_t kHeaderSize = 12;  // magic, version, kind, flags, payload_len
constexpr std::size_t kTrailerSize = 4;  // CRC32C
// Bounds that no sane entry reaches; anything above is corrupt or hostile.
constexpr std::uint32_t kMaxCount = 10000;
constexpr std::uint32_t kMaxChunks = 1u << 20;

std::int64_t toMillis(WallTime t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

WallTime fromMillis(std::int64_t ms) {
    // 1970..2200, like parseHttpDate: time points and their differences cannot overflow.
    constexpr std::int64_t kLimit = 7'258'118'400'000LL;
    ms = std::clamp<std::int64_t>(ms, 0, kLimit);
    return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::milliseconds(ms)));
}

class Writer {
public:
    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u16(std::uint16_t v) { le(v, 2); }
    void u32(std::uint32_t v) { le(v, 4); }
    void u64(std::uint64_t v) { le(v, 8); }
    void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v), 8); }
    void str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    void raw(std::string_view s) { out_.append(s); }
    std::string& out() { return out_; }

private:
    void le(std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) {
            out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
        }
    }
    std::string out_;
};

// Bounds-checked reader: every read checks the remaining length first; after a failure all
// further reads fail too, so callers check ok() once at the end of a group.
class Reader {
public:
    explicit Reader(std::string_view in) : in_(in) {}
    bool ok() const { return ok_; }
    std::size_t remaining() const { return in_.size() - pos_; }

    std::uint64_t le(std::size_t n) {
        if (!need(n)) {
            return 0;
        }
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) {
            v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
        }
        pos_ += n;
        return v;
    }
    std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }
    std::uint16_t u16() { return static_cast<std::uint16_t>(le(2)); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(le(4)); }
    std::uint64_t u64() { return le(8); }
    std::int64_t i64() { return static_cast<std::int64_t>(le(8)); }
    std::string_view bytes(std::uint64_t n) {
        if (!need(n)) {
            return {};
        }
        auto s = in_.substr(pos_, static_cast<std::size_t>(n));
        pos_ += static_cast<std::size_t>(n);
        return s;
    }
    std::string_view str() { return bytes(u32()); }
    // A count of items each needing at least `min_item` bytes: rejects absurd counts before
    // anything is allocated.
    std::uint32_t count(std::size_t min_item) {
        std::uint32_t n = u32();
        if (n > kMaxCount || static_cast<std::uint64_t>(n) * min_item > remaining()) {
            ok_ = false;
            return 0;
        }
        return n;
    }
    void fail() { ok_ = false; }

private:
    bool need(std::uint64_t n) {
        if (!ok_ || n > remaining()) {
            ok_ = false;
            return false;
        }
        return true;
    }
    std::string_view in_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

std::string frame(RecordKind kind, std::string_view payload) {
    Writer w;
    w.raw(kMagic);
    w.u8(kRecordVersion);
    w.u8(static_cast<std::uint8_t>(kind));
    w.u16(0);
    w.u32(static_cast<std::uint32_t>(payload.size()));
    w.raw(payload);
    w.u32(crc32c(w.out()));
    return std::move(w.out());
}

// Checks the frame; on success `payload` is the verified payload.
Status unframe(std::string_view value, RecordKind& kind, std::string_view& payload) {
    if (value.size() < kHeaderSize + kTrailerSize) {
        return Error{"l2: value too short"};
    }
    if (value.substr(0, 4) != kMagic) {
        return Error{"l2: foreign value (bad magic)"};
    }
    Reader r(value.substr(4, kHeaderSize - 4));
    std::uint8_t version = r.u8();
    std::uint8_t k = r.u8();
    std::uint16_t flags = r.u16();
    std::uint32_t len = r.u32();
    if (version != kRecordVersion) {
        return Error{"l2: unsupported record version"};
    }
    if (k < 1 || k > 4) {
        return Error{"l2: unknown record kind"};
    }
    if (flags != 0) {
        return Error{"l2: unknown record flags"};
    }
    if (static_cast<std::uint64_t>(len) + kHeaderSize + kTrailerSize != value.size()) {
        return Error{"l2: length mismatch (truncated or padded)"};
    }
    Reader t(value.substr(value.size() - kTrailerSize));
    if (t.u32() != crc32c(value.substr(0, value.size() - kTrailerSize))) {
        return Error{"l2: checksum mismatch"};
    }
    kind = static_cast<RecordKind>(k);
    payload = value.substr(kHeaderSize, len);
    return {};
}

// Metadata, status and fields: shared by Entry and Manifest records.
void writeHead(Writer& w, const CacheEntry& e) {
    const EntryMeta& m = e.meta();
    const FreshnessInfo& f = m.freshness;
    w.str(m.primary_key);
    w.str(m.secondary_key);
    w.i64(toMillis(m.request_time));
    w.i64(toMillis(f.response_time));
    w.i64(toMillis(m.date));
    w.i64(f.corrected_initial_age.count());
    w.i64(f.lifetime.count());
    w.i64(f.stale_while_revalidate.count());
    w.i64(f.stale_if_error.count());
    std::uint8_t bits = (f.no_cache ? 1 : 0) | (f.must_revalidate ? 2 : 0) |
                        (f.soft_purged ? 4 : 0) | (m.last_modified ? 8 : 0) |
                        (m.vary.star ? 16 : 0);
    w.u8(bits);
    w.i64(m.last_modified ? toMillis(*m.last_modified) : 0);
    w.str(m.etag);
    w.u16(static_cast<std::uint16_t>(e.status()));
    w.str(e.reason());
    w.u32(static_cast<std::uint32_t>(m.vary.names.size()));
    for (const auto& n : m.vary.names) {
        w.str(n);
    }
    w.u32(static_cast<std::uint32_t>(m.tags.size()));
    for (const auto& t : m.tags) {
        w.str(t);
    }
    w.u32(static_cast<std::uint32_t>(e.fields().size()));
    for (const auto& fl : e.fields()) {
        w.str(fl.name);
        w.str(fl.value);
    }
}

struct HeadParts {
    int status = 0;
    std::string reason;
    http::Fields fields;
    EntryMeta meta;
};

bool validFieldText(std::string_view s, bool name) {
    if (name && s.empty()) {
        return false;
    }
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        // No CR/LF/NUL: stored bytes are written to clients verbatim.
        if (u == '\r' || u == '\n' || u == 0 || (name && (u <= ' ' || u == ':'))) {
            return false;
        }
    }
    return true;
}

Status readHead(Reader& r, HeadParts& h) {
    EntryMeta& m = h.meta;
    FreshnessInfo& f = m.freshness;
    m.primary_key = std::string(r.str());
    m.secondary_key = std::string(r.str());
    m.request_time = fromMillis(r.i64());
    f.response_time = fromMillis(r.i64());
    m.date = fromMillis(r.i64());
    auto secsField = [&r]() {
        std::int64_t v = r.i64();
        return Seconds(std::clamp<std::int64_t>(v, 0, kDeltaSecondsMax));
    };
    f.corrected_initial_age = secsField();
    f.lifetime = secsField();
    f.stale_while_revalidate = secsField();
    f.stale_if_error = secsField();
    std::uint8_t bits = r.u8();
    f.no_cache = bits & 1;
    f.must_revalidate = bits & 2;
    f.soft_purged = bits & 4;
    std::int64_t lm = r.i64();
    if (bits & 8) {
        m.last_modified = fromMillis(lm);
    }
    m.vary.star = bits & 16;
    m.etag = std::string(r.str());
    h.status = r.u16();
    h.reason = std::string(r.str());
    std::uint32_t nv = r.count(4);
    for (std::uint32_t i = 0; i < nv && r.ok(); ++i) {
        m.vary.names.emplace_back(r.str());
    }
    std::uint32_t nt = r.count(4);
    for (std::uint32_t i = 0; i < nt && r.ok(); ++i) {
        m.tags.emplace_back(r.str());
    }
    std::uint32_t nf = r.count(8);
    for (std::uint32_t i = 0; i < nf && r.ok(); ++i) {
        std::string_view name = r.str();
        std::string_view value = r.str();
        if (!validFieldText(name, true) || !validFieldText(value, false)) {
            return Error{"l2: invalid field bytes"};
        }
        h.fields.add(name, value);
    }
    if (!r.ok()) {
        return Error{"l2: truncated metadata"};
    }
    if (h.status < 100 || h.status > 999 || !validFieldText(h.reason, false)) {
        return Error{"l2: invalid status"};
    }
    return {};
}

}  // namespace

std::string memcachedKey(std::string_view ns, std::string_view primary,
                         std::string_view secondary) {
    std::string material;
    material.reserve(primary.size() + secondary.size() + 1);
    material.append(primary);
    material.push_back('\0');  // cannot occur in a key: separates the parts unambiguously
    material.append(secondary);
    std::string key(ns);
    key.push_back(':');
    key.append(hash128(material).hex());
    return key;
}

std::string chunkKey(std::string_view main_key, std::uint64_t generation, std::uint32_t index) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), ".%016llx.%u", static_cast<unsigned long long>(generation),
                  index);
    std::string key(main_key);
    key.append(buf);
    return key;
}

bool isValidMemcachedKey(std::string_view key) {
    if (key.empty() || key.size() > kMaxMemcachedKey) {
        return false;
    }
    return std::all_of(key.begin(), key.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u != 0x7f;
    });
}

std::string encodeEntryRecord(const CacheEntry& e) {
    Writer w;
    writeHead(w, e);
    w.u64(e.bodySize());
    if (e.body()) {
        w.raw(*e.body());
    }
    return frame(RecordKind::Entry, w.out());
}

std::string encodeVaryIndex(std::string_view primary_key, const VarySpec& vary) {
    Writer w;
    w.str(primary_key);
    w.u8(vary.star ? 1 : 0);
    w.u32(static_cast<std::uint32_t>(vary.names.size()));
    for (const auto& n : vary.names) {
        w.str(n);
    }
    return frame(RecordKind::VaryIndex, w.out());
}

std::vector<L2Write> l2WritePlan(const CacheEntry& e, std::string_view ns,
                                 std::uint64_t max_object_bytes, bool allow_chunks,
                                 std::uint64_t generation) {
    std::vector<L2Write> plan;
    const EntryMeta& m = e.meta();
    std::string main_key = memcachedKey(ns, m.primary_key, m.secondary_key);
    std::string record = encodeEntryRecord(e);
    if (max_object_bytes == 0 || record.size() <= max_object_bytes) {
        plan.push_back({std::move(main_key), std::move(record)});
    } else {
        if (!allow_chunks) {
            return {};
        }
        // Each chunk record carries 12 + 4 + 12 bytes of framing and fields around its data.
        constexpr std::uint64_t kChunkOverhead = kHeaderSize + kTrailerSize + 12;
        if (max_object_bytes <= kChunkOverhead + 64) {
            return {};
        }
        const std::uint64_t chunk_size = max_object_bytes - kChunkOverhead;
        std::string_view body = e.body() ? std::string_view(*e.body()) : std::string_view();
        const auto count = static_cast<std::uint32_t>((body.size() + chunk_size - 1) / chunk_size);
        for (std::uint32_t i = 0; i < count; ++i) {
            std::string_view data = body.substr(i * chunk_size, chunk_size);
            Writer w;
            w.u64(generation);
            w.u32(i);
            w.raw(data);
            plan.push_back({chunkKey(main_key, generation, i), frame(RecordKind::Chunk, w.out())});
        }
        Writer w;
        writeHead(w, e);
        w.u64(body.size());
        w.u64(generation);
        w.u32(count);
        w.u32(crc32c(body));
        std::string manifest = frame(RecordKind::Manifest, w.out());
        if (manifest.size() > max_object_bytes) {
            return {};  // even the head does not fit
        }
        plan.push_back({std::move(main_key), std::move(manifest)});
    }
    if (!m.vary.empty()) {
        plan.push_back(
            {memcachedKey(ns, m.primary_key, ""), encodeVaryIndex(m.primary_key, m.vary)});
    }
    return plan;
}

std::vector<std::string> ChunkManifest::chunkKeys() const {
    std::vector<std::string> keys;
    keys.reserve(chunk_count);
    for (std::uint32_t i = 0; i < chunk_count; ++i) {
        keys.push_back(chunkKey(main_key, generation, i));
    }
    return keys;
}

Result<DecodedRecord> decodeRecord(std::string_view value, std::string_view main_key,
                                   std::string_view expected_primary,
                                   std::string_view expected_secondary) {
    RecordKind kind{};
    std::string_view payload;
    if (Status st = unframe(value, kind, payload); !st) {
        return Error{st.error()};
    }
    Reader r(payload);
    DecodedRecord out;
    out.kind = kind;
    if (kind == RecordKind::Chunk) {
        return Error{"l2: chunk record where an object was expected"};
    }
    if (kind == RecordKind::VaryIndex) {
        std::string_view primary = r.str();
        out.vary.star = r.u8() != 0;
        std::uint32_t n = r.count(4);
        for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
            out.vary.names.emplace_back(r.str());
        }
        if (!r.ok() || r.remaining() != 0) {
            return Error{"l2: malformed vary index"};
        }
        if (primary != expected_primary) {
            return Error{"l2: key mismatch"};
        }
        return out;
    }
    HeadParts h;
    if (Status st = readHead(r, h); !st) {
        return Error{st.error()};
    }
    if (h.meta.primary_key != expected_primary || h.meta.secondary_key != expected_secondary) {
        return Error{"l2: key mismatch"};  // a hash collision or a value from another key
    }
    const std::uint64_t body_size = r.u64();
    if (kind == RecordKind::Entry) {
        std::string_view body = r.bytes(body_size);
        if (!r.ok() || r.remaining() != 0) {
            return Error{"l2: body length mismatch"};
        }
        out.entry = std::make_shared<const CacheEntry>(
            h.status, std::move(h.reason), std::move(h.fields), std::make_shared<const Body>(body),
            std::move(h.meta));
        return out;
    }
    auto m = std::make_shared<ChunkManifest>();
    m->body_size = body_size;
    m->generation = r.u64();
    m->chunk_count = r.u32();
    m->body_crc = r.u32();
    m->main_key = std::string(main_key);
    if (!r.ok() || r.remaining() != 0 || m->chunk_count > kMaxChunks ||
        (m->chunk_count == 0) != (body_size == 0)) {
        return Error{"l2: malformed manifest"};
    }
    m->head_only =
        std::make_shared<const CacheEntry>(h.status, std::move(h.reason), std::move(h.fields),
                                           std::make_shared<const Body>(), std::move(h.meta));
    out.manifest = std::move(m);
    return out;
}

Result<EntryPtr> assembleChunks(const ChunkManifest& m,
                                const std::vector<std::string_view>& chunk_values) {
    if (chunk_values.size() != m.chunk_count || !m.head_only) {
        return Error{"l2: chunk count mismatch"};
    }
    auto body = std::make_shared<Body>();
    // Reserve only what the chunks can actually hold, never a size taken on trust.
    std::uint64_t available = 0;
    for (auto v : chunk_values) {
        available += v.size();
    }
    if (m.body_size > available) {
        return Error{"l2: chunks shorter than the manifest says"};
    }
    body->reserve(static_cast<std::size_t>(m.body_size));
    for (std::uint32_t i = 0; i < m.chunk_count; ++i) {
        RecordKind kind{};
        std::string_view payload;
        if (Status st = unframe(chunk_values[i], kind, payload); !st) {
            return Error{st.error()};
        }
        if (kind != RecordKind::Chunk) {
            return Error{"l2: not a chunk record"};
        }
        Reader r(payload);
        std::uint64_t gen = r.u64();
        std::uint32_t index = r.u32();
        if (!r.ok() || gen != m.generation || index != i) {
            return Error{"l2: chunk from another write"};
        }
        std::string_view data = r.bytes(r.remaining());
        if (body->size() + data.size() > m.body_size) {
            return Error{"l2: chunks longer than the manifest says"};
        }
        body->append(data);
    }
    if (body->size() != m.body_size || crc32c(*body) != m.body_crc) {
        return Error{"l2: body checksum mismatch"};
    }
    const CacheEntry& h = *m.head_only;
    return EntryPtr(std::make_shared<const CacheEntry>(h.status(), h.reason(), h.fields(),
                                                       BodyPtr(std::move(body)), h.meta()));
}

}  // namespace strata::cache
