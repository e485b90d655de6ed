// Cache-Control (RFC 9111 5.2), targeted cache-control fields (RFC 9213 over RFC 8941
// Dictionaries) and HTTP-date (RFC 9110 5.6.7).
#include "strata/cache/cache_control.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "strata/common/strings.h"
#include "strata/http/message.h"

namespace strata::cache {
namespace {

bool isTchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

bool isOws(char c) {
    return c == ' ' || c == '\t';
}

// One directive's argument, whatever syntax carried it.
struct Arg {
    bool present = false;  // "name=..." (token, string or number)
    std::string text;      // token / unescaped string / decimal digits
    bool integer = false;  // structured field: an sf-integer (text holds it, maybe "-1")
    bool list = false;     // structured field: an inner list (text holds members, comma-joined)
};

// Accumulates directives into a CacheControl with RFC 9111's conservative rules.
class Applier {
public:
    explicit Applier(CacheControl& cc) : cc_(cc) {}

    void apply(std::string_view raw_name, const Arg& arg) {
        std::string name = toLower(raw_name);
        if (name == "max-age") {
            lifetimeDelta(cc_.max_age, arg);
        } else if (name == "s-maxage") {
            lifetimeDelta(cc_.s_maxage, arg);
        } else if (name == "stale-while-revalidate") {
            lifetimeDelta(cc_.stale_while_revalidate, arg);
        } else if (name == "stale-if-error") {
            lifetimeDelta(cc_.stale_if_error, arg);
        } else if (name == "min-fresh") {
            // Conflicting minimums: the larger one asks for more freshness (conservative).
            auto v = delta(arg);
            if (!v) {
                cc_.had_invalid = true;
                return;
            }
            if (cc_.min_fresh && *cc_.min_fresh != *v) {
                cc_.had_invalid = true;
            }
            cc_.min_fresh = std::max(cc_.min_fresh.value_or(0), *v);
        } else if (name == "max-stale") {
            if (!arg.present) {
                cc_.max_stale_any = true;
                return;
            }
            auto v = delta(arg);
            if (!v) {
                // An unreadable tolerance accepts no staleness at all (conservative).
                cc_.had_invalid = true;
                return;
            }
            if (cc_.max_stale && *cc_.max_stale != *v) {
                cc_.had_invalid = true;
                cc_.max_stale = std::min(*cc_.max_stale, *v);
            } else {
                cc_.max_stale = *v;
            }
        } else if (name == "no-store") {
            cc_.no_store = true;
        } else if (name == "no-cache") {
            qualified(arg, cc_.no_cache, cc_.no_cache_fields);
        } else if (name == "private") {
            qualified(arg, cc_.private_, cc_.private_fields);
        } else if (name == "public") {
            cc_.public_ = true;
        } else if (name == "must-revalidate") {
            cc_.must_revalidate = true;
        } else if (name == "proxy-revalidate") {
            cc_.proxy_revalidate = true;
        } else if (name == "must-understand") {
            cc_.must_understand = true;
        } else if (name == "no-transform") {
            cc_.no_transform = true;
        } else if (name == "immutable") {
            cc_.immutable = true;
        } else if (name == "only-if-cached") {
            cc_.only_if_cached = true;
        }
        // RFC 9111 5.2.3: unrecognised extensions are ignored.
    }

private:
    static std::optional<std::int64_t> delta(const Arg& arg) {
        if (!arg.present || arg.list) {
            return std::nullopt;
        }
        return parseDeltaSeconds(arg.text);
    }

    // max-age, s-maxage and the RFC 5861 windows: a missing or invalid value, or two different
    // values, give 0 (RFC 9111 4.2.1: "consider the response stale").
    void lifetimeDelta(std::optional<std::int64_t>& slot, const Arg& arg) {
        auto v = delta(arg);
        if (!v) {
            cc_.had_invalid = true;
            slot = 0;
            return;
        }
        if (slot && *slot != *v) {
            cc_.had_invalid = true;
            slot = 0;
            return;
        }
        slot = *v;
    }

    // no-cache / private: without an argument the whole response; with a field-name list only
    // those fields (RFC 9111 5.2.2.4, 5.2.2.7).
    void qualified(const Arg& arg, bool& whole, std::vector<std::string>& fields) {
        if (!arg.present) {
            whole = true;
            return;
        }
        bool any = false;
        forEachListElement(arg.text, [&](std::string_view f) {
            bool valid = std::all_of(f.begin(), f.end(), isTchar);
            if (!valid) {
                cc_.had_invalid = true;
                return;
            }
            any = true;
            std::string lower = toLower(f);
            if (std::find(fields.begin(), fields.end(), lower) == fields.end()) {
                fields.push_back(std::move(lower));
            }
        });
        if (!any) {
            // An argument naming no field cannot be honoured field by field: take it whole.
            whole = true;
        }
    }

