#include <yaml-cpp/yaml.h>

#include "config/config.hpp"

namespace config {
namespace {

// Key paths as ConfigError::key_path writes them: "target.auth.method", "paths[1].portal".
void collect(const YAML::Node& node, const std::string& path, KeyLines& out) {
  if (node.IsMap()) {
    for (const auto& item : node) {
      if (!item.first.IsScalar()) continue;
      const std::string key = path.empty() ? item.first.Scalar() : path + "." + item.first.Scalar();
      if (!item.first.Mark().is_null()) out.emplace(key, item.first.Mark().line + 1);
      collect(item.second, key, out);
    }
  } else if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      const std::string key = path + "[" + std::to_string(i) + "]";
      if (!node[i].Mark().is_null()) out.emplace(key, node[i].Mark().line + 1);
      collect(node[i], key, out);
    }
  }
}

}  // namespace

KeyLines key_lines(std::string_view yaml) {
  KeyLines out;
  try {
    collect(YAML::Load(std::string(yaml)), "", out);
  } catch (const YAML::Exception&) {
    out.clear();  // a file that does not parse has its errors from load_string()
  }
  return out;
}

}  // namespace config
