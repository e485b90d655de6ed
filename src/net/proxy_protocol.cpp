#include "strata/net/proxy_protocol.h"

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>

namespace strata::net::proxy_protocol {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
// proxy-protocol.txt 2.2: chosen so no text protocol (HTTP, SMTP, ...) can start with it.
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

constexpr unsigned kCommandLocal = 0x0;
constexpr unsigned kCommandProxy = 0x1;
constexpr unsigned kFamilyUnspec = 0x0;
constexpr unsigned kFamilyInet = 0x1;
constexpr unsigned kFamilyInet6 = 0x2;
constexpr unsigned kFamilyUnix = 0x3;
constexpr unsigned kTransportStream = 0x1;
constexpr std::size_t kInetBlock = 12;   // two IPv4 addresses, two ports
constexpr std::size_t kInet6Block = 36;  // two IPv6 addresses, two ports
constexpr std::size_t kUnixBlock = 216;  // two 108-byte paths
constexpr std::size_t kTlvHeader = 3;    // type, 16-bit length

ParseResult fail(const char* why) {
    ParseResult r;
    r.status = Status::Error;
    r.error = why;
    return r;
}

ParseResult needMore() {
    return ParseResult{};
}

std::uint8_t byteAt(std::string_view bytes, std::size_t i) {
    return static_cast<std::uint8_t>(bytes[i]);
}

std::uint16_t be16(std::string_view bytes, std::size_t i) {
    return static_cast<std::uint16_t>((byteAt(bytes, i) << 8) | byteAt(bytes, i + 1));
}

SocketAddress inet4(const unsigned char* address, std::uint16_t port_be) {
    SocketAddress out;
    auto* in = reinterpret_cast<sockaddr_in*>(&out.storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, address, 4);
    in->sin_port = port_be;
    out.length = sizeof(sockaddr_in);
    return out;
}

SocketAddress inet6(const unsigned char* address, std::uint16_t port_be) {
    SocketAddress out;
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, address, 16);
    in6->sin6_port = port_be;
    out.length = sizeof(sockaddr_in6);
    return out;
}

// A decimal port, 0..65535; at most five digits so the arithmetic cannot overflow.
bool parsePort(std::string_view text, std::uint16_t& port_be) {
    if (text.empty() || text.size() > 5) {
        return false;
    }
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) {
        return false;
    }
    port_be = htons(static_cast<std::uint16_t>(value));
    return true;
}

bool parseAddress(int family, std::string_view text, unsigned char* out) {
    char buf[INET6_ADDRSTRLEN];
    if (text.empty() || text.size() >= sizeof buf) {
        return false;
    }
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    return inet_pton(family, buf, out) == 1;
}

// Splits off the next space-separated token; false when there is none (or it is empty: the
// spec allows exactly one space between fields).
bool nextToken(std::string_view& rest, std::string_view& token, bool last) {
    const std::size_t space = rest.find(' ');
    if (last) {
        if (space != std::string_view::npos) {
            return false;
        }
        token = rest;
        rest = {};
    } else {
        if (space == std::string_view::npos) {
            return false;
        }
        token = rest.substr(0, space);
        rest.remove_prefix(space + 1);
    }
    return !token.empty();
}