    CacheControl& cc_;
};

// Parses a quoted-string starting at s[i] == '"'; on success i is past the closing quote.
bool parseQuoted(std::string_view s, std::size_t& i, std::string& out) {
    ++i;
    while (i < s.size()) {
        char c = s[i];
        if (c == '"') {
            ++i;
            return true;
        }
        if (c == '\\') {
            if (i + 1 >= s.size()) {
                return false;
            }
            out.push_back(s[i + 1]);
            i += 2;
            continue;
        }
        out.push_back(c);
        ++i;
    }
    return false;
}

// Skips to just past the next list comma outside quotes (error recovery).
void skipElement(std::string_view s, std::size_t& i) {
    bool quoted = false;
    while (i < s.size()) {
        char c = s[i];
        if (quoted) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                quoted = false;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            ++i;
            return;
        }
        ++i;
    }
}

// ---- RFC 8941 Dictionary, as far as RFC 9213 needs it ----

bool isLcalpha(char c) {
    return c >= 'a' && c <= 'z';
}
bool isDigit(char c) {
    return c >= '0' && c <= '9';
}
bool isAlpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

class SfParser {
public:
    explicit SfParser(std::string_view s) : s_(s) {}

    // RFC 8941 4.2.2. Later duplicates replace earlier members.
    bool parseDictionary(std::vector<std::pair<std::string, Arg>>& out) {
        while (i_ < s_.size() && s_[i_] == ' ') {
            ++i_;
        }
        while (i_ < s_.size()) {
            std::string key;
            if (!parseKey(key)) {
                return false;
            }
            Arg arg;
            if (i_ < s_.size() && s_[i_] == '=') {
                ++i_;
                if (i_ < s_.size() && s_[i_] == '(') {
                    if (!parseInnerList(arg)) {
                        return false;
                    }
                } else if (!parseBareItem(arg)) {
                    return false;
                }
            } else {
                arg.present = false;  // Boolean true
            }
            if (!parseParameters()) {
                return false;
            }
            auto it =
                std::find_if(out.begin(), out.end(), [&](const auto& m) { return m.first == key; });
            if (it != out.end()) {
                it->second = std::move(arg);
            } else {
                out.emplace_back(std::move(key), std::move(arg));
            }
            while (i_ < s_.size() && isOws(s_[i_])) {
                ++i_;
            }
            if (i_ == s_.size()) {
                return true;
            }
            if (s_[i_] != ',') {
                return false;
            }
            ++i_;
            while (i_ < s_.size() && isOws(s_[i_])) {
                ++i_;
            }
            if (i_ == s_.size()) {
                return false;  // trailing comma
            }
        }
        return true;
    }

private:
    bool parseKey(std::string& key) {
        if (i_ >= s_.size() || !(isLcalpha(s_[i_]) || s_[i_] == '*')) {
            return false;
        }
        while (i_ < s_.size()) {
            char c = s_[i_];
            if (isLcalpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*') {
                key.push_back(c);
                ++i_;
            } else {
                break;
            }
        }
        return true;
    }

    // Boolean "?0" is returned as present=false + text "?0" so the caller can drop it.
    bool parseBareItem(Arg& arg) {
        if (i_ >= s_.size()) {
            return false;
        }
        char c = s_[i_];
        arg.present = true;
        if (c == '-' || isDigit(c)) {
            return parseNumber(arg);
        }
        if (c == '"') {
            std::size_t j = i_ + 1;
            while (j < s_.size()) {
                char d = s_[j];
                if (d == '\\') {
                    if (j + 1 >= s_.size() || (s_[j + 1] != '"' && s_[j + 1] != '\\')) {
                        return false;
                    }
                    arg.text.push_back(s_[j + 1]);
                    j += 2;
                    continue;
                }
                if (d == '"') {
                    i_ = j + 1;
                    return true;
                }
                if (d < 0x20 || d > 0x7e) {
                    return false;
                }
                arg.text.push_back(d);
                ++j;
            }
            return false;
        }
        if (isAlpha(c) || c == '*') {
            while (i_ < s_.size() && (isTchar(s_[i_]) || s_[i_] == ':' || s_[i_] == '/')) {
                arg.text.push_back(s_[i_++]);
            }
            return true;
        }
        if (c == ':') {
            std::size_t end = s_.find(':', i_ + 1);
            if (end == std::string_view::npos) {
                return false;
            }
            for (std::size_t j = i_ + 1; j < end; ++j) {
                char d = s_[j];
                if (!(isAlpha(d) || isDigit(d) || d == '+' || d == '/' || d == '=')) {
                    return false;
                }
            }
            i_ = end + 1;
            arg.text = "bytes";
            return true;
        }
        if (c == '?') {
            if (i_ + 1 < s_.size() && (s_[i_ + 1] == '0' || s_[i_ + 1] == '1')) {
                arg.text = s_[i_ + 1] == '1' ? "?1" : "?0";
                i_ += 2;
                return true;
            }
            return false;
        }
        return false;
    }

