// The way from each configuration key to the option field of the component that acts on it:
// loaded from YAML as an admin writes it, so a key renamed or dropped on the way shows here.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include <config/config.hpp>
#include <nbd/export.hpp>
#include <nbd/wire.hpp>

#include "loaded_config.hpp"
#include "options.hpp"

using namespace std::chrono_literals;
namespace options = iscsi_mpio::options;

namespace {

constexpr std::string_view minimal = R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  lun: 3
paths:
  - portal: "198.18.1.1:3260"
)";

config::Config load(std::string_view yaml) {
  return test_support::loaded_config(yaml);
}

// The minimal file followed by `extra`: top-level keys it does not set, or more paths.
config::Config load_with(std::string_view extra) {
  return load(std::string(minimal) + std::string(extra));
}

// Counts up from 1 in the ISID's last byte: each path's ISID is recognisable.
options::IsidSource counting_isids() {
  return [n = uint8_t{0}]() mutable {
    iscsi::Isid isid;
    isid.bytes[5] = ++n;
    return isid;
  };
}

blockdev::DeviceInfo device_info() {
  blockdev::DeviceInfo info;
  info.vendor = "IET";
  info.product = "VIRTUAL-DISK";
  info.size_bytes = 1ull << 30;
  info.logical_block_size = 4096;
  info.physical_block_size = 4096;
  info.max_transfer_bytes = 1u << 20;
  return info;
}

}  // namespace

// ---------------------------------------------------------------- lun_config

TEST_CASE("The LUN and the multipath keys land in LunConfig", "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  lun: 7
  wwid: "360000000000000000e00000000010001"
paths:
  - portal: "198.18.1.1:3260"
multipath:
  path_grouping_policy: failover
  failback: 30
  path_selector: queue-length
  rr_min_io: 4
  polling_interval: 3
  no_path_retry: 12
  max_sectors_kb: 120
)");
  const auto lun = options::lun_config(cfg, counting_isids());
  CHECK(lun.lun == 7);
  CHECK(lun.expected_wwid == "360000000000000000e00000000010001");
  CHECK(lun.grouping == mpio::Grouping::failover);
  CHECK(lun.failback == mpio::Failback{mpio::Failback::Mode::delayed, 30});
  CHECK(lun.path_selector == "queue-length");
  CHECK(lun.rr_min_io == 4);
  CHECK(lun.polling_interval == 3000ms);
  CHECK(lun.no_path_retry == blockdev::NoPathRetry{blockdev::NoPathRetry::Mode::intervals, 12});
}

TEST_CASE("multipath.marginal_path reaches every LUN's device", "[iscsi_mpio][options]") {
  CHECK_FALSE(options::lun_config(load_with(""), counting_isids()).marginal_path.enabled());
  const auto lun = options::lun_config(load_with("multipath:\n  marginal_path:\n"
                                                 "    san_path_err_threshold: 2\n"
                                                 "    san_path_err_forget_rate: 6\n"
                                                 "    san_path_err_recovery_time: 30\n"),
                                       counting_isids());
  CHECK(lun.marginal_path == mpio::MarginalPathPolicy{.san_path_err_threshold = 2,
                                                      .san_path_err_forget_rate = 6,
                                                      .san_path_err_recovery_time = 30});
}

TEST_CASE("multipath.hedged_reads reaches every LUN's device", "[iscsi_mpio][options]") {
  CHECK(options::lun_config(load_with(""), counting_isids()).hedged_reads ==
        mpio::HedgedReadPolicy{});
  const auto lun = options::lun_config(
      load_with("multipath:\n  hedged_reads: {enabled: false, floor_ms: 40, latency_factor: 5}\n"),
      counting_isids());
  CHECK(lun.hedged_reads ==
        mpio::HedgedReadPolicy{.enabled = false, .floor_ms = 40, .latency_factor = 5});
}

TEST_CASE("max_sectors_kb becomes the largest command in bytes", "[iscsi_mpio][options]") {
  CHECK(options::lun_config(load_with("multipath:\n  max_sectors_kb: 120\n"), counting_isids())
            .max_command_bytes == 120u * 1024);
}

