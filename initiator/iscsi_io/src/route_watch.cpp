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
  // With a source bound, the socket's local address is that source whatever the route: ask the
  // routing table where packets from it go (two NICs on one subnet both leave through one).
  if (query.source && !query.interface) {
    std::string why;
    if (!route_exists(query, why)) return std::nullopt;
    if (auto routed = routed_interface(query)) return routed;
  }
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

std::optional<std::string> routed_interface(const RouteQuery& query) {
  if (query.interface) return query.interface;
  boost::system::error_code ec;
  const auto destination = asio::ip::make_address(query.host, ec);
  if (ec) return std::nullopt;
  std::optional<asio::ip::address> source;
  if (query.source) {
    source = asio::ip::make_address(*query.source, ec);
    if (ec || source->is_v4() != destination.is_v4()) return std::nullopt;
  }
  // rtnetlink(7): one RTM_GETROUTE request with RTA_DST (and RTA_SRC), answered with the route
  // the kernel would use, RTA_OIF its interface, or an NLMSG_ERROR when there is none.
  struct Request {
    nlmsghdr header;
    rtmsg route;
    std::array<char, 2 * RTA_SPACE(16)> attributes;
  } request{};
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  request.header.nlmsg_type = RTM_GETROUTE;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.route.rtm_family = destination.is_v4() ? AF_INET : AF_INET6;
  const auto add_address = [&request](unsigned short type, const asio::ip::address& address) {
    auto* attribute = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&request) +
                                                NLMSG_ALIGN(request.header.nlmsg_len));
    const size_t size = address.is_v4() ? 4 : 16;
    attribute->rta_type = type;
    attribute->rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
    if (address.is_v4())
      std::memcpy(RTA_DATA(attribute), address.to_v4().to_bytes().data(), size);
    else
      std::memcpy(RTA_DATA(attribute), address.to_v6().to_bytes().data(), size);
    request.header.nlmsg_len = NLMSG_ALIGN(request.header.nlmsg_len) + RTA_SPACE(size);
    return static_cast<unsigned char>(size * 8);
  };
  request.route.rtm_dst_len = add_address(RTA_DST, destination);
  if (source) request.route.rtm_src_len = add_address(RTA_SRC, *source);

  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return std::nullopt;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // The kernel answers at once; the timeout only bounds a netlink that never does.
  const timeval timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &request, request.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0)
    return std::nullopt;
  std::array<char, 8192> answer{};
  const ssize_t n = ::recv(fd, answer.data(), answer.size(), 0);
  if (n <= 0) return std::nullopt;
  auto length = static_cast<unsigned>(n);
  for (auto* header = reinterpret_cast<nlmsghdr*>(answer.data()); NLMSG_OK(header, length);
       header = NLMSG_NEXT(header, length)) {
    if (header->nlmsg_type != RTM_NEWROUTE) return std::nullopt;  // NLMSG_ERROR: no route
    auto* route = static_cast<rtmsg*>(NLMSG_DATA(header));
    auto attributes_length = static_cast<unsigned>(RTM_PAYLOAD(header));
    for (auto* attribute = RTM_RTA(route); RTA_OK(attribute, attributes_length);
         attribute = RTA_NEXT(attribute, attributes_length)) {
      if (attribute->rta_type != RTA_OIF) continue;
      int index = 0;
      std::memcpy(&index, RTA_DATA(attribute), sizeof index);
      char name[IF_NAMESIZE] = {};
      if (::if_indextoname(static_cast<unsigned>(index), name) == nullptr) return std::nullopt;
      return std::string(name);
    }
  }
  return std::nullopt;
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
