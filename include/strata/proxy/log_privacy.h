// What the access log may keep of a client (logging.client_address, logging.redact_query): so
// operators can keep logs without keeping personal data (GDPR). Pure and immutable; the sink
// holds one per config and workers share it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace strata::proxy {

class LogPrivacy {
public:
    enum class ClientMode { Full, Truncate, Hash };

    // `key`: the hash key; empty draws a random one, so hashes then match only within one
    // process lifetime and config. `redact`: query parameter names (any case) whose values
    // are replaced.
    LogPrivacy(ClientMode mode, std::string_view key, std::vector<std::string> redact);

    bool active() const { return mode_ != ClientMode::Full || !redact_.empty(); }
    // The address as the log may show it. Truncate keeps an IPv4 /24 and an IPv6 /48
    // ("192.0.2.0", "2001:db8:1::"); Hash writes 16 hex digits of a keyed HMAC-SHA256, the
    // same for the same address and key. `scratch` holds the result when it is not `client`.
    std::string_view client(std::string_view client, std::string& scratch) const;
    // The request target with each redacted parameter's value replaced by "REDACTED".
    std::string_view target(std::string_view target, std::string& scratch) const;

    static bool parseMode(std::string_view text, ClientMode& out);

private:
    ClientMode mode_;
    std::array<unsigned char, 32> key_{};
    std::vector<std::string> redact_;  // lowercase
};

}  // namespace strata::proxy
