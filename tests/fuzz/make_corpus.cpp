// Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/): real PDUs built
// with the encoders, real login conversations checked by running them through LoginExchange,
// real NBD client handshakes and requests, SCSI parameter data as tgtd sends it. Run through
// `tools/fuzz.sh --regen-corpus`; the output is committed, so this only runs when seeds change.
// Regression seeds (inputs that once crashed) are kept by hand beside these and not rewritten.
//
//   fuzz_make_corpus CORPUS_DIR [CONFIG_EXAMPLE_YAML]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>
#include "login_answers.hpp"

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <iscsi/login.hpp>
#include <iscsi/pdu.hpp>
#include <iscsi/text.hpp>
#include <nbd/request.hpp>
#include <nbd/wire.hpp>

namespace {

using Bytes = std::vector<std::byte>;
namespace fs = std::filesystem;

fs::path corpus_root;

void write_seed(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = corpus_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  std::cout << target << "/" << name << " (" << bytes.size() << " bytes)\n";
}

void append(Bytes& out, std::span<const std::byte> more) {
  out.insert(out.end(), more.begin(), more.end());
}

Bytes text_bytes(std::string_view s) {
  const auto b = common::as_bytes(s);
  return {b.begin(), b.end()};
}

// A PDU as it travels: BHS, AHS (zeros), header digest, data, padding, data digest (§11.1).
struct Framing {
  bool header_digest = false;
  bool data_digest = false;
};

template <class Pdu>
Bytes frame(Pdu pdu, const Bytes& data = {}, Framing f = {}, uint8_t ahs_words = 0) {
  pdu.total_ahs_length = ahs_words;
  pdu.data_segment_length = static_cast<uint32_t>(data.size());
  const iscsi::Bhs bhs = iscsi::encode_bhs(pdu);
  Bytes out(bhs.begin(), bhs.end());
  const Bytes ahs(size_t{ahs_words} * 4);
  append(out, ahs);
  if (f.header_digest) append(out, iscsi::digest_bytes(iscsi::crc32c(ahs, iscsi::crc32c(bhs))));
  if (data.empty()) return out;
  Bytes padded = data;
  padded.resize(iscsi::padded_length(static_cast<uint32_t>(data.size())));
  append(out, padded);
  if (f.data_digest) append(out, iscsi::digest_bytes(iscsi::crc32c(padded)));
  return out;
}

iscsi::TargetSequence seq(uint32_t stat_sn, uint32_t exp_cmd_sn, uint32_t max_cmd_sn) {
  return {iscsi::StatSN(stat_sn), iscsi::CmdSN(exp_cmd_sn), iscsi::CmdSN(max_cmd_sn)};
}

Bytes pattern(size_t n, uint8_t start) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = std::byte(static_cast<uint8_t>(start + i));
  return b;
}

// Fixed-format sense (SPC-4 §4.5.3): MEDIUM ERROR, unrecovered read error, INFORMATION = LBA.
Bytes fixed_sense() {
  return common::from_hex("f0 00 03 00 00 12 34 0a 00 00 00 00 11 00 00 00 00 00");
}

// ---------------------------------------------------------------- fuzz_pdu_reader

