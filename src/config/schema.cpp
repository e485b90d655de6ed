// The schema tables (see schema.h) and the readers for keys that are more than one scalar.
// To add a key: add its field to the struct in config.h with its default, then one row here;
// conf/strata.yaml must document it (config_test checks that every schema key appears there).
#include "schema.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <re2/re2.h>
#include <unistd.h>

#include "strata/common/strings.h"

#include "loader.h"
#include "units.h"

namespace strata::config::detail {

namespace {

using YAML::Mark;
using YAML::Node;

constexpr std::uint64_t kSecond = 1000;
constexpr std::uint64_t kMinute = 60 * kSecond;
constexpr std::uint64_t kHour = 60 * kMinute;
constexpr std::uint64_t kDay = 24 * kHour;
constexpr std::uint64_t kTiB = 1024 * kGiB;

// ---- row builders -----------------------------------------------------------------------------

template <class T>
Field<T> durationField(std::string_view key, Duration T::*member, std::uint64_t min_ms,
                       std::uint64_t max_ms, std::string_view doc) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Duration;
    f.duration = member;
    f.min = min_ms;
    f.max = max_ms;
    f.doc = doc;
    return f;
}

template <class T>
Field<T> bytesField(std::string_view key, std::uint64_t T::*member, std::uint64_t min,
                    std::uint64_t max, std::string_view doc) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Bytes;
    f.u64 = member;
    f.min = min;
    f.max = max;
    f.doc = doc;
    return f;
}

template <class T>
Field<T> bytes32Field(std::string_view key, std::uint32_t T::*member, std::uint64_t min,
                      std::uint64_t max, std::string_view doc) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Bytes32;
    f.u32 = member;
    f.min = min;
    f.max = max;
    f.doc = doc;
    return f;
}

template <class T>
Field<T> countField(std::string_view key, std::uint32_t T::*member, std::uint64_t min,
                    std::uint64_t max, std::string_view doc) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Count;
    f.u32 = member;
    f.min = min;
    f.max = max;
    f.doc = doc;
    return f;
}

template <class T>
Field<T> flagField(std::string_view key, bool T::*member, std::string_view doc) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Flag;
    f.flag = member;
    f.doc = doc;
    return f;
}

template <class T>
Field<T> textField(std::string_view key, std::string T::*member, std::string_view doc,
                   TextCheck check = nullptr, std::span<const std::string_view> choices = {},
                   bool required = false) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Text;
    f.text = member;
    f.check = check;
    f.choices = choices;
    f.required = required;
    f.doc = doc;
    return f;
}

template <class T>
Field<T> customField(std::string_view key, CustomFn<T> fn, std::string_view type,
                     std::string_view default_text, std::string_view doc,
                     Describe describe = nullptr, bool required = false) {
    Field<T> f;
    f.key = key;
    f.kind = Kind::Custom;
    f.custom = fn;
    f.type = type;
    f.default_text = default_text;
    f.describe = describe;
    f.required = required;
    f.doc = doc;
    return f;
}

// A nested mapping stored in member M of Parent.
template <class Parent, class Child, Child Parent::*M>
void readSection(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 Parent& out) {
    loader.readMap(value, key_mark, path, out.*M);
}

template <class Child>
void describeSection(std::vector<SchemaKey>& out, const std::string& path) {
    describeFields<Child>(out, path);
}
template <class Child>
void describeList(std::vector<SchemaKey>& out, const std::string& path) {
    describeFields<Child>(out, path + "[]");
}

// ---- text checks ------------------------------------------------------------------------------

bool isTchar(char c) {
    // RFC 9110 5.6.2 token characters.
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool hasControlOrSpace(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

// Listener names end up in logs and metric labels.
bool checkName(std::string& value, std::string& error) {
    const bool ok =
        !value.empty() && value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_' || c == '-' || c == '.';
        });
    if (!ok) {
        error = "invalid name \"" + value + "\"; use 1..64 of A-Z a-z 0-9 _ - .";
    }
    return ok;
}

bool checkNotEmpty(std::string& value, std::string& error) {
    if (value.empty()) {
        error = "must not be empty";
        return false;
    }
    return true;
}

bool checkReadableFile(std::string& value, std::string& error) {
    if (value.empty()) {
        error = "must not be empty";
        return false;
    }
    if (::access(value.c_str(), R_OK) != 0) {
        error = "cannot read \"" + value + "\": " + std::strerror(errno);
        return false;
    }
    return true;
}

bool checkMethod(std::string& value, std::string& error) {
    if (value.empty() || !std::all_of(value.begin(), value.end(), isTchar)) {
        error = "invalid method \"" + value + "\"";
        return false;
    }
    // Methods are case-sensitive on the wire and standard ones are upper case; "get" in a config
    // file is a typo for GET, not a custom method.
    for (char& c : value) {
        c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
    }
    return true;
}

bool checkRequestPath(std::string& value, std::string& error) {
    if (value.empty() || value.front() != '/') {
        error = "path \"" + value + "\" must start with \"/\"";
        return false;
    }
    if (hasControlOrSpace(value) || value.find('#') != std::string::npos) {
        error = "path \"" + value + "\" contains a space, control character or '#'";
        return false;
    }
    return true;
}

bool checkPathPrefix(std::string& value, std::string& error) {
    if (!checkRequestPath(value, error)) {
        return false;
    }
    if (value.find('?') != std::string::npos) {
        error = "path_prefix \"" + value + "\" must not contain a query ('?')";
        return false;
    }
    return true;
}

bool checkExactPath(std::string& value, std::string& error) {
    if (!checkRequestPath(value, error)) {
        return false;
    }
    if (value.find('?') != std::string::npos) {
        error = "path \"" + value + "\" must not contain a query ('?'); match it with `query`";
        return false;
    }
    return true;
}

// RE2 (linear time: no route can be a ReDoS), compiled here so a bad one is a --check error.
bool checkRegex(std::string& value, std::string& error) {
    if (value.empty()) {
        error = "empty regular expression; omit the key to match anything";
        return false;
    }
    RE2::Options options;
    options.set_log_errors(false);
    RE2 re(value, options);
    if (!re.ok()) {
        error = "invalid regular expression \"" + value + "\": " + re.error();
        return false;
    }
    return true;
}

bool isHostLabelChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// Exact host ("api.example.com", "127.0.0.1", "[::1]") or "*.suffix"; lower-cased, since
// host names compare case-insensitively. "*" alone means any host, like omitting the key.
bool checkHostPattern(std::string& value, std::string& error) {
    value = toLower(value);
    if (value == "*") {
        value.clear();
        return true;
    }
    constexpr std::string_view kForm = "a host pattern is an exact name or \"*.suffix\"";
    if (value.empty()) {
        error = "empty host; omit the key (or use \"*\") to match any host";
        return false;
    }
    if (value.front() == '[') {
        if (value.back() == ']' && value.size() > 2 &&
            std::all_of(value.begin() + 1, value.end() - 1, [](char c) {
                return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
            })) {
            return true;
        }
        error = "invalid IPv6 host \"" + value + "\"";
        return false;
    }
    std::string_view name(value);
    if (name.rfind("*.", 0) == 0) {
        name.remove_prefix(2);
    }
    if (name.find(':') != std::string_view::npos) {
        error =
            "host \"" + value + "\" must not include a port (the Host header's port is ignored)";
        return false;
    }
    if (name.find('*') != std::string_view::npos) {
        error = "invalid host \"" + value + "\"; " + std::string(kForm);
        return false;
    }
    if (name.empty() || name.size() > 253) {
        error = "invalid host \"" + value + "\"; " + std::string(kForm);
        return false;
    }
    std::size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) {
                break;
            }
            label = 0;
        } else if (isHostLabelChar(c)) {
            ++label;
        } else {
            error = "invalid character '" + std::string(1, c) + "' in host \"" + value + "\"; " +
                    std::string(kForm);
            return false;
        }
        if (label > 63) {
            break;
        }
    }
    if (label == 0 || label > 63 || name.find("..") != std::string_view::npos) {
        error = "invalid host \"" + value + "\" (empty or overlong label); " + std::string(kForm);
        return false;
    }
    return true;
}

bool checkCiphers(std::string& value, std::string& error) {
    // Only the character set of an OpenSSL cipher list; the net module asks OpenSSL itself.
    const bool ok = std::all_of(value.begin(), value.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view(":+-!@=_,. ").find(c) != std::string_view::npos;
    });
    if (!ok) {
        error = "invalid character in cipher list \"" + value + "\"";
    }
    return ok;
}

// A header name (RFC 9110 5.1: a token).
bool checkHeaderName(std::string& value, std::string& error) {
    if (!value.empty() && !std::all_of(value.begin(), value.end(), isTchar)) {
        error = "invalid header name \"" + value + "\"";
        return false;
    }
    return true;
}

constexpr std::array<std::string_view, 5> kBalanceChoices{"round_robin", "least_connections",
                                                          "random_two", "consistent_hash", "first"};

// upstreams.<name>.hash.key: "uri", "client", "header:NAME" or "cookie:NAME".
bool checkHashKey(std::string& value, std::string& error) {
    if (value == "uri" || value == "client") {
        return true;
    }
    const std::string_view text(value);
    for (std::string_view prefix : {std::string_view("header:"), std::string_view("cookie:")}) {
        if (!text.starts_with(prefix)) {
            continue;
        }
        std::string_view name = text.substr(prefix.size());
        if (name.empty() || !std::all_of(name.begin(), name.end(), isTchar)) {
            error = "invalid " + std::string(prefix.substr(0, prefix.size() - 1)) + " name \"" +
                    std::string(name) + "\" in \"" + value + "\"";
            return false;
        }
        return true;
    }
    error = "invalid hash key \"" + value + "\"; expected uri, client, header:NAME or cookie:NAME";
    if (value == "url" || value == "path" || value == "URI") {
        error += "; did you mean \"uri\"?";
    } else if (value == "ip" || value == "address" || value == "client_address") {
        error += "; did you mean \"client\"?";
    } else if (value == "header" || value == "cookie") {
        error += "; did you mean \"" + value + ":NAME\"?";
    }
    return false;
}

bool checkOptionalReadableFile(std::string& value, std::string& error) {
    return value.empty() || checkReadableFile(value, error);
}

// An SNI name: a DNS name, never an IP literal (RFC 6066 3).
bool checkServerName(std::string& value, std::string& error) {
    if (value.empty()) {
        return true;
    }
    std::string copy = value;
    if (!checkHostPattern(copy, error) || copy.find('*') != std::string::npos ||
        copy.front() == '[') {
        if (error.empty()) {
            error = "invalid server name \"" + value + "\"";
        }
        return false;
    }
    value = copy;
    return true;
}

bool checkErrorLog(std::string& value, std::string& error) {
    if (value.empty() || value == "off") {
        error = "error_log must be stdout, stderr or a file path (errors are never discarded)";
        return false;
    }
    return true;
}

