// NBD fixed newstyle handshake (proto.md, "Newstyle negotiation", "Option types",
// "Option reply types"), driven by client byte scripts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/hex.hpp"
#include "nbd/errors.hpp"
#include "nbd/handshake.hpp"
#include "nbd/wire.hpp"

namespace {

// Hex with spaces between fields, as written in the tests, to the form to_hex() produces.
inline std::string hex(std::string_view spaced) {
  return common::to_hex(common::from_hex(spaced));
}

using common::from_hex;
using common::to_hex;
using nbd::HandshakeOutcome;
using nbd::ServerHandshake;

blockdev::DeviceInfo test_device() {
  blockdev::DeviceInfo info;
  info.size_bytes = 1 << 20;
  info.logical_block_size = 512;
  info.physical_block_size = 512;
  info.max_transfer_bytes = 1 << 20;
  info.supports_fua = true;
  info.supports_trim = true;
  info.supports_write_zeroes = true;
  return info;
}

nbd::ExportDescription test_export() {
  return {"disk", "test disk", test_device()};
}

// Feeds client bytes and returns what the server has to send, as hex.
std::string converse(ServerHandshake& handshake, std::string_view client_hex) {
  const auto input = from_hex(client_hex);
  REQUIRE(handshake.feed(input) == input.size());
  const std::string out = to_hex(handshake.pending_output());
  handshake.consume_output(out.size() / 2);
  return out;
}

// A handshake past the greeting and client flags.
ServerHandshake started(std::string_view client_flags = "00000003") {
  ServerHandshake handshake(test_export());
  handshake.consume_output(handshake.pending_output().size());
  handshake.feed(from_hex(client_flags));
  return handshake;
}

constexpr const char* kIHaveOpt = "49484156454f5054";
constexpr const char* kReplyMagic = "0003e889045565a9";

std::string option(const std::string& code, const std::string& data_hex) {
  const auto data = from_hex(data_hex);
  char length[9];
  std::snprintf(length, sizeof length, "%08zx", data.size());
  return std::string(kIHaveOpt) + code + length + data_hex;
}

std::string reply(const std::string& code, const std::string& type, const std::string& data_hex) {
  char length[9];
  std::snprintf(length, sizeof length, "%08zx", from_hex(data_hex).size());
  return std::string(kReplyMagic) + code + type + length + data_hex;
}

// GO/INFO data: name "disk", info requests NAME and BLOCK_SIZE.
const std::string kGoDisk = hex("00000004 6469736b 0002 0001 0003");
// Flags for test_device(): HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES,
// CAN_MULTI_CONN, SEND_FAST_ZERO.
const std::string kFlags = "096d";
std::string info_replies(const std::string& code) {
  return reply(code, "00000003", hex("0000 0000000000100000") + kFlags) +
         reply(code, "00000003", hex("0003 00000200 00001000 00100000")) +
         reply(code, "00000003", hex("0001 6469736b")) + reply(code, "00000001", "");
}
const std::string kInfoReplies = info_replies("00000007");

}  // namespace

TEST_CASE("handshake greeting offers fixed newstyle and no zeroes", "[nbd]") {
  ServerHandshake handshake(test_export());
  CHECK(to_hex(handshake.pending_output()) == hex("4e42444d41474943 49484156454f5054 0003"));
  CHECK(handshake.bytes_needed() == 4);
  CHECK_FALSE(handshake.finished());
}

TEST_CASE("NBD_OPT_GO with name and info requests enters transmission", "[nbd]") {
  auto handshake = started();
  CHECK(handshake.bytes_needed() == 16);
  CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  REQUIRE(handshake.finished());
  const auto& outcome = handshake.outcome();
  CHECK(outcome.kind == HandshakeOutcome::Kind::transmission);
  CHECK_FALSE(outcome.structured_replies);
  CHECK(outcome.transmission_flags == 0x096d);
  CHECK(outcome.export_name == "disk");
  CHECK(handshake.bytes_needed() == 0);
}

TEST_CASE("bytes after the final option are left for the transmission phase", "[nbd]") {
  auto handshake = started();
  const auto input = from_hex(option("00000007", kGoDisk) + "25609513");
  CHECK(handshake.feed(input) == input.size() - 4);
  CHECK(handshake.finished());
}

