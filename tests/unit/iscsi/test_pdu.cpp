#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <cstring>
#include <iscsi/errors.hpp>
#include <iscsi/pdu.hpp>
#include <iscsi/pdu_reader.hpp>

using common::from_hex;
using common::to_hex;
using namespace iscsi;

namespace {
std::span<const std::byte, bhs_size> as_bhs(const std::vector<std::byte>& v) {
  REQUIRE(v.size() == bhs_size);
  return std::span<const std::byte, bhs_size>(v.data(), bhs_size);
}
}  // namespace

TEST_CASE("SCSI Command BHS matches RFC 7143 §11.3 layout", "[iscsi][pdu]") {
  ScsiCommand cmd;
  cmd.final = true;
  cmd.read = true;
  cmd.attribute = TaskAttribute::simple;
  cmd.lun = Lun{0x0001000000000000ull};
  cmd.itt = Itt{0x11223344};
  cmd.expected_data_transfer_length = 0x10000;
  cmd.cmd_sn = CmdSN(7);
  cmd.exp_stat_sn = StatSN(9);
  cmd.cdb[0] = std::byte{0x88};
  cmd.cdb[13] = std::byte{0x80};
  // byte 1 = F|R|ATTR(simple) = 0xc1
  CHECK(to_hex(encode_bhs(cmd)) ==
        "01c10000000000000001000000000000"
        "112233440001000000000007"
        "00000009"
        "88000000000000000000000000800000");
}

TEST_CASE("Login Request sets the I bit and the stage bits (§11.12)", "[iscsi][pdu]") {
  LoginRequest req;
  req.transit = true;
  req.current_stage = LoginStage::operational_negotiation;
  req.next_stage = LoginStage::full_feature_phase;
  req.isid = Isid{{0x80, 0x12, 0x34, 0x56, 0x78, 0x9a}};
  req.tsih = Tsih{0};
  req.itt = Itt{1};
  req.cid = 0;
  req.cmd_sn = CmdSN(1);
  req.data_segment_length = 0x123;
  CHECK(to_hex(encode_bhs(req)) ==
        "43870000"
        "00000123"
        "80123456789a0000"
        "00000001"
        "00000000"
        "00000001"
        "00000000"
        "00000000000000000000000000000000");
}

TEST_CASE("Data-In with status decodes residuals and sequence numbers", "[iscsi][pdu]") {
  auto bhs = from_hex(
      "25830000 00000200 0000000000000000"
      "000000aa ffffffff 00000005 00000010 00000020"
      "00000003 00000400 00000200");
  TargetPdu pdu;
  std::string detail;
  REQUIRE_FALSE(decode_target_pdu(as_bhs(bhs), pdu, detail));
  auto& din = std::get<DataIn>(pdu);
  CHECK(din.final);
  CHECK(din.has_status);
  CHECK(din.residual_underflow);
  CHECK_FALSE(din.residual_overflow);
  CHECK(din.data_segment_length == 0x200);
  CHECK(din.itt == Itt{0xaa});
  CHECK(din.stat_sn == StatSN(5));
  CHECK(din.exp_cmd_sn == CmdSN(0x10));
  CHECK(din.max_cmd_sn == CmdSN(0x20));
  CHECK(din.data_sn == DataSN(3));
  CHECK(din.buffer_offset == 0x400);
  CHECK(din.residual_count == 0x200);
  // Round trip through the encoder gives the same bytes.
  CHECK(to_hex(encode_bhs(din)) == to_hex(bhs));
}

TEST_CASE("R2T and SCSI Response decode", "[iscsi][pdu]") {
  std::string detail;
  TargetPdu pdu;
  auto r2t = from_hex(
      "31800000 00000000 0001000000000000"
      "00000007 0000abcd 00000001 00000002 00000009"
      "00000000 00010000 00040000");
  REQUIRE_FALSE(decode_target_pdu(as_bhs(r2t), pdu, detail));
  auto& r = std::get<ReadyToTransfer>(pdu);
  CHECK(r.ttt == Ttt{0xabcd});
  CHECK(r.buffer_offset == 0x10000);
  CHECK(r.desired_data_transfer_length == 0x40000);

  auto rsp = from_hex(
      "21800002 00000016 0000000000000000"
      "00000007 00000000 00000001 00000002 00000009"
      "00000000 00000000 00000000");
  REQUIRE_FALSE(decode_target_pdu(as_bhs(rsp), pdu, detail));
  auto& s = std::get<ScsiResponse>(pdu);
  CHECK(s.status == 0x02);
  CHECK(s.data_segment_length == 0x16);
}

