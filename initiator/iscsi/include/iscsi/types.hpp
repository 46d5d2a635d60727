// Strong types for iSCSI sequence numbers and tags (docs/architecture.md, "Strong types").
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>

namespace iscsi {

// Serial number arithmetic, RFC 1982 with SERIAL_BITS = 32, as RFC 7143 §4.2.2.1 requires for
// CmdSN, StatSN and friends. There is deliberately no operator< on the raw values: comparisons go
// through this type so that wrap-around is always handled.
template <class Tag>
class SerialNumber {
 public:
  constexpr SerialNumber() = default;
  constexpr explicit SerialNumber(uint32_t v) : value_(v) {}
  constexpr uint32_t value() const { return value_; }

  constexpr bool operator==(const SerialNumber&) const = default;
  // RFC 1982 §3.2: s1 < s2 iff (i1 < i2 and i2 - i1 < 2^31) or (i1 > i2 and i1 - i2 > 2^31).
  // The pair exactly 2^31 apart is undefined; it compares as neither less nor greater.
  constexpr bool operator<(SerialNumber other) const {
    const uint32_t diff = other.value_ - value_;
    return diff != 0 && diff < 0x80000000u;
  }
  constexpr bool operator>(SerialNumber other) const { return other < *this; }
  constexpr bool operator<=(SerialNumber other) const { return *this == other || *this < other; }
  constexpr bool operator>=(SerialNumber other) const { return *this == other || *this > other; }

  constexpr SerialNumber next() const { return SerialNumber(value_ + 1); }
  constexpr SerialNumber operator+(uint32_t n) const { return SerialNumber(value_ + n); }
  // Distance from `earlier` to this, meaningful when earlier <= *this.
  constexpr uint32_t distance_from(SerialNumber earlier) const { return value_ - earlier.value_; }

 private:
  uint32_t value_ = 0;
};

using CmdSN = SerialNumber<struct CmdSNTag>;
using StatSN = SerialNumber<struct StatSNTag>;
using DataSN = SerialNumber<struct DataSNTag>;
using R2TSN = SerialNumber<struct R2TSNTag>;

// Initiator Task Tag (§11.2.1.8). 0xffffffff is reserved (unsolicited NOP-In, Async Message).
struct Itt {
  uint32_t value = 0;
  static constexpr uint32_t reserved = 0xffffffffu;
  constexpr bool operator==(const Itt&) const = default;
};

// Target Transfer Tag (§11.7.4). 0xffffffff means "no answer wanted" on NOP-In and
// unsolicited Data-Out.
struct Ttt {
  uint32_t value = 0xffffffffu;
  static constexpr uint32_t reserved = 0xffffffffu;
  constexpr bool operator==(const Ttt&) const = default;
  constexpr bool is_reserved() const { return value == reserved; }
};

// The 8-byte LUN field in SAM encoding (scsi::encode_lun builds it).
struct Lun {
  uint64_t encoded = 0;
  constexpr bool operator==(const Lun&) const = default;
};

// Initiator Session ID (§11.12.5): 6 bytes, type/naming authority/qualifier. We use the
// "random" format (T = 0b11, §10.12.5) so concurrent processes on one host never collide.
struct Isid {
  std::array<uint8_t, 6> bytes{};
  constexpr bool operator==(const Isid&) const = default;
};

// Target Session Identifying Handle (§11.12.6); 0 asks for a new session.
struct Tsih {
  uint16_t value = 0;
  constexpr bool operator==(const Tsih&) const = default;
};

}  // namespace iscsi
