#include "config/names.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace config {
namespace {

bool is_ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool all_of(std::string_view s, bool (*pred)(char)) {
  return std::all_of(s.begin(), s.end(), pred);
}

// A character named so that control bytes and quotes stay readable in a message.
std::string describe_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte > 0x20 && byte < 0x7f && c != '\'') {
    return std::string("'") + c + "'";
  }
  static constexpr char digits[] = "0123456789abcdef";
  return std::string("byte 0x") + digits[byte >> 4] + digits[byte & 0xf];
}

std::optional<std::string> iqn_problem(std::string_view rest) {
  // RFC 7143 §4.2.7.4: "iqn." date "." reversed-domain [":" unique-part]
  static constexpr std::string_view date_hint =
      "'iqn.' must be followed by the date YYYY-MM and '.', e.g. iqn.2001-04.com.example";
  if (rest.size() < 8 || !all_of(rest.substr(0, 4), is_digit) || rest[4] != '-' ||
      !all_of(rest.substr(5, 2), is_digit) || rest[7] != '.') {
    return std::string(date_hint);
  }
  const int month = (rest[5] - '0') * 10 + (rest[6] - '0');
  if (month < 1 || month > 12) {
    return "month " + std::string(rest.substr(5, 2)) + " in the date is not 01 to 12";
  }
  const std::string_view after_date = rest.substr(8);
  const std::string_view authority = after_date.substr(0, after_date.find(':'));
  if (authority.empty()) {
    return std::string("the reversed domain name after the date is missing");
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = authority.find('.', start);
    const std::string_view label = authority.substr(start, dot - start);
    if (label.empty()) {
      return "the naming authority '" + std::string(authority) + "' has an empty label";
    }
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return std::nullopt;
}

std::optional<std::string> hex_identifier_problem(std::string_view prefix, std::string_view rest,
                                                  bool allow_32) {
  const bool length_ok = rest.size() == 16 || (allow_32 && rest.size() == 32);
  if (!length_ok || !all_of(rest, is_hex)) {
    return "'" + std::string(prefix) + "' must be followed by exactly 16" +
           (allow_32 ? " or 32" : "") + " hex digits";
  }
  return std::nullopt;
}

bool starts_with_ignoring_case(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

// RFC 1123 §2.1 host name: dot-separated labels of letters, digits and '-', 1..63 bytes each,
// not starting or ending with '-', 253 bytes in all; one trailing dot (the root) is tolerated.
bool is_host_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  if (name.empty() || name.size() > 253) {
    return false;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
        !all_of(label, [](char c) { return is_ascii_alnum(c) || c == '-'; })) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    start = dot + 1;
  }
}

std::optional<std::string> host_problem(std::string_view host) {
  if (host.empty()) {
    return std::string("the host is empty");
  }
  if (ip_literal_family(host)) {
    return std::nullopt;
  }
  // All digits and dots: the admin meant an IPv4 address, so say that rather than "bad name".
  if (all_of(host, [](char c) { return is_digit(c) || c == '.'; })) {
    return "'" + std::string(host) + "' is not a valid IPv4 address";
  }
  if (!is_host_name(host)) {
    return "'" + std::string(host) + "' is neither an IP address nor a valid host name";
  }
  return std::nullopt;
}

std::variant<std::uint16_t, std::string> parse_port(std::string_view text) {
  if (text.empty()) {
    return std::string("the port after ':' is empty");
  }
  unsigned long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!all_of(text, is_digit) || end != text.data() + text.size()) {
    return "port '" + std::string(text) + "' is not a number";
  }
  if (ec == std::errc::result_out_of_range || value > 65535) {
    return "port " + std::string(text) + " is out of range (1 to 65535)";
  }
  if (value == 0) {
    return std::string("port 0 is not a usable port");
  }
  return static_cast<std::uint16_t>(value);
}

std::variant<Portal, std::string> parse_host_port(std::string_view text,
                                                  std::uint16_t default_port) {
  if (text.empty()) {
    return std::string("it is empty");
  }
  Portal result{.host = {}, .port = default_port};
  std::string_view port_text;
  bool has_port = false;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return std::string("'[' has no closing ']'");
    }
    const std::string_view host = text.substr(1, close - 1);
    if (ip_literal_family(host) != AddressFamily::ipv6) {
      return "'[" + std::string(host) + "]' does not hold an IPv6 address";
    }
    result.host = std::string(host);
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return "unexpected '" + std::string(after) + "' after ']'";
      }
      has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const std::size_t colons = static_cast<std::size_t>(std::count(text.begin(), text.end(), ':'));
    if (colons > 1) {
      // Not accepted bare even when it parses: "fd00::1:3260" is a valid IPv6 address, so an
      // admin's port would silently become part of the address.
      return std::string("write IPv6 addresses in brackets, e.g. [fd00::1]:3260");
    }
    const std::size_t colon = text.find(':');
    result.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = text.substr(colon + 1);
    }
    if (auto problem = host_problem(result.host)) {
      return *problem;
    }
  }
  if (has_port) {
    auto port = parse_port(port_text);
    if (auto* problem = std::get_if<std::string>(&port)) {
      return std::move(*problem);
    }
    result.port = std::get<std::uint16_t>(port);
  }
  return result;
}