constexpr std::array<std::string_view, 2> kTlsVersions{"1.2", "1.3"};
constexpr std::array<std::string_view, 3> kVerifyClient{"off", "optional", "required"};
constexpr std::array<std::string_view, 2> kAccessFormats{"combined", "json"};
constexpr std::array<std::string_view, 3> kUnderscoreModes{"drop", "allow", "reject"};
constexpr std::array<std::string_view, 3> kClientAddressModes{"full", "truncate", "hash"};
constexpr std::array<std::string_view, 4> kLogLevels{"debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 4> kQueryModes{"sorted", "as_is", "ignore", "allow_list"};
constexpr std::array<std::string_view, 3> kProxyProtocolVersions{"off", "v1", "v2"};

// ---- custom readers ---------------------------------------------------------------------------

void readWorkers(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 Config& out) {
    std::string text;
    if (!loader.readScalar(value, key_mark, path, "\"auto\" or 1..256", text)) {
        return;
    }
    if (text == "auto") {
        out.workers = 0;
        return;
    }
    std::uint64_t n = 0;
    if (text.empty() ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        loader.error(value.Mark(), path, "expected \"auto\" or 1..256, got \"" + text + "\"");
        return;
    }
    if (loader.readInteger(value, key_mark, path, 1, 256, n)) {
        out.workers = static_cast<unsigned>(n);
    }
}

void readListeners(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   Config& out) {
    loader.listeners_mark = Loader::valueMark(value, key_mark);
    // A mistyped "listeners" is reported as such; "no listeners configured" would be noise.
    loader.listeners_mistyped = !value.IsNull() && !value.IsSequence();
    std::map<std::string, Mark> names;
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            Listener listener;
            auto marks =
                loader.readMap(node, Loader::valueMark(node, key_mark), item_path, listener);
            if (!listener.name.empty()) {
                auto mark = marks.valueMark("name", node.Mark());
                auto [it, inserted] = names.emplace(listener.name, mark);
                if (!inserted) {
                    loader.error(mark, Loader::child(item_path, "name"),
                                 "duplicate listener name \"" + listener.name + "\" (first at " +
                                     std::to_string(it->second.line + 1) + ":" +
                                     std::to_string(it->second.column + 1) + ")");
                }
            }
            if (!marks.has("protocols")) {
                listener.protocols = listener.tls ? std::vector<std::string>{"h2", "http/1.1"}
                                                  : std::vector<std::string>{"http/1.1"};
            }
            if (listener.proxy_protocol && listener.trusted_sources.empty() &&
                !marks.has("trusted_sources")) {
                // Without a source list anyone could claim any address: a header from a
                // client is a forged address, so the operator names the balancers.
                loader.error(marks.valueMark("proxy_protocol", node.Mark()),
                             Loader::child(item_path, "proxy_protocol"),
                             "proxy_protocol needs trusted_sources (the load balancers' "
                             "addresses; [0.0.0.0/0, \"::/0\"] trusts every peer)");
            }
            if (!listener.proxy_protocol && marks.has("trusted_sources")) {
                loader.error(marks.valueMark("trusted_sources", node.Mark()),
                             Loader::child(item_path, "trusted_sources"),
                             "trusted_sources applies only with proxy_protocol: true");
            }
            if (marks.has("bind") && !listener.bind.text.empty()) {
                loader.binds.push_back({listener.bind, marks.valueMark("bind", node.Mark()),
                                        Loader::child(item_path, "bind")});
            }
            out.listeners.push_back(std::move(listener));
        });
}

void readBind(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
              Listener& out) {
    loader.readEndpoint(value, key_mark, path, /*min_port=*/0, out.bind);
}

void readProtocols(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   Listener& out) {
    loader.readList(value, key_mark, path,
                    [&](const Node& node, const std::string& item_path, std::size_t) {
                        std::string protocol;
                        if (!loader.readScalar(node, key_mark, item_path, "a protocol", protocol)) {
                            return;
                        }
                        if (protocol != "h2" && protocol != "http/1.1") {
                            loader.error(node.Mark(), item_path,
                                         "unknown protocol \"" + protocol + "\" (h2 | http/1.1)");
                            return;
                        }
                        if (out.allows(protocol)) {
                            loader.error(node.Mark(), item_path, "duplicate protocol " + protocol);
                            return;
                        }
                        out.protocols.push_back(std::move(protocol));
                    });
    if (out.protocols.empty() && (value.IsNull() || (value.IsSequence() && value.size() == 0))) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "empty list would refuse every client; omit the key for the default");
    }
}

void readCidrs(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
               std::vector<Cidr>& out, bool allow_empty) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            std::string text;
            if (!loader.readScalar(node, key_mark, item_path, "an address/prefix", text)) {
                return;
            }
            Cidr cidr;
            std::string problem;
            if (!Cidr::parse(text, cidr, problem)) {
                loader.error(node.Mark(), item_path, problem);
                return;
            }
            out.push_back(std::move(cidr));
        });
    if (!allow_empty && out.empty() &&
        (value.IsNull() || (value.IsSequence() && value.size() == 0))) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "empty list; name at least one address block");
    }
}

template <class T>
void readClients(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 T& out) {
    readCidrs(loader, value, key_mark, path, out.clients, /*allow_empty=*/false);
}

template <class T>
void readAccess(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                T& out) {
    loader.readMap(value, key_mark, path, out.access);
}

void readAllowList(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   AccessList& out) {
    readCidrs(loader, value, key_mark, path, out.allow, /*allow_empty=*/false);
}

void readDenyList(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                  AccessList& out) {
    readCidrs(loader, value, key_mark, path, out.deny, /*allow_empty=*/false);
}

void readTrustedSources(Loader& loader, const Node& value, const Mark& key_mark,
                        const std::string& path, Listener& out) {
    // Empty would refuse every connection: surely not what was meant.
    readCidrs(loader, value, key_mark, path, out.trusted_sources, /*allow_empty=*/false);
}

void readTrustedProxies(Loader& loader, const Node& value, const Mark& key_mark,
                        const std::string& path, Listener& out) {
    readCidrs(loader, value, key_mark, path, out.trusted_proxies, /*allow_empty=*/true);
}

SourcePos sourcePos(const Mark& mark, const std::string& path) {
    return SourcePos{mark.line + 1, mark.column + 1, path};
}

void readTls(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
             Listener& out) {
    out.tls.emplace();
    auto& tls = *out.tls;
    tls.pos = sourcePos(Loader::valueMark(value, key_mark), path);
    auto marks = loader.readMap(value, key_mark, path, tls);
    if (tls.verify_client != "off" && tls.client_ca.empty()) {
        loader.error(marks.valueMark("verify_client", key_mark),
                     Loader::child(path, "verify_client"),
                     "verify_client " + tls.verify_client + " needs client_ca (the CA file)");
    }
    if (!tls.forward_client_subject.empty() && tls.verify_client == "off") {
        loader.error(marks.valueMark("forward_client_subject", key_mark),
                     Loader::child(path, "forward_client_subject"),
                     "needs verify_client optional or required; nothing is verified with off");
    }
}

void readUpstreamTls(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, Upstream& out) {
    auto& tls = out.tls;
    tls.enabled = true;  // a tls block turns TLS on unless it says enabled: false
    tls.pos = sourcePos(Loader::valueMark(value, key_mark), path);
    auto marks = loader.readMap(value, key_mark, path, tls);
    if (tls.client_cert.empty() != tls.client_key.empty()) {
        const char* key = tls.client_cert.empty() ? "client_key" : "client_cert";
        loader.error(marks.valueMark(key, key_mark), Loader::child(path, key),
                     "client_cert and client_key go together");
    }
}

void readCertificates(Loader& loader, const Node& value, const Mark& key_mark,
                      const std::string& path, ListenerTls& out) {
    loader.readList(value, key_mark, path,
                    [&](const Node& node, const std::string& item_path, std::size_t) {
                        TlsCertificate cert;
                        cert.pos = sourcePos(Loader::valueMark(node, key_mark), item_path);
                        loader.readMap(node, key_mark, item_path, cert);
                        out.certificates.push_back(std::move(cert));
                    });
    if (value.IsNull() || (value.IsSequence() && value.size() == 0)) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "empty list; TLS needs at least one certificate");
    }
}

void readAdminBind(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   Admin& out) {
    Endpoint endpoint;
    if (loader.readEndpoint(value, key_mark, path, /*min_port=*/0, endpoint)) {
        loader.binds.push_back({endpoint, value.Mark(), path});
        out.bind = std::move(endpoint);
    }
}

// An origin must name a host, and appear once per list (use weights to skew instead).
bool checkOrigin(Loader& loader, const Mark& mark, const std::string& path,
                 std::map<std::string, Mark>& seen, const Endpoint& endpoint) {
    if (endpoint.host.empty()) {
        loader.error(
            mark, path,
            "address \"" + endpoint.text + "\" has no host; an origin needs an IP address");
        return false;
    }
    auto key = canonicalHost(endpoint.host) + "|" + std::to_string(endpoint.port);
    auto [it, inserted] = seen.emplace(key, mark);
    if (!inserted) {
        loader.error(mark, path,
                     "duplicate server " + endpoint.text + " (first at " +
                         std::to_string(it->second.line + 1) + ":" +
                         std::to_string(it->second.column + 1) + ")");
        return false;
    }
    return true;
}

void readL2Servers(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   L2Cache& out) {
    std::map<std::string, Mark> seen;
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            Endpoint endpoint;
            if (loader.readEndpoint(node, key_mark, item_path, /*min_port=*/1, endpoint) &&
                checkOrigin(loader, node.Mark(), item_path, seen, endpoint)) {
                out.servers.push_back(std::move(endpoint));
            }
        });
}

void readServerAddress(Loader& loader, const Node& value, const Mark& key_mark,
                       const std::string& path, UpstreamServer& out) {
    // Only the syntax here; duplicates are checked by the list reader, which sees them all.
    loader.readEndpoint(value, key_mark, path, /*min_port=*/1, out.address);
}

void readUpstreamServers(Loader& loader, const Node& value, const Mark& key_mark,
                         const std::string& path, Upstream& out) {
    std::map<std::string, Mark> seen;
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            UpstreamServer server;
            if (node.IsMap()) {
                auto marks = loader.readMap(node, key_mark, item_path, server);
                if (server.address.text.empty() ||
                    !checkOrigin(loader, marks.valueMark("address", node.Mark()),
                                 Loader::child(item_path, "address"), seen, server.address)) {
                    return;  // a syntax error was reported by readServerAddress or readMap
                }
            } else if (!loader.readEndpoint(node, key_mark, item_path, /*min_port=*/1,
                                            server.address) ||
                       !checkOrigin(loader, node.Mark(), item_path, seen, server.address)) {
                return;
            }
            out.servers.push_back(std::move(server));
        });
    if (out.servers.empty() && (value.IsNull() || (value.IsSequence() && value.size() == 0))) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "empty list; an upstream needs at least one server");
    }
}

