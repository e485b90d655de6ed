#include "strata/cache/cache_runtime.h"

#include "strata/cache/l2_cache.h"

namespace strata::cache {

void CacheRuntime::keep(const EntryPtr& entry, WallTime now, bool release_lease) {
    l1->insert(entry);
    if (l2 != nullptr) {
        l2->store(entry, now, release_lease);
    }
}

bool CacheRuntime::admits(std::uint64_t body_bytes) {
    if (l2 != nullptr || l1->admits(body_bytes + kHeadAllowance)) {
        return true;
    }
    l1->countRejection();
    return false;
}

}  // namespace strata::cache