TEST_CASE("Without max_sectors_kb the device chooses the command size", "[iscsi_mpio][options]") {
  CHECK(options::lun_config(load(minimal), counting_isids()).max_command_bytes == 0);
}

TEST_CASE("Each path gets its own ISID and its priority, in file order", "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
paths:
  - portal: "198.18.1.1:3260"
    priority: 10
  - portal: "198.18.2.1"
)");
  const auto lun = options::lun_config(cfg, counting_isids());
  REQUIRE(lun.paths.size() == 2);
  CHECK(lun.paths[0].login.portal_host == "198.18.1.1");
  CHECK(lun.paths[0].login.isid.bytes[5] == 1);
  CHECK(lun.paths[0].priority == 10);
  CHECK(lun.paths[1].login.portal_host == "198.18.2.1");
  CHECK(lun.paths[1].login.isid.bytes[5] == 2);
  CHECK(lun.paths[1].priority == 0);  // no priority: earlier in the file goes first
}

TEST_CASE("The default ISIDs are random ones, different on each path", "[iscsi_mpio][options]") {
  const auto lun = options::lun_config(load_with("  - portal: \"198.18.2.1\"\n"));
  REQUIRE(lun.paths.size() == 2);
  CHECK_FALSE(lun.paths[0].login.isid == lun.paths[1].login.isid);
  CHECK((lun.paths[0].login.isid.bytes[0] & 0xc0) == 0xc0);  // RFC 7143 §10.12.5: T = random
}

// ---------------------------------------------------------------- path_config

TEST_CASE("A path's portal, source and interface land in its PathConfig", "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
paths:
  - portal: "[fd00::1]:3261"
    source: fd00::2
    interface: ini2
)");
  iscsi::Isid isid;
  isid.bytes = {0x80, 1, 2, 3, 4, 5};
  const auto pc = options::path_config(cfg, cfg.paths[0], isid);
  CHECK(pc.portal_host == "fd00::1");
  CHECK(pc.portal_port == 3261);
  CHECK(pc.source_address == "fd00::2");
  CHECK(pc.interface_name == "ini2");
  CHECK(pc.isid == isid);
  CHECK(pc.initiator_name == "iqn.2026-11.org.example:host1");
  CHECK(pc.target_name == "iqn.2023-01.com.example:storage");
}

TEST_CASE("A path without source or interface leaves the choice to routing",
          "[iscsi_mpio][options]") {
  const auto cfg = load(minimal);
  const auto pc = options::path_config(cfg, cfg.paths[0], {});
  CHECK(pc.portal_port == 3260);
  CHECK_FALSE(pc.source_address);
  CHECK_FALSE(pc.interface_name);
}

TEST_CASE("Timeouts in seconds in the file are milliseconds in PathConfig",
          "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  login_timeout: 7
  command_timeout: 45
paths:
  - portal: "198.18.1.1"
multipath:
  noop_out_interval: 2
  noop_out_timeout: 3
)");
  const auto pc = options::path_config(cfg, cfg.paths[0], {});
  CHECK(pc.login_timeout == 7000ms);
  CHECK(pc.command_timeout == 45000ms);
  CHECK(pc.noop_out_interval == 2000ms);
  CHECK(pc.noop_out_timeout == 3000ms);
  // What a reload hands the running sessions is what a path gets at attach.
  CHECK(options::session_timeouts(cfg) == iscsi_io::timeouts_of(pc));
}

TEST_CASE("A command timeout of 0 stays 0: commands never time out", "[iscsi_mpio][options]") {
  auto cfg = load(minimal);
  cfg.target.command_timeout = 0;
  CHECK(options::path_config(cfg, cfg.paths[0], {}).command_timeout == 0ms);
}

TEST_CASE("Header and data digests are proposed as configured", "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  digests:
    header: crc32c
    data: prefer-crc32c
paths:
  - portal: "198.18.1.1"
)");
  const auto pc = options::path_config(cfg, cfg.paths[0], {});
  CHECK(pc.proposal.header_digest == iscsi::DigestChoice::crc32c);
  CHECK(pc.proposal.data_digest == iscsi::DigestChoice::prefer_crc32c);
}