void pdu_reader_seeds() {
  auto stream = [](Framing f) {
    Bytes s;
    iscsi::NopIn nop;
    static_cast<iscsi::TargetSequence&>(nop) = seq(1, 2, 33);
    nop.ttt = iscsi::Ttt{0x77};
    append(s, frame(nop, pattern(8, 0x40), f));
    iscsi::DataIn din;
    static_cast<iscsi::TargetSequence&>(din) = seq(2, 2, 33);
    din.itt = iscsi::Itt{0x00010000};
    din.final = din.has_status = true;
    append(s, frame(din, pattern(102, 0), f));  // 2 bytes of padding
    iscsi::ScsiResponse rsp;
    static_cast<iscsi::TargetSequence&>(rsp) = seq(3, 3, 34);
    rsp.itt = iscsi::Itt{0x00010001};
    rsp.status = 0x02;
    Bytes sense(2);
    common::store_be16(sense, 0, 18);
    append(sense, fixed_sense());
    append(s, frame(rsp, sense, f));
    iscsi::ReadyToTransfer r2t;
    static_cast<iscsi::TargetSequence&>(r2t) = seq(4, 3, 34);
    r2t.itt = iscsi::Itt{0x00010002};
    r2t.ttt = iscsi::Ttt{0x1234};
    r2t.desired_data_transfer_length = 4096;
    append(s, frame(r2t, {}, f));
    return s;
  };
  auto with_prefix = [](uint8_t flags, uint8_t chunk_seed, const Bytes& s) {
    Bytes out{std::byte{flags}, std::byte{chunk_seed}};
    append(out, s);
    return out;
  };
  constexpr uint8_t mrdsl_8192 = 4 << 3;
  write_seed("fuzz_pdu_reader", "plain-48-byte-chunks", with_prefix(mrdsl_8192, 3, stream({})));
  write_seed("fuzz_pdu_reader", "digests-1-byte-chunks",
             with_prefix(mrdsl_8192 | 3, 0, stream({true, true})));
  write_seed("fuzz_pdu_reader", "header-digest-placed",
             with_prefix(mrdsl_8192 | 1 | 4, 7, stream({true, false})));

  Bytes misc;
  iscsi::AsyncMessage async;
  static_cast<iscsi::TargetSequence&>(async) = seq(5, 3, 34);
  async.event = static_cast<uint8_t>(iscsi::AsyncEvent::logout_requested);
  async.parameter3 = 5;
  append(misc, frame(async, {}, {}, 1));  // with one AHS word
  iscsi::Reject reject;
  static_cast<iscsi::TargetSequence&>(reject) = seq(6, 3, 34);
  reject.reason = static_cast<uint8_t>(iscsi::RejectReason::protocol_error);
  iscsi::ScsiCommand rejected;
  rejected.itt = iscsi::Itt{0x00010000};
  const iscsi::Bhs rejected_bhs = iscsi::encode_bhs(rejected);
  append(misc, frame(reject, Bytes(rejected_bhs.begin(), rejected_bhs.end())));
  iscsi::LoginResponse login;
  static_cast<iscsi::TargetSequence&>(login) = seq(7, 3, 34);
  login.itt = iscsi::Itt{0x10};
  append(misc, frame(login, iscsi::encode_text({{"AuthMethod", "None"}})));
  iscsi::TextResponse text;
  static_cast<iscsi::TargetSequence&>(text) = seq(8, 3, 34);
  text.final = true;
  append(misc, frame(text, iscsi::encode_text({{"TargetName", "iqn.2026-11.org.example:d1"},
                                               {"TargetAddress", "127.0.0.1:3260,1"}})));
  iscsi::LogoutResponse logout;
  static_cast<iscsi::TargetSequence&>(logout) = seq(9, 3, 34);
  logout.itt = iscsi::Itt{0x80000001};
  append(misc, frame(logout));
  write_seed("fuzz_pdu_reader", "async-reject-login-text-logout", with_prefix(mrdsl_8192, 4, misc));
}

// ---------------------------------------------------------------- fuzz_session

// The harness's ITTs: slot 0 (the read) and slot 1 (the write), generation 1.
constexpr uint32_t read_itt = 0x00010000;
constexpr uint32_t write_itt = 0x00010001;

Bytes session_prefix(uint8_t flags, uint16_t first_burst, uint16_t max_burst, uint16_t target_mrdsl,
                     uint16_t read_length, uint16_t write_length) {
  Bytes p(14);
  p[0] = std::byte{flags};
  p[1] = std::byte{3};  // chunks of up to 48 bytes
  common::store_be16(p, 2, first_burst);
  common::store_be16(p, 4, max_burst);
  common::store_be16(p, 6, target_mrdsl);
  common::store_be16(p, 8, read_length);
  common::store_be16(p, 10, write_length);
  p[12] = std::byte{0x81};  // two task slots, CmdSN window of 8
  p[13] = std::byte{4};     // our MaxRecvDataSegmentLength 8192
  return p;
}

