// iscsi-mpio reload's decision: two configuration files in, what is applied or which keys are
// refused (with their lines) out. Each case is the running file and the file read again.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include <config/config.hpp>

#include "loaded_config.hpp"
#include "reload_plan.hpp"

namespace reload = iscsi_mpio::reload;

namespace {

constexpr std::string_view running_file = R"(initiator:
  name: iqn.2026-11.org.example:host1
target:
  iqn: iqn.2023-01.com.example:storage
  lun: 1
paths:
  - portal: "198.18.1.1:3260"
    source: 198.18.1.2
  - portal: "198.18.2.1:3260"
    source: 198.18.2.2
multipath:
  path_selector: round-robin
  no_path_retry: queue
)";

using test_support::loaded_config;

// `running_file` with `from` replaced by `to` (the edit an admin makes).
std::string edited(std::string_view from, std::string_view to) {
  std::string text(running_file);
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  return text;
}

reload::Plan plan_for(std::string_view before, std::string_view after) {
  return reload::plan_reload(loaded_config(before), loaded_config(after), config::key_lines(after));
}

struct Refused {
  std::string key;
  int line;
};

std::vector<Refused> refused(const reload::Plan& plan) {
  std::vector<Refused> out;
  for (const auto& r : plan.refused) out.push_back({r.key, r.line});
  return out;
}

}  // namespace

TEST_CASE("reload: the same file changes nothing", "[reload]") {
  const auto plan = plan_for(running_file, running_file);
  CHECK(plan.accepted());
  CHECK(plan.nothing_to_do());
  CHECK(plan.added.empty());
  CHECK(plan.removed.empty());
}

TEST_CASE("reload: paths added, removed and reordered", "[reload]") {
  struct Case {
    const char* what;
    std::string after;
    std::vector<size_t> added;    // into the new file's paths
    std::vector<size_t> removed;  // into the running paths
  };
  const std::vector<Case> cases{
      {"a third path",
       edited("multipath:", "  - portal: \"198.18.3.1:3260\"\n    source: 198.18.3.2\nmultipath:"),
       {2},
       {}},
      {"the first path gone",
       edited("  - portal: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n", ""),
       {},
       {0}},
      {"the same paths in the other order",
       edited("  - portal: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n"
              "  - portal: \"198.18.2.1:3260\"\n    source: 198.18.2.2\n",
              "  - portal: \"198.18.2.1:3260\"\n    source: 198.18.2.2\n"
              "  - portal: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n"),
       {},
       {}},
      // Another source address is another I_T nexus: a new path, and the old one goes.
      {"a path moved to another source",
       edited("source: 198.18.2.2", "source: 198.18.2.9"),
       {1},
       {1}},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const auto plan = plan_for(running_file, c.after);
    CHECK(plan.accepted());
    CHECK(plan.added == c.added);
    CHECK(plan.removed == c.removed);
    CHECK(plan.changes.size() == c.added.size() + c.removed.size());
  }
}

TEST_CASE("reload: multipath settings change in place", "[reload]") {
  struct Case {
    std::string after;
    std::string change;  // the one line the answer gives
  };
  const std::vector<Case> cases{
      {edited("path_selector: round-robin", "path_selector: queue-length"),
       "multipath.path_selector: round-robin -> queue-length"},
      {edited("multipath:\n", "multipath:\n  rr_min_io: 16\n"), "multipath.rr_min_io: 1 -> 16"},
      {edited("multipath:\n", "multipath:\n  path_grouping_policy: failover\n"),
       "multipath.path_grouping_policy: multibus -> failover"},
      {edited("multipath:\n", "multipath:\n  failback: 30\n"),
       "multipath.failback: immediate -> 30"},
      {edited("no_path_retry: queue", "no_path_retry: 12"), "multipath.no_path_retry: queue -> 12"},
      {edited("multipath:\n", "multipath:\n  polling_interval: 5\n"),
       "multipath.polling_interval: 1 -> 5"},
      {edited("multipath:\n", "multipath:\n  hedged_reads: {floor_ms: 200}\n"),
       "multipath.hedged_reads: on, floor 100 ms, factor 3 -> on, floor 200 ms, factor 3"},
      {edited("multipath:\n", "multipath:\n  hedged_reads: {enabled: false}\n"),
       "multipath.hedged_reads: on, floor 100 ms, factor 3 -> off"},
  };
  for (const auto& c : cases) {
    INFO(c.change);
    const auto plan = plan_for(running_file, c.after);
    CHECK(plan.accepted());
    CHECK(plan.settings_changed);
    REQUIRE(plan.changes.size() == 1);
    CHECK(plan.changes.front() == c.change);
  }
}

