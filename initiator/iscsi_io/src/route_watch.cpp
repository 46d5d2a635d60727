#include "iscsi_io/route_watch.hpp"

#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>

namespace iscsi_io {

namespace asio = boost::asio;

struct RouteWatch::Impl : std::enable_shared_from_this<RouteWatch::Impl> {
  Impl(asio::io_context& io, std::function<void()> cb) : descriptor(io), on_change(std::move(cb)) {}
  asio::posix::stream_descriptor descriptor;
  std::function<void()> on_change;
  std::array<char, 16384> buffer{};
  bool stopped = false;

  void read() {
    auto self = shared_from_this();
    descriptor.async_read_some(asio::buffer(buffer), [self](boost::system::error_code ec, size_t) {
      if (ec || self->stopped) return;
      // Only that something changed matters; callers re-check their routes.
      self->on_change();
      self->read();
    });
  }
};

RouteWatch::RouteWatch(asio::io_context& io, std::function<void()> on_change)
    : impl_(std::make_shared<Impl>(io, std::move(on_change))) {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return;
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups =
      RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    ::close(fd);
    return;
  }
  boost::system::error_code ec;
  impl_->descriptor.assign(fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  impl_->read();
}

RouteWatch::~RouteWatch() {
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->descriptor.close(ignored);
}

bool RouteWatch::active() const {
  return impl_->descriptor.is_open();
}

namespace {

// A UDP socket connect()ed to host:port from source: the kernel's route choice, no traffic.
// Empty optional: `host` is a name. Otherwise the error of the lookup (empty on success).
std::optional<boost::system::error_code> routed_socket(asio::ip::udp::socket& socket,
                                                       const RouteQuery& query, std::string& why) {
  const auto& source = query.source;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(query.host, ec);
  if (ec) return std::nullopt;
  socket.open(address.is_v4() ? asio::ip::udp::v4() : asio::ip::udp::v6(), ec);
  if (ec) return std::nullopt;
  if (query.interface) {
    const auto& name = *query.interface;
    if (::setsockopt(socket.native_handle(), SOL_SOCKET, SO_BINDTODEVICE, name.c_str(),
                     static_cast<socklen_t>(name.size())) != 0) {
      ec.assign(errno, boost::system::system_category());
      why = "interface " + name + ": " + ec.message();
      return ec;
    }
  }
  if (source) {
    auto local = asio::ip::make_address(*source, ec);
    if (!ec) socket.bind(asio::ip::udp::endpoint(local, 0), ec);
    if (ec) {
      why = "source address " + *source + " is gone: " + ec.message();
      return ec;
    }
  }
  socket.connect(asio::ip::udp::endpoint(address, query.port), ec);
  if (ec) why = ec.message();
  return ec;
}

}  // namespace

bool route_exists(const RouteQuery& query, std::string& why) {
  asio::io_context io;
  asio::ip::udp::socket socket(io);
  auto result = routed_socket(socket, query, why);
  return !result || !*result;  // a host name cannot be checked without resolving it
}

std::optional<std::string> outgoing_interface(const RouteQuery& query) {
  asio::io_context io;
  asio::ip::udp::socket socket(io);
  std::string why;
  auto result = routed_socket(socket, query, why);
  if (!result || *result) return std::nullopt;
  if (query.interface) return query.interface;
  boost::system::error_code ec;
  const auto local = socket.local_endpoint(ec).address();
  if (ec) return std::nullopt;
  return interface_with_address(local.to_string());
}

std::optional<std::string> interface_with_address(const std::string& address) {
  boost::system::error_code ec;
  const auto local = asio::ip::make_address(address, ec);
  if (ec) return std::nullopt;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> name;
  for (ifaddrs* a = list; a != nullptr && !name; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    if (a->ifa_addr->sa_family == AF_INET && local.is_v4()) {
      auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      if (asio::ip::address_v4(ntohl(in->sin_addr.s_addr)) == local.to_v4()) name = a->ifa_name;
    } else if (a->ifa_addr->sa_family == AF_INET6 && local.is_v6()) {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      asio::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), &in6->sin6_addr, bytes.size());
      if (asio::ip::address_v6(bytes) == local.to_v6()) name = a->ifa_name;
    }
  }
  ::freeifaddrs(list);
  return name;
}

}  // namespace iscsi_io