void session_seeds() {
  {
    // ImmediateData=Yes, InitialR2T=No: the write sends 2048 immediate bytes plus a 2048-byte
    // unsolicited Data-Out, then the target asks for the last 2048 with an R2T.
    Bytes s = session_prefix(0x01 | 0x04, 4096, 8192, 2048, 4096, 6144);
    iscsi::DataIn d0;
    static_cast<iscsi::TargetSequence&>(d0) = seq(0, 3, 10);
    d0.itt = iscsi::Itt{read_itt};
    d0.data_sn = iscsi::DataSN(0);
    append(s, frame(d0, pattern(2048, 0)));
    iscsi::DataIn d1 = d0;
    d1.data_sn = iscsi::DataSN(1);
    d1.buffer_offset = 2048;
    d1.final = d1.has_status = true;
    d1.stat_sn = iscsi::StatSN(1);
    append(s, frame(d1, pattern(2048, 8)));
    iscsi::ReadyToTransfer r2t;
    static_cast<iscsi::TargetSequence&>(r2t) = seq(2, 3, 10);
    r2t.itt = iscsi::Itt{write_itt};
    r2t.ttt = iscsi::Ttt{0x1234};
    r2t.buffer_offset = 4096;
    r2t.desired_data_transfer_length = 2048;
    append(s, frame(r2t));
    iscsi::NopIn nop;  // the target pings; we echo its data
    static_cast<iscsi::TargetSequence&>(nop) = seq(2, 3, 10);
    nop.ttt = iscsi::Ttt{0x55};
    append(s, frame(nop, pattern(8, 0x30)));
    iscsi::ScsiResponse rsp;
    static_cast<iscsi::TargetSequence&>(rsp) = seq(2, 3, 10);
    rsp.itt = iscsi::Itt{write_itt};
    append(s, frame(rsp));
    write_seed("fuzz_session", "read-datain-write-r2t", s);
  }
  {
    // InitialR2T=Yes, no immediate data: CHECK CONDITION with sense for the read, the write
    // moved by two R2Ts, status with a residual underflow.
    Bytes s = session_prefix(0x02, 8192, 4096, 4096, 512, 8192);
    iscsi::ScsiResponse check;
    static_cast<iscsi::TargetSequence&>(check) = seq(1, 3, 10);
    check.itt = iscsi::Itt{read_itt};
    check.status = 0x02;
    Bytes sense(2);
    common::store_be16(sense, 0, 18);
    append(sense, fixed_sense());
    append(s, frame(check, sense));
    for (uint32_t i = 0; i < 2; ++i) {
      iscsi::ReadyToTransfer r2t;
      static_cast<iscsi::TargetSequence&>(r2t) = seq(2, 3, 10);
      r2t.itt = iscsi::Itt{write_itt};
      r2t.ttt = iscsi::Ttt{0x100 + i};
      r2t.r2t_sn = iscsi::R2TSN(i);
      r2t.buffer_offset = 4096 * i;
      r2t.desired_data_transfer_length = 4096;
      append(s, frame(r2t));
    }
    iscsi::ScsiResponse done;
    static_cast<iscsi::TargetSequence&>(done) = seq(2, 3, 10);
    done.itt = iscsi::Itt{write_itt};
    done.residual_underflow = true;
    done.residual_count = 0;
    append(s, frame(done));
    write_seed("fuzz_session", "check-condition-two-r2t", s);
  }
  {
    // A ping first (ITT 0x80000000) and a logout requested (ITT 0x80000001) once both tasks
    // end: the read by a Reject carrying its header, the write by a SCSI Response.
    Bytes s = session_prefix(0x10 | 0x20 | 0x04, 4096, 8192, 8192, 1024, 1024);
    iscsi::NopIn pong;
    static_cast<iscsi::TargetSequence&>(pong) = seq(1, 1, 10);
    pong.itt = iscsi::Itt{0x80000000};
    append(s, frame(pong));
    iscsi::Reject reject;
    static_cast<iscsi::TargetSequence&>(reject) = seq(2, 3, 10);
    reject.reason = static_cast<uint8_t>(iscsi::RejectReason::invalid_pdu_field);
    iscsi::ScsiCommand rejected;
    rejected.read = true;
    rejected.itt = iscsi::Itt{read_itt};
    const iscsi::Bhs rejected_bhs = iscsi::encode_bhs(rejected);
    append(s, frame(reject, Bytes(rejected_bhs.begin(), rejected_bhs.end())));
    iscsi::AsyncMessage async;
    static_cast<iscsi::TargetSequence&>(async) = seq(3, 3, 10);
    async.event = static_cast<uint8_t>(iscsi::AsyncEvent::scsi_async_event);
    append(s, frame(async, pattern(20, 0x70)));
    iscsi::ScsiResponse rsp;
    static_cast<iscsi::TargetSequence&>(rsp) = seq(4, 3, 10);
    rsp.itt = iscsi::Itt{write_itt};
    append(s, frame(rsp));
    iscsi::LogoutResponse logout;
    static_cast<iscsi::TargetSequence&>(logout) = seq(5, 4, 10);
    logout.itt = iscsi::Itt{0x80000001};
    append(s, frame(logout));
    write_seed("fuzz_session", "ping-reject-logout", s);
  }
  {
    // ABORT TASK for the read (ITT 0x80000000) and LOGICAL UNIT RESET (0x80000001) both answered
    // "function complete"; then the target asks for a logout (AsyncEvent 1) and answers the
    // Logout Request (0x80000002).
    Bytes s = session_prefix(0x80 | 0x04, 4096, 8192, 8192, 1024, 1024);
    s[12] = std::byte{0x85};  // two task slots, LOGICAL UNIT RESET, CmdSN window of 8
    iscsi::TaskManagementResponse aborted;
    static_cast<iscsi::TargetSequence&>(aborted) = seq(1, 3, 10);
    aborted.itt = iscsi::Itt{0x80000000};
    aborted.response = static_cast<uint8_t>(iscsi::TaskManagementResponseCode::function_complete);
    append(s, frame(aborted));
    iscsi::TaskManagementResponse reset = aborted;
    static_cast<iscsi::TargetSequence&>(reset) = seq(2, 3, 10);
    reset.itt = iscsi::Itt{0x80000001};
    append(s, frame(reset));
    iscsi::AsyncMessage async;
    static_cast<iscsi::TargetSequence&>(async) = seq(3, 3, 10);
    async.event = static_cast<uint8_t>(iscsi::AsyncEvent::logout_requested);
    async.parameter3 = 5;
    append(s, frame(async));
    iscsi::LogoutResponse logout;
    static_cast<iscsi::TargetSequence&>(logout) = seq(4, 3, 10);
    logout.itt = iscsi::Itt{0x80000002};
    append(s, frame(logout));
    write_seed("fuzz_session", "abort-reset-async-logout", s);
  }
  {
    // Command timeouts on the fake clock (one second per PDU): silent NOP-Ins let both tasks
    // time out (ABORT TASK each), the target refuses one abort ("task still allegiant"), which
    // escalates to LOGICAL UNIT RESET, and drops the connection (AsyncEvent 2) at the end.
    Bytes s = session_prefix(0x40 | 0x04, 4096, 8192, 8192, 1024, 1024);
    for (uint32_t i = 0; i < 3; ++i) {
      iscsi::NopIn nop;
      static_cast<iscsi::TargetSequence&>(nop) = seq(1, 3, 10);
      append(s, frame(nop));
    }
    iscsi::TaskManagementResponse refused;
    static_cast<iscsi::TargetSequence&>(refused) = seq(1, 3, 10);
    refused.itt = iscsi::Itt{0x80000000};
    refused.response =
        static_cast<uint8_t>(iscsi::TaskManagementResponseCode::task_still_allegiant);
    append(s, frame(refused));
    iscsi::TaskManagementResponse unknown = refused;
    static_cast<iscsi::TargetSequence&>(unknown) = seq(2, 3, 10);
    unknown.itt = iscsi::Itt{0x80000001};
    unknown.response = static_cast<uint8_t>(iscsi::TaskManagementResponseCode::task_does_not_exist);
    append(s, frame(unknown));
    iscsi::AsyncMessage dropped;
    static_cast<iscsi::TargetSequence&>(dropped) = seq(3, 3, 10);
    dropped.event = static_cast<uint8_t>(iscsi::AsyncEvent::connection_dropped);
    dropped.parameter2 = 2;
    dropped.parameter3 = 20;
    append(s, frame(dropped));
    write_seed("fuzz_session", "timeouts-tmf-refused-connection-dropped", s);
  }
}

