// The exports one Server serves (Server::add_export, remove_export): the devices behind them,
// their counters, and the catalog the handshake of every client asks (nbd/export_catalog.hpp).
// No Asio here: the table is shared by the server, its connections and their handshakes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "nbd/export_catalog.hpp"
#include "nbd_server/server.hpp"

namespace nbd {

// One export being served. Shared by the table and the connections in transmission on it:
// the last of them to let go runs on_released, after which the device may go.
struct ServedExport {
  explicit ServedExport(ExportOptions options)
      : name(std::move(options.name)),
        description(std::move(options.description)),
        read_only(options.read_only),
        device(options.device) {}
  ~ServedExport() {
    if (on_released) on_released();
  }
  ServedExport(const ServedExport&) = delete;
  ServedExport& operator=(const ServedExport&) = delete;

  // As advertised to a client now: the device's current info() (a resized LUN shows its new
  // size to new clients), read-only when the export says so (proto.md NBD_FLAG_READ_ONLY;
  // validate() then answers writes EPERM).
  ExportDescription describe() const;

  const std::string name;
  const std::string description;
  const bool read_only;
  blockdev::BlockDevice& device;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> connections{0};  // in transmission on it now
  // The io_context thread only: set by remove_export.
  bool removed = false;
  std::string removal_message;  // "export NAME was removed: REASON", for the EIO replies
  std::function<void()> on_released;
};

// Any thread: a mutex guards it (counters() reads it from the metrics thread).
class ExportTable final : public ExportCatalog {
 public:
  std::error_code add(ExportOptions options, std::string& detail);
  // The export taken out of the table, or nullptr when none of that name is served.
  std::shared_ptr<ServedExport> remove(const std::string& name, const std::string& reason);
  // The export of exactly that name ("" is not resolved to the default), or nullptr.
  std::shared_ptr<ServedExport> served(std::string_view name) const;
  // The first name ever added, whether still served or not.
  std::optional<std::string> default_name() const;
  size_t size() const;

  std::vector<ExportSummary> list() const override;
  ExportLookup find(std::string_view name) const override;

 private:
  mutable std::mutex mutex_;
  ExportList list_;  // names, order, default and removal reasons
  std::map<std::string, std::shared_ptr<ServedExport>, std::less<>> served_;
};

}  // namespace nbd
