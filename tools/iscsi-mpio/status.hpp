// The status view of a running attach: a tree like `multipath -ll`, or JSON for scripts.
#pragma once

#include <string>
#include <vector>

#include <mpio/lun_device.hpp>

namespace iscsi_mpio::status {

struct Snapshot {
  std::string export_name;
  std::string uri;
  std::string target;
  unsigned lun = 0;
  std::string selector;
  std::string grouping;  // path_grouping_policy
  std::string failback;
  std::string no_path_retry;
  blockdev::DeviceInfo info;
  std::vector<mpio::PathStatus> paths;
  // Paths from `discover:` entries: path name -> "discovered via HOST:PORT" (a side table, so
  // that mpio's PathStatus knows nothing of discovery), and the reported portals skipped, why.
  std::vector<std::pair<std::string, std::string>> path_origins;
  std::vector<std::string> discovery_skipped;
};

// multipath -ll layout, one branch per path group (status=active: the group carrying I/O):
//   san_storage_lun0 (3600...) IET,VIRTUAL-DISK
//   size=256M features='queue_if_no_path' grouping=failover failback=immediate uri=nbd+unix:///...
//   target iqn... lun 1
//   |-+- policy='round-robin 0' prio=10 status=active
//   | `- 198.18.1.1:3260 from 198.18.1.2  active ready    in-flight 0  iops 812 cmds 123 ...
//   `-+- policy='round-robin 0' prio=5 status=enabled
//     `- 198.18.2.1:3260 from 198.18.2.2  failed faulty   ...  [discovered via 198.18.2.1:3260]
//   discovery: via 198.18.1.1:3260 from source 198.18.1.2: skipped 198.18.3.1:3260 (...)
std::string render_tree(const Snapshot& s);
// "256M", "1.5G": sizes as multipath -ll prints them.
std::string size_text(uint64_t bytes);
// multipath.marginal_path, for status lines: " marginal: held out, reinstated in 23.0 s (3
// failures)", or "" for a path that is not marginal.
std::string marginal_text(const mpio::PathStatus& path);
std::string render_json(const Snapshot& s);
// Several maps (an attach of target.luns), as `multipath -ll` lists them: one block per map,
// in LUN order; in JSON an array of render_json's objects.
std::string render_trees(const std::vector<Snapshot>& maps);
std::string render_json(const std::vector<Snapshot>& maps);

}  // namespace iscsi_mpio::status
