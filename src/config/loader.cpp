// The Loader's walk (see loader.h) and the public entry points of config.h.
#include "loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>
#include <unordered_map>

#include <yaml-cpp/eventhandler.h>

#include "strata/common/strings.h"

#include "units.h"

namespace strata::config {

namespace detail {

namespace {

// A compiler-style cap: past this many the rest are noise (and a hostile file could otherwise
// make millions of them through aliases).
constexpr std::size_t kMaxErrors = 100;
// Mappings merged with "<<" into one mapping; real configs use a handful.
constexpr std::size_t kMaxMergeSources = 64;
// Config files are small; anything bigger is a mistake (or an attack on the YAML parser).
constexpr std::size_t kMaxConfigBytes = 16 * kMiB;

// Optimal string alignment distance (Levenshtein plus adjacent transpositions), ASCII
// case-insensitive: "max_byte" -> "max_bytes" is 1, "intreval" -> "interval" is 1.
std::size_t editDistance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        prev[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const bool same = asciiLower(a[i - 1]) == asciiLower(b[j - 1]);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
            if (i > 1 && j > 1 && asciiLower(a[i - 1]) == asciiLower(b[j - 2]) &&
                asciiLower(a[i - 2]) == asciiLower(b[j - 1])) {
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
            }
        }
        std::swap(prev2, prev);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

bool before(const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
}

}  // namespace

std::string suggest(std::string_view word, const std::vector<std::string_view>& candidates) {
    // Words this long and unlike anything are not typos; do not make the hint quadratic either.
    if (word.empty() || word.size() > 64) {
        return "";
    }
    std::string best;
    std::size_t best_distance = std::string_view::npos;
    for (auto candidate : candidates) {
        auto distance = editDistance(word, candidate);
        // About one typo per three characters, at least one; and a truncated or extended word
        // ("warning" for "warn") also counts when the shared prefix is substantial.
        const std::size_t allowed =
            std::max<std::size_t>(1, std::min(word.size(), candidate.size()) / 3);
        const bool prefix = std::min(word.size(), candidate.size()) >= 3 &&
                            (toLower(word).rfind(toLower(candidate), 0) == 0 ||
                             toLower(candidate).rfind(toLower(word), 0) == 0);
        // Never when the edit rewrites the whole word: "z" is not a typo of "a".
        const bool rewritten = distance >= std::min(word.size(), candidate.size());
        if ((distance <= allowed || prefix) && !rewritten && distance < best_distance) {
            best = std::string(candidate);
            best_distance = distance;
        }
    }
    return best;
}

std::string_view typeName(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Null:
            return "null";
        case YAML::NodeType::Scalar:
            return "scalar";
        case YAML::NodeType::Sequence:
            return "list";
        case YAML::NodeType::Map:
            return "mapping";
        case YAML::NodeType::Undefined:
            break;
    }
    return "nothing";
}

void Loader::error(const YAML::Mark& mark, const std::string& path, std::string message) {
    if (errors_.size() >= kMaxErrors) {
        ++dropped_;
        return;
    }
    Diagnostic d;
    d.file = file_;
    // yaml-cpp marks are 0-based; a null mark (-1) has no position, shown as the file start.
    d.line = mark.line >= 0 ? mark.line + 1 : 1;
    d.column = mark.column >= 0 ? mark.column + 1 : 1;
    d.path = path;
    d.message = std::move(message);
    errors_.push_back(std::move(d));
}

YAML::Mark Loader::valueMark(const YAML::Node& value, const YAML::Mark& key_mark) {
    if (!value.IsDefined() || value.IsNull() || value.Mark().line < 0) {
        return key_mark;
    }
    return value.Mark();
}

// State of one entries() call: what has been collected and which mappings were merged, so a
// mapping merged twice (directly or through a cycle of aliases) is walked once. Without this,
// "&m {<<: [*m, *m, *m]}" costs k^depth walks.
struct Loader::MergeState {
    std::vector<Entry> out;
    std::unordered_map<std::string, std::size_t> index;  // key -> position in out
    std::vector<YAML::Node> visited;                     // mappings already collected
    std::vector<YAML::Node> stack;                       // the merge chain being collected
};

std::vector<Loader::Entry> Loader::entries(const YAML::Node& map, const std::string& path) {
    MergeState state;
    collect(map, path, state, /*merged=*/false);
    return std::move(state.out);
}

void Loader::collect(const YAML::Node& map, const std::string& path, MergeState& state,
                     bool merged) {
    state.visited.push_back(map);
    state.stack.push_back(map);
    std::vector<std::pair<YAML::Node, YAML::Node>> merges;
    for (const auto& pair : map) {
        const YAML::Node& key = pair.first;
        if (!key.IsScalar()) {
            error(key.Mark(), path, "keys must be strings, got a " + std::string(typeName(key)));
            continue;
        }
        const std::string& name = key.Scalar();
        if (name == "<<" && key.Tag() == "?") {
            merges.emplace_back(key, pair.second);
            continue;
        }
        auto [existing, inserted] = state.index.emplace(name, state.out.size());
        if (!inserted) {
            // A merged mapping's keys are defaults: whatever came before them wins.
            if (!merged) {
                auto first = state.out[existing->second].key_node.Mark();
                error(key.Mark(), child(path, name),
                      "duplicate key (first at " + std::to_string(first.line + 1) + ":" +
                          std::to_string(first.column + 1) + ")");
            }
            continue;
        }
        state.out.push_back({name, key, pair.second});
    }
    auto mergeOne = [&](const YAML::Node& key, const YAML::Node& source) {
        if (!source.IsMap()) {
            error(valueMark(source, key.Mark()), path,
                  "merge key (<<) needs a mapping or a list of mappings");
            return;
        }
        auto same = [&](const YAML::Node& n) { return n.is(source); };
        if (std::any_of(state.stack.begin(), state.stack.end(), same)) {
            error(key.Mark(), path, "merge key (<<) merges a mapping into itself");
            return;
        }
        if (std::any_of(state.visited.begin(), state.visited.end(), same)) {
            return;  // merged already: its keys are all present
        }
        if (state.visited.size() >= kMaxMergeSources) {
            error(key.Mark(), path,
                  "too many merged mappings (over " + std::to_string(kMaxMergeSources) + ")");
            return;
        }
        collect(source, path, state, /*merged=*/true);
    };
    for (const auto& [key, value] : merges) {
        if (value.IsSequence()) {
            for (const auto& source : value) {
                mergeOne(key, source);
            }
        } else {
            mergeOne(key, value);
        }
    }
    state.stack.pop_back();
}

bool Loader::readScalar(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                        std::string_view expected, std::string& out) {
    if (!node.IsDefined() || node.IsNull()) {
        error(key_mark, path, "missing value; expected " + std::string(expected));
        return false;
    }
    if (!node.IsScalar()) {
        error(node.Mark(), path,
              "expected " + std::string(expected) + ", got a " + std::string(typeName(node)));
        return false;
    }
    out = node.Scalar();
    return true;
}

bool Loader::readInteger(const YAML::Node& node, const YAML::Mark& key_mark,
                         const std::string& path, std::uint64_t min, std::uint64_t max,
                         std::uint64_t& out) {
    std::string text;
    if (!readScalar(node, key_mark, path, "an integer", text)) {
        return false;
    }
    const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) {
        error(node.Mark(), path, "expected an integer, got \"" + text + "\"");
        return false;
    }
    auto value = parseDecimal(text);
    if (!value || *value < min || *value > max) {
        error(node.Mark(), path,
              text + " out of range " + std::to_string(min) + ".." + std::to_string(max));
        return false;
    }
    out = *value;
    return true;
}

