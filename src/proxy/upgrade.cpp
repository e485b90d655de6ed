#include "strata/proxy/upgrade.h"

#include <algorithm>

#include "strata/common/strings.h"

namespace strata::proxy {
namespace {

bool isBase64(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

}  // namespace

bool validWebSocketKey(std::string_view key) {
    key = trimOws(key);
    if (key.size() != 24 || key.substr(22) != "==") {
        return false;
    }
    if (!std::all_of(key.begin(), key.begin() + 22, isBase64)) {
        return false;
    }
    // 16 bytes fill 21 characters and 2 bits of the 22nd: its low 4 bits must be zero.
    const char last = key[21];
    return last == 'A' || last == 'Q' || last == 'g' || last == 'w';
}

UpgradeDecision classifyUpgrade(const http::RequestHead& head, const config::Route& route) {
    UpgradeDecision out;
    const std::string* upgrade = head.fields.get("Upgrade");
    const bool http11 = head.version_major == 1 && head.version_minor == 1;
    if (upgrade == nullptr || !head.fields.hasToken("Connection", "upgrade") ||
        !(http11 || head.extended_connect)) {
        return out;  // Upgrade is hop-by-hop: forwarding drops it, the request goes on as HTTP
    }
    // The first token the route tunnels, in the client's order of preference.
    std::string chosen;
    bool websocket = false;
    forEachListElement(*upgrade, [&](std::string_view element) {
        if (!chosen.empty()) {
            return;
        }
        std::string token = toLower(element);
        if (token == "websocket") {
            websocket = true;
            chosen = token;
        } else if (std::find(route.upgrade_protocols.begin(), route.upgrade_protocols.end(),
                             token) != route.upgrade_protocols.end()) {
            chosen = token;
        }
    });
    if (chosen.empty()) {
        return out;
    }
    if (websocket && !route.websocket) {
        out.verdict = UpgradeDecision::Verdict::Refused;
        out.detail = "WebSocket is not allowed on this route";
        return out;
    }
    out.verdict = UpgradeDecision::Verdict::Invalid;
    // A body would be read as the start of the tunnel by one side and as HTTP by the other.
    if (head.framing != http::BodyFraming::None) {
        out.detail = "an Upgrade request must not have a body";
        return out;
    }
    if (websocket) {
        if (head.method != "GET") {
            out.detail = "a WebSocket handshake must be a GET";
            return out;
        }
        const std::string* key = head.fields.get("Sec-WebSocket-Key");
        if (key == nullptr || !validWebSocketKey(*key)) {
            out.detail = "missing or invalid Sec-WebSocket-Key";
            return out;
        }
        const std::string* version = head.fields.get("Sec-WebSocket-Version");
        if (version == nullptr || trimOws(*version) != "13") {
            out.detail = "Sec-WebSocket-Version must be 13";
            return out;
        }
    }
    out.verdict = UpgradeDecision::Verdict::Tunnel;
    out.protocol = std::move(chosen);
    out.detail = {};
    return out;
}

}  // namespace strata::proxy
