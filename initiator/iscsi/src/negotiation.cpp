#include "iscsi/negotiation.hpp"

#include <algorithm>
#include <iterator>
#include <optional>
#include <variant>

#include "iscsi/errors.hpp"

namespace iscsi {
namespace {

using ProposalField =
    std::variant<std::monostate, uint32_t OperationalProposal::*, bool OperationalProposal::*,
                 DigestChoice OperationalProposal::*>;
using ResultField =
    std::variant<std::monostate, uint32_t OperationalParams::*, bool OperationalParams::*>;

struct KeyDefinition {
  std::string_view name;
  KeyRule rule;
  uint64_t min = 0, max = 0;  // valid range of numerical keys
  std::string_view rfc_default;
  bool in_discovery = false;  // false: "Irrelevant when SessionType=Discovery" (§13)
  ProposalField offer{};  // what we offer; monostate: we never offer, `fixed_value` is our stance
  std::string_view fixed_value{};
  ResultField result{};              // the agreed value (our own statement for declaratives)
  ResultField declared_by_target{};  // declaratives: the target's statement about itself
  std::string_view list_true{};      // list keys kept in a bool: the value that means true
};

constexpr uint64_t max_24bit = (1u << 24) - 1;

using P = OperationalProposal;
using R = OperationalParams;

// RFC 7143 §13 (which also defines TaskReporting and iSCSIProtocolLevel, keys we only answer).
// IFMarker and OFMarker are RFC 3720 keys (its Appendix A) that RFC 7143 dropped; an old target may
// still offer them, and answering "No" (their only sane value) keeps such targets happy where
// NotUnderstood would fail the login. One key per entry reads better than one field per line.
// clang-format off
const KeyDefinition key_table[] = {
    {.name = "HeaderDigest", .rule = KeyRule::list, .rfc_default = "None", .in_discovery = true,
     .offer = &P::header_digest, .result = &R::header_digest_crc32c, .list_true = "CRC32C"},
    {.name = "DataDigest", .rule = KeyRule::list, .rfc_default = "None", .in_discovery = true,
     .offer = &P::data_digest, .result = &R::data_digest_crc32c, .list_true = "CRC32C"},
    {.name = "MaxRecvDataSegmentLength", .rule = KeyRule::declarative, .min = 512,
     .max = max_24bit, .rfc_default = "8192", .in_discovery = true,
     .offer = &P::max_recv_data_segment_length,
     .result = &R::initiator_max_recv_data_segment_length,
     .declared_by_target = &R::target_max_recv_data_segment_length},
    {.name = "MaxBurstLength", .rule = KeyRule::numerical_min, .min = 512, .max = max_24bit,
     .rfc_default = "262144", .offer = &P::max_burst_length, .result = &R::max_burst_length},
    {.name = "FirstBurstLength", .rule = KeyRule::numerical_min, .min = 512, .max = max_24bit,
     .rfc_default = "65536", .offer = &P::first_burst_length, .result = &R::first_burst_length},
    {.name = "InitialR2T", .rule = KeyRule::boolean_or, .rfc_default = "Yes",
     .offer = &P::initial_r2t, .result = &R::initial_r2t},
    {.name = "ImmediateData", .rule = KeyRule::boolean_and, .rfc_default = "Yes",
     .offer = &P::immediate_data, .result = &R::immediate_data},
    {.name = "MaxOutstandingR2T", .rule = KeyRule::numerical_min, .min = 1, .max = 65535,
     .rfc_default = "1", .offer = &P::max_outstanding_r2t, .result = &R::max_outstanding_r2t},
    {.name = "DataPDUInOrder", .rule = KeyRule::boolean_or, .rfc_default = "Yes",
     .offer = &P::data_pdu_in_order, .result = &R::data_pdu_in_order},
    {.name = "DataSequenceInOrder", .rule = KeyRule::boolean_or, .rfc_default = "Yes",
     .offer = &P::data_sequence_in_order, .result = &R::data_sequence_in_order},
    {.name = "DefaultTime2Wait", .rule = KeyRule::numerical_max, .min = 0, .max = 3600,
     .rfc_default = "2", .in_discovery = true, .offer = &P::default_time2wait,
     .result = &R::default_time2wait},
    {.name = "DefaultTime2Retain", .rule = KeyRule::numerical_min, .min = 0, .max = 3600,
     .rfc_default = "20", .in_discovery = true, .offer = &P::default_time2retain,
     .result = &R::default_time2retain},
    {.name = "ErrorRecoveryLevel", .rule = KeyRule::numerical_min, .min = 0, .max = 2,
     .rfc_default = "0", .in_discovery = true, .offer = &P::error_recovery_level,
     .result = &R::error_recovery_level},
    {.name = "MaxConnections", .rule = KeyRule::numerical_min, .min = 1, .max = 65535,
     .rfc_default = "1", .offer = &P::max_connections, .result = &R::max_connections},
    {.name = "TaskReporting", .rule = KeyRule::list, .rfc_default = "RFC3720",
     .in_discovery = true, .fixed_value = "RFC3720"},
    {.name = "iSCSIProtocolLevel", .rule = KeyRule::numerical_min, .min = 0, .max = 31,
     .rfc_default = "1", .in_discovery = true, .fixed_value = "1"},
    {.name = "IFMarker", .rule = KeyRule::boolean_and, .rfc_default = "No", .in_discovery = true,
     .fixed_value = "No"},
    {.name = "OFMarker", .rule = KeyRule::boolean_and, .rfc_default = "No", .in_discovery = true,
     .fixed_value = "No"},
};
// clang-format on
constexpr size_t table_size = std::size(key_table);

// Keys the login exchange owns (§6.3, §12, §13.3-13.12): never answered from here.
constexpr std::string_view non_operational_keys[] = {
    "AuthMethod",    "CHAP_A",      "CHAP_I",         "CHAP_C",
    "CHAP_N",        "CHAP_R",      "InitiatorName",  "TargetName",
    "SessionType",   "TargetAlias", "InitiatorAlias", "TargetPortalGroupTag",
    "TargetAddress", "SendTargets",
};

bool is_non_operational(std::string_view key) {
  return std::find(std::begin(non_operational_keys), std::end(non_operational_keys), key) !=
         std::end(non_operational_keys);
}

bool is_reserved_constant(std::string_view v) {
  return v == value_not_understood || v == value_irrelevant || v == value_reject;
}

std::optional<size_t> find_definition(std::string_view key) {
  for (size_t i = 0; i < table_size; ++i)
    if (key_table[i].name == key) return i;
  return std::nullopt;
}

std::string_view digest_list(DigestChoice c) {
  switch (c) {
    case DigestChoice::none:
      return "None";
    case DigestChoice::crc32c:
      return "CRC32C";
    case DigestChoice::prefer_crc32c:
      return "CRC32C,None";
    case DigestChoice::prefer_none:
      return "None,CRC32C";
  }
  return "None";
}

bool is_numerical(KeyRule r) {
  return r == KeyRule::numerical_min || r == KeyRule::numerical_max || r == KeyRule::declarative;
}

std::error_code fail(std::string& detail, const KeyDefinition& def, std::string_view value,
                     std::string_view why) {
  detail = std::string(def.name) + "=" + std::string(value) + ": " + std::string(why);
  return errc::negotiation_failed;
}

// A numerical value within the key's valid range.
std::optional<uint64_t> ranged_number(const KeyDefinition& def, std::string_view value) {
  const auto n = parse_numerical_value(value);
  if (!n || *n < def.min || *n > def.max) return std::nullopt;
  return n;
}

std::string range_text(const KeyDefinition& def) {
  return "not a number in " + std::to_string(def.min) + ".." + std::to_string(def.max);
}

}  // namespace

bool OperationalNegotiation::is_operational_key(std::string_view key) {
  return find_definition(key).has_value();
}

OperationalNegotiation::OperationalNegotiation(const OperationalProposal& proposal,
                                               SessionType type)
    : proposal_(proposal),
      type_(type),
      state_(table_size, KeyState::not_sent),
      agreed_(table_size),
      target_declared_(table_size) {
  proposal_.first_burst_length = std::min(proposal_.first_burst_length, proposal_.max_burst_length);
}

std::string OperationalNegotiation::our_value(size_t index) const {
  const auto& def = key_table[index];
  return std::visit(
      [&](auto field) -> std::string {
        using F = decltype(field);
        if constexpr (std::is_same_v<F, std::monostate>) {
          return std::string(def.fixed_value);
        } else if constexpr (std::is_same_v<F, uint32_t OperationalProposal::*>) {
          return std::to_string(proposal_.*field);
        } else if constexpr (std::is_same_v<F, bool OperationalProposal::*>) {
          return std::string(boolean_value(proposal_.*field));
        } else {
          return std::string(digest_list(proposal_.*field));
        }
      },
      def.offer);
}

// Whether `value`, as the outcome of the key, is compatible with what we offered (§6.2.2).
bool OperationalNegotiation::acceptable_to_us(size_t index, std::string_view value) const {
  const auto& def = key_table[index];
  const std::string ours = our_value(index);
  switch (def.rule) {
    case KeyRule::numerical_min:
    case KeyRule::numerical_max: {
      const auto n = ranged_number(def, value);
      const auto mine = parse_numerical_value(ours);
      if (!n || !mine) return false;
      return def.rule == KeyRule::numerical_min ? *n <= *mine : *n >= *mine;
    }
    case KeyRule::declarative:
      return ranged_number(def, value).has_value();
    case KeyRule::boolean_and:
    case KeyRule::boolean_or: {
      const auto b = parse_boolean_value(value);
      if (!b) return false;
      // AND with our "No" can only be No; OR with our "Yes" can only be Yes.
      const bool mine = ours == "Yes";
      return def.rule == KeyRule::boolean_and ? (mine || !*b) : (!mine || *b);
    }
    case KeyRule::list: {
      const auto options = split_list(ours);
      return std::find(options.begin(), options.end(), value) != options.end();
    }
  }
  return false;
}

void OperationalNegotiation::store(size_t index, std::string_view value) {
  const auto& def = key_table[index];
  agreed_[index] = std::string(value);
  std::visit(
      [&](auto field) {
        using F = decltype(field);
        if constexpr (std::is_same_v<F, uint32_t OperationalParams::*>) {
          params_.*field = static_cast<uint32_t>(parse_numerical_value(value).value_or(0));
        } else if constexpr (std::is_same_v<F, bool OperationalParams::*>) {
          params_.*field = def.rule == KeyRule::list ? value == def.list_true
                                                     : parse_boolean_value(value).value_or(false);
        }
      },
      def.result);
}

// The target's answer to our offer (§6.2).
std::error_code OperationalNegotiation::check_answer(size_t index, std::string_view value,
                                                     std::string& agreed,
                                                     std::string& detail) const {
  const auto& def = key_table[index];
  if (value == value_reject)
    return fail(detail, def, value, "target rejected our offer " + our_value(index));
  if (value == value_not_understood)
    return fail(detail, def, value, "a standard key must not be answered NotUnderstood");
  if (value == value_irrelevant) {
    agreed = std::string(def.rfc_default);
    return {};
  }
  if (is_numerical(def.rule) && !ranged_number(def, value))
    return fail(detail, def, value, range_text(def));
  if ((def.rule == KeyRule::boolean_and || def.rule == KeyRule::boolean_or) &&
      !parse_boolean_value(value))
    return fail(detail, def, value, "not Yes or No");
  if (!acceptable_to_us(index, value))
    return fail(detail, def, value, "answer outside our offer " + our_value(index));
  if (def.rule == KeyRule::boolean_and || def.rule == KeyRule::boolean_or) {
    const bool mine = our_value(index) == "Yes";
    const bool theirs = *parse_boolean_value(value);
    agreed = boolean_value(def.rule == KeyRule::boolean_and ? mine && theirs : mine || theirs);
  } else if (is_numerical(def.rule)) {
    agreed = std::to_string(*parse_numerical_value(value));
  } else {
    agreed = std::string(value);
  }
  return {};
}

// Our answer to a key the target offered (§6.2.1 lists, §6.2.2 simple values).
std::error_code OperationalNegotiation::answer_offer(size_t index, std::string_view value,
                                                     std::string& answer,
                                                     std::string& detail) const {
  const auto& def = key_table[index];
  if (is_reserved_constant(value))
    return fail(detail, def, value, "a reserved constant is not an offer");
  const std::string ours = our_value(index);
  switch (def.rule) {
    case KeyRule::numerical_min:
    case KeyRule::numerical_max: {
      const auto n = ranged_number(def, value);
      if (!n) return fail(detail, def, value, range_text(def));
      const uint64_t mine = parse_numerical_value(ours).value_or(0);
      answer = std::to_string(def.rule == KeyRule::numerical_min ? std::min(*n, mine)
                                                                 : std::max(*n, mine));
      return {};
    }
    case KeyRule::boolean_and:
    case KeyRule::boolean_or: {
      const auto b = parse_boolean_value(value);
      if (!b) return fail(detail, def, value, "not Yes or No");
      const bool mine = ours == "Yes";
      answer = boolean_value(def.rule == KeyRule::boolean_and ? mine && *b : mine || *b);
      return {};
    }
    case KeyRule::list: {
      // The responder picks the first of the originator's values it supports.
      for (auto option : split_list(value)) {
        if (acceptable_to_us(index, option)) {
          answer = std::string(option);
          return {};
        }
      }
      return fail(detail, def, value, "none of these is acceptable to us (" + ours + ")");
    }
    case KeyRule::declarative:
      break;  // handled by the caller
  }
  return fail(detail, def, value, "unexpected offer");
}

std::vector<TextPair> OperationalNegotiation::initial_offer() {
  std::vector<TextPair> offer;
  for (size_t i = 0; i < table_size; ++i) {
    const auto& def = key_table[i];
    if (std::holds_alternative<std::monostate>(def.offer)) continue;
    if (type_ == SessionType::discovery && !def.in_discovery) continue;
    if (state_[i] != KeyState::not_sent) continue;
    const std::string value = our_value(i);
    offer.push_back({std::string(def.name), value});
    state_[i] = KeyState::offered;
    // Our own declaration takes effect as stated; nobody answers it.
    if (def.rule == KeyRule::declarative) store(i, value);
  }
  return offer;
}

std::error_code OperationalNegotiation::on_target_keys(const std::vector<TextPair>& keys,
                                                       std::vector<TextPair>& replies,
                                                       std::string& detail) {
  for (const auto& [key, value] : keys) {
    if (is_non_operational(key)) continue;
    const auto index = find_definition(key);
    if (!index) {
      // §6.2: an unknown key is answered NotUnderstood, unless it is itself an answer (to a
      // key we never sent), which must not be answered again.
      if (!is_reserved_constant(value)) replies.push_back({key, std::string(value_not_understood)});
      continue;
    }
    const size_t i = *index;
    const auto& def = key_table[i];

    if (def.rule == KeyRule::declarative) {
      if (!ranged_number(def, value)) return fail(detail, def, value, range_text(def));
      const std::string canonical = std::to_string(*parse_numerical_value(value));
      if (!target_declared_[i].empty() && target_declared_[i] != canonical)
        return fail(detail, def, value, "declared twice with different values");
      target_declared_[i] = canonical;
      if (auto* field = std::get_if<uint32_t OperationalParams::*>(&def.declared_by_target))
        params_.** field = static_cast<uint32_t>(*parse_numerical_value(value));
      continue;
    }

    switch (state_[i]) {
      case KeyState::offered: {
        std::string agreed;
        if (auto ec = check_answer(i, value, agreed, detail)) return ec;
        store(i, agreed);
        state_[i] = KeyState::agreed;
        break;
      }
      case KeyState::not_sent: {
        if (type_ == SessionType::discovery && !def.in_discovery) {
          // §13: these keys are "Irrelevant when SessionType=Discovery".
          replies.push_back({key, std::string(value_irrelevant)});
          state_[i] = KeyState::agreed;
          agreed_[i] = std::string(value_irrelevant);
          break;
        }
        std::string answer;
        if (auto ec = answer_offer(i, value, answer, detail)) return ec;
        replies.push_back({key, answer});
        store(i, answer);
        state_[i] = KeyState::agreed;
        break;
      }
      case KeyState::agreed:
        // §6.2: a key is negotiated once. Tolerate an exact repeat of the outcome.
        if (value != agreed_[i]) return fail(detail, def, value, "negotiated twice");
        break;
    }
  }
  return {};
}

std::error_code OperationalNegotiation::finish(std::string& detail) {
  for (size_t i = 0; i < table_size; ++i) {
    const auto& def = key_table[i];
    if (def.rule == KeyRule::declarative) continue;  // ours stored at offer; theirs as stated
    const bool applies = type_ == SessionType::normal || def.in_discovery;
    switch (state_[i]) {
      case KeyState::agreed:
        break;
      case KeyState::offered: {
        const std::string ours = our_value(i);
        // §6.2.2: an answer is optional when our offer alone decides the outcome.
        if ((def.rule == KeyRule::boolean_and && ours == "No") ||
            (def.rule == KeyRule::boolean_or && ours == "Yes")) {
          store(i, ours);
        } else if (acceptable_to_us(i, def.rfc_default)) {
          store(i, def.rfc_default);
        } else {
          return fail(detail, def, ours,
                      "target never answered and the default " + std::string(def.rfc_default) +
                          " is outside our offer");
        }
        state_[i] = KeyState::agreed;
        break;
      }
      case KeyState::not_sent:
        // Never negotiated (e.g. the target went from security straight to full feature
        // phase): the RFC default applies. A digest we require is a policy, not a preference,
        // so a default outside our list fails.
        if (applies && def.rule == KeyRule::list &&
            !std::holds_alternative<std::monostate>(def.offer) &&
            !acceptable_to_us(i, def.rfc_default))
          return fail(detail, def, def.rfc_default,
                      "never negotiated and the default is not in our list " + our_value(i));
        break;
    }
  }
  // §13.14: FirstBurstLength MUST NOT exceed MaxBurstLength; it is irrelevant when no
  // unsolicited data is possible (InitialR2T=Yes and ImmediateData=No).
  const bool unsolicited = !params_.initial_r2t || params_.immediate_data;
  if (type_ == SessionType::normal && unsolicited &&
      params_.first_burst_length > params_.max_burst_length) {
    detail = "FirstBurstLength=" + std::to_string(params_.first_burst_length) +
             " exceeds MaxBurstLength=" + std::to_string(params_.max_burst_length);
    return errc::negotiation_failed;
  }
  return {};
}

}  // namespace iscsi
