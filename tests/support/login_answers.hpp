// Text keys of scripted login exchanges (RFC 7143 §13), shared by the unit tests and the login
// fuzzer's seed corpus: our default operational offer, and what a tgtd-like target answers.
#pragma once

#include <vector>

#include <iscsi/text.hpp>

namespace test {

// What OperationalNegotiation offers for OperationalProposal{} in a normal session, in order.
inline std::vector<iscsi::TextPair> default_operational_offer() {
  return {{"HeaderDigest", "None"},
          {"DataDigest", "None"},
          {"MaxRecvDataSegmentLength", "262144"},
          {"MaxBurstLength", "16776192"},
          {"FirstBurstLength", "262144"},
          {"InitialR2T", "No"},
          {"ImmediateData", "Yes"},
          {"MaxOutstandingR2T", "4"},
          {"DataPDUInOrder", "Yes"},
          {"DataSequenceInOrder", "Yes"},
          {"DefaultTime2Wait", "2"},
          {"DefaultTime2Retain", "20"},
          {"ErrorRecoveryLevel", "0"},
          {"MaxConnections", "1"}};
}

inline std::vector<iscsi::TextPair> tgtd_like_login_answers() {
  return {{"HeaderDigest", "None"},
          {"DataDigest", "None"},
          {"MaxRecvDataSegmentLength", "65536"},
          {"MaxBurstLength", "262144"},
          {"FirstBurstLength", "65536"},
          {"InitialR2T", "Yes"},
          {"ImmediateData", "Yes"},
          {"MaxOutstandingR2T", "1"},
          {"DataPDUInOrder", "Yes"},
          {"DataSequenceInOrder", "Yes"},
          {"DefaultTime2Wait", "2"},
          {"DefaultTime2Retain", "20"},
          {"ErrorRecoveryLevel", "0"},
          {"MaxConnections", "1"}};
}

}  // namespace test
