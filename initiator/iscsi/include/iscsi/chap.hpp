// CHAP for iSCSI login (RFC 7143 §12.1.3, RFC 1994). Digests go through OpenSSL EVP; binary
// values use the §6.1 encodings (decode_binary_value / encode_binary_value in text.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "iscsi/text.hpp"

namespace iscsi {

// CHAP_A values (IANA "PPP Authentication Algorithms", as iSCSI uses them).
enum class ChapAlgorithm : uint8_t { md5 = 5, sha1 = 6, sha256 = 7, sha3_256 = 8 };

// Digest length in bytes (16, 20, 32, 32).
size_t chap_digest_size(ChapAlgorithm algorithm);
std::optional<ChapAlgorithm> chap_algorithm_from_number(uint64_t n);

// RFC 1994 §4.1: Response = H(Identifier || secret || Challenge). Empty only when the OpenSSL
// build lacks the digest (e.g. MD5 under a FIPS provider).
std::vector<std::byte> chap_response(ChapAlgorithm algorithm, uint8_t identifier,
                                     std::string_view secret, std::span<const std::byte> challenge);

struct ChapCredentials {
  std::string username, secret;
  // Mutual CHAP: the name and secret the target must prove it knows.
  std::optional<std::pair<std::string, std::string>> mutual;
};

// The initiator's side of a CHAP exchange inside the security stage, driven by the login
// exchange once AuthMethod=CHAP is agreed:
//   us: CHAP_A=<our list>          -> target: CHAP_A=<one>, CHAP_I, CHAP_C
//   us: CHAP_N, CHAP_R [, CHAP_I, CHAP_C when mutual]
//                                  -> target (mutual): CHAP_N, CHAP_R
// Errors are iscsi::errc::chap_*; details name keys and lengths, never secrets.
class ChapInitiator {
 public:
  // Length of the random challenge we send for mutual CHAP.
  static constexpr size_t challenge_length = 16;
  // §12.1.3: a CHAP_C longer than 1024 bytes is an error.
  static constexpr size_t max_challenge_length = 1024;

  explicit ChapInitiator(ChapCredentials credentials,
                         std::vector<ChapAlgorithm> algorithms = {ChapAlgorithm::md5});

  // CHAP_A with our preference list, e.g. "CHAP_A=7,5".
  std::vector<TextPair> algorithm_offer();

  // Feed the CHAP_* keys of one target response; other keys are ignored. Appends our keys to
  // `reply`. Depending on the state this answers the challenge or (mutual) verifies the
  // target's response.
  std::error_code on_target_keys(const std::vector<TextPair>& keys, std::vector<TextPair>& reply,
                                 std::string& detail);

  // The target's challenge answered and, in mutual mode, the target authenticated.
  bool complete() const { return state_ == State::done; }
  bool mutual() const { return credentials_.mutual.has_value(); }
  bool responded() const { return state_ == State::awaiting_target_response || complete(); }
  std::optional<ChapAlgorithm> algorithm() const { return algorithm_; }

 private:
  enum class State { initial, awaiting_challenge, awaiting_target_response, done, failed };

  std::error_code on_challenge(const std::vector<TextPair>& keys, std::vector<TextPair>& reply,
                               std::string& detail);
  std::error_code on_target_response(const std::vector<TextPair>& keys, std::string& detail);

  ChapCredentials credentials_;
  std::vector<ChapAlgorithm> algorithms_;
  State state_ = State::initial;
  std::optional<ChapAlgorithm> algorithm_;
  uint8_t our_identifier_ = 0;
  std::vector<std::byte> our_challenge_;
};

}  // namespace iscsi
