// The pure side of /dev/nbdN attachment: generic netlink messages of the nbd family as exact
// bytes, reply parsing (hostile and truncated input included), the timeout derivation, the
// max_sectors_kb rule and device-path parsing. The kernel side runs in the guest test
// (tests/guest/, CTest integration.guest).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "common/hex.hpp"
#include "nbd_kernel/kernel_device.hpp"

// Netlink fields are in host byte order; these vectors are written for little-endian hosts
// (x86-64, aarch64), the only ones the project builds for.
static_assert(std::endian::native == std::endian::little);

namespace {

using namespace std::chrono_literals;
using nbd::kernel_errc;
namespace netlink = nbd::netlink;

std::string hex(std::string_view spaced) {
  return common::to_hex(common::from_hex(spaced));
}
std::string hex(const std::vector<std::byte>& bytes) {
  return common::to_hex(bytes);
}

// A controller answer to CTRL_CMD_GETFAMILY "nbd" (family id 0x1a), then the ack, both seq 7.
constexpr std::string_view kFamilyAnswer =
    "24000000 1000 0000 07000000 00000000"   // nlmsghdr: 36 bytes, GENL_ID_CTRL
    "01 02 0000"                             // CTRL_CMD_NEWFAMILY, version 2
    "0800 0200 6e626400"                     // CTRL_ATTR_FAMILY_NAME "nbd"
    "0600 0100 1a00 0000"                    // CTRL_ATTR_FAMILY_ID 0x1a, padded
    "24000000 0200 0001 07000000 00000000"   // NLMSG_ERROR, NLM_F_CAPPED
    "00000000"                               // error 0: the ack
    "1c000000 1000 0500 07000000 00000000";  // the request's header, echoed

}  // namespace

TEST_CASE("CTRL_CMD_GETFAMILY for nbd, byte for byte", "[nbd_kernel]") {
  CHECK(hex(netlink::get_family_request("nbd", 7)) ==
        hex("1c000000 1000 0500 07000000 00000000"  // 28 bytes, GENL_ID_CTRL, REQUEST|ACK
            "03 01 0000"                            // CTRL_CMD_GETFAMILY
            "0800 0200 6e626400"));                 // CTRL_ATTR_FAMILY_NAME "nbd\0"
}

TEST_CASE("NBD_CMD_CONNECT carries every attribute, sockets nested", "[nbd_kernel]") {
  netlink::ConnectRequest request;
  request.index = 0;
  request.size_bytes = 256u << 20;
  request.block_size = 512;
  request.server_flags = 0x0105;  // HAS_FLAGS | SEND_FLUSH | CAN_MULTI_CONN
  request.timeout_seconds = 0;
  request.dead_connection_timeout_seconds = 30;
  request.socket_fds = {5};
  request.backend_identifier = "iscsi-mpio";
  CHECK(hex(netlink::connect_request(0x1a, 9, request)) ==
        hex("78000000 1a00 0500 09000000 00000000"     // 120 bytes to family 0x1a
            "01 01 0000"                               // NBD_CMD_CONNECT, NBD_GENL_VERSION
            "0800 0100 00000000"                       // NBD_ATTR_INDEX 0
            "0c00 0200 0000001000000000"               // NBD_ATTR_SIZE_BYTES 256 MiB
            "0c00 0300 0002000000000000"               // NBD_ATTR_BLOCK_SIZE_BYTES 512
            "0c00 0500 0501000000000000"               // NBD_ATTR_SERVER_FLAGS
            "0c00 0400 0000000000000000"               // NBD_ATTR_TIMEOUT 0: never
            "0c00 0800 1e00000000000000"               // NBD_ATTR_DEAD_CONN_TIMEOUT 30
            "1000 0780"                                // NBD_ATTR_SOCKETS | NLA_F_NESTED
            "0c00 0180"                                //   NBD_SOCK_ITEM | NLA_F_NESTED
            "0800 0100 05000000"                       //     NBD_SOCK_FD 5
            "0f00 0a00 69736373692d6d70696f 00 00"));  // NBD_ATTR_BACKEND_IDENTIFIER, padded
}

TEST_CASE("NBD_CMD_CONNECT without an index lets the kernel choose; one item per socket",
          "[nbd_kernel]") {
  netlink::ConnectRequest request;
  request.size_bytes = 4096;
  request.block_size = 4096;
  request.server_flags = 1;
  request.socket_fds = {3, 4};
  const auto bytes = netlink::connect_request(0x20, 1, request);
  // The first attribute is NBD_ATTR_SIZE_BYTES: no NBD_ATTR_INDEX.
  CHECK(hex(std::vector(bytes.begin() + 20, bytes.begin() + 24)) == hex("0c00 0200"));
  CHECK(
      hex(bytes).find(hex("1c00 0780 0c00 0180 0800 0100 03000000 0c00 0180 0800 0100 04000000")) !=
      std::string::npos);
  CHECK(bytes.size() == 20 + 12 * 5 + 28);
  CHECK(bytes.size() % 4 == 0);
  CHECK(static_cast<size_t>(bytes[0]) == bytes.size());
}

