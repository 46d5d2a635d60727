// Operational parameter negotiation (RFC 7143 §6.2, keys in §13). Table-driven
// (docs/architecture.md, "Negotiation"): every key is declared once in negotiation.cpp with its
// type, result function, RFC default, validity in discovery sessions and result field; the same
// entry builds our offer, checks the target's answer and answers the target's offers.
//
// Security keys (AuthMethod, CHAP_*) and the login declaratives (InitiatorName, TargetName,
// SessionType, TargetAlias, InitiatorAlias, TargetPortalGroupTag, TargetAddress) are not
// operational: on_target_keys skips them and the login exchange handles them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "iscsi/text.hpp"

namespace iscsi {

struct OperationalParams {  // negotiated result; RFC 7143 §13 defaults
  bool header_digest_crc32c = false, data_digest_crc32c = false;
  // We declared: the largest data segment the target may send us.
  uint32_t initiator_max_recv_data_segment_length = 8192;
  // The target declared: the largest data segment we may send.
  uint32_t target_max_recv_data_segment_length = 8192;
  uint32_t max_burst_length = 262144, first_burst_length = 65536;
  bool initial_r2t = true, immediate_data = true;
  uint32_t max_outstanding_r2t = 1;
  bool data_pdu_in_order = true, data_sequence_in_order = true;
  uint32_t default_time2wait = 2, default_time2retain = 20, error_recovery_level = 0,
           max_connections = 1;
  bool operator==(const OperationalParams&) const = default;
};

// Offered as "None", "CRC32C", "CRC32C,None", "None,CRC32C".
enum class DigestChoice { none, crc32c, prefer_crc32c, prefer_none };

// What we offer; the defaults are what a fast, ERL-0, single-connection initiator wants.
struct OperationalProposal {
  DigestChoice header_digest = DigestChoice::none, data_digest = DigestChoice::none;
  uint32_t max_recv_data_segment_length = 262144, max_burst_length = 16776192,
           first_burst_length = 262144;
  bool initial_r2t = false, immediate_data = true;
  // Several R2Ts at once let a target that wants R2Ts for a large write ask for its bursts in
  // parallel (§13.17); each R2T's Data-Out sequence is independent (its own DataSN from 0).
  uint32_t max_outstanding_r2t = 4;
  bool data_pdu_in_order = true, data_sequence_in_order = true;
  uint32_t default_time2wait = 2, default_time2retain = 20, error_recovery_level = 0,
           max_connections = 1;
};

enum class SessionType { normal, discovery };

// Result functions of §6.2: numerical keys take the minimum or maximum of offer and answer,
// booleans AND or OR, lists the first value of the offer the responder supports; declaratives
// are stated by each side for itself and never answered.
enum class KeyRule { numerical_min, numerical_max, boolean_and, boolean_or, list, declarative };

class OperationalNegotiation {
 public:
  // FirstBurstLength above MaxBurstLength in the proposal is offered as MaxBurstLength (§13.14:
  // FirstBurstLength MUST NOT exceed MaxBurstLength).
  OperationalNegotiation(const OperationalProposal& proposal, SessionType type);

  // Keys for our first LoginOperationalNegotiation request (discovery: only the keys valid
  // there). Marks them as offered: a key offered and never answered is judged in finish().
  std::vector<TextPair> initial_offer();

  // Process the target's keys from one Login (or Text) Response. Appends to `replies` what we
  // must send back: answers to keys the target offered, NotUnderstood for unknown keys,
  // Irrelevant for keys that do not apply to a discovery session. Returns
  // errc::negotiation_failed, `detail` naming the key and value, when the target's answer
  // breaks the key's rule (a numerical-min answer above our offer, "Yes" to our boolean-AND
  // "No", a list answer not in our list, an out-of-range value, Reject, NotUnderstood to a
  // standard key, a key negotiated twice with different values) or when we cannot accept a
  // value the target offers.
  std::error_code on_target_keys(const std::vector<TextPair>& keys, std::vector<TextPair>& replies,
                                 std::string& detail);

  // At the transition to full feature phase: keys never answered take the §6.2 result (our
  // offer where it alone decides a boolean, else the RFC default, which must then satisfy our
  // offer), keys never offered take the RFC default, and FirstBurstLength <= MaxBurstLength
  // is checked.
  std::error_code finish(std::string& detail);

  const OperationalParams& params() const { return params_; }
  SessionType session_type() const { return type_; }

  // True when `key` belongs to the operational table (tests, and the login exchange's routing).
  static bool is_operational_key(std::string_view key);

  enum class KeyState : uint8_t { not_sent, offered, agreed };

 private:
  std::string our_value(size_t index) const;
  bool acceptable_to_us(size_t index, std::string_view value) const;
  void store(size_t index, std::string_view value);
  std::error_code answer_offer(size_t index, std::string_view value, std::string& answer,
                               std::string& detail) const;
  std::error_code check_answer(size_t index, std::string_view value, std::string& agreed,
                               std::string& detail) const;

  OperationalProposal proposal_;
  SessionType type_;
  OperationalParams params_;
  // Per table entry: our side of the key, the value agreed (for repeat checks), and for
  // declaratives what the target stated about itself.
  std::vector<KeyState> state_;
  std::vector<std::string> agreed_;
  std::vector<std::string> target_declared_;
};

}  // namespace iscsi
