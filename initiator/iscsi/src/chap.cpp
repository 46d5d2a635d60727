#include "iscsi/chap.hpp"

#include <nettle/md5.h>
#include <nettle/memops.h>
#include <nettle/nettle-meta.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/sha3.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <mutex>

#include "iscsi/errors.hpp"

namespace iscsi {
namespace {

// The CHAP_A digests (RFC 7143 §12.1.3 and the IANA registry) come from Nettle, the hash library
// under GnuTLS (which the NBD side loads anyway): one crypto library in the process.
const nettle_hash* chap_hash(ChapAlgorithm algorithm) {
  switch (algorithm) {
    case ChapAlgorithm::md5:
      return &nettle_md5;
    case ChapAlgorithm::sha1:
      return &nettle_sha1;
    case ChapAlgorithm::sha256:
      return &nettle_sha256;
    case ChapAlgorithm::sha3_256:
      return &nettle_sha3_256;
  }
  return nullptr;
}

// Challenges we issued recently, process-wide. §12.1.3 requires refusing a target that sends
// our own challenge back: with the same secret in both directions, a rogue target could
// otherwise get our answer to the challenge it must answer on another connection.
class IssuedChallenges {
 public:
  void add(const std::vector<std::byte>& challenge) {
    std::lock_guard lock(mutex_);
    recent_.push_back(challenge);
    if (recent_.size() > capacity) recent_.pop_front();
  }
  bool contains(std::span<const std::byte> challenge) const {
    std::lock_guard lock(mutex_);
    return std::any_of(recent_.begin(), recent_.end(), [&](const auto& c) {
      return std::equal(c.begin(), c.end(), challenge.begin(), challenge.end());
    });
  }

