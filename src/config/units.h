// Private helpers shared by the unit parsers and the loader.
#pragma once

#include <string>

#include "strata/config/config.h"

namespace strata::config::detail {

// parseEndpoint with a lower port bound: listeners accept 0 (ephemeral), origins need 1..65535.
// On failure `error` is a complete sentence fragment: "port 99999 out of range 1..65535".
bool parseEndpointWithMinPort(const std::string& text, int min_port, Endpoint& out,
                              std::string& error);

// Canonical numeric form of an endpoint's host, for duplicate detection: "::1" and "0:0::1" are
// the same socket; "" (":port") is "0.0.0.0".
std::string canonicalHost(const std::string& host);

}  // namespace strata::config::detail
