// target.luns: several LUNs over the same paths, each with its export name, identity and device.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "config_test_support.hpp"

using config::config_errc;
using config_test::error_at;
using config_test::load;

namespace {

// A valid file whose target: block (from line 2) is `target_body`, then nbd: `nbd_body`.
std::string with_luns(std::string_view target_body, std::string_view nbd_body = "") {
  return "target:\n  iqn: iqn.2023-01.com.example:s\n" + std::string(target_body) +
         "paths:\n  - portal: 127.0.0.1\n" +
         (nbd_body.empty() ? std::string() : "nbd:\n" + std::string(nbd_body));
}

}  // namespace

TEST_CASE("target.luns takes a list of numbers, exports named from the template", "[config]") {
  const auto result = load(with_luns("  luns: [1, 2, 5]\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& cfg = result.config();
  REQUIRE(cfg.target.luns);
  CHECK_FALSE(cfg.target.luns->all);
  CHECK(config::listed_luns(cfg) == std::vector<std::uint16_t>{1, 2, 5});
  CHECK(cfg.nbd.export_name == "lun{lun}");
  CHECK(config::export_name_for(cfg, 1) == "lun1");
  CHECK(config::export_name_for(cfg, 5) == "lun5");
  // The default sockets are named after the template: one listener, one control socket.
  CHECK(cfg.nbd.listen.path_or_host == "/run/iscsi-mpio/luns.sock");
  CHECK(cfg.control.socket == "/run/iscsi-mpio/luns.control");
}

TEST_CASE("target.luns: all selects what the target reports", "[config]") {
  const auto result = load(with_luns("  luns: all\n", "  export: san_lun{lun}\n  device: auto\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& cfg = result.config();
  REQUIRE(cfg.target.luns);
  CHECK(cfg.target.luns->all);
  CHECK(config::listed_luns(cfg).empty());
  CHECK(config::export_name_for(cfg, 3) == "san_lun3");
  CHECK(cfg.nbd.listen.path_or_host == "/run/iscsi-mpio/san_luns.sock");
}

TEST_CASE("target.luns entries carry an alias, a wwid and a device", "[config]") {
  const auto result = load(
      with_luns("  luns:\n"
                "    - {lun: 1, export: san_storage_lun0, wwid: \"36001\", device: /dev/nbd3}\n"
                "    - 2\n"
                "    - lun: 4\n"
                "      device: auto\n"));
  INFO(result.error_report());
  REQUIRE(result.ok());
  const auto& cfg = result.config();
  CHECK(config::listed_luns(cfg) == std::vector<std::uint16_t>{1, 2, 4});
  CHECK(config::export_name_for(cfg, 1) == "san_storage_lun0");
  CHECK(config::export_name_for(cfg, 2) == "lun2");
  const auto* first = config::lun_entry(cfg, 1);
  REQUIRE(first != nullptr);
  CHECK(first->wwid == "36001");
  CHECK(first->device == config::NbdDevice{config::NbdDevice::Mode::index, 3});
  CHECK_FALSE(config::lun_entry(cfg, 2)->device);
  CHECK(config::lun_entry(cfg, 4)->device->mode == config::NbdDevice::Mode::any);
  CHECK(config::lun_entry(cfg, 7) == nullptr);

  // The printed form loads back to the same selection.
  const auto again = load(config::redacted(cfg));
  INFO(config::redacted(cfg));
  REQUIRE(again.ok());
  CHECK(again.config().target.luns == cfg.target.luns);
  CHECK(again.config().nbd.export_name == "lun{lun}");
}

TEST_CASE("one LUN keeps today's names; {lun} in nbd.export is filled in", "[config]") {
  const auto plain = load(with_luns("  lun: 3\n"));
  REQUIRE(plain.ok());
  CHECK(plain.config().nbd.export_name == "lun3");
  CHECK(plain.config().nbd.listen.path_or_host == "/run/iscsi-mpio/lun3.sock");
  CHECK(config::listed_luns(plain.config()) == std::vector<std::uint16_t>{3});
  CHECK(config::export_name_for(plain.config(), 3) == "lun3");

  const auto templated = load(with_luns("  lun: 3\n", "  export: \"disk-{lun}\"\n"));
  REQUIRE(templated.ok());
  CHECK(templated.config().nbd.export_name == "disk-3");
  CHECK(templated.config().control.socket == "/run/iscsi-mpio/disk-3.control");
}

TEST_CASE("lun and luns together name both keys", "[config]") {
  const auto result = load(with_luns("  lun: 1\n  luns: [1, 2]\n"));
  const auto error = error_at(result, "target.luns");
  CHECK(error.line == 4);
  CHECK(error.column == 3);
  CHECK(error.to_string() == "t.yaml:4:3: target.luns: give either 'lun' or 'luns', not both");
  CHECK(result.errors().size() == 1);
}

TEST_CASE("an unknown key in a LUN entry is named with file, line and key", "[config]") {
  const auto result = load(with_luns("  luns:\n    - {lun: 1, alias: db}\n"));
  const auto error = error_at(result, "target.luns[0].alias");
  CHECK(error.code == config_errc::unknown_key);
  CHECK(error.to_string() == "t.yaml:4:16: target.luns[0].alias: unknown key 'alias'");
  CHECK(result.errors().size() == 1);
}

TEST_CASE("bad target.luns values are refused with the reason", "[config]") {
  CHECK(error_at(load(with_luns("  luns: some\n")), "target.luns").message ==
        "expected a list of LUNs (numbers or {lun: N, ...} entries) or 'all', got 'some'");
  CHECK(error_at(load(with_luns("  luns: []\n")), "target.luns").message ==
        "the list needs at least 1 entry");
  CHECK(error_at(load(with_luns("  luns: [1, 16384]\n")), "target.luns[1]").message ==
        "expected an integer from 0 to 16383, got '16384'");
  CHECK(error_at(load(with_luns("  luns: [1, [2]]\n")), "target.luns[1]").message ==
        "expected a LUN number or a {lun: N, ...} mapping, got a list");
  CHECK(error_at(load(with_luns("  luns: [{export: x}]\n")), "target.luns[0].lun").code ==
        config_errc::missing_key);

  const auto twice = load(with_luns("  luns: [1, 2, {lun: 1, export: a}]\n"));
  const auto error = error_at(twice, "target.luns[2]");
  CHECK(error.to_string() ==
        "t.yaml:3:16: target.luns[2]: LUN 1 is listed twice (first as target.luns[0])");
}

TEST_CASE("two LUNs with the same export name are refused", "[config]") {
  const auto alias = load(with_luns("  luns:\n    - 1\n    - {lun: 2, export: lun1}\n"));
  CHECK(error_at(alias, "target.luns[1].export").to_string() ==
        "t.yaml:5:24: target.luns[1].export: export name 'lun1' is also the export of LUN 1 "
        "(target.luns[0])");

  // A template without {lun} names every LUN alike.
  const auto fixed = load(with_luns("  luns: [1, 2]\n", "  export: disk\n"));
  CHECK(error_at(fixed, "target.luns[1]").message ==
        "export name 'disk' is also the export of LUN 1 (target.luns[0])");
  const auto all = load(with_luns("  luns: all\n", "  export: disk\n"));
  CHECK(error_at(all, "nbd.export").to_string() ==
        "t.yaml:7:11: nbd.export: must contain {lun} with 'luns: all': every LUN needs its own "
        "export name");
}

TEST_CASE("keys that name one LUN's things are refused beside target.luns", "[config]") {
  const auto wwid = load(with_luns("  luns: [1, 2]\n  wwid: \"3600\"\n"));
  CHECK(error_at(wwid, "target.wwid").message ==
        "names one LUN's device; with 'luns' give each LUN its own: luns: [{lun: N, wwid: ...}]");

  const auto device = load(with_luns("  luns: all\n", "  device: /dev/nbd2\n"));
  CHECK(error_at(device, "nbd.device").message ==
        "/dev/nbd2 is one device for several LUNs; use auto, or give each LUN its own: "
        "luns: [{lun: N, device: /dev/nbdM}]");
  // One listed LUN may have it.
  CHECK(load(with_luns("  luns: [1]\n", "  device: /dev/nbd2\n")).ok());

  const auto same_device =
      load(with_luns("  luns: [{lun: 1, device: /dev/nbd4}, {lun: 2, device: /dev/nbd4}]\n"));
  CHECK(error_at(same_device, "target.luns[1].device").message ==
        "/dev/nbd4 is also the device of LUN 1 (target.luns[0])");
}

TEST_CASE("known_key_paths lists the LUN entry keys", "[config]") {
  const auto keys = config::known_key_paths();
  for (const char* key : {"target.luns", "target.luns[].lun", "target.luns[].export",
                          "target.luns[].wwid", "target.luns[].device"}) {
    INFO(key);
    CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
  }
}