ParseResult parseV1(std::string_view bytes) {
    const std::size_t prefix = std::min(bytes.size(), kV1Prefix.size());
    if (bytes.substr(0, prefix) != kV1Prefix.substr(0, prefix)) {
        return fail("not a PROXY protocol header");
    }
    const std::size_t window = std::min(bytes.size(), kMaxV1Bytes);
    const std::size_t cr = bytes.substr(0, window).find('\r');
    if (cr == std::string_view::npos) {
        if (bytes.substr(0, window).find('\n') != std::string_view::npos) {
            return fail("v1 header line not ended by CRLF");
        }
        return bytes.size() >= kMaxV1Bytes ? fail("v1 header longer than 107 bytes") : needMore();
    }
    // A bare LF before the CR: wrong whatever follows, so said now (as a shorter read would).
    if (bytes.substr(0, cr).find('\n') != std::string_view::npos) {
        return fail("v1 header line not ended by CRLF");
    }
    if (cr + 2 > kMaxV1Bytes) {
        return fail("v1 header longer than 107 bytes");
    }
    if (cr + 1 >= bytes.size()) {
        return needMore();
    }
    if (bytes[cr + 1] != '\n') {
        return fail("v1 header line not ended by CRLF");
    }
    std::string_view line = bytes.substr(kV1Prefix.size(), cr - kV1Prefix.size());
    ParseResult r;
    r.status = Status::Done;
    r.consumed = cr + 2;
    r.header.version = 1;
    // 2.1: after UNKNOWN the receiver ignores the rest of the line.
    if (line == "UNKNOWN" || line.substr(0, 8) == "UNKNOWN ") {
        r.header.local = true;
        return r;
    }
    std::string_view rest = line;
    std::string_view protocol;
    std::string_view source;
    std::string_view destination;
    std::string_view source_port;
    std::string_view destination_port;
    if (!nextToken(rest, protocol, false)) {
        return fail("v1 header: bad protocol field");
    }
    int family = 0;
    if (protocol == "TCP4") {
        family = AF_INET;
    } else if (protocol == "TCP6") {
        family = AF_INET6;
    } else {
        return fail("v1 header: protocol is not TCP4, TCP6 or UNKNOWN");
    }
    if (!nextToken(rest, source, false) || !nextToken(rest, destination, false) ||
        !nextToken(rest, source_port, false) || !nextToken(rest, destination_port, true)) {
        return fail("v1 header: wrong number of fields");
    }
    unsigned char source_bytes[16];
    unsigned char destination_bytes[16];
    if (!parseAddress(family, source, source_bytes) ||
        !parseAddress(family, destination, destination_bytes)) {
        return fail("v1 header: address does not match the protocol");
    }
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    if (!parsePort(source_port, sport) || !parsePort(destination_port, dport)) {
        return fail("v1 header: bad port");
    }
    if (family == AF_INET) {
        r.header.source = inet4(source_bytes, sport);
        r.header.destination = inet4(destination_bytes, dport);
    } else {
        r.header.source = inet6(source_bytes, sport);
        r.header.destination = inet6(destination_bytes, dport);
    }
    return r;
}

ParseResult parseV2(std::string_view bytes) {
    const std::size_t prefix = std::min(bytes.size(), kV2Signature.size());
    if (bytes.substr(0, prefix) != kV2Signature.substr(0, prefix)) {
        return fail("not a PROXY protocol header");
    }
    if (bytes.size() < kV2PreambleBytes) {
        return needMore();
    }
    const unsigned version_command = byteAt(bytes, 12);
    const unsigned family_transport = byteAt(bytes, 13);
    const std::size_t length = be16(bytes, 14);
    if ((version_command >> 4) != 2) {
        return fail("v2 header: unsupported version");
    }
    const unsigned command = version_command & 0x0f;
    if (command != kCommandLocal && command != kCommandProxy) {
        return fail("v2 header: unknown command");
    }
    const std::size_t total = kV2PreambleBytes + length;
    if (total > kMaxHeaderBytes) {
        return fail("v2 header longer than the limit");
    }
    if (bytes.size() < total) {
        return needMore();
    }
    ParseResult r;
    r.status = Status::Done;
    r.consumed = total;
    r.header.version = 2;
    // 2.2: with LOCAL (a health check from the balancer itself) the receiver uses the real
    // connection endpoints and skips whatever follows, whatever the family byte says.
    if (command == kCommandLocal) {
        r.header.local = true;
        return r;
    }
    const unsigned family = family_transport >> 4;
    const unsigned transport = family_transport & 0x0f;
    std::size_t block = 0;
    switch (family) {
        case kFamilyUnspec:
            // 2.2: unknown protocol; the receiver ignores the address information.
            r.header.local = true;
            return r;
        case kFamilyInet:
            block = kInetBlock;
            break;
        case kFamilyInet6:
            block = kInet6Block;
            break;
        case kFamilyUnix:
            block = kUnixBlock;
            break;
        default:
            return fail("v2 header: unknown address family");
    }
    if (transport != kTransportStream) {
        return fail("v2 header: transport is not a stream");
    }
    if (length < block) {
        return fail("v2 header: address block shorter than its family needs");
    }
    // TLVs fill the rest. None changes what strata does, but each must fit inside the
    // header: a sender whose lengths disagree is not to be believed about the address either.
    for (std::size_t at = block; at < length;) {
        if (length - at < kTlvHeader) {
            return fail("v2 header: truncated TLV");
        }
        const std::size_t value = be16(bytes, kV2PreambleBytes + at + 1);
        if (length - at - kTlvHeader < value) {
            return fail("v2 header: TLV overruns the header");
        }
        at += kTlvHeader + value;
    }
    const auto* addresses = reinterpret_cast<const unsigned char*>(bytes.data()) + kV2PreambleBytes;
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    if (family == kFamilyInet) {
        std::memcpy(&sport, addresses + 8, 2);
        std::memcpy(&dport, addresses + 10, 2);
        r.header.source = inet4(addresses, sport);
        r.header.destination = inet4(addresses + 4, dport);
    } else if (family == kFamilyInet6) {
        std::memcpy(&sport, addresses + 32, 2);
        std::memcpy(&dport, addresses + 34, 2);
        r.header.source = inet6(addresses, sport);
        r.header.destination = inet6(addresses + 16, dport);
    } else {
        r.header.local = true;  // a unix socket path is no client address
    }
    return r;
}

