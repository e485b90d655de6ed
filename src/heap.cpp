// The strata binary's operator new/delete: glibc malloc behind a per-thread free list for each
// small size class.
//
// Why: a request allocates a dozen short-lived objects (the transaction, its strings, field
// vectors, cache keys) and the loop frees finished transactions in batches. glibc's tcache
// holds only 7 blocks per size, so every batch overflows it and the rest of the frees and the
// next request's allocations take malloc's slow paths (callgrind, cache hits: about a fifth
// of strata's user-space instructions). A few hundred parked blocks per class make those a
// pointer pop and push. What the lists cannot take goes back to malloc, so memory stays
// bounded; blocks are ordinary malloc blocks, so a block freed on another thread is simply
// parked there.
//
// Linked into the strata executable only (not the module libraries, tests or tools), and left
// out of sanitizer builds, where ASan must see every allocation.
#if !defined(__SANITIZE_ADDRESS__)

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <malloc.h>
#include <new>

#include "strata/common/free_lists.h"

namespace {

// Classes: 16-byte steps up to 1 KiB (most objects and strings), then powers of two to 32 KiB.
constexpr std::size_t kStep = 16;
constexpr std::size_t kStepLimit = 1024;
constexpr std::size_t kStepClasses = kStepLimit / kStep;  // 16, 32, ... 1024
constexpr std::size_t kPowerClasses = 5;                  // 2, 4, 8, 16, 32 KiB
constexpr std::size_t kClasses = kStepClasses + kPowerClasses;
constexpr std::size_t kMaxClassBytes = kStepLimit << kPowerClasses;
constexpr std::size_t kNoClass = kClasses;
constexpr std::size_t kParkedBytesPerClass = 256 * 1024;
constexpr std::uint32_t kMaxParkedBlocks = 512;

constexpr std::size_t classBytes(std::size_t size_class) {
    return size_class < kStepClasses ? (size_class + 1) * kStep
                                     : kStepLimit << (size_class - kStepClasses + 1);
}

// Smallest class holding `size` bytes.
std::size_t classFor(std::size_t size) {
    if (size <= kStepLimit) {
        return size == 0 ? 0 : (size - 1) / kStep;
    }
    if (size > kMaxClassBytes) {
        return kNoClass;
    }
    std::size_t size_class = kStepClasses;
    while (classBytes(size_class) < size) {
        ++size_class;
    }
    return size_class;
}

// Largest class a block of `usable` bytes can serve (malloc may give more than was asked).
std::size_t classServedBy(std::size_t usable) {
    if (usable < kStep || usable > 2 * kMaxClassBytes) {
        return kNoClass;
    }
    if (usable < kStepLimit) {
        return usable / kStep - 1;
    }
    std::size_t size_class = kClasses - 1;
    while (classBytes(size_class) > usable) {
        --size_class;
    }
    return size_class;
}

struct HeapTag {};
using Lists = strata::ThreadFreeLists<HeapTag, kClasses>;

std::uint32_t parkLimit(std::size_t size_class) {
    const std::size_t by_bytes = kParkedBytesPerClass / classBytes(size_class);
    return by_bytes < kMaxParkedBlocks ? static_cast<std::uint32_t>(by_bytes) : kMaxParkedBlocks;
}

void* allocate(std::size_t size) noexcept {
    const std::size_t size_class = classFor(size);
    if (size_class == kNoClass) {
        return std::malloc(size);
    }
    if (void* parked = Lists::pop(size_class)) {
        return parked;
    }
    return std::malloc(classBytes(size_class));
}

void park(void* block, std::size_t size_class) noexcept {
    if (size_class == kNoClass || !Lists::push(block, size_class, parkLimit(size_class))) {
        std::free(block);
    }
}

void release(void* block) noexcept {
    if (block != nullptr) {
        park(block, classServedBy(malloc_usable_size(block)));
    }
}

// Sized delete passes the size new was given, so the class is known without asking malloc.
void releaseSized(void* block, std::size_t size) noexcept {
    if (block != nullptr) {
        park(block, classFor(size));
    }
}

void* allocateOrThrow(std::size_t size) {
    void* block = allocate(size);
    if (block == nullptr) {
        throw std::bad_alloc();
    }
    return block;
}

}  // namespace

void* operator new(std::size_t size) {
    return allocateOrThrow(size);
}
void* operator new[](std::size_t size) {
    return allocateOrThrow(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return allocate(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    return allocate(size);
}
void operator delete(void* block) noexcept {
    release(block);
}
void operator delete[](void* block) noexcept {
    release(block);
}
void operator delete(void* block, std::size_t size) noexcept {
    releaseSized(block, size);
}
void operator delete[](void* block, std::size_t size) noexcept {
    releaseSized(block, size);
}
void operator delete(void* block, const std::nothrow_t&) noexcept {
    release(block);
}
void operator delete[](void* block, const std::nothrow_t&) noexcept {
    release(block);
}

#endif  // !__SANITIZE_ADDRESS__
