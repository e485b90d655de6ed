// Which HTTP/1.1 Upgrade requests become byte tunnels (RFC 9110 7.8, RFC 6455 4.1). Pure, so
// every smuggling case is a unit test: only a bodiless GET with a well-formed WebSocket
// handshake (or a token the route allows) is ever forwarded with its Upgrade field.
#pragma once

#include <string>
#include <string_view>

#include "strata/config/config.h"
#include "strata/http/message.h"

namespace strata::proxy {

struct UpgradeDecision {
    enum class Verdict {
        None,     // no upgrade asked for, or only tokens strata drops (h2c, unknown ones)
        Tunnel,   // forward with Connection: upgrade and Upgrade: `protocol` on a fresh connection
        Refused,  // the route does not tunnel websocket: 403
        Invalid,  // asks for websocket but is no valid handshake: 400
    };
    Verdict verdict = Verdict::None;
    std::string protocol;     // the Upgrade token forwarded (lowercase)
    std::string_view detail;  // why Refused or Invalid
};

UpgradeDecision classifyUpgrade(const http::RequestHead& head, const config::Route& route);

// RFC 6455 4.1: base64 of exactly 16 bytes (24 characters, "==" padded, no stray bits).
bool validWebSocketKey(std::string_view key);

}  // namespace strata::proxy
