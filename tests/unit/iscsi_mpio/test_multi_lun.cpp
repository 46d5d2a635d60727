// An attach of several LUNs (target.luns): the plans made from the file and the target's LUN
// list, the LUN configurations over shared paths, and the status, metrics and control views of
// several maps.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include <config/config.hpp>

#include "control.hpp"
#include "loaded_config.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "status.hpp"

namespace options = iscsi_mpio::options;
namespace status = iscsi_mpio::status;
namespace metrics = iscsi_mpio::metrics;
namespace control = iscsi_mpio::control;

namespace {

config::Config load_luns(std::string_view luns, std::string_view nbd = "") {
  const std::string yaml =
      "initiator:\n  name: iqn.2026-11.org.example:host1\ntarget:\n"
      "  iqn: iqn.2023-01.com.example:storage\n  luns: " +
      std::string(luns) +
      "\npaths:\n  - portal: \"198.18.1.1:3260\"\n"
      "  - portal: \"198.18.2.1:3260\"\n" +
      (nbd.empty() ? "" : "nbd:\n" + std::string(nbd));
  return test_support::loaded_config(yaml);
}

// tgtd's layout: LUN 0 the controller (type 0x0c), data LUNs 1..4.
const std::vector<options::TargetLun> tgt_luns = {
    {0, 0x0c}, {1, 0x00}, {2, 0x00}, {3, 0x00}, {4, 0x00}};

// Counts in the ISID's last byte, so that each generated ISID is recognisable.
options::IsidSource counting_isids(int& count) {
  return [&count] {
    iscsi::Isid isid;
    isid.bytes[5] = static_cast<uint8_t>(++count);
    return isid;
  };
}

std::vector<uint16_t> numbers(const std::vector<options::LunPlan>& plans) {
  std::vector<uint16_t> out;
  for (const auto& p : plans) out.push_back(p.lun);
  return out;
}

}  // namespace

TEST_CASE("luns: all serves every block-device LUN and says which it skips", "[iscsi_mpio]") {
  const auto cfg = load_luns("all", "  device: auto\n");
  REQUIRE(options::needs_lun_report(cfg));
  std::vector<options::LunPlan> plans;
  std::string detail;
  std::vector<std::string> skipped;
  REQUIRE_FALSE(options::lun_plans(cfg, tgt_luns, plans, detail, skipped));
  CHECK(numbers(plans) == std::vector<uint16_t>{1, 2, 3, 4});
  CHECK(plans[2].export_name == "lun3");
  CHECK(plans[2].device.mode == config::NbdDevice::Mode::any);
  CHECK(skipped == std::vector<std::string>{
                       "LUN 0 is not a block device (peripheral device type 0x0c): not served"});

  const auto ec = options::lun_plans(cfg, {{0, 0x0c}}, plans, detail, skipped);
  CHECK(ec == std::errc::no_such_device);
  CHECK(detail ==
        "target.luns: all: iqn.2023-01.com.example:storage has no block-device LUN (the target "
        "has LUN 0 (type 0x0c))");
}

TEST_CASE("a listed LUN the target lacks fails with the LUNs it has", "[iscsi_mpio]") {
  const auto cfg = load_luns("[1, 3]");
  std::vector<options::LunPlan> plans;
  std::string detail;
  std::vector<std::string> skipped;
  REQUIRE_FALSE(options::lun_plans(cfg, tgt_luns, plans, detail, skipped));
  CHECK(numbers(plans) == std::vector<uint16_t>{1, 3});

  const std::vector<options::TargetLun> two = {{0, 0x0c}, {1, 0x00}, {2, 0x00}};
  CHECK(options::lun_plans(cfg, two, plans, detail, skipped) == std::errc::no_such_device);
  CHECK(detail ==
        "target.luns: LUN 3 does not exist on iqn.2023-01.com.example:storage (the target has "
        "LUNs 0 (type 0x0c), 1, 2)");
  CHECK(plans.empty());

  const auto controller = load_luns("[0]");
  CHECK(options::lun_plans(controller, two, plans, detail, skipped) == std::errc::no_such_device);
  CHECK(detail ==
        "target.luns: LUN 0 is not a block device (peripheral device type 0x0c) (the target has "
        "LUNs 0 (type 0x0c), 1, 2)");
}