// ---------------------------------------------------------------- fuzz_login

using Pairs = std::vector<iscsi::TextPair>;
constexpr iscsi::LoginStage sec = iscsi::LoginStage::security_negotiation;
constexpr iscsi::LoginStage op = iscsi::LoginStage::operational_negotiation;
constexpr iscsi::LoginStage ffp = iscsi::LoginStage::full_feature_phase;

// The same parameters fuzz_login.cpp derives from its flags byte.
iscsi::LoginParams login_params(uint8_t flags) {
  iscsi::LoginParams p;
  p.initiator_name = "iqn.2026-11.org.iscsi-mpio:fuzz";
  p.isid = iscsi::Isid{{0xc0, 0x01, 0x02, 0x03, 0x04, 0x05}};
  p.cmd_sn = iscsi::CmdSN(1);
  p.itt = iscsi::Itt{0x10};
  if ((flags & 3) != 0) p.chap = iscsi::ChapCredentials{"user", "initiator-secret", std::nullopt};
  if ((flags & 3) == 2)
    p.chap->mutual = std::pair{std::string("target"), std::string("target-secret")};
  if (flags & 4) {
    p.type = iscsi::SessionType::discovery;
  } else {
    p.target_name = "iqn.2026-11.org.example:disk1";
  }
  return p;
}

struct LoginReply {
  iscsi::LoginStage csg;
  bool transit;
  iscsi::LoginStage nsg;
  Bytes text;
  bool cont = false;
  uint8_t status_class = 0, status_detail = 0;
};

Bytes login_record(const LoginReply& r, uint32_t stat_sn, uint16_t tsih) {
  iscsi::LoginResponse pdu;
  static_cast<iscsi::TargetSequence&>(pdu) = seq(stat_sn, 1, 64);
  pdu.transit = r.transit;
  pdu.continue_ = r.cont;
  pdu.current_stage = r.csg;
  pdu.next_stage = r.transit ? r.nsg : sec;
  pdu.isid = iscsi::Isid{{0xc0, 0x01, 0x02, 0x03, 0x04, 0x05}};
  pdu.tsih = iscsi::Tsih{tsih};
  pdu.itt = iscsi::Itt{0x10};
  pdu.status_class = r.status_class;
  pdu.status_detail = r.status_detail;
  return frame(pdu, r.text);
}