void readRetryRatio(Loader& loader, const Node& value, const Mark& key_mark,
                    const std::string& path, RetryBudget& out) {
    std::string text;
    if (!loader.readScalar(value, key_mark, path, "a ratio 0..1", text)) {
        return;
    }
    char* end = nullptr;
    errno = 0;
    const double ratio = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !(ratio >= 0.0) ||
        ratio > 1.0) {
        loader.error(value.Mark(), path, "expected a ratio 0..1 (e.g. 0.2), got \"" + text + "\"");
        return;
    }
    out.ratio = ratio;
}

void readRetryBudget(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, Upstream& out) {
    out.retry_budget.enabled = true;
    loader.readMap(value, key_mark, path, out.retry_budget);
}

void readExpectStatus(Loader& loader, const Node& value, const Mark& key_mark,
                      const std::string& path, HealthCheck& out) {
    std::string text;
    if (!loader.readScalar(value, key_mark, path, "a status or range like \"200-399\"", text)) {
        return;
    }
    auto dash = text.find('-');
    auto low = parseDecimal(std::string_view(text).substr(0, dash));
    auto high =
        dash == std::string::npos ? low : parseDecimal(std::string_view(text).substr(dash + 1));
    if (!low || !high) {
        loader.error(value.Mark(), path,
                     "invalid status range \"" + text + "\"; expected e.g. \"200\" or \"200-399\"");
        return;
    }
    if (*low < 100 || *high > 599 || *low > *high) {
        loader.error(value.Mark(), path, text + " out of range 100..599 (low-high, low <= high)");
        return;
    }
    out.expect_status_min = static_cast<int>(*low);
    out.expect_status_max = static_cast<int>(*high);
}

void readHealthCheck(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, Upstream& out) {
    auto& check = out.health_check;
    check.enabled = true;
    auto marks = loader.readMap(value, key_mark, path, check);
    const bool timeout_written = marks.has("timeout");
    // The default timeout follows a short interval ({interval: 200ms} is valid as written).
    if (!timeout_written) {
        check.timeout = std::min(check.timeout, check.interval);
    }
    // An overlapping probe would have two in flight per server; HAProxy forbids it as well.
    if (check.timeout > check.interval) {
        const bool interval_written = marks.has("interval");
        loader.error(marks.valueMark("timeout", key_mark), Loader::child(path, "timeout"),
                     "timeout " + formatDuration(check.timeout) + " exceeds interval " +
                         formatDuration(check.interval) + (interval_written ? "" : " (default)") +
                         "; a probe must finish before the next one starts");
    }
}

void readUpstreams(Loader& loader, const Node& value, const Mark& /*key_mark*/,
                   const std::string& path, Config& out) {
    if (value.IsNull()) {
        return;
    }
    if (!value.IsMap()) {
        loader.error(value.Mark(), path,
                     "expected a mapping of upstream names, got a " + std::string(typeName(value)));
        return;
    }
    for (auto& entry : loader.entries(value, path)) {
        const auto item_path = Loader::child(path, entry.key);
        std::string name = entry.key;
        std::string problem;
        if (!checkName(name, problem)) {
            loader.error(entry.key_node.Mark(), item_path, problem);
            continue;
        }
        Upstream upstream;
        upstream.name = name;
        upstream.balance.clear();  // stays empty when the written value is invalid
        auto marks = loader.readMap(entry.value, entry.key_node.Mark(), item_path, upstream);
        const bool balance_valid = !upstream.balance.empty() || !marks.has("balance");
        if (upstream.balance.empty()) {
            upstream.balance = Upstream{}.balance;
        }
        // A bad balance value is reported once; its hash block is not blamed as well.
        if (balance_valid && marks.has("hash") && upstream.balance != "consistent_hash") {
            // A hash block that does nothing is a config the operator misread.
            loader.error(marks.valueMark("hash", entry.key_node.Mark()),
                         Loader::child(item_path, "hash"),
                         "hash applies only to balance: consistent_hash (balance is " +
                             upstream.balance + ")");
        }
        out.upstreams.emplace(name, std::move(upstream));
    }
}

// `host: NAME` or `host: [NAME, ...]`; "*" anywhere means any host.
template <class T>
void readHosts(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
               T& out) {
    bool any = false;
    auto one = [&](const Node& node, const std::string& item_path) {
        std::string host;
        if (!loader.readScalar(node, key_mark, item_path, "a host pattern", host)) {
            return;
        }
        std::string problem;
        if (!checkHostPattern(host, problem)) {
            loader.error(node.Mark(), item_path, problem);
            return;
        }
        if (host.empty()) {
            any = true;
        } else if (std::find(out.hosts.begin(), out.hosts.end(), host) == out.hosts.end()) {
            out.hosts.push_back(std::move(host));
        }
    };
    if (value.IsSequence()) {
        if (value.size() == 0) {
            loader.error(Loader::valueMark(value, key_mark), path,
                         "empty host list; omit the key to match any host");
        }
        loader.readList(value, key_mark, path,
                        [&](const Node& node, const std::string& item_path, std::size_t) {
                            one(node, item_path);
                        });
    } else {
        one(value, path);
    }
    if (any) {
        out.hosts.clear();
    }
}

// Query: routes[].match.query, else .headers (T is RouteMatch or RouteConditions; a member
// pointer of the base cannot be a template argument for the derived type).
template <class T, bool Query>
void readFieldConditions(Loader& loader, const Node& value, const Mark& key_mark,
                         const std::string& path, T& out) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            FieldCondition condition;
            KeyMarks marks = loader.readMap(node, key_mark, item_path, condition);
            const Mark at = Loader::valueMark(node, key_mark);
            if (!condition.value.empty() && !condition.regex.empty()) {
                loader.error(marks.valueMark("regex", at), item_path,
                             "give value or regex, not both");
            }
            if (!condition.present && (!condition.value.empty() || !condition.regex.empty())) {
                loader.error(marks.valueMark("present", at), item_path,
                             "present: false takes no value or regex");
            }
            (Query ? out.query : out.headers).push_back(std::move(condition));
        });
}

template <class T>
void readRouteListeners(Loader& loader, const Node& value, const Mark& key_mark,
                        const std::string& path, T& out) {
    loader.readList(value, key_mark, path,
                    [&](const Node& node, const std::string& item_path, std::size_t) {
                        std::string name;
                        if (loader.readScalar(node, key_mark, item_path, "a listener name", name)) {
                            loader.listener_refs.push_back({name, node.Mark(), item_path});
                            out.listeners.push_back(std::move(name));
                        }
                    });
}

void readNegated(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 RouteMatch& out) {
    out.has_negated = true;
    loader.readMap(value, key_mark, path, out.negated);
}

struct MethodList {
    std::vector<std::string> methods;
};
template <class T>
void readMethods(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 T& out);

void readMethodsAllowed(Loader& loader, const Node& value, const Mark& key_mark,
                        const std::string& path, Route& out) {
    MethodList list;
    readMethods(loader, value, key_mark, path, list);
    out.methods_allowed = std::move(list.methods);  // an empty list is refused there
}

void readRouteUpstream(Loader& loader, const Node& value, const Mark& key_mark,
                       const std::string& path, Route& out) {
    if (loader.readScalar(value, key_mark, path, "an upstream name", out.upstream)) {
        loader.upstream_refs.push_back({out.upstream, value.Mark(), path});
    }
}

template <class T>
void readMethods(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 T& out) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            std::string method;
            if (!loader.readScalar(node, key_mark, item_path, "a method", method)) {
                return;
            }
            std::string problem;
            if (!checkMethod(method, problem)) {
                loader.error(node.Mark(), item_path, problem);
                return;
            }
            if (std::find(out.methods.begin(), out.methods.end(), method) != out.methods.end()) {
                loader.error(node.Mark(), item_path, "duplicate method " + method);
                return;
            }
            out.methods.push_back(std::move(method));
        });
    if (out.methods.empty() && value.IsSequence() && value.size() == 0) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "empty list would match nothing; omit the key to match any method");
    }
}

void readUpgradeProtocols(Loader& loader, const Node& value, const Mark& key_mark,
                          const std::string& path, Route& out) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            std::string token;
            if (!loader.readScalar(node, key_mark, item_path, "an Upgrade token", token)) {
                return;
            }
            token = toLower(token);
            if (token.empty() || token.find_first_of(" \t,/;\"") != std::string::npos) {
                loader.error(node.Mark(), item_path, "not an Upgrade protocol token");
                return;
            }
            if (token == "h2c") {
                loader.error(node.Mark(), item_path, "h2c is never tunnelled");
                return;
            }
            if (token == "websocket") {
                loader.error(node.Mark(), item_path, "websocket is set by the websocket key");
                return;
            }
            out.upgrade_protocols.push_back(std::move(token));
        });
}

// A query parameter name as it appears in the raw query (compared byte for byte, so not
// percent-decoded).
bool checkQueryParam(std::string& value, std::string& error) {
    if (value.empty()) {
        error = "empty parameter name";
        return false;
    }
    if (hasControlOrSpace(value) || value.find_first_of("&=#") != std::string::npos) {
        error = "invalid parameter name \"" + value + "\" (no space, control, '&', '=' or '#')";
        return false;
    }
    return true;
}

// A list of distinct names, each checked by `check`; `fold` compares them case-insensitively.
void readNameList(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                  std::string_view what, TextCheck check, bool fold,
                  std::vector<std::string>& out) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            std::string name;
            if (!loader.readScalar(node, key_mark, item_path, what, name)) {
                return;
            }
            std::string problem;
            if (!check(name, problem)) {
                loader.error(node.Mark(), item_path, problem);
                return;
            }
            const bool seen = std::any_of(out.begin(), out.end(), [&](const std::string& n) {
                return fold ? equalsIgnoreCase(n, name) : n == name;
            });
            if (seen) {
                loader.error(node.Mark(), item_path,
                             "duplicate " + std::string(what) + " \"" + name + "\"");
                return;
            }
            out.push_back(std::move(name));
        });
}

void readRedactQuery(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, Logging& out) {
    // Names compare case-insensitively when redacting, so duplicates do too.
    readNameList(loader, value, key_mark, path, "parameter name", checkQueryParam,
                 /*fold=*/true, out.redact_query);
}

void readQueryParams(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, RouteCacheKey& out) {
    readNameList(loader, value, key_mark, path, "parameter name", checkQueryParam,
                 /*fold=*/false, out.query_params);
    if (value.IsNull() || (value.IsSequence() && value.size() == 0)) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "empty list; name the parameters to keep (query: ignore drops them all)");
    }
}

bool checkKeyHeader(std::string& value, std::string& error) {
    if (value.empty()) {
        error = "empty header name";
        return false;
    }
    return checkHeaderName(value, error);
}

void readKeyHeaders(Loader& loader, const Node& value, const Mark& key_mark,
                    const std::string& path, RouteCacheKey& out) {
    readNameList(loader, value, key_mark, path, "header name", checkKeyHeader, /*fold=*/true,
                 out.headers);
}

