#include "iscsi/login.hpp"

#include <algorithm>

#include "iscsi/errors.hpp"

namespace iscsi {
namespace {

const char* stage_name(LoginStage s) {
  switch (s) {
    case LoginStage::security_negotiation:
      return "security negotiation";
    case LoginStage::operational_negotiation:
      return "operational negotiation";
    case LoginStage::full_feature_phase:
      return "full feature phase";
  }
  return "reserved stage";
}

bool is_security_key(std::string_view key) {
  return key == "AuthMethod" || key.starts_with("CHAP_");
}

bool is_login_declarative(std::string_view key) {
  return key == "TargetPortalGroupTag" || key == "TargetAlias" || key == "TargetAddress";
}

}  // namespace

LoginExchange::LoginExchange(LoginParams params)
    : params_(std::move(params)),
      negotiation_(params_.proposal, params_.type),
      exp_stat_sn_(params_.exp_stat_sn) {
  if (params_.chap) chap_.emplace(*params_.chap, params_.chap_algorithms);
}

LoginAction LoginExchange::fail(std::error_code ec, std::string detail) {
  finished_ = true;
  return LoginFailed{ec, std::move(detail)};
}

LoginAction LoginExchange::send(std::vector<TextPair> keys, bool transit, LoginStage next_stage,
                                bool continuation_ack) {
  if (requests_sent_ >= params_.max_exchanges)
    return fail(errc::login_protocol_error, "target did not complete the login within " +
                                                std::to_string(params_.max_exchanges) +
                                                " requests (stuck in " + stage_name(stage_) + ")");
  ++requests_sent_;
  const std::vector<std::byte> text = encode_text(keys);
  LoginRequest req;
  req.transit = transit;
  req.current_stage = stage_;
  // §11.12.3: NSG is meaningful only with T set; otherwise it is left zero.
  req.next_stage = transit ? next_stage : LoginStage::security_negotiation;
  req.version_max = 0;  // §11.12.4: version 0x00 is the only one defined
  req.version_min = 0;
  req.isid = params_.isid;
  req.tsih = params_.tsih;
  req.itt = params_.itt;
  req.cid = params_.cid;
  req.cmd_sn = params_.cmd_sn;
  req.exp_stat_sn = exp_stat_sn_;
  req.data_segment_length = static_cast<uint32_t>(text.size());
  const Bhs bhs = encode_bhs(req);
  std::vector<std::byte> pdu(bhs.begin(), bhs.end());
  pdu.insert(pdu.end(), text.begin(), text.end());
  pdu.resize(bhs_size + padded_length(static_cast<uint32_t>(text.size())), std::byte{0});
  // An empty acknowledgement of a C-bit response does not withdraw the transit we asked for
  // before: the target's last piece answers that request.
  if (!continuation_ack) {
    requested_transit_ = transit;
    requested_next_ = next_stage;
  }
  return LoginSend{std::move(pdu)};
}

LoginAction LoginExchange::start() {
  if (requests_sent_ != 0 || finished_)
    return fail(errc::login_protocol_error, "login exchange started twice");
  if (params_.initiator_name.empty())
    return fail(std::make_error_code(std::errc::invalid_argument), "no InitiatorName configured");
  const bool discovery = params_.type == SessionType::discovery;
  if (!discovery && params_.target_name.empty())
    return fail(std::make_error_code(std::errc::invalid_argument),
                "a normal session needs a TargetName");
  // §13.11, §13.4-13.6: the leading login request names both ends and the session type.
  std::vector<TextPair> keys{{"InitiatorName", params_.initiator_name}};
  if (!params_.initiator_alias.empty()) keys.push_back({"InitiatorAlias", params_.initiator_alias});
  keys.push_back({"SessionType", discovery ? "Discovery" : "Normal"});
  if (!discovery) keys.push_back({"TargetName", params_.target_name});
  keys.push_back({"AuthMethod", chap_ ? "CHAP" : "None"});
  // With AuthMethod=None there is nothing more to say in the security stage: ask to leave it
  // at once. With CHAP we may only ask once our CHAP_R is on its way.
  return send(std::move(keys), !chap_, LoginStage::operational_negotiation);
}

LoginAction LoginExchange::on_response(const LoginResponse& pdu,
                                       std::span<const std::byte> data_segment) {
  if (finished_) return LoginFailed{errc::login_protocol_error, "login already finished"};
  if (requests_sent_ == 0) return fail(errc::login_protocol_error, "response before any request");
  const uint32_t length = pdu.data_segment_length;
  if (data_segment.size() < length || data_segment.size() > padded_length(length))
    return fail(errc::login_protocol_error,
                "data segment of " + std::to_string(data_segment.size()) +
                    " bytes for DataSegmentLength " + std::to_string(length));
  const auto text = data_segment.first(length);
  if (pdu.itt != params_.itt)
    return fail(errc::login_protocol_error, "Login Response for ITT " +
                                                std::to_string(pdu.itt.value) + ", expected " +
                                                std::to_string(params_.itt.value));

  // §11.13.5: anything but success ends this login.
  if (pdu.status_class == 1) {
    std::vector<TextPair> keys;
    std::string detail;
    if (auto ec = parse_text(text, keys, detail))
      return fail(ec, "redirection with malformed text: " + detail);
    const TextPair* address = find_key(keys, "TargetAddress");
    LoginRedirect redirect;
    if (address == nullptr || !parse_target_address(address->value, redirect.portal))
      return fail(errc::login_protocol_error,
                  "redirection without a usable TargetAddress" +
                      (address ? " (" + address->value + ")" : std::string()));
    redirect.target_address = address->value;
    redirect.permanent = pdu.status_detail == 0x02;
    redirect.status_detail = pdu.status_detail;
    finished_ = true;
    return redirect;
  }
  if (pdu.status_class == 2 || pdu.status_class == 3) {
    const auto ec = make_login_status_error(pdu.status_class, pdu.status_detail);
    const std::string who =
        params_.type == SessionType::discovery ? "discovery session" : params_.target_name;
    return fail(ec, "target refused the login to " + who + " during " + stage_name(stage_) + ": " +
                        ec.message());
  }
  if (pdu.status_class != 0)
    return fail(errc::login_protocol_error,
                "Login Response with unknown status class " + std::to_string(pdu.status_class));

  if (!(pdu.isid == params_.isid))
    return fail(errc::login_protocol_error, "Login Response for another ISID");
  if (pdu.version_active != 0)
    return fail(
        errc::login_protocol_error,
        "target chose iSCSI version " + std::to_string(pdu.version_active) + ", we support only 0");
  if (pdu.current_stage != stage_)
    return fail(errc::login_protocol_error, std::string("Login Response in ") +
                                                stage_name(pdu.current_stage) + ", we are in " +
                                                stage_name(stage_));
  if (pdu.transit && pdu.continue_)
    return fail(errc::login_protocol_error, "Login Response with both T and C set");
  if (pdu.transit) {
    // §6.3: the target may move on only when we asked to; it may skip operational
    // negotiation (we asked for NSG=1, it answers NSG=3) but go nowhere else.
    const bool skip_operational = stage_ == LoginStage::security_negotiation &&
                                  requested_next_ == LoginStage::operational_negotiation &&
                                  pdu.next_stage == LoginStage::full_feature_phase;
    if (!requested_transit_)
      return fail(errc::login_protocol_error, "target set T in " + std::string(stage_name(stage_)) +
                                                  " when we did not ask to transit");
    if (pdu.next_stage != requested_next_ && !skip_operational)
      return fail(errc::login_protocol_error, std::string("target chose next stage ") +
                                                  stage_name(pdu.next_stage) + ", we asked for " +
                                                  stage_name(requested_next_));
  }
  exp_stat_sn_ = pdu.stat_sn.next();

  if (pdu.continue_) {
    // §6.1: text continues in the next response; acknowledge with an empty request.
    if (pending_text_.size() + text.size() > max_text_length)
      return fail(errc::login_protocol_error,
                  "login text longer than " + std::to_string(max_text_length) + " bytes");
    pending_text_.insert(pending_text_.end(), text.begin(), text.end());
    return send({}, false, stage_, true);
  }
  if (pending_text_.empty()) return on_text(pdu, text);
  std::vector<std::byte> whole = std::move(pending_text_);
  pending_text_.clear();
  if (whole.size() + text.size() > max_text_length)
    return fail(errc::login_protocol_error,
                "login text longer than " + std::to_string(max_text_length) + " bytes");
  whole.insert(whole.end(), text.begin(), text.end());
  return on_text(pdu, whole);
}

LoginAction LoginExchange::on_text(const LoginResponse& pdu, std::span<const std::byte> text) {
  std::vector<TextPair> keys;
  std::string detail;
  if (auto ec = parse_text(text, keys, detail)) return fail(ec, "target's login text: " + detail);

  std::vector<TextPair> security, declaratives, operational;
  for (auto& k : keys) {
    auto& bucket = is_security_key(k.key)        ? security
                   : is_login_declarative(k.key) ? declaratives
                                                 : operational;
    bucket.push_back(std::move(k));
  }
  std::vector<TextPair> replies;
  if (auto ec = on_declaratives(declaratives, detail)) return fail(ec, detail);
  if (auto ec = on_security_keys(security, replies, detail)) return fail(ec, detail);
  if (auto ec = negotiation_.on_target_keys(operational, replies, detail)) return fail(ec, detail);

  if (pdu.transit) {
    if (stage_ == LoginStage::security_negotiation && chap_ && !chap_->complete()) {
      if (chap_->mutual() && chap_->responded())
        return fail(errc::chap_target_authentication_failed,
                    "target left the security stage without answering our CHAP challenge");
      return fail(errc::login_protocol_error,
                  "target left the security stage before CHAP authentication completed");
    }
    if (pdu.next_stage == LoginStage::full_feature_phase)
      return enter_full_feature_phase(pdu, replies, operational);
    stage_ = LoginStage::operational_negotiation;
    auto offer = negotiation_.initial_offer();
    replies.insert(replies.end(), offer.begin(), offer.end());
    return send(std::move(replies), true, LoginStage::full_feature_phase);
  }
  if (stage_ == LoginStage::security_negotiation) {
    // We may ask to leave the security stage once our part of it is said: at once with
    // AuthMethod=None, after our CHAP_R with CHAP.
    const bool ready = !chap_ || chap_->responded();
    return send(std::move(replies), ready, LoginStage::operational_negotiation);
  }
  return send(std::move(replies), true, LoginStage::full_feature_phase);
}

std::error_code LoginExchange::on_security_keys(const std::vector<TextPair>& keys,
                                                std::vector<TextPair>& replies,
                                                std::string& detail) {
  if (keys.empty()) return {};
  if (stage_ != LoginStage::security_negotiation) {
    detail = "security key " + keys.front().key + " in operational negotiation";
    return errc::login_protocol_error;
  }
  std::vector<TextPair> chap_keys;
  for (const auto& [key, value] : keys) {
    if (key != "AuthMethod") {
      chap_keys.push_back({key, value});
      continue;
    }
    // We offered exactly one method; any other answer (Reject included) fails (§6.2.1).
    const std::string_view offered = chap_ ? "CHAP" : "None";
    if (value != offered) {
      detail = "AuthMethod=" + value + ": we offered " + std::string(offered);
      return errc::negotiation_failed;
    }
    if (auth_agreed_) continue;
    auth_agreed_ = true;
    if (chap_) {
      auto offer = chap_->algorithm_offer();
      replies.insert(replies.end(), offer.begin(), offer.end());
    }
  }
  if (chap_keys.empty()) return {};
  if (!chap_ || !auth_agreed_) {
    detail = "target sent " + chap_keys.front().key +
             (chap_ ? " before agreeing to AuthMethod=CHAP" : " but AuthMethod is None");
    return errc::login_protocol_error;
  }
  return chap_->on_target_keys(chap_keys, replies, detail);
}

std::error_code LoginExchange::on_declaratives(const std::vector<TextPair>& keys,
                                               std::string& detail) {
  for (const auto& [key, value] : keys) {
    if (key == "TargetPortalGroupTag") {
      // §13.9: a 16-bit tag, stated once.
      const auto tag = parse_numerical_value(value);
      if (!tag || *tag > 0xffff ||
          (target_portal_group_tag_ && *target_portal_group_tag_ != *tag)) {
        detail = "TargetPortalGroupTag=" + value + ": not a 16-bit tag, or changed";
        return errc::negotiation_failed;
      }
      target_portal_group_tag_ = static_cast<uint16_t>(*tag);
    } else if (key == "TargetAlias") {
      target_alias_ = value;
    }
    // TargetAddress means something only with a redirection (handled before) or SendTargets.
  }
  return {};
}

LoginAction LoginExchange::enter_full_feature_phase(const LoginResponse& pdu,
                                                    const std::vector<TextPair>& unsent_replies,
                                                    const std::vector<TextPair>& target_keys) {
  // The target moved on while offering keys we would answer; our answers can no longer be
  // sent. That is harmless when the answer would repeat its offer (both sides then hold the
  // same value) or is NotUnderstood for a key it cannot rely on; anything else leaves the two
  // sides disagreeing.
  std::string detail;
  for (const auto& reply : unsent_replies) {
    if (reply.value == value_not_understood) continue;
    const TextPair* offered = find_key(target_keys, reply.key);
    if (offered == nullptr || offered->value != reply.value)
      return fail(errc::negotiation_failed,
                  "target entered full feature phase without our answer " + reply.key + "=" +
                      reply.value + " to its offer" +
                      (offered ? " " + offered->key + "=" + offered->value : std::string()));
  }
  if (auto ec = negotiation_.finish(detail)) return fail(ec, detail);
  // TSIH (§11.12.6): a new session gets its nonzero handle in the final response; a connection
  // added to an existing session keeps the handle it presented.
  if (params_.tsih.value == 0 ? pdu.tsih.value == 0 : !(pdu.tsih == params_.tsih))
    return fail(
        errc::login_protocol_error,
        "final Login Response with TSIH " + std::to_string(pdu.tsih.value) +
            (params_.tsih.value == 0 ? " for a new session"
                                     : ", we presented " + std::to_string(params_.tsih.value)));
  finished_ = true;
  LoginDone done;
  done.params = negotiation_.params();
  done.tsih = pdu.tsih;
  done.target_portal_group_tag = target_portal_group_tag_;
  done.target_alias = target_alias_;
  done.cmd_sn = params_.cmd_sn;
  done.stat_sn = pdu.stat_sn;
  done.exp_stat_sn = pdu.stat_sn.next();
  done.exp_cmd_sn = pdu.exp_cmd_sn;
  done.max_cmd_sn = pdu.max_cmd_sn;
  return done;
}

}  // namespace iscsi
