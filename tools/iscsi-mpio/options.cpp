#include "options.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string_view>
#include <utility>

#include <nbd/export.hpp>

namespace iscsi_mpio::options {
namespace {

iscsi::DigestChoice digest(config::Digest d) {
  switch (d) {
    case config::Digest::none:
      return iscsi::DigestChoice::none;
    case config::Digest::crc32c:
      return iscsi::DigestChoice::crc32c;
    case config::Digest::prefer_crc32c:
      return iscsi::DigestChoice::prefer_crc32c;
  }
  return iscsi::DigestChoice::none;
}

iscsi::ChapAlgorithm chap_algorithm(config::ChapAlgorithm a) {
  switch (a) {
    case config::ChapAlgorithm::md5:
      return iscsi::ChapAlgorithm::md5;
    case config::ChapAlgorithm::sha1:
      return iscsi::ChapAlgorithm::sha1;
    case config::ChapAlgorithm::sha256:
      return iscsi::ChapAlgorithm::sha256;
    case config::ChapAlgorithm::sha3_256:
      return iscsi::ChapAlgorithm::sha3_256;
  }
  return iscsi::ChapAlgorithm::md5;
}

}  // namespace

mpio::LunConfig lun_config(const config::Config& cfg, const IsidSource& make_isid) {
  mpio::LunConfig lun;
  lun.lun = cfg.target.lun;
  lun.path_selector = cfg.multipath.path_selector;
  lun.rr_min_io = cfg.multipath.rr_min_io;
  if (cfg.multipath.max_sectors_kb) lun.max_command_bytes = *cfg.multipath.max_sectors_kb << 10;
  lun.polling_interval = std::chrono::seconds(cfg.multipath.polling_interval);
  lun.no_path_retry = cfg.multipath.no_path_retry;
  lun.marginal_path = cfg.multipath.marginal_path.value_or(mpio::MarginalPathPolicy{});
  lun.hedged_reads = cfg.multipath.hedged_reads;
  lun.expected_wwid = cfg.target.wwid;
  lun.grouping = cfg.multipath.path_grouping_policy;
  lun.failback = cfg.multipath.failback;
  for (const auto& p : cfg.paths)
    lun.paths.push_back({path_config(cfg, p, make_isid()), p.priority.value_or(0)});
  return lun;
}

bool needs_lun_report(const config::Config& cfg) {
  return cfg.target.luns.has_value();
}

LunPlan single_lun_plan(const config::Config& cfg) {
  return {cfg.target.lun, cfg.nbd.export_name, cfg.target.wwid, cfg.nbd.device};
}

namespace {

LunPlan plan_for(const config::Config& cfg, uint16_t lun) {
  LunPlan plan{lun, config::export_name_for(cfg, lun), "", cfg.nbd.device};
  if (const auto* entry = config::lun_entry(cfg, lun)) {
    plan.wwid = entry->wwid;
    if (entry->device) plan.device = *entry->device;
  }
  return plan;
}

// SPC-4 §6.6.2 PERIPHERAL DEVICE TYPE 00h: what a LunDevice serves.
constexpr uint8_t direct_access_block_device = 0x00;

std::string type_text(uint8_t type) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", type);
  return text;
}

// " (the target has LUNs 0 (type 0x0c), 1, 2)": block devices plain, others with their type.
std::string target_luns_text(const std::vector<TargetLun>& on_target) {
  if (on_target.empty()) return " (the target reports no LUNs)";
  std::string list;
  for (const auto& t : on_target)
    list +=
        (list.empty() ? "" : ", ") + std::to_string(t.lun) +
        (t.device_type == direct_access_block_device ? ""
                                                     : " (type " + type_text(t.device_type) + ")");
  return " (the target has LUN" + std::string(on_target.size() > 1 ? "s " : " ") + list + ")";
}

}  // namespace