// One of config::kOverrideFields, any case; stored as spelled there.
bool checkOverrideHeader(std::string& value, std::string& error) {
    if (!checkKeyHeader(value, error)) {
        return false;
    }
    for (std::string_view known : kOverrideFields) {
        if (equalsIgnoreCase(value, known)) {
            value.assign(known);
            return true;
        }
    }
    error = "\"" + value + "\" is not an override field strata drops; expected one of";
    for (std::size_t i = 0; i < kOverrideFields.size(); ++i) {
        error += (i == 0 ? " " : ", ") + std::string(kOverrideFields[i]);
    }
    auto hint = suggest(value, {kOverrideFields.begin(), kOverrideFields.end()});
    if (!hint.empty()) {
        error += "; did you mean \"" + hint + "\"?";
    }
    return false;
}

void readAllowOverrideHeaders(Loader& loader, const Node& value, const Mark& key_mark,
                              const std::string& path, RouteCache& out) {
    readNameList(loader, value, key_mark, path, "header name", checkOverrideHeader,
                 /*fold=*/true, out.allow_override_headers);
}

void readCacheKey(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                  RouteCache& out) {
    auto& key = out.key;
    const std::string default_query = key.query;
    key.query.clear();  // stays empty when absent or invalid (already reported)
    auto marks = loader.readMap(value, key_mark, path, key);
    const bool query_valid = !key.query.empty() || !marks.has("query");
    if (key.query.empty()) {
        key.query = default_query;
    }
    const bool allow_list = key.query == "allow_list";
    if (!query_valid) {
        return;
    }
    if (allow_list && !marks.has("query_params")) {
        loader.error(marks.valueMark("query", key_mark), Loader::child(path, "query"),
                     "allow_list needs query_params (the parameters kept in the key); ignore "
                     "drops the whole query");
    } else if (!allow_list && marks.has("query_params")) {
        loader.error(marks.valueMark("query_params", key_mark), Loader::child(path, "query_params"),
                     "only used with query: allow_list (query is " + key.query + ")");
    }
}

void readRouteCache(Loader& loader, const Node& value, const Mark& key_mark,
                    const std::string& path, Route& out) {
    auto marks = loader.readMap(value, key_mark, path, out.cache);
    if (marks.has("max_object_bytes")) {
        loader.object_limits.push_back({out.cache.max_object_bytes,
                                        marks.valueMark("max_object_bytes", key_mark),
                                        Loader::child(path, "max_object_bytes")});
    }
}

// routes[].compression: present means on (see config::RouteCompression for why it is opt-in).
void readCompression(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, Route& out) {
    out.compression.enabled = true;
    loader.readMap(value, key_mark, path, out.compression);
}

void readEncodings(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   RouteCompression& out) {
    out.encodings.clear();
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            std::string token;
            if (!loader.readScalar(node, key_mark, item_path, "br or gzip", token)) {
                return;
            }
            token = toLower(token);
            if (token != "br" && token != "gzip") {
                std::string message =
                    "\"" + token + "\" is not a coding strata produces; expected br or gzip";
                auto hint = suggest(token, {"br", "gzip"});
                if (!hint.empty()) {
                    message += "; did you mean \"" + hint + "\"?";
                }
                loader.error(node.Mark(), item_path, message);
                return;
            }
            if (std::find(out.encodings.begin(), out.encodings.end(), token) !=
                out.encodings.end()) {
                loader.error(node.Mark(), item_path, "duplicate coding \"" + token + "\"");
                return;
            }
            out.encodings.push_back(std::move(token));
        });
    if (value.IsSequence() && value.size() == 0) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "at least one coding; leave compression out to send bodies as they are");
    }
}

// "type/subtype" or "type/*", RFC 9110 8.3.1 tokens, stored lowercase.
bool checkMediaType(std::string& value, std::string& error) {
    value = toLower(value);
    const auto slash = value.find('/');
    auto token = [](std::string_view t) {
        return !t.empty() && std::all_of(t.begin(), t.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
                   std::string_view("!#$&-^_.+").find(c) != std::string_view::npos;
        });
    };
    if (slash == std::string::npos || !token(std::string_view(value).substr(0, slash)) ||
        !(value.substr(slash + 1) == "*" || token(std::string_view(value).substr(slash + 1)))) {
        error = "\"" + value + "\" is not a media type (type/subtype or type/*, no parameters)";
        return false;
    }
    return true;
}

void readCompressTypes(Loader& loader, const Node& value, const Mark& key_mark,
                       const std::string& path, RouteCompression& out) {
    out.types.clear();
    readNameList(loader, value, key_mark, path, "media type", checkMediaType, /*fold=*/true,
                 out.types);
    if (value.IsSequence() && value.size() == 0) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "at least one media type; leave compression out to send bodies as they are");
    }
}

void readL1(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
            Cache& out) {
    loader.l1_max_bytes_written = loader.readMap(value, key_mark, path, out.l1).has("max_bytes");
}

// ---- route actions and header rules ----

bool isTokenChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Fields a rule may not touch: framing and hop-by-hop ones (a rule must never change how a
// message is delimited), and those strata writes itself, whose meaning operators and the
// other side rely on.
constexpr std::array<std::string_view, 15> kRequestRuleRefused{
    "Content-Length",  "Transfer-Encoding", "Connection",
    "Keep-Alive",      "Proxy-Connection",  "TE",
    "Trailer",         "Upgrade",           "Expect",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
    "Forwarded",       "X-Request-Id",      "Via"};
constexpr std::array<std::string_view, 13> kResponseRuleRefused{"Content-Length",
                                                                "Transfer-Encoding",
                                                                "Connection",
                                                                "Keep-Alive",
                                                                "Proxy-Connection",
                                                                "TE",
                                                                "Trailer",
                                                                "Upgrade",
                                                                "Content-Encoding",
                                                                "Content-Range",
                                                                "ETag",
                                                                "Age",
                                                                "Cache-Status"};

template <class Rules>
bool checkRuleName(Loader& loader, const Node& node, const std::string& path,
                   const std::string& name) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar)) {
        loader.error(node.Mark(), path, "\"" + name + "\" is not a header name (RFC 9110 tokens)");
        return false;
    }
    constexpr bool request = std::is_same_v<Rules, RequestHeaderRules>;
    const auto& refused = request ? std::span<const std::string_view>(kRequestRuleRefused)
                                  : std::span<const std::string_view>(kResponseRuleRefused);
    for (std::string_view field : refused) {
        if (equalsIgnoreCase(field, name)) {
            loader.error(node.Mark(), path,
                         std::string(field) + " cannot be changed by a rule: " +
                             (request ? "strata frames and writes it for the upstream"
                                      : "strata frames and writes it for the client"));
            return false;
        }
    }
    return true;
}

// A value with ${NAME} references: each must be one of kHeaderVariables.
bool checkRuleValue(std::string& value, std::string& error) {
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        error = "a header value cannot hold CR, LF or NUL";
        return false;
    }
    for (std::size_t at = value.find("${"); at != std::string::npos; at = value.find("${", at)) {
        const std::size_t end = value.find('}', at);
        if (end == std::string::npos) {
            error = "unclosed ${ in \"" + value + "\"";
            return false;
        }
        const std::string name = value.substr(at + 2, end - at - 2);
        if (std::find(kHeaderVariables.begin(), kHeaderVariables.end(), name) ==
            kHeaderVariables.end()) {
            error = "unknown variable ${" + name + "}; expected one of ${client_address}, " +
                    "${request_id}, ${scheme}, ${host}";
            const auto hint = suggest(name, {kHeaderVariables.begin(), kHeaderVariables.end()});
            if (!hint.empty()) {
                error += "; did you mean ${" + hint + "}?";
            }
            return false;
        }
        at = end + 1;
    }
    return true;
}

template <class Rules, std::vector<std::pair<std::string, std::string>> HeaderRules::*M>
void readRuleMap(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 Rules& out) {
    if (!value.IsMap()) {
        loader.error(
            Loader::valueMark(value, key_mark), path,
            "expected a mapping of header names to values, got a " + std::string(typeName(value)));
        return;
    }
    for (auto& entry : loader.entries(value, path)) {
        const auto item_path = Loader::child(path, entry.key);
        if (!checkRuleName<Rules>(loader, entry.key_node, item_path, entry.key)) {
            continue;
        }
        if (std::is_same_v<Rules, RequestHeaderRules> && M == &HeaderRules::add &&
            equalsIgnoreCase(entry.key, "Host")) {
            loader.error(entry.key_node.Mark(), item_path,
                         "a request has one Host; use set to replace it");
            continue;
        }
        std::string text;
        if (!loader.readScalar(entry.value, entry.key_node.Mark(), item_path, "a header value",
                               text)) {
            continue;
        }
        std::string problem;
        if (!checkRuleValue(text, problem)) {
            loader.error(entry.value.Mark(), item_path, problem);
            continue;
        }
        (out.*M).emplace_back(entry.key, std::move(text));
    }
}

template <class Rules>
void readRuleRemove(Loader& loader, const Node& value, const Mark& key_mark,
                    const std::string& path, Rules& out) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            std::string name;
            if (!loader.readScalar(node, key_mark, item_path, "a header name", name) ||
                !checkRuleName<Rules>(loader, node, item_path, name)) {
                return;
            }
            if (std::is_same_v<Rules, RequestHeaderRules> && equalsIgnoreCase(name, "Host")) {
                loader.error(node.Mark(), item_path,
                             "HTTP/1.1 requires Host upstream; use set to replace it");
            } else {
                out.remove.push_back(std::move(name));
            }
        });
}

// How many rules a direction may hold: each is an edit of the forwarded head, and the edit
// list has fixed room beside strata's own edits (http::FieldEdits::kCapacity).
constexpr std::size_t kMaxHeaderRules = 8;

template <class Rules>
void readHeaderRules(Loader& loader, const Node& value, const Mark& key_mark,
                     const std::string& path, Rules& out) {
    loader.readMap(value, key_mark, path, out);
    if (out.set.size() + out.add.size() + out.remove.size() > kMaxHeaderRules) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "at most " + std::to_string(kMaxHeaderRules) +
                         " header rules (set, add and remove together)");
    }
}

void readRouteRequestHeaders(Loader& loader, const Node& value, const Mark& key_mark,
                             const std::string& path, Route& out) {
    readHeaderRules(loader, value, key_mark, path, out.request_headers);
}

void readRouteResponseHeaders(Loader& loader, const Node& value, const Mark& key_mark,
                              const std::string& path, Route& out) {
    readHeaderRules(loader, value, key_mark, path, out.response_headers);
}

// "100/s", "600/m", "10/h"; a decimal count ("0.5/s") is allowed.
bool checkRate(std::string& value, std::string& error) {
    const std::size_t slash = value.find('/');
    const std::string unit = slash == std::string::npos ? "" : value.substr(slash + 1);
    const double per = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
    char* end = nullptr;
    const std::string count = value.substr(0, slash);
    const double n = count.empty() ? 0 : std::strtod(count.c_str(), &end);
    if (per == 0 || end == nullptr || *end != '\0' || !(n > 0) || n / per > 1e7) {
        error = "invalid rate \"" + value + "\"; expected COUNT/s, COUNT/m or COUNT/h (e.g. 100/s)";
        return false;
    }
    return true;
}