// Both addresses in one family: an IPv4 one next to an IPv6 one becomes IPv4-mapped.
bool sameFamily(SocketAddress& a, SocketAddress& b) {
    auto mapped = [](const SocketAddress& v4) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&v4.storage);
        unsigned char bytes[16] = {};
        bytes[10] = 0xff;
        bytes[11] = 0xff;
        std::memcpy(bytes + 12, &in->sin_addr, 4);
        return inet6(bytes, in->sin_port);
    };
    const int fa = a.family();
    const int fb = b.family();
    if ((fa != AF_INET && fa != AF_INET6) || (fb != AF_INET && fb != AF_INET6)) {
        return false;
    }
    if (fa == AF_INET && fb == AF_INET6) {
        a = mapped(a);
    } else if (fa == AF_INET6 && fb == AF_INET) {
        b = mapped(b);
    }
    return true;
}

std::uint16_t portOf(const SocketAddress& address) {
    if (address.family() == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_port);
    }
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_port);
}

}  // namespace

ParseResult parse(std::string_view bytes) {
    if (bytes.empty()) {
        return needMore();
    }
    if (bytes[0] == 'P') {
        return parseV1(bytes);
    }
    if (bytes[0] == '\r') {
        return parseV2(bytes);
    }
    return fail("not a PROXY protocol header");
}

std::string encodeV1(const SocketAddress& source, const SocketAddress& destination) {
    SocketAddress from = source;
    SocketAddress to = destination;
    if (!sameFamily(from, to)) {
        return "PROXY UNKNOWN\r\n";
    }
    std::string out = from.family() == AF_INET ? "PROXY TCP4 " : "PROXY TCP6 ";
    out += from.hostString();
    out += ' ';
    out += to.hostString();
    out += ' ';
    out += std::to_string(portOf(from));
    out += ' ';
    out += std::to_string(portOf(to));
    out += "\r\n";
    return out;
}

std::string encodeV2(const SocketAddress& source, const SocketAddress& destination) {
    SocketAddress from = source;
    SocketAddress to = destination;
    std::string out(kV2Signature);
    if (!sameFamily(from, to)) {
        out += '\x20';  // version 2, LOCAL
        out.append(3, '\0');
        return out;
    }
    const bool v4 = from.family() == AF_INET;
    out += '\x21';                // version 2, PROXY
    out += v4 ? '\x11' : '\x21';  // AF_INET or AF_INET6, STREAM
    const std::size_t block = v4 ? kInetBlock : kInet6Block;
    out += static_cast<char>(block >> 8);
    out += static_cast<char>(block & 0xff);
    auto append = [&out](const void* data, std::size_t n) {
        out.append(static_cast<const char*>(data), n);
    };
    if (v4) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&from.storage);
        const auto* b = reinterpret_cast<const sockaddr_in*>(&to.storage);
        append(&a->sin_addr, 4);
        append(&b->sin_addr, 4);
        append(&a->sin_port, 2);
        append(&b->sin_port, 2);
    } else {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&from.storage);
        const auto* b = reinterpret_cast<const sockaddr_in6*>(&to.storage);
        append(&a->sin6_addr, 16);
        append(&b->sin6_addr, 16);
        append(&a->sin6_port, 2);
        append(&b->sin6_port, 2);
    }
    return out;
}

}  // namespace strata::net::proxy_protocol