TEST_CASE("handshake output does not depend on how the input is split", "[nbd]") {
  const auto input = from_hex("00000001" + option("00000008", "") + option("00000003", "") +
                              option("00000042", "aabb") + option("00000006", kGoDisk) +
                              option("00000007", kGoDisk));
  ServerHandshake whole(test_export());
  whole.feed(input);
  REQUIRE(whole.finished());
  for (size_t split = 1; split < input.size(); ++split) {
    ServerHandshake pieces(test_export());
    size_t fed = 0;
    while (fed < input.size() && !pieces.finished()) {
      const size_t n = std::min(split, input.size() - fed);
      fed += pieces.feed(std::span(input).subspan(fed, n));
    }
    REQUIRE(pieces.finished());
    CHECK(to_hex(pieces.pending_output()) == to_hex(whole.pending_output()));
    CHECK(pieces.outcome().structured_replies);
  }
}

TEST_CASE("NBD_OPT_STRUCTURED_REPLY is acknowledged and adds NBD_FLAG_SEND_DF", "[nbd]") {
  auto handshake = started();
  CHECK(converse(handshake, option("00000008", "")) == reply("00000008", "00000001", ""));
  CHECK_FALSE(handshake.finished());
  const std::string out = converse(handshake, option("00000007", hex("00000000 0000")));
  CHECK(out.substr(0, 40 + 24) == reply("00000007", "00000003", hex("0000 0000000000100000 09ed")));
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().structured_replies);
  CHECK(handshake.outcome().transmission_flags == 0x09ed);
}

TEST_CASE("NBD_OPT_STRUCTURED_REPLY with data is invalid", "[nbd]") {
  auto handshake = started();
  const std::string out = converse(handshake, option("00000008", "00"));
  CHECK(out.substr(16, 16) == hex("00000008 80000003"));
  CHECK_FALSE(handshake.finished());
}

TEST_CASE("NBD_OPT_LIST returns our export then ACK; data is invalid", "[nbd]") {
  auto handshake = started();
  CHECK(converse(handshake, option("00000003", "")) ==
        reply("00000003", "00000002", hex("00000004 6469736b 74657374206469736b")) +
            reply("00000003", "00000001", ""));
  const std::string invalid = converse(handshake, option("00000003", "00000000"));
  CHECK(invalid.substr(16, 16) == hex("00000003 80000003"));
  CHECK_FALSE(handshake.finished());
}

TEST_CASE("NBD_OPT_INFO answers without leaving the handshake, then GO", "[nbd]") {
  auto handshake = started();
  CHECK(converse(handshake, option("00000006", kGoDisk)) == info_replies("00000006"));
  CHECK_FALSE(handshake.finished());
  CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  CHECK(handshake.finished());
}

TEST_CASE("NBD_OPT_GO with the empty name selects the default export", "[nbd]") {
  auto handshake = started();
  const std::string out = converse(handshake, option("00000007", hex("00000000 0001 0002")));
  // EXPORT and BLOCK_SIZE always; DESCRIPTION because it was asked for; then ACK.
  CHECK(out == reply("00000007", "00000003", hex("0000 0000000000100000") + kFlags) +
                   reply("00000007", "00000003", hex("0003 00000200 00001000 00100000")) +
                   reply("00000007", "00000003", hex("0002 74657374206469736b")) +
                   reply("00000007", "00000001", ""));
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().export_name.empty());
}

TEST_CASE("NBD_OPT_GO for an unknown export gets ERR_UNKNOWN and haggling goes on", "[nbd]") {
  auto handshake = started();
  const std::string out = converse(handshake, option("00000007", hex("00000003 626164 0000")));
  CHECK(out.substr(0, 32) == std::string(kReplyMagic) + hex("00000007 80000006"));
  CHECK(out.size() > 40);  // carries a message for the user
  CHECK_FALSE(handshake.finished());
  CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  CHECK(handshake.finished());
}

TEST_CASE("malformed NBD_OPT_GO lengths get ERR_INVALID", "[nbd]") {
  const char* cases[] = {
      "0000000464",                   // shorter than 6 bytes
      "00000009 6469736b 0000",       // name length beyond the option
      "00000004 6469736b 0002 0001",  // fewer info requests than counted
      "00000004 6469736b 0000 0001",  // trailing bytes
      "ffffffff 0000",                // name length that would overflow
  };
  for (const char* data : cases) {
    auto handshake = started();
    const std::string out = converse(handshake, option("00000007", data));
    CHECK(out.substr(16, 16) == hex("00000007 80000003"));
    CHECK_FALSE(handshake.finished());
  }
}

