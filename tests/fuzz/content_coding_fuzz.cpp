// Any bytes as Accept-Encoding and as an ETag, and as a compressed body to decode: never a
// crash, and the invariants hold (qualities in 0..1000, a class below 16, the chosen coding one
// of those offered or identity, an encoded strong ETag mapping back, decoding bounded).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "strata/common/strings.h"
#include "strata/http/content_coding.h"

using namespace strata::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);

    AcceptEncoding ae = parseAcceptEncoding(in, true);
    for (Coding c : {Coding::Identity, Coding::Gzip, Coding::Br}) {
        const int q = ae.quality(c);
        if (q < 0 || q > 1000) {
            std::abort();
        }
    }
    if (acceptClass(ae) > 15) {
        std::abort();
    }
    constexpr Coding kGzip[] = {Coding::Gzip};
    const Coding chosen = chooseCoding(ae, kGzip);
    if (chosen != Coding::Gzip && chosen != Coding::Identity) {
        std::abort();  // only what was offered, or identity
    }
    if (chosen == Coding::Gzip && ae.quality(Coding::Gzip) == 0) {
        std::abort();  // never a coding the client refused
    }

    for (Coding c : {Coding::Gzip, Coding::Br}) {
        const std::string coded = encodedEtag(in, c);
        if (!coded.empty() && !coded.starts_with("W/")) {
            auto back = identityEtag(coded);
            if (!back || *back != std::string(strata::trimOws(in))) {
                std::abort();  // a strong coded ETag maps back to the one it came from
            }
        }
        // Untrusted compressed bytes decode within the bound or fail; never more.
        if (auto out = decompressBody(c, in, 1 << 16); out && out->size() > (1 << 16)) {
            std::abort();
        }
    }
    return 0;
}
