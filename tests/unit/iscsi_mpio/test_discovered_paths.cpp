// Which portals a SendTargets answer leaves for a `discover:` path entry, and the paths attach
// then logs in on: byte-for-byte answers as targets send them, reachability scripted.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <iscsi/discovery.hpp>
#include <iscsi/text.hpp>

#include "discovered_paths.hpp"
#include "status.hpp"

using Catch::Matchers::Contains;
namespace discovery = iscsi_mpio::discovery;

namespace {

constexpr std::string_view iqn = "iqn.2026-11.org.iscsi-mpio:test";

// The answer as the parser in initiator/iscsi reads it from the Text Response's pairs.
std::vector<iscsi::DiscoveredTarget> answer(
    const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::vector<iscsi::TextPair> text;
  for (const auto& [key, value] : pairs) text.push_back({key, value});
  return iscsi::parse_send_targets(text);
}

config::Path discover_entry(std::string host, std::optional<std::string> source,
                            uint16_t port = 3260) {
  config::Path entry;
  entry.discover = config::Portal{std::move(host), port};
  entry.source = std::move(source);
  return entry;
}

// Every portal reachable except those listed with the reason they are not.
discovery::ReachabilityCheck unreachable(std::map<std::string, std::string> why_not = {}) {
  return [why_not](const config::Portal& p) -> std::optional<std::string> {
    auto found = why_not.find(config::to_string(p));
    if (found == why_not.end()) return std::nullopt;
    return found->second;
  };
}

}  // namespace

TEST_CASE("every portal of the target, in the answer's order", "[discovery]") {
  const auto reply = answer({{"TargetName", "iqn.2026-11.org.iscsi-mpio:other"},
                             {"TargetAddress", "198.18.9.1:3260,1"},
                             {"TargetName", std::string(iqn)},
                             {"TargetAddress", "198.18.1.1:3260,1"},
                             {"TargetAddress", "198.18.2.1:3261,2"}});
  const auto choice =
      discovery::choose_portals(reply, iqn, discover_entry("198.18.1.1", {}), unreachable());
  CHECK(choice.problem.empty());
  CHECK(choice.skipped.empty());
  REQUIRE(choice.usable.size() == 2);
  CHECK(choice.usable[0] == config::Portal{"198.18.1.1", 3260});
  CHECK(choice.usable[1] == config::Portal{"198.18.2.1", 3261});
}

TEST_CASE("a source that reaches only one of the reported portals", "[discovery]") {
  const auto reply = answer({{"TargetName", std::string(iqn)},
                             {"TargetAddress", "198.18.1.1:3260,1"},
                             {"TargetAddress", "198.18.2.1:3260,1"}});
  const auto choice = discovery::choose_portals(
      reply, iqn, discover_entry("198.18.1.1", "198.18.1.2"),
      unreachable({{"198.18.2.1:3260", "leaves through ini2, not ini1 which holds 198.18.1.2"}}));
  REQUIRE(choice.usable.size() == 1);
  CHECK(choice.usable[0].host == "198.18.1.1");
  REQUIRE(choice.skipped.size() == 1);
  CHECK(choice.skipped[0] ==
        "198.18.2.1:3260 (leaves through ini2, not ini1 which holds 198.18.1.2)");
  CHECK(choice.problem.empty());
}

TEST_CASE("IPv6 portals, host names and a record without TargetAddress", "[discovery]") {
  SECTION("[IPv6]:port,tag and a host name with the default port") {
    const auto reply = answer({{"TargetName", std::string(iqn)},
                               {"TargetAddress", "[fd00:1::1]:3260,1"},
                               {"TargetAddress", "san-a.example.com,2"}});
    const auto choice =
        discovery::choose_portals(reply, iqn, discover_entry("fd00:1::1", {}), unreachable());
    REQUIRE(choice.usable.size() == 2);
    CHECK(choice.usable[0] == config::Portal{"fd00:1::1", 3260});
    CHECK(config::to_string(choice.usable[0]) == "[fd00:1::1]:3260");
    CHECK(choice.usable[1] == config::Portal{"san-a.example.com", 3260});
  }
  SECTION("an IPv6 portal is skipped for an IPv4 source without asking the routing table") {
    const auto reply = answer({{"TargetName", std::string(iqn)},
                               {"TargetAddress", "[fd00:1::1]:3260,1"},
                               {"TargetAddress", "198.18.1.1:3260,1"}});
    const auto choice =
        discovery::choose_portals(reply, iqn, discover_entry("198.18.1.1", "198.18.1.2"),
                                  [](const config::Portal& p) -> std::optional<std::string> {
                                    CHECK(p.host != "fd00:1::1");
                                    return std::nullopt;
                                  });
    REQUIRE(choice.usable.size() == 1);
    REQUIRE(choice.skipped.size() == 1);
    CHECK_THAT(choice.skipped[0],
               Contains("[fd00:1::1]:3260 (IPv6, the source 198.18.1.2 is IPv4)"));
  }
  SECTION("no TargetAddress: the discovery portal itself (RFC 7143 Appendix C)") {
    const auto reply = answer({{"TargetName", std::string(iqn)}});
    const auto choice = discovery::choose_portals(
        reply, iqn, discover_entry("198.18.1.1", {}, 3262), unreachable());
    REQUIRE(choice.usable.size() == 1);
    CHECK(choice.usable[0] == config::Portal{"198.18.1.1", 3262});
  }
  SECTION("an unspecified address is never a portal") {
    const auto reply = answer({{"TargetName", std::string(iqn)},
                               {"TargetAddress", "0.0.0.0:3260,1"},
                               {"TargetAddress", "198.18.1.1:3260,1"}});
    const auto choice =
        discovery::choose_portals(reply, iqn, discover_entry("198.18.1.1", {}), unreachable());
    REQUIRE(choice.usable.size() == 1);
    CHECK_THAT(choice.skipped.at(0), Contains("0.0.0.0:3260 (an unspecified address)"));
  }
}

