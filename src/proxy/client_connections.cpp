#include "strata/proxy/client_connections.h"

namespace strata::proxy {

bool ClientConnectionTable::acquire(const net::SocketAddress& client, std::uint32_t limit) {
    std::string key = client.hostString();
    std::lock_guard lock(mu_);
    auto [it, added] = open_.try_emplace(std::move(key), 0);
    if (it->second >= limit) {
        return false;
    }
    ++it->second;
    return true;
}

void ClientConnectionTable::release(const net::SocketAddress& client) {
    const std::string key = client.hostString();
    std::lock_guard lock(mu_);
    auto it = open_.find(key);
    if (it != open_.end() && --it->second == 0) {
        open_.erase(it);
    }
}

std::size_t ClientConnectionTable::addresses() const {
    std::lock_guard lock(mu_);
    return open_.size();
}

}  // namespace strata::proxy
