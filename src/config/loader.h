// Loader: walks a parsed YAML document against the schema tables, filling a Config and
// collecting every problem as a Diagnostic with its YAML::Mark. It never stops at the first
// error: a bad value is reported and the walk goes on with the key's default, so one run of
// `strata --check` lists everything to fix. Cross-key checks (duplicate binds, routes naming
// unknown upstreams) run after the walk, from references recorded on the way.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "strata/config/config.h"

#include "schema.h"

namespace strata::config::detail {

// Where each key of one mapping was found, for errors that involve more than one key.
class KeyMarks {
public:
    void add(std::string_view key, const YAML::Mark& key_mark, const YAML::Mark& value_mark) {
        seen_.push_back({key, key_mark, value_mark});
    }
    bool has(std::string_view key) const { return find(key) != nullptr; }
    // The value's mark, or `fallback` when the key was absent.
    YAML::Mark valueMark(std::string_view key, const YAML::Mark& fallback) const {
        const auto* seen = find(key);
        return seen ? seen->value_mark : fallback;
    }

private:
    struct Seen {
        std::string_view key;  // points into the schema table (static)
        YAML::Mark key_mark;
        YAML::Mark value_mark;
    };
    const Seen* find(std::string_view key) const {
        for (const auto& seen : seen_) {
            if (seen.key == key) {
                return &seen;
            }
        }
        return nullptr;
    }
    std::vector<Seen> seen_;
};

// Best "did you mean" candidate for `word` among `candidates`, or "" if none is close.
std::string suggest(std::string_view word, const std::vector<std::string_view>& candidates);

std::string_view typeName(const YAML::Node& node);

class Loader {
public:
    explicit Loader(std::string file) : file_(std::move(file)) {}

    // Parses and validates; the one entry point. Never throws.
    LoadResult run(const std::string& text);

    void error(const YAML::Mark& mark, const std::string& path, std::string message);

    // Mark of a value node, or of its key when the value is empty (yaml-cpp marks an empty
    // value at the start of the next line, which would point at the wrong key).
    static YAML::Mark valueMark(const YAML::Node& value, const YAML::Mark& key_mark);

    static std::string child(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }
    static std::string item(const std::string& path, std::size_t index) {
        return path + "[" + std::to_string(index) + "]";
    }

    // A mapping's entries with YAML merge keys ("<<: *defaults") expanded: explicit keys first,
    // then merged ones not overridden. Reports duplicate explicit keys and non-string keys.
    struct Entry {
        std::string key;
        YAML::Node key_node;
        YAML::Node value;
    };
    std::vector<Entry> entries(const YAML::Node& map, const std::string& path);

    // Reads a mapping described by fieldsOf<T>() into `out`. A null node is an empty mapping.
    template <class T>
    KeyMarks readMap(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                     T& out);

    // Calls fn(item, item_path, index) for each element; a null node is an empty list.
    template <class Fn>
    void readList(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                  Fn&& fn) {
        if (node.IsNull()) {
            return;
        }
        if (!node.IsSequence()) {
            error(valueMark(node, key_mark), path,
                  "expected a list, got a " + std::string(typeName(node)));
            return;
        }
        std::size_t index = 0;
        for (const auto& element : node) {
            fn(element, item(path, index), index);
            ++index;
        }
    }

    // Scalar readers: report and return false on a missing, mistyped or invalid value.
    bool readScalar(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                    std::string_view expected, std::string& out);
    bool readEndpoint(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                      int min_port, Endpoint& out);
    bool readInteger(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                     std::uint64_t min, std::uint64_t max, std::uint64_t& out);

