#include "exports.hpp"

#include <blockdev/block_device.hpp>

namespace nbd {

ExportDescription ServedExport::describe() const {
  ExportDescription out{name, description, device.info()};
  if (read_only) out.device.read_only = true;
  return out;
}

std::error_code ExportTable::add(ExportOptions options, std::string& detail) {
  std::lock_guard lock(mutex_);
  // The catalog's copy of the description carries no device info: find() reads the device.
  if (!list_.add({options.name, options.description, {}})) {
    detail = "export '" + options.name + "' is served already";
    return std::make_error_code(std::errc::file_exists);
  }
  std::string name = options.name;
  served_.emplace(std::move(name), std::make_shared<ServedExport>(std::move(options)));
  return {};
}

std::shared_ptr<ServedExport> ExportTable::remove(const std::string& name,
                                                  const std::string& reason) {
  std::lock_guard lock(mutex_);
  const auto it = served_.find(name);
  if (it == served_.end()) return nullptr;
  auto removed = std::move(it->second);
  served_.erase(it);
  list_.remove(name, reason);
  return removed;
}

std::shared_ptr<ServedExport> ExportTable::served(std::string_view name) const {
  std::lock_guard lock(mutex_);
  const auto it = served_.find(name);
  return it == served_.end() ? nullptr : it->second;
}

std::optional<std::string> ExportTable::default_name() const {
  std::lock_guard lock(mutex_);
  return list_.default_name();
}

size_t ExportTable::size() const {
  std::lock_guard lock(mutex_);
  return served_.size();
}

std::vector<ExportSummary> ExportTable::list() const {
  std::lock_guard lock(mutex_);
  return list_.list();
}

ExportLookup ExportTable::find(std::string_view name) const {
  std::lock_guard lock(mutex_);
  ExportLookup lookup = list_.find(name);
  if (lookup.found) {
    const auto it = served_.find(lookup.found->name);
    if (it != served_.end()) lookup.found = it->second->describe();
  }
  return lookup;
}

}  // namespace nbd
