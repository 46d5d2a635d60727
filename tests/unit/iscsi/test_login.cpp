// Scripted login exchanges (docs/architecture.md, "Tests"): each script lists the request
// we expect (stage bits and keys) and the target's response; the runner checks every request
// byte-level invariant (I bit, ISID, ITT, CID, CmdSN, ExpStatSN, padding) and can inject a
// fault at any step.
#include <catch2/catch.hpp>
#include "login_answers.hpp"

#include <common/bytes.hpp>
#include <common/hex.hpp>
#include <iscsi/errors.hpp>
#include <iscsi/login.hpp>
#include <iscsi/pdu.hpp>

#include <functional>
#include <optional>
#include <string>

using namespace iscsi;
using common::from_hex;
using common::to_hex;

namespace {

using Pairs = std::vector<TextPair>;
using Stage = LoginStage;
constexpr Stage sec = Stage::security_negotiation;
constexpr Stage op = Stage::operational_negotiation;
constexpr Stage ffp = Stage::full_feature_phase;

const Isid test_isid{{0xc0, 0x01, 0x02, 0x03, 0x04, 0x05}};
constexpr uint32_t test_itt = 0x10;
constexpr uint32_t first_stat_sn = 0x1000;
const std::string initiator_secret = "secretsecret";
const std::string target_secret = "target-secret-123";

LoginParams base_params() {
  LoginParams p;
  p.initiator_name = "iqn.2024-01.test:init";
  p.target_name = "iqn.2024-01.test:disk1";
  p.isid = test_isid;
  p.cid = 0;
  p.cmd_sn = CmdSN(1);
  p.exp_stat_sn = StatSN(0);
  p.itt = Itt{test_itt};
  return p;
}

LoginParams chap_params(bool mutual) {
  LoginParams p = base_params();
  p.chap = ChapCredentials{"user", initiator_secret, std::nullopt};
  if (mutual) p.chap->mutual = std::pair{std::string("iqn.2024-01.test:disk1"), target_secret};
  return p;
}

struct Reply {
  LoginResponse pdu;
  std::vector<std::byte> data;  // text plus padding
};

Reply raw_reply(Stage csg, bool transit, Stage nsg, std::vector<std::byte> text, uint16_t tsih = 0,
                bool cont = false) {
  Reply r;
  r.pdu.transit = transit;
  r.pdu.continue_ = cont;
  r.pdu.current_stage = csg;
  r.pdu.next_stage = transit ? nsg : sec;
  r.pdu.isid = test_isid;
  r.pdu.tsih = Tsih{tsih};
  r.pdu.itt = Itt{test_itt};
  r.pdu.exp_cmd_sn = CmdSN(1);
  r.pdu.max_cmd_sn = CmdSN(64);
  r.pdu.data_segment_length = static_cast<uint32_t>(text.size());
  r.data = std::move(text);
  r.data.resize(padded_length(r.pdu.data_segment_length), std::byte{0});
  return r;
}

Reply reply(Stage csg, bool transit, Stage nsg, const Pairs& keys, uint16_t tsih = 0) {
  return raw_reply(csg, transit, nsg, encode_text(keys), tsih);
}

Reply status_reply(uint8_t cls, uint8_t detail, const Pairs& keys = {}) {
  Reply r = reply(sec, false, sec, keys);
  r.pdu.status_class = cls;
  r.pdu.status_detail = detail;
  return r;
}

// A request we expect; a value "*" matches anything (our random CHAP_I/CHAP_C).
struct Expect {
  Stage csg;
  bool transit;
  Stage nsg;
  Pairs keys;
};

struct Step {
  Expect expect;
  std::function<Reply(const Pairs& request_keys)> respond;
};

Step step(Expect e, Reply r) {
  return {std::move(e), [r](const Pairs&) { return r; }};
}

enum class Fault { target_error_0300, wrong_itt, unterminated_text };

struct Decoded {
  LoginRequest req;
  Pairs keys;
};

Decoded decode_request(const std::vector<std::byte>& pdu) {
  REQUIRE(pdu.size() >= bhs_size);
  InitiatorPdu decoded;
  std::string detail;
  REQUIRE_FALSE(decode_initiator_pdu(std::span<const std::byte, bhs_size>(pdu.data(), bhs_size),
                                     decoded, detail));
  auto* req = std::get_if<LoginRequest>(&decoded);
  REQUIRE(req != nullptr);
  CHECK(std::to_integer<uint8_t>(pdu[0]) == 0x43);  // I bit + Login Request
  const uint32_t length = req->data_segment_length;
  REQUIRE(pdu.size() == bhs_size + padded_length(length));
  for (size_t i = bhs_size + length; i < pdu.size(); ++i) CHECK(pdu[i] == std::byte{0});
  Decoded d{*req, {}};
  REQUIRE_FALSE(parse_text(std::span(pdu).subspan(bhs_size, length), d.keys));
  return d;
}

void check_keys(const Pairs& expected, const Pairs& actual) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(actual[i].key == expected[i].key);
    if (expected[i].value != "*") CHECK(actual[i].value == expected[i].value);
  }
}

