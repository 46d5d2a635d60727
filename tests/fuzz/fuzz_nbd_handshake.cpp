// The server side of the NBD fixed newstyle handshake (proto.md, "Fixed newstyle negotiation")
// fed a client's bytes, and everything it sends checked for framing: the greeting, option
// replies each with the reply magic, and at most one NBD_OPT_EXPORT_NAME answer at the end;
// metadata context replies name base:allocation, which needs structured replies.
//
// Input: [flags][chunk seed][client bytes...]
//   flags bit 0: read exactly bytes_needed() like the driver (else chunks from the seed);
//   bit 1: read-only first export, bit 2: TRIM and WRITE_ZEROES on it, bit 3: the first export
//   (the default) named "", bit 7: the second export removed before the first option,
//   bit 4: send pending output in pieces (consume_output with partial counts),
//   bits 5-6: TLS mode (0 off, 1 on, 2 and 3 require); an acknowledged NBD_OPT_STARTTLS is
//   followed by a successful TLS handshake and the rest of the input is the TLS stream.
#include <memory>
#include <string>
#include <vector>

#include <common/bytes.hpp>
#include <nbd/export_catalog.hpp>
#include <nbd/handshake.hpp>
#include <nbd/wire.hpp>

#include "fuzz_support.hpp"

namespace {

// Two exports, as a target with two LUNs: the second one larger, with 4096-byte blocks.
std::shared_ptr<nbd::ExportList> exports_from(const fuzz::Prefix& prefix) {
  blockdev::DeviceInfo device;
  device.size_bytes = uint64_t{1} << 30;
  device.logical_block_size = 512;
  device.physical_block_size = 4096;
  device.max_transfer_bytes = 1u << 20;
  device.read_only = prefix.bit(0, 1);
  device.supports_trim = device.supports_write_zeroes = prefix.bit(0, 2);
  auto exports = std::make_shared<nbd::ExportList>();
  exports->add({prefix.bit(0, 3) ? "" : "lun1", "fuzz export", device});
  device.size_bytes = uint64_t{1} << 40;
  device.logical_block_size = device.physical_block_size = 4096;
  device.read_only = false;
  exports->add({"lun2", "second fuzz export", device});
  if (prefix.bit(0, 7)) exports->remove("lun2", "removed by the fuzzer");
  return exports;
}

// Checks the server's whole output: greeting, option replies, and (only when the handshake
// ended in transmission) an optional NBD_OPT_EXPORT_NAME reply as the very last bytes.
void check_output(std::span<const std::byte> out, const nbd::ServerHandshake& handshake) {
  FUZZ_CHECK(out.size() >= nbd::kServerGreetingSize);
  FUZZ_CHECK(common::load_be64(out, 0) == nbd::kNbdMagic);
  size_t at = nbd::kServerGreetingSize;
  while (out.size() - at >= nbd::kOptionReplyHeaderSize &&
         common::load_be64(out, at) == nbd::kOptionReplyMagic) {
    const uint32_t length = common::load_be32(out, at + 16);
    FUZZ_CHECK(length <= out.size() - at - nbd::kOptionReplyHeaderSize);
    // NBD_REP_META_CONTEXT: a context id, then exactly "base:allocation".
    if (common::load_be32(out, at + 12) == nbd::kRepMetaContext) {
      const uint32_t option = common::load_be32(out, at + 8);
      FUZZ_CHECK(option == nbd::kOptListMetaContext || option == nbd::kOptSetMetaContext);
      FUZZ_CHECK(length == 4 + nbd::kBaseAllocation.size());
    }
    at += nbd::kOptionReplyHeaderSize + length;
  }
  const size_t rest = out.size() - at;
  if (rest == 0) return;
  FUZZ_CHECK(handshake.finished());
  FUZZ_CHECK(handshake.outcome().kind == nbd::HandshakeOutcome::Kind::transmission);
  FUZZ_CHECK(rest == nbd::kExportNameReplySize +
                         (handshake.outcome().no_zeroes ? 0 : nbd::kExportNameZeroPadding));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  auto input = fuzz::as_bytes(raw, size);
  const fuzz::Prefix prefix(input, 2);
  const unsigned tls_bits = (prefix.bit(0, 5) ? 1u : 0u) | (prefix.bit(0, 6) ? 2u : 0u);
  const nbd::TlsMode tls_mode = tls_bits == 0   ? nbd::TlsMode::off
                                : tls_bits == 1 ? nbd::TlsMode::on
                                                : nbd::TlsMode::require;
  const auto exports = exports_from(prefix);
  nbd::ServerHandshake handshake(exports, tls_mode);
  fuzz::Chunker chunker(prefix.u8(1));
  std::vector<std::byte> sent;

  auto drain = [&] {
    while (!handshake.pending_output().empty()) {
      const auto pending = handshake.pending_output();
      const size_t n = prefix.bit(0, 4) ? chunker.next(pending.size()) : pending.size();
      sent.insert(sent.end(), pending.begin(), pending.begin() + static_cast<ptrdiff_t>(n));
      handshake.consume_output(n);
    }
  };

  drain();
  while (!input.empty() && !handshake.finished()) {
    if (handshake.tls_pending()) {
      // STARTTLS is acknowledged only where TLS is enabled, once, and its ACK (a 20-byte
      // header, no data) is the last thing sent before the TLS handshake.
      FUZZ_CHECK(tls_mode != nbd::TlsMode::off);
      FUZZ_CHECK(!handshake.tls_active());
      FUZZ_CHECK(handshake.bytes_needed() == 0);
      FUZZ_CHECK(sent.size() >= nbd::kOptionReplyHeaderSize);
      const auto ack = std::span<const std::byte>(sent).last(nbd::kOptionReplyHeaderSize);
      FUZZ_CHECK(common::load_be32(ack, 8) == nbd::kOptStartTls);
      FUZZ_CHECK(common::load_be32(ack, 12) == nbd::kRepAck);
      handshake.tls_started();
      FUZZ_CHECK(handshake.tls_active() && !handshake.outcome().structured_replies);
      continue;
    }
    const size_t needed = handshake.bytes_needed();
    FUZZ_CHECK(needed > 0);
    const size_t n = prefix.bit(0, 0) ? std::min(needed, input.size()) : chunker.next(input.size());
    const size_t consumed = handshake.feed(input.first(n));
    FUZZ_CHECK(consumed <= n);
    // Feeding exactly what it asked for is always consumed in full (the driver relies on it).
    if (prefix.bit(0, 0)) FUZZ_CHECK(consumed == n);
    // It stops short only at the end, or where the TLS stream starts.
    if (consumed < n) FUZZ_CHECK(handshake.finished() || handshake.tls_pending());
    input = input.subspan(consumed);
    drain();
  }
  if (handshake.finished()) {
    FUZZ_CHECK(handshake.bytes_needed() == 0);
    FUZZ_CHECK(handshake.feed(input) == 0);
    const auto& outcome = handshake.outcome();
    if (outcome.kind == nbd::HandshakeOutcome::Kind::transmission) {
      FUZZ_CHECK(!outcome.error);
      FUZZ_CHECK(outcome.transmission_flags & nbd::kFlagHasFlags);
      // base:allocation is only ever selected once structured replies are on.
      FUZZ_CHECK(!outcome.base_allocation || outcome.structured_replies);
      // FORCEDTLS: no export is served in plaintext.
      if (tls_mode == nbd::TlsMode::require) FUZZ_CHECK(outcome.tls_active);
      // Only an export being served is entered, and its size is the one advertised.
      const auto* entered = exports->get(outcome.selected_export.name);
      FUZZ_CHECK(entered != nullptr);
      FUZZ_CHECK(entered->device.size_bytes == outcome.selected_export.device.size_bytes);
    } else {
      FUZZ_CHECK(outcome.error);
    }
  }
  drain();
  check_output(sent, handshake);
  return 0;
}
