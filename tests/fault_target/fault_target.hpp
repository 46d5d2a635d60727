// A scripted iSCSI target on loopback for the faults real targets will not produce on demand
// (bad digests, Reject, target-requested logout, a closed CmdSN window, a stalled R2T, garbage
// on the wire, a connection dropped mid-login, slow ALUA reports, a portal group lost with a
// write in flight, a rejected LU reset, data commands answered BUSY, TASK SET FULL, UNIT
// ATTENTION, RESERVATION CONFLICT, MEDIUM ERROR or ILLEGAL REQUEST).
//
// It serves one in-memory LUN well enough for iscsi_io::PathSession and mpio::LunDevice: login
// without authentication (answering every operational key by its RFC 7143 §6.2 rule), TEST UNIT
// READY, INQUIRY (standard data, VPD 0x00, 0x80 and 0x83), REPORT LUNS, REPORT TARGET PORT
// GROUPS, READ CAPACITY(16), READ(16), WRITE(16) with immediate data, unsolicited Data-Out and
// R2T, NOP-Out pings, ABORT TASK / LOGICAL UNIT RESET, Logout. Target PDUs are built with
// iscsi's encoders; what the initiator sends is framed by PduReader and decoded by
// decode_initiator_pdu, so the fake shares no protocol logic with the code under test beyond the
// wire codec.
//
// Everything runs on the caller's io_context; the header stays free of Asio so tests compile
// quickly.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <iscsi/pdu.hpp>

namespace boost::asio {
class io_context;
}