bool Loader::readDuration(const YAML::Node& node, const YAML::Mark& key_mark,
                          const std::string& path, std::uint64_t min, std::uint64_t max,
                          Duration& out) {
    std::string text;
    if (!readScalar(node, key_mark, path, "a duration (e.g. 250ms, 2s, 1m, 1h)", text)) {
        return false;
    }
    Duration value{};
    if (!parseDuration(text, value)) {
        error(node.Mark(), path,
              "invalid duration \"" + text +
                  "\"; use an integer with ms, s, m, h or d (e.g. 250ms, 2s, 1m)");
        return false;
    }
    const auto ms = static_cast<std::uint64_t>(value.count());
    if (ms < min || ms > max) {
        const bool bare =
            std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
        error(node.Mark(), path,
              text + " out of range " + formatDuration(Duration(static_cast<Duration::rep>(min))) +
                  ".." + formatDuration(Duration(static_cast<Duration::rep>(max))) +
                  (bare ? " (a bare number is seconds)" : ""));
        return false;
    }
    out = value;
    return true;
}

bool Loader::readBytes(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                       std::uint64_t min, std::uint64_t max, std::uint64_t& out) {
    std::string text;
    if (!readScalar(node, key_mark, path, "a size (e.g. 64MiB, 512KiB, 1GB)", text)) {
        return false;
    }
    std::uint64_t value = 0;
    if (!parseBytes(text, value)) {
        error(node.Mark(), path,
              "invalid size \"" + text +
                  "\"; use an integer with B, KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, "
                  "GB, TB (powers of 1000)");
        return false;
    }
    if (value < min || value > max) {
        error(node.Mark(), path,
              text + " out of range " + formatBytes(min) + ".." + formatBytes(max));
        return false;
    }
    out = value;
    return true;
}