TEST_CASE("NBD_CMD_DISCONNECT names the device", "[nbd_kernel]") {
  CHECK(hex(netlink::disconnect_request(0x1a, 3, 2)) ==
        hex("1c000000 1a00 0500 03000000 00000000 02 01 0000 0800 0100 02000000"));
}

TEST_CASE("NBD_CMD_RECONFIGURE carries the device and its new size", "[nbd_kernel]") {
  // 20 + 8 (index) + 12 (u64 size) bytes; command 3 = NBD_CMD_RECONFIGURE; 3 GiB.
  CHECK(hex(netlink::resize_request(0x1a, 4, 2, 3ull << 30, "")) ==
        hex("28000000 1a00 0500 04000000 00000000 03 01 0000 0800 0100 02000000 "
            "0c00 0200 000000c0 00000000"));
  // With the backend identifier the device was connected with: "ab\0", padded to 4 bytes.
  CHECK(hex(netlink::resize_request(0x1a, 4, 2, 3ull << 30, "ab")) ==
        hex("30000000 1a00 0500 04000000 00000000 03 01 0000 0800 0100 02000000 "
            "0c00 0200 000000c0 00000000 0700 0a00 616200 00"));
}

TEST_CASE("the controller's answer gives the family id and completes on the ack", "[nbd_kernel]") {
  netlink::Reply reply;
  REQUIRE_FALSE(netlink::parse_reply(common::from_hex(kFamilyAnswer), 7, reply));
  CHECK(reply.complete);
  CHECK(reply.error == 0);
  REQUIRE(reply.family_id);
  CHECK(*reply.family_id == 0x1a);
  CHECK_FALSE(reply.index);
}

TEST_CASE("answers for another sequence number are ignored", "[nbd_kernel]") {
  netlink::Reply reply;
  REQUIRE_FALSE(netlink::parse_reply(common::from_hex(kFamilyAnswer), 8, reply));
  CHECK_FALSE(reply.complete);
  CHECK_FALSE(reply.family_id);
}

TEST_CASE("an answer split over two buffers completes on the second", "[nbd_kernel]") {
  const auto bytes = common::from_hex(kFamilyAnswer);
  netlink::Reply reply;
  REQUIRE_FALSE(netlink::parse_reply(std::span(bytes).first(36), 7, reply));
  CHECK(reply.family_id == uint16_t{0x1a});
  CHECK_FALSE(reply.complete);
  REQUIRE_FALSE(netlink::parse_reply(std::span(bytes).subspan(36), 7, reply));
  CHECK(reply.complete);
}

TEST_CASE("the connect answer names the device the kernel picked", "[nbd_kernel]") {
  const auto bytes = common::from_hex(
      "1c000000 1a00 0000 05000000 00000000 01 01 0000 0800 0100 03000000"  // NBD_ATTR_INDEX 3
      "24000000 0200 0001 05000000 00000000 00000000"
      "78000000 1a00 0500 05000000 00000000");
  netlink::Reply reply;
  REQUIRE_FALSE(netlink::parse_reply(bytes, 5, reply));
  CHECK(reply.complete);
  CHECK(reply.index == uint32_t{3});
}

TEST_CASE("NLMSG_ERROR: errno and the extended ack's message", "[nbd_kernel]") {
  netlink::Reply missing;
  REQUIRE_FALSE(netlink::parse_reply(
      common::from_hex("24000000 0200 0001 01000000 00000000 feffffff"  // -ENOENT
                       "1c000000 1000 0500 01000000 00000000"),
      1, missing));
  CHECK(missing.complete);
  CHECK(missing.error == ENOENT);

  netlink::Reply busy;
  REQUIRE_FALSE(netlink::parse_reply(
      common::from_hex("34000000 0200 0003 02000000 00000000 f0ffffff"  // -EBUSY, CAPPED|TLVS
                       "78000000 1a00 0500 02000000 00000000"
                       "0f00 0100 696e20757365206e6f7700 00"),  // NLMSGERR_ATTR_MSG "in use now"
      2, busy));
  CHECK(busy.complete);
  CHECK(busy.error == EBUSY);
  CHECK(busy.kernel_message == "in use now");
}

