#include <catch2/catch.hpp>

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <iscsi/chap.hpp>
#include <iscsi/errors.hpp>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace iscsi;
using common::from_hex;
using common::to_hex;

namespace {

using Pairs = std::vector<TextPair>;

// 00 01 .. 0f
const std::vector<std::byte> challenge16 = from_hex("000102030405060708090a0b0c0d0e0f");

// MD5 computed outside OpenSSL's C API: the openssl command-line tool over a temporary file.
// Empty if the tool is unavailable.
std::string md5_via_openssl_cli(std::span<const std::byte> input) {
  char path[] = "/tmp/chap-test-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return {};
  const bool written = write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size());
  close(fd);
  std::string out;
  if (written) {
    const std::string cmd = std::string("openssl dgst -md5 -r ") + path + " 2>/dev/null";
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[128] = {};
      if (fgets(buf, sizeof buf, p) != nullptr) out.assign(buf, 32);
      pclose(p);
    }
  }
  unlink(path);
  return out;
}

std::vector<std::byte> concat(uint8_t id, std::string_view secret, std::span<const std::byte> c) {
  std::vector<std::byte> v{static_cast<std::byte>(id)};
  for (char ch : secret) v.push_back(static_cast<std::byte>(ch));
  v.insert(v.end(), c.begin(), c.end());
  return v;
}

Pairs challenge_keys(std::string a, std::string i, std::string c) {
  return {{"CHAP_A", std::move(a)}, {"CHAP_I", std::move(i)}, {"CHAP_C", std::move(c)}};
}

}  // namespace

TEST_CASE("chap: responses match digests computed with the openssl tool", "[iscsi][chap]") {
  // Vectors from: printf '\x01secretsecret\x00\x01...\x0f' | openssl dgst -<alg>
  CHECK(to_hex(chap_response(ChapAlgorithm::md5, 1, "secretsecret", challenge16)) ==
        "226dc576c33f04ff9c3a200ffe35f442");
  CHECK(to_hex(chap_response(ChapAlgorithm::sha1, 1, "secretsecret", challenge16)) ==
        "ae35ac1694de2cf7e68e790fbface9a28501fed7");
  CHECK(to_hex(chap_response(ChapAlgorithm::sha256, 1, "secretsecret", challenge16)) ==
        "024aef34e176668b34ec2bf7f5525e3bf7f0e94d7cec77cb07d08c3d5a8e23ca");
  CHECK(to_hex(chap_response(ChapAlgorithm::sha3_256, 1, "secretsecret", challenge16)) ==
        "e2bd0aba5f885a39aa4fbebccc63203c2f728f034cbaf009b44c2f0c5544f172");
  // printf '\xa7target-secret\xde\xad\xbe\xef' | openssl dgst -md5
  CHECK(to_hex(chap_response(ChapAlgorithm::md5, 0xa7, "target-secret", from_hex("deadbeef"))) ==
        "c07b5ca17760233f0f103d1576b33ecd");
  CHECK(chap_digest_size(ChapAlgorithm::sha1) == 20);
  CHECK(chap_algorithm_from_number(8) == ChapAlgorithm::sha3_256);
  CHECK_FALSE(chap_algorithm_from_number(4));
}

TEST_CASE("chap: MD5 responses agree with the openssl tool on varied inputs", "[iscsi][chap]") {
  const std::vector<std::byte> challenge = from_hex("ff00ee11dd22cc33bb44aa5599668877");
  for (uint8_t id : {0, 1, 127, 255}) {
    for (std::string secret : {"", "a", "a-much-longer-secret-of-40-characters!!"}) {
      const auto expected = md5_via_openssl_cli(concat(id, secret, challenge));
      if (expected.empty()) {
        WARN("openssl command-line tool unavailable");
        return;
      }
      CHECK(to_hex(chap_response(ChapAlgorithm::md5, id, secret, challenge)) == expected);
    }
  }
}

TEST_CASE("chap: one-way exchange answers the target's challenge", "[iscsi][chap]") {
  ChapInitiator chap({"user", "secretsecret", std::nullopt});
  CHECK(chap.algorithm_offer() == Pairs{{"CHAP_A", "5"}});
  Pairs reply;
  std::string detail;
  REQUIRE_FALSE(chap.on_target_keys(challenge_keys("5", "1", "0x000102030405060708090a0b0c0d0e0f"),
                                    reply, detail));
  CHECK(reply == Pairs{{"CHAP_N", "user"}, {"CHAP_R", "0x226dc576c33f04ff9c3a200ffe35f442"}});
  CHECK(chap.complete());
  CHECK(chap.algorithm() == ChapAlgorithm::md5);
}

