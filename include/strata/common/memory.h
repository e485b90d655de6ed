#pragma once

namespace strata::memory {

// Gives the binary's allocator a chance to return freed memory to the system. mimalloc returns
// an emptied page only when the thread that owns it calls into the allocator again, so a worker
// that goes quiet after a burst (10,000 keep-alive clients parking) would keep the freed
// sessions resident; workers call this once a second. main() installs what the linked allocator
// does; without a hook (glibc, sanitizer and test builds) it does nothing.
using ReleaseHook = void (*)();
void setReleaseHook(ReleaseHook hook);
// On the calling thread: allocators keep per-thread heaps.
void releaseFreedMemory();

}  // namespace strata::memory