TEST_CASE("Without digests configured none are proposed", "[iscsi_mpio][options]") {
  const auto cfg = load(minimal);
  const auto pc = options::path_config(cfg, cfg.paths[0], {});
  CHECK(pc.proposal.header_digest == iscsi::DigestChoice::none);
  CHECK(pc.proposal.data_digest == iscsi::DigestChoice::none);
}

TEST_CASE("Without auth a path logs in without CHAP", "[iscsi_mpio][options]") {
  const auto cfg = load(minimal);
  CHECK_FALSE(options::path_config(cfg, cfg.paths[0], {}).chap);
}

TEST_CASE("CHAP credentials and algorithms go to every path in the file's order",
          "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  auth:
    method: chap
    username: host1
    secret: initiator-secret-1
    algorithms: [sha256, md5]
paths:
  - portal: "198.18.1.1"
  - portal: "198.18.2.1"
)");
  for (const auto& path : cfg.paths) {
    const auto pc = options::path_config(cfg, path, {});
    REQUIRE(pc.chap);
    CHECK(pc.chap->username == "host1");
    CHECK(pc.chap->secret == "initiator-secret-1");
    CHECK_FALSE(pc.chap->mutual);
    CHECK(pc.chap_algorithms == std::vector<iscsi::ChapAlgorithm>{iscsi::ChapAlgorithm::sha256,
                                                                  iscsi::ChapAlgorithm::md5});
  }
}

TEST_CASE("CHAP without algorithms offers the default list, strongest first",
          "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  auth:
    method: chap
    username: host1
    secret: initiator-secret-1
paths:
  - portal: "198.18.1.1"
)");
  CHECK(options::path_config(cfg, cfg.paths[0], {}).chap_algorithms ==
        std::vector<iscsi::ChapAlgorithm>{iscsi::ChapAlgorithm::sha3_256,
                                          iscsi::ChapAlgorithm::sha1, iscsi::ChapAlgorithm::md5});
}

TEST_CASE("Mutual CHAP carries the name and secret the target must prove",
          "[iscsi_mpio][options]") {
  const auto cfg = load(R"(
initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  auth:
    method: chap
    username: host1
    secret: initiator-secret-1
    mutual:
      username: storage
      secret: target-secret-22
paths:
  - portal: "198.18.1.1"
)");
  const auto pc = options::path_config(cfg, cfg.paths[0], {});
  REQUIRE(pc.chap);
  REQUIRE(pc.chap->mutual);
  CHECK(pc.chap->mutual->first == "storage");
  CHECK(pc.chap->mutual->second == "target-secret-22");
}

// ---------------------------------------------------------------- server_options

TEST_CASE("A unix listen address becomes a unix endpoint", "[iscsi_mpio][options]") {
  const auto cfg = load_with("nbd:\n  listen: unix:/run/test/lun3.sock\n  export: data\n");
  const auto got = options::server_options(cfg, device_info());
  REQUIRE(std::holds_alternative<nbd::UnixEndpoint>(got.listen));
  CHECK(std::get<nbd::UnixEndpoint>(got.listen).path == "/run/test/lun3.sock");
  CHECK(got.export_name == "data");
}

TEST_CASE("A tcp listen address becomes a TCP endpoint with its port", "[iscsi_mpio][options]") {
  const auto cfg = load_with("nbd:\n  listen: tcp:[::1]:10810\n");
  const auto got = options::server_options(cfg, device_info());
  REQUIRE(std::holds_alternative<nbd::TcpEndpoint>(got.listen));
  CHECK(std::get<nbd::TcpEndpoint>(got.listen).host == "::1");
  CHECK(std::get<nbd::TcpEndpoint>(got.listen).port == 10810);
}

TEST_CASE("Without nbd keys the export is lun<N> on the default unix socket",
          "[iscsi_mpio][options]") {
  const auto got = options::server_options(load(minimal), device_info());
  CHECK(got.export_name == "lun3");
  REQUIRE(std::holds_alternative<nbd::UnixEndpoint>(got.listen));
  CHECK(std::get<nbd::UnixEndpoint>(got.listen).path == "/run/iscsi-mpio/lun3.sock");
}