TEST_CASE("chap: challenge and identifier in base64 and hex decode alike", "[iscsi][chap]") {
  ChapInitiator chap({"user", "secretsecret", std::nullopt});
  chap.algorithm_offer();
  Pairs reply;
  std::string detail;
  REQUIRE_FALSE(chap.on_target_keys(challenge_keys("5", "0x01", "0bAAECAwQFBgcICQoLDA0ODw=="),
                                    reply, detail));
  REQUIRE(reply.size() == 2);
  CHECK(reply[1].value == "0x226dc576c33f04ff9c3a200ffe35f442");
}

TEST_CASE("chap: each algorithm is offered in our order and used when chosen", "[iscsi][chap]") {
  struct Case {
    ChapAlgorithm algorithm;
    const char* number;
    const char* response;
  };
  const Case cases[] = {
      {ChapAlgorithm::md5, "5", "226dc576c33f04ff9c3a200ffe35f442"},
      {ChapAlgorithm::sha1, "6", "ae35ac1694de2cf7e68e790fbface9a28501fed7"},
      {ChapAlgorithm::sha256, "7",
       "024aef34e176668b34ec2bf7f5525e3bf7f0e94d7cec77cb07d08c3d5a8e23ca"},
      {ChapAlgorithm::sha3_256, "8",
       "e2bd0aba5f885a39aa4fbebccc63203c2f728f034cbaf009b44c2f0c5544f172"},
  };
  for (const auto& c : cases) {
    ChapInitiator chap(
        {"user", "secretsecret", std::nullopt},
        {ChapAlgorithm::sha3_256, ChapAlgorithm::sha256, ChapAlgorithm::sha1, ChapAlgorithm::md5});
    CHECK(chap.algorithm_offer() == Pairs{{"CHAP_A", "8,7,6,5"}});
    Pairs reply;
    std::string detail;
    INFO("CHAP_A=" << c.number);
    REQUIRE_FALSE(chap.on_target_keys(
        challenge_keys(c.number, "1", common::to_hex(challenge16).insert(0, "0x")), reply, detail));
    CHECK(reply.at(1).value == std::string("0x") + c.response);
    CHECK(chap.algorithm() == c.algorithm);
  }
}

TEST_CASE("chap: an algorithm we did not offer is refused", "[iscsi][chap]") {
  for (const char* a : {"6", "7,5", "Reject", "99", "md5"}) {
    ChapInitiator chap({"user", "secretsecret", std::nullopt});  // offers only MD5
    chap.algorithm_offer();
    Pairs reply;
    std::string detail;
    INFO(a);
    CHECK(chap.on_target_keys(challenge_keys(a, "1", "0x00112233"), reply, detail) ==
          make_error_code(errc::chap_unsupported_algorithm));
    CHECK(reply.empty());
    CHECK_FALSE(chap.complete());
  }
}

TEST_CASE("chap: malformed challenges are refused without leaking the secret", "[iscsi][chap]") {
  const std::string secret = "s3cr3t-value-xyz";
  const Pairs cases[] = {
      {{"CHAP_A", "5"}, {"CHAP_C", "0x00112233"}},  // no CHAP_I
      {{"CHAP_A", "5"}, {"CHAP_I", "1"}},           // no CHAP_C
      {{"CHAP_I", "1"}, {"CHAP_C", "0x00112233"}},  // no CHAP_A
      challenge_keys("5", "256", "0x00112233"),
      challenge_keys("5", "x", "0x00112233"),
      challenge_keys("5", "1", "0xzz"),
      challenge_keys("5", "1", "0x"),
      challenge_keys("5", "1", "00112233"),
      challenge_keys("5", "1", "0x" + std::string(2 * 1025, 'a')),  // over 1024 bytes
  };
  for (const auto& keys : cases) {
    ChapInitiator chap({"user", secret, std::nullopt});
    chap.algorithm_offer();
    Pairs reply;
    std::string detail;
    CHECK(chap.on_target_keys(keys, reply, detail) == make_error_code(errc::chap_malformed));
    CHECK_FALSE(detail.empty());
    CHECK(detail.find(secret) == std::string::npos);
  }
  ChapInitiator early({"user", secret, std::nullopt});  // CHAP keys before we offered CHAP_A
  Pairs reply;
  std::string detail;
  CHECK(early.on_target_keys(challenge_keys("5", "1", "0x00"), reply, detail) ==
        make_error_code(errc::chap_malformed));
}

