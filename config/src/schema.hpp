#pragma once
// Private machinery behind config.cpp: a declarative schema of YAML mappings. Each mapping is a
// Section<S> listing its keys once (name, required or not, member of S, value parser); the same
// table drives parsing, unknown-key detection with suggestions, and known_key_paths().

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "config/error.hpp"

namespace config::detail {

class SectionSchema;

// Collects errors for one document; positions come from yaml-cpp marks (0-based there).
class Context {
 public:
  Context(std::string file, const SectionSchema& root) : file_(std::move(file)), root_(root) {}

  void error(const YAML::Mark& mark, std::string key_path, config_errc code, std::string message);
  // An empty value (`key:`) has no text of its own: point at the key that introduced it.
  void error(const YAML::Node& at, std::string key_path, config_errc code, std::string message) {
    const bool use_key = at.IsNull() && !key_mark_.is_null();
    error(use_key ? key_mark_ : at.Mark(), std::move(key_path), code, std::move(message));
  }
  // For problems of a mapping as a whole (a missing key): its key, or the mapping at top level.
  void error_in_section(const YAML::Node& map, std::string key_path, config_errc code,
                        std::string message) {
    error(key_mark_.is_null() ? map.Mark() : key_mark_, std::move(key_path), code,
          std::move(message));
  }

  // While alive, errors about the value being parsed are anchored at `mark` (see error()).
  class KeyScope {
   public:
    KeyScope(Context& ctx, const YAML::Mark& mark) : ctx_(ctx), saved_(ctx.key_mark_) {
      ctx_.key_mark_ = mark;
    }
    ~KeyScope() { ctx_.key_mark_ = saved_; }
    KeyScope(const KeyScope&) = delete;
    KeyScope& operator=(const KeyScope&) = delete;

   private:
    Context& ctx_;
    YAML::Mark saved_;
  };
  bool has_errors() const { return !errors_.empty(); }
  std::size_t error_count() const { return errors_.size(); }
  std::vector<ConfigError> take_errors();

  // Reported beside the result, never stopping the load (Result::warnings()).
  void warning(const YAML::Node& at, std::string key_path, config_errc code, std::string message);
  std::vector<ConfigError> take_warnings() { return std::move(warnings_); }
  const SectionSchema& root() const { return root_; }

 private:
  ConfigError positioned(const YAML::Mark& mark, std::string key_path, config_errc code,
                         std::string message) const;

  std::string file_;
  const SectionSchema& root_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  YAML::Mark key_mark_ = YAML::Mark::null_mark();
};

std::string join_key(std::string_view parent, std::string_view key);
// A value quoted for a message: shortened, control bytes replaced. Never used for secrets.
std::string quoted(std::string_view value);
// "a mapping", "a list", "no value", "'abc'": what the admin wrote instead of what was expected.
std::string describe_node(const YAML::Node& node);
// The value of `key` in a mapping without yaml-cpp's throwing lookups.
std::optional<YAML::Node> find_value(const YAML::Node& map, std::string_view key);
std::optional<YAML::Node> find_key(const YAML::Node& map, std::string_view key);

// The scalar text of `node`, or nullptr after reporting that `expected` was wanted instead.
const std::string* scalar_or_error(Context& ctx, const YAML::Node& node, const std::string& path,
                                   std::string_view expected);

// What a mapping accepts, for suggestions and key listings, independent of the struct type.
class SectionSchema {
 public:
  struct Entry {
    std::string_view key;
    const SectionSchema* child = nullptr;  // nested mapping (or list of mappings)
    bool child_is_list = false;
  };
  virtual ~SectionSchema() = default;
  virtual std::vector<Entry> entries() const = 0;
};

// "unknown key 'foo'" plus "; did you mean 'bar'?" or "; it belongs under 'target'".
std::string unknown_key_message(std::string_view key, const SectionSchema& here,
                                std::string_view here_path, const SectionSchema& root);
void append_key_paths(const SectionSchema& schema, const std::string& prefix,
                      std::vector<std::string>& out);

template <class S>
struct Field {
  std::string_view key;
  bool required = false;
  const SectionSchema* child = nullptr;
  bool child_is_list = false;
  std::function<void(Context&, const YAML::Node& value, const std::string& path, S& out)> parse;
  // Writes "key: value", or nothing for an unset optional or an empty string.
  std::function<void(YAML::Emitter&, const S&)> emit;
};

template <class S>
class Section final : public SectionSchema {
 public:
  // Cross-field rules, run after every field: gets the mapping node (possibly null) and the struct.
  using Check = std::function<void(Context&, const YAML::Node& map, const std::string& path, S&)>;