TEST_CASE("a portal listed twice, or in two records of the target, is used once", "[discovery]") {
  const auto reply = answer({{"TargetName", "IQN.2026-11.ORG.ISCSI-MPIO:TEST"},
                             {"TargetAddress", "198.18.1.1:3260,1"},
                             {"TargetName", std::string(iqn)},
                             {"TargetAddress", "198.18.1.1,2"},
                             {"TargetAddress", "198.18.2.1:3260,2"}});
  const auto choice =
      discovery::choose_portals(reply, iqn, discover_entry("198.18.1.1", {}), unreachable());
  REQUIRE(choice.usable.size() == 2);
  CHECK(choice.usable[0].host == "198.18.1.1");
  CHECK(choice.usable[1].host == "198.18.2.1");
}

TEST_CASE("nothing usable names the target, the source and what was returned", "[discovery]") {
  SECTION("the target is not in the answer") {
    const auto reply = answer({{"TargetName", "iqn.2026-11.org.iscsi-mpio:other"},
                               {"TargetAddress", "198.18.9.1:3260,1"}});
    const auto choice = discovery::choose_portals(
        reply, iqn, discover_entry("198.18.1.1", "198.18.1.2"), unreachable());
    CHECK(choice.usable.empty());
    CHECK(choice.problem ==
          "the SendTargets answer of 198.18.1.1:3260 (from source 198.18.1.2) does not list "
          "iqn.2026-11.org.iscsi-mpio:test; it lists iqn.2026-11.org.iscsi-mpio:other at "
          "198.18.9.1:3260,1");
  }
  SECTION("an empty answer") {
    const auto choice = discovery::choose_portals({}, iqn, discover_entry("h", {}), unreachable());
    CHECK_THAT(choice.problem, Contains("it lists no target at all"));
    CHECK_THAT(choice.problem, Contains("from the default route"));
  }
  SECTION("only unreachable portals") {
    const auto reply = answer({{"TargetName", std::string(iqn)},
                               {"TargetAddress", "198.18.2.1:3260,1"},
                               {"TargetAddress", "198.18.3.1:3260,1"}});
    const auto choice = discovery::choose_portals(
        reply, iqn, discover_entry("198.18.1.1", "198.18.1.2"),
        unreachable({{"198.18.2.1:3260", "no route (Network is unreachable)"},
                     {"198.18.3.1:3260", "leaves through ini3"}}));
    CHECK(choice.usable.empty());
    CHECK(choice.problem ==
          "the SendTargets answer of 198.18.1.1:3260 lists iqn.2026-11.org.iscsi-mpio:test only "
          "at portals not reachable from source 198.18.1.2: 198.18.2.1:3260 (no route (Network "
          "is unreachable)), 198.18.3.1:3260 (leaves through ini3)");
  }
}

TEST_CASE("expand_paths: one path per (portal, source), with the entry's settings", "[discovery]") {
  std::vector<config::Path> entries(3);
  entries[0].portal = {"198.18.5.1", 3260};  // written in the file
  entries[1] = discover_entry("198.18.1.1", "198.18.1.2");
  entries[1].priority = 7;
  entries[1].interface = "ini1";
  entries[2] = discover_entry("198.18.2.1", "198.18.2.2");
  std::vector<discovery::PortalChoice> choices(3);
  choices[1].usable = {{"198.18.1.1", 3260}, {"198.18.2.1", 3260}};
  // The same portal reported through the second source is a path of its own.
  choices[2].usable = {{"198.18.2.1", 3260}, {"198.18.2.1", 3260}};
  std::vector<std::string> origins;
  const auto paths = discovery::expand_paths(entries, choices, origins);
  REQUIRE(paths.size() == 4);
  REQUIRE(origins.size() == 4);
  CHECK(paths[0].portal.host == "198.18.5.1");
  CHECK(origins[0].empty());
  CHECK(paths[1].portal == config::Portal{"198.18.1.1", 3260});
  CHECK(paths[1].source == "198.18.1.2");
  CHECK(paths[1].interface == "ini1");
  CHECK(paths[1].priority == 7u);
  CHECK_FALSE(paths[1].discover);
  CHECK(origins[1] == "discovered via 198.18.1.1:3260");
  CHECK(paths[2].portal.host == "198.18.2.1");
  CHECK(paths[2].source == "198.18.1.2");
  CHECK(paths[3].portal.host == "198.18.2.1");
  CHECK(paths[3].source == "198.18.2.2");
  CHECK(origins[3] == "discovered via 198.18.2.1:3260");
}

