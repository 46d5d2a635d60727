#include <catch2/catch.hpp>
#include "login_answers.hpp"

#include <iscsi/errors.hpp>
#include <iscsi/negotiation.hpp>

#include <string>

using namespace iscsi;

namespace {

using Pairs = std::vector<TextPair>;

// The answers a target that agrees with everything we offer by default would give.
Pairs agreeing_answers() {
  return {{"HeaderDigest", "None"},       {"DataDigest", "None"},
          {"MaxBurstLength", "16776192"}, {"FirstBurstLength", "262144"},
          {"InitialR2T", "No"},           {"ImmediateData", "Yes"},
          {"MaxOutstandingR2T", "4"},     {"DataPDUInOrder", "Yes"},
          {"DataSequenceInOrder", "Yes"}, {"DefaultTime2Wait", "2"},
          {"DefaultTime2Retain", "20"},   {"ErrorRecoveryLevel", "0"},
          {"MaxConnections", "1"},        {"MaxRecvDataSegmentLength", "65536"}};
}

Pairs replace(Pairs pairs, const std::string& key, const std::string& value) {
  for (auto& p : pairs)
    if (p.key == key) p.value = value;
  return pairs;
}

}  // namespace

TEST_CASE("negotiation: the normal-session offer lists every key once, in table order",
          "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  const Pairs expected = test::default_operational_offer();
  CHECK(n.initial_offer() == expected);
  CHECK(n.initial_offer().empty());  // offered once
}

TEST_CASE("negotiation: digests are offered as preference lists", "[iscsi][negotiation]") {
  OperationalProposal p;
  p.header_digest = DigestChoice::prefer_crc32c;
  p.data_digest = DigestChoice::prefer_none;
  OperationalNegotiation n(p, SessionType::normal);
  const auto offer = n.initial_offer();
  CHECK(offer[0] == TextPair{"HeaderDigest", "CRC32C,None"});
  CHECK(offer[1] == TextPair{"DataDigest", "None,CRC32C"});
  p.header_digest = DigestChoice::crc32c;
  CHECK(OperationalNegotiation(p, SessionType::normal).initial_offer()[0].value == "CRC32C");
}

TEST_CASE("negotiation: a discovery session offers only the keys valid there",
          "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::discovery);
  const Pairs expected{{"HeaderDigest", "None"},
                       {"DataDigest", "None"},
                       {"MaxRecvDataSegmentLength", "262144"},
                       {"DefaultTime2Wait", "2"},
                       {"DefaultTime2Retain", "20"},
                       {"ErrorRecoveryLevel", "0"}};
  CHECK(n.initial_offer() == expected);
}

TEST_CASE("negotiation: a target answering within the rules gives the combined result",
          "[iscsi][negotiation]") {
  OperationalProposal p;
  p.header_digest = DigestChoice::prefer_crc32c;
  OperationalNegotiation n(p, SessionType::normal);
  n.initial_offer();
  Pairs answers = agreeing_answers();
  answers = replace(answers, "HeaderDigest", "CRC32C");
  answers = replace(answers, "MaxBurstLength", "0x40000");  // hex is a numerical value too
  answers = replace(answers, "FirstBurstLength", "65536");
  answers = replace(answers, "InitialR2T", "Yes");      // OR: the target may insist
  answers = replace(answers, "ImmediateData", "No");    // AND: the target may refuse
  answers = replace(answers, "DefaultTime2Wait", "5");  // max: the target may raise it
  answers = replace(answers, "DefaultTime2Retain", "0");
  Pairs replies;
  std::string detail;
  REQUIRE_FALSE(n.on_target_keys(answers, replies, detail));
  CHECK(replies.empty());
  REQUIRE_FALSE(n.finish(detail));
  const auto& r = n.params();
  CHECK(r.header_digest_crc32c);
  CHECK_FALSE(r.data_digest_crc32c);
  CHECK(r.initiator_max_recv_data_segment_length == 262144);
  CHECK(r.target_max_recv_data_segment_length == 65536);
  CHECK(r.max_burst_length == 262144);
  CHECK(r.first_burst_length == 65536);
  CHECK(r.initial_r2t);
  CHECK_FALSE(r.immediate_data);
  CHECK(r.default_time2wait == 5);
  CHECK(r.default_time2retain == 0);
  CHECK(r.max_connections == 1);
}

