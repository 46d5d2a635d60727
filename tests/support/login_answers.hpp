// What a tgtd-like target answers to our default operational offer (RFC 7143 §13 keys), for
// scripted login exchanges in unit tests and for the login fuzzer's seed corpus.
#pragma once

#include <vector>

#include <iscsi/text.hpp>

namespace test {

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
