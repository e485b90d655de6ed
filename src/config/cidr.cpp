#include <arpa/inet.h>
#include <cstring>

#include "strata/config/config.h"

namespace strata::config {

bool Cidr::contains(bool address_v6, const std::uint8_t* bytes) const {
    if (address_v6 != v6) {
        return false;
    }
    const unsigned full = prefix / 8u;
    if (std::memcmp(bytes, address.data(), full) != 0) {
        return false;
    }
    const unsigned rest = prefix % 8u;
    if (rest == 0) {
        return true;
    }
    const auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
    return (bytes[full] & mask) == address[full];
}

bool Cidr::parse(std::string_view text, Cidr& out, std::string& error) {
    out = Cidr{};
    out.text = std::string(text);
    const std::size_t slash = text.find('/');
    const std::string host(text.substr(0, slash));
    if (inet_pton(AF_INET, host.c_str(), out.address.data()) == 1) {
        out.v6 = false;
    } else if (inet_pton(AF_INET6, host.c_str(), out.address.data()) == 1) {
        out.v6 = true;
    } else {
        error = "\"" + out.text + "\" is not a numeric address or address/prefix block";
        return false;
    }
    const unsigned max = out.v6 ? 128 : 32;
    unsigned prefix = max;
    if (slash != std::string_view::npos) {
        const std::string_view digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3 ||
            digits.find_first_not_of("0123456789") != std::string_view::npos) {
            error = "\"" + out.text + "\": prefix length must be 0.." + std::to_string(max);
            return false;
        }
        prefix = 0;
        for (char c : digits) {
            prefix = prefix * 10 + static_cast<unsigned>(c - '0');
        }
        if (prefix > max) {
            error = "\"" + out.text + "\": prefix length must be 0.." + std::to_string(max);
            return false;
        }
    }
    out.prefix = static_cast<std::uint8_t>(prefix);
    // Host bits are cleared, so "10.1.2.3/8" means 10.0.0.0/8 as in nginx's set_real_ip_from.
    for (unsigned bit = prefix; bit < max; ++bit) {
        out.address[bit / 8] =
            static_cast<std::uint8_t>(out.address[bit / 8] & ~(0x80u >> (bit % 8)));
    }
    return true;
}

}  // namespace strata::config