TEST_CASE("The export's description names the device, the target and the LUN",
          "[iscsi_mpio][options]") {
  CHECK(options::server_options(load(minimal), device_info()).description ==
        "IET VIRTUAL-DISK iqn.2023-01.com.example:storage LUN 3");
}

TEST_CASE("nbd.tls maps one to one onto the server's TLS options", "[iscsi_mpio][options]") {
  CHECK(options::server_options(load(minimal), device_info()).tls.mode == nbd::TlsMode::off);

  config::NbdTls x509;
  x509.mode = config::NbdTls::Mode::require;
  x509.x509_dir = "/etc/pki/nbd";
  x509.verify_peer = true;
  auto got = options::tls_options(x509);
  CHECK(got.mode == nbd::TlsMode::require);
  CHECK(got.x509_dir == "/etc/pki/nbd");
  CHECK(got.verify_peer);
  CHECK(got.psk_file.empty());

  config::NbdTls psk;
  psk.mode = config::NbdTls::Mode::on;
  psk.psk_file = "/etc/nbd/keys.psk";
  got = options::tls_options(psk);
  CHECK(got.mode == nbd::TlsMode::on);
  CHECK(got.psk_file == "/etc/nbd/keys.psk");
  CHECK(got.x509_dir.empty());
  CHECK_FALSE(got.verify_peer);

  // Credentials left in place under mode off are carried but never loaded.
  config::NbdTls off = x509;
  off.mode = config::NbdTls::Mode::off;
  CHECK(options::tls_options(off).mode == nbd::TlsMode::off);
}

TEST_CASE("nbd.description replaces the export's description", "[iscsi_mpio][options]") {
  CHECK(options::server_options(load_with("nbd:\n  description: database volume\n"), device_info())
            .description == "database volume");
}

TEST_CASE("fd_reserve grows with the paths and with each LUN's /dev/nbdN",
          "[iscsi_mpio][options]") {
  auto one_path = load(minimal);
  auto two_paths = one_path;
  two_paths.paths.push_back(two_paths.paths.front());
  CHECK(options::fd_reserve(two_paths, 0) == options::fd_reserve(one_path, 0) + 2);
  // 64 LUNs attached as /dev/nbdN each: a reserve for each, not the first LUN's alone.
  CHECK(options::fd_reserve(two_paths, 64) == options::fd_reserve(two_paths, 0) + 128);
  CHECK(
      options::server_options(load_with("nbd:\n  device: /dev/nbd3\n"), device_info()).fd_reserve ==
      options::fd_reserve(one_path, 1));
}

TEST_CASE("nbd.read_only, max_clients and handshake_timeout reach the server",
          "[iscsi_mpio][options]") {
  const auto defaults = options::server_options(load(minimal), device_info());
  CHECK_FALSE(defaults.read_only);
  CHECK(defaults.max_clients == 100u);
  CHECK(defaults.handshake_timeout == std::chrono::seconds(10));
  CHECK(defaults.fd_reserve >= 64u);
  const auto got = options::server_options(
      load_with("nbd:\n  read_only: true\n  max_clients: 0\n  handshake_timeout: 3\n"),
      device_info());
  CHECK(got.read_only);
  CHECK(got.max_clients == 0u);
  CHECK(got.handshake_timeout == std::chrono::seconds(3));
}

TEST_CASE("nbd.client_buffer_mib and total_buffer_mib reach the server in bytes",
          "[iscsi_mpio][options]") {
  const auto defaults = options::server_options(load(minimal), device_info());
  CHECK(defaults.max_bytes_per_connection == 8u << 20);
  CHECK(defaults.max_bytes_total == 16u << 20);
  const auto got = options::server_options(
      load_with("nbd:\n  client_buffer_mib: 2\n  total_buffer_mib: 0\n"), device_info());
  CHECK(got.max_bytes_per_connection == 2u << 20);
  CHECK(got.max_bytes_total == 0u);  // no limit
}

