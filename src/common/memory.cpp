#include "strata/common/memory.h"

#include <atomic>

namespace strata::memory {
namespace {

std::atomic<ReleaseHook> release_hook{nullptr};

}  // namespace

void setReleaseHook(ReleaseHook hook) {
    release_hook.store(hook, std::memory_order_release);
}

void releaseFreedMemory() {
    if (ReleaseHook hook = release_hook.load(std::memory_order_acquire)) {
        hook();
    }
}

}  // namespace strata::memory
