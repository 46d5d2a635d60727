// Incremental PDU framing (RFC 7143 §11.2): BHS, AHS, header digest, data segment, padding,
// data digest. Fed arbitrary chunks; reports need-more, ready or error. No I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "iscsi/pdu.hpp"

namespace iscsi {

struct ReaderLimits {
  // The MaxRecvDataSegmentLength we declared (§13.12): a longer segment is a protocol error.
  // During login the RFC's 8192 applies; after it, the negotiated value.
  uint32_t max_data_segment_length = 8192;
  bool header_digest = false;
  bool data_digest = false;
};

// Lets the owner place a PDU's data segment straight into its final buffer (a Data-In payload
// into the NBD reply buffer). Called once the header is verified; returning an empty span lets
// the reader keep the segment in its own buffer.
class DataPlacement {
 public:
  virtual ~DataPlacement() = default;
  virtual std::span<std::byte> place(std::span<const std::byte, bhs_size> bhs,
                                     uint32_t data_segment_length) = 0;
};

class PduReader {
 public:
  enum class State { need_more, ready, error };
  struct Result {
    size_t consumed;
    State state;
  };

  explicit PduReader(ReaderLimits limits = {}) : limits_(limits) {}

  // Applies from the next PDU on (digests start after the login phase, §13.1).
  void set_limits(const ReaderLimits& limits) { limits_ = limits; }
  void set_placement(DataPlacement* placement) { placement_ = placement; }

  // Consume bytes until one PDU is complete or the input runs out. After `ready`, read the PDU
  // with bhs()/ahs()/data() and call next() before feeding again. After `error`, the stream is
  // unusable (framing is lost): the connection must be dropped.
  Result feed(std::span<const std::byte> input);

  std::span<const std::byte, bhs_size> bhs() const { return bhs_; }
  std::span<const std::byte> ahs() const { return ahs_; }
  // The data segment without padding: in the placed buffer if placement took it.
  std::span<const std::byte> data() const;
  bool data_was_placed() const { return !placed_.empty(); }

  // While the data segment of a placed PDU is being read: the part of its final buffer still
  // to fill, for a driver that reads the socket straight into it instead of feeding a copy
  // (a large Data-In then crosses from the kernel into the NBD reply buffer once). Empty in any
  // other phase.
  std::span<std::byte> placed_remainder() const;
  // The driver wrote `n` bytes at the start of placed_remainder(): they count as fed (the data
  // digest covers them), and the reader moves on as feed() would.
  Result advance_placed(size_t n);
  // The data segment being placed, whole (empty when the PDU's segment is not placed, or once
  // the data phase is over: nothing more is written into it then).
  std::span<std::byte> placed_segment() const;
  // The placed buffer is no longer the data's to fill (its owner has given it to someone
  // else): what arrived so far, and whatever the driver's read already wrote into the rest of
  // the placed span, moves to the reader's own buffer, where the rest of the segment goes too.
  // advance_placed() then counts bytes the driver read into the old span before this call.
  void unplace();

  std::error_code error() const { return error_; }
  const std::string& error_detail() const { return error_detail_; }

  void next();

 private:
  enum class Phase { bhs, ahs, header_digest, data, padding, data_digest, done };

  Result fail(size_t consumed, std::error_code ec, std::string detail);
  void begin_after_header();
  // Copies from input into dst[filled..], returns bytes taken.
  static size_t take(std::span<const std::byte> input, std::span<std::byte> dst, size_t& filled);

  ReaderLimits limits_;
  ReaderLimits active_;  // limits in force for the PDU being read
  DataPlacement* placement_ = nullptr;

  Phase phase_ = Phase::bhs;
  size_t filled_ = 0;
  Bhs bhs_{};
  std::vector<std::byte> ahs_;
  std::vector<std::byte> data_;  // used when the segment is not placed
  std::span<std::byte> placed_;
  uint32_t data_length_ = 0;
  std::array<std::byte, 4> padding_{};
  std::array<std::byte, digest_size> digest_{};
  uint32_t data_crc_ = 0;
  std::error_code error_;
  std::string error_detail_;
};

}  // namespace iscsi