TEST_CASE("NBD_OPT_EXPORT_NAME replies with size and flags, zero padding unless NO_ZEROES",
          "[nbd]") {
  SECTION("client set NBD_FLAG_C_NO_ZEROES") {
    auto handshake = started("00000003");
    CHECK(converse(handshake, option("00000001", "6469736b")) == "0000000000100000" + kFlags);
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::transmission);
    CHECK(handshake.outcome().no_zeroes);
  }
  SECTION("client did not") {
    auto handshake = started("00000001");
    CHECK(converse(handshake, option("00000001", "6469736b")) ==
          "0000000000100000" + kFlags + std::string(124 * 2, '0'));
    REQUIRE(handshake.finished());
    CHECK_FALSE(handshake.outcome().no_zeroes);
  }
  SECTION("the empty name is the default export") {
    auto handshake = started("00000003");
    CHECK(converse(handshake, option("00000001", "")) == "0000000000100000" + kFlags);
    CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::transmission);
  }
}

TEST_CASE("NBD_OPT_EXPORT_NAME for an unknown export terminates the session", "[nbd]") {
  auto handshake = started();
  CHECK(converse(handshake, option("00000001", "626164")).empty());
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::protocol_error);
  CHECK(handshake.outcome().error == nbd::errc::unknown_export);
}

TEST_CASE("unknown options get ERR_UNSUP", "[nbd]") {
  auto handshake = started();
  std::string out = converse(handshake, option("00000042", "0102"));
  CHECK(out.substr(16, 16) == hex("00000042 80000001"));
  CHECK_FALSE(handshake.finished());
}

// proto.md "TLS support" and NBD_OPT_STARTTLS.
ServerHandshake started_tls(nbd::TlsMode mode) {
  ServerHandshake handshake(test_export(), mode);
  handshake.consume_output(handshake.pending_output().size());
  handshake.feed(from_hex("00000003"));
  return handshake;
}

const std::string kTlsRequired =
    to_hex(common::as_bytes("TLS is required on this server: negotiate NBD_OPT_STARTTLS first"));

TEST_CASE("tls off: STARTTLS gets ERR_POLICY and plaintext goes on", "[nbd][tls]") {
  auto handshake = started_tls(nbd::TlsMode::off);
  const std::string out = converse(handshake, option("00000005", ""));
  CHECK(out == reply("00000005", "80000002",
                     to_hex(common::as_bytes("TLS is not enabled on this server"))));
  CHECK_FALSE(handshake.tls_pending());
  CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  CHECK_FALSE(handshake.outcome().tls_active);
}

TEST_CASE("tls on: STARTTLS is acknowledged, then options start over inside TLS", "[nbd][tls]") {
  auto handshake = started_tls(nbd::TlsMode::on);
  // Structured replies negotiated in plaintext are forgotten after the upgrade.
  CHECK(converse(handshake, option("00000008", "")) == reply("00000008", "00000001", ""));
  // Bytes after STARTTLS are TLS records: none is consumed before the driver's handshake.
  const auto input = from_hex(option("00000005", "") + option("00000008", ""));
  CHECK(handshake.feed(input) == 16);
  CHECK(to_hex(handshake.pending_output()) == reply("00000005", "00000001", ""));
  handshake.consume_output(handshake.pending_output().size());
  REQUIRE(handshake.tls_pending());
  CHECK_FALSE(handshake.finished());
  CHECK(handshake.bytes_needed() == 0);
  CHECK(handshake.feed(from_hex("00")) == 0);

  handshake.tls_started();
  CHECK_FALSE(handshake.tls_pending());
  CHECK(handshake.tls_active());
  CHECK(handshake.bytes_needed() == 16);
  // A second STARTTLS: ERR_INVALID.
  CHECK(converse(handshake, option("00000005", "")).substr(16, 16) == hex("00000005 80000003"));
  CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::transmission);
  CHECK(handshake.outcome().tls_active);
  CHECK_FALSE(handshake.outcome().structured_replies);
}

TEST_CASE("tls on: a plaintext client is served", "[nbd][tls]") {
  auto handshake = started_tls(nbd::TlsMode::on);
  CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::transmission);
  CHECK_FALSE(handshake.outcome().tls_active);
}

TEST_CASE("STARTTLS with data gets ERR_INVALID", "[nbd][tls]") {
  auto handshake = started_tls(nbd::TlsMode::require);
  CHECK(converse(handshake, option("00000005", "00")).substr(16, 16) == hex("00000005 80000003"));
  CHECK_FALSE(handshake.tls_pending());
}