// Runs `script` from start(); returns the action after the last response (or after the faulty
// one).
LoginAction run(LoginExchange& exchange, const std::vector<Step>& script, const LoginParams& params,
                std::optional<size_t> fault_at = std::nullopt,
                Fault fault = Fault::target_error_0300) {
  LoginAction action = exchange.start();
  for (size_t i = 0; i < script.size(); ++i) {
    INFO("script step " << i);
    auto* send = std::get_if<LoginSend>(&action);
    if (send == nullptr) {
      if (auto* f = std::get_if<LoginFailed>(&action))
        FAIL(f->error.message() << ": " << f->detail);
      FAIL("expected a request");
    }
    const Decoded d = decode_request(send->pdu);
    const Expect& e = script[i].expect;
    CHECK(d.req.current_stage == e.csg);
    CHECK(d.req.transit == e.transit);
    if (e.transit) CHECK(d.req.next_stage == e.nsg);
    CHECK_FALSE(d.req.continue_);
    CHECK(d.req.version_max == 0);
    CHECK(d.req.version_min == 0);
    CHECK(d.req.isid == params.isid);
    CHECK(d.req.tsih == params.tsih);
    CHECK(d.req.itt == params.itt);
    CHECK(d.req.cid == params.cid);
    CHECK(d.req.cmd_sn == params.cmd_sn);  // login requests do not advance CmdSN
    CHECK(d.req.exp_stat_sn == (i == 0 ? params.exp_stat_sn : StatSN(first_stat_sn + i)));
    check_keys(e.keys, d.keys);

    Reply r = script[i].respond(d.keys);
    r.pdu.stat_sn = StatSN(first_stat_sn + static_cast<uint32_t>(i));
    if (fault_at == i) {
      switch (fault) {
        case Fault::target_error_0300:
          r = status_reply(3, 0);
          break;
        case Fault::wrong_itt:
          r.pdu.itt = Itt{test_itt + 1};
          break;
        case Fault::unterminated_text: {
          const std::string text = "Broken=1";
          r = raw_reply(r.pdu.current_stage, r.pdu.transit, r.pdu.next_stage,
                        {reinterpret_cast<const std::byte*>(text.data()),
                         reinterpret_cast<const std::byte*>(text.data()) + text.size()},
                        r.pdu.tsih.value);
          break;
        }
      }
    }
    action = exchange.on_response(r.pdu, r.data);
    if (fault_at == i) return action;
  }
  return action;
}

// ---- script pieces

Pairs leading_keys(std::string auth) {
  return {{"InitiatorName", "iqn.2024-01.test:init"},
          {"SessionType", "Normal"},
          {"TargetName", "iqn.2024-01.test:disk1"},
          {"AuthMethod", std::move(auth)}};
}

Pairs default_offer() {
  return test::default_operational_offer();
}

// What tgtd-like targets answer to default_offer().
Pairs target_answers() {
  return test::tgtd_like_login_answers();
}

OperationalParams expected_params() {
  OperationalParams p;
  p.initiator_max_recv_data_segment_length = 262144;
  p.target_max_recv_data_segment_length = 65536;
  p.max_burst_length = 262144;
  p.first_burst_length = 65536;
  return p;
}

constexpr uint16_t new_tsih = 0x0042;

Step operational_step() {
  return step({op, true, ffp, default_offer()}, reply(op, true, ffp, target_answers(), new_tsih));
}