TEST_CASE("reload: the sessions' timeouts change, logins and running sessions", "[reload]") {
  struct Case {
    std::string after;
    std::string change;
  };
  const std::vector<Case> cases{
      {edited("lun: 1\n", "lun: 1\n  login_timeout: 30\n"),
       "target.login_timeout (the next logins): 15 s -> 30 s"},
      {edited("lun: 1\n", "lun: 1\n  command_timeout: 60\n"),
       "target.command_timeout (the running sessions too): 30 s -> 60 s"},
      {edited("multipath:\n", "multipath:\n  noop_out_interval: 10\n"),
       "multipath.noop_out_interval (the running sessions too): 5 s -> 10 s"},
      {edited("multipath:\n", "multipath:\n  noop_out_timeout: 2\n"),
       "multipath.noop_out_timeout (the running sessions too): 5 s -> 2 s"},
  };
  for (const auto& c : cases) {
    INFO(c.change);
    const auto plan = plan_for(running_file, c.after);
    CHECK(plan.accepted());
    CHECK(plan.timeouts_changed);
    CHECK_FALSE(plan.settings_changed);
    CHECK_FALSE(plan.log_level);
    REQUIRE(plan.changes.size() == 1);
    CHECK(plan.changes.front() == c.change);
  }
  // Each timeout beside a refused key: nothing is applied.
  auto both = edited("lun: 1\n", "lun: 1\n  login_timeout: 30\n");
  both.replace(both.find("com.example:storage"), 19, "com.example:other");
  CHECK_FALSE(plan_for(running_file, both).accepted());
}

TEST_CASE("reload: log.level changes, and nothing else with it", "[reload]") {
  auto plan = plan_for(running_file, std::string(running_file) + "log:\n  level: debug\n");
  CHECK(plan.accepted());
  REQUIRE(plan.log_level);
  CHECK(*plan.log_level == "debug");
  CHECK_FALSE(plan.settings_changed);
  CHECK_FALSE(plan.timeouts_changed);
  REQUIRE(plan.changes.size() == 1);
  CHECK(plan.changes.front() == "log.level: info -> debug");
  // Back to the default: taken out of the file is info again.
  plan = plan_for(std::string(running_file) + "log:\n  level: warn\n", running_file);
  REQUIRE(plan.log_level);
  CHECK(*plan.log_level == "info");
  // The same level written out is no change.
  CHECK(
      plan_for(running_file, std::string(running_file) + "log:\n  level: info\n").nothing_to_do());
}

TEST_CASE("reload: keys fixed while the attach runs are refused by name and line", "[reload]") {
  struct Case {
    std::string after;
    std::string key;
    int line;  // 0: not in the new file
  };
  const std::vector<Case> cases{
      {edited("com.example:storage", "com.example:other"), "target.iqn", 4},
      {edited("org.example:host1", "org.example:host2"), "initiator.name", 2},
      {edited("lun: 1", "lun: 2"), "target.lun", 5},
      {edited("lun: 1\n", "lun: 1\n  wwid: \"naa.6001405abcdef\"\n"), "target.wwid", 6},
      {edited("lun: 1\n",
              "lun: 1\n  auth:\n    method: chap\n    username: u\n    secret: s3cret-s3cret\n"),
       "target.auth", 6},
      {edited("lun: 1\n", "lun: 1\n  digests:\n    header: crc32c\n"), "target.digests", 6},
      {std::string(running_file) + "nbd:\n  listen: \"tcp:127.0.0.1:10810\"\n", "nbd.listen", 15},
      {std::string(running_file) + "nbd:\n  device: auto\n", "nbd.device", 15},
      {std::string(running_file) + "nbd:\n  export: other\n", "nbd.export", 15},
      {std::string(running_file) + "nbd:\n  client_buffer_mib: 4\n", "nbd.client_buffer_mib", 15},
      {std::string(running_file) + "nbd:\n  total_buffer_mib: 64\n", "nbd.total_buffer_mib", 15},
      {std::string(running_file) + "control:\n  socket: /run/other.control\n", "control.socket",
       15},
      {std::string(running_file) + "metrics:\n  listen: \"127.0.0.1:9469\"\n", "metrics.listen",
       15},
      {edited("multipath:\n", "multipath:\n  max_sectors_kb: 256\n"), "multipath.max_sectors_kb",
       12},
      {edited("multipath:\n",
              "multipath:\n  marginal_path:\n    san_path_err_threshold: 2\n"
              "    san_path_err_forget_rate: 30\n    san_path_err_recovery_time: 60\n"),
       "multipath.marginal_path", 12},
      {edited("    source: 198.18.1.2\n", "    source: 198.18.1.2\n    priority: 5\n"),
       "paths[0].priority", 9},
  };
  for (const auto& c : cases) {
    INFO(c.key);
    const auto plan = plan_for(running_file, c.after);
    CHECK_FALSE(plan.accepted());
    REQUIRE_FALSE(plan.refused.empty());
    CHECK(plan.refused.front().key == c.key);
    CHECK(plan.refused.front().line == c.line);
    CHECK_FALSE(plan.refused.front().reason.empty());
    // Only these have followers: the defaults named after the export (below).
    if (c.key != "target.lun" && c.key != "nbd.export") CHECK(plan.refused.size() == 1);
  }
}

