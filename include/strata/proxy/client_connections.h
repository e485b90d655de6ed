// Open client connections per address, over all workers, for listeners[].max_connections_per_client
// (nginx's limit_conn). A client's connections land on any worker (SO_REUSEPORT), so the table
// is shared; only listeners with the limit touch it. An address is held only while it has an
// open connection, so the table never holds more entries than limits.max_client_connections.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "strata/net/socket.h"

namespace strata::proxy {

class ClientConnectionTable {
public:
    // Takes a slot for `client` when it holds fewer than `limit`; false: refused.
    bool acquire(const net::SocketAddress& client, std::uint32_t limit);
    void release(const net::SocketAddress& client);
    std::size_t addresses() const;

private:
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::uint32_t> open_;  // by SocketAddress::hostString()
};

}  // namespace strata::proxy