std::vector<Step> no_auth_script() {
  return {step({sec, true, op, leading_keys("None")}, reply(sec, true, op,
                                                            {{"AuthMethod", "None"},
                                                             {"TargetPortalGroupTag", "1"},
                                                             {"TargetAlias", "disk-one"}})),
          operational_step()};
}

const std::string target_challenge = "0x000102030405060708090a0b0c0d0e0f";
// printf '\x01secretsecret\x00\x01...\x0f' | openssl dgst -md5
const std::string expected_chap_r = "0x226dc576c33f04ff9c3a200ffe35f442";

std::vector<Step> chap_first_steps() {
  return {step({sec, false, sec, leading_keys("CHAP")},
               reply(sec, false, sec, {{"AuthMethod", "CHAP"}, {"TargetPortalGroupTag", "1"}})),
          step({sec, false, sec, {{"CHAP_A", "5"}}},
               reply(sec, false, sec,
                     {{"CHAP_A", "5"}, {"CHAP_I", "1"}, {"CHAP_C", target_challenge}}))};
}

std::vector<Step> chap_one_way_script() {
  auto s = chap_first_steps();
  s.push_back(step({sec, true, op, {{"CHAP_N", "user"}, {"CHAP_R", expected_chap_r}}},
                   reply(sec, true, op, {})));
  s.push_back(operational_step());
  return s;
}

// The target's side of mutual CHAP: answer the initiator's CHAP_I/CHAP_C with `secret`.
Pairs target_chap_answer(const Pairs& request, const std::string& secret) {
  const auto id = parse_numerical_value(find_key(request, "CHAP_I")->value).value();
  const auto challenge = decode_binary_value(find_key(request, "CHAP_C")->value).value();
  return {{"CHAP_N", "iqn.2024-01.test:disk1"},
          {"CHAP_R", encode_binary_value(chap_response(ChapAlgorithm::md5, static_cast<uint8_t>(id),
                                                       secret, challenge))}};
}

std::vector<Step> chap_mutual_script(const std::string& secret_the_target_uses = target_secret) {
  auto s = chap_first_steps();
  s.push_back(
      {{sec,
        true,
        op,
        {{"CHAP_N", "user"}, {"CHAP_R", expected_chap_r}, {"CHAP_I", "*"}, {"CHAP_C", "*"}}},
       [secret_the_target_uses](const Pairs& req) {
         return reply(sec, true, op, target_chap_answer(req, secret_the_target_uses));
       }});
  s.push_back(operational_step());
  return s;
}

std::vector<Step> discovery_script() {
  return {step({sec,
                true,
                op,
                {{"InitiatorName", "iqn.2024-01.test:init"},
                 {"SessionType", "Discovery"},
                 {"AuthMethod", "None"}}},
               reply(sec, true, op, {{"AuthMethod", "None"}})),
          step({op,
                true,
                ffp,
                {{"HeaderDigest", "None"},
                 {"DataDigest", "None"},
                 {"MaxRecvDataSegmentLength", "262144"},
                 {"DefaultTime2Wait", "2"},
                 {"DefaultTime2Retain", "20"},
                 {"ErrorRecoveryLevel", "0"}}},
               reply(op, true, ffp,
                     {{"HeaderDigest", "None"},
                      {"DataDigest", "None"},
                      {"MaxRecvDataSegmentLength", "32768"},
                      {"DefaultTime2Wait", "2"},
                      {"DefaultTime2Retain", "20"},
                      {"ErrorRecoveryLevel", "0"}},
                     new_tsih))};
}

LoginDone expect_done(const LoginAction& action) {
  if (auto* f = std::get_if<LoginFailed>(&action)) FAIL(f->error.message() << ": " << f->detail);
  REQUIRE(std::holds_alternative<LoginDone>(action));
  return std::get<LoginDone>(action);
}

LoginFailed expect_failed(const LoginAction& action) {
  REQUIRE(std::holds_alternative<LoginFailed>(action));
  const auto& f = std::get<LoginFailed>(action);
  CHECK(f.detail.find(initiator_secret) == std::string::npos);
  CHECK(f.detail.find(target_secret) == std::string::npos);
  return f;
}

}  // namespace

