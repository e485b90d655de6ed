// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a header a load balancer
// in front of strata writes before anything else on a connection, carrying the client's address,
// and the same header strata writes to upstreams that want it.
//
// The parser is pure (bytes in, verdict out) so it can be fuzzed; it never reads past the bytes
// it is given and gives up on a header longer than kMaxHeaderBytes, so a sender cannot make a
// connection buffer without bound before it is known to be one. Header bytes are untrusted even
// from a trusted sender: every length is checked against what is there.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "strata/net/socket.h"

namespace strata::net::proxy_protocol {

// v1: "PROXY TCP6 " + two full IPv6 addresses + two ports + CRLF is 107 bytes (the spec's bound).
inline constexpr std::size_t kMaxV1Bytes = 107;
// v2: 16 bytes of preamble and up to 65535 of addresses and TLVs. Real senders (HAProxy, AWS and
// GCP load balancers) stay far below this; a longer header is refused instead of buffered.
inline constexpr std::size_t kMaxHeaderBytes = 4096;
inline constexpr std::size_t kV2PreambleBytes = 16;

enum class Status { NeedMore, Done, Error };

struct Header {
    int version = 0;  // 1 or 2
    // LOCAL (v2), UNKNOWN (v1), or an address family without IP addresses (AF_UNSPEC, AF_UNIX):
    // the connection's own peer address stands; source/destination are empty.
    bool local = false;
    SocketAddress source;       // the client, as the sender saw it
    SocketAddress destination;  // the address the client connected to
};

struct ParseResult {
    Status status = Status::NeedMore;
    std::size_t consumed = 0;  // the header's length, when Done
    Header header;
    const char* error = "";  // static text, when Error
};

// Parses the start of a connection. NeedMore: `bytes` is a proper prefix of a header that may
// still turn out valid (never returned once kMaxHeaderBytes are available). Error as soon as the
// bytes cannot be the start of a valid header.
ParseResult parse(std::string_view bytes);

// The header describing a connection from `source` to `destination`. Addresses of different
// families are both written as IPv6 (IPv4-mapped); an address that is neither IPv4 nor IPv6
// makes "PROXY UNKNOWN" (v1) or a LOCAL header (v2), which the receiver takes as "no address".
std::string encodeV1(const SocketAddress& source, const SocketAddress& destination);
std::string encodeV2(const SocketAddress& source, const SocketAddress& destination);

}  // namespace strata::net::proxy_protocol
