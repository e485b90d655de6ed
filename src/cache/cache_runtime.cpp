#include "strata/cache/cache_runtime.h"

#include "strata/cache/l2_cache.h"

namespace strata::cache {

void CacheRuntime::keep(const EntryPtr& entry, WallTime now) {
    l1->insert(entry);
    if (l2 != nullptr) {
        l2->store(entry, now);
    }
}

}  // namespace strata::cache
