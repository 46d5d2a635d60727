#include "mpio/lun_device.hpp"

#include <algorithm>
#include <boost/asio.hpp>
#include <cstring>
#include <optional>

#include <iscsi/errors.hpp>
#include <scsi/capacity.hpp>
#include <scsi/cdb.hpp>
#include <scsi/error.hpp>
#include <scsi/mode_sense.hpp>
#include <scsi/report_luns.hpp>
#include <scsi/sense.hpp>
#include <scsi/status.hpp>

namespace mpio {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

// The outcome of one SCSI command as one error code: empty for success, the iSCSI category for
// a command that did not complete, the SCSI category for a status other than GOOD.
std::error_code outcome_of(const iscsi::ScsiTask& task, std::string& detail) {
  if (task.transport_error) {
    detail = task.transport_detail;
    return task.transport_error;
  }
  const auto status = static_cast<scsi::Status>(task.status);
  if (status == scsi::Status::good || status == scsi::Status::condition_met) {
    // A read that came back short has not produced the bytes the client asked for.
    if (task.direction == iscsi::DataDirection::read && task.residual_underflow &&
        task.residual_count > 0) {
      detail = "target returned " + std::to_string(task.residual_count) + " bytes fewer than asked";
      return iscsi::errc::protocol_violation;
    }
    return {};
  }
  auto sense = scsi::decode_sense(task.sense);
  auto ec = scsi::make_error(status, sense);
  detail = ec.message();
  return ec;
}

bool worth_retrying(const std::error_code& ec) {
  if (ec.category() != scsi::category()) return false;
  // Disposition is decided in one place (scsi::classify); we only need its verdict.
  auto status = scsi::status_of(ec);
  std::optional<scsi::Sense> sense;
  if (status == scsi::Status::check_condition) {
    scsi::Sense s;
    s.key = scsi::sense_key_of(ec);
    s.asc = scsi::asc_of(ec);
    s.ascq = scsi::ascq_of(ec);
    sense = s;
  }
  return scsi::classify(status, sense) == scsi::Disposition::retry_same_path;
}

}  // namespace

// One SCSI command on its way, with what to do when it completes.
struct Command : iscsi::ScsiTask {
  std::function<void(Command&)> then;
  std::vector<std::byte> owned;  // parameter data we built (UNMAP list, WRITE SAME block)
  int attempts = 0;
};

// A block request split into commands; completes when the last one does.
struct Operation {
  IoRequest* request = nullptr;
  std::vector<std::unique_ptr<Command>> commands;
  size_t remaining = 0;
  std::error_code error;
  std::string detail;
};

struct LunDevice::Impl : std::enable_shared_from_this<LunDevice::Impl> {
  Impl(asio::io_context& io, LunConfig c) : io(io), config(std::move(c)) {}

  asio::io_context& io;
  LunConfig config;
  std::vector<std::shared_ptr<iscsi_io::PathSession>> paths;
  DeviceInfo info;
  LunIdentity identity;
  iscsi::Lun lun;
  uint32_t command_bytes = 1u << 20;
  bool sync_cache16 = true;
  size_t in_flight = 0;
  std::function<void(const std::string&, std::error_code, const std::string&)> path_failure;
  std::function<void()> on_idle;
  IoRequest final_flush;  // the SYNCHRONIZE CACHE that close() sends

  iscsi_io::PathSession& path() { return *paths.front(); }

  // ---------------------------------------------------------------- one command

  void execute(Command& cmd) {
    ++cmd.attempts;
    cmd.lun = lun;
    cmd.on_complete = [this](iscsi::ScsiTask& t) {
      auto& c = static_cast<Command&>(t);
      std::string detail;
      auto ec = outcome_of(c, detail);
      if (ec && worth_retrying(ec) && c.attempts <= config.max_retries) {
        // Re-issue from a fresh handler invocation, not from inside the session's completion.
        asio::post(io, [this, &c] { execute(c); });
        return;
      }
      c.then(c);
    };
    path().submit(cmd);
  }

  awaitable<std::error_code> run(Command& cmd, std::string& detail) {
    co_await asio::async_initiate<decltype(use_awaitable), void()>(
        [this, &cmd](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          cmd.then = [this, h](Command&) {
            asio::post(io, [h]() mutable { std::move (*h)(); });
          };
          execute(cmd);
        },
        use_awaitable);
    co_return outcome_of(cmd, detail);
  }