double ratePerSecond(const std::string& rate) {
    const std::size_t slash = rate.find('/');
    const std::string unit = rate.substr(slash + 1);
    return std::strtod(rate.substr(0, slash).c_str(), nullptr) / (unit == "s"   ? 1
                                                                  : unit == "m" ? 60
                                                                                : 3600);
}

bool checkRateKey(std::string& value, std::string& error) {
    if (value == "client" || value == "route") {
        return true;
    }
    if (value.starts_with("header:") && value.size() > 7 &&
        std::all_of(value.begin() + 7, value.end(), isTokenChar)) {
        return true;
    }
    error = "invalid key \"" + value + "\"; expected client, route or header:NAME";
    return false;
}

void readRateLimit(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                   Route& out) {
    RateLimit& limit = out.rate_limit;
    limit.enabled = true;
    auto marks = loader.readMap(value, key_mark, path, limit);
    if (!marks.has("rate")) {
        loader.error(Loader::valueMark(value, key_mark), path,
                     "rate_limit needs a rate (e.g. 100/s)");
    } else if (!limit.rate.empty()) {
        limit.rate_per_second = ratePerSecond(limit.rate);
    }
}

void readRedirect(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                  Route& out) {
    out.redirect.enabled = true;
    auto marks = loader.readMap(value, key_mark, path, out.redirect);
    const RouteRedirect& r = out.redirect;
    const Mark at = Loader::valueMark(value, key_mark);
    if (r.status != 301 && r.status != 302 && r.status != 303 && r.status != 307 &&
        r.status != 308) {
        loader.error(marks.valueMark("status", at), Loader::child(path, "status"),
                     std::to_string(r.status) + " is not a redirect; expected 301, 302, 303, " +
                         "307 or 308");
    }
    if (!r.path.empty() && !r.prefix.empty()) {
        loader.error(marks.valueMark("prefix", at), Loader::child(path, "prefix"),
                     "give path or prefix, not both");
    }
    if (!r.host.empty()) {
        std::string host = r.host;
        std::string problem;
        if (!checkHostPattern(host, problem) || host.find('*') != std::string::npos ||
            host.empty()) {
            loader.error(marks.valueMark("host", at), Loader::child(path, "host"),
                         "\"" + r.host + "\" is not a host name" +
                             (problem.empty() ? std::string() : ": " + problem));
        }
    }
}

void readRespond(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 Route& out) {
    out.respond.enabled = true;
    auto marks = loader.readMap(value, key_mark, path, out.respond);
    std::string problem;
    std::string type = out.respond.content_type;
    if (!checkRuleValue(type, problem) || type.find("${") != std::string::npos) {
        loader.error(marks.valueMark("content_type", Loader::valueMark(value, key_mark)),
                     Loader::child(path, "content_type"),
                     problem.empty() ? "content_type takes no variables" : problem);
    }
}

void readRewrite(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                 Route& out) {
    auto marks = loader.readMap(value, key_mark, path, out.rewrite);
    const RouteRewrite& r = out.rewrite;
    const Mark at = Loader::valueMark(value, key_mark);
    const bool has_regex = marks.has("regex");  // even when invalid (reported already)
    if (has_regex && (!r.strip_prefix.empty() || !r.add_prefix.empty())) {
        loader.error(marks.valueMark("regex", at), Loader::child(path, "regex"),
                     "give regex (with replace) or strip_prefix/add_prefix, not both");
    }
    if (marks.has("replace") != has_regex) {
        loader.error(marks.has("replace") ? marks.valueMark("replace", at) : at,
                     Loader::child(path, marks.has("replace") ? "replace" : "regex"),
                     "regex and replace go together");
    } else if (!r.regex.empty()) {
        RE2::Options options;
        options.set_log_errors(false);
        RE2 re(r.regex, options);
        std::string problem;
        if (re.ok() && !re.CheckRewriteString(r.replace, &problem)) {
            loader.error(marks.valueMark("replace", at), Loader::child(path, "replace"), problem);
        }
        if (!r.replace.starts_with('/') && !r.replace.starts_with('\\')) {
            loader.error(marks.valueMark("replace", at), Loader::child(path, "replace"),
                         "the rewritten path must start with \"/\"");
        }
    }
    if (r.empty() && !has_regex && !marks.has("replace")) {
        loader.error(at, path, "an empty rewrite; leave the key out to forward the path as is");
    }
}

void readRoutes(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                Config& out) {
    loader.readList(
        value, key_mark, path, [&](const Node& node, const std::string& item_path, std::size_t) {
            Route route;
            KeyMarks marks = loader.readMap(node, key_mark, item_path, route);
            const Mark at = Loader::valueMark(node, key_mark);
            const int answers = (marks.has("upstream") ? 1 : 0) + (marks.has("redirect") ? 1 : 0) +
                                (marks.has("respond") ? 1 : 0);
            if (node.IsMap() && answers != 1) {
                loader.error(at, item_path,
                             answers == 0
                                 ? "give one of upstream, redirect and respond (none given)"
                                 : "give only one of upstream, redirect and respond");
            }
            if (!marks.has("upstream")) {
                // A route answering itself forwards nothing: these would silently do nothing.
                for (std::string_view key :
                     {"rewrite", "request_headers", "cache", "compression"}) {
                    if (marks.has(key) && answers == 1) {
                        loader.error(marks.valueMark(key, at), Loader::child(item_path, key),
                                     std::string(key) + " applies only to a route with upstream");
                    }
                }
            }
            if (!route.redirect.prefix.empty() && route.match.path_prefix.empty()) {
                loader.error(marks.valueMark("redirect", at),
                             Loader::child(Loader::child(item_path, "redirect"), "prefix"),
                             "prefix replaces match.path_prefix, which this route does not have");
            }
            out.routes.push_back(std::move(route));
        });
}

void readLimits(Loader& loader, const Node& value, const Mark& key_mark, const std::string& path,
                Config& out) {
    auto& limits = out.limits;
    auto marks = loader.readMap(value, key_mark, path, limits);
    const bool line_written = marks.has("max_request_line_bytes");
    // The default line limit follows a smaller head limit ({max_header_bytes: 4KiB} is valid).
    if (!line_written) {
        limits.max_request_line_bytes =
            std::min(limits.max_request_line_bytes, limits.max_header_bytes);
    }
    // The request line is part of the head, so it cannot be allowed more than the head.
    if (limits.max_request_line_bytes > limits.max_header_bytes) {
        const bool header_written = marks.has("max_header_bytes");
        loader.error(marks.valueMark("max_request_line_bytes", key_mark),
                     Loader::child(path, "max_request_line_bytes"),
                     "max_request_line_bytes (" + formatBytes(limits.max_request_line_bytes) +
                         ") exceeds max_header_bytes (" + formatBytes(limits.max_header_bytes) +
                         (header_written ? "" : ", default") +
                         "), which includes the request line");
    }
}

}  // namespace

// ---- the tables ---------------------------------------------------------------------------------

template <>
const std::vector<Field<Config>>& fieldsOf<Config>() {
    static const std::vector<Field<Config>> fields{
        customField<Config>("workers", readWorkers, "\"auto\" | 1..256", "auto",
                            "event-loop threads; auto = one per core"),
        customField<Config>("listeners", readListeners, "list", "",
                            "client-facing sockets; at least one", describeList<Listener>),
        customField<Config>("admin", readSection<Config, Admin, &Config::admin>, "mapping", "",
                            "admin listener (/metrics, /status, purge, reload)",
                            describeSection<Admin>),
        customField<Config>("cache", readSection<Config, Cache, &Config::cache>, "mapping", "",
                            "L1 (memory) and L2 (memcached) cache tiers", describeSection<Cache>),
        customField<Config>("upstreams", readUpstreams, "mapping", "", "origin pools by name",
                            [](std::vector<SchemaKey>& out, const std::string& p) {
                                describeFields<Upstream>(out, p + ".<name>");
                            }),
        customField<Config>("routes", readRoutes, "list", "",
                            "first match wins: request -> upstream + cache policy",
                            describeList<Route>),
        customField<Config>("limits", readLimits, "mapping", "",
                            "client-side timeouts and size limits", describeSection<Limits>),
        customField<Config>("http2", readSection<Config, Http2, &Config::http2>, "mapping", "",
                            "HTTP/2 connections and their abuse limits", describeSection<Http2>),
        customField<Config>("logging", readSection<Config, Logging, &Config::logging>, "mapping",
                            "", "access and error logs", describeSection<Logging>),
        customField<Config>("metrics", readSection<Config, Metrics, &Config::metrics>, "mapping",
                            "", "Prometheus metrics recording", describeSection<Metrics>),
    };
    return fields;
}

template <>
const std::vector<Field<Listener>>& fieldsOf<Listener>() {
    static const std::vector<Field<Listener>> fields{
        textField<Listener>("name", &Listener::name, "unique; used in logs and metric labels",
                            checkName, {}, /*required=*/true),
        customField<Listener>("bind", readBind, "host:port", "",
                              "numeric IPv4, [IPv6] or :port (= 0.0.0.0); port 0 = ephemeral",
                              nullptr, /*required=*/true),
        customField<Listener>("tls", readTls, "mapping", "", "terminate TLS on this listener",
                              describeSection<ListenerTls>),
        customField<Listener>("protocols", readProtocols, "list of h2 | http/1.1",
                              "[h2, http/1.1] with tls, [http/1.1] without",
                              "preference order; h2 without tls = prior-knowledge h2c"),
        flagField<Listener>("proxy_protocol", &Listener::proxy_protocol,
                            "connections open with a PROXY protocol v1/v2 header (before TLS)"),
        customField<Listener>("trusted_sources", readTrustedSources, "list of address/prefix", "[]",
                              "peers allowed to send the PROXY header; required with it"),
        customField<Listener>("trusted_proxies", readTrustedProxies, "list of address/prefix", "[]",
                              "peers whose X-Forwarded-For names the client (right-most "
                              "untrusted entry)"),
        customField<Listener>("access", readAccess<Listener>, "mapping", "",
                              "allow/deny by client address; refused requests get 403",
                              describeSection<AccessList>),
        countField<Listener>("max_connections_per_client", &Listener::max_connections_per_client, 0,
                             1000000, "open connections one client address may hold; 0 = any"),
    };
    return fields;
}

