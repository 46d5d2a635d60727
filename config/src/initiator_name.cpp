#include <unistd.h>

#include <array>
#include <cstdio>
#include <random>

#include "config/config.hpp"

namespace config {

std::string generate_initiator_name(std::string_view hostname, std::uint32_t random) {
  // Naming authority: the project, dated by the month the scheme was chosen (RFC 7143 §4.2.7.4).
  static constexpr std::string_view prefix = "iqn.2026-11.org.iscsi-mpio:";
  static constexpr std::size_t suffix_length = 9;  // "-" + 8 hex digits
  static constexpr std::size_t max_host = max_iscsi_name_length - prefix.size() - suffix_length;

  std::string host;
  for (const char c : hostname.substr(0, max_host)) {
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const bool allowed = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9') ||
                         lower == '-' || lower == '.';
    host += allowed ? lower : '-';
  }
  if (host.empty()) {
    host = "host";
  }
  std::array<char, suffix_length + 1> suffix{};
  std::snprintf(suffix.data(), suffix.size(), "-%08x", static_cast<unsigned>(random));
  return std::string(prefix) + host + suffix.data();
}

std::string generate_initiator_name() {
  std::array<char, 256> hostname{};
  if (gethostname(hostname.data(), hostname.size() - 1) != 0) {
    hostname[0] = '\0';
  }
  std::random_device entropy;
  return generate_initiator_name(hostname.data(), static_cast<std::uint32_t>(entropy()));
}

}  // namespace config