TEST_CASE("login: the first request, byte for byte", "[iscsi][login]") {
  LoginExchange exchange(base_params());
  const auto action = exchange.start();
  REQUIRE(std::holds_alternative<LoginSend>(action));
  const std::string text = "InitiatorName=iqn.2024-01.test:init" + std::string(1, '\0') +
                           "SessionType=Normal" + std::string(1, '\0') +
                           "TargetName=iqn.2024-01.test:disk1" + std::string(1, '\0') +
                           "AuthMethod=None" + std::string(1, '\0');
  REQUIRE(text.size() == 0x69);
  const std::string expected =
      "43 81 00 00"             // I + Login; T, CSG=0, NSG=1; version max/min 0
      "00 000069"               // no AHS; 105 bytes of text
      "c0 01 02 03 04 05 0000"  // ISID, TSIH 0
      "00000010 0000 0000"      // ITT, CID, reserved
      "00000001 00000000"       // CmdSN, ExpStatSN
      "00000000 00000000 00000000 00000000" +
      to_hex(common::as_bytes(text)) + "000000";  // padding to 108
  CHECK(to_hex(std::get<LoginSend>(action).pdu) == to_hex(from_hex(expected)));
}

TEST_CASE("login: no authentication, straight to full feature phase", "[iscsi][login]") {
  const auto params = base_params();
  LoginExchange exchange(params);
  const auto done = expect_done(run(exchange, no_auth_script(), params));
  CHECK(done.params == expected_params());
  CHECK(done.tsih == Tsih{new_tsih});
  CHECK(done.target_portal_group_tag == 1);
  CHECK(done.target_alias == "disk-one");
  CHECK(done.cmd_sn == CmdSN(1));
  CHECK(done.stat_sn == StatSN(first_stat_sn + 1));
  CHECK(done.exp_stat_sn == StatSN(first_stat_sn + 2));
  CHECK(done.exp_cmd_sn == CmdSN(1));
  CHECK(done.max_cmd_sn == CmdSN(64));
  CHECK(exchange.finished());
  // Nothing more is accepted once the login is over.
  const Reply late = reply(op, true, ffp, {});
  CHECK(std::holds_alternative<LoginFailed>(exchange.on_response(late.pdu, late.data)));
}

TEST_CASE("login: discovery session offers only discovery keys", "[iscsi][login]") {
  auto params = base_params();
  params.type = SessionType::discovery;
  params.target_name.clear();
  LoginExchange exchange(params);
  const auto done = expect_done(run(exchange, discovery_script(), params));
  CHECK(done.params.target_max_recv_data_segment_length == 32768);
  CHECK_FALSE(done.target_portal_group_tag);
}

TEST_CASE("login: one-way CHAP", "[iscsi][login]") {
  const auto params = chap_params(false);
  LoginExchange exchange(params);
  const auto done = expect_done(run(exchange, chap_one_way_script(), params));
  CHECK(done.params == expected_params());
  CHECK(done.stat_sn == StatSN(first_stat_sn + 3));
}

TEST_CASE("login: mutual CHAP authenticates the target", "[iscsi][login]") {
  const auto params = chap_params(true);
  LoginExchange exchange(params);
  expect_done(run(exchange, chap_mutual_script(), params));
}

TEST_CASE("login: mutual CHAP with a target that does not know its secret fails",
          "[iscsi][login]") {
  const auto params = chap_params(true);
  LoginExchange exchange(params);
  auto script = chap_mutual_script("wrong-secret");
  script.pop_back();  // the login stops at the target's bad answer
  const auto failed = expect_failed(run(exchange, script, params));
  CHECK(failed.error == make_error_code(errc::chap_target_authentication_failed));
}

TEST_CASE("login: mutual CHAP with a target that skips its answer fails", "[iscsi][login]") {
  const auto params = chap_params(true);
  LoginExchange exchange(params);
  auto script = chap_first_steps();
  script.push_back(
      step({sec,
            true,
            op,
            {{"CHAP_N", "user"}, {"CHAP_R", expected_chap_r}, {"CHAP_I", "*"}, {"CHAP_C", "*"}}},
           reply(sec, true, op, {})));
  const auto failed = expect_failed(run(exchange, script, params));
  CHECK(failed.error == make_error_code(errc::chap_target_authentication_failed));
}