TEST_CASE("each LUN's plan takes its entry's alias, wwid and device", "[iscsi_mpio]") {
  const auto cfg =
      load_luns("[{lun: 1, export: san_storage_lun0, wwid: \"36001\", device: /dev/nbd5}, 2]",
                "  export: \"disk{lun}\"\n  device: auto\n");
  std::vector<options::LunPlan> plans;
  std::string detail;
  std::vector<std::string> skipped;
  REQUIRE_FALSE(options::lun_plans(cfg, tgt_luns, plans, detail, skipped));
  REQUIRE(plans.size() == 2);
  CHECK(plans[0].export_name == "san_storage_lun0");
  CHECK(plans[0].wwid == "36001");
  CHECK(plans[0].device == config::NbdDevice{config::NbdDevice::Mode::index, 5});
  CHECK(plans[1].export_name == "disk2");
  CHECK(plans[1].wwid.empty());
  CHECK(plans[1].device.mode == config::NbdDevice::Mode::any);

  const auto server = options::server_options(cfg, {}, plans[0]);
  CHECK(server.export_name == "san_storage_lun0");
  CHECK(server.description.find("LUN 1") != std::string::npos);
  const auto kernel = options::kernel_options(cfg, {}, plans[0], nbd::KernelInterface::automatic);
  CHECK(kernel.index == 5u);
  CHECK(kernel.backend_identifier == "iscsi-mpio iqn.2023-01.com.example:storage LUN 1");
}

TEST_CASE("every LUN gets the same path configurations with the same ISIDs", "[iscsi_mpio]") {
  const auto cfg = load_luns("all");
  std::vector<options::LunPlan> plans;
  std::string detail;
  std::vector<std::string> skipped;
  REQUIRE_FALSE(options::lun_plans(cfg, tgt_luns, plans, detail, skipped));
  int isids = 0;
  const auto configs =
      options::lun_configs(cfg, plans, options::Sessions::shared, counting_isids(isids));
  CHECK(isids == 2);  // one per path, not one per path and LUN
  REQUIRE(configs.size() == 4);
  for (size_t i = 0; i < configs.size(); ++i) {
    INFO("LUN " << plans[i].lun);
    CHECK(configs[i].lun == plans[i].lun);
    REQUIRE(configs[i].paths.size() == 2);
    for (size_t p = 0; p < 2; ++p) {
      CHECK(configs[i].paths[p].login.isid.bytes[5] == p + 1);
      CHECK(configs[i].paths[p].login.portal_host == configs[0].paths[p].login.portal_host);
      CHECK(configs[i].paths[p].login.target_name == "iqn.2023-01.com.example:storage");
    }
  }
}

TEST_CASE("LUNs with sessions of their own get ISIDs of their own", "[iscsi_mpio]") {
  const auto cfg = load_luns("[1, 2]");
  int isids = 0;
  const auto configs = options::lun_configs(cfg, {{1, "lun1", "", {}}, {2, "lun2", "", {}}},
                                            options::Sessions::own, counting_isids(isids));
  CHECK(isids == 4);
  REQUIRE(configs.size() == 2);
  CHECK(configs[0].paths[0].login.isid.bytes[5] == 1);
  CHECK(configs[0].paths[1].login.isid.bytes[5] == 2);
  CHECK(configs[1].paths[0].login.isid.bytes[5] == 3);
  CHECK(configs[1].paths[1].login.isid.bytes[5] == 4);
}

TEST_CASE("target.lun alone makes one plan without asking the target", "[iscsi_mpio]") {
  auto result = config::load_string(
      "target: {iqn: 'iqn.2023-01.com.example:s', lun: 2, wwid: '3600'}\n"
      "paths: [{portal: 127.0.0.1}]\nnbd: {device: /dev/nbd1}\n",
      "t.yaml");
  REQUIRE(result.ok());
  const auto& cfg = result.config();
  CHECK_FALSE(options::needs_lun_report(cfg));
  std::vector<options::LunPlan> plans;
  std::string detail;
  std::vector<std::string> skipped;
  REQUIRE_FALSE(options::lun_plans(cfg, {}, plans, detail, skipped));
  REQUIRE(plans.size() == 1);
  CHECK(plans[0].lun == 2);
  CHECK(plans[0].export_name == "lun2");
  CHECK(plans[0].wwid == "3600");
  CHECK(plans[0].device.index == 1u);
}

namespace {

status::Snapshot map(unsigned lun, std::string wwid) {
  status::Snapshot s;
  s.export_name = "lun" + std::to_string(lun);
  s.uri = "nbd+unix:///lun" + std::to_string(lun) + "?socket=/run/iscsi-mpio/luns.sock";
  s.target = "iqn.2023-01.com.example:storage";
  s.lun = lun;
  s.selector = "round-robin";
  s.grouping = "multibus";
  s.failback = "immediate";
  s.no_path_retry = "queue";
  s.info.wwid = std::move(wwid);
  s.info.vendor = "IET";
  s.info.product = "VIRTUAL-DISK";
  s.info.size_bytes = 64 << 20;
  for (const char* name : {"198.18.1.1:3260 from 198.18.1.2", "198.18.2.1:3260 from 198.18.2.2"}) {
    mpio::PathStatus p;
    p.name = name;
    p.state = mpio::PathState::active;
    p.group_in_use = true;
    s.paths.push_back(p);
  }
  return s;
}

}  // namespace

