// The login phase of one connection (RFC 7143 §6.3), as a sans-IO state machine: start() and
// on_response() return the next action (send these bytes, done, redirected, failed); the
// owner does the I/O. One place holds the login's text keys: it routes the target's keys to
// the security exchange (AuthMethod, ChapInitiator), to OperationalNegotiation, or keeps the
// declaratives (TargetPortalGroupTag, TargetAlias) for the result.
//
// Stages: SecurityNegotiation (CSG=0) with AuthMethod exactly as configured ("None" or
// "CHAP"), then LoginOperationalNegotiation (CSG=1) with our offer and T=1/NSG=3, then full
// feature phase. A target may go from security straight to full feature phase (the keys then
// keep their RFC defaults), may split text over C-bit PDUs (we acknowledge each with an empty
// request, §6.1), and may hold back the T bit, which we tolerate for `max_exchanges` requests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "iscsi/chap.hpp"
#include "iscsi/discovery.hpp"
#include "iscsi/negotiation.hpp"
#include "iscsi/pdu.hpp"
#include "iscsi/text.hpp"
#include "iscsi/types.hpp"

namespace iscsi {

struct LoginParams {
  std::string initiator_name;
  std::string target_name;      // empty for a discovery session
  std::string initiator_alias;  // sent as InitiatorAlias when not empty
  SessionType type = SessionType::normal;
  Isid isid;
  Tsih tsih;  // 0 for a new session
  uint16_t cid = 0;
  CmdSN cmd_sn;        // the session's initial CmdSN; login requests do not advance it
  StatSN exp_stat_sn;  // for the first request; later ones acknowledge each response
  Itt itt;             // used by every request of this login
  std::optional<ChapCredentials> chap;  // nullopt: AuthMethod=None
  std::vector<ChapAlgorithm> chap_algorithms{ChapAlgorithm::md5};
  OperationalProposal proposal;
  // Requests sent (continuation acknowledgements included) before a target that never
  // completes the login is given up on.
  unsigned max_exchanges = 16;
};

// Send this Login Request: BHS + data segment + zero padding to 4 bytes (no digests during
// login, §13.1).
struct LoginSend {
  std::vector<std::byte> pdu;
};

// The target accepted the login; the connection is in full feature phase.
struct LoginDone {
  OperationalParams params;
  Tsih tsih;
  std::optional<uint16_t> target_portal_group_tag;
  std::string target_alias;
  CmdSN cmd_sn;        // the CmdSN of the first command
  StatSN stat_sn;      // of the final Login Response
  StatSN exp_stat_sn;  // stat_sn + 1
  CmdSN exp_cmd_sn, max_cmd_sn;
};

// Status class 1 (§11.13.5): log in at this address instead.
struct LoginRedirect {
  TargetPortal portal;         // portal_group_tag is 1 when the target did not give one
  std::string target_address;  // the TargetAddress value as sent
  bool permanent = false;      // 0102 "moved permanently"; 0101 (and others) temporary
  uint8_t status_detail = 0;
};

// The login failed: login_status_category() for status class 2/3 (the code's message is the
// RFC's status text, e.g. "authentication failure (0201)"), or iscsi::errc. The connection
// must be closed; nothing more is sent.
struct LoginFailed {
  std::error_code error;
  std::string detail;
};

using LoginAction = std::variant<LoginSend, LoginDone, LoginRedirect, LoginFailed>;

class LoginExchange {
 public:
  // Largest logical text segment accepted from the target across C-bit PDUs.
  static constexpr size_t max_text_length = 65536;

  explicit LoginExchange(LoginParams params);

  LoginAction start();
  // `data_segment` may include the padding; data_segment_length in `pdu` says what is text.
  LoginAction on_response(const LoginResponse& pdu, std::span<const std::byte> data_segment);

  bool finished() const { return finished_; }
  LoginStage current_stage() const { return stage_; }

 private:
  LoginAction send(std::vector<TextPair> keys, bool transit, LoginStage next_stage,
                   bool continuation_ack = false);
  LoginAction fail(std::error_code ec, std::string detail);
  LoginAction on_text(const LoginResponse& pdu, std::span<const std::byte> text);
  LoginAction enter_full_feature_phase(const LoginResponse& pdu,
                                       const std::vector<TextPair>& unsent_replies,
                                       const std::vector<TextPair>& target_keys);
  std::error_code on_security_keys(const std::vector<TextPair>& keys,
                                   std::vector<TextPair>& replies, std::string& detail);
  std::error_code on_declaratives(const std::vector<TextPair>& keys, std::string& detail);

  LoginParams params_;
  OperationalNegotiation negotiation_;
  std::optional<ChapInitiator> chap_;
  LoginStage stage_ = LoginStage::security_negotiation;
  bool requested_transit_ = false;
  LoginStage requested_next_ = LoginStage::security_negotiation;
  bool auth_agreed_ = false;
  bool finished_ = false;
  unsigned requests_sent_ = 0;
  std::vector<std::byte> pending_text_;  // C-bit accumulation
  StatSN exp_stat_sn_;
  std::optional<uint16_t> target_portal_group_tag_;
  std::string target_alias_;
};

}  // namespace iscsi