template <>
const std::vector<Field<ListenerTls>>& fieldsOf<ListenerTls>() {
    static const std::vector<Field<ListenerTls>> fields{
        customField<ListenerTls>("certificates", readCertificates, "list", "",
                                 "chosen by SNI from each certificate's names; first is default",
                                 describeList<TlsCertificate>, /*required=*/true),
        textField<ListenerTls>("min_version", &ListenerTls::min_version,
                               "lowest TLS version accepted", nullptr, kTlsVersions),
        textField<ListenerTls>("ciphers", &ListenerTls::ciphers,
                               "OpenSSL cipher list for TLS 1.2; empty = intermediate profile",
                               checkCiphers),
        textField<ListenerTls>("client_ca", &ListenerTls::client_ca,
                               "PEM CA bundle that signs client certificates (mTLS)",
                               checkOptionalReadableFile),
        textField<ListenerTls>("verify_client", &ListenerTls::verify_client,
                               "ask for a client certificate; required = refuse without one",
                               nullptr, kVerifyClient),
        textField<ListenerTls>("forward_client_subject", &ListenerTls::forward_client_subject,
                               "header carrying the verified client subject upstream; empty = none",
                               checkHeaderName),
        flagField<ListenerTls>("session_tickets", &ListenerTls::session_tickets,
                               "resume sessions with tickets (keys shared by all workers)"),
        durationField<ListenerTls>("ticket_key_rotation", &ListenerTls::ticket_key_rotation,
                                   kMinute, 7 * kDay,
                                   "a new ticket key every interval; old ones decrypt 2 more"),
        countField<ListenerTls>("session_cache_size", &ListenerTls::session_cache_size, 0, 10000000,
                                "server-side session cache entries; 0 = no cache"),
        durationField<ListenerTls>("handshake_timeout", &ListenerTls::handshake_timeout, 1,
                                   5 * kMinute, "a TLS handshake must finish within this"),
        countField<ListenerTls>("max_handshakes", &ListenerTls::max_handshakes, 1, 1000000,
                                "concurrent handshakes; further connections are closed"),
    };
    return fields;
}

template <>
const std::vector<Field<TlsCertificate>>& fieldsOf<TlsCertificate>() {
    static const std::vector<Field<TlsCertificate>> fields{
        textField<TlsCertificate>("cert", &TlsCertificate::cert, "PEM certificate (chain allowed)",
                                  checkReadableFile, {}, /*required=*/true),
        textField<TlsCertificate>("key", &TlsCertificate::key, "PEM private key", checkReadableFile,
                                  {}, /*required=*/true),
        textField<TlsCertificate>(
            "ocsp_staple", &TlsCertificate::ocsp_staple,
            "DER OCSP response stapled for this certificate; reread on reload",
            checkOptionalReadableFile),
    };
    return fields;
}

template <>
const std::vector<Field<UpstreamTls>>& fieldsOf<UpstreamTls>() {
    static const std::vector<Field<UpstreamTls>> fields{
        flagField<UpstreamTls>("enabled", &UpstreamTls::enabled,
                               "talk TLS to the servers (true once a tls block is present)"),
        flagField<UpstreamTls>("verify", &UpstreamTls::verify,
                               "verify the server certificate; a failure is a 502"),
        textField<UpstreamTls>("ca_file", &UpstreamTls::ca_file,
                               "PEM CA bundle; empty = the system trust store",
                               checkOptionalReadableFile),
        textField<UpstreamTls>("sni", &UpstreamTls::sni,
                               "server name sent and verified; empty = verify the IP address",
                               checkServerName),
        textField<UpstreamTls>("client_cert", &UpstreamTls::client_cert,
                               "PEM client certificate (chain allowed)", checkOptionalReadableFile),
        textField<UpstreamTls>("client_key", &UpstreamTls::client_key, "PEM client key",
                               checkOptionalReadableFile),
    };
    return fields;
}

template <>
const std::vector<Field<Admin>>& fieldsOf<Admin>() {
    static const std::vector<Field<Admin>> fields{
        customField<Admin>("bind", readAdminBind, "host:port", "",
                           "absent = no admin listener; keep it on loopback"),
        textField<Admin>("token_file", &Admin::token_file,
                         "file holding the bearer token purge and reload require; empty = those "
                         "endpoints are disabled",
                         checkReadableFile),
    };
    return fields;
}

template <>
const std::vector<Field<Cache>>& fieldsOf<Cache>() {
    static const std::vector<Field<Cache>> fields{
        customField<Cache>("l1", readL1, "mapping", "", "in-process memory tier",
                           describeSection<L1Cache>),
        customField<Cache>("l2", readSection<Cache, L2Cache, &Cache::l2>, "mapping", "",
                           "shared memcached tier", describeSection<L2Cache>),
    };
    return fields;
}

template <>
const std::vector<Field<L1Cache>>& fieldsOf<L1Cache>() {
    static const std::vector<Field<L1Cache>> fields{
        bytesField<L1Cache>("max_bytes", &L1Cache::max_bytes, 0, kTiB,
                            "memory budget for cached objects; 0 disables L1"),
    };
    return fields;
}

template <>
const std::vector<Field<L2Cache>>& fieldsOf<L2Cache>() {
    static const std::vector<Field<L2Cache>> fields{
        customField<L2Cache>("servers", readL2Servers, "list of host:port", "[]",
                             "memcached servers (ketama hashing); empty = no L2"),
        durationField<L2Cache>("timeout", &L2Cache::timeout, 1, 10 * kSecond,
                               "per operation; a slow L2 is a miss"),
        bytesField<L2Cache>("max_object_bytes", &L2Cache::max_object_bytes, 1, kGiB,
                            "largest memcached value; larger objects are chunked or skipped"),
        flagField<L2Cache>("chunks", &L2Cache::chunks,
                           "split objects over max_object_bytes into chunks; false = skip them"),
        textField<L2Cache>("namespace", &L2Cache::key_namespace,
                           "memcached key prefix; instances sharing it share objects", checkName),
        countField<L2Cache>("threads", &L2Cache::threads, 1, 64,
                            "threads making blocking memcached calls"),
        durationField<L2Cache>("purge_poll", &L2Cache::purge_poll, 100, kMinute,
                               "how often the shared purge log is read"),
        durationField<L2Cache>("max_ttl", &L2Cache::max_ttl, kSecond, 30 * kDay,
                               "cap on memcached expiration; purge log retention"),
        durationField<L2Cache>("keep", &L2Cache::keep, 0, 30 * kDay,
                               "objects with a validator stay this long past their stale windows"),
        durationField<L2Cache>("lease_wait", &L2Cache::lease_wait, 0, kMinute,
                               "longest wait for another instance's fetch of a URL; 0 = off"),
    };
    return fields;
}

template <>
const std::vector<Field<Upstream>>& fieldsOf<Upstream>() {
    static const std::vector<Field<Upstream>> fields{
        customField<Upstream>("servers", readUpstreamServers,
                              "list of host:port | {address, weight, max_connections}", "",
                              "origins, round robin (weighted)", describeList<UpstreamServer>,
                              /*required=*/true),
        customField<Upstream>("health_check", readHealthCheck, "mapping", "",
                              "active probes; absent = no health checks",
                              describeSection<HealthCheck>),
        customField<Upstream>(
            "timeouts", readSection<Upstream, UpstreamTimeouts, &Upstream::timeouts>, "mapping", "",
            "upstream timeouts", describeSection<UpstreamTimeouts>),
        countField<Upstream>("max_idle_connections", &Upstream::max_idle_connections, 0, 100000,
                             "keep-alive connections kept per worker and server; 0 = none"),
        countField<Upstream>("max_tries", &Upstream::max_tries, 1, 10,
                             "attempts per idempotent request, on different servers"),
        durationField<Upstream>("fail_backoff", &Upstream::fail_backoff, 0, kHour,
                                "a server refusing connections is skipped this long"),
        customField<Upstream>("tls", readUpstreamTls, "mapping", "",
                              "TLS to the servers; absent = plain TCP",
                              describeSection<UpstreamTls>),
        textField<Upstream>("balance", &Upstream::balance,
                            "how requests are spread over the servers", nullptr, kBalanceChoices),
        customField<Upstream>("hash", readSection<Upstream, UpstreamHash, &Upstream::hash>,
                              "mapping", "", "consistent_hash only: what the key is",
                              describeSection<UpstreamHash>),
        textField<Upstream>("proxy_protocol", &Upstream::proxy_protocol,
                            "PROXY protocol header on each connection to the servers", nullptr,
                            kProxyProtocolVersions),
        flagField<Upstream>("forwarded", &Upstream::forwarded,
                            "also send RFC 7239 Forwarded: for, host, proto"),
        durationField<Upstream>("slow_start", &Upstream::slow_start, 0, kHour,
                                "a server coming back ramps from 10% to its full weight over "
                                "this long; 0 = off (consistent_hash ignores it)"),
        customField<Upstream>("queue", readSection<Upstream, UpstreamQueue, &Upstream::queue>,
                              "mapping", "",
                              "requests waiting while every server is at max_connections",
                              describeSection<UpstreamQueue>),
        customField<Upstream>("retry_budget", readRetryBudget, "mapping", "",
                              "retries in flight stay within ratio x requests in flight; "
                              "absent = only max_tries limits retries",
                              describeSection<RetryBudget>),
    };
    return fields;
}

template <>
const std::vector<Field<UpstreamQueue>>& fieldsOf<UpstreamQueue>() {
    static const std::vector<Field<UpstreamQueue>> fields{
        countField<UpstreamQueue>("max", &UpstreamQueue::max, 0, 1000000,
                                  "waiting requests; beyond it 503 at once (0 = no queue)"),
        durationField<UpstreamQueue>("timeout", &UpstreamQueue::timeout, 1, kHour,
                                     "a request waiting longer gets 503"),
    };
    return fields;
}

template <>
const std::vector<Field<RetryBudget>>& fieldsOf<RetryBudget>() {
    static const std::vector<Field<RetryBudget>> fields{
        customField<RetryBudget>("ratio", readRetryRatio, "0..1", "0.2",
                                 "retries in flight per request in flight"),
        countField<RetryBudget>("min_retries", &RetryBudget::min_retries, 0, 100000,
                                "retries in flight always allowed, whatever the ratio"),
    };
    return fields;
}

template <>
const std::vector<Field<UpstreamHash>>& fieldsOf<UpstreamHash>() {
    static const std::vector<Field<UpstreamHash>> fields{
        textField<UpstreamHash>(
            "key", &UpstreamHash::key,
            "uri (path and query) | client (address) | header:NAME | cookie:NAME; a request "
            "without it is balanced round robin",
            checkHashKey),
    };
    return fields;
}

template <>
const std::vector<Field<UpstreamServer>>& fieldsOf<UpstreamServer>() {
    static const std::vector<Field<UpstreamServer>> fields{
        customField<UpstreamServer>("address", readServerAddress, "host:port", "",
                                    "numeric IPv4 or [IPv6] and port 1..65535", nullptr,
                                    /*required=*/true),
        countField<UpstreamServer>("weight", &UpstreamServer::weight, 1, 1000,
                                   "share of requests relative to the other servers"),
        countField<UpstreamServer>("max_connections", &UpstreamServer::max_connections, 0, 1000000,
                                   "requests in flight at once, all workers; 0 = unlimited"),
    };
    return fields;
}