TEST_CASE("status shows one multipath -ll block per map", "[iscsi_mpio]") {
  const std::vector<status::Snapshot> maps = {map(1, "360000000000000000e00000000010001"),
                                              map(2, "360000000000000000e00000000010002")};
  const std::string tree = status::render_trees(maps);
  CHECK(tree == status::render_tree(maps[0]) + status::render_tree(maps[1]));
  CHECK(tree.find("lun1 (360000000000000000e00000000010001) IET,VIRTUAL-DISK\n") == 0);
  CHECK(tree.find("\nlun2 (360000000000000000e00000000010002) IET,VIRTUAL-DISK\n") !=
        std::string::npos);
  CHECK(tree.find("iqn.2023-01.com.example:storage lun 2\n") != std::string::npos);

  const std::string json = status::render_json(maps);
  CHECK(json.front() == '[');
  CHECK(json ==
        "[" + status::render_json(maps[0]).substr(0, status::render_json(maps[0]).size() - 1) +
            "," + status::render_json(maps[1]).substr(0, status::render_json(maps[1]).size() - 1) +
            "]\n");
}

TEST_CASE("control: tree and json show every map; paths go by the first", "[iscsi_mpio]") {
  control::Backend backend;
  backend.snapshot = [] { return map(1, "a"); };
  backend.snapshots = [] { return std::vector<status::Snapshot>{map(1, "a"), map(2, "b")}; };
  backend.portals = {{"198.18.1.1", 3260}, {"198.18.2.1", 3260}};
  CHECK(control::respond("tree", backend) == status::render_trees(backend.snapshots()));
  CHECK(control::respond("json", backend) == status::render_json(backend.snapshots()));
  size_t failed = 99;
  backend.fail_path = [&](size_t index, std::string& detail) {
    failed = index;
    detail = "LUN 1: path failed; LUN 2: path failed";
    return std::error_code{};
  };
  CHECK(control::respond("fail-path 198.18.2.1:3260", backend) ==
        "ok: LUN 1: path failed; LUN 2: path failed\n");
  CHECK(failed == 1);
}

TEST_CASE("metrics of several LUNs carry a lun label", "[iscsi_mpio]") {
  metrics::Collector one, two;
  two.path_state(1, mpio::PathState::failed);
  std::vector<metrics::LunSeries> luns;
  for (const auto& [collector, lun] : {std::pair{&one, 1u}, std::pair{&two, 2u}}) {
    metrics::Sample s;
    s.export_name = "lun" + std::to_string(lun);
    s.target = "iqn.2023-01.com.example:storage";
    s.lun = lun;
    s.paths = map(lun, "w").paths;
    s.nbd.available = true;
    s.nbd.requests = lun * 10;
    luns.push_back({collector, s});
  }
  const std::string text = metrics::exposition(luns, true);
  CHECK(
      text.find("iscsi_mpio_path_failovers_total{lun=\"2\",index=\"2\",path=\"198.18.2.1:3260 from "
                "198.18.2.2\"} 1\n") != std::string::npos);
  CHECK(
      text.find("iscsi_mpio_path_failovers_total{lun=\"1\",index=\"2\",path=\"198.18.2.1:3260 from "
                "198.18.2.2\"} 0\n") != std::string::npos);
  CHECK(text.find("iscsi_mpio_nbd_requests_total{lun=\"2\"} 20\n") != std::string::npos);
  CHECK(text.find("iscsi_mpio_requests_in_flight{lun=\"1\"} 0\n") != std::string::npos);
  // Each family once, its series together.
  CHECK(text.find("# TYPE iscsi_mpio_path_failovers_total") ==
        text.rfind("# TYPE iscsi_mpio_path_failovers_total"));

  // One LUN without the label is today's text.
  CHECK(metrics::exposition({luns[0]}, false) == one.exposition(luns[0].sample));
  CHECK(metrics::exposition({luns[0]}, false).find("lun=\"1\",index") == std::string::npos);

  const std::string stats = metrics::stats_json(luns);
  CHECK(stats.rfind("{\"luns\":[{", 0) == 0);
  CHECK(stats.find("\"lun\":2") != std::string::npos);
}
