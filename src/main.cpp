#include "strata/common/memory.h"
#include "strata/server/server.h"

#ifdef STRATA_MIMALLOC
#include <mimalloc.h>
#endif

int main(int argc, char** argv) {
#ifdef STRATA_MIMALLOC
    // Not forced: only pages already empty go back. (Decommitting every emptied page at once,
    // mi_option_decommit_delay 0, returned more but cost 25 % CPU on HTTP/2 hits.)
    strata::memory::setReleaseHook([] { mi_collect(false); });
#endif
    return strata::server::run(argc, argv);
}