TEST_CASE("login: authentication failure 0201 is reported with its RFC text", "[iscsi][login]") {
  const auto params = chap_params(false);
  LoginExchange exchange(params);
  auto script = chap_first_steps();
  script.push_back(
      step({sec, true, op, {{"CHAP_N", "user"}, {"CHAP_R", expected_chap_r}}}, status_reply(2, 1)));
  const auto failed = expect_failed(run(exchange, script, params));
  CHECK(failed.error == make_login_status_error(2, 1));
  CHECK(&failed.error.category() == &login_status_category());
  CHECK(failed.error.message().find("authentication failure") != std::string::npos);
  CHECK(failed.detail.find("authentication failure") != std::string::npos);
  CHECK(failed.error == std::errc::permission_denied);
}

TEST_CASE("login: target not found 0203", "[iscsi][login]") {
  const auto params = base_params();
  LoginExchange exchange(params);
  const auto failed = expect_failed(
      run(exchange, {step({sec, true, op, leading_keys("None")}, status_reply(2, 3))}, params));
  CHECK(failed.error == make_login_status_error(2, 3));
  CHECK(failed.error.message().find("target not found") != std::string::npos);
  CHECK(failed.detail.find("iqn.2024-01.test:disk1") != std::string::npos);
}

TEST_CASE("login: redirection gives the new portal", "[iscsi][login]") {
  const auto params = base_params();
  {
    LoginExchange exchange(params);
    const auto action = run(exchange,
                            {step({sec, true, op, leading_keys("None")},
                                  status_reply(1, 1, {{"TargetAddress", "192.0.2.7:3261,2"}}))},
                            params);
    REQUIRE(std::holds_alternative<LoginRedirect>(action));
    const auto& r = std::get<LoginRedirect>(action);
    CHECK(r.portal.host == "192.0.2.7");
    CHECK(r.portal.port == 3261);
    CHECK(r.portal.portal_group_tag == 2);
    CHECK_FALSE(r.permanent);
    CHECK(r.target_address == "192.0.2.7:3261,2");
    CHECK(exchange.finished());
  }
  {
    LoginExchange exchange(params);
    const auto action = run(exchange,
                            {step({sec, true, op, leading_keys("None")},
                                  status_reply(1, 2, {{"TargetAddress", "[2001:db8::1]"}}))},
                            params);
    REQUIRE(std::holds_alternative<LoginRedirect>(action));
    const auto& r = std::get<LoginRedirect>(action);
    CHECK(r.portal.host == "2001:db8::1");
    CHECK(r.portal.port == 3260);
    CHECK(r.permanent);
  }
  {
    LoginExchange exchange(params);  // a redirection that says nowhere
    const auto failed = expect_failed(
        run(exchange, {step({sec, true, op, leading_keys("None")}, status_reply(1, 1))}, params));
    CHECK(failed.error == make_error_code(errc::login_protocol_error));
  }
}

TEST_CASE("login: garbage key values fail the negotiation", "[iscsi][login]") {
  const auto params = base_params();
  struct Case {
    Pairs security_keys;
    Pairs operational_keys;
  };
  auto answers_with = [](const std::string& key, const std::string& value) {
    auto a = target_answers();
    for (auto& p : a)
      if (p.key == key) p.value = value;
    return a;
  };
  const Case cases[] = {
      {{{"AuthMethod", "None"}}, answers_with("MaxBurstLength", "lots")},
      {{{"AuthMethod", "None"}}, answers_with("ImmediateData", "Perhaps")},
      {{{"AuthMethod", "None"}}, answers_with("HeaderDigest", "MD5")},
      {{{"AuthMethod", "None"}}, answers_with("MaxRecvDataSegmentLength", "0x")},
      {{{"AuthMethod", "None"}}, answers_with("ErrorRecoveryLevel", "Reject")},
      {{{"AuthMethod", "None"}, {"TargetPortalGroupTag", "70000"}}, target_answers()},
      {{{"AuthMethod", "Reject"}}, target_answers()},
      {{{"AuthMethod", "CHAP"}}, target_answers()},
  };
  for (const auto& c : cases) {
    INFO(c.security_keys.back().key << "=" << c.security_keys.back().value);
    std::vector<Step> script{
        step({sec, true, op, leading_keys("None")}, reply(sec, true, op, c.security_keys))};
    // A bad security-stage key ends the login there; otherwise the operational answers do.
    if (c.security_keys.size() == 1 && c.security_keys[0].value == "None")
      script.push_back(step({op, true, ffp, default_offer()},
                            reply(op, true, ffp, c.operational_keys, new_tsih)));
    LoginExchange exchange(params);
    const auto failed = expect_failed(run(exchange, script, params));
    CHECK(failed.error == make_error_code(errc::negotiation_failed));
    CHECK_FALSE(failed.detail.empty());
  }
}

