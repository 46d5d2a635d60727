#include "nbd/export_catalog.hpp"

#include <algorithm>

namespace nbd {

bool ExportList::add(ExportDescription description) {
  if (get(description.name) != nullptr) return false;
  std::erase_if(removed_, [&](const auto& removed) { return removed.first == description.name; });
  if (!default_name_) default_name_ = description.name;
  exports_.push_back(std::move(description));
  return true;
}

bool ExportList::remove(std::string_view name, std::string reason) {
  const auto it = std::find_if(exports_.begin(), exports_.end(),
                               [&](const ExportDescription& e) { return e.name == name; });
  if (it == exports_.end()) return false;
  exports_.erase(it);
  if (removed_.size() >= kMaxRemovedRemembered) removed_.pop_front();
  removed_.emplace_back(std::string(name), std::move(reason));
  return true;
}

const ExportDescription* ExportList::get(std::string_view name) const noexcept {
  for (const auto& e : exports_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

ExportDescription* ExportList::get(std::string_view name) noexcept {
  return const_cast<ExportDescription*>(std::as_const(*this).get(name));
}

std::vector<ExportSummary> ExportList::list() const {
  std::vector<ExportSummary> out;
  out.reserve(exports_.size());
  // The default first, whatever was added before it was re-added.
  const ExportDescription* first = default_name_ ? get(*default_name_) : nullptr;
  if (first != nullptr) out.push_back({first->name, first->description});
  for (const auto& e : exports_) {
    if (&e != first) out.push_back({e.name, e.description});
  }
  return out;
}

ExportLookup ExportList::find(std::string_view name) const {
  if (name.empty() && !default_name_) return {std::nullopt, unknown_reason(name)};
  const std::string_view resolved = name.empty() ? std::string_view(*default_name_) : name;
  if (const auto* e = get(resolved)) return {*e, {}};
  for (auto it = removed_.rbegin(); it != removed_.rend(); ++it) {
    if (it->first == resolved) {
      return {std::nullopt, std::string(name.empty() ? "the default export " : "export ") +
                                it->first + " was removed: " + it->second};
    }
  }
  return {std::nullopt, unknown_reason(name)};
}

// Short: the name asked for and the first few names served, enough to spot a typo.
std::string ExportList::unknown_reason(std::string_view name) const {
  if (exports_.empty()) {
    return name.empty()
               ? "no default export: this server serves no export yet"
               : "unknown export '" + std::string(name) + "': this server serves no export";
  }
  std::string out = name.empty() ? "no default export; exports: "
                                 : "unknown export '" + std::string(name) + "'; exports: ";
  const auto names = list();
  const size_t shown = std::min(names.size(), kMaxNamesInMessage);
  for (size_t i = 0; i < shown; ++i) {
    if (i > 0) out += ", ";
    out += names[i].name.empty() ? "\"\"" : names[i].name;
  }
  if (names.size() > shown) out += " and " + std::to_string(names.size() - shown) + " more";
  return out;
}

}  // namespace nbd