TEST_CASE("decoder refuses contradictory flags and initiator opcodes", "[iscsi][pdu]") {
  std::string detail;
  TargetPdu pdu;
  // Data-In with S but not F (§11.7.3)
  auto bad = from_hex("25010000" + std::string(88, '0'));
  CHECK(decode_target_pdu(as_bhs(bad), pdu, detail) == make_error_code(errc::malformed_pdu));
  // R2T asking for zero bytes (§11.8.4)
  auto zero_r2t = from_hex("31800000" + std::string(88, '0'));
  CHECK(decode_target_pdu(as_bhs(zero_r2t), pdu, detail) == make_error_code(errc::malformed_pdu));
  // A SCSI Command is not something a target sends.
  auto cmd = from_hex("01800000" + std::string(88, '0'));
  CHECK(decode_target_pdu(as_bhs(cmd), pdu, detail) == make_error_code(errc::unknown_opcode));
  CHECK(detail.find("SCSI Command") != std::string::npos);
}

TEST_CASE("initiator PDUs round-trip through the initiator decoder", "[iscsi][pdu]") {
  TaskManagementRequest tmf;
  tmf.immediate = true;
  tmf.function = TaskFunction::abort_task;
  tmf.itt = Itt{5};
  tmf.referenced_task_tag = Itt{3};
  tmf.cmd_sn = CmdSN(10);
  tmf.ref_cmd_sn = CmdSN(8);
  auto bhs = encode_bhs(tmf);
  CHECK(to_hex(std::span(bhs).first(2)) == "4281");
  InitiatorPdu pdu;
  std::string detail;
  REQUIRE_FALSE(decode_initiator_pdu(bhs, pdu, detail));
  auto& back = std::get<TaskManagementRequest>(pdu);
  CHECK(back.immediate);
  CHECK(back.referenced_task_tag == Itt{3});
  CHECK(back.ref_cmd_sn == CmdSN(8));
}

TEST_CASE("CRC32C matches RFC 3720 Appendix B.4 vectors", "[iscsi][pdu][digest]") {
  std::vector<std::byte> zeros(32, std::byte{0}), ones(32, std::byte{0xff}), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = std::byte(i);
    dec[i] = std::byte(31 - i);
  }
  CHECK(to_hex(digest_bytes(crc32c(zeros))) == "aa36918a");
  CHECK(to_hex(digest_bytes(crc32c(ones))) == "43aba862");
  CHECK(to_hex(digest_bytes(crc32c(inc))) == "4e79dd46");
  CHECK(to_hex(digest_bytes(crc32c(dec))) == "5cdb3f11");
  // Continuation: a segment may be covered in pieces.
  CHECK(crc32c(std::span(inc).subspan(7), crc32c(std::span(inc).first(7))) == crc32c(inc));
}

namespace {

// A NOP-In with a 5-byte ping payload (padded to 8), optionally with digests.
std::vector<std::byte> nop_in_wire(bool header_digest, bool data_digest) {
  NopIn nop;
  nop.itt = Itt{0x42};
  nop.ttt = Ttt{Ttt::reserved};
  nop.stat_sn = StatSN(3);
  nop.data_segment_length = 5;
  auto bhs = encode_bhs(nop);
  std::vector<std::byte> wire(bhs.begin(), bhs.end());
  if (header_digest) {
    auto d = digest_bytes(crc32c(bhs));
    wire.insert(wire.end(), d.begin(), d.end());
  }
  auto payload = from_hex("68656c6c6f000000");  // "hello" + 3 bytes of padding
  wire.insert(wire.end(), payload.begin(), payload.end());
  if (data_digest) {
    auto d = digest_bytes(crc32c(payload));
    wire.insert(wire.end(), d.begin(), d.end());
  }
  return wire;
}

}  // namespace