bool Loader::readFlag(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                      bool& out) {
    std::string text;
    if (!readScalar(node, key_mark, path, "true or false", text)) {
        return false;
    }
    // YAML 1.2 core schema booleans only: "yes", "on" and friends are YAML 1.1 surprises.
    if (text == "true" || text == "True" || text == "TRUE") {
        out = true;
        return true;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
        out = false;
        return true;
    }
    error(node.Mark(), path, "expected true or false, got \"" + text + "\"");
    return false;
}

bool Loader::readText(const YAML::Node& node, const YAML::Mark& key_mark, const std::string& path,
                      std::span<const std::string_view> choices, TextCheck check,
                      std::string& out) {
    std::string text;
    if (!readScalar(node, key_mark, path, choices.empty() ? "a string" : "one of its choices",
                    text)) {
        return false;
    }
    if (!choices.empty() &&
        std::find(choices.begin(), choices.end(), std::string_view(text)) == choices.end()) {
        std::string message = "invalid value \"" + text + "\"; expected one of";
        for (std::size_t i = 0; i < choices.size(); ++i) {
            message += (i == 0 ? " " : ", ") + std::string(choices[i]);
        }
        auto hint = suggest(text, {choices.begin(), choices.end()});
        if (!hint.empty()) {
            message += "; did you mean \"" + hint + "\"?";
        }
        error(node.Mark(), path, std::move(message));
        return false;
    }
    if (check != nullptr) {
        std::string problem;
        if (!check(text, problem)) {
            error(node.Mark(), path, std::move(problem));
            return false;
        }
    }
    out = std::move(text);
    return true;
}

bool Loader::readEndpoint(const YAML::Node& node, const YAML::Mark& key_mark,
                          const std::string& path, int min_port, Endpoint& out) {
    std::string text;
    if (!readScalar(node, key_mark, path, "an address \"host:port\"", text)) {
        return false;
    }
    std::string problem;
    if (!parseEndpointWithMinPort(text, min_port, out, problem)) {
        error(node.Mark(), path, std::move(problem));
        return false;
    }
    return true;
}

