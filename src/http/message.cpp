// Header field containers, hop-by-hop handling and HTTP/1.x serializers.
#include "strata/http/message.h"

#include <array>
#include <cstring>
#include <vector>

#include "strata/common/strings.h"

namespace strata::http {

void Fields::add(std::string_view name, std::string_view value) {
    items_.push_back(Field{std::string(name), std::string(value)});
}

void Fields::appendToList(std::string_view name, std::string_view value) {
    for (auto& field : items_) {
        if (equalsIgnoreCase(field.name, name)) {
            field.value += ", ";
            field.value += value;
            return;
        }
    }
    add(name, value);
}

void Fields::set(std::string_view name, std::string_view value) {
    bool replaced = false;
    std::size_t out = 0;
    for (std::size_t i = 0; i < items_.size(); ++i) {
        if (equalsIgnoreCase(items_[i].name, name)) {
            if (replaced) {
                continue;  // later duplicates go away; the first keeps its position
            }
            items_[i].value.assign(value);
            replaced = true;
        }
        if (out != i) {
            items_[out] = std::move(items_[i]);
        }
        ++out;
    }
    items_.resize(out);
    if (!replaced) {
        add(name, value);
    }
}

const std::string* Fields::get(std::string_view name) const {
    for (const auto& f : items_) {
        if (equalsIgnoreCase(f.name, name)) {
            return &f.value;
        }
    }
    return nullptr;
}

std::size_t Fields::count(std::string_view name) const {
    std::size_t n = 0;
    for (const auto& f : items_) {
        if (equalsIgnoreCase(f.name, name)) {
            ++n;
        }
    }
    return n;
}

std::size_t Fields::remove(std::string_view name) {
    std::size_t out = 0;
    for (std::size_t i = 0; i < items_.size(); ++i) {
        if (equalsIgnoreCase(items_[i].name, name)) {
            continue;
        }
        if (out != i) {
            items_[out] = std::move(items_[i]);
        }
        ++out;
    }
    std::size_t removed = items_.size() - out;
    items_.resize(out);
    return removed;
}

bool Fields::hasToken(std::string_view name, std::string_view token) const {
    for (const auto& f : items_) {
        if (!equalsIgnoreCase(f.name, name)) {
            continue;
        }
        bool found = false;
        forEachListElement(f.value, [&](std::string_view element) {
            if (equalsIgnoreCase(element, token)) {
                found = true;
            }
        });
        if (found) {
            return true;
        }
    }
    return false;
}

namespace {

// RFC 9110 7.6.1 hop-by-hop fields, plus Proxy-Connection. Checked for every forwarded field,
// so the length picks the candidates.
bool isHopByHop(std::string_view name) {
    switch (name.size()) {
        case 2:
            return equalsIgnoreCase(name, "TE");
        case 7:
            return equalsIgnoreCase(name, "Trailer") || equalsIgnoreCase(name, "Upgrade");
        case 10:
            return equalsIgnoreCase(name, "Connection") || equalsIgnoreCase(name, "Keep-Alive");
        case 16:
            return equalsIgnoreCase(name, "Proxy-Connection");
        case 17:
            return equalsIgnoreCase(name, "Transfer-Encoding");
        default:
            return false;
    }
}

// The hop-by-hop fields of one message: the fixed ones and the ones its Connection fields
// name (RFC 9110 7.6.1). Holds pointers into `fields`: decide before changing them.
class HopByHopFields {
public:
    explicit HopByHopFields(const Fields& fields) {
        for (const auto& f : fields) {
            if (equalsIgnoreCase(f.name, "Connection")) {
                connection_lists_.push_back(&f.value);  // most messages have none: no allocation
            }
        }
    }
    bool contains(std::string_view name) const {
        if (isHopByHop(name)) {
            return true;
        }
        bool named = false;
        for (const std::string* list : connection_lists_) {
            forEachListElement(*list, [&](std::string_view element) {
                named = named || equalsIgnoreCase(element, name);
            });
        }
        return named;
    }

private:
    std::vector<const std::string*> connection_lists_;
};

}  // namespace

void removeHopByHop(Fields& fields) {
    auto& items = fields.items();
    std::vector<bool> drop(items.size());
    {
        const HopByHopFields hop_by_hop(fields);
        for (std::size_t i = 0; i < items.size(); ++i) {
            drop[i] = hop_by_hop.contains(items[i].name);
        }
    }
    std::size_t out = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (drop[i]) {
            continue;
        }
        if (out != i) {
            items[out] = std::move(items[i]);
        }
        ++out;
    }
    items.resize(out);
}

