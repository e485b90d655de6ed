// Numeric socket addresses and the few socket calls the data path needs. No DNS anywhere: config
// validation accepts numeric addresses only, so nothing here can block.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <vector>

#include "strata/common/result.h"
#include "strata/config/config.h"

namespace strata::net {

struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    int family() const { return storage.ss_family; }
    // "127.0.0.1:8080" / "[::1]:8080"
    std::string toString() const;
    // Only the address part, "127.0.0.1" (for X-Forwarded-For and logs).
    std::string hostString() const;

    static Result<SocketAddress> fromEndpoint(const config::Endpoint& endpoint);
    static SocketAddress fromSockaddr(const sockaddr* addr, socklen_t length);
};

// A bound, listening, non-blocking socket. With reuse_port several workers bind the same
// address and the kernel spreads connections over them.
Result<int> listenTcp(const SocketAddress& address, bool reuse_port, int backlog);
// The port a socket is bound to (after binding port 0).
std::uint16_t localPort(int fd);
void setNoDelay(int fd);
// The local address of a connected socket (what the client connected to); empty on failure.
SocketAddress localAddress(int fd);
// An IP address as X-Forwarded-For carries it: "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
// optionally with a port ("192.0.2.1:80", "[2001:db8::1]:80"), which is dropped (port 0).
bool parseIpLiteral(std::string_view text, SocketAddress& out);
// Whether `address` lies in one of `blocks`. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, from
// a dual-stack socket) is matched as the IPv4 address it is.
bool inCidrs(const std::vector<config::Cidr>& blocks, const SocketAddress& address);

}  // namespace strata::net