TEST_CASE("PDU reader assembles a PDU split at every point", "[iscsi][reader]") {
  for (bool hd : {false, true}) {
    for (bool dd : {false, true}) {
      auto one = nop_in_wire(hd, dd);
      std::vector<std::byte> wire = one;
      wire.insert(wire.end(), one.begin(), one.end());  // two PDUs back to back
      for (size_t split = 0; split <= wire.size(); ++split) {
        CAPTURE(hd, dd, split);
        PduReader reader({.max_data_segment_length = 8192, .header_digest = hd, .data_digest = dd});
        int seen = 0;
        std::span<const std::byte> chunks[2] = {std::span(wire).first(split),
                                                std::span(wire).subspan(split)};
        for (auto chunk : chunks) {
          while (!chunk.empty()) {
            auto r = reader.feed(chunk);
            REQUIRE(r.state != PduReader::State::error);
            chunk = chunk.subspan(r.consumed);
            if (r.state == PduReader::State::ready) {
              CHECK(bhs_opcode(reader.bhs()) == Opcode::nop_in);
              CHECK(common::as_chars(reader.data()) == "hello");
              ++seen;
              reader.next();
            }
          }
        }
        CHECK(seen == 2);
      }
    }
  }
}

TEST_CASE("PDU reader rejects bad digests and oversize segments", "[iscsi][reader]") {
  SECTION("header digest") {
    auto wire = nop_in_wire(true, false);
    wire[48] ^= std::byte{1};
    PduReader reader({.max_data_segment_length = 8192, .header_digest = true});
    auto r = reader.feed(wire);
    CHECK(r.state == PduReader::State::error);
    CHECK(reader.error() == make_error_code(errc::header_digest_mismatch));
  }
  SECTION("data digest covers the padding too") {
    auto wire = nop_in_wire(false, true);
    wire[48 + 6] ^= std::byte{1};  // a padding byte
    PduReader reader({.max_data_segment_length = 8192, .data_digest = true});
    CHECK(reader.feed(wire).state == PduReader::State::error);
    CHECK(reader.error() == make_error_code(errc::data_digest_mismatch));
  }
  SECTION("segment longer than MaxRecvDataSegmentLength, refused before buffering") {
    auto wire = nop_in_wire(false, false);
    PduReader reader({.max_data_segment_length = 4});
    CHECK(reader.feed(std::span(wire).first(48)).state == PduReader::State::error);
    CHECK(reader.error() == make_error_code(errc::data_segment_too_long));
    CHECK(reader.error_detail().find("NOP-In") != std::string::npos);
  }
}

namespace {
struct FixedPlacement : DataPlacement {
  std::vector<std::byte> buffer = std::vector<std::byte>(5);
  std::span<std::byte> place(std::span<const std::byte, bhs_size>, uint32_t n) override {
    return n == buffer.size() ? std::span<std::byte>(buffer) : std::span<std::byte>{};
  }
};
}  // namespace

TEST_CASE("PDU reader places data segments into the owner's buffer", "[iscsi][reader]") {
  FixedPlacement placement;
  PduReader reader;
  reader.set_placement(&placement);
  auto wire = nop_in_wire(false, false);
  REQUIRE(reader.feed(wire).state == PduReader::State::ready);
  CHECK(reader.data_was_placed());
  CHECK(common::as_chars(placement.buffer) == "hello");
}

// A driver that reads the socket straight into the placed buffer: the header (and the first
// `fed` data bytes) go through feed(), the rest of the segment is written into
// placed_remainder() in pieces of `piece` bytes, then padding and digest are fed again.
TEST_CASE("PDU reader takes a placed segment written straight into its buffer", "[iscsi][reader]") {
  for (bool hd : {false, true}) {
    for (bool dd : {false, true}) {
      const auto wire = nop_in_wire(hd, dd);
      const size_t header = 48 + (hd ? 4 : 0);
      for (size_t fed = 0; fed <= 5; ++fed) {
        for (size_t piece = 1; piece <= 5; ++piece) {
          CAPTURE(hd, dd, fed, piece);
          FixedPlacement placement;
          PduReader reader(
              {.max_data_segment_length = 8192, .header_digest = hd, .data_digest = dd});
          reader.set_placement(&placement);
          auto r = reader.feed(std::span(wire).first(header + fed));
          REQUIRE(r.state == PduReader::State::need_more);
          REQUIRE(r.consumed == header + fed);
          size_t at = header + fed;
          while (!reader.placed_remainder().empty()) {
            auto dst = reader.placed_remainder();
            CHECK(dst.size() == 5 - (at - header));
            const size_t n = std::min(piece, dst.size());
            std::copy_n(wire.begin() + static_cast<ptrdiff_t>(at), n, dst.begin());
            at += n;
            r = reader.advance_placed(n);
            REQUIRE(r.state == PduReader::State::need_more);  // padding follows
          }
          r = reader.feed(std::span(wire).subspan(at));
          REQUIRE(r.state == PduReader::State::ready);
          CHECK(r.consumed == wire.size() - at);
          CHECK(common::as_chars(placement.buffer) == "hello");
          CHECK(reader.placed_remainder().empty());
        }
      }
    }
  }
}