TEST_CASE("negotiation: answers that break a key's rule fail naming the key",
          "[iscsi][negotiation]") {
  OperationalProposal p;
  p.immediate_data = false;
  p.initial_r2t = true;
  struct Case {
    const char* key;
    const char* value;
  };
  const Case cases[] = {
      {"MaxBurstLength", "16776193"},   // numerical-min: above our offer
      {"MaxBurstLength", "16777216"},   // out of range
      {"FirstBurstLength", "511"},      // below range
      {"MaxOutstandingR2T", "5"},       // above our 4
      {"ImmediateData", "Yes"},         // boolean-AND: we said No
      {"InitialR2T", "No"},             // boolean-OR: we said Yes
      {"DataPDUInOrder", "Maybe"},      // not a boolean
      {"HeaderDigest", "CRC32C"},       // not in our list (None)
      {"HeaderDigest", "None,CRC32C"},  // a list is not an answer
      {"DataDigest", "Reject"},
      {"MaxConnections", "NotUnderstood"},  // a standard key
      {"DefaultTime2Wait", "1"},            // numerical-max: below our 2
      {"DefaultTime2Retain", "3601"},
      {"ErrorRecoveryLevel", "3"},
      {"MaxRecvDataSegmentLength", "511"},  // declarative, out of range
      {"MaxRecvDataSegmentLength", "0x1000000"},
      {"MaxBurstLength", "-1"},
      {"MaxBurstLength", "99999999999999999999999"},
  };
  for (const auto& c : cases) {
    OperationalNegotiation n(p, SessionType::normal);
    n.initial_offer();
    Pairs replies;
    std::string detail;
    INFO(c.key << "=" << c.value);
    CHECK(n.on_target_keys({{c.key, c.value}}, replies, detail) ==
          make_error_code(errc::negotiation_failed));
    CHECK(detail.find(std::string(c.key) + "=" + c.value) != std::string::npos);
  }
}

TEST_CASE("negotiation: keys the target offers are answered by their rule",
          "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  n.initial_offer();
  Pairs replies;
  std::string detail;
  const Pairs offers{{"iSCSIProtocolLevel", "2"},                 // min with our 1
                     {"TaskReporting", "ResponseFence,RFC3720"},  // first value we support
                     {"IFMarker", "Yes"},                         // obsolete, AND with No
                     {"X-com.example.Feature", "1"},              // unknown
                     {"X-com.example.Answer", "NotUnderstood"},   // an answer: not answered
                     {"TargetPortalGroupTag", "1"},               // login's business
                     {"AuthMethod", "CHAP"},
                     {"TargetAlias", "disk"}};
  REQUIRE_FALSE(n.on_target_keys(offers, replies, detail));
  const Pairs expected{{"iSCSIProtocolLevel", "1"},
                       {"TaskReporting", "RFC3720"},
                       {"IFMarker", "No"},
                       {"X-com.example.Feature", "NotUnderstood"}};
  CHECK(replies == expected);
}

TEST_CASE("negotiation: an offer we cannot accept fails", "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  Pairs replies;
  std::string detail;
  CHECK(n.on_target_keys({{"TaskReporting", "FastAbort"}}, replies, detail) ==
        make_error_code(errc::negotiation_failed));
  CHECK(detail.find("TaskReporting=FastAbort") != std::string::npos);
  OperationalNegotiation m(OperationalProposal{}, SessionType::normal);
  CHECK(m.on_target_keys({{"MaxBurstLength", "100"}}, replies, detail) ==
        make_error_code(errc::negotiation_failed));
}

TEST_CASE("negotiation: target offers before ours are answered from our proposal",
          "[iscsi][negotiation]") {
  // e.g. keys a target states in the security stage, before we offered anything.
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  Pairs replies;
  std::string detail;
  REQUIRE_FALSE(n.on_target_keys({{"MaxBurstLength", "65536"},
                                  {"InitialR2T", "Yes"},
                                  {"HeaderDigest", "CRC32C,None"},
                                  {"MaxRecvDataSegmentLength", "32768"}},
                                 replies, detail));
  CHECK(replies ==
        Pairs{{"MaxBurstLength", "65536"}, {"InitialR2T", "Yes"}, {"HeaderDigest", "None"}});
  // Those keys are settled; the rest is still ours to offer.
  const auto offer = n.initial_offer();
  CHECK(offer.size() == 11);
  CHECK(OperationalNegotiation::is_operational_key("MaxBurstLength"));
  CHECK_FALSE(OperationalNegotiation::is_operational_key("AuthMethod"));
}