TEST_CASE("malformed answers are errors, never reads past the end", "[nbd_kernel]") {
  auto parse = [](std::string_view hex_bytes) {
    netlink::Reply reply;
    return netlink::parse_reply(common::from_hex(hex_bytes), 7, reply);
  };
  // nlmsg_len below the header size, or beyond the buffer.
  CHECK(parse("0f000000 1000 0000 07000000 00000000") == kernel_errc::netlink_protocol);
  CHECK(parse("40000000 1000 0000 07000000 00000000 01020000") == kernel_errc::netlink_protocol);
  // A header cut short.
  CHECK(parse("24000000 1000") == kernel_errc::netlink_protocol);
  // An attribute longer than its message.
  CHECK(parse("1c000000 1000 0000 07000000 00000000 01020000 ff00 0100 1a000000") ==
        kernel_errc::netlink_protocol);
  // An NLMSG_ERROR too short for its errno, and one whose echoed request overruns it.
  CHECK(parse("12000000 0200 0000 07000000 00000000 0000") == kernel_errc::netlink_protocol);
  CHECK(parse("24000000 0200 0002 07000000 00000000 eaffffff ff000000 1000 0500 07000000"
              "00000000") == kernel_errc::netlink_protocol);

  // Every truncation of a valid answer: an error, or an answer not yet complete.
  const auto bytes = common::from_hex(kFamilyAnswer);
  for (size_t n = 0; n < bytes.size(); ++n) {
    netlink::Reply reply;
    const auto ec = netlink::parse_reply(std::span(bytes).first(n), 7, reply);
    INFO("prefix " << n);
    CHECK((ec || !reply.complete));
  }
}

TEST_CASE("random bytes and mutated answers never crash the parser", "[nbd_kernel]") {
  // Run under ASan+UBSan (build with -DIM_SANITIZE=ON) this also proves no read out of bounds.
  std::mt19937 random(20261121);
  const auto valid = common::from_hex(kFamilyAnswer);
  for (int round = 0; round < 20000; ++round) {
    std::vector<std::byte> bytes;
    if (round % 2 == 0) {
      bytes.resize(random() % 80);
      for (auto& b : bytes) b = static_cast<std::byte>(random());
    } else {
      bytes = valid;  // a valid answer with a few bytes changed: lengths go wrong in every way
      for (int flips = 1 + static_cast<int>(random() % 3); flips > 0; --flips) {
        bytes[random() % bytes.size()] = static_cast<std::byte>(random());
      }
    }
    netlink::Reply reply;
    const auto ec = netlink::parse_reply(bytes, 7, reply);
    if (ec) CHECK(ec == kernel_errc::netlink_protocol);
  }
}

TEST_CASE("kernel timeouts never undercut no_path_retry", "[nbd_kernel]") {
  using Mode = blockdev::NoPathRetry::Mode;
  CHECK(nbd::kernel_timeouts({Mode::fail, 0}, 1000ms) == nbd::KernelTimeouts{0s, 0s});
  CHECK(nbd::kernel_timeouts({Mode::queue, 0}, 1000ms) ==
        nbd::KernelTimeouts{0s, nbd::kDeadConnectionForever});
  CHECK(nbd::kernel_timeouts({Mode::intervals, 5}, 1000ms) == nbd::KernelTimeouts{0s, 5s});
  // 3 x 1.5 s = 4.5 s: rounded up, never down.
  CHECK(nbd::kernel_timeouts({Mode::intervals, 3}, 1500ms) == nbd::KernelTimeouts{0s, 5s});
  CHECK(nbd::kernel_timeouts({Mode::intervals, 1}, 200ms).dead_connection == 1s);
  // "Forever" must stay below LONG_MAX jiffies at the highest HZ (1000).
  CHECK(nbd::kDeadConnectionForever.count() < (int64_t{1} << 62) / 1000);
}

TEST_CASE("max_sectors_kb lets the LUN's maximum transfer through whole", "[nbd_kernel]") {
  CHECK(nbd::max_sectors_kb_for(8u << 20, 32768) == 8192);
  CHECK(nbd::max_sectors_kb_for(32u << 20, 32768) == 32768);
  CHECK(nbd::max_sectors_kb_for(64u << 20, 32768) == 32768);  // the driver's own limit
  CHECK(nbd::max_sectors_kb_for(0, 1280) == 1280);            // unknown: the hardware limit
  CHECK(nbd::max_sectors_kb_for(512u << 10, 0) == 512);       // hardware limit unreadable
  CHECK(nbd::max_sectors_kb_for(1024, 32768) == 4);           // never below a page
}

