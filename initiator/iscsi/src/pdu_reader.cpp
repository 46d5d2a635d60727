#include "iscsi/pdu_reader.hpp"

#include <algorithm>
#include <cstring>

#include "iscsi/errors.hpp"

namespace iscsi {

size_t PduReader::take(std::span<const std::byte> input, std::span<std::byte> dst, size_t& filled) {
  const size_t n = std::min(input.size(), dst.size() - filled);
  if (n > 0) std::memcpy(dst.data() + filled, input.data(), n);
  filled += n;
  return n;
}

PduReader::Result PduReader::fail(size_t consumed, std::error_code ec, std::string detail) {
  error_ = ec;
  error_detail_ = std::move(detail);
  phase_ = Phase::done;
  return {consumed, State::error};
}

std::span<const std::byte> PduReader::data() const {
  if (!placed_.empty()) return placed_;
  return {data_.data(), data_length_};
}

std::span<std::byte> PduReader::placed_remainder() const {
  if (phase_ != Phase::data || placed_.empty()) return {};
  return placed_.subspan(filled_);
}

std::span<std::byte> PduReader::placed_segment() const {
  if (phase_ != Phase::data) return {};
  return placed_;
}

void PduReader::unplace() {
  if (phase_ != Phase::data || placed_.empty()) return;
  data_.assign(placed_.begin(), placed_.end());
  placed_ = {};
}

PduReader::Result PduReader::advance_placed(size_t n) {
  // After unplace() the bytes the driver read into the old span were copied with it.
  const std::span<const std::byte> segment =
      placed_.empty() ? std::span<const std::byte>(data_.data(), data_length_) : placed_;
  const auto written = segment.subspan(filled_, n);
  if (active_.data_digest) data_crc_ = crc32c(written, data_crc_);
  filled_ += n;
  if (filled_ == data_length_) {
    filled_ = 0;
    phase_ = Phase::padding;
  }
  // Phases that need no more bytes (no padding, no digest) finish here.
  return feed({});
}

void PduReader::next() {
  phase_ = Phase::bhs;
  filled_ = 0;
  ahs_.clear();
  placed_ = {};
  data_length_ = 0;
}

void PduReader::begin_after_header() {
  data_length_ = bhs_data_segment_length(bhs_);
  filled_ = 0;
  data_crc_ = 0;
  if (data_length_ == 0) {
    phase_ = Phase::done;
    return;
  }
  if (placement_ != nullptr) {
    auto dst = placement_->place(bhs_, data_length_);
    if (dst.size() == data_length_) placed_ = dst;
  }
  if (placed_.empty() && data_.size() < data_length_) data_.resize(data_length_);
  phase_ = Phase::data;
}

PduReader::Result PduReader::feed(std::span<const std::byte> input) {
  size_t used = 0;
  auto rest = [&] { return input.subspan(used); };
  if (phase_ == Phase::done) {
    if (error_) return {0, State::error};
    return {0, State::ready};
  }
  while (true) {
    switch (phase_) {
      case Phase::bhs: {
        if (filled_ == 0) active_ = limits_;
        used += take(rest(), bhs_, filled_);
        if (filled_ < bhs_size) return {used, State::need_more};
        // §11.2.1.3: AHS length is in 4-byte words. §11.2.1.4: the segment length is checked
        // against what we declared before any of it is buffered.
        const uint32_t dsl = bhs_data_segment_length(bhs_);
        if (dsl > active_.max_data_segment_length)
          return fail(used, errc::data_segment_too_long,
                      std::string(opcode_name(bhs_opcode(bhs_))) + " data segment of " +
                          std::to_string(dsl) + " bytes exceeds MaxRecvDataSegmentLength " +
                          std::to_string(active_.max_data_segment_length));
        ahs_.resize(size_t{bhs_total_ahs_length(bhs_)} * 4);
        filled_ = 0;
        phase_ = ahs_.empty() ? (active_.header_digest ? Phase::header_digest : Phase::data)
                              : Phase::ahs;
        if (phase_ == Phase::data) begin_after_header();
        break;
      }
      case Phase::ahs:
        used += take(rest(), ahs_, filled_);
        if (filled_ < ahs_.size()) return {used, State::need_more};
        filled_ = 0;
        if (active_.header_digest) {
          phase_ = Phase::header_digest;
        } else {
          begin_after_header();
        }
        break;
      case Phase::header_digest: {
        used += take(rest(), digest_, filled_);
        if (filled_ < digest_size) return {used, State::need_more};
        // §11.1: the header digest covers the BHS and the AHS.
        const uint32_t expected = crc32c(ahs_, crc32c(bhs_));
        if (digest_value(digest_) != expected)
          return fail(used, errc::header_digest_mismatch,
                      std::string("header digest mismatch on ") + opcode_name(bhs_opcode(bhs_)));
        begin_after_header();
        break;
      }
      case Phase::data: {
        std::span<std::byte> dst =
            placed_.empty() ? std::span<std::byte>(data_.data(), data_length_) : placed_;
        const size_t before = filled_;
        used += take(rest(), dst, filled_);
        if (active_.data_digest)
          data_crc_ =
              crc32c(std::span<const std::byte>(dst).subspan(before, filled_ - before), data_crc_);
        if (filled_ < data_length_) return {used, State::need_more};
        filled_ = 0;
        phase_ = Phase::padding;
        break;
      }
      case Phase::padding: {
        const size_t pad = padded_length(data_length_) - data_length_;
        auto pad_span = std::span<std::byte>(padding_.data(), pad);
        used += take(rest(), pad_span, filled_);
        if (filled_ < pad) return {used, State::need_more};
        // §11.1: the data digest covers the data segment and its padding.
        if (active_.data_digest) data_crc_ = crc32c(pad_span, data_crc_);
        filled_ = 0;
        phase_ = active_.data_digest ? Phase::data_digest : Phase::done;
        break;
      }
      case Phase::data_digest:
        used += take(rest(), digest_, filled_);
        if (filled_ < digest_size) return {used, State::need_more};
        if (digest_value(digest_) != data_crc_)
          return fail(used, errc::data_digest_mismatch,
                      std::string("data digest mismatch on ") + opcode_name(bhs_opcode(bhs_)));
        phase_ = Phase::done;
        break;
      case Phase::done:
        return {used, State::ready};
    }
  }
}

}  // namespace iscsi
