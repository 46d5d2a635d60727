// error_for (the one internal-error -> NBD errno mapping) and the export advertisement
// (transmission flags, NBD_INFO_BLOCK_SIZE).
#include <catch2/catch.hpp>

#include <cerrno>
#include <system_error>

#include "nbd/errors.hpp"
#include "nbd/export.hpp"
#include "nbd/wire.hpp"

namespace {

// A foreign category whose codes map onto std::errc, as the SCSI/iSCSI categories do.
class FakeScsiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "fake-scsi"; }
  std::string message(int) const override { return "fake"; }
  std::error_condition default_error_condition(int value) const noexcept override {
    return value == 1 ? std::errc::io_error : std::errc::no_space_on_device;
  }
};

}  // namespace

TEST_CASE("error_for maps by error condition", "[nbd]") {
  using nbd::error_for;
  using std::errc;
  CHECK(error_for({}) == 0);
  CHECK(error_for(make_error_code(errc::io_error)) == nbd::kEio);
  CHECK(error_for(make_error_code(errc::invalid_argument)) == nbd::kEinval);
  CHECK(error_for(make_error_code(errc::no_space_on_device)) == nbd::kEnospc);
  CHECK(error_for(make_error_code(errc::file_too_large)) == nbd::kEnospc);
  CHECK(error_for(make_error_code(errc::read_only_file_system)) == nbd::kEperm);
  CHECK(error_for(make_error_code(errc::permission_denied)) == nbd::kEperm);
  CHECK(error_for(make_error_code(errc::not_enough_memory)) == nbd::kEnomem);
  CHECK(error_for(make_error_code(errc::not_supported)) == nbd::kEnotsup);
  CHECK(error_for(make_error_code(errc::operation_not_supported)) == nbd::kEnotsup);
  CHECK(error_for(make_error_code(errc::value_too_large)) == nbd::kEoverflow);
  CHECK(error_for(make_error_code(errc::timed_out)) == nbd::kEio);
  CHECK(error_for(std::error_code(ESHUTDOWN, std::generic_category())) == nbd::kEshutdown);
  CHECK(error_for(std::error_code(ESHUTDOWN, std::system_category())) == nbd::kEshutdown);
  // A lost path is an I/O error for the client, not a reason to disconnect.
  CHECK(error_for(make_error_code(errc::connection_aborted)) == nbd::kEio);
  CHECK(error_for(make_error_code(errc::broken_pipe)) == nbd::kEio);
  static const FakeScsiCategory scsi;
  CHECK(error_for(std::error_code(1, scsi)) == nbd::kEio);
  CHECK(error_for(std::error_code(2, scsi)) == nbd::kEnospc);
  CHECK(error_for(nbd::errc::bad_request_magic) == nbd::kEio);
}

TEST_CASE("nbd error category names its codes", "[nbd]") {
  const std::error_code ec = nbd::errc::unknown_export;
  CHECK(std::string(ec.category().name()) == "nbd");
  CHECK(ec.message() == "unknown export name");
  CHECK(nbd::nbd_error_name(nbd::kEnospc) == "ENOSPC");
}

TEST_CASE("transmission flags follow DeviceInfo", "[nbd]") {
  blockdev::DeviceInfo info;
  info.supports_fua = false;
  CHECK(nbd::transmission_flags(info, false) ==
        (nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagCanMultiConn));
  info.supports_fua = true;
  info.supports_trim = true;
  info.supports_write_zeroes = true;
  CHECK(nbd::transmission_flags(info, false) ==
        (nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagCanMultiConn | nbd::kFlagSendFua |
         nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes | nbd::kFlagSendFastZero));
  CHECK((nbd::transmission_flags(info, true) & nbd::kFlagSendDf) != 0);
  info.read_only = true;
  const uint16_t ro = nbd::transmission_flags(info, false);
  CHECK((ro & nbd::kFlagReadOnly) != 0);
  CHECK((ro & (nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes)) == 0);
}

TEST_CASE("block sizes come from the device's block limits", "[nbd]") {
  blockdev::DeviceInfo info;
  info.logical_block_size = 512;
  info.physical_block_size = 512;
  info.max_transfer_bytes = 0;
  CHECK(nbd::block_sizes(info) == nbd::BlockSizes{512, 4096, 32u << 20});

  info.logical_block_size = 4096;
  info.physical_block_size = 4096;
  info.optimal_transfer_bytes = 192 * 1024;  // rounded down to a power of 2
  info.max_transfer_bytes = 1 << 20;
  CHECK(nbd::block_sizes(info) == nbd::BlockSizes{4096, 128 * 1024, 1 << 20});

  info.optimal_transfer_bytes = 64u << 20;  // capped
  info.max_transfer_bytes = 64u << 20;      // capped at 32 MiB
  CHECK(nbd::block_sizes(info) == nbd::BlockSizes{4096, 1 << 20, 32u << 20});

  info.logical_block_size = 512;
  info.physical_block_size = 512;
  info.optimal_transfer_bytes = 0;
  info.max_transfer_bytes = 1000;  // rounded to the minimum; preferred never above it
  const auto small = nbd::block_sizes(info);
  CHECK(small.maximum == 512);
  CHECK(small.preferred == 512);

  info.max_transfer_bytes = 1 << 20;
  info.physical_block_size = 8192;
  CHECK(nbd::block_sizes(info).preferred == 8192);
}