  // Data-In command with a fresh buffer of `allocation` bytes; `data` gets what arrived.
  awaitable<std::error_code> read_data(const scsi::Cdb& cdb, uint32_t allocation,
                                       std::vector<std::byte>& data, std::string& detail) {
    Command cmd;
    cmd.cdb = cdb.bytes;
    cmd.direction = iscsi::DataDirection::read;
    data.assign(allocation, std::byte{0});
    cmd.read_buffer = data;
    auto ec = co_await run(cmd, detail);
    // Short parameter data is normal for INQUIRY and friends: keep what came.
    if (ec == make_error_code(iscsi::errc::protocol_violation) && cmd.residual_underflow) ec = {};
    if (!ec && cmd.residual_underflow && cmd.residual_count <= data.size())
      data.resize(data.size() - cmd.residual_count);
    co_return ec;
  }

  awaitable<std::vector<std::byte>> vpd_page(uint8_t page, std::string& detail) {
    std::vector<std::byte> data;
    auto ec = co_await read_data(scsi::inquiry(true, page, 4096), 4096, data, detail);
    if (ec) data.clear();
    co_return data;
  }

  // ---------------------------------------------------------------- probe (SPC-4 / SBC-3)

  awaitable<std::error_code> probe(std::string& detail) {
    lun = iscsi::Lun{scsi::encode_lun(config.lun)};
    // TEST UNIT READY first: the unit attention a fresh nexus carries (29/00 power on or
    // reset) is consumed by the retry in execute().
    {
      Command tur;
      tur.cdb = scsi::test_unit_ready().bytes;
      if (auto ec = co_await run(tur, detail)) {
        detail = "LUN " + std::to_string(config.lun) + " is not ready: " + detail;
        co_return ec;
      }
    }
    std::vector<std::byte> data;
    if (auto ec = co_await read_data(scsi::inquiry(false, 0, 255), 255, data, detail))
      co_return ec;
    auto inquiry = scsi::parse_standard_inquiry(data);
    if (!inquiry) {
      detail = "malformed standard INQUIRY data";
      co_return iscsi::errc::protocol_violation;
    }
    if (inquiry->peripheral_qualifier != 0) {
      detail = "LUN " + std::to_string(config.lun) + " does not exist on the target";
      co_return std::make_error_code(std::errc::no_such_device);
    }
    if (inquiry->device_type != 0x00) {
      detail = "LUN " + std::to_string(config.lun) + " is not a block device (peripheral type 0x" +
               std::to_string(inquiry->device_type) + ")";
      co_return std::make_error_code(std::errc::no_such_device);
    }
    identity.inquiry = *inquiry;

    std::vector<uint8_t> pages;
    if (auto p = scsi::parse_supported_vpd_pages(co_await vpd_page(scsi::vpd::supported_pages,
                                                                   detail)))
      pages = *p;
    auto supported = [&](uint8_t page) {
      return std::find(pages.begin(), pages.end(), page) != pages.end();
    };
    if (supported(scsi::vpd::unit_serial_number))
      if (auto s = scsi::parse_unit_serial_number(
              co_await vpd_page(scsi::vpd::unit_serial_number, detail)))
        identity.serial = *s;
    if (supported(scsi::vpd::device_identification))
      if (auto d = scsi::parse_device_identification(
              co_await vpd_page(scsi::vpd::device_identification, detail)))
        identity.wwid = scsi::wwid_from_designators(*d);
    if (identity.wwid.empty() && !identity.serial.empty()) identity.wwid = "S" + identity.serial;
    if (supported(scsi::vpd::block_limits))
      if (auto l = scsi::parse_block_limits(co_await vpd_page(scsi::vpd::block_limits, detail))) {
        identity.limits = *l;
        identity.has_block_limits = true;
      }
    if (supported(scsi::vpd::logical_block_provisioning))
      if (auto p = scsi::parse_logical_block_provisioning(
              co_await vpd_page(scsi::vpd::logical_block_provisioning, detail))) {
        identity.provisioning = *p;
        identity.has_provisioning = true;
      }

    // SBC-3 §5.16: READ CAPACITY(16) is needed past 2 TiB and reports the physical block
    // exponent and provisioning; (10) is the fallback for targets without it.
    uint32_t block_length = 0;
    uint8_t exponent = 0;
    bool lbpme = false;
    if (auto ec = co_await read_data(scsi::read_capacity16(32), 32, data, detail); !ec) {
      if (auto rc = scsi::parse_read_capacity16(data)) {
        identity.blocks = rc->last_lba + 1;
        block_length = rc->block_length;
        exponent = rc->logical_per_physical_exponent;
        lbpme = rc->lbpme;
      }
    }
    if (block_length == 0) {
      if (auto ec = co_await read_data(scsi::read_capacity10(), 8, data, detail)) co_return ec;
      auto rc = scsi::parse_read_capacity10(data);
      if (!rc) {
        detail = "malformed READ CAPACITY(10) data";
        co_return iscsi::errc::protocol_violation;
      }
      identity.blocks = uint64_t{rc->last_lba} + 1;
      block_length = rc->block_length;
    }
    if (block_length < 512 || block_length > 65536 || (block_length & (block_length - 1)) != 0) {
      detail = "unsupported logical block length " + std::to_string(block_length);
      co_return std::make_error_code(std::errc::not_supported);
    }

    // MODE SENSE(10) header: write protection and DPOFUA (SBC-3 §6.4.2).
    bool read_only = false;
    bool fua = true;
    if (auto ec = co_await read_data(scsi::mode_sense10(0x3f, 0, 255), 255, data, detail); !ec) {
      if (auto h = scsi::parse_mode_sense10_header(data)) {
        read_only = h->write_protected;
        fua = h->dpofua;
      }
    }

    build_info(block_length, exponent, lbpme, read_only, fua);
    detail.clear();
    co_return std::error_code{};
  }

