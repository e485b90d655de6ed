#include "strata/proxy/log_privacy.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "strata/common/strings.h"

namespace strata::proxy {

LogPrivacy::LogPrivacy(ClientMode mode, std::string_view key, std::vector<std::string> redact)
    : mode_(mode), redact_(std::move(redact)) {
    if (key.empty()) {
        RAND_bytes(key_.data(), static_cast<int>(key_.size()));
    } else {
        // The configured key is hashed to the HMAC block so any length works.
        unsigned int len = 0;
        EVP_Digest(key.data(), key.size(), key_.data(), &len, EVP_sha256(), nullptr);
    }
    for (auto& name : redact_) {
        name = toLower(name);
    }
}

bool LogPrivacy::parseMode(std::string_view text, ClientMode& out) {
    if (text == "full") {
        out = ClientMode::Full;
    } else if (text == "truncate") {
        out = ClientMode::Truncate;
    } else if (text == "hash") {
        out = ClientMode::Hash;
    } else {
        return false;
    }
    return true;
}

std::string_view LogPrivacy::client(std::string_view client, std::string& scratch) const {
    if (mode_ == ClientMode::Full || client.empty() || client.size() >= INET6_ADDRSTRLEN) {
        return client;
    }
    char text[INET6_ADDRSTRLEN];
    std::memcpy(text, client.data(), client.size());
    text[client.size()] = '\0';
    unsigned char bytes[16];
    const bool v4 = inet_pton(AF_INET, text, bytes) == 1;
    if (!v4 && inet_pton(AF_INET6, text, bytes) != 1) {
        // Not an address (a Unix socket peer): nothing personal to hide.
        return client;
    }
    if (mode_ == ClientMode::Truncate) {
        std::memset(v4 ? bytes + 3 : bytes + 6, 0, v4 ? 1 : 10);
        char out[INET6_ADDRSTRLEN];
        inet_ntop(v4 ? AF_INET : AF_INET6, bytes, out, sizeof out);
        scratch.assign(out);
        return scratch;
    }
    // Hash the binary form so "::ffff:1.2.3.4"-style spellings of one address agree with
    // their canonical text only when they are the same bytes.
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), bytes, v4 ? 4 : 16, mac,
         &mac_len);
    static constexpr char kHex[] = "0123456789abcdef";
    scratch.clear();
    for (std::size_t i = 0; i < 8; ++i) {
        scratch += kHex[mac[i] >> 4];
        scratch += kHex[mac[i] & 0xf];
    }
    return scratch;
}

std::string_view LogPrivacy::target(std::string_view target, std::string& scratch) const {
    const std::size_t q = target.find('?');
    if (redact_.empty() || q == std::string_view::npos) {
        return target;
    }
    scratch.assign(target.substr(0, q + 1));
    std::string_view query = target.substr(q + 1);
    bool first = true;
    while (true) {
        const std::size_t amp = query.find('&');
        std::string_view param = query.substr(0, amp);
        const std::size_t eq = param.find('=');
        const std::string_view name = param.substr(0, eq);
        if (!first) {
            scratch += '&';
        }
        first = false;
        const bool hidden = eq != std::string_view::npos &&
                            std::any_of(redact_.begin(), redact_.end(), [&](const std::string& r) {
                                return equalsIgnoreCase(name, r);
                            });
        if (hidden) {
            scratch += name;
            scratch += "=REDACTED";
        } else {
            scratch += param;
        }
        if (amp == std::string_view::npos) {
            break;
        }
        query.remove_prefix(amp + 1);
    }
    return scratch;
}

}  // namespace strata::proxy
