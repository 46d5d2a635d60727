// The exports one NBD server offers, as the handshake sees them (proto.md NBD_OPT_LIST,
// NBD_OPT_INFO, NBD_OPT_GO, NBD_OPT_EXPORT_NAME, NBD_OPT_*_META_CONTEXT): one per LUN, added and
// removed while the server runs.
//
// The handshake asks an ExportCatalog on every option, so a client negotiating while an export
// is added, removed or resized sees the catalog as it is at that option. ExportList is the
// value implementation (tests, fuzzers, and the bookkeeping behind the server's own catalog).
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nbd/export.hpp"

namespace nbd {

// NBD_REP_SERVER's content for one export.
struct ExportSummary {
  std::string name;
  std::string description;
};

// What a catalog lookup found: the export, or, when there is none, why, in words for the
// client (NBD_REP_ERR_UNKNOWN carries it; it names the name asked for).
struct ExportLookup {
  std::optional<ExportDescription> found;
  std::string reason;  // set when !found
};

class ExportCatalog {
 public:
  virtual ~ExportCatalog() = default;
  // Every export served now, default first.
  virtual std::vector<ExportSummary> list() const = 0;
  // The export `name` selects. "" selects the default export (proto.md NBD_OPT_EXPORT_NAME:
  // the empty name is reserved for it).
  virtual ExportLookup find(std::string_view name) const = 0;
};

// Exports in the order added. The default export is the first one ever added (its name is
// remembered): when it is removed, "" gets its removal reason rather than another export, so
// a client of the default export never silently lands on another LUN's data. Removed names
// are remembered with their reason (the last kMaxRemovedRemembered) until added again.
class ExportList final : public ExportCatalog {
 public:
  static constexpr size_t kMaxRemovedRemembered = 1024;
  // Names listed in an "unknown export" message before "and N more".
  static constexpr size_t kMaxNamesInMessage = 8;

  ExportList() = default;
  // One export, which is also the default.
  explicit ExportList(ExportDescription only) { add(std::move(only)); }

  // False (and nothing changes) when an export of that name is served already.
  bool add(ExportDescription description);
  // False when no export of that name is served. `reason` ends up in the message clients
  // asking for it get: "export NAME was removed: REASON".
  bool remove(std::string_view name, std::string reason);
  // The export of that name ("" is not resolved), or nullptr.
  const ExportDescription* get(std::string_view name) const noexcept;
  ExportDescription* get(std::string_view name) noexcept;

  const std::vector<ExportDescription>& exports() const noexcept { return exports_; }
  // The first name ever added; nullopt before that.
  const std::optional<std::string>& default_name() const noexcept { return default_name_; }

  std::vector<ExportSummary> list() const override;
  ExportLookup find(std::string_view name) const override;

 private:
  std::string unknown_reason(std::string_view name) const;

  std::vector<ExportDescription> exports_;
  std::optional<std::string> default_name_;
  std::deque<std::pair<std::string, std::string>> removed_;  // name, reason; oldest first
};

}  // namespace nbd