TEST_CASE("tls require: every option but STARTTLS and ABORT gets ERR_TLS_REQD", "[nbd][tls]") {
  for (const char* code :
       {"00000003", "00000006", "00000007", "00000008", "00000009", "0000000a", "00000042"}) {
    INFO("option " << code);
    auto handshake = started_tls(nbd::TlsMode::require);
    const std::string data =
        std::string(code) == "00000007" || std::string(code) == "00000006" ? kGoDisk : "";
    CHECK(converse(handshake, option(code, data)) == reply(code, "80000005", kTlsRequired));
    CHECK_FALSE(handshake.finished());
  }
  SECTION("then STARTTLS, and inside TLS the export is served") {
    auto handshake = started_tls(nbd::TlsMode::require);
    CHECK(converse(handshake, option("00000007", kGoDisk)) ==
          reply("00000007", "80000005", kTlsRequired));
    CHECK(converse(handshake, option("00000005", "")) == reply("00000005", "00000001", ""));
    REQUIRE(handshake.tls_pending());
    handshake.tls_started();
    CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
    CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::transmission);
    CHECK(handshake.outcome().tls_active);
  }
  SECTION("ABORT is acknowledged") {
    auto handshake = started_tls(nbd::TlsMode::require);
    CHECK(converse(handshake, option("00000002", "")) == reply("00000002", "00000001", ""));
    CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::client_aborted);
  }
  SECTION("EXPORT_NAME has no error reply: the session ends") {
    auto handshake = started_tls(nbd::TlsMode::require);
    CHECK(converse(handshake, option("00000001", "6469736b")).empty());
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::protocol_error);
    CHECK(handshake.outcome().error == nbd::errc::tls_required);
  }
  SECTION("an oversized option is drained and answered ERR_TLS_REQD") {
    auto handshake = started_tls(nbd::TlsMode::require);
    const size_t length = ServerHandshake::kMaxOptionData + 1;
    char header[64];
    std::snprintf(header, sizeof header, "%s00000007%08zx", kIHaveOpt, length);
    CHECK(converse(handshake, header).empty());
    const std::vector<std::byte> body(length);
    CHECK(handshake.feed(body) == length);
    CHECK(to_hex(handshake.pending_output()).substr(16, 16) == hex("00000007 80000005"));
  }
}

TEST_CASE("NBD_OPT_ABORT is acknowledged and ends the handshake", "[nbd]") {
  auto handshake = started();
  CHECK(converse(handshake, option("00000002", "")) == reply("00000002", "00000001", ""));
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::client_aborted);
}

TEST_CASE("hostile option lengths are drained, never buffered, and answered ERR_TOO_BIG", "[nbd]") {
  SECTION("a length just over the cap") {
    auto handshake = started();
    const size_t length = ServerHandshake::kMaxOptionData + 1;
    char header[64];
    std::snprintf(header, sizeof header, "%s00000007%08zx", kIHaveOpt, length);
    CHECK(converse(handshake, header).empty());
    CHECK(handshake.bytes_needed() <= ServerHandshake::kMaxOptionData);
    const std::vector<std::byte> body(length);
    CHECK(handshake.feed(body) == length);
    const std::string out = to_hex(handshake.pending_output());
    handshake.consume_output(out.size() / 2);
    CHECK(out.substr(16, 16) == hex("00000007 80000009"));
    CHECK(converse(handshake, option("00000007", kGoDisk)) == kInfoReplies);
  }
  SECTION("4 GiB: the machine asks for at most the cap at a time") {
    auto handshake = started();
    CHECK(converse(handshake, std::string(kIHaveOpt) + hex("00000007 ffffffff")).empty());
    const std::vector<std::byte> chunk(handshake.bytes_needed());
    CHECK(chunk.size() == ServerHandshake::kMaxOptionData);
    CHECK(handshake.feed(chunk) == chunk.size());
    CHECK(handshake.bytes_needed() == ServerHandshake::kMaxOptionData);
    CHECK(handshake.pending_output().empty());
  }
  SECTION("NBD_OPT_EXPORT_NAME cannot be answered: protocol error") {
    auto handshake = started();
    CHECK(converse(handshake, std::string(kIHaveOpt) + hex("00000001 00100000")).empty());
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().error == nbd::errc::option_too_large);
  }
}

TEST_CASE("protocol violations end the handshake", "[nbd]") {
  SECTION("unknown client flags") {
    ServerHandshake handshake(test_export());
    handshake.feed(from_hex("00000004"));
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::protocol_error);
    CHECK(handshake.outcome().error == nbd::errc::unknown_client_flags);
  }
  SECTION("option without IHAVEOPT") {
    auto handshake = started();
    handshake.feed(from_hex("4e42444d41474943 00000007 00000000"));
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().error == nbd::errc::bad_option_magic);
  }
  SECTION("endless option haggling") {
    auto handshake = started();
    const auto list = from_hex(option("00000003", ""));
    for (size_t i = 0; i < ServerHandshake::kMaxOptions && !handshake.finished(); ++i) {
      handshake.feed(list);
    }
    CHECK_FALSE(handshake.finished());
    handshake.feed(list);
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().error == nbd::errc::too_many_options);
  }
}

