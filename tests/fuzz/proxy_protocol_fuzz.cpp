// Fuzzes the PROXY protocol parser: the input is the first bytes of a connection. The verdict
// must be the same whether the bytes arrive at once or grow one at a time (what a socket read
// sees), a header never claims more bytes than it was given or than the bound, and an accepted
// header's addresses encode to a header that parses back to the same addresses.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "strata/net/proxy_protocol.h"

namespace {

namespace pp = strata::net::proxy_protocol;

#define FUZZ_CHECK(cond)  \
    do {                  \
        if (!(cond)) {    \
            std::abort(); \
        }                 \
    } while (0)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    const pp::ParseResult whole = pp::parse(input);
    if (whole.status == pp::Status::NeedMore) {
        FUZZ_CHECK(size < pp::kMaxHeaderBytes);
    }
    if (whole.status == pp::Status::Done) {
        FUZZ_CHECK(whole.consumed > 0 && whole.consumed <= size);
        FUZZ_CHECK(whole.consumed <= pp::kMaxHeaderBytes);
        FUZZ_CHECK(whole.header.version == 1 || whole.header.version == 2);
        if (whole.header.version == 1) {
            FUZZ_CHECK(whole.consumed <= pp::kMaxV1Bytes);
        }
        if (!whole.header.local) {
            for (const std::string& again :
                 {pp::encodeV1(whole.header.source, whole.header.destination),
                  pp::encodeV2(whole.header.source, whole.header.destination)}) {
                const pp::ParseResult round = pp::parse(again);
                FUZZ_CHECK(round.status == pp::Status::Done && round.consumed == again.size());
                FUZZ_CHECK(round.header.source.toString() == whole.header.source.toString());
                FUZZ_CHECK(round.header.destination.toString() ==
                           whole.header.destination.toString());
            }
        }
    }
    // Growing prefixes: NeedMore until the same verdict, at the same length. Each prefix is its
    // own allocation so ASan sees any read past it.
    for (std::size_t n = 0; n <= size; ++n) {
        const std::string prefix = input.substr(0, n);
        const pp::ParseResult r = pp::parse(prefix);
        if (r.status == pp::Status::NeedMore) {
            continue;
        }
        FUZZ_CHECK(r.status == whole.status);
        if (r.status == pp::Status::Done) {
            FUZZ_CHECK(r.consumed == whole.consumed && r.consumed == n);
        }
        break;
    }
    return 0;
}