  explicit Section(std::vector<Field<S>> fields, Check check = {})
      : fields_(std::move(fields)), check_(std::move(check)) {}

  std::vector<Entry> entries() const override {
    std::vector<Entry> out;
    for (const auto& field : fields_) {
      out.push_back({field.key, field.child, field.child_is_list});
    }
    return out;
  }

  void emit(YAML::Emitter& out, const S& value) const {
    out << YAML::BeginMap;
    for (const auto& field : fields_) {
      field.emit(out, value);
    }
    out << YAML::EndMap;
  }

  void parse(Context& ctx, const YAML::Node& node, const std::string& path, S& out) const {
    // `key:` with nothing after it is an empty mapping: its required keys are then reported.
    if (!node.IsNull() && !node.IsMap()) {
      ctx.error(node, path, config_errc::wrong_type,
                "expected a mapping of keys, got " + describe_node(node));
      return;
    }
    struct Present {
      const Field<S>* field;
      YAML::Node key;
      YAML::Node value;
    };
    std::vector<Present> present;
    std::vector<std::pair<std::string, YAML::Node>> seen;
    if (node.IsMap()) {
      for (const auto& item : node) {
        const YAML::Node& key = item.first;
        if (!key.IsScalar()) {
          ctx.error(key, path, config_errc::wrong_type, "keys must be plain strings");
          continue;
        }
        const std::string& name = key.Scalar();
        auto previous = std::find_if(seen.begin(), seen.end(),
                                     [&](const auto& entry) { return entry.first == name; });
        if (previous != seen.end()) {
          ctx.error(key, join_key(path, name), config_errc::duplicate_key,
                    "duplicate key '" + name + "' (first given on line " +
                        std::to_string(previous->second.Mark().line + 1) + ")");
          continue;
        }
        seen.emplace_back(name, key);
        auto field = std::find_if(fields_.begin(), fields_.end(),
                                  [&](const Field<S>& f) { return f.key == name; });
        if (field == fields_.end()) {
          ctx.error(key, join_key(path, name), config_errc::unknown_key,
                    unknown_key_message(name, *this, path, ctx.root()));
          continue;
        }
        present.push_back({&*field, key, item.second});
      }
    }
    for (const auto& field : fields_) {
      auto found = std::find_if(present.begin(), present.end(),
                                [&](const Present& entry) { return entry.field == &field; });
      if (found != present.end()) {
        Context::KeyScope scope(ctx, found->key.Mark());
        field.parse(ctx, found->value, join_key(path, field.key), out);
      } else if (field.required) {
        ctx.error_in_section(node, join_key(path, field.key), config_errc::missing_key,
                             "missing required key '" + std::string(field.key) + "'");
      }
    }
    if (check_) {
      check_(ctx, node, path, out);
    }
  }

 private:
  std::vector<Field<S>> fields_;
  Check check_;
};

template <class T>
struct unwrap_optional {
  using type = T;
};
template <class T>
struct unwrap_optional<std::optional<T>> {
  using type = T;
};

template <class S, class M, class Parser>
Field<S> make_field(std::string_view key, bool required, M S::*member, Parser parser) {
  Field<S> field{.key = key,
                 .required = required,
                 .child = nullptr,
                 .child_is_list = false,
                 .parse = {},
                 .emit = {}};
  if constexpr (requires { parser.schema; }) {
    field.child = parser.schema;
    field.child_is_list = Parser::is_list;
  }
  field.parse = [member, parser](Context& ctx, const YAML::Node& value, const std::string& path,
                                 S& out) {
    // Parsed into a temporary so that a failed value leaves the default in place.
    typename unwrap_optional<M>::type parsed{};
    if (parser(ctx, value, path, parsed)) {
      out.*member = std::move(parsed);
    }
  };
  field.emit = [key, member, parser](YAML::Emitter& out, const S& value) {
    const M& current = value.*member;
    if constexpr (!std::is_same_v<M, typename unwrap_optional<M>::type>) {
      if (current) {
        out << YAML::Key << std::string(key) << YAML::Value;
        parser.emit(out, *current);
      }
    } else {
      if constexpr (std::is_same_v<M, std::string>) {
        if (current.empty()) {
          return;
        }
      }
      out << YAML::Key << std::string(key) << YAML::Value;
      parser.emit(out, current);
    }
  };
  return field;
}

// Table entries: `required("iqn", &Target::iqn, iscsi_name{})`. A std::optional member is set
// only when the key is present; any other member keeps its default initializer when absent.
template <class S, class M, class Parser>
Field<S> required(std::string_view key, M S::*member, Parser parser) {
  return make_field(key, true, member, std::move(parser));
}
template <class S, class M, class Parser>
Field<S> optional(std::string_view key, M S::*member, Parser parser) {
  return make_field(key, false, member, std::move(parser));
}

// ---- value parsers: bool operator()(Context&, const YAML::Node&, const std::string& path, T&)

template <class T>
struct integer {
  T min = std::numeric_limits<T>::min();
  T max = std::numeric_limits<T>::max();

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path, T& out) const {
    const std::string expected =
        "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    const std::string* text = scalar_or_error(ctx, node, path, expected);
    if (text == nullptr) {
      return false;
    }
    // Decimal digits only: yaml-cpp would also take 0x.., 0o.. and trailing junk.
    std::uint64_t value = 0;
    const char* begin = text->data();
    const char* end = begin + text->size();
    const auto [stop, ec] = std::from_chars(begin, end, value);
    const bool digits_only =
        !text->empty() && std::all_of(begin, end, [](char c) { return c >= '0' && c <= '9'; });
    if (!digits_only || stop != end || ec != std::errc{} ||
        value < static_cast<std::uint64_t>(min) || value > static_cast<std::uint64_t>(max)) {
      ctx.error(node, path, config_errc::invalid_value,
                "expected " + expected + ", got " + quoted(*text));
      return false;
    }
    out = static_cast<T>(value);
    return true;
  }
  void emit(YAML::Emitter& out, T value) const { out << static_cast<unsigned long long>(value); }
};