TEST_CASE("login: a target may go from security straight to full feature phase", "[iscsi][login]") {
  const auto params = base_params();
  LoginExchange exchange(params);
  const auto done = expect_done(
      run(exchange, {step({sec, true, op, leading_keys("None")}, reply(sec, true, ffp, {}, 7))},
          params));
  CHECK(done.params == OperationalParams{});  // nothing negotiated: RFC defaults
  CHECK(done.tsih == Tsih{7});

  // ... unless we require a digest, which the defaults do not give.
  auto digest_params = base_params();
  digest_params.proposal.header_digest = DigestChoice::crc32c;
  LoginExchange strict(digest_params);
  const auto failed = expect_failed(
      run(strict, {step({sec, true, op, leading_keys("None")}, reply(sec, true, ffp, {}, 7))},
          digest_params));
  CHECK(failed.error == make_error_code(errc::negotiation_failed));
}

TEST_CASE("login: text continued over C-bit responses is reassembled", "[iscsi][login]") {
  const auto params = base_params();
  const auto text = encode_text(target_answers());
  const size_t split = 50;  // inside a key=value pair
  std::vector<std::byte> first(text.begin(), text.begin() + split);
  std::vector<std::byte> rest(text.begin() + split, text.end());
  auto script = no_auth_script();
  script.pop_back();
  script.push_back(
      step({op, true, ffp, default_offer()}, raw_reply(op, false, sec, first, 0, true)));
  // We acknowledge with an empty request and no T; the last piece may still transit.
  script.push_back(step({op, false, sec, {}}, raw_reply(op, true, ffp, rest, new_tsih)));
  LoginExchange exchange(params);
  const auto done = expect_done(run(exchange, script, params));
  CHECK(done.params == expected_params());
}

TEST_CASE("login: keys the target offers are answered in the next request", "[iscsi][login]") {
  const auto params = base_params();
  auto answers = target_answers();
  answers.push_back({"X-com.example.Feature", "1"});
  answers.push_back({"iSCSIProtocolLevel", "2"});
  auto script = no_auth_script();
  script.pop_back();
  script.push_back(step({op, true, ffp, default_offer()}, reply(op, false, sec, answers)));
  script.push_back(step(
      {op, true, ffp, {{"X-com.example.Feature", "NotUnderstood"}, {"iSCSIProtocolLevel", "1"}}},
      reply(op, true, ffp, {}, new_tsih)));
  LoginExchange exchange(params);
  const auto done = expect_done(run(exchange, script, params));
  CHECK(done.params == expected_params());
}

TEST_CASE("login: a target transiting past our unsent answer fails", "[iscsi][login]") {
  const auto params = base_params();
  auto answers = target_answers();
  answers.push_back({"iSCSIProtocolLevel", "2"});  // we would answer 1
  auto script = no_auth_script();
  script.pop_back();
  script.push_back(step({op, true, ffp, default_offer()}, reply(op, true, ffp, answers, new_tsih)));
  LoginExchange exchange(params);
  const auto failed = expect_failed(run(exchange, script, params));
  CHECK(failed.error == make_error_code(errc::negotiation_failed));
  CHECK(failed.detail.find("iSCSIProtocolLevel=1") != std::string::npos);
}

TEST_CASE("login: a target that never sets T is given up on", "[iscsi][login]") {
  const auto params = base_params();
  auto script = no_auth_script();
  script.pop_back();
  script.push_back(step({op, true, ffp, default_offer()}, reply(op, false, sec, {})));
  while (script.size() < params.max_exchanges)
    script.push_back(step({op, true, ffp, {}}, reply(op, false, sec, {})));
  LoginExchange exchange(params);
  const auto failed = expect_failed(run(exchange, script, params));
  CHECK(failed.error == make_error_code(errc::login_protocol_error));
  CHECK(failed.detail.find("16 requests") != std::string::npos);
}