namespace {

bool isV6(const std::string& canonical) {
    return canonical.find(':') != std::string::npos;
}

std::string at(const YAML::Mark& mark) {
    return std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

}  // namespace

void Loader::crossCheck(const Config& config) {
    if (config.listeners.empty() && !listeners_mistyped) {
        error(listeners_mark, "listeners", "no listeners configured; at least one is required");
    }
    // Two binds clash (bind() fails, or SO_REUSEPORT silently splits traffic between them) on
    // the same port with the same address, or when one is the wildcard of the other's family.
    // Port 0 never clashes: the kernel picks distinct ephemeral ports. Linear, not pairwise.
    std::map<std::pair<std::uint16_t, std::string>, std::size_t> by_address;
    std::map<std::pair<std::uint16_t, bool>, std::size_t> wildcard_by_family;
    std::map<std::pair<std::uint16_t, bool>, std::size_t> first_by_family;
    for (std::size_t j = 0; j < binds.size(); ++j) {
        const auto& endpoint = binds[j].endpoint;
        if (endpoint.port == 0) {
            continue;
        }
        const auto host = canonicalHost(endpoint.host);
        const auto family = std::make_pair(endpoint.port, isV6(host));
        const bool wildcard = host == "0.0.0.0" || host == "::";
        std::optional<std::size_t> clash;
        if (auto it = by_address.find({endpoint.port, host}); it != by_address.end()) {
            clash = it->second;
        } else if (auto w = wildcard_by_family.find(family); w != wildcard_by_family.end()) {
            clash = w->second;
        } else if (auto f = first_by_family.find(family); wildcard && f != first_by_family.end()) {
            clash = f->second;
        }
        if (clash) {
            const auto& first = binds[*clash];
            error(binds[j].mark, binds[j].path,
                  "address " + endpoint.text + " conflicts with " + first.path + " (" +
                      first.endpoint.text + " at " + at(first.mark) + ")");
            continue;
        }
        by_address.emplace(std::make_pair(endpoint.port, host), j);
        first_by_family.emplace(family, j);
        if (wildcard) {
            wildcard_by_family.emplace(family, j);
        }
    }
    std::vector<std::string_view> names;
    for (const auto& [name, upstream] : config.upstreams) {
        names.push_back(name);
    }
    std::vector<std::string_view> listener_names;
    for (const auto& listener : config.listeners) {
        listener_names.push_back(listener.name);
    }
    for (const auto& ref : listener_refs) {
        if (std::find(listener_names.begin(), listener_names.end(), ref.name) !=
            listener_names.end()) {
            continue;
        }
        std::string message = "unknown listener \"" + ref.name + "\"";
        auto hint = suggest(ref.name, listener_names);
        if (!hint.empty()) {
            message += "; did you mean \"" + hint + "\"?";
        }
        error(ref.mark, ref.path, std::move(message));
    }
    for (const auto& ref : upstream_refs) {
        if (config.upstreams.count(ref.name) != 0) {
            continue;
        }
        std::string message = "unknown upstream \"" + ref.name + "\"";
        auto hint = suggest(ref.name, names);
        if (!hint.empty()) {
            message += "; did you mean \"" + hint + "\"?";
        } else if (names.empty()) {
            message += "; no upstreams are defined";
        }
        error(ref.mark, ref.path, std::move(message));
    }
    // An object over cache.l1.max_bytes can never be stored when L1 is the only tier. (A
    // defaulted max_object_bytes is never an error: larger objects are counted as rejected.)
    const std::uint64_t l1_bytes = config.cache.l1.max_bytes;
    if (l1_bytes > 0 && config.cache.l2.servers.empty()) {
        for (const auto& ref : object_limits) {
            if (ref.bytes > l1_bytes) {
                error(ref.mark, ref.path,
                      formatBytes(ref.bytes) + " exceeds cache.l1.max_bytes " +
                          formatBytes(l1_bytes) + (l1_max_bytes_written ? "" : " (default)") +
                          "; such an object could never be stored");
            }
        }
    }
}

namespace {

// Records where each document starts and nothing else: the cheapest way to ask yaml-cpp whether
// a second document follows the first.
class DocumentStarts : public YAML::EventHandler {
public:
    std::optional<YAML::Mark> start;

