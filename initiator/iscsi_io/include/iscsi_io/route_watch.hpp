// Notices local link, address and route changes (rtnetlink) so that a path whose cable is
// pulled fails at once instead of after a NOP-Out timeout. Linux only.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace boost::asio {
class io_context;
}

namespace iscsi_io {

class RouteWatch {
 public:
  // `on_change` runs on the io_context after each burst of link/address/route messages.
  RouteWatch(boost::asio::io_context& io, std::function<void()> on_change);
  ~RouteWatch();
  // False when the netlink socket could not be opened (then nothing is watched).
  bool active() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Where a path's connection goes: host:port from `source` (any address when empty), bound to
// `interface` (SO_BINDTODEVICE) when one is given.
struct RouteQuery {
  std::string host;
  uint16_t port = 3260;
  std::optional<std::string> source;
  std::optional<std::string> interface;
};

// Whether the kernel has a route for `query` now. Asks with a UDP connect(), which only
// consults the routing table and sends nothing. `why` gets the kernel's reason when there is
// none (e.g. "Network is unreachable").
bool route_exists(const RouteQuery& query, std::string& why);

// The local interface the kernel would send `query` through (the routing table's choice, through a
// UDP connect() that sends nothing), or nullopt when there is no route or the host is a name. Two
// paths that leave through one interface are one path, not two.
std::optional<std::string> outgoing_interface(const RouteQuery& query);

// The interface the routing table sends `query` out of when its packets carry `query.source`
// (`ip route get HOST from SOURCE`: RTM_GETROUTE, policy routing rules included); nullopt
// without a route, for a host name, or when netlink will not say. Unlike outgoing_interface(),
// which falls back to the interface holding the local address when netlink will not say, this
// is only the routing table's answer. `query.interface` is returned as it is.
std::optional<std::string> routed_interface(const RouteQuery& query);

// The local interface that holds `address` (an IPv4/IPv6 literal), or nullopt.
std::optional<std::string> interface_with_address(const std::string& address);

}  // namespace iscsi_io
