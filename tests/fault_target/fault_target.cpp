#include "fault_target.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <map>
#include <string_view>

#include <common/bytes.hpp>
#include <iscsi/pdu_reader.hpp>
#include <iscsi/text.hpp>

namespace fault_target {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

size_t Observed::count(iscsi::Opcode opcode) const {
  return static_cast<size_t>(std::count_if(received.begin(), received.end(),
                                           [&](const Pdu& p) { return p.opcode == opcode; }));
}

const Observed::Pdu* Observed::first(iscsi::Opcode opcode) const {
  const auto found = std::find_if(received.begin(), received.end(),
                                  [&](const Pdu& p) { return p.opcode == opcode; });
  return found == received.end() ? nullptr : &*found;
}

namespace {

// What this target declares and answers (RFC 7143 §13).
constexpr uint32_t our_max_recv_data_segment_length = 65536;
constexpr uint32_t our_max_burst_length = 262144;
constexpr uint32_t our_first_burst_length = 65536;
constexpr uint32_t cmd_window = 32;  // MaxCmdSN - ExpCmdSN + 1 while the window is open
constexpr uint16_t our_tsih = 1;
constexpr uint8_t no_such_opcode = 0x3e;  // §11.2.1.2 assigns no PDU to it

constexpr uint8_t status_good = 0x00;
constexpr uint8_t status_check_condition = 0x02;

// §11.4.7.2: SenseLength, then fixed-format sense data (SPC-4 §4.5.3).
std::vector<std::byte> sense_segment(uint8_t key, uint8_t asc, uint8_t ascq) {
  constexpr size_t sense_length = 18;
  std::vector<std::byte> out(2 + sense_length);
  common::store_be16(out, 0, sense_length);
  common::store_u8(out, 2, 0x70);  // current error, fixed format
  common::store_u8(out, 2 + 2, key);
  common::store_u8(out, 2 + 7, sense_length - 8);
  common::store_u8(out, 2 + 12, asc);
  common::store_u8(out, 2 + 13, ascq);
  return out;
}

// §6.2 list rule: the first value of the initiator's list we support, else Reject.
std::string answer_digest(std::string_view offer, bool accept_crc32c) {
  for (const auto value : iscsi::split_list(offer)) {
    if (value == "None" || (value == "CRC32C" && accept_crc32c)) return std::string(value);
  }
  return "Reject";
}

std::string min_of(std::string_view offer, uint64_t ours) {
  const auto theirs = iscsi::parse_numerical_value(offer);
  return std::to_string(theirs ? std::min(*theirs, ours) : ours);
}

}  // namespace

class Connection;

struct FaultTarget::Impl {
  Impl(asio::io_context& io, Script s)
      : io(io),
        script(s),
        acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        port(acceptor.local_endpoint().port()),
        lun(static_cast<size_t>(s.blocks) * s.block_size) {}

  void accept(std::shared_ptr<Impl> self);
  void stop();

  asio::io_context& io;
  Script script;
  tcp::acceptor acceptor;
  uint16_t port;
  Observed observed;
  std::vector<std::byte> lun;
  std::vector<std::weak_ptr<Connection>> connections;
  // bad_header_digest / bad_data_digest corrupt one READ per target, not per connection, so a
  // test can show the retry on a new connection reading good data.
  bool digest_fault_fired = false;
  bool refusing_logins = false;           // portal_group_gone_on_write has fired
  bool renegotiation_asked = false;       // async_renegotiate has fired
  size_t data_command_answers_given = 0;  // of script.data_command_answers
  int lu_resets_rejected = 0;
};

// One initiator connection: login phase, then full feature phase. One-shot faults fire on the
// first opportunity of each connection.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<FaultTarget::Impl> target, tcp::socket socket)
      : target_(std::move(target)),
        script_(target_->script),
        socket_(std::move(socket)),
        timer_(target_->io) {}

  void start() { read_more(); }