// Free text. The value is never echoed in messages, so the same parser serves secrets;
// `secret` makes emit() print "<redacted>" instead of the value.
struct text {
  std::size_t max_length = 255;
  bool secret = false;

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::string& out) const;
  void emit(YAML::Emitter& out, const std::string& value) const;
};

// YAML 1.1 booleans as yaml-cpp spells them (true/false, yes/no, on/off).
struct boolean {
  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path, bool& out) const;
  void emit(YAML::Emitter& out, bool value) const { out << value; }
};

template <class E>
struct one_of {
  std::vector<std::pair<std::string_view, E>> choices;

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path, E& out) const {
    std::string names;
    for (const auto& [name, value] : choices) {
      names += (names.empty() ? "" : ", ") + std::string(name);
    }
    const std::string* word = scalar_or_error(ctx, node, path, "one of: " + names);
    if (word == nullptr) {
      return false;
    }
    for (const auto& [name, value] : choices) {
      if (*word == name) {
        out = value;
        return true;
      }
    }
    ctx.error(node, path, config_errc::invalid_value,
              "unknown value " + quoted(*word) + "; expected one of: " + names);
    return false;
  }
  void emit(YAML::Emitter& out, E value) const {
    for (const auto& [name, choice] : choices) {
      if (choice == value) {
        out << std::string(name);
      }
    }
  }
};

template <class S>
struct nested {
  static constexpr bool is_list = false;
  const Section<S>* schema;

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path, S& out) const {
    schema->parse(ctx, node, path, out);
    return true;
  }
  void emit(YAML::Emitter& out, const S& value) const { schema->emit(out, value); }
};

template <class S>
struct list_of {
  static constexpr bool is_list = true;
  const Section<S>* schema;
  std::size_t min_items = 0;

  bool operator()(Context& ctx, const YAML::Node& node, const std::string& path,
                  std::vector<S>& out) const {
    if (!node.IsSequence()) {
      ctx.error(node, path, config_errc::wrong_type, "expected a list, got " + describe_node(node));
      return false;
    }
    if (node.size() < min_items) {
      ctx.error(node, path, config_errc::invalid_value,
                "the list needs at least " + std::to_string(min_items) + " entr" +
                    (min_items == 1 ? "y" : "ies"));
      return false;
    }
    out.clear();
    for (const auto& item : node) {
      S element{};
      // An empty entry (`- `) keeps pointing at the list's key.
      std::optional<Context::KeyScope> scope;
      if (!item.IsNull()) {
        scope.emplace(ctx, item.Mark());
      }
      schema->parse(ctx, item, path + "[" + std::to_string(out.size()) + "]", element);
      out.push_back(std::move(element));
    }
    return true;
  }
  void emit(YAML::Emitter& out, const std::vector<S>& values) const {
    out << YAML::BeginSeq;
    for (const S& value : values) {
      schema->emit(out, value);
    }
    out << YAML::EndSeq;
  }
};

}  // namespace config::detail
