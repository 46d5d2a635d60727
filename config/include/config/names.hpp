#pragma once
// Validators and parsers for the strings a configuration carries: iSCSI names, portals,
// IP addresses, NBD listen addresses. They are plain functions so that command-line flags can
// reuse them; each returns a human-readable reason on failure and never throws.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace config {

// Longest iSCSI name in bytes (RFC 7143 §4.2.7.1).
inline constexpr std::size_t max_iscsi_name_length = 223;
inline constexpr std::uint16_t default_iscsi_port = 3260;  // IANA "iscsi-target"
inline constexpr std::uint16_t default_nbd_port = 10809;   // IANA "nbd" (NBD proto.md)

// Empty optional when `name` is a valid iSCSI name, else why it is not. Accepted forms
// (RFC 7143 §4.2.7): "iqn.YYYY-MM.reversed.domain[:anything]", "eui." + 16 hex digits,
// "naa." + 16 or 32 hex digits. Pragmatic rules, documented in config/README.md: only ASCII
// letters, digits, '-', '.', ':' are accepted (RFC 3722 stringprep forbids '_', space and most
// punctuation); upper case is accepted and kept verbatim because targets compare names
// byte-for-byte, but the type prefix must be lower case.
std::optional<std::string> iscsi_name_problem(std::string_view name);

struct Portal {
  std::string host;  // IPv4 literal, IPv6 literal (without brackets) or a DNS hostname
  std::uint16_t port = default_iscsi_port;

  friend bool operator==(const Portal&, const Portal&) = default;
};

// "host", "host:port", "[v6]" or "[v6]:port"; the port defaults to 3260. A bare IPv6 literal is
// refused: in "fd00::1:3260" the port would read as part of the address.
std::variant<Portal, std::string> parse_portal(std::string_view text);
// "host:port" with brackets around IPv6 hosts: the form parse_portal reads back.
std::string to_string(const Portal& portal);

enum class AddressFamily { ipv4, ipv6 };
// Family of a numeric IPv4/IPv6 literal (inet_pton); empty for anything else, hostnames included.
std::optional<AddressFamily> ip_literal_family(std::string_view text);

struct Listen {
  enum class Kind { unix_socket, tcp };
  Kind kind = Kind::unix_socket;
  std::string path_or_host;  // socket path for unix_socket; host (IPv6 without brackets) for tcp
  std::uint16_t port = 0;    // tcp only

  friend bool operator==(const Listen&, const Listen&) = default;
};

// Longest path that fits sockaddr_un::sun_path with its terminating NUL on Linux.
inline constexpr std::size_t max_unix_socket_path = 107;

// "unix:/path/to.sock" or "tcp:HOST[:PORT]" (port defaults to 10809, IPv6 hosts in brackets).
std::variant<Listen, std::string> parse_listen(std::string_view text);
std::string to_string(const Listen& listen);

}  // namespace config