TEST_CASE("expand_paths: a path the file writes out is not discovered again", "[discovery]") {
  std::vector<config::Path> entries(2);
  entries[0] = discover_entry("198.18.1.1", "198.18.1.2");
  entries[1].portal = {"198.18.1.1", 3260};
  entries[1].source = "198.18.1.2";
  std::vector<discovery::PortalChoice> choices(2);
  choices[0].usable = {{"198.18.1.1", 3260}};
  std::vector<std::string> origins;
  const auto paths = discovery::expand_paths(entries, choices, origins);
  REQUIRE(paths.size() == 1);
  CHECK(origins[0].empty());
}

TEST_CASE("a discovery session: the entry's portal and source, discovery_auth, no TargetName",
          "[discovery]") {
  const auto loaded = config::load_string(R"(
initiator: {name: iqn.2026-11.org.example:host1}
target:
  iqn: iqn.2026-11.org.iscsi-mpio:test
  login_timeout: 7
  auth: {method: chap, username: session-user, secret: session-secret-1}
  discovery_auth: {method: chap, username: disc-user, secret: disc-secret-12, algorithms: [md5]}
paths:
  - {discover: "198.18.1.1:3261", source: 198.18.1.2, interface: ini1}
)",
                                          "t.yaml");
  INFO(loaded.error_report());
  REQUIRE(loaded.ok());
  const auto& cfg = loaded.config();
  const auto pc = discovery::discovery_path_config(cfg, cfg.paths[0]);
  CHECK(pc.portal_host == "198.18.1.1");
  CHECK(pc.portal_port == 3261);
  CHECK(pc.source_address == "198.18.1.2");
  CHECK(pc.interface_name == "ini1");
  CHECK(pc.target_name.empty());  // RFC 7143 §4.3: SessionType=Discovery names no target
  CHECK(pc.initiator_name == "iqn.2026-11.org.example:host1");
  CHECK(pc.login_timeout == std::chrono::seconds(7));
  REQUIRE(pc.chap);
  CHECK(pc.chap->username == "disc-user");
  CHECK(pc.chap->secret == "disc-secret-12");
  CHECK(pc.chap_algorithms == std::vector<iscsi::ChapAlgorithm>{iscsi::ChapAlgorithm::md5});

  config::Config without = cfg;
  without.target.discovery_auth = {};
  CHECK_FALSE(discovery::discovery_path_config(without, cfg.paths[0]).chap);
}

TEST_CASE("status marks discovered paths and lists the skipped portals", "[discovery]") {
  iscsi_mpio::status::Snapshot snap;
  snap.export_name = "lun";
  snap.selector = "round-robin";
  mpio::PathStatus from_file;
  from_file.name = "198.18.5.1:3260 from 198.18.5.2";
  from_file.state = mpio::PathState::active;
  mpio::PathStatus discovered = from_file;
  discovered.name = "198.18.1.1:3260 from 198.18.1.2";
  snap.paths = {from_file, discovered};
  snap.path_origins = {{discovered.name, "discovered via 198.18.1.1:3260"}};
  snap.discovery_skipped = {
      "via 198.18.1.1:3260 from source 198.18.1.2: skipped 198.18.2.1:3260 (leaves through "
      "ini2, not ini1 which holds 198.18.1.2)"};

  const std::string tree = iscsi_mpio::status::render_tree(snap);
  INFO(tree);
  CHECK_THAT(tree, Contains("198.18.1.1:3260 from 198.18.1.2") &&
                       Contains("[discovered via 198.18.1.1:3260]\n"));
  // Only the discovered path carries the mark.
  CHECK(tree.find("[discovered") == tree.rfind("[discovered"));
  CHECK_THAT(tree, Contains("\ndiscovery: via 198.18.1.1:3260 from source 198.18.1.2: skipped "
                            "198.18.2.1:3260 (leaves through ini2"));

  const std::string json = iscsi_mpio::status::render_json(snap);
  INFO(json);
  CHECK_THAT(json, Contains(R"("origin":"")") &&
                       Contains(R"("origin":"discovered via 198.18.1.1:3260")") &&
                       Contains(R"("discovery_skipped":["via 198.18.1.1:3260 from source)"));
}
