// PduReader (RFC 7143 §11.2 framing) fed a byte stream in arbitrary chunks, with digests on or
// off and with or without data placement; every ready BHS goes through both decoders.
//
// Input: [flags][chunk seed][stream...]
//   flags bit 0: HeaderDigest=CRC32C, bit 1: DataDigest=CRC32C, bit 2: place data segments in a
//   caller buffer, bits 3..5: MaxRecvDataSegmentLength = 512 << n.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <iscsi/pdu.hpp>
#include <iscsi/pdu_reader.hpp>

#include "fuzz_support.hpp"

namespace {

// Places each segment in its own exact-size heap block, so ASan catches a write past it.
class ExactPlacement : public iscsi::DataPlacement {
 public:
  std::span<std::byte> place(std::span<const std::byte, iscsi::bhs_size> bhs,
                             uint32_t data_segment_length) override {
    FUZZ_CHECK(data_segment_length == iscsi::bhs_data_segment_length(bhs));
    buffer_ = std::make_unique<std::byte[]>(data_segment_length);
    length_ = data_segment_length;
    return {buffer_.get(), length_};
  }
  std::span<const std::byte> placed() const { return {buffer_.get(), length_}; }

 private:
  std::unique_ptr<std::byte[]> buffer_;
  size_t length_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  auto input = fuzz::as_bytes(raw, size);
  const fuzz::Prefix prefix(input, 2);
  iscsi::ReaderLimits limits;
  limits.header_digest = prefix.bit(0, 0);
  limits.data_digest = prefix.bit(0, 1);
  limits.max_data_segment_length = 512u << ((prefix.u8(0) >> 3) & 7u);
  const bool place = prefix.bit(0, 2);
  fuzz::Chunker chunker(prefix.u8(1));

  iscsi::PduReader reader(limits);
  ExactPlacement placement;
  if (place) reader.set_placement(&placement);

  size_t offset = 0;
  while (offset < input.size()) {
    const auto chunk = input.subspan(offset, chunker.next(input.size() - offset));
    size_t used = 0;
    while (used < chunk.size()) {
      const auto result = reader.feed(chunk.subspan(used));
      FUZZ_CHECK(result.consumed <= chunk.size() - used);
      used += result.consumed;
      if (result.state == iscsi::PduReader::State::error) {
        FUZZ_CHECK(reader.error());
        return 0;  // framing is lost; a driver drops the connection here
      }
      if (result.state == iscsi::PduReader::State::need_more) {
        FUZZ_CHECK(used == chunk.size());
        break;
      }
      // A ready PDU: its parts have exactly the sizes the BHS declares.
      const auto bhs = reader.bhs();
      const uint32_t length = iscsi::bhs_data_segment_length(bhs);
      FUZZ_CHECK(length <= limits.max_data_segment_length);
      FUZZ_CHECK(reader.ahs().size() == size_t{iscsi::bhs_total_ahs_length(bhs)} * 4);
      FUZZ_CHECK(reader.data().size() == length);
      if (reader.data_was_placed()) {
        FUZZ_CHECK(place);
        FUZZ_CHECK(reader.data().data() == placement.placed().data());
      }
      fuzz::touch(reader.data());

      iscsi::TargetPdu target;
      std::string detail;
      if (!iscsi::decode_target_pdu(bhs, target, detail)) {
        // Re-encoding what was decoded gives a BHS that decodes to the same opcode.
        std::visit(
            [&](const auto& pdu) {
              const iscsi::Bhs again = iscsi::encode_bhs(pdu);
              FUZZ_CHECK(iscsi::bhs_opcode(again) == iscsi::bhs_opcode(bhs));
              FUZZ_CHECK(iscsi::bhs_data_segment_length(again) == length);
            },
            target);
      }
      iscsi::InitiatorPdu initiator;
      (void)iscsi::decode_initiator_pdu(bhs, initiator, detail);
      (void)iscsi::opcode_name(iscsi::bhs_opcode(bhs));
      reader.next();
    }
    offset += chunk.size();
  }
  return 0;
}