  void build_info(uint32_t block_length, uint8_t exponent, bool lbpme, bool read_only, bool fua) {
    const auto& l = identity.limits;
    info.wwid = identity.wwid;
    info.vendor = identity.inquiry.vendor;
    info.product = identity.inquiry.product;
    info.logical_block_size = block_length;
    info.physical_block_size = block_length << std::min<uint8_t>(exponent, 7);
    info.size_bytes = identity.blocks * block_length;
    info.read_only = read_only;
    info.supports_fua = fua;
    // One command carries at most the LU's MAXIMUM TRANSFER LENGTH (VPD 0xB0) and our cap;
    // larger requests are split. The NBD maximum advertised is the same figure.
    uint64_t limit = config.max_command_bytes;
    if (identity.has_block_limits && l.max_transfer_length_blocks > 0)
      limit = std::min<uint64_t>(limit, uint64_t{l.max_transfer_length_blocks} * block_length);
    command_bytes = static_cast<uint32_t>(std::max<uint64_t>(limit / block_length, 1) * block_length);
    info.max_transfer_bytes = std::max<uint32_t>(command_bytes, 32u << 20);
    if (identity.has_block_limits && l.optimal_transfer_length_blocks > 0)
      info.optimal_transfer_bytes = static_cast<uint32_t>(std::min<uint64_t>(
          uint64_t{l.optimal_transfer_length_blocks} * block_length, command_bytes));
    // SBC-3 §5.28/§5.50: UNMAP needs LBPU in VPD 0xB2 (and a thin LU, LBPME); WRITE SAME(16)
    // is used for zeroing whenever the LU reports a WRITE SAME limit or LBPWS.
    const auto& p = identity.provisioning;
    info.supports_trim = !read_only && identity.has_provisioning && p.lbpu && lbpme &&
                         identity.has_block_limits && l.max_unmap_lba_count > 0 &&
                         l.max_unmap_descriptor_count > 0;
    info.write_zeroes_may_unmap = identity.has_provisioning && p.lbpws && lbpme;
    info.supports_write_zeroes =
        !read_only && ((identity.has_block_limits && l.max_write_same_length > 0) ||
                       info.write_zeroes_may_unmap);
  }

  // ---------------------------------------------------------------- block requests

  Command& add_command(Operation& op) {
    op.commands.push_back(std::make_unique<Command>());
    return *op.commands.back();
  }