    bool parseNumber(Arg& arg) {
        std::string digits;
        bool negative = false;
        if (s_[i_] == '-') {
            negative = true;
            ++i_;
        }
        std::size_t start = i_;
        while (i_ < s_.size() && isDigit(s_[i_])) {
            ++i_;
        }
        std::size_t int_len = i_ - start;
        if (int_len == 0) {
            return false;
        }
        if (i_ < s_.size() && s_[i_] == '.') {
            // sf-decimal: at most 12 integer and 3 fractional digits; never a delta-seconds.
            if (int_len > 12) {
                return false;
            }
            ++i_;
            std::size_t frac = i_;
            while (i_ < s_.size() && isDigit(s_[i_])) {
                ++i_;
            }
            if (i_ == frac || i_ - frac > 3) {
                return false;
            }
            arg.text = "decimal";
            return true;
        }
        if (int_len > 15) {
            return false;
        }
        arg.integer = true;
        arg.text = std::string(negative ? "-" : "") + std::string(s_.substr(start, int_len));
        return true;
    }

    bool parseInnerList(Arg& arg) {
        ++i_;  // '('
        arg.present = true;
        arg.list = true;
        while (i_ < s_.size()) {
            while (i_ < s_.size() && s_[i_] == ' ') {
                ++i_;
            }
            if (i_ < s_.size() && s_[i_] == ')') {
                ++i_;
                return true;
            }
            Arg item;
            if (!parseBareItem(item) || !parseParameters()) {
                return false;
            }
            if (!arg.text.empty()) {
                arg.text.push_back(',');
            }
            arg.text += item.text;
            if (i_ < s_.size() && s_[i_] != ' ' && s_[i_] != ')') {
                return false;
            }
        }
        return false;
    }

    bool parseParameters() {
        while (i_ < s_.size() && s_[i_] == ';') {
            ++i_;
            while (i_ < s_.size() && s_[i_] == ' ') {
                ++i_;
            }
            std::string key;
            if (!parseKey(key)) {
                return false;
            }
            if (i_ < s_.size() && s_[i_] == '=') {
                ++i_;
                Arg ignored;
                if (!parseBareItem(ignored)) {
                    return false;
                }
            }
        }
        return true;
    }

    std::string_view s_;
    std::size_t i_ = 0;
};

// ---- HTTP-date ----

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> kDays = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDays = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};

// Days since 1970-01-01 of a proleptic Gregorian date (era arithmetic, 400-year cycles).
std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned mp = m > 2 ? m - 3 : m + 9;
    const unsigned doy = (153 * mp + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civilFromDays(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2 ? 1 : 0;
}

bool isLeap(std::int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

unsigned daysInMonth(std::int64_t y, unsigned m) {
    static constexpr std::array<unsigned, 12> kLen = {31, 28, 31, 30, 31, 30,
                                                      31, 31, 30, 31, 30, 31};
    return m == 2 && isLeap(y) ? 29 : kLen[m - 1];
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) {
        return false;
    }
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) {
        char c = s[pos + i];
        if (!isDigit(c)) {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    out = v;
    return true;
}

int monthIndex(std::string_view s) {
    for (std::size_t i = 0; i < kMonths.size(); ++i) {
        if (kMonths[i] == s) {
            return static_cast<int>(i) + 1;
        }
    }
    return 0;
}

// "HH:MM:SS" at pos.
bool parseClock(std::string_view s, std::size_t pos, int& h, int& mi, int& sec) {
    return digits(s, pos, 2, h) && pos + 2 < s.size() && s[pos + 2] == ':' &&
           digits(s, pos + 3, 2, mi) && pos + 5 < s.size() && s[pos + 5] == ':' &&
           digits(s, pos + 6, 2, sec);
}

std::optional<WallTime> makeTime(std::int64_t year, int month, int day, int h, int mi, int sec) {
    if (month < 1 || month > 12 || day < 1 ||
        static_cast<unsigned>(day) > daysInMonth(year, static_cast<unsigned>(month)) || h > 23 ||
        mi > 59 || sec > 60) {
        return std::nullopt;
    }
    if (sec == 60) {
        sec = 59;  // a leap second; time points cannot express it
    }
    // Clamp to 1970..2200 so nanosecond time points and their differences cannot overflow
    // (int64 nanoseconds span +-292 years). Earlier dates are "long past" for every use here.
    if (year > 2200) {
        year = 2200;
        month = 12;
        day = 31;
    } else if (year < 1970) {
        return WallTime{};
    }
    std::int64_t days =
        daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
    std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec;
    return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::seconds(secs)));
}

