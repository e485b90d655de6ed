// The client address behind trusted proxies (listeners[].trusted_proxies), the way nginx's
// real_ip module with real_ip_recursive on finds it: only a trusted peer's X-Forwarded-For is
// believed, and in it only the hops that trusted proxies appended, read from the right.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/config/config.h"
#include "strata/http/message.h"
#include "strata/net/socket.h"

namespace strata::proxy {

// The right-most X-Forwarded-For entry (all fields of that name, in order) that is not itself in
// `trusted`; the left-most entry when every one is. Nothing (the peer stays the client) when the
// peer is not trusted, the request has no entry, or an entry is not an IP address: a list with a
// garbled hop says nothing reliable about the hops before it.
std::optional<net::SocketAddress> realClient(const net::SocketAddress& peer,
                                             const http::Fields& fields,
                                             const std::vector<config::Cidr>& trusted);

// The address a request's routing, access rules and rate limits see: realClient() behind the
// listener's trusted_proxies (`listener` may be null: none), else the peer.
net::SocketAddress requestClient(const net::SocketAddress& peer, const http::Fields& fields,
                                 const config::Listener* listener);

// One RFC 7239 Forwarded element naming the hop strata saw: `for=` the peer (IPv6 in quoted
// brackets, as 6 requires), `host=` the request's host (quoted when it is not a token, as with
// a port), `proto=` http or https. `peer` is an address as SocketAddress::hostString() writes it.
std::string forwardedElement(std::string_view peer, std::string_view host, bool https);

}  // namespace strata::proxy
