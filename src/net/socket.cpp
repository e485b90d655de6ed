#include "strata/net/socket.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

namespace strata::net {

std::string SocketAddress::hostString() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family() == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
        inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    } else if (family() == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    }
    return buf;
}

std::string SocketAddress::toString() const {
    std::uint16_t port = 0;
    if (family() == AF_INET) {
        port = ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
        return hostString() + ":" + std::to_string(port);
    }
    if (family() == AF_INET6) {
        port = ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
        // Appended in order: `"[" + string` inserts at the front, where GCC 12 reports a false
        // -Wrestrict.
        std::string text = "[";
        text += hostString();
        text += "]:";
        text += std::to_string(port);
        return text;
    }
    return "unknown";
}

Result<SocketAddress> SocketAddress::fromEndpoint(const config::Endpoint& endpoint) {
    SocketAddress out;
    std::string host = endpoint.host;
    if (host == "localhost") {
        host = "127.0.0.1";
    }
    if (host.empty() || host == "*") {
        host = "0.0.0.0";
    }
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    auto* in = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(endpoint.port);
        out.length = sizeof(sockaddr_in);
        return out;
    }
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(endpoint.port);
        out.length = sizeof(sockaddr_in6);
        return out;
    }
    return Error{"not a numeric address: " + endpoint.host};
}

SocketAddress SocketAddress::fromSockaddr(const sockaddr* addr, socklen_t length) {
    SocketAddress out;
    if (length > sizeof out.storage) {
        length = sizeof out.storage;
    }
    std::memcpy(&out.storage, addr, length);
    out.length = length;
    return out;
}

Result<int> listenTcp(const SocketAddress& address, bool reuse_port, int backlog) {
    int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return Error{std::string("socket: ") + std::strerror(errno)};
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port) {
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (address.family() == AF_INET6) {
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd, address.get(), address.length) != 0) {
        std::string err = std::string("bind ") + address.toString() + ": " + std::strerror(errno);
        ::close(fd);
        return Error{err};
    }
    if (::listen(fd, backlog) != 0) {
        std::string err = std::string("listen: ") + std::strerror(errno);
        ::close(fd);
        return Error{err};
    }
    return fd;
}

std::uint16_t localPort(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
    return 0;
}

void setNoDelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

SocketAddress localAddress(int fd) {
    SocketAddress out;
    socklen_t len = sizeof out.storage;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&out.storage), &len) != 0) {
        return SocketAddress{};
    }
    out.length = len;
    return out;
}

bool parseIpLiteral(std::string_view text, SocketAddress& out) {
    std::string_view host = text;
    if (!host.empty() && host.front() == '[') {
        const std::size_t close = host.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        const std::string_view rest = host.substr(close + 1);
        if (!rest.empty() && (rest.front() != ':' || rest.size() < 2 ||
                              rest.find_first_not_of("0123456789", 1) != std::string_view::npos)) {
            return false;
        }
        host = host.substr(1, close - 1);
    } else if (const std::size_t colon = host.find(':');
               colon != std::string_view::npos &&
               host.find(':', colon + 1) == std::string_view::npos) {
        // One colon: IPv4 with a port (an IPv6 address has at least two).
        const std::string_view port = host.substr(colon + 1);
        if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos) {
            return false;
        }
        host = host.substr(0, colon);
    }
    char buf[INET6_ADDRSTRLEN];
    if (host.empty() || host.size() >= sizeof buf) {
        return false;
    }
    std::memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';
    out = SocketAddress{};
    auto* in = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET, buf, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        out.length = sizeof(sockaddr_in);
        return true;
    }
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        out.length = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

bool inCidrs(const std::vector<config::Cidr>& blocks, const SocketAddress& address) {
    const std::uint8_t* bytes = nullptr;
    bool v6 = false;
    if (address.family() == AF_INET) {
        bytes = reinterpret_cast<const std::uint8_t*>(
            &reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr);
    } else if (address.family() == AF_INET6) {
        const auto* in6 = &reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr;
        bytes = reinterpret_cast<const std::uint8_t*>(in6);
        v6 = true;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            bytes += 12;
            v6 = false;
        }
    } else {
        return false;
    }
    for (const auto& block : blocks) {
        if (block.contains(v6, bytes)) {
            return true;
        }
    }
    return false;
}

}  // namespace strata::net
