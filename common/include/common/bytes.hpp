// Big-endian load/store over byte spans. Every wire format in this project (iSCSI BHS,
// SCSI CDBs and parameter data, NBD) is big-endian; this is the one place that knows how.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace common {

using ConstBytes = std::span<const std::byte>;
using MutableBytes = std::span<std::byte>;

inline uint8_t load_u8(ConstBytes b, size_t off) {
  return static_cast<uint8_t>(b[off]);
}

inline uint16_t load_be16(ConstBytes b, size_t off) {
  return static_cast<uint16_t>((load_u8(b, off) << 8) | load_u8(b, off + 1));
}

inline uint32_t load_be24(ConstBytes b, size_t off) {
  return (uint32_t{load_u8(b, off)} << 16) | (uint32_t{load_u8(b, off + 1)} << 8) |
         uint32_t{load_u8(b, off + 2)};
}

inline uint32_t load_be32(ConstBytes b, size_t off) {
  return (uint32_t{load_be16(b, off)} << 16) | load_be16(b, off + 2);
}

inline uint64_t load_be64(ConstBytes b, size_t off) {
  return (uint64_t{load_be32(b, off)} << 32) | load_be32(b, off + 4);
}

inline void store_u8(MutableBytes b, size_t off, uint8_t v) {
  b[off] = static_cast<std::byte>(v);
}

inline void store_be16(MutableBytes b, size_t off, uint16_t v) {
  store_u8(b, off, static_cast<uint8_t>(v >> 8));
  store_u8(b, off + 1, static_cast<uint8_t>(v));
}

inline void store_be24(MutableBytes b, size_t off, uint32_t v) {
  store_u8(b, off, static_cast<uint8_t>(v >> 16));
  store_be16(b, off + 1, static_cast<uint16_t>(v));
}

inline void store_be32(MutableBytes b, size_t off, uint32_t v) {
  store_be16(b, off, static_cast<uint16_t>(v >> 16));
  store_be16(b, off + 2, static_cast<uint16_t>(v));
}

inline void store_be64(MutableBytes b, size_t off, uint64_t v) {
  store_be32(b, off, static_cast<uint32_t>(v >> 32));
  store_be32(b, off + 4, static_cast<uint32_t>(v));
}

inline ConstBytes as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

inline std::string_view as_chars(ConstBytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace common