// --- Metadata contexts (proto.md NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT) ---------

namespace {

constexpr const char* kBaseAllocationHex = "626173653a616c6c6f636174696f6e";  // "base:allocation"

// LIST/SET data: export name, then the queries.
std::string meta_data(const std::string& name_hex, std::initializer_list<std::string> queries) {
  char length[9];
  std::snprintf(length, sizeof length, "%08zx", from_hex(name_hex).size());
  std::string out = std::string(length) + name_hex;
  std::snprintf(length, sizeof length, "%08zx", queries.size());
  out += length;
  for (const auto& q : queries) {
    std::snprintf(length, sizeof length, "%08zx", from_hex(q).size());
    out += std::string(length) + q;
  }
  return out;
}

const std::string kDisk = "6469736b";
const std::string kSet = "0000000a";
const std::string kList = "00000009";

std::string context_reply(const std::string& code, const std::string& id) {
  return reply(code, "00000004", id + kBaseAllocationHex);
}

ServerHandshake structured() {
  auto handshake = started();
  converse(handshake, option("00000008", ""));
  return handshake;
}

}  // namespace

TEST_CASE("NBD_OPT_SET_META_CONTEXT selects base:allocation for GO on the same export", "[nbd]") {
  auto handshake = structured();
  CHECK(converse(handshake, option(kSet, meta_data(kDisk, {kBaseAllocationHex}))) ==
        context_reply(kSet, "00000001") + reply(kSet, "00000001", ""));
  converse(handshake, option("00000007", kGoDisk));
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::transmission);
  CHECK(handshake.outcome().base_allocation);
}

TEST_CASE("NBD_OPT_SET_META_CONTEXT before structured replies is invalid", "[nbd]") {
  auto handshake = started();
  const std::string out = converse(handshake, option(kSet, meta_data(kDisk, {kBaseAllocationHex})));
  CHECK(out.substr(0, 32) == std::string(kReplyMagic) + kSet + "80000003");
  converse(handshake, option("00000008", ""));
  converse(handshake, option("00000007", kGoDisk));
  REQUIRE(handshake.finished());
  CHECK_FALSE(handshake.outcome().base_allocation);
}

TEST_CASE("base:allocation is not active when GO names another export than SET", "[nbd]") {
  auto handshake = structured();
  // SET on the default export "", GO on "disk": the same export, but not the same name.
  converse(handshake, option(kSet, meta_data("", {kBaseAllocationHex})));
  converse(handshake, option("00000007", kGoDisk));
  REQUIRE(handshake.finished());
  CHECK_FALSE(handshake.outcome().base_allocation);
}

TEST_CASE("a later SET_META_CONTEXT replaces the selection, even when it fails", "[nbd]") {
  SECTION("zero queries select nothing") {
    auto handshake = structured();
    converse(handshake, option(kSet, meta_data(kDisk, {kBaseAllocationHex})));
    CHECK(converse(handshake, option(kSet, meta_data(kDisk, {}))) == reply(kSet, "00000001", ""));
    converse(handshake, option("00000007", kGoDisk));
    CHECK_FALSE(handshake.outcome().base_allocation);
  }
  SECTION("an unknown export fails with ERR_UNKNOWN") {
    auto handshake = structured();
    converse(handshake, option(kSet, meta_data(kDisk, {kBaseAllocationHex})));
    const std::string out =
        converse(handshake, option(kSet, meta_data("6f74686572", {kBaseAllocationHex})));
    CHECK(out.substr(0, 32) == std::string(kReplyMagic) + kSet + "80000006");
    converse(handshake, option("00000007", kGoDisk));
    CHECK_FALSE(handshake.outcome().base_allocation);
  }
}

TEST_CASE("unknown namespaces and other base: leaves select nothing", "[nbd]") {
  auto handshake = structured();
  // "qemu:dirty-bitmap:x" and "base:other".
  CHECK(converse(handshake, option(kSet, meta_data(kDisk, {"71656d753a64697274792d6269746d61703a78",
                                                           "626173653a6f74686572"}))) ==
        reply(kSet, "00000001", ""));
  converse(handshake, option("00000007", kGoDisk));
  CHECK_FALSE(handshake.outcome().base_allocation);
}

TEST_CASE("duplicate queries select base:allocation once", "[nbd]") {
  auto handshake = structured();
  CHECK(converse(handshake,
                 option(kSet, meta_data(kDisk, {kBaseAllocationHex, kBaseAllocationHex}))) ==
        context_reply(kSet, "00000001") + reply(kSet, "00000001", ""));
}

