// Any bytes as a memcached value: decode returns an error or a valid record, never crashes or
// over-reads; a decoded entry re-encodes to a value that decodes to the same entry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "strata/cache/l2_record.h"

using namespace strata::cache;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    // Seeds use the keys the generator used; any other key is a key mismatch (also fine).
    for (std::string_view secondary : {std::string_view(""), std::string_view("accept=gzip\n")}) {
        auto r = decodeRecord(in, "ns:main", "https://example.com/a", secondary);
        if (!r.ok()) {
            continue;
        }
        if (r->kind == RecordKind::Entry) {
            const CacheEntry& e = *r->entry;
            std::string again = encodeEntryRecord(e);
            auto r2 = decodeRecord(again, "ns:main", "https://example.com/a", secondary);
            if (!r2.ok() || r2->entry->serializedHead() != e.serializedHead() ||
                *r2->entry->body() != *e.body()) {
                std::abort();
            }
        }
        if (r->kind == RecordKind::Manifest) {
            // Treat the input split in halves as chunk values: must fail cleanly or verify.
            std::vector<std::string_view> chunks;
            for (std::uint32_t i = 0; i < r->manifest->chunk_count && i < 4; ++i) {
                chunks.push_back(in.substr(i * size / 4, size / 4));
            }
            (void)assembleChunks(*r->manifest, chunks);
        }
    }
    return 0;
}