  // resize(): CAPACITY DATA HAS CHANGED is pending for this I_T nexus.
  void raise_capacity_changed() { capacity_changed_ = true; }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
  }

 private:
  struct WriteTask {
    iscsi::Lun lun;
    uint64_t offset = 0;  // in the LUN, bytes
    std::vector<std::byte> data;
    uint32_t received = 0;  // in order (DataPDUInOrder=Yes)
    iscsi::R2TSN next_r2t_sn{0};
  };

  // ---------------------------------------------------------------- I/O

  void read_more() {
    if (closed_) return;
    socket_.async_read_some(asio::buffer(rx_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (ec || self->closed_) {
                                self->close();
                                return;
                              }
                              self->consume(std::span<const std::byte>(self->rx_.data(), n));
                              self->read_more();
                            });
  }

  void consume(std::span<const std::byte> input) {
    while (!input.empty() && !closed_) {
      const auto result = reader_.feed(input);
      input = input.subspan(result.consumed);
      if (result.state == iscsi::PduReader::State::error) {
        close();  // framing lost: nothing sensible can follow
        return;
      }
      if (result.state == iscsi::PduReader::State::need_more) return;
      const iscsi::Bhs bhs = [&] {
        iscsi::Bhs copy{};
        std::copy(reader_.bhs().begin(), reader_.bhs().end(), copy.begin());
        return copy;
      }();
      const auto data = reader_.data();
      const std::vector<std::byte> payload(data.begin(), data.end());
      reader_.next();
      on_pdu(bhs, payload);
    }
  }

  void send_bytes(std::vector<std::byte> bytes) {
    if (closed_) return;
    out_.push_back(std::move(bytes));
    if (!writing_) write_next();
  }

  void write_next() {
    if (closed_) return;
    if (out_.empty()) {
      writing_ = false;
      if (close_after_flush_) close();
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->out_.pop_front();
                        self->write_next();
                      });
  }

  struct Corrupt {
    bool header_digest = false;
    bool data_digest = false;
  };

  // BHS, header digest, data segment, padding, data digest (§11.1): the digests only once the
  // login has negotiated them.
  std::vector<std::byte> frame(const iscsi::Bhs& bhs, std::span<const std::byte> data,
                               Corrupt corrupt) const {
    std::vector<std::byte> out(bhs.begin(), bhs.end());
    if (header_digest_) {
      auto digest = iscsi::digest_bytes(iscsi::crc32c(bhs));
      if (corrupt.header_digest) digest[0] ^= std::byte{0x01};
      out.insert(out.end(), digest.begin(), digest.end());
    }
    if (!data.empty()) {
      const size_t start = out.size();
      out.insert(out.end(), data.begin(), data.end());
      out.resize(start + iscsi::padded_length(static_cast<uint32_t>(data.size())));
      if (data_digest_) {
        auto digest =
            iscsi::digest_bytes(iscsi::crc32c(std::span<const std::byte>(out).subspan(start)));
        if (corrupt.data_digest) digest[0] ^= std::byte{0x01};
        out.insert(out.end(), digest.begin(), digest.end());
      }
    }
    return out;
  }

  template <class Pdu>
  void send(Pdu pdu, std::span<const std::byte> data = {}, Corrupt corrupt = {}) {
    pdu.data_segment_length = static_cast<uint32_t>(data.size());
    send_bytes(frame(iscsi::encode_bhs(pdu), data, corrupt));
  }

  // ---------------------------------------------------------------- sequence numbers

  iscsi::CmdSN max_cmd_sn() const {
    // §4.2.2.1: MaxCmdSN = ExpCmdSN - 1 closes the window.
    return window_closed_ ? iscsi::CmdSN(exp_cmd_sn_.value() - 1) : exp_cmd_sn_ + (cmd_window - 1);
  }

  // For a PDU that carries status: StatSN advances.
  template <class Pdu>
  void sequence_with_status(Pdu& pdu) {
    pdu.stat_sn = iscsi::StatSN(stat_sn_++);
    pdu.exp_cmd_sn = exp_cmd_sn_;
    pdu.max_cmd_sn = max_cmd_sn();
  }

  // For R2T, Data-In without status, unsolicited NOP-In: the next StatSN, not advanced.
  template <class Pdu>
  void sequence_without_status(Pdu& pdu) {
    pdu.stat_sn = iscsi::StatSN(stat_sn_);
    pdu.exp_cmd_sn = exp_cmd_sn_;
    pdu.max_cmd_sn = max_cmd_sn();
  }

  void take_cmd_sn(bool immediate, iscsi::CmdSN cmd_sn) {
    if (!immediate && cmd_sn == exp_cmd_sn_) exp_cmd_sn_ = exp_cmd_sn_.next();
  }

  // ---------------------------------------------------------------- dispatch

  void on_pdu(const iscsi::Bhs& bhs, const std::vector<std::byte>& data) {
    iscsi::InitiatorPdu pdu;
    std::string detail;
    if (iscsi::decode_initiator_pdu(bhs, pdu, detail)) {
      close();
      return;
    }
    if (auto* login = std::get_if<iscsi::LoginRequest>(&pdu)) {
      on_login(*login, data);
      return;
    }
    if (!full_feature_) {
      close();
      return;
    }
    record(bhs, pdu);
    std::visit(
        [&](const auto& p) {
          using T = std::decay_t<decltype(p)>;
          if constexpr (std::is_same_v<T, iscsi::ScsiCommand>) {
            take_cmd_sn(p.immediate, p.cmd_sn);
            on_command(p, bhs, data);
          } else if constexpr (std::is_same_v<T, iscsi::DataOut>) {
            on_data_out(p, data);
          } else if constexpr (std::is_same_v<T, iscsi::NopOut>) {
            take_cmd_sn(p.immediate, p.cmd_sn);
            on_nop_out(p, data);
          } else if constexpr (std::is_same_v<T, iscsi::TaskManagementRequest>) {
            take_cmd_sn(p.immediate, p.cmd_sn);
            on_task_management(p);
          } else if constexpr (std::is_same_v<T, iscsi::LogoutRequest>) {
            take_cmd_sn(p.immediate, p.cmd_sn);
            on_logout(p);
          }
        },
        pdu);
  }

  void record(const iscsi::Bhs& bhs, const iscsi::InitiatorPdu& pdu) {
    Observed::Pdu seen;
    seen.opcode = iscsi::bhs_opcode(bhs);
    seen.at = Clock::now();
    seen.immediate = (common::load_u8(bhs, 0) & 0x40) != 0;
    seen.itt = common::load_be32(bhs, 16);
    if (auto* cmd = std::get_if<iscsi::ScsiCommand>(&pdu)) {
      seen.cdb_opcode = static_cast<uint8_t>(cmd->cdb[0]);
      seen.cmd_sn = cmd->cmd_sn.value();
    }
    if (auto* tmf = std::get_if<iscsi::TaskManagementRequest>(&pdu)) {
      seen.tmf_function = static_cast<uint8_t>(tmf->function);
      seen.referenced_task_tag = tmf->referenced_task_tag.value;
      seen.cmd_sn = tmf->cmd_sn.value();
    }
    target_->observed.received.push_back(seen);
  }

  // ---------------------------------------------------------------- login (§6.3, §11.12/13)

  void on_login(const iscsi::LoginRequest& request, const std::vector<std::byte>& data) {
    auto& observed = target_->observed;
    ++observed.login_requests;
    if (script_.fault == Fault::disconnect_in_login || full_feature_) {
      close();
      return;
    }
    if (target_->refusing_logins) {
      iscsi::LoginResponse refused;
      refused.isid = request.isid;
      refused.itt = request.itt;
      refused.current_stage = request.current_stage;
      refused.next_stage = request.current_stage;
      refused.status_class = 3;  // §11.13.5 0301: service unavailable
      refused.status_detail = 1;
      exp_cmd_sn_ = request.cmd_sn;
      sequence_with_status(refused);
      send(refused);
      close_after_flush_ = true;
      return;
    }
    std::vector<iscsi::TextPair> keys;
    if (iscsi::parse_text(data, keys)) {
      close();
      return;
    }
    iscsi::LoginResponse response;
    response.isid = request.isid;
    response.itt = request.itt;
    response.current_stage = request.current_stage;
    response.transit = request.transit;
    response.next_stage = request.transit ? request.next_stage : request.current_stage;
    exp_cmd_sn_ = request.cmd_sn;  // login requests do not advance CmdSN (§3.2.2.1)

    std::vector<iscsi::TextPair> answers;
    if (request.current_stage == iscsi::LoginStage::security_negotiation) {
      for (const auto& [key, value] : keys) {
        if (key == "AuthMethod") {
          const auto offered = iscsi::split_list(value);
          const bool none = std::find(offered.begin(), offered.end(), "None") != offered.end();
          answers.push_back({key, none ? "None" : "Reject"});
        } else if (key == "TargetName" && value != FaultTarget::target_name) {
          response.status_class = 2;  // §11.13.5 0203: not found
          response.status_detail = 3;
        }
      }
      answers.push_back({"TargetPortalGroupTag", std::to_string(script_.portal_group_tag)});
    } else {
      for (const auto& [key, value] : keys) answer_operational(key, value, answers);
    }
    const bool final = response.status_class == 0 && request.transit &&
                       request.next_stage == iscsi::LoginStage::full_feature_phase;
    if (final) {
      response.tsih = iscsi::Tsih{our_tsih};
      if (script_.fault == Fault::closed_window) window_closed_ = true;
    }
    if (response.status_class != 0) {
      response.transit = false;
      response.next_stage = iscsi::LoginStage::security_negotiation;
      response.current_stage = iscsi::LoginStage::security_negotiation;
      answers.clear();
      close_after_flush_ = true;
    }
    sequence_with_status(response);
    send(response, iscsi::encode_text(answers));
    if (final) enter_full_feature_phase();
  }

  // Answers each key by its §6.2 rule; MaxRecvDataSegmentLength is declared, not answered.
  void answer_operational(const std::string& key, const std::string& value,
                          std::vector<iscsi::TextPair>& answers) {
    const bool stalled = script_.fault == Fault::stalled_r2t;
    if (key == "HeaderDigest") {
      const auto answer = answer_digest(value, script_.accept_header_digest);
      negotiated_header_digest_ = answer == "CRC32C";
      answers.push_back({key, answer});
    } else if (key == "DataDigest") {
      const auto answer = answer_digest(value, script_.accept_data_digest);
      negotiated_data_digest_ = answer == "CRC32C";
      answers.push_back({key, answer});
    } else if (key == "MaxRecvDataSegmentLength") {
      if (auto n = iscsi::parse_numerical_value(value)) {
        initiator_max_recv_ = static_cast<uint32_t>(std::min<uint64_t>(*n, 1u << 24));
      }
      answers.push_back({key, std::to_string(our_max_recv_data_segment_length)});
    } else if (key == "MaxBurstLength") {
      answers.push_back({key, min_of(value, our_max_burst_length)});
      max_burst_ = static_cast<uint32_t>(std::stoul(answers.back().value));
    } else if (key == "FirstBurstLength") {
      answers.push_back({key, min_of(value, our_first_burst_length)});
    } else if (key == "InitialR2T") {  // OR
      const bool yes = value == "Yes" || script_.initial_r2t || stalled;
      answers.push_back({key, yes ? "Yes" : "No"});
    } else if (key == "ImmediateData") {  // AND
      const bool yes = value == "Yes" && script_.immediate_data && !stalled;
      answers.push_back({key, yes ? "Yes" : "No"});
    } else if (key == "MaxOutstandingR2T" || key == "ErrorRecoveryLevel" ||
               key == "MaxConnections") {
      answers.push_back({key, min_of(value, key == "ErrorRecoveryLevel" ? 0 : 1)});
    } else if (key == "DataPDUInOrder" || key == "DataSequenceInOrder") {  // OR
      answers.push_back({key, "Yes"});
    } else if (key == "DefaultTime2Wait" || key == "DefaultTime2Retain") {
      answers.push_back({key, value});
    } else {
      answers.push_back({key, "NotUnderstood"});
    }
  }

  void enter_full_feature_phase() {
    full_feature_ = true;
    header_digest_ = negotiated_header_digest_;
    data_digest_ = negotiated_data_digest_;
    auto& observed = target_->observed;
    ++observed.logins_completed;
    observed.header_digest = header_digest_;
    observed.data_digest = data_digest_;
    // §13.1: digests start with the first PDU after the final Login Response.
    reader_.set_limits({.max_data_segment_length = our_max_recv_data_segment_length,
                        .header_digest = header_digest_,
                        .data_digest = data_digest_});
    if (script_.fault == Fault::closed_window) {
      timer_.expires_after(script_.window_reopen_after);
      timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec && !self->closed_) self->reopen_window();
      });
    }
  }

  // An unsolicited NOP-In (§11.19: ITT and TTT 0xffffffff, no answer wanted) carrying the
  // reopened window.
  void reopen_window() {
    window_closed_ = false;
    iscsi::NopIn nop;
    nop.itt = iscsi::Itt{iscsi::Itt::reserved};
    nop.ttt = iscsi::Ttt{iscsi::Ttt::reserved};
    sequence_without_status(nop);
    target_->observed.window_opened_at = Clock::now();
    send(nop);
  }

  // ---------------------------------------------------------------- full feature phase

  void on_nop_out(const iscsi::NopOut& ping, const std::vector<std::byte>& data) {
    if (ping.itt.value == iscsi::Itt::reserved) return;  // the answer to a NOP-In of ours
    iscsi::NopIn answer;
    answer.lun = ping.lun;
    answer.itt = ping.itt;
    answer.ttt = iscsi::Ttt{iscsi::Ttt::reserved};
    sequence_with_status(answer);
    send(answer, data);
  }

  void on_task_management(const iscsi::TaskManagementRequest& request) {
    iscsi::TaskManagementResponse response;
    response.itt = request.itt;
    using Code = iscsi::TaskManagementResponseCode;
    Code code = Code::function_complete;
    switch (request.function) {
      case iscsi::TaskFunction::abort_task:
        // §11.6.1: the task ends here, or never reached us.
        code = writes_.erase(request.referenced_task_tag.value) > 0 ? Code::function_complete
                                                                    : Code::task_does_not_exist;
        break;
      case iscsi::TaskFunction::logical_unit_reset:
        if (target_->lu_resets_rejected < script_.reject_lu_resets) {
          ++target_->lu_resets_rejected;
          code = Code::function_rejected;
          break;
        }
        writes_.clear();
        break;
      default:
        code = Code::function_not_supported;
        break;
    }
    response.response = static_cast<uint8_t>(code);
    sequence_with_status(response);
    send(response);
  }

  void on_logout(const iscsi::LogoutRequest& request) {
    iscsi::LogoutResponse response;
    response.itt = request.itt;
    response.response = 0;  // connection or session closed successfully
    sequence_with_status(response);
    send(response);
    close_after_flush_ = true;
  }

  void on_command(const iscsi::ScsiCommand& command, const iscsi::Bhs& bhs,
                  const std::vector<std::byte>& data) {
    const bool first = commands_++ == 0;
    switch (script_.fault) {
      case Fault::reject_command: {
        // §11.17: the data segment is the rejected PDU's header.
        iscsi::Reject reject;
        reject.reason = static_cast<uint8_t>(iscsi::RejectReason::command_not_supported);
        reject.data_sn = iscsi::DataSN(0);
        sequence_with_status(reject);
        send(reject, bhs);
        return;
      }
      case Fault::garbage_opcode:
        if (first) {
          iscsi::Bhs garbage{};
          common::store_u8(garbage, 0, no_such_opcode);
          common::store_u8(garbage, 1, 0x80);
          common::store_be32(garbage, 16, command.itt.value);
          send_bytes(frame(garbage, {}, {}));
          return;
        }
        break;
      case Fault::garbage_length:
        if (first) {
          // Only the header goes out: the initiator must refuse it before any data.
          iscsi::DataIn in;
          in.itt = command.itt;
          in.final = true;
          sequence_without_status(in);
          iscsi::Bhs header = iscsi::encode_bhs(in);
          common::store_be24(header, 5, 0xffffff);
          send_bytes(frame(header, {}, {}));
          return;
        }
        break;
      default:
        break;
    }
    const uint8_t operation = static_cast<uint8_t>(command.cdb[0]);
    const std::span<const std::byte> cdb(command.cdb);
    // SPC-4 §6.33: REPORT LUNS is answered at any LUN.
    if (operation == 0xa0) {
      on_report_luns(command, cdb);
      return;
    }
    // A LUN this target does not have: INQUIRY answers with PERIPHERAL QUALIFIER 011b (SPC-4
    // §6.6.2), any other command with LOGICAL UNIT NOT SUPPORTED (SPC-4 Annex D, 25/00).
    if (command.lun.encoded != lun_field()) {
      if (operation == 0x12 && (common::load_u8(cdb, 1) & 0x01) == 0) {
        std::vector<std::byte> data(36);
        common::store_u8(data, 0, 0x7f);  // qualifier 011b, device type 1Fh
        common::store_u8(data, 2, 0x06);
        common::store_u8(data, 3, 0x02);
        common::store_u8(data, 4, 36 - 5);
        data.resize(std::min<size_t>(data.size(), common::load_be16(cdb, 3)));
        send_data_in(command, data, {});
      } else {
        respond(command, status_check_condition, sense_segment(0x05, 0x25, 0x00));
      }
      return;
    }
    // SAM-4 §5.14: a pending unit attention is reported on the next command, except INQUIRY
    // and REPORT LUNS, and then cleared.
    if (capacity_changed_ && operation != 0x12 && operation != 0xa0) {
      capacity_changed_ = false;
      respond(command, status_check_condition, sense_segment(0x06, 0x2a, 0x09));
      return;
    }
    if ((operation == 0x88 || operation == 0x8a) &&  // READ(16), WRITE(16)
        target_->data_command_answers_given < script_.data_command_answers.size()) {
      const ScriptedStatus& answer =
          script_.data_command_answers[target_->data_command_answers_given++];
      respond(command, answer.status,
              answer.status == status_check_condition
                  ? sense_segment(answer.sense_key, answer.asc, answer.ascq)
                  : std::vector<std::byte>{});
      return;
    }
    switch (operation) {
      case 0x00:  // TEST UNIT READY
        respond(command, status_good);
        break;
      case 0x12:  // INQUIRY (SPC-4 §6.6)
        on_inquiry(command, cdb);
        break;
      case 0xa3:  // MAINTENANCE IN: REPORT TARGET PORT GROUPS (SPC-4 §6.36)
        if (script_.alua && (common::load_u8(cdb, 1) & 0x1f) == 0x0a) {
          on_report_target_port_groups(command, cdb);
        } else {
          respond(command, status_check_condition, sense_segment(0x05, 0x20, 0x00));
        }
        break;
      case 0x9e:  // SERVICE ACTION IN(16): READ CAPACITY(16) (SBC-3 §5.16)
        if ((common::load_u8(cdb, 1) & 0x1f) == 0x10) {
          std::vector<std::byte> capacity(32);
          common::store_be64(capacity, 0, target_->script.blocks - 1);
          common::store_be32(capacity, 8, script_.block_size);
          if (script_.thin) common::store_u8(capacity, 14, 0xc0);  // LBPME, LBPRZ
          capacity.resize(std::min<size_t>(capacity.size(), common::load_be32(cdb, 10)));
          send_data_in(command, capacity, {});
        } else if ((common::load_u8(cdb, 1) & 0x1f) == 0x12 && script_.thin &&
                   !script_.get_lba_status_refused) {
          on_get_lba_status(command, cdb);
        } else {
          respond(command, status_check_condition, sense_segment(0x05, 0x24, 0x00));
        }
        break;
      case 0x88:  // READ(16)
        on_read(command, cdb);
        break;
      case 0x8a:  // WRITE(16)
        if (script_.fault == Fault::portal_group_gone_on_write) {
          target_->refusing_logins = true;
          close();
          return;
        }
        on_write(command, cdb, data);
        break;
      default:  // INVALID COMMAND OPERATION CODE
        respond(command, status_check_condition, sense_segment(0x05, 0x20, 0x00));
        break;
    }
  }

  // The 8-byte LUN field of Script::lun, in peripheral device addressing (SAM-5 §4.7.7.2:
  // bus 0, the LUN in byte 1).
  uint64_t lun_field() const { return uint64_t{script_.lun} << 48; }

  // SPC-4 §6.33.2: a LUN list of the one LUN this target has.
  void on_report_luns(const iscsi::ScsiCommand& command, std::span<const std::byte> cdb) {
    std::vector<std::byte> data(16);
    common::store_be32(data, 0, 8);
    common::store_be64(data, 8, lun_field());
    data.resize(std::min<size_t>(data.size(), common::load_be32(cdb, 6)));
    send_data_in(command, data, {});
  }

  // Standard data and the VPD pages the script gives (0x00, 0x83, 0x80); other pages are
  // INVALID FIELD IN CDB.
  void on_inquiry(const iscsi::ScsiCommand& command, std::span<const std::byte> cdb) {
    using DeviceIdentification = Script::DeviceIdentification;
    const bool evpd = (common::load_u8(cdb, 1) & 0x01) != 0;
    const uint8_t page = common::load_u8(cdb, 2);
    const bool has_83 = script_.device_identification != DeviceIdentification::unsupported;
    const bool has_80 = script_.unit_serial.has_value();
    std::vector<std::byte> data;
    if (!evpd) {
      data.resize(36);
      common::store_u8(data, 2, 0x06);  // SPC-4
      common::store_u8(data, 3, 0x02);  // response data format 2
      common::store_u8(data, 4, 36 - 5);
      if (script_.alua) common::store_u8(data, 5, 0x10);  // TPGS = 01b: implicit ALUA
      std::memcpy(data.data() + 8, "FAULT   ", 8);
      std::memcpy(data.data() + 16, "SCRIPTED TARGET ", 16);
      std::memcpy(data.data() + 32, "0001", 4);
    } else if (page == 0x00) {  // SPC-4 §7.8.13 supported VPD pages, in ascending order
      data = {std::byte{0}, std::byte{0x00}, std::byte{0}, std::byte{0}, std::byte{0x00}};
      if (has_80) data.push_back(std::byte{0x80});
      if (has_83) data.push_back(std::byte{0x83});
      if (script_.thin) data.push_back(std::byte{0xb2});
      common::store_be16(data, 2, static_cast<uint16_t>(data.size() - 4));
    } else if (page == 0x80 && has_80) {  // SPC-4 §7.8.15 unit serial number
      data = {std::byte{0}, std::byte{0x80}, std::byte{0}, std::byte{0}};
      for (char c : *script_.unit_serial) data.push_back(static_cast<std::byte>(c));
      common::store_be16(data, 2, static_cast<uint16_t>(data.size() - 4));
    } else if (page == 0x83 && has_83) {  // SPC-4 §7.8.6 device identification
      // An NAA IEEE Registered designator for the LU (association 0); with ALUA, the target
      // port group and relative target port of this port too (association 1, §7.8.6.7/.8).
      data = {std::byte{0}, std::byte{0x83}, std::byte{0}, std::byte{0}};
      if (script_.device_identification == DeviceIdentification::naa) {
        const std::array<uint8_t, 12> naa = {0x01, 0x03, 0x00, 0x08, 0x50, 0x01,
                                             0x40, 0x50, 0x00, 0x00, 0x00, 0x00};
        for (uint8_t b : naa) data.push_back(std::byte{b});
        common::store_be32(data, data.size() - 4, script_.lu_id);
      }
      std::vector<uint8_t> port_designators;
      if (script_.alua) {
        port_designators = {5, 4};
      } else if (script_.device_identification == DeviceIdentification::no_lu_designator) {
        port_designators = {4};
      }
      for (uint8_t type : port_designators) {
        const std::array<uint8_t, 8> port = {
            0x01, static_cast<uint8_t>(0x10 | type), 0x00, 0x04, 0x00, 0x00, 0x00, 0x01};
        for (uint8_t b : port) data.push_back(std::byte{b});
      }
      common::store_be16(data, 2, static_cast<uint16_t>(data.size() - 4));
    } else if (page == 0xb2 && script_.thin) {  // SBC-4 §6.6.6 logical block provisioning
      data.assign(8, std::byte{0});
      common::store_u8(data, 1, 0xb2);
      common::store_be16(data, 2, 4);
      common::store_u8(data, 5, 0x84);  // LBPU, LBPRZ
      common::store_u8(data, 6, 0x02);  // PROVISIONING TYPE: thin
    } else {
      respond(command, status_check_condition, sense_segment(0x05, 0x24, 0x00));
      return;
    }
    data.resize(std::min<size_t>(data.size(), common::load_be16(cdb, 3)));
    send_data_in(command, data, {});
  }

  // One target port group (id 1, active/optimized, implicit transitions only) with one target
  // port (relative id 1), sent script_.rtpg_delay after the request.
  void on_report_target_port_groups(const iscsi::ScsiCommand& command,
                                    std::span<const std::byte> cdb) {
    std::vector<std::byte> data(4 + 8 + 4);
    common::store_be32(data, 0, static_cast<uint32_t>(data.size() - 4));
    common::store_u8(data, 4, 0x00);      // PREF 0, ASYMMETRIC ACCESS STATE active/optimized
    common::store_u8(data, 4 + 1, 0x01);  // supported: active/optimized
    common::store_be16(data, 4 + 2, 1);   // TARGET PORT GROUP
    common::store_u8(data, 4 + 7, 1);     // TARGET PORT COUNT
    common::store_be16(data, 4 + 8 + 2, 1);
    data.resize(std::min<size_t>(data.size(), common::load_be32(cdb, 6)));
    if (script_.rtpg_delay.count() == 0) {
      send_data_in(command, data, {});
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(target_->io, script_.rtpg_delay);
    timer->async_wait([self = shared_from_this(), timer, command,
                       data = std::move(data)](boost::system::error_code ec) {
      if (!ec && !self->closed_) self->send_data_in(command, data, {});
    });
  }

  // Bytes of the LUN a READ(16)/WRITE(16) addresses, or nullopt (LBA OUT OF RANGE sent).
  std::optional<std::pair<uint64_t, uint64_t>> extent(const iscsi::ScsiCommand& command,
                                                      std::span<const std::byte> cdb) {
    const uint64_t lba = common::load_be64(cdb, 2);
    const uint64_t blocks = common::load_be32(cdb, 10);
    const uint64_t lun_blocks = target_->script.blocks;  // resize() changes it
    if (lba > lun_blocks || blocks > lun_blocks - lba) {
      respond(command, status_check_condition, sense_segment(0x05, 0x21, 0x00));
      return std::nullopt;
    }
    return std::pair{lba * script_.block_size, blocks * script_.block_size};
  }

  void on_read(const iscsi::ScsiCommand& command, std::span<const std::byte> cdb) {
    const auto range = extent(command, cdb);
    if (!range) return;
    const auto begin = target_->lun.begin() + static_cast<ptrdiff_t>(range->first);
    const std::vector<std::byte> data(begin, begin + static_cast<ptrdiff_t>(range->second));
    Corrupt corrupt;
    if (!target_->digest_fault_fired) {
      corrupt.header_digest = script_.fault == Fault::bad_header_digest;
      corrupt.data_digest = script_.fault == Fault::bad_data_digest;
      target_->digest_fault_fired = corrupt.header_digest || corrupt.data_digest;
    }
    if (script_.read_delay.count() > 0) {
      auto timer = std::make_shared<asio::steady_timer>(target_->io, script_.read_delay);
      timer->async_wait([self = shared_from_this(), timer, command, data = std::move(data),
                         corrupt](boost::system::error_code ec) {
        if (!ec && !self->closed_) self->send_data_in(command, data, corrupt);
      });
      return;
    }
    send_data_in(command, data, corrupt);
  }

  // SBC-4 §5.8.2: runs of blocks from the starting LBA, all-zero ones deallocated (1), others
  // mapped (0), at most script_.lba_status_descriptors of them and what the allocation takes.
  void on_get_lba_status(const iscsi::ScsiCommand& command, std::span<const std::byte> cdb) {
    const uint64_t blocks = target_->script.blocks;
    const uint32_t bs = script_.block_size;
    uint64_t lba = common::load_be64(cdb, 2);
    if (lba >= blocks) {  // LOGICAL BLOCK ADDRESS OUT OF RANGE
      respond(command, status_check_condition, sense_segment(0x05, 0x21, 0x00));
      return;
    }
    auto zero = [&](uint64_t b) {
      const auto begin = target_->lun.begin() + static_cast<ptrdiff_t>(b * bs);
      return std::all_of(begin, begin + bs, [](std::byte x) { return x == std::byte{0}; });
    };
    std::vector<std::byte> data(8);
    for (size_t n = 0; n < script_.lba_status_descriptors && lba < blocks; ++n) {
      const bool deallocated = zero(lba);
      uint64_t end = lba + 1;
      while (end < blocks && zero(end) == deallocated) ++end;
      std::vector<std::byte> d(16);
      common::store_be64(d, 0, lba);
      common::store_be32(d, 8, static_cast<uint32_t>(end - lba));
      common::store_u8(d, 12, deallocated ? 1 : 0);
      data.insert(data.end(), d.begin(), d.end());
      lba = end;
    }
    common::store_be32(data, 0, static_cast<uint32_t>(data.size() - 4));
    data.resize(std::min<size_t>(data.size(), common::load_be32(cdb, 10)));
    send_data_in(command, data, {});
  }

  void on_write(const iscsi::ScsiCommand& command, std::span<const std::byte> cdb,
                const std::vector<std::byte>& immediate) {
    const auto range = extent(command, cdb);
    if (!range) return;
    if (command.expected_data_transfer_length != range->second ||
        immediate.size() > range->second) {
      // SBC-3 leaves a mismatch to the transport; refusing keeps the fake simple.
      respond(command, status_check_condition, sense_segment(0x05, 0x24, 0x00));
      return;
    }
    WriteTask task;
    task.lun = command.lun;
    task.offset = range->first;
    task.data.resize(range->second);
    std::copy(immediate.begin(), immediate.end(), task.data.begin());
    task.received = static_cast<uint32_t>(immediate.size());
    auto& stored = writes_[command.itt.value] = std::move(task);
    // F clear: unsolicited Data-Out follows (§11.3.4); wait for its last PDU.
    if (command.final) after_burst(command.itt, stored);
  }

  void on_data_out(const iscsi::DataOut& out, const std::vector<std::byte>& data) {
    const auto found = writes_.find(out.itt.value);
    if (found == writes_.end()) return;  // aborted meanwhile
    WriteTask& task = found->second;
    if (out.buffer_offset != task.received || data.size() > task.data.size() - task.received) {
      close();  // out of order or beyond the buffer: not a case this fake takes part in
      return;
    }
    std::copy(data.begin(), data.end(), task.data.begin() + task.received);
    task.received += static_cast<uint32_t>(data.size());
    if (out.final) after_burst(out.itt, task);
  }

  // A burst ended: complete the WRITE, or ask for the next burst (§11.8).
  void after_burst(iscsi::Itt itt, WriteTask& task) {
    if (task.received == task.data.size()) {
      std::copy(task.data.begin(), task.data.end(),
                target_->lun.begin() + static_cast<ptrdiff_t>(task.offset));
      iscsi::ScsiResponse response;
      response.itt = itt;
      writes_.erase(itt.value);
      sequence_with_status(response);
      send(response);
      after_response();
      return;
    }
    if (script_.fault == Fault::stalled_r2t) return;
    iscsi::ReadyToTransfer r2t;
    r2t.lun = task.lun;
    r2t.itt = itt;
    r2t.ttt = iscsi::Ttt{next_ttt_++};
    r2t.r2t_sn = task.next_r2t_sn;
    task.next_r2t_sn = task.next_r2t_sn.next();
    r2t.buffer_offset = task.received;
    r2t.desired_data_transfer_length =
        std::min<uint32_t>(static_cast<uint32_t>(task.data.size()) - task.received, max_burst_);
    sequence_without_status(r2t);
    send(r2t);
  }

  // Data-In PDUs no longer than the initiator's MaxRecvDataSegmentLength, the status in the
  // last one (§11.7.4 S bit); residuals against the Expected Data Transfer Length.
  void send_data_in(const iscsi::ScsiCommand& command, const std::vector<std::byte>& data,
                    Corrupt corrupt) {
    const uint32_t expected = command.expected_data_transfer_length;
    const uint32_t length = std::min<uint32_t>(static_cast<uint32_t>(data.size()), expected);
    if (length == 0) {
      respond(command, status_good);
      return;
    }
    uint32_t offset = 0;
    iscsi::DataSN data_sn(0);
    while (offset < length) {
      const uint32_t chunk = std::min(length - offset, initiator_max_recv_);
      iscsi::DataIn in;
      in.lun = command.lun;
      in.itt = command.itt;
      in.ttt = iscsi::Ttt{iscsi::Ttt::reserved};
      in.data_sn = data_sn;
      data_sn = data_sn.next();
      in.buffer_offset = offset;
      const bool last = offset + chunk == length;
      in.final = last;
      if (last) {
        in.has_status = true;
        in.status = status_good;
        in.residual_underflow = data.size() < expected;
        in.residual_overflow = data.size() > expected;
        in.residual_count = in.residual_underflow  ? expected - static_cast<uint32_t>(data.size())
                            : in.residual_overflow ? static_cast<uint32_t>(data.size()) - expected
                                                   : 0;
        sequence_with_status(in);
      } else {
        sequence_without_status(in);
        in.stat_sn = iscsi::StatSN(0);  // reserved without the S bit
      }
      send(in, std::span<const std::byte>(data).subspan(offset, chunk),
           offset == 0 ? corrupt : Corrupt{});
      offset += chunk;
    }
    after_response();
  }

  void respond(const iscsi::ScsiCommand& command, uint8_t status,
               const std::vector<std::byte>& sense = {}) {
    iscsi::ScsiResponse response;
    response.itt = command.itt;
    response.status = status;
    const uint32_t expected = command.expected_data_transfer_length;
    if (expected > 0) {
      response.residual_underflow = true;
      response.residual_count = expected;
    }
    sequence_with_status(response);
    send(response, sense);
    after_response();
  }

  // async_logout / async_renegotiate: once the first command has its answer, ask for the
  // logout or for a negotiation (§11.9.1); the negotiation only once per target, so the
  // session logged in again is left in peace.
  void after_response() {
    const bool logout = script_.fault == Fault::async_logout;
    const bool renegotiate =
        script_.fault == Fault::async_renegotiate && !target_->renegotiation_asked;
    if ((!logout && !renegotiate) || logout_asked_) return;
    logout_asked_ = true;
    target_->renegotiation_asked = renegotiate;
    iscsi::AsyncMessage message;
    message.event = static_cast<uint8_t>(logout ? iscsi::AsyncEvent::logout_requested
                                                : iscsi::AsyncEvent::negotiation_requested);
    if (logout) message.parameter3 = script_.logout_within_seconds;
    sequence_with_status(message);
    target_->observed.logout_requested_at = Clock::now();
    send(message);
  }

  std::shared_ptr<FaultTarget::Impl> target_;
  const Script script_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<std::byte, 65536> rx_{};
  iscsi::PduReader reader_;  // RFC 7143 §13.12: 8192 bytes and no digests during login
  std::deque<std::vector<std::byte>> out_;
  bool writing_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;

  bool full_feature_ = false;
  bool negotiated_header_digest_ = false, negotiated_data_digest_ = false;
  bool header_digest_ = false, data_digest_ = false;  // in force (after the login)
  uint32_t initiator_max_recv_ = 8192;                // §13.12 default until declared
  uint32_t max_burst_ = our_max_burst_length;
  uint32_t stat_sn_ = 0x1000;
  iscsi::CmdSN exp_cmd_sn_;
  bool window_closed_ = false;
  std::map<uint32_t, WriteTask> writes_;  // by ITT
  uint32_t next_ttt_ = 1;
  unsigned commands_ = 0;
  bool logout_asked_ = false;
  bool capacity_changed_ = false;
};