TEST_CASE("PDU reader checks the data digest over bytes written straight into its buffer",
          "[iscsi][reader]") {
  auto wire = nop_in_wire(false, true);
  FixedPlacement placement;
  PduReader reader({.max_data_segment_length = 8192, .data_digest = true});
  reader.set_placement(&placement);
  REQUIRE(reader.feed(std::span(wire).first(48)).state == PduReader::State::need_more);
  auto dst = reader.placed_remainder();
  REQUIRE(dst.size() == 5);
  std::copy_n(wire.begin() + 48, 5, dst.begin());
  dst[2] ^= std::byte{0x20};  // damaged on the way in
  REQUIRE(reader.advance_placed(5).state == PduReader::State::need_more);
  CHECK(reader.feed(std::span(wire).subspan(53)).state == PduReader::State::error);
  CHECK(reader.error() == make_error_code(errc::data_digest_mismatch));
}

// A hedged read's first attempt loses while its Data-In is arriving: the buffer now holds the
// reply, so the rest of the segment (and what a read into the old span already brought) goes to
// the reader's own buffer, and the digest still checks out.
TEST_CASE("PDU reader gives a placed buffer back in the middle of a segment", "[iscsi][reader]") {
  for (bool dd : {false, true}) {
    CAPTURE(dd);
    const auto wire = nop_in_wire(false, dd);
    FixedPlacement placement;
    PduReader reader({.max_data_segment_length = 8192, .data_digest = dd});
    reader.set_placement(&placement);
    REQUIRE(reader.feed(std::span(wire).first(49)).state == PduReader::State::need_more);
    CHECK(reader.placed_segment().data() == placement.buffer.data());
    // A direct read brought two more bytes into the placed span before the owner let go of it.
    auto dst = reader.placed_remainder();
    std::copy_n(wire.begin() + 49, 2, dst.begin());
    reader.unplace();
    CHECK(reader.placed_segment().empty());
    CHECK(reader.placed_remainder().empty());
    std::fill(placement.buffer.begin(), placement.buffer.end(), std::byte{0x55});  // the reply
    REQUIRE(reader.advance_placed(2).state == PduReader::State::need_more);
    auto r = reader.feed(std::span(wire).subspan(51));
    REQUIRE(r.state == PduReader::State::ready);
    CHECK(common::as_chars(reader.data()) == "hello");
    CHECK_FALSE(reader.data_was_placed());
    CHECK(placement.buffer == std::vector<std::byte>(5, std::byte{0x55}));  // untouched
  }
}

TEST_CASE("PDU reader offers no direct buffer for segments it keeps itself", "[iscsi][reader]") {
  PduReader reader;  // no placement
  auto wire = nop_in_wire(false, false);
  REQUIRE(reader.feed(std::span(wire).first(49)).state == PduReader::State::need_more);
  CHECK(reader.placed_remainder().empty());
}

TEST_CASE("serial number arithmetic follows RFC 1982", "[iscsi][serial]") {
  CHECK(CmdSN(1) < CmdSN(2));
  CHECK(CmdSN(0xffffffff) < CmdSN(0));  // wraps
  CHECK(CmdSN(0xfffffff0) < CmdSN(5));
  CHECK_FALSE(CmdSN(5) < CmdSN(0xfffffff0));
  CHECK(CmdSN(0x7fffffff) > CmdSN(0));
  CHECK_FALSE(CmdSN(0x80000000) > CmdSN(0));  // exactly 2^31 apart: undefined, neither
  CHECK_FALSE(CmdSN(0x80000000) < CmdSN(0));
  CHECK(CmdSN(0xffffffff).next() == CmdSN(0));
  CHECK(CmdSN(3).distance_from(CmdSN(0xfffffffe)) == 5);
}