std::string host_port_string(const std::string& host, std::uint16_t port) {
  const bool bracket = host.find(':') != std::string::npos;
  return (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

std::optional<std::string> iscsi_name_problem(std::string_view name) {
  if (name.empty()) {
    return std::string("the iSCSI name is empty");
  }
  if (name.size() > max_iscsi_name_length) {
    return "the iSCSI name is " + std::to_string(name.size()) +
           " bytes long; at most 223 are allowed (RFC 7143 §4.2.7.1)";
  }
  for (const char c : name) {
    if (!is_ascii_alnum(c) && c != '-' && c != '.' && c != ':') {
      return "the iSCSI name contains " + describe_char(c) +
             "; only letters, digits, '-', '.' and ':' are allowed (RFC 3722)";
    }
  }
  if (name.starts_with("iqn.")) {
    return iqn_problem(name.substr(4));
  }
  if (name.starts_with("eui.")) {
    return hex_identifier_problem("eui.", name.substr(4), false);
  }
  if (name.starts_with("naa.")) {
    return hex_identifier_problem("naa.", name.substr(4), true);
  }
  for (const std::string_view prefix : {"iqn.", "eui.", "naa."}) {
    if (starts_with_ignoring_case(name, prefix)) {
      return "the type prefix must be written in lower case: '" + std::string(prefix) + "'";
    }
  }
  return std::string("an iSCSI name starts with 'iqn.', 'eui.' or 'naa.' (RFC 7143 §4.2.7)");
}

std::optional<AddressFamily> ip_literal_family(std::string_view text) {
  // inet_pton needs a NUL-terminated string; anything longer than the longest IPv6 text form
  // (INET6_ADDRSTRLEN) is not an address, which also keeps an embedded NUL from passing.
  std::array<char, INET6_ADDRSTRLEN + 1> buffer{};
  if (text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::copy(text.begin(), text.end(), buffer.begin());
  std::array<unsigned char, 16> address{};
  if (inet_pton(AF_INET, buffer.data(), address.data()) == 1) {
    return AddressFamily::ipv4;
  }
  if (inet_pton(AF_INET6, buffer.data(), address.data()) == 1) {
    return AddressFamily::ipv6;
  }
  return std::nullopt;
}

std::variant<Portal, std::string> parse_portal(std::string_view text) {
  return parse_host_port(text, default_iscsi_port);
}

std::string to_string(const Portal& portal) {
  return host_port_string(portal.host, portal.port);
}

std::variant<Listen, std::string> parse_listen(std::string_view text) {
  static constexpr std::string_view unix_prefix = "unix:";
  static constexpr std::string_view tcp_prefix = "tcp:";
  if (text.starts_with(unix_prefix)) {
    const std::string_view path = text.substr(unix_prefix.size());
    if (path.empty()) {
      return std::string("'unix:' must be followed by a socket path");
    }
    if (path.front() != '/') {
      return std::string("the socket path must be absolute");
    }
    if (path.find('\0') != std::string_view::npos) {
      return std::string("the socket path contains a NUL byte");
    }
    if (path.size() > max_unix_socket_path) {
      return "the socket path is " + std::to_string(path.size()) + " bytes long; at most " +
             std::to_string(max_unix_socket_path) + " fit in sockaddr_un";
    }
    return Listen{.kind = Listen::Kind::unix_socket, .path_or_host = std::string(path), .port = 0};
  }
  if (text.starts_with(tcp_prefix)) {
    if (text.size() == tcp_prefix.size()) {
      return std::string("'tcp:' must be followed by HOST[:PORT]");
    }
    auto parsed = parse_host_port(text.substr(tcp_prefix.size()), default_nbd_port);
    if (auto* problem = std::get_if<std::string>(&parsed)) {
      return "after 'tcp:': " + *problem;
    }
    auto& portal = std::get<Portal>(parsed);
    return Listen{
        .kind = Listen::Kind::tcp, .path_or_host = std::move(portal.host), .port = portal.port};
  }
  return std::string("write 'unix:/path/to.sock' or 'tcp:HOST[:PORT]', e.g. tcp:127.0.0.1:10809");
}

std::string to_string(const Listen& listen) {
  if (listen.kind == Listen::Kind::unix_socket) {
    return "unix:" + listen.path_or_host;
  }
  return "tcp:" + host_port_string(listen.path_or_host, listen.port);
}

}  // namespace config