TEST_CASE("chap: mutual authentication verifies the target's answer", "[iscsi][chap]") {
  const std::string target_secret = "target-secret-123";
  ChapCredentials creds{"user", "secretsecret", std::pair{std::string("iqn.t"), target_secret}};

  ChapInitiator chap(creds);
  chap.algorithm_offer();
  Pairs reply;
  std::string detail;
  REQUIRE_FALSE(chap.on_target_keys(challenge_keys("5", "1", "0x000102030405060708090a0b0c0d0e0f"),
                                    reply, detail));
  REQUIRE(reply.size() == 4);
  CHECK(reply[0] == TextPair{"CHAP_N", "user"});
  CHECK(reply[1].value == "0x226dc576c33f04ff9c3a200ffe35f442");
  REQUIRE(reply[2].key == "CHAP_I");
  REQUIRE(reply[3].key == "CHAP_C");
  const auto our_id = parse_numerical_value(reply[2].value);
  const auto our_challenge = decode_binary_value(reply[3].value);
  REQUIRE(our_id);
  REQUIRE(*our_id <= 255);
  REQUIRE(our_challenge);
  CHECK(our_challenge->size() >= 16);
  CHECK(*our_challenge != challenge16);
  CHECK_FALSE(chap.complete());
  CHECK(chap.responded());

  // The target's answer, computed with the openssl tool where available.
  std::string target_response =
      md5_via_openssl_cli(concat(static_cast<uint8_t>(*our_id), target_secret, *our_challenge));
  if (target_response.empty())
    target_response = to_hex(chap_response(ChapAlgorithm::md5, static_cast<uint8_t>(*our_id),
                                           target_secret, *our_challenge));

  SECTION("a correct answer completes the exchange") {
    Pairs none;
    REQUIRE_FALSE(chap.on_target_keys({{"CHAP_N", "iqn.t"}, {"CHAP_R", "0x" + target_response}},
                                      none, detail));
    CHECK(chap.complete());
    CHECK(none.empty());
  }
  SECTION("an answer arriving in a later response is still accepted") {
    Pairs none;
    REQUIRE_FALSE(chap.on_target_keys({{"TargetPortalGroupTag", "1"}}, none, detail));
    CHECK_FALSE(chap.complete());
    REQUIRE_FALSE(chap.on_target_keys({{"CHAP_N", "iqn.t"}, {"CHAP_R", "0x" + target_response}},
                                      none, detail));
    CHECK(chap.complete());
  }
  SECTION("a wrong answer fails") {
    std::string wrong = target_response;
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    Pairs none;
    CHECK(chap.on_target_keys({{"CHAP_N", "iqn.t"}, {"CHAP_R", "0x" + wrong}}, none, detail) ==
          make_error_code(errc::chap_target_authentication_failed));
    CHECK(detail.find(target_secret) == std::string::npos);
    CHECK_FALSE(chap.complete());
  }
  SECTION("a truncated answer fails") {
    Pairs none;
    CHECK(chap.on_target_keys(
              {{"CHAP_N", "iqn.t"}, {"CHAP_R", "0x" + target_response.substr(0, 30)}}, none,
              detail) == make_error_code(errc::chap_target_authentication_failed));
  }
  SECTION("the wrong target name fails") {
    Pairs none;
    CHECK(chap.on_target_keys({{"CHAP_N", "iqn.other"}, {"CHAP_R", "0x" + target_response}}, none,
                              detail) == make_error_code(errc::chap_target_authentication_failed));
    CHECK(detail.find("iqn.other") != std::string::npos);
  }
  SECTION("CHAP_R without CHAP_N is malformed") {
    Pairs none;
    CHECK(chap.on_target_keys({{"CHAP_R", "0x" + target_response}}, none, detail) ==
          make_error_code(errc::chap_malformed));
  }
}

TEST_CASE("chap: a target that reflects our challenge is refused", "[iscsi][chap]") {
  ChapCredentials creds{"user", "same-secret", std::pair{std::string("iqn.t"), "same-secret"}};
  // Connection A: we issue a challenge to the target.
  ChapInitiator a(creds);
  a.algorithm_offer();
  Pairs reply;
  std::string detail;
  REQUIRE_FALSE(a.on_target_keys(challenge_keys("5", "7", "0x0badc0de0badc0de0badc0de0badc0de"),
                                 reply, detail));
  const std::string our_challenge = reply.at(3).value;
  // Connection B: a target presents that very challenge to get our answer to it.
  ChapInitiator b(creds);
  b.algorithm_offer();
  Pairs reply_b;
  CHECK(b.on_target_keys(challenge_keys("5", "7", our_challenge), reply_b, detail) ==
        make_error_code(errc::chap_reflected_challenge));
  CHECK(reply_b.empty());
  const auto bytes = decode_binary_value(our_challenge).value();
  CHECK(bytes.size() == ChapInitiator::challenge_length);
}