TEST_CASE("NBD_OPT_LIST_META_CONTEXT lists base:allocation with id 0", "[nbd]") {
  // LIST needs no structured replies; its ids are "reserved and SHOULD be set to zero".
  auto handshake = started();
  const std::string listed = context_reply(kList, "00000000") + reply(kList, "00000001", "");
  CHECK(converse(handshake, option(kList, meta_data(kDisk, {}))) == listed);
  CHECK(converse(handshake, option(kList, meta_data(kDisk, {"626173653a"}))) == listed);  // base:
  CHECK(converse(handshake, option(kList, meta_data(kDisk, {kBaseAllocationHex}))) == listed);
  CHECK(converse(handshake, option(kList, meta_data(kDisk, {"782d666f6f3a"}))) ==  // x-foo:
        reply(kList, "00000001", ""));
  // Listing selects nothing.
  converse(handshake, option("00000008", ""));
  converse(handshake, option("00000007", kGoDisk));
  CHECK_FALSE(handshake.outcome().base_allocation);
}

TEST_CASE("malformed metadata context options get ERR_INVALID, too many queries ERR_TOO_BIG",
          "[nbd]") {
  auto error_of = [](const std::string& code, const std::string& data) {
    auto handshake = structured();
    const std::string out = converse(handshake, option(code, data));
    CHECK_FALSE(handshake.finished());
    return out.substr(24, 8);
  };
  for (const std::string& code : {kList, kSet}) {
    CAPTURE(code);
    CHECK(error_of(code, "") == "80000003");                               // no data
    CHECK(error_of(code, "00000009" + kDisk + "00000000") == "80000003");  // name too long
    CHECK(error_of(code, "00000004" + kDisk + "00000001") == "80000003");  // query missing
    CHECK(error_of(code, "00000004" + kDisk + "00000001 00000010" + kBaseAllocationHex) ==
          "80000003");                                                 // query longer than the data
    CHECK(error_of(code, meta_data(kDisk, {}) + "00") == "80000003");  // trailing bytes
    CHECK(error_of(code, meta_data(kDisk, {"62617365"})) == "80000003");   // "base": no colon
    CHECK(error_of(code, "00000004" + kDisk + "00000081") == "80000009");  // 129 queries
    CHECK(error_of(code, meta_data("6f74686572", {kBaseAllocationHex})) == "80000006");
  }
}

TEST_CASE("a refused client gets NBD_REP_ERR_POLICY with the message for every option", "[nbd]") {
  auto handshake = started();
  handshake.refuse("full");
  // NBD_OPT_STRUCTURED_REPLY, then NBD_OPT_GO: each answered with the refusal, "full".
  CHECK(converse(handshake, option("00000008", "")) == reply("00000008", "80000002", "66756c6c"));
  CHECK(converse(handshake, option("00000007", kGoDisk)) ==
        reply("00000007", "80000002", "66756c6c"));
  CHECK_FALSE(handshake.finished());
  // NBD_OPT_ABORT is still acknowledged.
  CHECK(converse(handshake, option("00000002", "")) == reply("00000002", "00000001", ""));
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::client_aborted);
}

TEST_CASE("a refused client's NBD_OPT_EXPORT_NAME ends the session without a reply", "[nbd]") {
  auto handshake = started();
  handshake.refuse("full");
  CHECK(converse(handshake, option("00000001", "6469736b")).empty());
  REQUIRE(handshake.finished());
  CHECK(handshake.outcome().kind == HandshakeOutcome::Kind::protocol_error);
  CHECK(handshake.outcome().error == nbd::errc::refused);
  CHECK(handshake.outcome().message == "full");
}

// --- Several exports (one per LUN) behind one handshake: nbd/export_catalog.hpp ---------------