std::error_code lun_plans(const config::Config& cfg, const std::vector<TargetLun>& on_target,
                          std::vector<LunPlan>& plans, std::string& detail,
                          std::vector<std::string>& skipped) {
  plans.clear();
  if (!cfg.target.luns) {
    plans.push_back(single_lun_plan(cfg));
    return {};
  }
  if (cfg.target.luns->all) {
    for (const auto& t : on_target) {
      if (t.device_type == direct_access_block_device)
        plans.push_back(plan_for(cfg, t.lun));
      else
        skipped.push_back("LUN " + std::to_string(t.lun) + " is not a block device (peripheral " +
                          "device type " + type_text(t.device_type) + "): not served");
    }
    if (plans.empty()) {
      detail = "target.luns: all: " + cfg.target.iqn + " has no block-device LUN" +
               target_luns_text(on_target);
      return std::make_error_code(std::errc::no_such_device);
    }
    return {};
  }
  for (const auto& entry : cfg.target.luns->entries) {
    const auto found = std::find_if(on_target.begin(), on_target.end(),
                                    [&](const TargetLun& t) { return t.lun == entry.lun; });
    if (found == on_target.end() || found->device_type != direct_access_block_device) {
      detail = "target.luns: LUN " + std::to_string(entry.lun) +
               (found == on_target.end() ? " does not exist on " + cfg.target.iqn
                                         : " is not a block device (peripheral device type " +
                                               type_text(found->device_type) + ")") +
               target_luns_text(on_target);
      plans.clear();
      return std::make_error_code(std::errc::no_such_device);
    }
    plans.push_back(plan_for(cfg, entry.lun));
  }
  return {};
}

std::vector<mpio::LunConfig> lun_configs(const config::Config& cfg,
                                         const std::vector<LunPlan>& plans, Sessions sessions,
                                         const IsidSource& make_isid) {
  // Identical path configurations, ISIDs included, are what a session pool shares.
  const mpio::LunConfig shared = lun_config(cfg, make_isid);
  std::vector<mpio::LunConfig> out;
  for (const auto& plan : plans) {
    mpio::LunConfig lun =
        sessions == Sessions::shared || out.empty() ? shared : lun_config(cfg, make_isid);
    lun.lun = plan.lun;
    lun.expected_wwid = plan.wwid;
    out.push_back(std::move(lun));
  }
  return out;
}

iscsi_io::SessionTimeouts session_timeouts(const config::Config& cfg) {
  return {.login_timeout = std::chrono::seconds(cfg.target.login_timeout),
          .noop_out_interval = std::chrono::seconds(cfg.multipath.noop_out_interval),
          .noop_out_timeout = std::chrono::seconds(cfg.multipath.noop_out_timeout),
          .command_timeout = std::chrono::seconds(cfg.target.command_timeout)};
}

iscsi_io::PathConfig path_config(const config::Config& cfg, const config::Path& path,
                                 const iscsi::Isid& isid) {
  iscsi_io::PathConfig pc;
  pc.portal_host = path.portal.host;
  pc.portal_port = path.portal.port;
  pc.source_address = path.source;
  pc.interface_name = path.interface;
  pc.initiator_name = cfg.initiator.name;
  pc.target_name = cfg.target.iqn;
  pc.isid = isid;
  iscsi_io::set_timeouts(pc, session_timeouts(cfg));
  pc.proposal.header_digest = digest(cfg.target.digests.header);
  pc.proposal.data_digest = digest(cfg.target.digests.data);
  const auto& auth = cfg.target.auth;
  if (auth.method == config::Auth::Method::chap) {
    iscsi::ChapCredentials chap;
    chap.username = auth.username;
    chap.secret = auth.secret;
    if (auth.mutual) chap.mutual = std::make_pair(auth.mutual->username, auth.mutual->secret);
    pc.chap = std::move(chap);
    // The file's list replaces PathConfig's default (MD5 only), in the file's order.
    pc.chap_algorithms.clear();
    for (const auto a : auth.algorithms) pc.chap_algorithms.push_back(chap_algorithm(a));
  }
  return pc;
}

nbd::TlsOptions tls_options(const config::NbdTls& tls) {
  nbd::TlsOptions options;
  switch (tls.mode) {
    case config::NbdTls::Mode::off:
      options.mode = nbd::TlsMode::off;
      break;
    case config::NbdTls::Mode::on:
      options.mode = nbd::TlsMode::on;
      break;
    case config::NbdTls::Mode::require:
      options.mode = nbd::TlsMode::require;
      break;
  }
  options.x509_dir = tls.x509_dir.value_or("");
  options.verify_peer = tls.verify_peer;
  options.psk_file = tls.psk_file.value_or("");
  return options;
}