// Runs the conversation through LoginExchange so a seed that no longer gets where it should
// is noticed here, then writes [flags][records...].
void login_seed(const std::string& name, uint8_t flags, const std::vector<LoginReply>& replies,
                const char* expected) {
  Bytes seed{std::byte{flags}};
  iscsi::LoginExchange exchange(login_params(flags));
  iscsi::LoginAction action = exchange.start();
  uint32_t stat_sn = 0x1000;
  for (const LoginReply& r : replies) {
    const bool last = &r == &replies.back();
    const Bytes record = login_record(r, stat_sn++, last ? 0x42 : 0);
    append(seed, record);
    iscsi::TargetPdu pdu;
    std::string detail;
    if (iscsi::decode_target_pdu(std::span<const std::byte, iscsi::bhs_size>(record.data(), 48),
                                 pdu, detail))
      throw std::runtime_error(name + ": " + detail);
    if (!std::holds_alternative<iscsi::LoginSend>(action))
      throw std::runtime_error(name + ": login ended early");
    action = exchange.on_response(std::get<iscsi::LoginResponse>(pdu),
                                  std::span(record).subspan(iscsi::bhs_size));
  }
  static constexpr const char* names[] = {"send", "done", "redirect", "failed"};
  if (std::string(names[action.index()]) != expected) {
    std::string why;
    if (auto* f = std::get_if<iscsi::LoginFailed>(&action)) why = ": " + f->detail;
    throw std::runtime_error(name + ": ended in " + names[action.index()] + why);
  }
  write_seed("fuzz_login", name, seed);
}

Pairs target_answers() {
  return test::tgtd_like_login_answers();
}

void login_seeds() {
  using iscsi::encode_text;
  login_seed(
      "none-sec-op-ffp", 0,
      {{sec, true, op,
        encode_text(
            {{"AuthMethod", "None"}, {"TargetPortalGroupTag", "1"}, {"TargetAlias", "disk-one"}})},
       {op, true, ffp, encode_text(target_answers())}},
      "done");
  // The operational text split over two C-bit responses (§6.1).
  const Bytes text = encode_text(target_answers());
  const size_t half = text.size() / 2;
  login_seed("none-continuation", 0,
             {{sec, true, op, encode_text({{"AuthMethod", "None"}})},
              {op, false, sec, Bytes(text.begin(), text.begin() + half), true},
              {op, true, ffp, Bytes(text.begin() + half, text.end())}},
             "done");
  // Security straight to full feature phase: every key keeps its RFC default.
  login_seed(
      "none-skip-operational", 0,
      {{sec, true, ffp, encode_text({{"AuthMethod", "None"}, {"TargetPortalGroupTag", "2"}})}},
      "done");
  login_seed("discovery", 4,
             {{sec, true, op, encode_text({{"AuthMethod", "None"}})},
              {op, true, ffp,
               encode_text({{"HeaderDigest", "None"},
                            {"DataDigest", "None"},
                            {"MaxRecvDataSegmentLength", "32768"},
                            {"DefaultTime2Wait", "2"},
                            {"DefaultTime2Retain", "20"},
                            {"ErrorRecoveryLevel", "0"}})}},
             "done");
  // One-way CHAP MD5 (RFC 1994): the target's challenge and, as its answer, no keys.
  login_seed(
      "chap-md5", 1,
      {{sec, false, sec, encode_text({{"AuthMethod", "CHAP"}, {"TargetPortalGroupTag", "1"}})},
       {sec, false, sec,
        encode_text(
            {{"CHAP_A", "5"}, {"CHAP_I", "1"}, {"CHAP_C", "0x000102030405060708090a0b0c0d0e0f"}})},
       {sec, true, op, {}},
       {op, true, ffp, encode_text(target_answers())}},
      "done");
  // Mutual CHAP: the target's CHAP_R cannot match our random challenge, so this one fails.
  login_seed(
      "chap-mutual-wrong-response", 2,
      {{sec, false, sec, encode_text({{"AuthMethod", "CHAP"}})},
       {sec, false, sec,
        encode_text({{"CHAP_A", "5"}, {"CHAP_I", "7"}, {"CHAP_C", "0bAAECAwQFBgcICQoLDA0ODw=="}})},
       {sec, true, op,
        encode_text({{"CHAP_N", "target"}, {"CHAP_R", "0x00112233445566778899aabbccddeeff"}})}},
      "failed");
  login_seed("redirect", 0,
             {{sec, false, sec, encode_text({{"TargetAddress", "127.0.0.2:3261,2"}}), false, 1, 2}},
             "redirect");
  login_seed("auth-failure", 1, {{sec, false, sec, {}, false, 2, 1}}, "failed");
}