void FaultTarget::Impl::accept(std::shared_ptr<Impl> self) {
  acceptor.async_accept([self](boost::system::error_code ec, tcp::socket socket) {
    if (ec) return;  // closed by stop()
    ++self->observed.connections;
    auto connection = std::make_shared<Connection>(self, std::move(socket));
    std::erase_if(self->connections, [](const auto& weak) { return weak.expired(); });
    self->connections.push_back(connection);
    connection->start();
    self->accept(self);
  });
}

void FaultTarget::Impl::stop() {
  boost::system::error_code ignored;
  acceptor.close(ignored);
  for (auto& weak : connections) {
    if (auto connection = weak.lock()) connection->close();
  }
}

FaultTarget::FaultTarget(asio::io_context& io, Script script)
    : impl_(std::make_shared<Impl>(io, script)) {
  impl_->accept(impl_);
}

FaultTarget::~FaultTarget() {
  impl_->stop();
}

uint16_t FaultTarget::port() const {
  return impl_->port;
}
const Observed& FaultTarget::observed() const {
  return impl_->observed;
}
std::vector<std::byte>& FaultTarget::lun() {
  return impl_->lun;
}

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(std::chrono::milliseconds(10));
  }
  return true;
}

void FaultTarget::drop_connections() {
  for (auto& weak : impl_->connections) {
    if (auto connection = weak.lock()) connection->close();
  }
}

void FaultTarget::resize(uint64_t blocks, bool unit_attention) {
  impl_->script.blocks = blocks;
  impl_->lun.resize(static_cast<size_t>(blocks) * impl_->script.block_size);
  if (!unit_attention) return;
  for (auto& weak : impl_->connections) {
    if (auto connection = weak.lock()) connection->raise_capacity_changed();
  }
}

}  // namespace fault_target