void appendForwardedFields(std::string& out, const Fields& fields, const FieldEdits& edits) {
    const HopByHopFields hop_by_hop(fields);
    auto dropped = [&](std::string_view name) {
        if (hop_by_hop.contains(name)) {
            return true;
        }
        for (std::size_t i = 0; i < edits.drop_count_; ++i) {
            if (equalsIgnoreCase(name, edits.drops_[i].name)) {
                return true;
            }
        }
        return false;
    };

    // Pass 1 decides and sizes, pass 2 copies into one allocation: a head is written once
    // per proxied message, so this is worth more than the append-per-piece version.
    // The verdicts of the first fields are remembered; a longer head decides the rest again.
    constexpr std::size_t kRemembered = 64;
    bool kept_early[kRemembered];
    auto kept = [&](std::size_t index, const Field& f) {
        return index < kRemembered ? kept_early[index] : !dropped(f.name);
    };
    std::size_t list_target[FieldEdits::kCapacity];  // field index taking each list edit
    for (std::size_t i = 0; i < edits.list_count_; ++i) {
        list_target[i] = fields.size();
    }
    std::size_t total = 0;
    std::size_t index = 0;
    for (const auto& f : fields) {
        const bool keep = !dropped(f.name);
        if (index < kRemembered) {
            kept_early[index] = keep;
        }
        if (keep) {
            total += f.name.size() + f.value.size() + 4;
            for (std::size_t i = 0; i < edits.list_count_; ++i) {
                if (list_target[i] == fields.size() &&
                    equalsIgnoreCase(f.name, edits.lists_[i].name)) {
                    list_target[i] = index;
                    total += 2 + edits.lists_[i].value.size();
                }
            }
        }
        ++index;
    }
    for (std::size_t i = 0; i < edits.list_count_; ++i) {
        if (list_target[i] == fields.size()) {
            total += edits.lists_[i].name.size() + edits.lists_[i].value.size() + 4;
        }
    }
    for (std::size_t i = 0; i < edits.add_count_; ++i) {
        total += edits.adds_[i].name.size() + edits.adds_[i].value.size() + 4;
    }

    const std::size_t start = out.size();
    out.resize(start + total);
    char* p = out.data() + start;
    auto put = [&p](std::string_view piece) {
        std::memcpy(p, piece.data(), piece.size());
        p += piece.size();
    };
    auto putField = [&](std::string_view name, std::string_view value) {
        put(name);
        put(": ");
        put(value);
    };
    index = 0;
    for (const auto& f : fields) {
        if (kept(index, f)) {
            putField(f.name, f.value);
            for (std::size_t i = 0; i < edits.list_count_; ++i) {
                if (list_target[i] == index) {
                    put(", ");
                    put(edits.lists_[i].value);
                }
            }
            put("\r\n");
        }
        ++index;
    }
    for (std::size_t i = 0; i < edits.list_count_; ++i) {
        if (list_target[i] == fields.size()) {
            putField(edits.lists_[i].name, edits.lists_[i].value);
            put("\r\n");
        }
    }
    for (std::size_t i = 0; i < edits.add_count_; ++i) {
        putField(edits.adds_[i].name, edits.adds_[i].value);
        put("\r\n");
    }
}

// The same decisions as appendForwardedFields(), made in one pass: a field is visited when it
// is not hop-by-hop and not dropped; each list edit lands on the first kept field of its name,
// or becomes a field of its own after the originals; adds come last. The unit tests hold the
// two to the same output.
void forEachForwardedField(const Fields& fields, const FieldEdits& edits,
                           ForwardedFieldCallbacks& callbacks) {
    const HopByHopFields hop_by_hop(fields);
    bool list_placed[FieldEdits::kCapacity] = {};
    std::string_view appended[FieldEdits::kCapacity];
    for (const auto& f : fields) {
        if (hop_by_hop.contains(f.name)) {
            continue;
        }
        bool drop = false;
        for (std::size_t i = 0; i < edits.drop_count_ && !drop; ++i) {
            drop = equalsIgnoreCase(f.name, edits.drops_[i].name);
        }
        if (drop) {
            continue;
        }
        std::size_t count = 0;
        for (std::size_t i = 0; i < edits.list_count_; ++i) {
            if (!list_placed[i] && equalsIgnoreCase(f.name, edits.lists_[i].name)) {
                list_placed[i] = true;
                appended[count++] = edits.lists_[i].value;
            }
        }
        callbacks.onField(f.name, f.value, std::span<const std::string_view>(appended, count));
    }
    for (std::size_t i = 0; i < edits.list_count_; ++i) {
        if (!list_placed[i]) {
            callbacks.onField(edits.lists_[i].name, edits.lists_[i].value, {});
        }
    }
    for (std::size_t i = 0; i < edits.add_count_; ++i) {
        callbacks.onField(edits.adds_[i].name, edits.adds_[i].value, {});
    }
}

