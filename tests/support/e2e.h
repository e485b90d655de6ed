// Everything an end-to-end case needs: include this, then write doctest cases that read like
// varnishtest ones (STYLE.md 4): what the origin does, the config, what the client sends, what it
// must get, which counters moved.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "strata/common/strings.h"

#include "process.h"
#include "raw_client.h"
#include "servers.h"

// REQUIRE that a complete response was read; on failure shows why (timeout, close, malformed).
#define STRATA_REQUIRE_RESPONSE(r)                     \
    do {                                               \
        INFO("response error: " << (r).error);         \
        INFO("body bytes so far: " << (r).body_bytes); \
        REQUIRE((r).ok());                             \
    } while (false)

namespace strata::test {

// Bound for "bounded memory" checks on VmRSS. Under ASan (the processes are built like the test)
// the quarantine and shadow memory keep a few hundred MiB resident whatever the code does, so
// only gross growth can be caught there.
constexpr std::uint64_t rssBound(std::uint64_t normal) {
#if defined(__SANITIZE_ADDRESS__)
    return normal + (600ULL << 20);
#else
    return normal;
#endif
}

// strata-origin's /headers body: the request line, then one "Name: value" line per field.
struct EchoedHead {
    std::string request_line;
    std::vector<std::pair<std::string, std::string>> fields;

    explicit EchoedHead(const std::string& body) {
        std::istringstream in(body);
        std::getline(in, request_line);
        std::string line;
        while (std::getline(in, line)) {
            auto colon = line.find(": ");
            if (colon != std::string::npos) {
                fields.emplace_back(line.substr(0, colon), line.substr(colon + 2));
            }
        }
    }
    // Every value of `name`, joined with ", " (one field or several are the same to HTTP).
    std::string value(std::string_view name) const {
        std::string out;
        for (const auto& [k, v] : fields) {
            if (equalsIgnoreCase(k, name)) {
                out += (out.empty() ? "" : ", ") + v;
            }
        }
        return out;
    }
    bool has(std::string_view name) const {
        for (const auto& [k, v] : fields) {
            if (equalsIgnoreCase(k, name)) {
                return true;
            }
        }
        return false;
    }
};

}  // namespace strata::test