TEST_CASE("nbd.read_only makes the kernel's device read-only too", "[iscsi_mpio][options]") {
  const auto got = options::kernel_options(load_with("nbd:\n  read_only: true\n"), device_info());
  CHECK((got.transmission_flags & nbd::kFlagReadOnly) != 0);
  CHECK((got.transmission_flags & nbd::kFlagSendTrim) == 0);
}

// ---------------------------------------------------------------- kernel_options

TEST_CASE("nbd.device /dev/nbdN asks for that device", "[iscsi_mpio][options]") {
  const auto got = options::kernel_options(load_with("nbd:\n  device: /dev/nbd5\n"), device_info());
  CHECK(got.index == 5u);
}

TEST_CASE("nbd.device auto takes the first free device", "[iscsi_mpio][options]") {
  CHECK_FALSE(options::kernel_options(load_with("nbd:\n  device: auto\n"), device_info()).index);
}

TEST_CASE("The kernel learns the device's size, block size and largest transfer",
          "[iscsi_mpio][options]") {
  const auto info = device_info();
  const auto got = options::kernel_options(load(minimal), info);
  CHECK(got.size_bytes == info.size_bytes);
  CHECK(got.block_size == 4096);
  CHECK(got.max_transfer_bytes == 1u << 20);
  CHECK(got.transmission_flags == nbd::transmission_flags(info, false));
  CHECK(got.connections == 1);
}

TEST_CASE("no_path_retry queue keeps the kernel waiting for ever", "[iscsi_mpio][options]") {
  const auto got =
      options::kernel_options(load_with("multipath:\n  no_path_retry: queue\n"), device_info());
  CHECK(got.timeouts.request == 0s);
  CHECK(got.timeouts.dead_connection == nbd::kDeadConnectionForever);
}

TEST_CASE("no_path_retry N with polling_interval gives the kernel's timeouts",
          "[iscsi_mpio][options]") {
  const auto cfg = load_with("multipath:\n  no_path_retry: 12\n  polling_interval: 5\n");
  CHECK(options::kernel_options(cfg, device_info()).timeouts ==
        nbd::kernel_timeouts(cfg.multipath.no_path_retry, 5s));
}

TEST_CASE("The backend identifier names the target and the LUN", "[iscsi_mpio][options]") {
  CHECK(options::kernel_options(load(minimal), device_info()).backend_identifier ==
        "iscsi-mpio iqn.2023-01.com.example:storage LUN 3");
}

TEST_CASE("The kernel interface is automatic unless forced", "[iscsi_mpio][options]") {
  CHECK(options::kernel_options(load(minimal), device_info()).interface ==
        nbd::KernelInterface::automatic);
  CHECK(options::kernel_options(load(minimal), device_info(), nbd::KernelInterface::ioctl)
            .interface == nbd::KernelInterface::ioctl);
}

TEST_CASE("ISCSI_MPIO_NBD_INTERFACE's words force an interface; others do not",
          "[iscsi_mpio][options]") {
  CHECK(options::kernel_interface("ioctl") == nbd::KernelInterface::ioctl);
  CHECK(options::kernel_interface("netlink") == nbd::KernelInterface::netlink);
  CHECK(options::kernel_interface("") == nbd::KernelInterface::automatic);
  CHECK(options::kernel_interface("IOCTL") == nbd::KernelInterface::automatic);
  CHECK(options::kernel_interface(nullptr) == nbd::KernelInterface::automatic);
}

// ---------------------------------------------------------------- status texts

TEST_CASE("no_path_retry and failback read as the file writes them", "[iscsi_mpio][options]") {
  using N = config::NoPathRetry;
  CHECK(options::no_path_retry_text({N::Mode::fail, 0}) == "fail");
  CHECK(options::no_path_retry_text({N::Mode::queue, 0}) == "queue");
  CHECK(options::no_path_retry_text({N::Mode::intervals, 12}) == "12");
  using F = config::Failback;
  CHECK(options::failback_text({F::Mode::immediate, 0}) == "immediate");
  CHECK(options::failback_text({F::Mode::manual, 0}) == "manual");
  CHECK(options::failback_text({F::Mode::delayed, 30}) == "30");
}
