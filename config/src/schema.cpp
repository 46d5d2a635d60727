#include "schema.hpp"

#include <algorithm>
#include <cctype>

namespace config::detail {

ConfigError Context::positioned(const YAML::Mark& mark, std::string key_path, config_errc code,
                                std::string message) const {
  // Only an empty document has no mark at all; its problems are at the start of the file.
  const int line = mark.is_null() ? 1 : mark.line + 1;
  const int column = mark.is_null() ? 1 : mark.column + 1;
  return ConfigError{.code = code,
                     .file = file_,
                     .line = line,
                     .column = column,
                     .key_path = std::move(key_path),
                     .message = std::move(message)};
}

void Context::error(const YAML::Mark& mark, std::string key_path, config_errc code,
                    std::string message) {
  errors_.push_back(positioned(mark, std::move(key_path), code, std::move(message)));
}

void Context::warning(const YAML::Node& at, std::string key_path, config_errc code,
                      std::string message) {
  warnings_.push_back(positioned(at.Mark(), std::move(key_path), code, std::move(message)));
}

std::vector<ConfigError> Context::take_errors() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(errors_);
}

std::string join_key(std::string_view parent, std::string_view key) {
  if (parent.empty()) {
    return std::string(key);
  }
  return std::string(parent) + "." + std::string(key);
}

std::string quoted(std::string_view value) {
  static constexpr std::size_t max_shown = 48;
  std::string out = "'";
  for (const char c : value.substr(0, max_shown)) {
    const auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte == 0x7f) ? '?' : c;
  }
  if (value.size() > max_shown) {
    out += "...";
  }
  return out + "'";
}

std::string describe_node(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "no value";
    case YAML::NodeType::Scalar:
      return quoted(node.Scalar());
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

std::optional<YAML::Node> find_key(const YAML::Node& map, std::string_view key) {
  if (!map.IsMap()) {
    return std::nullopt;
  }
  for (const auto& item : map) {
    if (item.first.IsScalar() && item.first.Scalar() == key) {
      return item.first;
    }
  }
  return std::nullopt;
}

std::optional<YAML::Node> find_value(const YAML::Node& map, std::string_view key) {
  if (!map.IsMap()) {
    return std::nullopt;
  }
  for (const auto& item : map) {
    if (item.first.IsScalar() && item.first.Scalar() == key) {
      return item.second;
    }
  }
  return std::nullopt;
}

const std::string* scalar_or_error(Context& ctx, const YAML::Node& node, const std::string& path,
                                   std::string_view expected) {
  if (node.IsScalar()) {
    return &node.Scalar();
  }
  ctx.error(node, path, config_errc::wrong_type,
            "expected " + std::string(expected) + ", got " + describe_node(node));
  return nullptr;
}

bool text::operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                      std::string& out) const {
  const std::string* value = scalar_or_error(ctx, node, path, "a string");
  if (value == nullptr) {
    return false;
  }
  if (value->empty()) {
    ctx.error(node, path, config_errc::invalid_value, "must not be empty");
    return false;
  }
  if (value->size() > max_length) {
    ctx.error(node, path, config_errc::invalid_value,
              "is " + std::to_string(value->size()) + " bytes long; at most " +
                  std::to_string(max_length) + " are allowed");
    return false;
  }
  out = *value;
  return true;
}

void text::emit(YAML::Emitter& out, const std::string& value) const {
  out << (secret ? std::string("<redacted>") : value);
}

bool boolean::operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                         bool& out) const {
  const std::string* word = scalar_or_error(ctx, node, path, "true or false");
  if (word == nullptr) {
    return false;
  }
  static constexpr std::pair<std::string_view, bool> spellings[] = {
      {"true", true}, {"yes", true}, {"on", true}, {"false", false}, {"no", false}, {"off", false},
  };
  for (const auto& [spelling, value] : spellings) {
    if (*word == spelling) {
      out = value;
      return true;
    }
  }
  ctx.error(node, path, config_errc::invalid_value, "expected true or false, got " + quoted(*word));
  return false;
}

namespace {

// Lower case, '-' read as '_': "Login-Timeout" is a near miss of "login_timeout".
std::string normalized(std::string_view key) {
  std::string out(key);
  for (char& c : out) {
    c = c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Optimal string alignment distance: edits plus adjacent transpositions ("secert").
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// "paths[3]" -> "paths[]", the spelling known_key_paths() uses.
std::string schema_path(std::string_view path) {
  std::string out;
  bool in_index = false;
  for (const char c : path) {
    if (c == '[') {
      in_index = true;
      out += "[]";
    } else if (c == ']') {
      in_index = false;
    } else if (!in_index) {
      out += c;
    }
  }
  return out;
}

void find_parents_of(const SectionSchema& schema, const std::string& prefix, std::string_view key,
                     std::vector<std::string>& parents) {
  for (const auto& entry : schema.entries()) {
    if (entry.key == key) {
      parents.push_back(prefix);
    }
    if (entry.child != nullptr) {
      const std::string child_prefix =
          join_key(prefix, entry.key) + (entry.child_is_list ? "[]" : "");
      find_parents_of(*entry.child, child_prefix, key, parents);
    }
  }
}

}  // namespace

std::string unknown_key_message(std::string_view key, const SectionSchema& here,
                                std::string_view here_path, const SectionSchema& root) {
  std::string message = "unknown key " + quoted(key);
  // Keys longer than any in the schema are junk, not typos; skip the quadratic distance.
  if (key.size() > 64) {
    return message;
  }
  const std::string wanted = normalized(key);
  const std::size_t budget = std::clamp<std::size_t>(wanted.size() / 3, 1, 3);
  std::string_view best;
  std::size_t best_distance = budget + 1;
  for (const auto& entry : here.entries()) {
    const std::size_t distance = edit_distance(wanted, normalized(entry.key));
    if (distance < best_distance) {
      best_distance = distance;
      best = entry.key;
    }
  }
  if (!best.empty()) {
    return message + "; did you mean '" + std::string(best) + "'?";
  }
  std::vector<std::string> parents;
  find_parents_of(root, "", key, parents);
  const std::string here_schema_path = schema_path(here_path);
  std::erase(parents, here_schema_path);
  if (!parents.empty()) {
    message += parents.front().empty() ? "; it belongs at the top level"
                                       : "; it belongs under '" + parents.front() + "'";
  }
  return message;
}

void append_key_paths(const SectionSchema& schema, const std::string& prefix,
                      std::vector<std::string>& out) {
  for (const auto& entry : schema.entries()) {
    const std::string path = join_key(prefix, entry.key);
    out.push_back(path);
    if (entry.child != nullptr) {
      append_key_paths(*entry.child, path + (entry.child_is_list ? "[]" : ""), out);
    }
  }
}

}  // namespace config::detail
