#pragma once
// Helpers shared by the tests of one path counter across the machine-readable views (status
// JSON, paths JSON, metrics): paths named as the device names them, and the views of one export.

#include <string>
#include <utility>
#include <vector>

#include "metrics.hpp"
#include "status.hpp"

namespace path_views_test {

// An active path from 198.18.N.2 to the portal 198.18.N.1:3260, named as mpio names paths.
inline mpio::PathStatus active_path(int subnet) {
  const std::string net = "198.18." + std::to_string(subnet) + ".";
  mpio::PathStatus path;
  path.name = net + "1:3260 from " + net + "2";
  path.state = mpio::PathState::active;
  return path;
}

// The status snapshot of the export "lun" over `paths`.
inline iscsi_mpio::status::Snapshot snapshot(std::vector<mpio::PathStatus> paths) {
  iscsi_mpio::status::Snapshot s;
  s.export_name = "lun";
  s.paths = std::move(paths);
  return s;
}

// The metrics text of the export "lun" over `paths`, from a fresh collector.
inline std::string metrics_text(std::vector<mpio::PathStatus> paths) {
  iscsi_mpio::metrics::Sample s;
  s.export_name = "lun";
  s.paths = std::move(paths);
  return iscsi_mpio::metrics::Collector{}.exposition(s);
}

}  // namespace path_views_test