    void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
};

}  // namespace

void Loader::checkSingleDocument(const std::string& text) {
    // Not YAML::LoadAll: in yaml-cpp 0.7 it never returns on a stray token at document level
    // (a lone ","): HandleNextDocument reports a new empty document at the same position
    // forever. Asking for exactly two documents is bounded, and "no progress" identifies the
    // stray token. (Found by tests/fuzz/config_yaml_fuzz.cpp; corpus/crash-yaml-cpp-loadall.)
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    DocumentStarts first;
    if (!parser.HandleNextDocument(first) || !first.start) {
        return;
    }
    DocumentStarts second;
    if (!parser.HandleNextDocument(second) || !second.start) {
        return;
    }
    if (second.start->pos > first.start->pos) {
        error(*second.start, "", "more than one YAML document; strata reads exactly one");
    } else {
        error(*second.start, "", "invalid YAML: unexpected token outside any collection");
    }
}

LoadResult Loader::run(const std::string& text) {
    auto config = std::make_shared<Config>();
    config->source = file_;
    listeners_mark = YAML::Mark();
    listeners_mark.line = 0;
    listeners_mark.column = 0;
    try {
        if (text.size() > kMaxConfigBytes) {
            error(listeners_mark, "", "file too large (over " + formatBytes(kMaxConfigBytes) + ")");
        } else {
            YAML::Node root;
            bool parsed = true;
            try {
                root = YAML::Load(text);
                checkSingleDocument(text);
            } catch (const YAML::Exception& e) {
                error(e.mark, "", "invalid YAML: " + e.msg);
                parsed = false;
            }
            parsed = parsed && errors_.empty();
            if (parsed && !root.IsNull() && !root.IsMap()) {
                error(root.Mark(), "",
                      "expected a mapping of top-level keys, got a " + std::string(typeName(root)));
            } else if (parsed) {
                readMap(root, listeners_mark, "", *config);
                crossCheck(*config);
            }
        }
    } catch (const std::exception& e) {
        // Nothing above should throw (types are checked before use); if something does, it is
        // still a diagnostic and never an escaped exception.
        error(listeners_mark, "", std::string("internal error while loading: ") + e.what());
    } catch (...) {
        error(listeners_mark, "", "internal error while loading");
    }
    LoadResult result;
    std::stable_sort(errors_.begin(), errors_.end(), before);
    if (dropped_ > 0) {
        Diagnostic more;
        more.file = file_;
        more.message = "too many errors; " + std::to_string(dropped_) + " more not shown";
        errors_.push_back(std::move(more));
    }
    result.errors = std::move(errors_);
    if (result.errors.empty()) {
        result.config = std::move(config);
    }
    return result;
}

}  // namespace detail

std::string Diagnostic::format() const {
    std::string out = file;
    if (line > 0) {
        out += ":" + std::to_string(line) + ":" + std::to_string(column);
    }
    out += ": ";
    if (!path.empty()) {
        out += path + ": ";
    }
    out += message;
    return out;
}

LoadResult loadString(const std::string& text, const std::string& name) {
    detail::Loader loader(name);
    return loader.run(text);
}

LoadResult loadFile(const std::string& path) {
    auto fail = [&](const std::string& message) {
        LoadResult result;
        Diagnostic d;
        d.file = path;
        d.message = message;
        result.errors.push_back(std::move(d));
        return result;
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(std::string("cannot open: ") + std::strerror(errno));
    }
    std::string text;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        ::close(fd);
        return fail("cannot read: is a directory");
    }
    char buf[64 * 1024];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const int saved = errno;
            ::close(fd);
            return fail(std::string("cannot read: ") + std::strerror(saved));
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > detail::kMaxConfigBytes) {
            ::close(fd);
            return fail("file too large (over " + formatBytes(detail::kMaxConfigBytes) + ")");
        }
    }
    ::close(fd);
    return loadString(text, path);
}

const std::vector<SchemaKey>& schema() {
    static const std::vector<SchemaKey> keys = [] {
        std::vector<SchemaKey> out;
        detail::describeFields<Config>(out, "");
        return out;
    }();
    return keys;
}

}  // namespace strata::config