// ---------------------------------------------------------------- fuzz_text_keys

void text_seeds() {
  auto seed = [](const std::string& name, uint8_t flags, const Bytes& text) {
    Bytes out{std::byte{flags}};
    append(out, text);
    write_seed("fuzz_text_keys", name, out);
  };
  seed("operational-answers", 0, iscsi::encode_text(target_answers()));
  seed("send-targets", 0,
       iscsi::encode_text({{"TargetName", "iqn.2026-11.org.example:disk1"},
                           {"TargetAddress", "127.0.0.1:3260,1"},
                           {"TargetAddress", "[fd00::1]:3261,2"},
                           {"TargetName", "iqn.2026-11.org.example:disk2"},
                           {"TargetAddress", "127.0.0.2"}}));
  seed("chap-values", 0,
       iscsi::encode_text({{"CHAP_A", "7,5"},
                           {"CHAP_I", "0x1f"},
                           {"CHAP_C", "0x123"},
                           {"CHAP_R", "0BAAECAwQFBgcICQoLDA0ODw=="},
                           {"X-com.example.Key", "NotUnderstood"}}));
  Bytes offers = iscsi::encode_text({{"HeaderDigest", "CRC32C,None"},
                                     {"MaxRecvDataSegmentLength", "0x2000"},
                                     {"DefaultTime2Retain", "0"},
                                     {"MaxConnections", "Reject"}});
  offers.resize(offers.size() + 3);  // trailing NUL padding
  seed("discovery-offers-padding", 1, offers);
}

// ---------------------------------------------------------------- fuzz_scsi_parsers

void scsi_seeds() {
  auto seed = [](const std::string& name, uint8_t status, std::string_view hex) {
    Bytes out{std::byte{status}};
    append(out, common::from_hex(hex));
    write_seed("fuzz_scsi_parsers", name, out);
  };
  seed("sense-fixed-medium-error", 2, "f0 00 03 00 00 12 34 0a 00 00 00 00 11 00 00 00 00 00");
  seed("sense-descriptor-alua-standby", 2,
       "72 02 04 0b 00 00 00 0c 00 0a 80 00 00 00 00 00 00 00 12 34");
  seed("inquiry-tgt", 0,
       "00 00 05 12 3b 00 10 02 49 45 54 20 20 20 20 20 56 49 52 54 55 41 4c 2d 44 49 53 4b 20 20"
       "20 20 30 30 30 31 00000000000000000000000000000000 0000 0000 0320 0960 0300 0000");
  seed("vpd-83", 0,
       "00 83 00 46 02 01 00 0e 49 45 54 20 20 20 20 20 62 65 61 66 31 31"
       "01 03 00 10 60 01 40 5a bc de f0 12 34 56 78 9a bc de f0 12 51 94 00 04 00 00 00 01"
       "51 95 00 04 00 00 00 01 53 a8 00 0c 69 71 6e 2e 32 30 32 34 2e 61 00 00");
  seed("vpd-b0-block-limits", 0,
       "00 b0 00 3c 01 00 00 00 00 00 40 00 00 00 08 00 00 00 40 00 00 00 00 01 00 00 00 08"
       "80 00 00 00 00 00 00 00 00 00 40 00 000000000000000000000000000000000000000000000000");
  seed("vpd-00-80-b2", 0, "00 00 00 05 00 80 83 b0 b2 00 80 00 08 62 65 61 66 31 31 20 20");
  seed("read-capacity16", 0,
       "00 00 00 00 00 1f ff ff 00 00 02 00 03 c0 00 00 0000000000000000 0000000000000000");
  seed("report-luns", 0,
       "00 00 00 18 00 00 00 00 0000000000000000 0001000000000000 4101000000000000");
  seed("rtpg-two-groups", 0,
       "00 00 00 18 80 8f 00 01 00 00 00 01 00 00 00 01 01 8f 00 02 00 00 00 01 00 00 00 02");
  seed("mode-sense10-wp", 0, "00 1a 00 90 00 00 00 08 00 00 00 00 00 00 02 00");
  // GET LBA STATUS from LBA 0x100: mapped, deallocated, anchored; then the same list cut by
  // an allocation length 4 bytes longer than the data (status byte 0x40).
  seed("get-lba-status", 0,
       "00 00 00 34 00 00 00 00 0000000000000100 00000010 00 000000"
       "0000000000000110 00000020 01 000000 0000000000000130 00000008 02 000000");
  seed("get-lba-status-cut", 0x40,
       "00 00 00 34 00 00 00 00 0000000000000100 00000010 00 000000 0000000000000110 0000");
}

