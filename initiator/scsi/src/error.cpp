#include "scsi/error.hpp"

#include <cstdio>
#include <string>

namespace scsi {
namespace {

constexpr uint32_t pack(Status status, SenseKey key, uint8_t asc, uint8_t ascq) {
  return uint32_t{static_cast<uint8_t>(status)} << 24 | uint32_t{static_cast<uint8_t>(key)} << 16 |
         uint32_t{asc} << 8 | ascq;
}

constexpr Status status_part(uint32_t v) {
  return static_cast<Status>(v >> 24);
}
constexpr SenseKey key_part(uint32_t v) {
  return static_cast<SenseKey>((v >> 16) & 0xFF);
}
constexpr uint8_t asc_part(uint32_t v) {
  return static_cast<uint8_t>(v >> 8);
}
constexpr uint8_t ascq_part(uint32_t v) {
  return static_cast<uint8_t>(v);
}

std::string sense_text(SenseKey key, uint8_t asc, uint8_t ascq) {
  char code[16];
  std::snprintf(code, sizeof code, " (%02X/%02X)", asc, ascq);
  std::string s(sense_key_name(key));
  s += ", ";
  s += describe_asc(asc, ascq);
  s += code;
  return s;
}

class ScsiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "scsi"; }

  std::string message(int value) const override {
    const auto v = static_cast<uint32_t>(value);
    const Status status = status_part(v);
    std::string s;
    if (status_name(status) == "UNKNOWN STATUS") {
      char buf[24];
      std::snprintf(buf, sizeof buf, "STATUS 0x%02X", static_cast<unsigned>(v >> 24));
      s = buf;
    } else {
      s = status_name(status);
    }
    const bool has_sense = (v & 0x00FFFFFF) != 0;
    if (status == Status::check_condition || has_sense) {
      s += ": ";
      s += sense_text(key_part(v), asc_part(v), ascq_part(v));
    }
    return s;
  }

  // The single place that turns a SCSI outcome into an errno-like condition for the NBD side
  // (NBD proto.md "Error values": EIO, EPERM, ENOSPC, EINVAL, ...).
  std::error_condition default_error_condition(int value) const noexcept override {
    const auto v = static_cast<uint32_t>(value);
    switch (status_part(v)) {
      case Status::good:
      case Status::condition_met:
        return {};
      case Status::busy:
      case Status::task_set_full:
        return std::errc::resource_unavailable_try_again;
      case Status::reservation_conflict:
        return std::errc::permission_denied;
      case Status::check_condition:
        break;
      default:
        return std::errc::io_error;
    }
    switch (key_part(v)) {
      case SenseKey::illegal_request:
        return std::errc::invalid_argument;
      case SenseKey::data_protect:
        // SBC-3 §4.7.3.6: 27/07 is a thin-provisioned LU out of backing space, not a read-only
        // medium (Linux maps it to BLK_STS_NOSPC).
        if (asc_part(v) == 0x27 && ascq_part(v) == 0x07) return std::errc::no_space_on_device;
        return std::errc::read_only_file_system;
      default:
        // MEDIUM ERROR, HARDWARE ERROR, NOT READY, ABORTED COMMAND, UNIT ATTENTION and the rest.
        return std::errc::io_error;
    }
  }
};

bool is_scsi(const std::error_code& ec) {
  return ec.category() == category();
}

bool in_progress_not_ready(uint8_t ascq) {
  // SPC-4 Annex D, ASC 04h: the LU is busy getting ready and will be soon. Linux
  // scsi_io_completion_action() answers these with a delayed retry.
  switch (ascq) {
    case 0x01:  // in process of becoming ready
    case 0x04:  // format in progress
    case 0x05:  // rebuild in progress
    case 0x06:  // recalculation in progress
    case 0x07:  // operation in progress
    case 0x08:  // long write in progress
    case 0x09:  // self-test in progress
    case 0x11:  // notify (enable spinup) required
    case 0x14:  // space allocation in progress
    case 0x1A:  // start stop unit command in progress
    case 0x1B:  // sanitize in progress
      return true;
    default:
      return false;
  }
}