TEST_CASE("reload: defaults that follow a changed key are refused too", "[reload]") {
  // nbd.export defaults to lun<N>, and the NBD and control sockets to the export's name.
  const auto keys = refused(plan_for(running_file, edited("lun: 1", "lun: 2")));
  REQUIRE(keys.size() == 4);
  CHECK(keys[0].key == "target.lun");
  CHECK(keys[1].key == "control.socket");
  CHECK(keys[1].line == 0);
  CHECK(keys[2].key == "nbd.listen");
  CHECK(keys[3].key == "nbd.export");
}

TEST_CASE("reload: every refused key is named, and nothing of the rest is applied", "[reload]") {
  std::string after = edited("com.example:storage", "com.example:other");
  after.replace(after.find("round-robin"), 11, "service-time");
  after += "nbd:\n  read_only: true\n";
  const auto plan = plan_for(running_file, after);
  CHECK_FALSE(plan.accepted());
  const auto keys = refused(plan);
  REQUIRE(keys.size() == 2);
  CHECK(keys[0].key == "target.iqn");
  CHECK(keys[1].key == "nbd.read_only");
  CHECK(keys[1].line == 15);
  const auto text = reload::describe_refusals(plan, "/etc/iscsi-mpio/a.yaml");
  CHECK(text.find("/etc/iscsi-mpio/a.yaml:4: target.iqn: ") == 0);
  CHECK(text.find("/etc/iscsi-mpio/a.yaml:15: nbd.read_only: ") != std::string::npos);
}

TEST_CASE("reload: a key taken out of the file points at its section", "[reload]") {
  const std::string before =
      std::string(running_file) + "nbd:\n  device: auto\n  read_only: false\n";
  const std::string after = std::string(running_file) + "nbd:\n  read_only: false\n";
  const auto plan = plan_for(before, after);
  REQUIRE(plan.refused.size() == 1);
  CHECK(plan.refused.front().key == "nbd.device");
  CHECK(plan.refused.front().line == 14);  // `nbd:`
}

TEST_CASE("reload: removing every running path at once is refused", "[reload]") {
  const auto after = edited(
      "  - portal: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n"
      "  - portal: \"198.18.2.1:3260\"\n    source: 198.18.2.2\n",
      "  - portal: \"198.18.3.1:3260\"\n    source: 198.18.3.2\n");
  const auto plan = plan_for(running_file, after);
  REQUIRE(plan.refused.size() == 1);
  CHECK(plan.refused.front().key == "paths");
  CHECK(plan.refused.front().reason.find("add the new paths in one reload") != std::string::npos);
}

TEST_CASE("reload: with /dev/nbdN, no_path_retry and polling_interval are fixed", "[reload]") {
  const std::string before = std::string(running_file) + "nbd:\n  device: auto\n";
  const std::string after =
      edited("no_path_retry: queue", "no_path_retry: 5\n  polling_interval: 2") +
      "nbd:\n  device: auto\n";
  const auto plan = plan_for(before, after);
  const auto keys = refused(plan);
  REQUIRE(keys.size() == 2);
  // In the file's order.
  CHECK(keys[0].key == "multipath.no_path_retry");
  CHECK(keys[1].key == "multipath.polling_interval");
  CHECK(plan.refused[0].reason.find("/dev/nbdN") != std::string::npos);
}