// ---------------------------------------------------------------- NBD

Bytes nbd_option(uint32_t option, const Bytes& data) {
  Bytes out(16);
  common::store_be64(out, 0, nbd::kIHaveOptMagic);
  common::store_be32(out, 8, option);
  common::store_be32(out, 12, static_cast<uint32_t>(data.size()));
  append(out, data);
  return out;
}

Bytes info_request(std::string_view name, std::vector<uint16_t> infos) {
  Bytes out(4);
  common::store_be32(out, 0, static_cast<uint32_t>(name.size()));
  append(out, common::as_bytes(name));
  Bytes count(2);
  common::store_be16(count, 0, static_cast<uint16_t>(infos.size()));
  append(out, count);
  for (uint16_t i : infos) {
    Bytes b(2);
    common::store_be16(b, 0, i);
    append(out, b);
  }
  return out;
}

// LIST/SET_META_CONTEXT data: export name, query count, queries (proto.md).
Bytes meta_context_request(std::string_view name, std::vector<std::string_view> queries) {
  Bytes out(4);
  common::store_be32(out, 0, static_cast<uint32_t>(name.size()));
  append(out, common::as_bytes(name));
  Bytes count(4);
  common::store_be32(count, 0, static_cast<uint32_t>(queries.size()));
  append(out, count);
  for (std::string_view q : queries) {
    Bytes length(4);
    common::store_be32(length, 0, static_cast<uint32_t>(q.size()));
    append(out, length);
    append(out, common::as_bytes(q));
  }
  return out;
}

void nbd_seeds() {
  auto seed = [](const std::string& name, uint8_t flags, uint8_t chunk_seed,
                 std::initializer_list<Bytes> parts) {
    Bytes out{std::byte{flags}, std::byte{chunk_seed}};
    for (const Bytes& p : parts) append(out, p);
    write_seed("fuzz_nbd_handshake", name, out);
  };
  const Bytes flags_both = common::from_hex("00000003");
  const Bytes flags_fixed = common::from_hex("00000001");
  // What nbdinfo / qemu-nbd send: structured replies, then GO with name and block size infos.
  seed("structured-go", 0x01, 0,
       {flags_both, nbd_option(nbd::kOptStructuredReply, {}),
        nbd_option(nbd::kOptGo, info_request("lun1", {1, 2, 3}))});
  seed("list-info-export-name", 0x00, 2,
       {flags_fixed, nbd_option(nbd::kOptList, {}), nbd_option(nbd::kOptInfo, info_request("", {})),
        nbd_option(nbd::kOptExportName, text_bytes("lun1"))});
  seed("unsupported-starttls-abort", 0x11, 5,
       {flags_both, nbd_option(99, text_bytes("whatever")), nbd_option(nbd::kOptStartTls, {}),
        nbd_option(10, info_request("lun1", {})), nbd_option(nbd::kOptAbort, {})});
  // TLS required (flags bit 6): refused options, STARTTLS, then the same options inside TLS;
  // and TLS optional (bit 5) with a plaintext GO after a refused second STARTTLS.
  seed("starttls-required", 0x41, 0,
       {flags_both, nbd_option(nbd::kOptGo, info_request("lun1", {})),
        nbd_option(nbd::kOptStartTls, {}), nbd_option(nbd::kOptStructuredReply, {}),
        nbd_option(nbd::kOptStartTls, {}), nbd_option(nbd::kOptGo, info_request("lun1", {3}))});
  seed("starttls-optional", 0x21, 0,
       {flags_both, nbd_option(nbd::kOptStructuredReply, {}), nbd_option(nbd::kOptStartTls, {}),
        nbd_option(nbd::kOptExportName, text_bytes("lun1"))});
  seed("tls-required-export-name", 0x40, 3,
       {flags_fixed, nbd_option(nbd::kOptExportName, text_bytes("lun1"))});
  // An option longer than we buffer: its data is drained and answered NBD_REP_ERR_TOO_BIG.
  Bytes big = nbd_option(nbd::kOptInfo, {});
  common::store_be32(big, 12, 65537);
  big.resize(big.size() + 200);
  seed("oversized-option", 0x05, 6, {flags_both, big});
  seed("export-name-unknown", 0x09, 1,
       {flags_fixed, nbd_option(nbd::kOptExportName, text_bytes("no-such-export"))});
  // What nbdinfo --map sends: structured replies, SET_META_CONTEXT base:allocation, GO; and
  // the LIST forms (no query, the "base:" wildcard).
  seed("set-meta-context-go", 0x01, 0,
       {flags_both, nbd_option(nbd::kOptStructuredReply, {}),
        nbd_option(nbd::kOptSetMetaContext, meta_context_request("lun1", {"base:allocation"})),
        nbd_option(nbd::kOptGo, info_request("lun1", {3}))});
  seed("list-meta-context", 0x00, 3,
       {flags_fixed, nbd_option(nbd::kOptListMetaContext, meta_context_request("", {})),
        nbd_option(nbd::kOptListMetaContext, meta_context_request("lun1", {"base:", "x-a:b"})),
        nbd_option(nbd::kOptSetMetaContext, meta_context_request("lun1", {"base:allocation"})),
        nbd_option(nbd::kOptExportName, text_bytes("lun1"))});
  // Two exports: base:allocation set on one, INFO on the other, GO to the second; and the
  // same with the second export removed (flags bit 7).
  for (const uint8_t flags : {uint8_t{0x01}, uint8_t{0x81}}) {
    seed(flags == 0x01 ? "two-exports-meta-go" : "removed-export-go", flags, 0,
         {flags_both, nbd_option(nbd::kOptStructuredReply, {}), nbd_option(nbd::kOptList, {}),
          nbd_option(nbd::kOptSetMetaContext, meta_context_request("lun1", {"base:allocation"})),
          nbd_option(nbd::kOptInfo, info_request("lun2", {2, 3})),
          nbd_option(nbd::kOptGo, info_request("lun2", {3}))});
  }

  auto request = [](const std::string& name, uint8_t device, nbd::Request r) {
    Bytes out{std::byte{device}};
    std::array<std::byte, 28> header{};
    nbd::encode_request(r, header);
    append(out, header);
    write_seed("fuzz_nbd_request", name, out);
  };
  constexpr uint8_t fua_trim = 0x10 | 0x20;
  request("read-4k", fua_trim, {0, nbd::kCmdRead, 1, 0, 4096});
  request("read-df-structured", fua_trim | 0x40, {nbd::kCmdFlagDf, nbd::kCmdRead, 2, 8192, 512});
  request("write-fua", fua_trim, {nbd::kCmdFlagFua, nbd::kCmdWrite, 3, 1 << 20, 65536});
  request("trim", fua_trim, {0, nbd::kCmdTrim, 4, 0, 1 << 20});
  request("write-zeroes-no-hole", fua_trim,
          {nbd::kCmdFlagNoHole, nbd::kCmdWriteZeroes, 5, 4096, 4096});
  request("flush", 0, {0, nbd::kCmdFlush, 6, 0, 0});
  request("write-read-only-4k-blocks", 0x08 | 3, {0, nbd::kCmdWrite, 7, 4096, 4096});
  request("disc", 0, {0, nbd::kCmdDisc, 8, 0, 0});
}