Disposition classify_sense(const Sense& sense) {
  // SPC-4 §4.5.5: a deferred error belongs to an earlier command and the current one was not
  // performed; Linux scsi_check_sense() retries it (NEEDS_RETRY).
  if (sense.deferred) return Disposition::retry_same_path;

  switch (sense.key) {
    case SenseKey::recovered_error:
    case SenseKey::completed:
      // The command completed; the sense is informational (Linux sd_done() counts every byte as
      // good for RECOVERED ERROR).
      return Disposition::success;

    case SenseKey::no_sense:
      // A CHECK CONDITION that reports nothing: Linux sd_done() clears the result and lets the
      // request be retried, as nothing says the data or the path is bad.
      return Disposition::retry_same_path;

    case SenseKey::unit_attention:
      // A one-time event (reset, mode/capacity/ALUA/LUN inventory change) that reporting has
      // already cleared for this I_T nexus: Linux retries (NEEDS_RETRY) and the tur checker
      // re-issues TEST UNIT READY. The caller may look at the ASC to refresh what changed.
      return Disposition::retry_same_path;

    case SenseKey::not_ready:
      if (sense.asc == 0x04) {
        switch (sense.ascq) {
          case 0x0A:
            // ALUA state transition (SPC-4 §5.16.2.4.7): the port will soon answer again, in
            // its new state. Linux scsi_dh_alua's alua_check_sense() retries (NEEDS_RETRY) and
            // the tur checker says PATH_PENDING, not down; the caller bounds the wait.
            return Disposition::retry_same_path;
          case 0x0B:  // target port in standby: tur checker -> PATH_GHOST
          case 0x0C:  // target port unavailable
            // SPC-4 §5.15.2: the LU is reachable, but not through this target port group now.
            return Disposition::path_error;
          default:
            if (in_progress_not_ready(sense.ascq)) return Disposition::retry_same_path;
            break;
        }
      }
      // Any other NOT READY (cause not reportable, manual intervention, medium not present, LU
      // not responding): the tur checker reports PATH_DOWN and Linux fails the request with
      // BLK_STS_IOERR, which dm-multipath's blk_path_error() counts against the path.
      return Disposition::path_error;

    case SenseKey::illegal_request:
      // 25/00: the LUN is no longer mapped behind this target port; the tur checker reports
      // PATH_DISCONNECTED and Linux does not mark it a target failure, so dm-multipath fails the
      // path. Every other ILLEGAL REQUEST is about the command itself and would be refused on
      // any path (Linux: SCSIML_STAT_TGT_FAILURE -> BLK_STS_TARGET, not a path error).
      if (sense.asc == 0x25 && sense.ascq == 0x00) return Disposition::path_error;
      return Disposition::target_error;

    case SenseKey::aborted_command:
      // 10/xx: protection information check failed; the data itself is bad (Linux:
      // BLK_STS_PROTECTION, not a path error).
      if (sense.asc == 0x10) return Disposition::target_error;
      // The target gave up on the command for reasons of its own or of the transport (47/xx
      // CRC error, 4B/00 data phase error, 44/00...). Linux retries, then fails with
      // BLK_STS_IOERR, a path error for dm-multipath; another path is as cheap as a retry here.
      return Disposition::path_error;

    case SenseKey::medium_error:    // the LBAs are unreadable on every path
    case SenseKey::hardware_error:  // Linux: SCSIML_STAT_TGT_FAILURE, not a path error
    case SenseKey::data_protect:    // write protected, or 27/07 out of thin space
    case SenseKey::blank_check:
    case SenseKey::copy_aborted:
    case SenseKey::volume_overflow:
    case SenseKey::miscompare:
      return Disposition::target_error;

    case SenseKey::vendor_specific:
    case SenseKey::reserved_c:
      break;
  }
  // Keys we cannot interpret: failing over on an answer the LU gave would only repeat it.
  return Disposition::target_error;
}

}  // namespace

const std::error_category& category() {
  static const ScsiCategory instance;
  return instance;
}

std::error_code make_error(Status status, const std::optional<Sense>& sense) {
  if (status == Status::good || status == Status::condition_met) return {};
  const uint32_t v = sense ? pack(status, sense->key, sense->asc, sense->ascq)
                           : pack(status, SenseKey::no_sense, 0, 0);
  return {static_cast<int>(v), category()};
}

Status status_of(const std::error_code& ec) {
  return is_scsi(ec) ? status_part(static_cast<uint32_t>(ec.value())) : Status::good;
}

SenseKey sense_key_of(const std::error_code& ec) {
  return is_scsi(ec) ? key_part(static_cast<uint32_t>(ec.value())) : SenseKey::no_sense;
}

uint8_t asc_of(const std::error_code& ec) {
  return is_scsi(ec) ? asc_part(static_cast<uint32_t>(ec.value())) : 0;
}

uint8_t ascq_of(const std::error_code& ec) {
  return is_scsi(ec) ? ascq_part(static_cast<uint32_t>(ec.value())) : 0;
}

std::string_view disposition_name(Disposition disposition) {
  switch (disposition) {
    case Disposition::success:
      return "success";
    case Disposition::retry_same_path:
      return "retry on the same path";
    case Disposition::path_error:
      return "path error";
    case Disposition::target_error:
      return "target error";
  }
  return "unknown";
}

Disposition classify(Status status, const std::optional<Sense>& sense) {
  switch (status) {
    case Status::good:
    case Status::condition_met:
      return Disposition::success;

    case Status::busy:
    case Status::task_set_full:
      // SAM-5 §5.3.1: the LU's task set is temporarily full; every path leads to the same LU,
      // so only waiting helps (Linux: ADD_TO_MLQUEUE / NEEDS_RETRY).
      return Disposition::retry_same_path;

    case Status::task_aborted:
      // Another I_T nexus aborted the command (TAS=1); nothing was wrong with it or with this
      // path (Linux: maybe_retry).
      return Disposition::retry_same_path;

    case Status::aca_active:
      // We never set NACA, so the ACA belongs to another initiator; SAM-5 §5.3.1 says to reissue
      // once it is cleared.
      return Disposition::retry_same_path;

    case Status::reservation_conflict:
      // Another initiator holds the reservation: Linux fails at once with BLK_STS_NEXUS, which
      // dm-multipath does not count against the path (paths are registered alike by
      // mpathpersist), and the tur checker treats it as path up.
      return Disposition::target_error;

    case Status::check_condition:
      // iSCSI always carries sense with CHECK CONDITION (RFC 7143 §11.4.7.2); if it is missing,
      // nothing says what failed, so treat it like a NO SENSE and let the retry budget decide.
      if (!sense) return Disposition::retry_same_path;
      return classify_sense(*sense);
  }
  // Obsolete or unknown status byte (INTERMEDIATE, COMMAND TERMINATED, ...): the LU's answer.
  return Disposition::target_error;
}

}  // namespace scsi
