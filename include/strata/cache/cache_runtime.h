// The cache as the proxy sees it: one per process, shared by every worker and kept across
// reloads (entries outlive config snapshots). Owned by the server.
#pragma once

#include <memory>

#include "strata/cache/coalescer.h"
#include "strata/cache/l1_cache.h"

namespace strata::cache {

class L2Cache;

struct CacheRuntime {
    explicit CacheRuntime(const L1Options& l1_options)
        : l1(std::make_unique<L1Cache>(l1_options)) {}

    // Stores an entry in L1 and, asynchronously (never waiting), in L2; with `release_lease`
    // the URL's fill lease is released once the L2 write is done.
    void keep(const EntryPtr& entry, WallTime now, bool release_lease = false);
    // Whether keep() would store a response with a body of `body_bytes` in some tier, so that
    // Cache-Status says "stored" only when something is; a refusal is counted as an L1
    // rejection. L2 stores asynchronously and counts as storing; L1 is asked with room for the
    // head and index (kHeadAllowance).
    bool admits(std::uint64_t body_bytes);
    static constexpr std::uint64_t kHeadAllowance = 4096;

    std::unique_ptr<L1Cache> l1;
    Coalescer coalescer;
    L2Cache* l2 = nullptr;  // null without cache.l2.servers; owned by the server
};

}  // namespace strata::cache
