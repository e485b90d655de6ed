// The schema: one table per config struct, each row one YAML key with its type, range, default
// (read from the struct's default member initializer, so config.h stays the single source of
// truth) and one line of doc. Varnish's include/tbl/params.h idea, typed: the loader walks
// these tables, and schema() renders them for docs and tests.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "strata/config/config.h"

namespace strata::config::detail {

class Loader;

enum class Kind {
    Count,     // std::uint32_t, plain integer
    Bytes,     // std::uint64_t with a size unit
    Bytes32,   // std::uint32_t with a size unit
    Duration,  // Duration with a time unit
    Flag,      // bool
    Text,      // std::string, optionally one of `choices` and/or checked by `check`
    Custom,    // anything else: lists, maps, endpoints, nested sections
};

// Reads `value` (found under a key at `key_mark`; `value` may be null) into `out`.
template <class T>
using CustomFn = void (*)(Loader& loader, const YAML::Node& value, const YAML::Mark& key_mark,
                          const std::string& path, T& out);

// Validates and may normalize a string value ("GET" from "get"); false with `error` set if bad.
using TextCheck = bool (*)(std::string& value, std::string& error);

// Appends the keys nested under a custom field to a schema listing.
using Describe = void (*)(std::vector<SchemaKey>& out, const std::string& path);

template <class T>
struct Field {
    std::string_view key;
    Kind kind = Kind::Custom;
    Duration T::*duration = nullptr;
    std::uint64_t T::*u64 = nullptr;
    std::uint32_t T::*u32 = nullptr;
    bool T::*flag = nullptr;
    std::string T::*text = nullptr;
    CustomFn<T> custom = nullptr;
    std::uint64_t min = 0;  // inclusive, in ms, bytes or units
    std::uint64_t max = 0;
    std::span<const std::string_view> choices = {};
    TextCheck check = nullptr;
    bool required = false;
    std::string_view type = {};          // Custom only: shown in schema()
    std::string_view default_text = {};  // Custom only
    Describe describe = nullptr;         // Custom only: nested keys
    std::string_view doc = {};
};

template <class T>
const std::vector<Field<T>>& fieldsOf();

template <>
const std::vector<Field<Config>>& fieldsOf<Config>();
template <>
const std::vector<Field<Listener>>& fieldsOf<Listener>();
template <>
const std::vector<Field<ListenerTls>>& fieldsOf<ListenerTls>();
template <>
const std::vector<Field<TlsCertificate>>& fieldsOf<TlsCertificate>();
template <>
const std::vector<Field<UpstreamTls>>& fieldsOf<UpstreamTls>();
template <>
const std::vector<Field<Admin>>& fieldsOf<Admin>();
template <>
const std::vector<Field<Cache>>& fieldsOf<Cache>();
template <>
const std::vector<Field<L1Cache>>& fieldsOf<L1Cache>();
template <>
const std::vector<Field<L2Cache>>& fieldsOf<L2Cache>();
template <>
const std::vector<Field<Upstream>>& fieldsOf<Upstream>();
template <>
const std::vector<Field<UpstreamServer>>& fieldsOf<UpstreamServer>();
template <>
const std::vector<Field<UpstreamHash>>& fieldsOf<UpstreamHash>();
template <>
const std::vector<Field<UpstreamQueue>>& fieldsOf<UpstreamQueue>();
template <>
const std::vector<Field<RetryBudget>>& fieldsOf<RetryBudget>();
template <>
const std::vector<Field<HealthCheck>>& fieldsOf<HealthCheck>();
template <>
const std::vector<Field<UpstreamTimeouts>>& fieldsOf<UpstreamTimeouts>();
template <>
const std::vector<Field<Route>>& fieldsOf<Route>();
template <>
const std::vector<Field<RouteMatch>>& fieldsOf<RouteMatch>();
template <>
const std::vector<Field<RouteConditions>>& fieldsOf<RouteConditions>();
template <>
const std::vector<Field<FieldCondition>>& fieldsOf<FieldCondition>();
template <>
const std::vector<Field<RouteCache>>& fieldsOf<RouteCache>();
template <>
const std::vector<Field<RouteCacheKey>>& fieldsOf<RouteCacheKey>();
template <>
const std::vector<Field<RouteCompression>>& fieldsOf<RouteCompression>();
template <>
const std::vector<Field<RouteRedirect>>& fieldsOf<RouteRedirect>();
template <>
const std::vector<Field<RouteRespond>>& fieldsOf<RouteRespond>();
template <>
const std::vector<Field<RouteRewrite>>& fieldsOf<RouteRewrite>();
template <>
const std::vector<Field<RequestHeaderRules>>& fieldsOf<RequestHeaderRules>();
template <>
const std::vector<Field<ResponseHeaderRules>>& fieldsOf<ResponseHeaderRules>();
template <>
const std::vector<Field<AccessList>>& fieldsOf<AccessList>();
template <>
const std::vector<Field<RateLimit>>& fieldsOf<RateLimit>();
template <>
const std::vector<Field<Limits>>& fieldsOf<Limits>();
template <>
const std::vector<Field<Http2>>& fieldsOf<Http2>();
template <>
const std::vector<Field<Logging>>& fieldsOf<Logging>();
template <>
const std::vector<Field<Metrics>>& fieldsOf<Metrics>();

// Renders fieldsOf<T>() (recursively) under `prefix`.
template <class T>
void describeFields(std::vector<SchemaKey>& out, const std::string& prefix);

}  // namespace strata::config::detail