 private:
  static constexpr size_t capacity = 1024;
  mutable std::mutex mutex_;
  std::deque<std::vector<std::byte>> recent_;
};

IssuedChallenges& issued_challenges() {
  static IssuedChallenges instance;
  return instance;
}

// Challenges must be unpredictable (RFC 1994 §2.3): the kernel's CSPRNG. getrandom(2) without
// flags blocks only until the pool is first initialized, and returns short or EINTR only for
// requests above 256 bytes or on a signal, so a bounded retry covers it.
bool random_bytes(std::span<std::byte> out) {
  size_t filled = 0;
  for (int attempt = 0; attempt < 8 && filled < out.size(); ++attempt) {
    const ssize_t n = ::getrandom(out.data() + filled, out.size() - filled, 0);
    if (n > 0)
      filled += static_cast<size_t>(n);
    else if (n < 0 && errno != EINTR)
      return false;
  }
  return filled == out.size();
}

std::string algorithm_list(const std::vector<ChapAlgorithm>& algorithms) {
  std::string s;
  for (auto a : algorithms) {
    if (!s.empty()) s += ',';
    s += std::to_string(static_cast<unsigned>(a));
  }
  return s;
}

bool is_chap_key(std::string_view key) {
  return key.starts_with("CHAP_");
}

}  // namespace

size_t chap_digest_size(ChapAlgorithm algorithm) {
  switch (algorithm) {
    case ChapAlgorithm::md5:
      return 16;
    case ChapAlgorithm::sha1:
      return 20;
    case ChapAlgorithm::sha256:
    case ChapAlgorithm::sha3_256:
      return 32;
  }
  return 0;
}

std::optional<ChapAlgorithm> chap_algorithm_from_number(uint64_t n) {
  switch (n) {
    case 5:
      return ChapAlgorithm::md5;
    case 6:
      return ChapAlgorithm::sha1;
    case 7:
      return ChapAlgorithm::sha256;
    case 8:
      return ChapAlgorithm::sha3_256;
    default:
      return std::nullopt;
  }
}

std::vector<std::byte> chap_response(ChapAlgorithm algorithm, uint8_t identifier,
                                     std::string_view secret,
                                     std::span<const std::byte> challenge) {
  // RFC 1994 §4.1: the digest of the identifier, the secret and the challenge, in that order.
  const nettle_hash* hash = chap_hash(algorithm);
  if (hash == nullptr) return {};
  std::vector<uint8_t> context(hash->context_size);
  const uint8_t id = identifier;
  hash->init(context.data());
  hash->update(context.data(), 1, &id);
  hash->update(context.data(), secret.size(), reinterpret_cast<const uint8_t*>(secret.data()));
  hash->update(context.data(), challenge.size(),
               reinterpret_cast<const uint8_t*>(challenge.data()));
  std::vector<std::byte> digest(hash->digest_size);
  hash->digest(context.data(), digest.size(), reinterpret_cast<uint8_t*>(digest.data()));
  return digest;
}

ChapInitiator::ChapInitiator(ChapCredentials credentials, std::vector<ChapAlgorithm> algorithms)
    : credentials_(std::move(credentials)), algorithms_(std::move(algorithms)) {
  if (algorithms_.empty()) algorithms_ = {ChapAlgorithm::md5};
}

std::vector<TextPair> ChapInitiator::algorithm_offer() {
  state_ = State::awaiting_challenge;
  return {{"CHAP_A", algorithm_list(algorithms_)}};
}

std::error_code ChapInitiator::on_target_keys(const std::vector<TextPair>& keys,
                                              std::vector<TextPair>& reply, std::string& detail) {
  const bool any_chap =
      std::any_of(keys.begin(), keys.end(), [](const auto& p) { return is_chap_key(p.key); });
  std::error_code ec;
  switch (state_) {
    case State::awaiting_challenge:
      ec = on_challenge(keys, reply, detail);
      break;
    case State::awaiting_target_response:
      // The target may answer our challenge in a later response; nothing to do until it does.
      if (!any_chap) return {};
      ec = on_target_response(keys, detail);
      break;
    case State::initial:
    case State::done:
    case State::failed:
      if (!any_chap) return {};
      detail = "unexpected CHAP keys from the target at this point of the exchange";
      ec = errc::chap_malformed;
      break;
  }
  if (ec) state_ = State::failed;
  return ec;
}

std::error_code ChapInitiator::on_challenge(const std::vector<TextPair>& keys,
                                            std::vector<TextPair>& reply, std::string& detail) {
  const TextPair* a = find_key(keys, "CHAP_A");
  const TextPair* i = find_key(keys, "CHAP_I");
  const TextPair* c = find_key(keys, "CHAP_C");
  if (a == nullptr) {
    detail = "target sent no CHAP_A";
    return errc::chap_malformed;
  }
  // §6.2.1: the answer is one value from our list; anything else (Reject included) means no
  // common algorithm.
  const auto number = parse_numerical_value(a->value);
  const auto algorithm = number ? chap_algorithm_from_number(*number) : std::nullopt;
  if (!algorithm ||
      std::find(algorithms_.begin(), algorithms_.end(), *algorithm) == algorithms_.end()) {
    detail = "target chose CHAP_A=" + a->value + ", we offered " + algorithm_list(algorithms_);
    return errc::chap_unsupported_algorithm;
  }
  if (i == nullptr || c == nullptr) {
    detail = i == nullptr ? "target sent no CHAP_I" : "target sent no CHAP_C";
    return errc::chap_malformed;
  }
  const auto identifier = parse_numerical_value(i->value);
  if (!identifier || *identifier > 255) {
    detail = "CHAP_I=" + i->value + " is not a number in 0..255";
    return errc::chap_malformed;
  }
  const auto challenge = decode_binary_value(c->value);
  if (!challenge || challenge->empty() || challenge->size() > max_challenge_length) {
    detail =
        "CHAP_C is not a binary value of 1.." + std::to_string(max_challenge_length) + " bytes";
    return errc::chap_malformed;
  }
  if (issued_challenges().contains(*challenge)) {
    detail = "target's CHAP_C equals a challenge this initiator issued";
    return errc::chap_reflected_challenge;
  }
  const auto response =
      chap_response(*algorithm, static_cast<uint8_t>(*identifier), credentials_.secret, *challenge);
  if (response.empty()) {
    detail = "CHAP_A=" + a->value + " digest is unavailable";
    return errc::chap_unsupported_algorithm;
  }
  algorithm_ = *algorithm;
  reply.push_back({"CHAP_N", credentials_.username});
  reply.push_back({"CHAP_R", encode_binary_value(response)});

  if (!mutual()) {
    state_ = State::done;
    return {};
  }
  // §12.1.3: our challenge must never repeat the target's.
  std::byte id{};
  our_challenge_.assign(challenge_length, std::byte{});
  do {
    if (!random_bytes(std::span(&id, 1)) || !random_bytes(our_challenge_)) {
      detail = "no random bytes for our CHAP challenge";
      return errc::chap_malformed;
    }
  } while (our_challenge_ == *challenge);
  our_identifier_ = std::to_integer<uint8_t>(id);
  issued_challenges().add(our_challenge_);
  reply.push_back({"CHAP_I", std::to_string(our_identifier_)});
  reply.push_back({"CHAP_C", encode_binary_value(our_challenge_)});
  state_ = State::awaiting_target_response;
  return {};
}

std::error_code ChapInitiator::on_target_response(const std::vector<TextPair>& keys,
                                                  std::string& detail) {
  const TextPair* n = find_key(keys, "CHAP_N");
  const TextPair* r = find_key(keys, "CHAP_R");
  if (n == nullptr || r == nullptr) {
    detail =
        n == nullptr ? "target sent CHAP_R without CHAP_N" : "target sent CHAP_N without CHAP_R";
    return errc::chap_malformed;
  }
  const auto& [expected_name, secret] = *credentials_.mutual;
  if (n->value != expected_name) {
    detail = "target authenticated as CHAP_N=" + n->value + ", expected " + expected_name;
    return errc::chap_target_authentication_failed;
  }
  const auto received = decode_binary_value(r->value);
  if (!received) {
    detail = "target's CHAP_R is not a binary value";
    return errc::chap_malformed;
  }
  const auto expected = chap_response(*algorithm_, our_identifier_, secret, our_challenge_);
  if (expected.empty() || received->size() != expected.size() ||
      // Constant time: how much of a forged response matched must not show in the timing.
      !memeql_sec(received->data(), expected.data(), expected.size())) {
    detail = "target's CHAP_R does not match our challenge";
    return errc::chap_target_authentication_failed;
  }
  state_ = State::done;
  return {};
}

}  // namespace iscsi
