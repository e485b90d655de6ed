#include "strata/event/buffer_memory.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <event2/event.h>

#include "strata/common/free_lists.h"

namespace strata::event {
namespace {

// Each block starts with a header naming its size class; 16 bytes keep malloc's alignment.
struct alignas(16) Header {
    std::size_t size_class;
    std::size_t requested;  // for uncached (oversized) blocks: the size asked for
};
static_assert(sizeof(Header) == 16);

// Smallest class: 1 KiB, libevent's smallest buffer chain. Below it only libevent's structures
// are allocated (an evbuffer, an event, an evmap entry, once per connection); rounding those
// up to a power of two would cost an idle connection a few hundred bytes for nothing, so they
// go to malloc at their own size.
constexpr int kMinShift = 10;
constexpr int kMaxShift = 17;  // largest: 128 KiB (a 32 KiB read reservation rounds to 64 KiB)
constexpr std::size_t kClasses = kMaxShift - kMinShift + 1;
constexpr std::size_t kUncached = kClasses;
// What one thread keeps parked per class: enough for the chains of the requests in flight on
// a busy worker, small next to the L1 cache.
constexpr std::size_t kParkedBytesPerClass = 1U << 20;
constexpr std::size_t kMaxParkedBlocks = 256;

constexpr std::size_t classBytes(std::size_t size_class) {
    return std::size_t{1} << (size_class + kMinShift);
}

constexpr std::size_t parkLimit(std::size_t size_class) {
    return std::clamp<std::size_t>(kParkedBytesPerClass / classBytes(size_class), 4,
                                   kMaxParkedBlocks);
}

std::size_t classFor(std::size_t size) {
    if (size > classBytes(kClasses - 1) || size < classBytes(0)) {
        return kUncached;
    }
    const int shift = static_cast<int>(std::bit_width(size - 1));
    return static_cast<std::size_t>(shift - kMinShift);
}

struct BufferTag {};
using Lists = ThreadFreeLists<BufferTag, kClasses>;

void* userPointer(Header* header) {
    return header + 1;
}

Header* headerOf(void* block) {
    return static_cast<Header*>(block) - 1;
}

}  // namespace

void* bufferAlloc(std::size_t size) {
    const std::size_t size_class = classFor(size);
    if (size_class == kUncached) {
        auto* header = static_cast<Header*>(std::malloc(sizeof(Header) + size));
        if (header == nullptr) {
            return nullptr;
        }
        header->size_class = kUncached;
        header->requested = size;
        return userPointer(header);
    }
    if (void* parked = Lists::pop(size_class)) {
        auto* header = static_cast<Header*>(parked);
        header->size_class = size_class;
        return userPointer(header);
    }
    auto* header = static_cast<Header*>(std::malloc(sizeof(Header) + classBytes(size_class)));
    if (header == nullptr) {
        return nullptr;
    }
    header->size_class = size_class;
    header->requested = 0;
    return userPointer(header);
}

void bufferFree(void* block) {
    if (block == nullptr) {
        return;
    }
    Header* header = headerOf(block);
    const std::size_t size_class = header->size_class;
    if (size_class == kUncached ||
        !Lists::push(header, size_class, static_cast<std::uint32_t>(parkLimit(size_class)))) {
        std::free(header);
    }
}

void* bufferRealloc(void* block, std::size_t size) {
    if (block == nullptr) {
        return bufferAlloc(size);
    }
    Header* header = headerOf(block);
    if (header->size_class == kUncached) {
        if (classFor(size) == kUncached) {
            auto* grown = static_cast<Header*>(std::realloc(header, sizeof(Header) + size));
            if (grown == nullptr) {
                return nullptr;
            }
            grown->requested = size;
            return userPointer(grown);
        }
    } else if (size <= classBytes(header->size_class)) {
        return block;
    }
    const std::size_t old_size =
        header->size_class == kUncached ? header->requested : classBytes(header->size_class);
    void* moved = bufferAlloc(size);
    if (moved == nullptr) {
        return nullptr;
    }
    std::memcpy(moved, block, std::min(old_size, size));
    bufferFree(block);
    return moved;
}

std::size_t cachedBufferBlocks() {
    return Lists::parked();
}

void installBufferMemory() {
#if defined(__SANITIZE_ADDRESS__)
    // ASan must see every libevent allocation and free to catch use-after-free.
#else
    event_set_mem_functions(bufferAlloc, bufferRealloc, bufferFree);
#endif
}

}  // namespace strata::event
