// Per-thread free lists of malloc blocks, one list per size class, each capped. The allocators
// in front of malloc (the binary's operator new, libevent's and OpenSSL's memory) park freed
// blocks here so the next allocation of that class is a pointer pop instead of a trip through
// glibc's slow paths. A block freed on another thread is simply parked on that thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace strata {

// `Tag` gives each allocator lists of its own. Blocks are whole malloc blocks (the pointer
// malloc returned), so what a list cannot take, and what is parked when the thread exits, goes
// back with std::free.
template <typename Tag, std::size_t Classes>
class ThreadFreeLists {
public:
    // A parked block of that class, or nullptr.
    static void* pop(std::size_t size_class) {
        State& s = state_;
        FreeBlock* block = s.heads[size_class];
        if (block != nullptr) {
            s.heads[size_class] = block->next;
            --s.counts[size_class];
        }
        return block;
    }

    // Parks `block` unless its class holds `limit` blocks already or the thread is exiting;
    // false means the caller frees it.
    static bool push(void* block, std::size_t size_class, std::uint32_t limit) {
        State& s = state_;
        if (s.closed || s.counts[size_class] >= limit) {
            return false;
        }
        if (!s.drainer_registered) {
            drainer_.armed = true;  // first touch registers its destructor for this thread
            s.drainer_registered = true;
        }
        auto* parked = static_cast<FreeBlock*>(block);
        parked->next = s.heads[size_class];
        s.heads[size_class] = parked;
        ++s.counts[size_class];
        return true;
    }

    // Blocks parked on this thread.
    static std::size_t parked() {
        std::size_t total = 0;
        for (std::uint32_t count : state_.counts) {
            total += count;
        }
        return total;
    }

private:
    struct FreeBlock {
        FreeBlock* next;
    };
    // Trivially destructible, so it stays usable while the thread's other destructors run;
    // the Drainer empties it and turns parking off at thread exit.
    struct State {
        FreeBlock* heads[Classes];
        std::uint32_t counts[Classes];
        bool closed;
        bool drainer_registered;
    };
    struct Drainer {
        bool armed = false;
        ~Drainer() {
            State& s = state_;
            s.closed = true;
            for (std::size_t c = 0; c < Classes; ++c) {
                while (FreeBlock* block = s.heads[c]) {
                    s.heads[c] = block->next;
                    std::free(block);
                }
                s.counts[c] = 0;
            }
        }
    };

    static inline thread_local State state_{};
    static inline thread_local Drainer drainer_;
};

}  // namespace strata
