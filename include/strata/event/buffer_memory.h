// Memory for libevent's own allocations (evbuffer chains, events), recycled per thread.
//
// Every socket read reserves a fresh 32 KiB evbuffer chain (a 64 KiB block once libevent rounds
// it up) and every drain frees it again: two trips per request through glibc's large-chunk
// path, which costs more than the parsing of the request. A thread-local free list per
// power-of-two size class turns those into a pointer pop and push. Lists are capped, so a
// burst never pins memory: what does not fit goes back to malloc.
#pragma once

#include <cstddef>

namespace strata::event {

// Routes libevent's malloc/realloc/free through the per-thread cache. Call once, first thing
// in main(), before any other libevent function (event_set_mem_functions' rule). A no-op in
// sanitizer builds, where recycling would hide use-after-free from ASan.
void installBufferMemory();

// The allocator itself, exposed for unit tests.
void* bufferAlloc(std::size_t size);
void* bufferRealloc(void* block, std::size_t size);
void bufferFree(void* block);
// Blocks currently parked in this thread's free lists.
std::size_t cachedBufferBlocks();

}  // namespace strata::event