TEST_CASE("login: stage and tag violations are protocol errors", "[iscsi][login]") {
  const auto params = chap_params(false);
  auto expect_protocol_error = [&](Reply r) {
    LoginExchange exchange(params);
    const auto failed =
        expect_failed(run(exchange, {step({sec, false, sec, leading_keys("CHAP")}, r)}, params));
    CHECK(failed.error == make_error_code(errc::login_protocol_error));
  };
  // T set when we did not ask to transit.
  expect_protocol_error(reply(sec, true, op, {{"AuthMethod", "CHAP"}}));
  // Response for another stage.
  expect_protocol_error(reply(op, false, sec, {{"AuthMethod", "CHAP"}}));
  // CHAP keys before AuthMethod was agreed.
  expect_protocol_error(reply(sec, false, sec, {{"CHAP_A", "5"}}));
  // Another ISID.
  Reply other_isid = reply(sec, false, sec, {{"AuthMethod", "CHAP"}});
  other_isid.pdu.isid.bytes[5] ^= 1;
  expect_protocol_error(other_isid);
  // An unknown iSCSI version.
  Reply version = reply(sec, false, sec, {{"AuthMethod", "CHAP"}});
  version.pdu.version_active = 1;
  expect_protocol_error(version);
  // A data segment shorter than its length.
  Reply short_data = reply(sec, false, sec, {{"AuthMethod", "CHAP"}});
  short_data.pdu.data_segment_length += 8;
  expect_protocol_error(short_data);
  // Status class 4 does not exist.
  expect_protocol_error(status_reply(4, 0));

  // A final response without a TSIH for a new session.
  const auto none = base_params();
  LoginExchange exchange(none);
  auto script = no_auth_script();
  script.back() = step({op, true, ffp, default_offer()}, reply(op, true, ffp, target_answers(), 0));
  CHECK(expect_failed(run(exchange, script, none)).error ==
        make_error_code(errc::login_protocol_error));
}

TEST_CASE("login: each script fails cleanly at each step", "[iscsi][login]") {
  struct Script {
    const char* name;
    LoginParams params;
    std::vector<Step> steps;
  };
  auto discovery = base_params();
  discovery.type = SessionType::discovery;
  discovery.target_name.clear();
  const Script scripts[] = {
      {"no auth", base_params(), no_auth_script()},
      {"discovery", discovery, discovery_script()},
      {"one-way CHAP", chap_params(false), chap_one_way_script()},
      {"mutual CHAP", chap_params(true), chap_mutual_script()},
  };
  for (const auto& s : scripts) {
    for (size_t at = 0; at < s.steps.size(); ++at) {
      INFO(s.name << ", fault at step " << at);
      {
        LoginExchange exchange(s.params);
        const auto f =
            expect_failed(run(exchange, s.steps, s.params, at, Fault::target_error_0300));
        CHECK(f.error == make_login_status_error(3, 0));
        CHECK(f.error.message().find("target error") != std::string::npos);
        CHECK(exchange.finished());
        const Reply more = reply(sec, false, sec, {});
        CHECK(std::holds_alternative<LoginFailed>(exchange.on_response(more.pdu, more.data)));
      }
      {
        LoginExchange exchange(s.params);
        const auto f = expect_failed(run(exchange, s.steps, s.params, at, Fault::wrong_itt));
        CHECK(f.error == make_error_code(errc::login_protocol_error));
      }
      {
        LoginExchange exchange(s.params);
        const auto f =
            expect_failed(run(exchange, s.steps, s.params, at, Fault::unterminated_text));
        CHECK(f.error == make_error_code(errc::text_malformed));
      }
    }
  }
}

TEST_CASE("login: configuration errors are reported at start", "[iscsi][login]") {
  auto p = base_params();
  p.target_name.clear();
  LoginExchange no_target(p);
  CHECK(std::holds_alternative<LoginFailed>(no_target.start()));
  p = base_params();
  p.initiator_name.clear();
  LoginExchange no_name(p);
  CHECK(std::holds_alternative<LoginFailed>(no_name.start()));
}
