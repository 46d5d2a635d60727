#include "json_text.hpp"

// Boost.JSON header-only, compiled here once, rather than Debian's libboost-json: the runtime
// image keeps its package list (tests/integration/container-steps.sh checks it) for the few
// small objects we write per request.
#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/src.hpp>
#include <cstdint>

namespace iscsi_mpio::json_text {
namespace {

// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629 §4), or 0: no
// overlong forms, no surrogates, nothing above U+10FFFF.
size_t utf8_sequence_length(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const auto continuation = [&](size_t i) { return i < s.size() && (byte(i) & 0xc0) == 0x80; };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    if (!continuation(1) || !continuation(2)) return 0;
    if (lead == 0xe0 && byte(1) < 0xa0) return 0;  // overlong
    if (lead == 0xed && byte(1) > 0x9f) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    if (lead == 0xf0 && byte(1) < 0x90) return 0;  // overlong
    if (lead == 0xf4 && byte(1) > 0x8f) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

std::string utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t n = utf8_sequence_length(text);
    if (n == 0) out += "\xef\xbf\xbd";  // U+FFFD for the one byte
    out.append(text.substr(0, n));
    text.remove_prefix(std::max<size_t>(n, 1));
  }
  return out;
}

std::string line(const boost::json::value& value) {
  return boost::json::serialize(value) + '\n';
}

}  // namespace iscsi_mpio::json_text