nbd::ServerOptions server_options(const config::Config& cfg, const blockdev::DeviceInfo& info) {
  return server_options(cfg, info, single_lun_plan(cfg));
}

nbd::ServerOptions server_options(const config::Config& cfg, const blockdev::DeviceInfo& info,
                                  const LunPlan& lun) {
  nbd::ServerOptions options;
  if (cfg.nbd.listen.kind == config::Listen::Kind::unix_socket)
    options.listen = nbd::UnixEndpoint{cfg.nbd.listen.path_or_host};
  else
    options.listen = nbd::TcpEndpoint{cfg.nbd.listen.path_or_host, cfg.nbd.listen.port};
  options.export_name = lun.export_name;
  options.tls = tls_options(cfg.nbd.tls);
  options.description = cfg.nbd.description.value_or(
      info.vendor + " " + info.product + " " + cfg.target.iqn + " LUN " + std::to_string(lun.lun));
  options.read_only = cfg.nbd.read_only;
  options.max_clients = cfg.nbd.max_clients;
  options.handshake_timeout = std::chrono::seconds(cfg.nbd.handshake_timeout);
  options.max_bytes_per_connection = std::size_t{cfg.nbd.client_buffer_mib} << 20;
  options.max_bytes_total = std::size_t{cfg.nbd.total_buffer_mib} << 20;
  options.fd_reserve = fd_reserve(cfg, lun.device.mode == config::NbdDevice::Mode::none ? 0 : 1);
  return options;
}

size_t fd_reserve(const config::Config& cfg, size_t kernel_devices) {
  return 64 + 2 * cfg.paths.size() + 2 * kernel_devices;
}

nbd::KernelInterface kernel_interface(const char* forced) {
  const std::string_view word = forced ? forced : "";
  if (word == "ioctl") return nbd::KernelInterface::ioctl;
  if (word == "netlink") return nbd::KernelInterface::netlink;
  return nbd::KernelInterface::automatic;
}

nbd::KernelAttachOptions kernel_options(const config::Config& cfg, const blockdev::DeviceInfo& info,
                                        nbd::KernelInterface interface) {
  return kernel_options(cfg, info, single_lun_plan(cfg), interface);
}

nbd::KernelAttachOptions kernel_options(const config::Config& cfg, const blockdev::DeviceInfo& info,
                                        const LunPlan& lun, nbd::KernelInterface interface) {
  nbd::KernelAttachOptions options;
  if (lun.device.mode == config::NbdDevice::Mode::index) options.index = lun.device.index;
  options.size_bytes = info.size_bytes;
  const auto sizes = nbd::block_sizes(info);
  options.block_size = sizes.minimum;
  options.max_transfer_bytes = sizes.maximum;
  blockdev::DeviceInfo exported = info;
  if (cfg.nbd.read_only) exported.read_only = true;
  options.transmission_flags = nbd::transmission_flags(exported, false);  // simple replies only
  options.timeouts = nbd::kernel_timeouts(cfg.multipath.no_path_retry,
                                          std::chrono::seconds(cfg.multipath.polling_interval));
  options.backend_identifier = "iscsi-mpio " + cfg.target.iqn + " LUN " + std::to_string(lun.lun);
  options.interface = interface;
  return options;
}

std::string hedged_reads_text(const mpio::HedgedReadPolicy& policy) {
  if (!policy.enabled) return "off";
  return "on, floor " + std::to_string(policy.floor_ms) + " ms, factor " +
         std::to_string(policy.latency_factor);
}

std::string no_path_retry_text(const config::NoPathRetry& no_path_retry) {
  switch (no_path_retry.mode) {
    case config::NoPathRetry::Mode::fail:
      return "fail";
    case config::NoPathRetry::Mode::queue:
      return "queue";
    case config::NoPathRetry::Mode::intervals:
      return std::to_string(no_path_retry.intervals);
  }
  return "?";
}

std::string failback_text(const config::Failback& failback) {
  switch (failback.mode) {
    case config::Failback::Mode::immediate:
      return "immediate";
    case config::Failback::Mode::manual:
      return "manual";
    case config::Failback::Mode::delayed:
      return std::to_string(failback.seconds);
  }
  return "?";
}

}  // namespace iscsi_mpio::options