    // Recorded during the walk, checked after it.
    struct BindRef {
        Endpoint endpoint;
        YAML::Mark mark;
        std::string path;
    };
    struct UpstreamRef {
        std::string name;
        YAML::Mark mark;
        std::string path;
    };
    std::vector<BindRef> binds;
    std::vector<UpstreamRef> upstream_refs;
    std::vector<UpstreamRef> listener_refs;  // routes[].match.listeners
    // Written routes[].cache.max_object_bytes, checked against cache.l1.max_bytes.
    struct ObjectLimitRef {
        std::uint64_t bytes;
        YAML::Mark mark;
        std::string path;
    };
    std::vector<ObjectLimitRef> object_limits;
    bool l1_max_bytes_written = false;
    YAML::Mark listeners_mark;  // where "listeners" was, for "no listeners" errors
    bool listeners_mistyped = false;

private:
    template <class T>
    void apply(const Field<T>& field, const YAML::Node& value, const YAML::Mark& key_mark,
               const std::string& path, T& out);
    bool readDuration(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                      std::uint64_t min, std::uint64_t max, Duration& out);
    bool readBytes(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                   std::uint64_t min, std::uint64_t max, std::uint64_t& out);
    bool readFlag(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                  bool& out);
    bool readText(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                  std::span<const std::string_view> choices, TextCheck check, std::string& out);
    struct MergeState;
    void collect(const YAML::Node& map, const std::string& path, MergeState& state, bool merged);
    void checkSingleDocument(const std::string& text);
    void crossCheck(const Config& config);

    std::string file_;
    std::vector<Diagnostic> errors_;
    std::size_t dropped_ = 0;
};

template <class T>
KeyMarks Loader::readMap(const YAML::Node& node, const YAML::Mark& key_mark,
                         const std::string& path, T& out) {
    KeyMarks marks;
    const auto& fields = fieldsOf<T>();
    const YAML::Mark where = valueMark(node, key_mark);
    if (!node.IsNull() && !node.IsMap()) {
        error(where, path, "expected a mapping, got a " + std::string(typeName(node)));
        return marks;
    }
    if (node.IsMap()) {
        for (auto& entry : entries(node, path)) {
            const Field<T>* field = nullptr;
            for (const auto& candidate : fields) {
                if (candidate.key == entry.key) {
                    field = &candidate;
                    break;
                }
            }
            const auto child_path = child(path, entry.key);
            if (field == nullptr) {
                // Top-level "x-..." keys are free for YAML anchors (docker-compose's convention).
                if (path.empty() && entry.key.rfind("x-", 0) == 0) {
                    continue;
                }
                std::vector<std::string_view> keys;
                for (const auto& candidate : fields) {
                    keys.push_back(candidate.key);
                }
                auto hint = suggest(entry.key, keys);
                std::string message = "unknown key";
                if (!hint.empty()) {
                    message += "; did you mean \"" + hint + "\"?";
                } else {
                    message += " (known keys:";
                    for (auto key : keys) {
                        message += " " + std::string(key);
                    }
                    message += ")";
                }
                error(entry.key_node.Mark(), child_path, std::move(message));
                continue;
            }
            marks.add(field->key, entry.key_node.Mark(),
                      valueMark(entry.value, entry.key_node.Mark()));
            apply(*field, entry.value, entry.key_node.Mark(), child_path, out);
        }
    }
    for (const auto& field : fields) {
        if (field.required && !marks.has(field.key)) {
            error(where, path.empty() ? std::string(field.key) : path,
                  "missing required key \"" + std::string(field.key) + "\"");
        }
    }
    return marks;
}

template <class T>
void Loader::apply(const Field<T>& field, const YAML::Node& value, const YAML::Mark& key_mark,
                   const std::string& path, T& out) {
    switch (field.kind) {
        case Kind::Count: {
            std::uint64_t n = 0;
            if (readInteger(value, key_mark, path, field.min, field.max, n)) {
                out.*field.u32 = static_cast<std::uint32_t>(n);
            }
            break;
        }
        case Kind::Bytes:
            readBytes(value, key_mark, path, field.min, field.max, out.*field.u64);
            break;
        case Kind::Bytes32: {
            std::uint64_t n = 0;
            if (readBytes(value, key_mark, path, field.min, field.max, n)) {
                out.*field.u32 = static_cast<std::uint32_t>(n);
            }
            break;
        }
        case Kind::Duration:
            readDuration(value, key_mark, path, field.min, field.max, out.*field.duration);
            break;
        case Kind::Flag:
            readFlag(value, key_mark, path, out.*field.flag);
            break;
        case Kind::Text:
            readText(value, key_mark, path, field.choices, field.check, out.*field.text);
            break;
        case Kind::Custom:
            field.custom(*this, value, key_mark, path, out);
            break;
    }
}

}  // namespace strata::config::detail