namespace fault_target {

enum class Fault {
  none,
  // The first READ this target serves (on any connection) gets a Data-In with a wrong header
  // digest (HeaderDigest=CRC32C must be negotiated); later READs are served correctly.
  bad_header_digest,
  // The same with a wrong data digest on the Data-In that also carries the status (S bit)
  // (DataDigest=CRC32C must be negotiated).
  bad_data_digest,
  // Every SCSI Command is answered with a Reject (reason 0x05 command not supported) carrying
  // its header, RFC 7143 §11.17.
  reject_command,
  // After the first command's response, an Async Message with AsyncEvent 1 (logout requested,
  // §11.9.1) asks for a logout within Script::logout_within seconds.
  async_logout,
  // The final Login Response closes the CmdSN window (MaxCmdSN = ExpCmdSN - 1, §4.2.2.1); a
  // NOP-In (ITT and TTT 0xffffffff) opens it Script::window_reopen_after later.
  closed_window,
  // A WRITE that needs an R2T (InitialR2T=Yes, ImmediateData=No are answered) never gets one;
  // ABORT TASK is answered "function complete".
  stalled_r2t,
  // After the first command's response, an Async Message with AsyncEvent 4 (the target requests
  // parameter negotiation, §11.9.1), once per target: a target whose settings an admin changed.
  async_renegotiate,
  // The first SCSI Command is answered with a 48-byte header of opcode 0x3e, which no PDU has.
  garbage_opcode,
  // The first SCSI Command is answered with a Data-In whose DataSegmentLength (16 MiB - 1)
  // exceeds the MaxRecvDataSegmentLength the initiator declared.
  garbage_length,
  // The connection is closed as soon as the first Login Request has arrived.
  disconnect_in_login,
  // The first WRITE closes its connection unanswered, and every later login is refused with
  // 0301 (service unavailable): a target portal group taken offline with a write in flight, as
  // LIO does when its TPG is disabled. The write's fate is unknown to the initiator.
  portal_group_gone_on_write,
};

// A status a data command is answered with instead of being served (SAM-5 §5.3), with fixed
// sense data when the status is CHECK CONDITION.
struct ScriptedStatus {
  uint8_t status = 0x00;
  uint8_t sense_key = 0, asc = 0, ascq = 0;  // CHECK CONDITION only
};

struct Script {
  Fault fault = Fault::none;
  // Whether CRC32C is acceptable to the target when the initiator offers it; when it is not,
  // an offer of CRC32C alone is answered Reject (§6.2).
  bool accept_header_digest = true;
  bool accept_data_digest = true;
  // Answered for InitialR2T (an OR) and ImmediateData (an AND); stalled_r2t forces Yes / No.
  bool initial_r2t = false;
  bool immediate_data = true;
  uint16_t logout_within_seconds = 2;                   // async_logout: Parameter3
  std::chrono::milliseconds window_reopen_after{1000};  // closed_window
  // ALUA (SPC-4 §5.16): standard INQUIRY says TPGS=01 (implicit), VPD 0x83 names target port
  // group 1 and relative target port 1, and REPORT TARGET PORT GROUPS reports that group
  // active/optimized, each answer rtpg_delay after its request: a target slow to report its
  // port groups, as a busy array is (the fault), while READ and WRITE are served at once.
  bool alua = false;
  std::chrono::milliseconds rtpg_delay{0};
  // Every READ(16) is served this long after it arrived (the data as it was then): a path slow
  // but alive, whose NOP-Outs and other commands are answered at once (a congested link or a
  // busy port, the case hedged reads are for, without the black hole's silence).
  std::chrono::milliseconds read_delay{0};
  // TargetPortalGroupTag declared at login (RFC 7143 §13.9).
  uint16_t portal_group_tag = 1;
  // The first this many LOGICAL UNIT RESETs are answered "function rejected" (§11.6.1, 255).
  int reject_lu_resets = 0;
  // The first READ(16) / WRITE(16) commands (on any connection) get these answers, one each in
  // order, and are not served; later ones are. The faults of a target that is overloaded (BUSY,
  // TASK SET FULL), reset (UNIT ATTENTION 29/00), reserved by another initiator (RESERVATION
  // CONFLICT) or has a bad block (MEDIUM ERROR): states tgtd and istgt do not enter on cue.
  std::vector<ScriptedStatus> data_command_answers{};
  // The LUN: its number (REPORT LUNS lists it alone; commands to any other LUN are answered as
  // SPC-4 says for a LUN that does not exist) and size.
  uint8_t lun = 0;
  uint64_t blocks = 2048;
  uint32_t block_size = 512;
  // How the LU names itself (SPC-4 §7.8.6, §7.8.15). By default VPD 0x83 holds one NAA IEEE
  // Registered designator whose last four bytes are lu_id (targets with the same lu_id show one
  // device) and VPD 0x80 is not supported.
  enum class DeviceIdentification {
    naa,
    // VPD 0x83 is listed and served, but holds no designator of the LU (association 0): only
    // this port's relative target port, as from a simple target that names no LU.
    no_lu_designator,
    // VPD 0x83 is neither listed in VPD 0x00 nor served (ILLEGAL REQUEST, INVALID FIELD IN CDB).
    unsupported,
  };
  DeviceIdentification device_identification = DeviceIdentification::naa;
  uint32_t lu_id = 1;
  // When set, VPD 0x80 is listed and served with this PRODUCT SERIAL NUMBER as it is (blanks
  // included).
  std::optional<std::string> unit_serial{};
  // A thin LU (SBC-4 §4.7.3): READ CAPACITY(16) says LBPME and LBPRZ, VPD 0xB2 is listed and
  // served (LBPU, LBPRZ, thin), and GET LBA STATUS (SBC-4 §5.8) reports each run of all-zero
  // blocks as deallocated and other runs as mapped, in at most lba_status_descriptors
  // descriptors (a short list, as a target whose allocation length is not reached sends).
  bool thin = false;
  size_t lba_status_descriptors = 16;
  // A thin LU without GET LBA STATUS: ILLEGAL REQUEST, INVALID FIELD IN CDB.
  bool get_lba_status_refused = false;
};

// What the target saw, for tests to assert on.
struct Observed {
  struct Pdu {
    iscsi::Opcode opcode{};
    std::chrono::steady_clock::time_point at;
    bool immediate = false;
    uint32_t itt = 0;
    uint8_t cdb_opcode = 0;            // SCSI Command
    uint8_t tmf_function = 0;          // Task Management Request
    uint32_t referenced_task_tag = 0;  // Task Management Request
    uint32_t cmd_sn = 0;
  };
  std::vector<Pdu> received;  // full feature phase PDUs, in arrival order
  int connections = 0;        // accepted
  int login_requests = 0;
  int logins_completed = 0;
  // closed_window: when the NOP-In that opened the window was queued.
  std::optional<std::chrono::steady_clock::time_point> window_opened_at;
  // async_logout / async_renegotiate: when the Async Message was queued.
  std::optional<std::chrono::steady_clock::time_point> logout_requested_at;
  bool header_digest = false, data_digest = false;  // as negotiated on the last login

  size_t count(iscsi::Opcode opcode) const;
  const Pdu* first(iscsi::Opcode opcode) const;
};

class FaultTarget {
 public:
  static constexpr const char* target_name = "iqn.2026-11.org.iscsi-mpio:fault-target";

  // Listens on 127.0.0.1, on a port of the kernel's choosing.
  FaultTarget(boost::asio::io_context& io, Script script);
  ~FaultTarget();  // closes the listener and every connection
  FaultTarget(const FaultTarget&) = delete;
  FaultTarget& operator=(const FaultTarget&) = delete;

  uint16_t port() const;
  const Observed& observed() const;
  // The LUN's contents, block_size * blocks bytes.
  std::vector<std::byte>& lun();
  // The LU grows or shrinks to `blocks`, as an admin's resize does. With `unit_attention`
  // every connection then answers its next command (INQUIRY and REPORT LUNS excepted, SAM-4
  // §5.14) with UNIT ATTENTION 2A/09 CAPACITY DATA HAS CHANGED; without it the new size shows
  // only in READ CAPACITY, as from a target that resizes without telling (the fault).
  void resize(uint64_t blocks, bool unit_attention);
  // Closes every connection and keeps listening: a target process restarted, or a switch that
  // reset the connections, as far as the initiator can tell.
  void drop_connections();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Runs `io` until `done` holds or `limit` passes (one handler at a time, so the condition is
// checked between handlers); false on timeout.
bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit);

}  // namespace fault_target
