// The L2 (memcached) value format, version 1. Values from memcached are untrusted: decode
// checks magic, version, kind, lengths, checksum and the stored key, and any failure is a
// Result error the caller counts as a miss. Decode never reads past the value.
//
// Record (little-endian):
//   "STRC" | u8 version=1 | u8 kind | u16 flags=0 | u32 payload_len | payload | u32 CRC32C
// with the CRC over everything before it. Kinds:
//   Entry     metadata, status, fields, body                 at memcachedKey(ns, primary, sec)
//   Manifest  metadata, status, fields, body size, generation, chunk count, body CRC
//   Chunk     generation, index, data                         at chunkKey(main, generation, i)
//   VaryIndex the Vary names of a URL                         at memcachedKey(ns, primary, "")
// A URL whose response has Vary is two lookups: the VaryIndex at the primary key names the
// fields, then the variant at memcachedKey(ns, primary, secondaryKey(...)). Chunk keys carry a
// per-write generation, so a reader never mixes chunks of two writes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/cache/entry.h"
#include "strata/common/result.h"

namespace strata::cache {

inline constexpr std::uint8_t kRecordVersion = 1;
inline constexpr std::size_t kMaxMemcachedKey = 250;

struct Hash128 {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    std::string hex() const;  // 32 lowercase hex digits
};
// Non-cryptographic 128-bit hash (strata's own). Collisions cannot serve a wrong object: every
// record stores its full key and decode compares it.
Hash128 hash128(std::string_view data, std::uint64_t seed = 0);
// CRC32C (Castagnoli), table-driven. `crc` continues a previous call.
std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0);

// "<ns>:<32 hex>" for (primary, secondary). `ns` must itself be a valid key fragment.
std::string memcachedKey(std::string_view ns, std::string_view primary, std::string_view secondary);
std::string chunkKey(std::string_view main_key, std::uint64_t generation, std::uint32_t index);
// 1..250 bytes, no space or control characters (memcached text protocol rules).
bool isValidMemcachedKey(std::string_view key);

enum class RecordKind : std::uint8_t { Entry = 1, Manifest = 2, Chunk = 3, VaryIndex = 4 };

struct L2Write {
    std::string key;
    std::string value;
};

// Everything to write for one entry, in write order (chunks, then the record that points to
// them, then the VaryIndex when the entry has Vary). Empty when the object exceeds
// `max_object_bytes` and `allow_chunks` is false (the caller skips L2 for it). `generation`
// should differ between writes of one key (e.g. a random or time-based number).
std::vector<L2Write> l2WritePlan(const CacheEntry& entry, std::string_view ns,
                                 std::uint64_t max_object_bytes, bool allow_chunks,
                                 std::uint64_t generation);

// Single-record encoders (l2WritePlan uses them).
std::string encodeEntryRecord(const CacheEntry& entry);
std::string encodeVaryIndex(std::string_view primary_key, const VarySpec& vary);

// A decoded manifest: the entry without its body, and where the body's chunks are.
struct ChunkManifest {
    std::shared_ptr<const CacheEntry> head_only;  // body empty
    std::uint64_t body_size = 0;
    std::uint64_t generation = 0;
    std::uint32_t chunk_count = 0;
    std::uint32_t body_crc = 0;
    std::string main_key;  // memcached key of the manifest
    std::vector<std::string> chunkKeys() const;
};

struct DecodedRecord {
    RecordKind kind = RecordKind::Entry;
    EntryPtr entry;                           // Entry
    std::shared_ptr<ChunkManifest> manifest;  // Manifest
    VarySpec vary;                            // VaryIndex
};

// Decodes a value fetched at `main_key` for `expected_primary` (and, for Entry and Manifest,
// `expected_secondary`). Chunk records are rejected here; see assembleChunks.
Result<DecodedRecord> decodeRecord(std::string_view value, std::string_view main_key,
                                   std::string_view expected_primary,
                                   std::string_view expected_secondary);

// Verifies every chunk (kind, generation, index, length, CRC, total body CRC) and builds the
// entry. `chunk_values[i]` is the value fetched at manifest.chunkKeys()[i].
Result<EntryPtr> assembleChunks(const ChunkManifest& manifest,
                                const std::vector<std::string_view>& chunk_values);

}  // namespace strata::cache