TEST_CASE("reload: path lists with discover entries cannot change", "[reload]") {
  const auto before =
      edited("  - portal: \"198.18.1.1:3260\"\n", "  - discover: \"198.18.1.1:3260\"\n");
  const auto after = edited("  - portal: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n",
                            "  - discover: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n"
                            "  - portal: \"198.18.5.1:3260\"\n");
  const auto plan = plan_for(before, after);
  REQUIRE(plan.refused.size() == 1);
  CHECK(plan.refused.front().key == "paths");
  // Unchanged, they are no reason to refuse the rest.
  CHECK(plan_for(before, before).accepted());
}

TEST_CASE("reload: a generated initiator name is no change", "[reload]") {
  const auto without_name = edited("initiator:\n  name: iqn.2026-11.org.example:host1\n", "");
  const auto before = loaded_config(without_name);
  const auto after = loaded_config(without_name);
  REQUIRE(before.initiator.name_generated);
  const auto plan = reload::plan_reload(before, after, config::key_lines(without_name));
  CHECK(plan.accepted());
  CHECK(reload::applied_config(before, after, plan).initiator.name == before.initiator.name);
}

TEST_CASE("reload: the applied configuration keeps the running paths' order", "[reload]") {
  const auto after =
      edited("  - portal: \"198.18.1.1:3260\"\n    source: 198.18.1.2\n",
             "  - portal: \"198.18.3.1:3260\"\n    source: 198.18.3.2\n");  // first replaced
  const auto before_cfg = loaded_config(running_file);
  const auto after_cfg = loaded_config(after);
  auto plan = reload::plan_reload(before_cfg, after_cfg, config::key_lines(after));
  // Taken apart: removing the first of two with one added is a plan the attach carries out.
  REQUIRE(plan.accepted());
  CHECK(plan.added == std::vector<size_t>{0});
  CHECK(plan.removed == std::vector<size_t>{0});
  const auto applied = reload::applied_config(before_cfg, after_cfg, plan);
  REQUIRE(applied.paths.size() == 2);
  CHECK(applied.paths[0].portal.host == "198.18.2.1");  // kept, first now
  CHECK(applied.paths[1].portal.host == "198.18.3.1");  // added, after the kept ones
}

TEST_CASE("key_lines: every key and list item by its key path", "[reload]") {
  const auto lines = config::key_lines(running_file);
  CHECK(lines.at("initiator") == 1);
  CHECK(lines.at("target.iqn") == 4);
  CHECK(lines.at("paths[1]") == 9);
  CHECK(lines.at("paths[1].source") == 10);
  CHECK(lines.at("multipath.no_path_retry") == 13);
  CHECK(config::key_lines("a: [unclosed").empty());
}

TEST_CASE("reload: a LUN that opened during a reload takes the running paths", "[reload]") {
  using V = std::vector<size_t>;
  const std::string p1 = "198.18.1.1:3260 from 198.18.1.2";
  const std::string p2 = "198.18.2.1:3260 from 198.18.2.2";
  const std::string p3 = "198.18.3.1:3260 from 198.18.3.2";
  // Opened with paths 1 and 2; the reload removed path 1 and added path 3: as many paths as
  // before, so counting them would miss both changes.
  auto sync = reload::sync_paths({p1, p2}, {p2, p3});
  CHECK(sync.remove == V{0});
  CHECK(sync.add == V{1});
  // Removals come from the last, so each leaves the indices of those still to go.
  sync = reload::sync_paths({p1, p2, p3}, {p2});
  CHECK(sync.remove == V{2, 0});
  CHECK(sync.add.empty());
  // Paths added meanwhile (reload or rediscovery), in the running order.
  sync = reload::sync_paths({p1}, {p1, p2, p3});
  CHECK(sync.remove.empty());
  CHECK(sync.add == V{1, 2});
  sync = reload::sync_paths({p1, p2}, {p1, p2});
  CHECK(sync.remove.empty());
  CHECK(sync.add.empty());
}