std::int64_t yearOf(WallTime t) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
    std::int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    std::int64_t y = 0;
    unsigned m = 0;
    unsigned d = 0;
    civilFromDays(days, y, m, d);
    return y;
}

}  // namespace

std::optional<std::int64_t> parseDeltaSeconds(std::string_view text) {
    if (text.empty()) {
        return std::nullopt;
    }
    std::int64_t v = 0;
    for (char c : text) {
        if (!isDigit(c)) {
            return std::nullopt;
        }
        if (v < kDeltaSecondsMax) {
            v = v * 10 + (c - '0');
        }
    }
    return std::min(v, kDeltaSecondsMax);
}

void parseCacheControlInto(std::string_view s, CacheControl& out) {
    Applier applier(out);
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (isOws(s[i]) || s[i] == ',')) {
            ++i;
        }
        if (i == s.size()) {
            break;
        }
        std::size_t start = i;
        while (i < s.size() && isTchar(s[i])) {
            ++i;
        }
        std::string_view name = s.substr(start, i - start);
        if (name.empty()) {
            out.had_invalid = true;
            skipElement(s, i);
            continue;
        }
        while (i < s.size() && isOws(s[i])) {
            ++i;
        }
        Arg arg;
        bool ok = true;
        if (i < s.size() && s[i] == '=') {
            ++i;
            while (i < s.size() && isOws(s[i])) {
                ++i;
            }
            arg.present = true;
            if (i < s.size() && s[i] == '"') {
                ok = parseQuoted(s, i, arg.text);
            } else {
                std::size_t vstart = i;
                while (i < s.size() && isTchar(s[i])) {
                    ++i;
                }
                arg.text = std::string(s.substr(vstart, i - vstart));
            }
            while (ok && i < s.size() && isOws(s[i])) {
                ++i;
            }
        }
        if (!ok || (i < s.size() && s[i] != ',')) {
            // Garbage after the directive ("max-age=60 junk", "max-age=-1"): the argument is
            // unusable. Apply it as invalid so lifetimes become 0, never longer.
            out.had_invalid = true;
            arg.present = true;
            // assign(count, char): GCC 12 reports a false -Wrestrict on `= "!"`.
            arg.text.assign(1, '!');
            applier.apply(name, arg);
            skipElement(s, i);
            continue;
        }
        applier.apply(name, arg);
    }
}

CacheControl parseCacheControl(std::string_view value) {
    CacheControl cc;
    parseCacheControlInto(value, cc);
    return cc;
}

std::optional<CacheControl> parseTargetedCacheControl(std::string_view value) {
    std::vector<std::pair<std::string, Arg>> members;
    SfParser parser(value);
    if (!parser.parseDictionary(members) || members.empty()) {
        return std::nullopt;
    }
    CacheControl cc;
    Applier applier(cc);
    for (auto& [key, arg] : members) {
        if (arg.present && (arg.text == "?0" || arg.text == "?1") && !arg.integer) {
            if (arg.text == "?0") {
                continue;  // Boolean false: the directive is absent
            }
            arg = Arg{};  // Boolean true
        }
        if (arg.present && !arg.integer && !arg.list) {
            // Delta directives must be Integers; a String "60" is the wrong type.
            if (key == "max-age" || key == "s-maxage" || key == "stale-while-revalidate" ||
                key == "stale-if-error" || key == "min-fresh" || key == "max-stale") {
                arg.text.assign(1, '!');
            }
        }
        applier.apply(key, arg);
    }
    return cc;
}

namespace {
// Joins every line of a field with ", " (RFC 9110 5.3).
std::optional<std::string> combined(const http::Fields& fields, std::string_view name) {
    std::optional<std::string> out;
    for (const auto& f : fields) {
        if (!equalsIgnoreCase(f.name, name)) {
            continue;
        }
        if (!out) {
            out = f.value;
        } else {
            *out += ", ";
            *out += f.value;
        }
    }
    return out;
}
}  // namespace