namespace {

std::string text_hex(std::string_view text) {
  return to_hex(common::as_bytes(text));
}

// A u32 length and the name, as NBD_REP_SERVER and the GO/INFO/META_CONTEXT data carry it.
std::string name_hex(std::string_view name) {
  char length[9];
  std::snprintf(length, sizeof length, "%08zx", name.size());
  return length + text_hex(name);
}

std::string go_data(std::string_view name) {
  return name_hex(name) + "0000";  // no information requests
}

// What a client reads as text from an error reply (after the 20-byte header).
std::string reply_message(const std::string& out_hex) {
  const auto bytes = from_hex(out_hex);
  REQUIRE(bytes.size() >= 20);
  return std::string(common::as_chars(std::span(bytes).subspan(20)));
}

// lun0: 1 MiB, read-write with TRIM; lun1: 2 MiB, read-only; lun2: 3 MiB, 4096-byte blocks.
std::shared_ptr<nbd::ExportList> three_exports() {
  auto list = std::make_shared<nbd::ExportList>();
  auto lun = [](uint64_t mib, bool read_only, uint32_t block) {
    blockdev::DeviceInfo info = test_device();
    info.size_bytes = mib << 20;
    info.read_only = read_only;
    info.logical_block_size = block;
    info.physical_block_size = block;
    return info;
  };
  REQUIRE(list->add({"lun0", "LUN 0 of iqn.test:t", lun(1, false, 512)}));
  REQUIRE(list->add({"lun1", "LUN 1 of iqn.test:t", lun(2, true, 512)}));
  REQUIRE(list->add({"lun2", "LUN 2 of iqn.test:t", lun(3, false, 4096)}));
  return list;
}

ServerHandshake started_with(std::shared_ptr<const nbd::ExportCatalog> exports) {
  ServerHandshake handshake(std::move(exports));
  handshake.consume_output(handshake.pending_output().size());
  handshake.feed(from_hex("00000003"));
  return handshake;
}

// NBD_INFO_EXPORT: size and transmission flags.
std::string export_info(const std::string& code, uint64_t size, const std::string& flags) {
  char size_hex[17];
  std::snprintf(size_hex, sizeof size_hex, "%016llx", static_cast<unsigned long long>(size));
  return reply(code, "00000003", "0000" + std::string(size_hex) + flags);
}

const std::string kGo = "00000007";
const std::string kInfo = "00000006";
// HAS_FLAGS, READ_ONLY, SEND_FLUSH, SEND_FUA, CAN_MULTI_CONN: no TRIM or zeroes when read-only.
const std::string kReadOnlyFlags = "010f";

}  // namespace

TEST_CASE("NBD_OPT_LIST answers one NBD_REP_SERVER per export, default first", "[nbd]") {
  auto handshake = started_with(three_exports());
  std::string expected;
  for (const char* lun : {"lun0", "lun1", "lun2"}) {
    expected += reply("00000003", "00000002",
                      name_hex(lun) + text_hex(std::string("LUN ") + lun[3] + " of iqn.test:t"));
  }
  CHECK(converse(handshake, option("00000003", "")) ==
        expected + reply("00000003", "00000001", ""));
  CHECK_FALSE(handshake.finished());
}

TEST_CASE("NBD_OPT_INFO and NBD_OPT_GO give each export its own size, flags and blocks", "[nbd]") {
  auto handshake = started_with(three_exports());
  auto info_of = [&](const std::string& name) {
    const std::string out = converse(handshake, option(kInfo, go_data(name)));
    CHECK_FALSE(handshake.finished());
    return out;
  };
  const std::string lun0 = info_of("lun0");
  CHECK(lun0.starts_with(export_info(kInfo, 1 << 20, kFlags)));
  CHECK(lun0.find(hex("0003 00000200 00001000 00100000")) != std::string::npos);
  const std::string lun1 = info_of("lun1");
  CHECK(lun1.starts_with(export_info(kInfo, 2 << 20, kReadOnlyFlags)));
  const std::string lun2 = info_of("lun2");
  CHECK(lun2.starts_with(export_info(kInfo, 3 << 20, kFlags)));
  CHECK(lun2.find(hex("0003 00001000 00001000 00100000")) != std::string::npos);  // 4096 minimum

  CHECK(converse(handshake, option(kGo, go_data("lun1")))
            .starts_with(export_info(kGo, 2 << 20, kReadOnlyFlags)));
  REQUIRE(handshake.finished());
  const auto& outcome = handshake.outcome();
  CHECK(outcome.kind == HandshakeOutcome::Kind::transmission);
  CHECK(outcome.export_name == "lun1");
  CHECK(outcome.selected_export.name == "lun1");
  CHECK(outcome.selected_export.device.size_bytes == 2 << 20);
  CHECK(outcome.transmission_flags == 0x010f);
}

TEST_CASE("the empty name selects the default export, the first one added", "[nbd]") {
  SECTION("NBD_OPT_GO") {
    auto handshake = started_with(three_exports());
    CHECK(converse(handshake, option(kGo, go_data("")))
              .starts_with(export_info(kGo, 1 << 20, kFlags)));
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().export_name.empty());
    CHECK(handshake.outcome().selected_export.name == "lun0");
  }
  SECTION("NBD_OPT_EXPORT_NAME") {
    auto handshake = started_with(three_exports());
    CHECK(converse(handshake, option("00000001", "")) == "0000000000100000" + kFlags);
    CHECK(handshake.outcome().selected_export.name == "lun0");
  }
}