std::string_view reasonPhrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 101:
            return "Switching Protocols";
        case 102:
            return "Processing";
        case 103:
            return "Early Hints";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 203:
            return "Non-Authoritative Information";
        case 204:
            return "No Content";
        case 205:
            return "Reset Content";
        case 206:
            return "Partial Content";
        case 207:
            return "Multi-Status";
        case 208:
            return "Already Reported";
        case 226:
            return "IM Used";
        case 300:
            return "Multiple Choices";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 303:
            return "See Other";
        case 304:
            return "Not Modified";
        case 305:
            return "Use Proxy";
        case 307:
            return "Temporary Redirect";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 402:
            return "Payment Required";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 406:
            return "Not Acceptable";
        case 407:
            return "Proxy Authentication Required";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 410:
            return "Gone";
        case 411:
            return "Length Required";
        case 412:
            return "Precondition Failed";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Range Not Satisfiable";
        case 417:
            return "Expectation Failed";
        case 421:
            return "Misdirected Request";
        case 422:
            return "Unprocessable Content";
        case 423:
            return "Locked";
        case 424:
            return "Failed Dependency";
        case 425:
            return "Too Early";
        case 426:
            return "Upgrade Required";
        case 428:
            return "Precondition Required";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 451:
            return "Unavailable For Legal Reasons";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        case 506:
            return "Variant Also Negotiates";
        case 507:
            return "Insufficient Storage";
        case 508:
            return "Loop Detected";
        case 510:
            return "Not Extended";
        case 511:
            return "Network Authentication Required";
        default:
            return "Unknown";
    }
}

namespace {
void appendVersion(std::string& out, int version_minor) {
    out.append("HTTP/1.");
    out.push_back(version_minor == 0 ? '0' : '1');
}
}  // namespace

void appendRequestLine(std::string& out, std::string_view method, std::string_view target,
                       int version_minor) {
    out.append(method);
    out.push_back(' ');
    out.append(target);
    out.push_back(' ');
    appendVersion(out, version_minor);
    out.append("\r\n");
}

void appendStatusLine(std::string& out, int status, std::string_view reason, int version_minor) {
    appendVersion(out, version_minor);
    out.push_back(' ');
    // Status codes are three digits (RFC 9110 15); clamp anything else to 500 rather than emit
    // a line no client can parse.
    if (status < 100 || status > 999) {
        status = 500;
    }
    char digits[3] = {static_cast<char>('0' + status / 100),
                      static_cast<char>('0' + status / 10 % 10),
                      static_cast<char>('0' + status % 10)};
    out.append(digits, 3);
    out.push_back(' ');
    out.append(reason);
    out.append("\r\n");
}

void appendFields(std::string& out, const Fields& fields) {
    for (const auto& f : fields) {
        out.append(f.name);
        out.append(": ");
        out.append(f.value);
        out.append("\r\n");
    }
}

void appendChunkHeader(std::string& out, std::size_t size) {
    static constexpr char kHex[] = "0123456789abcdef";
    char buf[2 * sizeof(std::size_t)];
    std::size_t n = 0;
    do {
        buf[sizeof(buf) - 1 - n] = kHex[size & 0xf];
        size >>= 4;
        ++n;
    } while (size != 0);
    out.append(buf + sizeof(buf) - n, n);
    out.append("\r\n");
}

bool isIdempotent(std::string_view method) {
    // Method names are case-sensitive (RFC 9110 9.1): "get" is an extension method.
    return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
           method == "PUT" || method == "DELETE";
}

}  // namespace strata::http