ResponseDirectives responseDirectives(const http::Fields& fields) {
    ResponseDirectives rd;
    static constexpr std::array<std::pair<std::string_view, CacheControlSource>, 2> kTargeted = {{
        {"Strata-Cache-Control", CacheControlSource::StrataCacheControl},
        {"CDN-Cache-Control", CacheControlSource::CdnCacheControl},
    }};
    for (const auto& [name, source] : kTargeted) {
        if (auto value = combined(fields, name)) {
            if (auto cc = parseTargetedCacheControl(*value)) {
                rd.cc = std::move(*cc);
                rd.source = source;
                return rd;
            }
        }
    }
    if (auto value = combined(fields, "Cache-Control")) {
        parseCacheControlInto(*value, rd.cc);
        rd.source = CacheControlSource::CacheControl;
    }
    return rd;
}

CacheControl requestDirectives(const http::Fields& fields) {
    CacheControl cc;
    bool any = false;
    for (const auto& f : fields) {
        if (equalsIgnoreCase(f.name, "Cache-Control")) {
            parseCacheControlInto(f.value, cc);
            any = true;
        }
    }
    if (!any && fields.hasToken("Pragma", "no-cache")) {
        cc.no_cache = true;
    }
    return cc;
}

std::optional<WallTime> parseHttpDate(std::string_view s, WallTime now) {
    int day = 0;
    int year = 0;
    int h = 0;
    int mi = 0;
    int sec = 0;
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    if (s.size() == 29 && s[3] == ',') {
        if (std::find(kDays.begin(), kDays.end(), s.substr(0, 3)) == kDays.end() || s[4] != ' ' ||
            !digits(s, 5, 2, day) || s[7] != ' ' || s[11] != ' ' || !digits(s, 12, 4, year) ||
            s[16] != ' ' || !parseClock(s, 17, h, mi, sec) || s.substr(25) != " GMT") {
            return std::nullopt;
        }
        int month = monthIndex(s.substr(8, 3));
        return month ? makeTime(year, month, day, h, mi, sec) : std::nullopt;
    }
    // asctime: "Sun Nov  6 08:49:37 1994"
    if (s.size() == 24 && s[3] == ' ') {
        if (std::find(kDays.begin(), kDays.end(), s.substr(0, 3)) == kDays.end() || s[7] != ' ' ||
            s[10] != ' ' || s[19] != ' ' || !parseClock(s, 11, h, mi, sec) ||
            !digits(s, 20, 4, year)) {
            return std::nullopt;
        }
        if (s[8] == ' ') {
            if (!digits(s, 9, 1, day)) {
                return std::nullopt;
            }
        } else if (!digits(s, 8, 2, day)) {
            return std::nullopt;
        }
        int month = monthIndex(s.substr(4, 3));
        return month ? makeTime(year, month, day, h, mi, sec) : std::nullopt;
    }
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    std::size_t comma = s.find(',');
    if (comma == std::string_view::npos || comma > 9) {
        return std::nullopt;
    }
    if (std::find(kLongDays.begin(), kLongDays.end(), s.substr(0, comma)) == kLongDays.end()) {
        return std::nullopt;
    }
    std::string_view rest = s.substr(comma + 1);
    // " 06-Nov-94 08:49:37 GMT"
    if (rest.size() != 23 || rest[0] != ' ' || !digits(rest, 1, 2, day) || rest[3] != '-' ||
        rest[7] != '-' || !digits(rest, 8, 2, year) || rest[10] != ' ' ||
        !parseClock(rest, 11, h, mi, sec) || rest.substr(19) != " GMT") {
        return std::nullopt;
    }
    int month = monthIndex(rest.substr(4, 3));
    if (!month) {
        return std::nullopt;
    }
    // RFC 9110 5.6.7: more than 50 years in the future means the most recent past century.
    std::int64_t now_year = yearOf(now);
    std::int64_t full = now_year - now_year % 100 + year;
    if (full > now_year + 50) {
        full -= 100;
    }
    return makeTime(full, month, day, h, mi, sec);
}

std::string formatHttpDate(WallTime t) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
    std::int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    std::int64_t rem = secs - days * 86400;
    std::int64_t y = 0;
    unsigned m = 0;
    unsigned d = 0;
    civilFromDays(days, y, m, d);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    std::int64_t wd = ((days % 7) + 7 + 3) % 7;
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%s, %02u %s %04lld %02lld:%02lld:%02lld GMT",
                  kDays[static_cast<std::size_t>(wd)].data(), d, kMonths[m - 1].data(),
                  static_cast<long long>(y), static_cast<long long>(rem / 3600),
                  static_cast<long long>(rem / 60 % 60), static_cast<long long>(rem % 60));
    return buf;
}

}  // namespace strata::cache
