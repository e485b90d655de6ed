// Any text is a config file to strata --check: it must give a config or diagnostics, never a
// crash, a hang or an exception (STYLE.md 4, "Fuzz"). The unit parsers get the raw bytes too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "strata/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto result = strata::config::loadString(text, "fuzz.yaml");
    // Exactly one of config and errors, and every diagnostic formats.
    if ((result.config == nullptr) == result.errors.empty()) {
        std::abort();
    }
    for (const auto& diagnostic : result.errors) {
        if (diagnostic.format().empty() || diagnostic.message.empty()) {
            std::abort();
        }
    }
    // A loaded config is one the server can run: spot-check the invariants it relies on.
    if (result.config) {
        const auto& config = *result.config;
        if (config.listeners.empty()) {
            std::abort();
        }
        for (const auto& route : config.routes) {
            if (config.upstreams.count(route.upstream) == 0) {
                std::abort();
            }
        }
        for (const auto& [name, upstream] : config.upstreams) {
            if (upstream.servers.empty()) {
                std::abort();
            }
        }
    }
    strata::config::Duration duration{};
    if (strata::config::parseDuration(text, duration) &&
        (duration.count() < 0 ||
         !strata::config::parseDuration(strata::config::formatDuration(duration), duration))) {
        std::abort();
    }
    std::uint64_t bytes = 0;
    if (strata::config::parseBytes(text, bytes) &&
        !strata::config::parseBytes(strata::config::formatBytes(bytes), bytes)) {
        std::abort();
    }
    strata::config::Endpoint endpoint;
    std::string error;
    if (!strata::config::parseEndpoint(text, endpoint, error) && error.empty()) {
        std::abort();
    }
    return 0;
}