TEST_CASE("an unknown export name gets ERR_UNKNOWN naming it and the exports there are", "[nbd]") {
  auto handshake = started_with(three_exports());
  const std::string out = converse(handshake, option(kGo, go_data("lun7")));
  CHECK(out.substr(16, 16) == hex("00000007 80000006"));
  CHECK(reply_message(out) == "unknown export 'lun7'; exports: lun0, lun1, lun2");
  CHECK_FALSE(handshake.finished());

  SECTION("NBD_OPT_EXPORT_NAME, which has no error reply, ends the session with it") {
    CHECK(converse(handshake, option("00000001", text_hex("lun7"))).empty());
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().error == nbd::errc::unknown_export);
    CHECK(handshake.outcome().message ==
          "NBD_OPT_EXPORT_NAME: unknown export 'lun7'; exports: lun0, lun1, lun2");
  }
}

TEST_CASE("a removed export gets ERR_UNKNOWN with the removal reason, others still serve",
          "[nbd]") {
  auto exports = three_exports();
  auto handshake = started_with(exports);
  // The catalog changes while the client negotiates: the next option sees it.
  REQUIRE(exports->remove("lun1", "LUN 1 went away on the target"));
  const std::string out = converse(handshake, option(kInfo, go_data("lun1")));
  CHECK(out.substr(16, 16) == hex("00000006 80000006"));
  CHECK(reply_message(out) == "export lun1 was removed: LUN 1 went away on the target");
  CHECK(converse(handshake, option("00000003", "")) ==
        reply("00000003", "00000002", name_hex("lun0") + text_hex("LUN 0 of iqn.test:t")) +
            reply("00000003", "00000002", name_hex("lun2") + text_hex("LUN 2 of iqn.test:t")) +
            reply("00000003", "00000001", ""));

  SECTION("the default export's removal is not papered over by another export") {
    REQUIRE(exports->remove("lun0", "LUN 0 went away on the target"));
    CHECK(reply_message(converse(handshake, option(kGo, go_data("")))) ==
          "the default export lun0 was removed: LUN 0 went away on the target");
    CHECK_FALSE(handshake.finished());
  }
  SECTION("added again, it is served again") {
    REQUIRE(exports->add({"lun1", "LUN 1 is back", test_device()}));
    converse(handshake, option(kGo, go_data("lun1")));
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().selected_export.description == "LUN 1 is back");
  }
}

TEST_CASE("base:allocation set for one export is not active on GO to another", "[nbd]") {
  // proto.md NBD_OPT_SET_META_CONTEXT: block status needs the final SET_META_CONTEXT to have
  // "referred to the same export name that was ultimately selected for transmission".
  for (const char* go_to : {"lun2", "lun1"}) {
    CAPTURE(go_to);
    auto handshake = started_with(three_exports());
    converse(handshake, option("00000008", ""));
    CHECK(converse(handshake, option(kSet, meta_data(text_hex("lun1"), {kBaseAllocationHex}))) ==
          context_reply(kSet, "00000001") + reply(kSet, "00000001", ""));
    converse(handshake, option(kGo, go_data(go_to)));
    REQUIRE(handshake.finished());
    CHECK(handshake.outcome().base_allocation == (std::string_view(go_to) == "lun1"));
  }
  SECTION("a meta context for a removed export is refused like GO") {
    auto exports = three_exports();
    auto handshake = started_with(exports);
    converse(handshake, option("00000008", ""));
    exports->remove("lun2", "gone");
    const std::string out =
        converse(handshake, option(kSet, meta_data(text_hex("lun2"), {kBaseAllocationHex})));
    CHECK(out.substr(16, 16) == std::string(kSet) + "80000006");
    CHECK(reply_message(out) == "export lun2 was removed: gone");
  }
}

TEST_CASE("ExportList refuses duplicate names and keeps its messages short", "[nbd]") {
  nbd::ExportList list;
  CHECK(list.find("").reason == "no default export: this server serves no export yet");
  CHECK(list.find("x").reason == "unknown export 'x': this server serves no export");
  for (int i = 0; i < 10; ++i) REQUIRE(list.add({"lun" + std::to_string(i), "", test_device()}));
  CHECK_FALSE(list.add({"lun3", "again", test_device()}));
  CHECK(list.get("lun3")->description.empty());
  CHECK(list.exports().size() == 10);
  CHECK(list.find("x").reason ==
        "unknown export 'x'; exports: lun0, lun1, lun2, lun3, lun4, lun5, lun6, lun7 and 2 more");
  CHECK_FALSE(list.remove("x", "never there"));
  CHECK(list.remove("lun3", "r"));
  CHECK_FALSE(list.remove("lun3", "twice"));
  CHECK(list.find("lun3").reason == "export lun3 was removed: r");
}
