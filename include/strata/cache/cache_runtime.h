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

    // Stores an entry in L1 and, asynchronously (never waiting), in L2.
    void keep(const EntryPtr& entry, WallTime now);

    std::unique_ptr<L1Cache> l1;
    Coalescer coalescer;
    L2Cache* l2 = nullptr;  // null without cache.l2.servers; owned by the server
};

}  // namespace strata::cache