TEST_CASE("negotiation: discovery sessions answer session keys Irrelevant",
          "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::discovery);
  n.initial_offer();
  Pairs replies;
  std::string detail;
  REQUIRE_FALSE(n.on_target_keys({{"MaxBurstLength", "262144"},
                                  {"ImmediateData", "Yes"},
                                  {"HeaderDigest", "None"},
                                  {"MaxRecvDataSegmentLength", "8192"}},
                                 replies, detail));
  CHECK(replies == Pairs{{"MaxBurstLength", "Irrelevant"}, {"ImmediateData", "Irrelevant"}});
  REQUIRE_FALSE(n.finish(detail));
  CHECK(n.params().max_burst_length == 262144);  // the default, untouched
  CHECK(n.params().target_max_recv_data_segment_length == 8192);
}

TEST_CASE("negotiation: an Irrelevant answer leaves the RFC default", "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  n.initial_offer();
  Pairs replies;
  std::string detail;
  REQUIRE_FALSE(n.on_target_keys({{"FirstBurstLength", "Irrelevant"}}, replies, detail));
  REQUIRE_FALSE(n.finish(detail));
  CHECK(n.params().first_burst_length == 65536);
}

TEST_CASE("negotiation: a key negotiated twice must not change", "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  n.initial_offer();
  Pairs replies;
  std::string detail;
  REQUIRE_FALSE(n.on_target_keys({{"MaxBurstLength", "65536"}}, replies, detail));
  CHECK_FALSE(n.on_target_keys({{"MaxBurstLength", "65536"}}, replies, detail));
  CHECK(n.on_target_keys({{"MaxBurstLength", "32768"}}, replies, detail) ==
        make_error_code(errc::negotiation_failed));
  CHECK(n.on_target_keys(
            {{"MaxRecvDataSegmentLength", "8192"}, {"MaxRecvDataSegmentLength", "16384"}}, replies,
            detail) == make_error_code(errc::negotiation_failed));
}

TEST_CASE("negotiation: finish applies §6.2 to keys never answered", "[iscsi][negotiation]") {
  OperationalProposal p;
  p.immediate_data = false;  // AND with No: the outcome needs no answer
  p.initial_r2t = false;     // OR with No: unanswered, the default Yes applies
  OperationalNegotiation n(p, SessionType::normal);
  n.initial_offer();
  std::string detail;
  REQUIRE_FALSE(n.finish(detail));
  CHECK_FALSE(n.params().immediate_data);
  CHECK(n.params().initial_r2t);
  CHECK(n.params().max_burst_length == 262144);
  CHECK(n.params().initiator_max_recv_data_segment_length == 262144);
  CHECK(n.params().target_max_recv_data_segment_length == 8192);

  // A default outside our offer cannot stand in for an answer.
  OperationalProposal small;
  small.max_burst_length = 65536;
  small.first_burst_length = 65536;
  OperationalNegotiation m(small, SessionType::normal);
  m.initial_offer();
  CHECK(m.finish(detail) == make_error_code(errc::negotiation_failed));
  CHECK(detail.find("MaxBurstLength") != std::string::npos);
}

TEST_CASE("negotiation: a required digest fails when the target never agrees to it",
          "[iscsi][negotiation]") {
  OperationalProposal p;
  p.data_digest = DigestChoice::crc32c;
  std::string detail;
  {
    OperationalNegotiation n(p, SessionType::normal);
    n.initial_offer();  // offered, never answered
    CHECK(n.finish(detail) == make_error_code(errc::negotiation_failed));
  }
  {
    OperationalNegotiation n(p, SessionType::normal);  // never offered: login skipped op-neg
    CHECK(n.finish(detail) == make_error_code(errc::negotiation_failed));
    CHECK(detail.find("DataDigest") != std::string::npos);
  }
  {
    OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
    REQUIRE_FALSE(n.finish(detail));
    CHECK(n.params() == OperationalParams{});  // all RFC defaults
  }
}

TEST_CASE("negotiation: FirstBurstLength may not exceed MaxBurstLength", "[iscsi][negotiation]") {
  OperationalNegotiation n(OperationalProposal{}, SessionType::normal);
  n.initial_offer();
  Pairs replies;
  std::string detail;
  REQUIRE_FALSE(n.on_target_keys(
      replace(replace(agreeing_answers(), "MaxBurstLength", "8192"), "FirstBurstLength", "65536"),
      replies, detail));
  CHECK(n.finish(detail) == make_error_code(errc::negotiation_failed));
  CHECK(detail.find("FirstBurstLength=65536") != std::string::npos);

  // Our own proposal is clamped before it is offered.
  OperationalProposal p;
  p.max_burst_length = 65536;
  p.first_burst_length = 262144;
  OperationalNegotiation m(p, SessionType::normal);
  const auto offer = m.initial_offer();
  CHECK(offer[4] == TextPair{"FirstBurstLength", "65536"});
}