template <>
const std::vector<Field<HealthCheck>>& fieldsOf<HealthCheck>() {
    static const std::vector<Field<HealthCheck>> fields{
        textField<HealthCheck>("method", &HealthCheck::method, "probe request method", checkMethod),
        textField<HealthCheck>("path", &HealthCheck::path, "probe request target",
                               checkRequestPath),
        durationField<HealthCheck>("interval", &HealthCheck::interval, 10, kHour,
                                   "time between probes of one server"),
        durationField<HealthCheck>(
            "timeout", &HealthCheck::timeout, 1, kHour,
            "a probe slower than this failed; at most interval (default: 1s or interval if less)"),
        countField<HealthCheck>("rise", &HealthCheck::rise, 1, 100,
                                "consecutive passes to mark a server up"),
        countField<HealthCheck>("fall", &HealthCheck::fall, 1, 100,
                                "consecutive failures to mark a server down"),
        customField<HealthCheck>("expect_status", readExpectStatus, "\"low-high\" | status",
                                 "200-399", "statuses that pass"),
    };
    return fields;
}

template <>
const std::vector<Field<UpstreamTimeouts>>& fieldsOf<UpstreamTimeouts>() {
    static const std::vector<Field<UpstreamTimeouts>> fields{
        durationField<UpstreamTimeouts>("connect", &UpstreamTimeouts::connect, 1, 5 * kMinute,
                                        "TCP connect to a server"),
        durationField<UpstreamTimeouts>("response", &UpstreamTimeouts::response, 1, kDay,
                                        "until the response head, and between body reads"),
        durationField<UpstreamTimeouts>("idle", &UpstreamTimeouts::idle, 1, kDay,
                                        "a pooled keep-alive connection unused this long closes"),
        durationField<UpstreamTimeouts>("tunnel_idle", &UpstreamTimeouts::tunnel_idle, 1, 7 * kDay,
                                        "an Upgrade (WebSocket) tunnel idle this long ends"),
    };
    return fields;
}

template <>
const std::vector<Field<Route>>& fieldsOf<Route>() {
    static const std::vector<Field<Route>> fields{
        textField<Route>("name", &Route::name,
                         "metric label and log name; absent = the route's index", checkName),
        customField<Route>("match", readSection<Route, RouteMatch, &Route::match>, "mapping", "",
                           "all given conditions must hold; absent = every request",
                           describeSection<RouteMatch>),
        customField<Route>("upstream", readRouteUpstream, "upstream name", "",
                           "a key of upstreams; a route has upstream, redirect or respond"),
        customField<Route>("redirect", readRedirect, "mapping", "",
                           "answer with a redirect built from the request; never forwarded",
                           describeSection<RouteRedirect>),
        customField<Route>("respond", readRespond, "mapping", "",
                           "answer with a fixed status and body; never forwarded",
                           describeSection<RouteRespond>),
        customField<Route>("rewrite", readRewrite, "mapping", "",
                           "the path sent upstream; the cache key keeps the client's URL",
                           describeSection<RouteRewrite>),
        customField<Route>("request_headers", readRouteRequestHeaders, "mapping", "",
                           "set/add/remove fields of the request sent upstream",
                           describeSection<RequestHeaderRules>),
        customField<Route>("response_headers", readRouteResponseHeaders, "mapping", "",
                           "set/add/remove fields of every answer of the route, hits included",
                           describeSection<ResponseHeaderRules>),
        customField<Route>("access", readAccess<Route>, "mapping", "",
                           "allow/deny by client address; refused requests get 403",
                           describeSection<AccessList>),
        customField<Route>("methods_allowed", readMethodsAllowed, "list of methods", "[]",
                           "others get 405 with Allow; empty = any"),
        bytesField<Route>("max_request_body_bytes", &Route::max_request_body_bytes, 0, kTiB,
                          "larger request bodies get 413; 0 = limits.max_request_body_bytes"),
        customField<Route>("rate_limit", readRateLimit, "mapping", "",
                           "requests per key, shared by all workers; over it: 429",
                           describeSection<RateLimit>),
        customField<Route>("cache", readRouteCache, "mapping", "", "cache policy; absent = bypass",
                           describeSection<RouteCache>),
        customField<Route>("compression", readCompression, "mapping", "",
                           "gzip/br for clients that accept them; absent = never compress",
                           describeSection<RouteCompression>),
        flagField<Route>("websocket", &Route::websocket,
                         "tunnel WebSocket upgrades; false answers them 403"),
        customField<Route>("upgrade_protocols", readUpgradeProtocols, "list of tokens", "[]",
                           "other Upgrade tokens to tunnel (h2c never)"),
    };
    return fields;
}

// The conditions of routes[].match and of its `not` block, one table for both.
template <class T>
std::vector<Field<T>> conditionFields() {
    return {
        customField<T>("host", readHosts<T>, "host pattern or list", "any",
                       "exact host or \"*.suffix\" (case-insensitive), or a list of them"),
        textField<T>("path_prefix", &T::path_prefix, "starts with \"/\"; absent = any path",
                     checkPathPrefix),
        textField<T>("path", &T::path, "this exact path (no query); absent = any", checkExactPath),
        textField<T>("path_regex", &T::path_regex,
                     "RE2 matched against the whole path (no query); absent = any", checkRegex),
        customField<T>("methods", readMethods<T>, "list of methods", "[]",
                       "upper-cased; empty = any method"),
        customField<T>("headers", readFieldConditions<T, false>,
                       "list of {name, value | regex | present}", "[]",
                       "request fields that must be present, equal, match or be absent",
                       describeList<FieldCondition>),
        customField<T>("query", readFieldConditions<T, true>,
                       "list of {name, value | regex | present}", "[]",
                       "query parameters that must be present, equal, match or be absent",
                       describeList<FieldCondition>),
        customField<T>("listeners", readRouteListeners<T>, "list of listener names", "[]",
                       "only requests received on these listeners; empty = any"),
        customField<T>("client", readClients<T>, "list of address/prefix", "[]",
                       "the (real) client is in one of these blocks; empty = any"),
    };
}

template <>
const std::vector<Field<RouteConditions>>& fieldsOf<RouteConditions>() {
    static const std::vector<Field<RouteConditions>> fields = conditionFields<RouteConditions>();
    return fields;
}

template <>
const std::vector<Field<RouteMatch>>& fieldsOf<RouteMatch>() {
    static const std::vector<Field<RouteMatch>> fields = [] {
        auto out = conditionFields<RouteMatch>();
        out.push_back(customField<RouteMatch>(
            "not", readNegated, "mapping", "",
            "the route does not match a request meeting all of these conditions",
            describeSection<RouteConditions>));
        return out;
    }();
    return fields;
}

template <>
const std::vector<Field<FieldCondition>>& fieldsOf<FieldCondition>() {
    static const std::vector<Field<FieldCondition>> fields{
        textField<FieldCondition>("name", &FieldCondition::name,
                                  "header (case-insensitive) or query parameter name", nullptr, {},
                                  /*required=*/true),
        textField<FieldCondition>("value", &FieldCondition::value, "the exact value"),
        textField<FieldCondition>("regex", &FieldCondition::regex,
                                  "RE2 matched against the whole value", checkRegex),
        flagField<FieldCondition>("present", &FieldCondition::present,
                                  "false: the field must be absent"),
    };
    return fields;
}

template <>
const std::vector<Field<RouteCache>>& fieldsOf<RouteCache>() {
    static const std::vector<Field<RouteCache>> fields{
        flagField<RouteCache>("enabled", &RouteCache::enabled,
                              "store and serve cacheable responses (RFC 9111)"),
        durationField<RouteCache>("default_ttl", &RouteCache::default_ttl, 0, 365 * kDay,
                                  "freshness when the response gives none; 0 = heuristic only"),
        durationField<RouteCache>("stale_while_revalidate", &RouteCache::stale_while_revalidate, 0,
                                  365 * kDay, "serve stale this long while refreshing"),
        durationField<RouteCache>("stale_if_error", &RouteCache::stale_if_error, 0, 365 * kDay,
                                  "serve stale this long when the origin fails"),
        durationField<RouteCache>("stale_if_unreachable", &RouteCache::stale_if_unreachable, 0,
                                  365 * kDay,
                                  "serve stale this long while no server can be reached"),
        bytesField<RouteCache>("max_object_bytes", &RouteCache::max_object_bytes, 1, kGiB,
                               "larger responses stream to the client uncached"),
        flagField<RouteCache>("allow_set_cookie", &RouteCache::allow_set_cookie,
                              "store and share responses carrying Set-Cookie"),
        customField<RouteCache>("key", readCacheKey, "mapping", "",
                                "what names a stored object besides scheme, host and path",
                                describeSection<RouteCacheKey>),
        customField<RouteCache>(
            "allow_override_headers", readAllowOverrideHeaders, "list of header names", "[]",
            "override fields (X-Original-URL, X-HTTP-Method-Override, ...) still forwarded"),
    };
    return fields;
}

template <>
const std::vector<Field<RouteCompression>>& fieldsOf<RouteCompression>() {
    static const std::vector<Field<RouteCompression>> fields{
        customField<RouteCompression>("encodings", readEncodings, "list of br|gzip", "[br, gzip]",
                                      "codings produced, preferred first when a client ties"),
        bytesField<RouteCompression>("min_bytes", &RouteCompression::min_bytes, 0, kGiB,
                                     "smaller bodies are sent as they are"),
        customField<RouteCompression>("types", readCompressTypes, "list of media types", "",
                                      "Content-Types compressed (type/subtype or type/*)"),
        countField<RouteCompression>("level", &RouteCompression::level, 1, 9,
                                     "gzip level and brotli quality"),
    };
    return fields;
}

constexpr std::array<std::string_view, 2> kSchemes{"http", "https"};

template <>
const std::vector<Field<RateLimit>>& fieldsOf<RateLimit>() {
    static const std::vector<Field<RateLimit>> fields{
        textField<RateLimit>("rate", &RateLimit::rate, "COUNT/s, /m or /h: the average allowed",
                             checkRate),
        countField<RateLimit>("burst", &RateLimit::burst, 1, 1000000,
                              "requests allowed at once beyond the average"),
        textField<RateLimit>("key", &RateLimit::key,
                             "client (address), route (one bucket) or header:NAME", checkRateKey),
        countField<RateLimit>("max_keys", &RateLimit::max_keys, 1, 10000000,
                              "buckets kept; the least recently used is forgotten"),
    };
    return fields;
}

template <>
const std::vector<Field<AccessList>>& fieldsOf<AccessList>() {
    static const std::vector<Field<AccessList>> fields{
        customField<AccessList>("allow", readAllowList, "list of address/prefix", "[]",
                                "when given, only these clients"),
        customField<AccessList>("deny", readDenyList, "list of address/prefix", "[]",
                                "these clients never (deny wins over allow)"),
    };
    return fields;
}
constexpr std::array<std::string_view, 2> kQueryKeep{"keep", "drop"};

