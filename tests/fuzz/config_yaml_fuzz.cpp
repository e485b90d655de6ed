#include <cstddef>
#include <cstdint>

// Placeholder until the target is written.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    (void)data;
    (void)size;
    return 0;
}