  void start(std::shared_ptr<Operation> op) {
    ++in_flight;
    op->remaining = op->commands.size();
    if (op->remaining == 0) {
      complete(*op);
      return;
    }
    // Every command of the operation is issued at once: the session queues what the CmdSN
    // window does not yet allow.
    for (auto& cmd : op->commands) {
      cmd->then = [this, op](Command& c) {
        std::string detail;
        auto ec = outcome_of(c, detail);
        if (ec && !op->error) {
          op->error = ec;
          op->detail = detail;
        }
        if (--op->remaining == 0) complete(*op);
      };
      execute(*cmd);
    }
  }

  void complete(Operation& op) {
    --in_flight;
    IoRequest* request = op.request;
    auto ec = op.error;
    auto detail = op.detail;
    request->done(ec, detail);
    if (in_flight == 0 && on_idle) {
      auto idle = std::move(on_idle);
      on_idle = nullptr;
      idle();
    }
  }

  void submit(IoRequest& request) {
    auto op = std::make_shared<Operation>();
    op->request = &request;
    const uint32_t bs = info.logical_block_size;
    const uint64_t first_lba = request.offset / bs;
    switch (request.op) {
      case IoOp::read:
      case IoOp::write: {
        const bool write = request.op == IoOp::write;
        for (uint64_t done = 0; done < request.length;) {
          const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(command_bytes, request.length - done));
          Command& cmd = add_command(*op);
          const uint64_t lba = first_lba + done / bs;
          if (write) {
            cmd.cdb = scsi::write16(lba, n / bs, request.fua).bytes;
            cmd.direction = iscsi::DataDirection::write;
            cmd.write_buffer = request.buffer.subspan(done, n);
          } else {
            cmd.cdb = scsi::read16(lba, n / bs, false).bytes;
            cmd.direction = iscsi::DataDirection::read;
            cmd.read_buffer = request.buffer.subspan(done, n);
          }
          done += n;
        }
        break;
      }
      case IoOp::flush: {
        // SBC-3 §5.22: LBA 0 with 0 blocks covers the whole medium.
        Command& cmd = add_command(*op);
        cmd.cdb = sync_cache16 ? scsi::synchronize_cache16(0, 0).bytes
                               : scsi::synchronize_cache10(0, 0).bytes;
        break;
      }
      case IoOp::trim: {
        // SBC-3 §5.28: at most MAXIMUM UNMAP LBA COUNT blocks per descriptor and MAXIMUM UNMAP
        // BLOCK DESCRIPTOR COUNT descriptors per command.
        const auto& l = identity.limits;
        const uint64_t per_descriptor = std::max<uint32_t>(l.max_unmap_lba_count, 1);
        const size_t per_command = std::clamp<uint32_t>(l.max_unmap_descriptor_count, 1, 255);
        std::vector<scsi::UnmapDescriptor> descriptors;
        uint64_t blocks = request.length / bs;
        uint64_t lba = first_lba;
        auto emit = [&] {
          Command& cmd = add_command(*op);
          cmd.owned = scsi::unmap_parameter_list(descriptors);
          cmd.cdb = scsi::unmap(static_cast<uint16_t>(cmd.owned.size())).bytes;
          cmd.direction = iscsi::DataDirection::write;
          cmd.write_buffer = cmd.owned;
          descriptors.clear();
        };
        while (blocks > 0) {
          const uint32_t n = static_cast<uint32_t>(std::min(blocks, per_descriptor));
          descriptors.push_back({lba, n});
          lba += n;
          blocks -= n;
          if (descriptors.size() == per_command) emit();
        }
        if (!descriptors.empty()) emit();
        break;
      }
      case IoOp::write_zeroes: {
        // SBC-3 §5.50: WRITE SAME(16) with one block of zeros, split by MAXIMUM WRITE SAME
        // LENGTH; UNMAP=1 lets a thin LU deallocate when the client allows holes.
        const auto& l = identity.limits;
        const uint64_t per_command =
            l.max_write_same_length > 0 ? std::min<uint64_t>(l.max_write_same_length, 0xffffffffu)
                                        : 65535;
        const bool unmap = request.may_unmap && info.write_zeroes_may_unmap;
        uint64_t blocks = request.length / bs;
        uint64_t lba = first_lba;
        while (blocks > 0) {
          const uint32_t n = static_cast<uint32_t>(std::min(blocks, per_command));
          Command& cmd = add_command(*op);
          cmd.cdb = scsi::write_same16(lba, n, unmap).bytes;
          cmd.owned.assign(bs, std::byte{0});
          cmd.direction = iscsi::DataDirection::write;
          cmd.write_buffer = cmd.owned;
          lba += n;
          blocks -= n;
        }
        break;
      }
    }
    if (request.op == IoOp::flush) {
      start_flush(op);
      return;
    }
    start(op);
  }

  void start_flush(std::shared_ptr<Operation> op) {
    ++in_flight;
    Command& cmd = *op->commands.front();
    cmd.then = [this, op](Command& c) {
      std::string detail;
      auto ec = outcome_of(c, detail);
      // ILLEGAL REQUEST, invalid command operation code (20/00): no SYNCHRONIZE CACHE(16).
      if (ec && sync_cache16 && ec.category() == scsi::category() &&
          scsi::sense_key_of(ec) == scsi::SenseKey::illegal_request && scsi::asc_of(ec) == 0x20) {
        sync_cache16 = false;
        c.cdb = scsi::synchronize_cache10(0, 0).bytes;
        c.attempts = 0;
        execute(c);
        return;
      }
      op->error = ec;
      op->detail = detail;
      complete(*op);
    };
    execute(cmd);
  }
};

