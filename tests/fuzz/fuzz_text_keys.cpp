// Text key=value segments (RFC 7143 §6.1) and the value encodings, plus the consumers of
// parsed pairs that need no login state: SendTargets grouping (§13.8, Appendix C) and the
// operational negotiation table (§6.2, §13) answering a target's keys.
//
// Input: [flags][text segment...]; flags bit 0: discovery session for the negotiation.
#include <string>
#include <vector>

#include <iscsi/discovery.hpp>
#include <iscsi/negotiation.hpp>
#include <iscsi/text.hpp>

#include "fuzz_support.hpp"

namespace {

void check_value(std::string_view value) {
  (void)iscsi::parse_numerical_value(value);
  if (const auto b = iscsi::parse_boolean_value(value))
    FUZZ_CHECK(iscsi::boolean_value(*b) == value);
  for (std::string_view element : iscsi::split_list(value)) {
    FUZZ_CHECK(element.data() >= value.data() &&
               element.data() + element.size() <= value.data() + value.size());
    (void)iscsi::parse_numerical_value(element);
  }
  if (const auto bytes = iscsi::decode_binary_value(value)) {
    FUZZ_CHECK(!bytes->empty());
    // Our encoding of what we decoded decodes to the same bytes.
    const auto again = iscsi::decode_binary_value(iscsi::encode_binary_value(*bytes));
    FUZZ_CHECK(again && *again == *bytes);
  }
  iscsi::TargetPortal portal;
  (void)iscsi::parse_target_address(value, portal);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  auto input = fuzz::as_bytes(raw, size);
  const fuzz::Prefix prefix(input, 1);

  // The value helpers on the raw input too, so they see bytes parse_text would refuse.
  check_value(std::string_view(reinterpret_cast<const char*>(input.data()), input.size()));

  std::vector<iscsi::TextPair> pairs;
  std::string detail;
  const std::error_code ec = iscsi::parse_text(input, pairs, detail);
  for (const auto& pair : pairs) {
    FUZZ_CHECK(!pair.key.empty());
    FUZZ_CHECK(pair.key.size() <= iscsi::max_key_length);
    FUZZ_CHECK(pair.value.size() <= iscsi::max_long_value_length);
    check_value(pair.value);
    FUZZ_CHECK(iscsi::find_key(pairs, pair.key) != nullptr);
  }
  if (!ec) {
    // What parse_text accepted, encode_text writes back in a form it parses to the same pairs.
    std::vector<iscsi::TextPair> again;
    FUZZ_CHECK(!iscsi::parse_text(iscsi::encode_text(pairs), again));
    FUZZ_CHECK(again == pairs);
  }

  (void)iscsi::parse_send_targets(pairs);

  const auto type = prefix.bit(0, 0) ? iscsi::SessionType::discovery : iscsi::SessionType::normal;
  iscsi::OperationalNegotiation negotiation(iscsi::OperationalProposal{}, type);
  (void)negotiation.initial_offer();
  std::vector<iscsi::TextPair> replies;
  if (!negotiation.on_target_keys(pairs, replies, detail) && !negotiation.finish(detail)) {
    const auto& p = negotiation.params();
    FUZZ_CHECK(p.error_recovery_level == 0);
    if (type == iscsi::SessionType::normal) FUZZ_CHECK(p.first_burst_length <= p.max_burst_length);
  }
  return 0;
}