template <>
const std::vector<Field<RouteRedirect>>& fieldsOf<RouteRedirect>() {
    static const std::vector<Field<RouteRedirect>> fields{
        countField<RouteRedirect>("status", &RouteRedirect::status, 301, 308,
                                  "301, 302, 303, 307 or 308"),
        textField<RouteRedirect>("scheme", &RouteRedirect::scheme,
                                 "http or https; absent = the request's", nullptr, kSchemes),
        textField<RouteRedirect>("host", &RouteRedirect::host, "absent = the request's"),
        countField<RouteRedirect>("port", &RouteRedirect::port, 0, 65535,
                                  "0 = the scheme's default, not written"),
        textField<RouteRedirect>("path", &RouteRedirect::path,
                                 "replaces the whole path; absent = keep it", checkRequestPath),
        textField<RouteRedirect>("prefix", &RouteRedirect::prefix,
                                 "replaces match.path_prefix at the front of the path",
                                 checkRequestPath),
        textField<RouteRedirect>("query", &RouteRedirect::query, "keep or drop the request's query",
                                 nullptr, kQueryKeep),
    };
    return fields;
}

template <>
const std::vector<Field<RouteRespond>>& fieldsOf<RouteRespond>() {
    static const std::vector<Field<RouteRespond>> fields{
        countField<RouteRespond>("status", &RouteRespond::status, 200, 599, "200..599"),
        textField<RouteRespond>("content_type", &RouteRespond::content_type,
                                "Content-Type of the body"),
        textField<RouteRespond>("body", &RouteRespond::body, "sent as written"),
    };
    return fields;
}

template <>
const std::vector<Field<RouteRewrite>>& fieldsOf<RouteRewrite>() {
    static const std::vector<Field<RouteRewrite>> fields{
        textField<RouteRewrite>("strip_prefix", &RouteRewrite::strip_prefix,
                                "removed from the front of the path when present",
                                checkRequestPath),
        textField<RouteRewrite>("add_prefix", &RouteRewrite::add_prefix,
                                "then put in front (strip + add replaces a prefix)",
                                checkRequestPath),
        textField<RouteRewrite>("regex", &RouteRewrite::regex, "RE2 over the whole path",
                                checkRegex),
        textField<RouteRewrite>("replace", &RouteRewrite::replace,
                                "the new path, \\1..\\9 for the regex's groups"),
    };
    return fields;
}

template <class Rules>
std::vector<Field<Rules>> headerRuleFields() {
    return {
        customField<Rules>("set", readRuleMap<Rules, &HeaderRules::set>, "mapping", "{}",
                           "NAME: VALUE replaces every field of that name"),
        customField<Rules>("add", readRuleMap<Rules, &HeaderRules::add>, "mapping", "{}",
                           "NAME: VALUE appends one more field"),
        customField<Rules>("remove", readRuleRemove<Rules>, "list of header names", "[]",
                           "every field of these names is left out"),
    };
}

template <>
const std::vector<Field<RequestHeaderRules>>& fieldsOf<RequestHeaderRules>() {
    static const std::vector<Field<RequestHeaderRules>> fields =
        headerRuleFields<RequestHeaderRules>();
    return fields;
}

template <>
const std::vector<Field<ResponseHeaderRules>>& fieldsOf<ResponseHeaderRules>() {
    static const std::vector<Field<ResponseHeaderRules>> fields =
        headerRuleFields<ResponseHeaderRules>();
    return fields;
}

template <>
const std::vector<Field<RouteCacheKey>>& fieldsOf<RouteCacheKey>() {
    static const std::vector<Field<RouteCacheKey>> fields{
        textField<RouteCacheKey>(
            "query", &RouteCacheKey::query,
            "query in the key: sorted by name, byte for byte, dropped, or only query_params",
            nullptr, kQueryModes),
        customField<RouteCacheKey>("query_params", readQueryParams, "list of parameter names", "[]",
                                   "allow_list: the parameters kept (exact, case-sensitive)"),
        customField<RouteCacheKey>(
            "headers", readKeyHeaders, "list of header names", "[]",
            "request fields whose values select a variant, like an implicit Vary"),
    };
    return fields;
}

template <>
const std::vector<Field<Limits>>& fieldsOf<Limits>() {
    static const std::vector<Field<Limits>> fields{
        durationField<Limits>("client_header_timeout", &Limits::client_header_timeout, 1, kHour,
                              "first byte of a request to the end of its head"),
        durationField<Limits>("client_idle_timeout", &Limits::client_idle_timeout, 1, kDay,
                              "keep-alive idle between requests"),
        durationField<Limits>("client_body_timeout", &Limits::client_body_timeout, 1, kDay,
                              "between reads of a request body"),
        durationField<Limits>("send_timeout", &Limits::send_timeout, 1, kDay,
                              "a client not reading the response this long is closed"),
        bytesField<Limits>("max_request_body_bytes", &Limits::max_request_body_bytes, 0, kTiB,
                           "larger bodies get 413"),
        bytes32Field<Limits>(
            "max_request_line_bytes", &Limits::max_request_line_bytes, 256, kMiB,
            "longer request lines get 414; at most max_header_bytes (the default follows it)"),
        bytes32Field<Limits>("max_header_bytes", &Limits::max_header_bytes, kKiB, 16 * kMiB,
                             "whole request head; larger gets 431"),
        countField<Limits>("max_headers", &Limits::max_headers, 1, 10000,
                           "header fields per request; more gets 431"),
        countField<Limits>("max_client_connections", &Limits::max_client_connections, 1, 1000000,
                           "whole process; further accepts wait"),
        durationField<Limits>("drain_timeout", &Limits::drain_timeout, 0, kHour,
                              "on shutdown, in-flight requests get this long"),
        textField<Limits>("underscores_in_headers", &Limits::underscores_in_headers,
                          "request fields named with '_': dropped, forwarded, or 400; one "
                          "reading as Content-Length/Transfer-Encoding is 400 in every mode",
                          nullptr, kUnderscoreModes),
    };
    return fields;
}

template <>
const std::vector<Field<Http2>>& fieldsOf<Http2>() {
    static const std::vector<Field<Http2>> fields{
        countField<Http2>("max_concurrent_streams", &Http2::max_concurrent_streams, 1, 10000,
                          "open streams per connection; more are refused (REFUSED_STREAM)"),
        countField<Http2>("reset_burst", &Http2::reset_burst, 1, 1000000,
                          "streams a client may reset in a burst before GOAWAY (rapid reset)"),
        countField<Http2>("reset_rate", &Http2::reset_rate, 1, 1000000,
                          "client resets per second refilled into the burst"),
        countField<Http2>("max_continuations", &Http2::max_continuations, 1, 1000,
                          "CONTINUATION frames per header block; more close the connection"),
        countField<Http2>("max_settings", &Http2::max_settings, 1, 1000,
                          "entries in one SETTINGS frame; more close the connection"),
        bytes32Field<Http2>("window_bytes", &Http2::window_bytes, 16 * kKiB, 16 * kMiB,
                            "receive window per stream (request bodies buffered at most)"),
    };
    return fields;
}

template <>
const std::vector<Field<Logging>>& fieldsOf<Logging>() {
    static const std::vector<Field<Logging>> fields{
        textField<Logging>("access_log", &Logging::access_log, "stdout | stderr | off | file path",
                           checkNotEmpty),
        textField<Logging>("access_format", &Logging::access_format, "access log line format",
                           nullptr, kAccessFormats),
        textField<Logging>("error_log", &Logging::error_log, "stdout | stderr | file path",
                           checkErrorLog),
        textField<Logging>("level", &Logging::level, "least severe error_log level written",
                           nullptr, kLogLevels),
        textField<Logging>("client_address", &Logging::client_address,
                           "client addresses in the access log: as they are, truncated or hashed",
                           nullptr, kClientAddressModes),
        textField<Logging>("client_address_key", &Logging::client_address_key,
                           "HMAC key for client_address: hash (empty: random per start)"),
        customField<Logging>("redact_query", readRedactQuery, "list of parameter names", "[]",
                             "query parameters whose values the access log replaces"),
    };
    return fields;
}

template <>
const std::vector<Field<Metrics>>& fieldsOf<Metrics>() {
    static const std::vector<Field<Metrics>> fields{
        flagField<Metrics>("enabled", &Metrics::enabled,
                           "record request metrics on the data path; /metrics answers either way"),
    };
    return fields;
}

// ---- schema() rendering -----------------------------------------------------------------------

namespace {

std::string rangeText(Kind kind, std::uint64_t min, std::uint64_t max) {
    switch (kind) {
        case Kind::Count:
            return std::to_string(min) + ".." + std::to_string(max);
        case Kind::Bytes:
        case Kind::Bytes32:
            return formatBytes(min) + ".." + formatBytes(max);
        case Kind::Duration:
            return formatDuration(Duration(static_cast<Duration::rep>(min))) + ".." +
                   formatDuration(Duration(static_cast<Duration::rep>(max)));
        default:
            return "";
    }
}

}  // namespace

// gcc 12 instantiates every member-pointer branch for small structs such as Metrics and warns
// (-Warray-bounds) about branches the field's kind never takes; the accesses are always valid.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
template <class T>
void describeFields(std::vector<SchemaKey>& out, const std::string& prefix) {
    static const T defaults{};  // static: also avoids a gcc 12 false -Wmaybe-uninitialized
    for (const auto& field : fieldsOf<T>()) {
        SchemaKey key;
        key.path = prefix.empty() ? std::string(field.key) : prefix + "." + std::string(field.key);
        key.doc = std::string(field.doc);
        key.required = field.required;
        key.range = rangeText(field.kind, field.min, field.max);
        switch (field.kind) {
            case Kind::Count:
                key.type = "integer";
                key.default_value = std::to_string(defaults.*field.u32);
                break;
            case Kind::Bytes:
                key.type = "bytes";
                key.default_value = formatBytes(defaults.*field.u64);
                break;
            case Kind::Bytes32:
                key.type = "bytes";
                key.default_value = formatBytes(defaults.*field.u32);
                break;
            case Kind::Duration:
                key.type = "duration";
                key.default_value = formatDuration(defaults.*field.duration);
                break;
            case Kind::Flag:
                key.type = "bool";
                key.default_value = (defaults.*field.flag) ? "true" : "false";
                break;
            case Kind::Text:
                if (field.choices.empty()) {
                    key.type = "string";
                } else {
                    for (auto choice : field.choices) {
                        key.type += (key.type.empty() ? "" : "|") + std::string(choice);
                    }
                }
                key.default_value = field.required ? "" : defaults.*field.text;
                break;
            case Kind::Custom:
                key.type = std::string(field.type);
                key.default_value = std::string(field.default_text);
                break;
        }
        // Copied: describe() appends to `out`, which may reallocate under a reference into it.
        const std::string path = key.path;
        out.push_back(std::move(key));
        if (field.describe != nullptr) {
            field.describe(out, path);
        }
    }
}
#pragma GCC diagnostic pop

template void describeFields<Config>(std::vector<SchemaKey>&, const std::string&);

}  // namespace strata::config::detail
