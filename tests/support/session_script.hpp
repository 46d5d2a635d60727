// The test side of a scripted exchange with iscsi::Session: the test plays the target,
// delivers PDUs to the session and decodes every PDU the session sends.
#pragma once

#include <catch2/catch.hpp>

#include <iscsi/pdu.hpp>
#include <iscsi/session.hpp>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace session_test {

// A session at CmdSN 1, ExpStatSN 1, with `max_tasks` task slots.
inline iscsi::SessionParams script_params(iscsi::CmdSN max_cmd_sn, uint32_t max_tasks = 8) {
  iscsi::SessionParams sp;
  sp.cmd_sn = iscsi::CmdSN(1);
  sp.exp_cmd_sn = iscsi::CmdSN(1);
  sp.max_cmd_sn = max_cmd_sn;
  sp.exp_stat_sn = iscsi::StatSN(1);
  sp.max_tasks = max_tasks;
  return sp;
}

struct SessionScript {
  // The next PDU the session sent, decoded; the frame stays queued, as if not yet written.
  iscsi::InitiatorPdu peek_sent(std::vector<std::byte>* data = nullptr) {
    REQUIRE_FALSE(session->output().empty());
    iscsi::OutFrame& f = session->output().front();
    iscsi::InitiatorPdu pdu;
    std::string decode_detail;
    REQUIRE_FALSE(iscsi::decode_initiator_pdu(
        std::span<const std::byte, iscsi::bhs_size>(f.header.data(), iscsi::bhs_size), pdu,
        decode_detail));
    if (data) data->assign(f.data.begin(), f.data.end());
    return pdu;
  }

  // The next PDU the session sent, decoded; the frame is consumed.
  iscsi::InitiatorPdu expect_sent(std::vector<std::byte>* data = nullptr) {
    auto pdu = peek_sent(data);
    session->frames_written(1);
    return pdu;
  }

  void expect_nothing_sent() { CHECK(session->output().empty()); }

  // Feeds one target PDU; `detail` keeps what the session said about it.
  std::error_code deliver(const auto& pdu, std::span<const std::byte> data = {}) {
    auto bhs = iscsi::encode_bhs(pdu);
    detail.clear();
    return session->on_pdu(bhs, data, detail);
  }

  std::unique_ptr<iscsi::Session> session;
  std::string detail;
};

}  // namespace session_test