// ---------------------------------------------------------------- public face

LunDevice::LunDevice(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
LunDevice::~LunDevice() = default;
const DeviceInfo& LunDevice::info() const { return impl_->info; }
const LunIdentity& LunDevice::identity() const { return impl_->identity; }
size_t LunDevice::requests_in_flight() const { return impl_->in_flight; }
void LunDevice::submit(IoRequest& request) { impl_->submit(request); }

void LunDevice::on_path_failure(
    std::function<void(const std::string&, std::error_code, const std::string&)> handler) {
  impl_->path_failure = std::move(handler);
}

void LunDevice::open(asio::io_context& io, LunConfig config, OpenHandler done) {
  auto impl = std::make_shared<Impl>(io, std::move(config));
  if (impl->config.paths.empty()) {
    done(std::make_error_code(std::errc::invalid_argument), "no paths configured", nullptr);
    return;
  }
  auto path = iscsi_io::PathSession::create(io, impl->config.paths.front());
  impl->paths.push_back(path);
  path->start([impl, path, done](std::error_code ec, const std::string& detail) {
    if (ec) {
      done(ec, "login to " + iscsi_io::describe(path->config()) + " failed: " + detail, nullptr);
      return;
    }
    path->on_failure([impl, path](std::error_code fec, const std::string& fdetail) {
      if (impl->path_failure) impl->path_failure(iscsi_io::describe(path->config()), fec, fdetail);
    });
    asio::co_spawn(
        impl->io,
        [impl, path, done]() -> awaitable<void> {
          std::string probe_detail;
          auto pec = co_await impl->probe(probe_detail);
          if (pec) {
            path->close();
            done(pec, probe_detail, nullptr);
            co_return;
          }
          done({}, {}, std::shared_ptr<LunDevice>(new LunDevice(impl)));
        },
        asio::detached);
  });
}

void LunDevice::close(std::chrono::milliseconds timeout, std::function<void(std::error_code)> done) {
  auto impl = impl_;
  auto after_drain = [impl, timeout, done]() {
    // Flush the LU's volatile cache before the sessions go (SBC-3 §5.22), then log out.
    impl->final_flush = IoRequest{};
    impl->final_flush.op = IoOp::flush;
    // A raw pointer: the request lives inside *impl, and a shared_ptr here would be a cycle.
    impl->final_flush.done = [raw = impl.get(), timeout, done](std::error_code fec,
                                                               const std::string&) {
      auto remaining = std::make_shared<size_t>(raw->paths.size());
      for (auto& p : raw->paths) {
        p->logout(timeout, [remaining, done, fec](std::error_code) {
          if (--*remaining == 0) done(fec);
        });
      }
    };
    if (impl->paths.front()->ready()) {
      impl->submit(impl->final_flush);
    } else {
      impl->final_flush.done(iscsi::errc::session_failed, "no path");
    }
  };
  if (impl->in_flight == 0) {
    after_drain();
  } else {
    impl->on_idle = after_drain;
  }
}

}  // namespace mpio