// ---------------------------------------------------------------- fuzz_config

void config_seeds(const fs::path& example) {
  auto seed = [](const std::string& name, std::string_view yaml) {
    write_seed("fuzz_config", name, text_bytes(yaml));
  };
  if (!example.empty()) {
    // The example without its comments: the same keys, a fraction of the bytes.
    std::ifstream in(example);
    std::string line, yaml;
    while (std::getline(in, line)) {
      const auto first = line.find_first_not_of(' ');
      if (first == std::string::npos || line[first] == '#') continue;
      yaml += line + "\n";
    }
    seed("example", yaml);
  }
  seed("flow-style-chap-ipv6", R"(initiator: {name: "iqn.2026-11.org.example:h"}
target:
  iqn: iqn.2023-01.com.example:storage
  lun: 1
  auth: {method: chap, username: u, secret: s1, mutual: {username: t, secret: s2}}
paths:
  - {portal: "198.18.1.1:3260", source: 198.18.1.2}
  - portal: "[fd00::1]"
nbd: {listen: "tcp:127.0.0.1", export: e}
)");
  seed("minimal", "target: {iqn: iqn.2023-01.com.example:storage}\npaths: [{portal: 127.0.0.1}]\n");
  seed("errors",
       "target:\n  iqn: not-a-name\n  lun: 99999\n  bogus: 1\npaths: []\nmultipath: "
       "{noop_out_timeout: 0}\nnbd: {listen: \"tcp:[::1\"}\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " CORPUS_DIR [CONFIG_EXAMPLE_YAML]\n";
    return 2;
  }
  corpus_root = argv[1];
  try {
    pdu_reader_seeds();
    session_seeds();
    login_seeds();
    text_seeds();
    scsi_seeds();
    nbd_seeds();
    config_seeds(argc > 2 ? fs::path(argv[2]) : fs::path());
  } catch (const std::exception& e) {
    std::cerr << "make_corpus: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