TEST_CASE("/dev/nbdN parses to N and nothing else does", "[nbd_kernel]") {
  CHECK(nbd::parse_nbd_device_path("/dev/nbd0") == uint32_t{0});
  CHECK(nbd::parse_nbd_device_path("/dev/nbd15") == uint32_t{15});
  for (const char* bad : {"/dev/nbd", "/dev/nbd01", "/dev/nbd1p1", "nbd0", "/dev/nbd-1",
                          "/dev/nbd+1", "/dev/nbd 1", "/dev/nbd99999999", "/dev/sda"}) {
    INFO(bad);
    CHECK_FALSE(nbd::parse_nbd_device_path(bad));
  }
}

TEST_CASE("errors say what is needed", "[nbd_kernel]") {
  CHECK_THAT(std::error_code(kernel_errc::module_missing).message(),
             Catch::Contains("modprobe nbd"));
  CHECK_THAT(std::error_code(kernel_errc::not_permitted).message(),
             Catch::Contains("CAP_SYS_ADMIN"));
  CHECK_THAT(std::error_code(kernel_errc::device_busy).message(), Catch::Contains("in use"));
}

TEST_CASE("attach refuses what the driver cannot take before touching the system", "[nbd_kernel]") {
  int served = 0;
  const nbd::KernelDevice::ServeSocket serve = [&](int, std::string&) {
    ++served;
    return std::error_code{};
  };
  nbd::KernelAttachOptions options;
  options.index = 0;
  options.size_bytes = 1 << 20;
  options.block_size = 8192;  // above the page size
  std::error_code ec;
  std::string detail;
  CHECK_FALSE(nbd::KernelDevice::attach(options, serve, ec, detail));
  CHECK(ec == kernel_errc::unsupported_export);
  CHECK_THAT(detail, Catch::Contains("8192"));
  CHECK(served == 0);
}

TEST_CASE("without the nbd module, attach says to load it", "[nbd_kernel]") {
  struct stat st {};
  if (::stat("/sys/module/nbd", &st) == 0)
    return;  // a host with the driver: the guest test covers it
  int served = 0;
  const nbd::KernelDevice::ServeSocket serve = [&](int, std::string&) {
    ++served;
    return std::error_code{};
  };
  nbd::KernelAttachOptions options;
  options.size_bytes = 1 << 20;
  std::error_code ec;
  std::string detail;
  CHECK_FALSE(nbd::KernelDevice::attach(options, serve, ec, detail));
  CHECK(ec == kernel_errc::module_missing);
  CHECK_THAT(detail, Catch::Contains("modprobe nbd"));
  CHECK(served == 0);
}

TEST_CASE("NBD_CMD_RECONFIGURE gives a left device new sockets under its backend", "[nbd_kernel]") {
  netlink::ReconnectRequest request;
  request.index = 0;
  request.size_bytes = 1 << 20;
  request.dead_connection_timeout_seconds = 30;
  request.socket_fds = {7};
  request.backend_identifier = "ab";
  // index, size, dead-connection timeout, SOCKETS { ITEM { FD 7 } }, backend "ab\0".
  CHECK(hex(netlink::reconnect_request(0x1a, 5, request)) ==
        hex("4c000000 1a00 0500 05000000 00000000 03 01 0000 "
            "0800 0100 00000000 0c00 0200 00001000 00000000 0c00 0800 1e000000 00000000 "
            "1000 0780 0c00 0180 0800 0100 07000000 0700 0a00 616200 00"));
}

TEST_CASE("the device a dead attach left: ours by backend, its owner gone", "[nbd_kernel]") {
  const std::string ours = "iscsi-mpio iqn.x LUN 1";
  const std::vector<nbd::DeviceSeen> devices{
      {.index = 0, .backend = "", .pid = std::nullopt, .owner_alive = false},  // free
      {.index = 1, .backend = ours, .pid = "77", .owner_alive = true},         // in use
      {.index = 2, .backend = "someone else", .pid = "78", .owner_alive = false},
      {.index = 3, .backend = ours, .pid = "79", .owner_alive = false},  // left
  };
  CHECK(nbd::left_by_dead_attach(devices, ours, std::nullopt) == 3u);
  CHECK(nbd::left_by_dead_attach(devices, ours, 3u) == 3u);
  CHECK_FALSE(nbd::left_by_dead_attach(devices, ours, 1u));  // asked for a device in use
  CHECK_FALSE(nbd::left_by_dead_attach(devices, "iscsi-mpio iqn.y LUN 1", std::nullopt));
  CHECK_FALSE(nbd::left_by_dead_attach(devices, "", std::nullopt));  // no identifier, no claim
  // Not configured any more (the dead-connection timeout ran out): nothing to adopt.
  CHECK_FALSE(nbd::left_by_dead_attach(
      {{.index = 4, .backend = ours, .pid = std::nullopt, .owner_alive = false}}, ours,
      std::nullopt));
}
