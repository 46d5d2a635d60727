// Shared by the libFuzzer targets: an invariant check that crashes (so libFuzzer keeps the
// input) and a deterministic chunker that splits a byte stream the way a socket might.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

// A broken invariant is a finding like a sanitizer report: print it and abort.
#define FUZZ_CHECK(cond)                                                                   \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

namespace fuzz {

inline std::span<const std::byte> as_bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// Chunk sizes from one seed byte, so the rest of the input stays a plain byte stream (the seed
// corpus is real protocol traffic with a small prefix). The low 3 bits pick the largest chunk
// (1 byte ... everything at once); the rest seeds a xorshift generator for the sizes.
class Chunker {
 public:
  explicit Chunker(uint8_t seed)
      : max_(max_for(seed & 7u)), state_(0x9e3779b9u ^ (uint32_t{seed} << 8) ^ seed) {}

  size_t next(size_t remaining) {
    if (remaining == 0) return 0;
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    const size_t limit = max_ < remaining ? max_ : remaining;
    return 1 + state_ % limit;
  }

 private:
  static size_t max_for(unsigned pick) {
    static constexpr size_t table[8] = {1, 3, 7, 48, 53, 512, 4096, SIZE_MAX};
    return table[pick];
  }
  size_t max_;
  uint32_t state_;
};

// Reads every byte, as a socket write would, so ASan sees a span that points at freed or
// too-short memory.
inline volatile uint8_t touch_sink;
inline void touch(std::span<const std::byte> bytes) {
  uint8_t x = 0;
  for (std::byte b : bytes) x = static_cast<uint8_t>(x ^ std::to_integer<uint8_t>(b));
  touch_sink = x;
}

// Reads a fixed little prefix of configuration bytes; missing bytes read as 0.
class Prefix {
 public:
  Prefix(std::span<const std::byte>& input, size_t length) {
    bytes_ = input.first(length < input.size() ? length : input.size());
    input = input.subspan(bytes_.size());
  }
  uint8_t u8(size_t i) const { return i < bytes_.size() ? std::to_integer<uint8_t>(bytes_[i]) : 0; }
  uint16_t u16(size_t i) const { return static_cast<uint16_t>(u8(i) << 8 | u8(i + 1)); }
  bool bit(size_t i, unsigned b) const { return (u8(i) >> b) & 1u; }

 private:
  std::span<const std::byte> bytes_;
};

}  // namespace fuzz
