// Strict HTTP/1.x parsing: llhttp tokenizes, this file adds the RFC 9110/9112 checks llhttp
// leaves to its user (field and target characters, Host, Transfer-Encoding codings, limits) and
// turns llhttp's push callbacks into one head, body slices and a completion per message.
//
// Per message the parser goes through these stages:
//
//   Idle --first byte--> Method --SP--> Head --on_headers_complete--> Body --> Complete
//                    (requests only)                    |                        |
//                                                       +------(no body)---------+
//   any stage --bad input--> Error (sticky)          Complete --nextMessage()--> Idle
//
// llhttp knows a fixed list of methods; to let extension methods through, requests collect the
// method token themselves (Method stage) and hand llhttp a stand-in method ("GET ", or
// "CONNECT " which llhttp must see to parse an authority-form target). Both parsers pause
// llhttp in on_headers_complete (to validate the head at an exact byte offset) and in
// on_message_complete (so feed() can return the exact number of bytes of the message).
#include "strata/http/parser.h"

#include <algorithm>
#include <array>
#include <limits>

#include <llhttp.h>

#include "strata/common/strings.h"

#include "syntax.h"

namespace strata::http {

int httpStatus(ParseError e) {
    switch (e) {
        case ParseError::None:
            return 0;
        case ParseError::BadRequest:
            return 400;
        case ParseError::UriTooLong:
            return 414;
        case ParseError::HeadersTooLarge:
            return 431;
        case ParseError::BodyTooLarge:
            return 413;
        case ParseError::BadResponse:
            return 502;
        case ParseError::Truncated:
            return 400;
        case ParseError::UnderscoreField:
            return 400;
    }
    return 400;
}

namespace {

enum class Stage : std::uint8_t { Idle, Method, Head, Body, Complete, Error };
enum class Pause : std::uint8_t { None, Head, Message };

}  // namespace

// The state shared by both parsers; `request_` picks the few places where they differ. A plain
// struct, not a class hierarchy: llhttp's C callbacks reach it through parser_.data.
struct ParserCore {
    ParserCore(bool request, const ParserLimits& limits, RequestCallbacks* req_cb,
               ResponseCallbacks* resp_cb);
    ParserCore(const ParserCore&) = delete;
    ParserCore& operator=(const ParserCore&) = delete;

    RequestParser::FeedResult feed(std::string_view data);
    void nextMessage();
    bool inHead() const { return stage_ == Stage::Method || stage_ == Stage::Head; }
    bool inMessage() const {
        return stage_ == Stage::Method || stage_ == Stage::Head || stage_ == Stage::Body;
    }

    // Records the first error; returns HPE_USER so callbacks can `return fail(...)`.
    int fail(ParseError e, const char* detail);
    ParseError badInput() const {
        return request_ ? ParseError::BadRequest : ParseError::BadResponse;
    }
    std::size_t scanMethod(std::string_view data);
    bool finishHead();
    bool finishRequestHead();
    bool finishResponseHead();
    bool checkFraming(const Fields& fields, int version_minor, bool& chunked, bool& has_length,
                      std::uint64_t& length);
    bool checkLlhttpAgrees(BodyFraming framing, std::uint64_t length);
    // Limits on the part of the head that ends at `end` (inside the current llhttp_execute).
    int checkHeadPos(const char* end);
    // Message offset of a pointer into the current llhttp_execute input.
    std::uint64_t offsetOf(const char* p) const {
        return exec_base_ + static_cast<std::uint64_t>(p - exec_begin_);
    }
    // The message byte at `offset` when it is in the current input or just before it, else -1.
    int byteAt(std::uint64_t offset) const;
    bool bytesAre(std::uint64_t offset, std::string_view expected) const {
        // Nearly always the bytes are inside the current input: compare them in place.
        const std::uint64_t at = offset - exec_base_;
        if (offset >= exec_base_ && at <= exec_len_ && exec_len_ - at >= expected.size()) {
            for (std::size_t i = 0; i < expected.size(); ++i) {
                if (exec_begin_[at + i] != expected[i]) {
                    return false;
                }
            }
            return true;
        }
        return bytesAreAcrossInputs(offset, expected);
    }
    bool bytesAreAcrossInputs(std::uint64_t offset, std::string_view expected) const;
    // Keeps the last bytes consumed so look-backs work across feed boundaries.
    void remember(const char* p, std::size_t n);
    Fields& fields() { return request_ ? req_head_.fields : resp_head_.fields; }

    // llhttp callbacks
    static int onMessageBegin(llhttp_t* p);
    static int onUrl(llhttp_t* p, const char* at, std::size_t n);
    static int onUrlComplete(llhttp_t* p);
    static int onStatus(llhttp_t* p, const char* at, std::size_t n);
    static int onVersion(llhttp_t* p, const char* at, std::size_t n);
    static int onVersionComplete(llhttp_t* p);
    static int onStatusComplete(llhttp_t* p);
    static int onHeaderField(llhttp_t* p, const char* at, std::size_t n);
    static int onHeaderFieldComplete(llhttp_t* p);
    static int onHeaderValue(llhttp_t* p, const char* at, std::size_t n);
    static int onHeaderValueComplete(llhttp_t* p);
    static int onHeadersComplete(llhttp_t* p);
    static int onBody(llhttp_t* p, const char* at, std::size_t n);
    static int onChunkHeader(llhttp_t* p);
    static int onChunkExtension(llhttp_t* p, const char* at, std::size_t n);
    static int onMessageComplete(llhttp_t* p);
    static const llhttp_settings_t& settings();

    llhttp_t parser_;
    const bool request_;
    const ParserLimits limits_;
    RequestCallbacks* const req_cb_;  // owner's callbacks (request parser), outlive us
    ResponseCallbacks* resp_cb_;      // owner's callbacks (response parser), outlive each message

    Stage stage_ = Stage::Idle;
    Pause pause_ = Pause::None;
    ParseError error_ = ParseError::None;
    std::string error_detail_;

    // Where the current llhttp_execute() input starts, in the caller's buffer and in message
    // bytes: callbacks turn their pointers into exact message offsets with these.
    const char* exec_begin_ = nullptr;
    std::size_t exec_len_ = 0;
    std::uint64_t exec_base_ = 0;
    // The message bytes right before exec_base_ (llhttp accepts a few things, such as a bare LF
    // ending the head, that are only visible by looking back from a callback's position).
    std::array<char, 8> tail_{};
    std::size_t tail_len_ = 0;
    std::uint64_t target_start_ = 0;  // offset right after the method's SP
    std::uint64_t url_end_ = 0;       // offset right after the request-target so far
    std::uint64_t value_end_ = 0;     // offset right after the current field value so far
    std::uint64_t msg_bytes_ = 0;     // bytes of the current message consumed so far

    bool pending_cr_ = false;   // Method stage: saw CR of an empty line before the request
    bool line_done_ = false;    // the start line is complete
    bool head_done_ = false;    // the head was delivered; fields now are trailers
    bool in_name_ = false;      // a field name is being accumulated
    bool expect_head_ = false;  // response parser: the request was HEAD
    bool url_seen_ = false;
    bool method_done_ = false;  // the method's SP was read
    bool url_done_ = false;     // the request-target ended with SP
    bool version_seen_ = false;
    bool version_ok_ = false;     // HTTP/1.0 or HTTP/1.1 with a well-formed start line
    bool value_seen_ = false;     // the current field has a value span already
    std::size_t name_bytes_ = 0;  // length of the current field name so far
    std::uint32_t field_count_ = 0;
    std::uint64_t trailer_bytes_ = 0;
    std::uint64_t body_bytes_ = 0;
    BodyFraming framing_ = BodyFraming::None;

    RequestHead req_head_;
    ResponseHead resp_head_;
};

ParserCore::ParserCore(bool request, const ParserLimits& limits, RequestCallbacks* req_cb,
                       ResponseCallbacks* resp_cb)
    : request_(request), limits_(limits), req_cb_(req_cb), resp_cb_(resp_cb) {
    llhttp_init(&parser_, request ? HTTP_REQUEST : HTTP_RESPONSE, &settings());
    parser_.data = this;
}

const llhttp_settings_t& ParserCore::settings() {
    static const llhttp_settings_t s = [] {
        llhttp_settings_t st;
        llhttp_settings_init(&st);
        st.on_message_begin = &onMessageBegin;
        st.on_url = &onUrl;
        st.on_url_complete = &onUrlComplete;
        st.on_status = &onStatus;
        st.on_version = &onVersion;
        st.on_version_complete = &onVersionComplete;
        st.on_status_complete = &onStatusComplete;
        st.on_header_field = &onHeaderField;
        st.on_header_field_complete = &onHeaderFieldComplete;
        st.on_header_value = &onHeaderValue;
        st.on_header_value_complete = &onHeaderValueComplete;
        st.on_headers_complete = &onHeadersComplete;
        st.on_body = &onBody;
        st.on_chunk_header = &onChunkHeader;
        st.on_chunk_extension_name = &onChunkExtension;
        st.on_chunk_extension_value = &onChunkExtension;
        st.on_message_complete = &onMessageComplete;
        return st;
    }();
    return s;
}

int ParserCore::fail(ParseError e, const char* detail) {
    if (error_ == ParseError::None) {
        error_ = e;
        error_detail_.assign(detail);
    }
    return HPE_USER;
}

void ParserCore::nextMessage() {
    if (stage_ == Stage::Error) {
        return;  // sticky: the connection must be closed
    }
    // A fresh llhttp state: also drops llhttp's own "no message after Connection: close" rule,
    // which is the owner's decision, not the parser's.
    llhttp_reset(&parser_);
    stage_ = Stage::Idle;
    pause_ = Pause::None;
    msg_bytes_ = 0;
    pending_cr_ = false;
    line_done_ = false;
    head_done_ = false;
    in_name_ = false;
    url_seen_ = false;
    method_done_ = false;
    url_done_ = false;
    version_seen_ = false;
    version_ok_ = false;
    value_seen_ = false;
    tail_len_ = 0;
    field_count_ = 0;
    trailer_bytes_ = 0;
    body_bytes_ = 0;
    framing_ = BodyFraming::None;
    // The heads were moved to the owner; clear() keeps whatever capacity is left.
    req_head_.method.clear();
    req_head_.target.clear();
    req_head_.fields.clear();
    resp_head_.reason.clear();
    resp_head_.fields.clear();
}

// Collects the method token of a request (and skips empty lines before it, RFC 9112 2.2).
// Returns how many bytes of `data` were taken; stage_ becomes Head once the SP was seen.
std::size_t ParserCore::scanMethod(std::string_view data) {
    std::size_t i = 0;
    bool got_sp = false;
    for (; i < data.size(); ++i) {
        char c = data[i];
        if (pending_cr_) {
            if (c != '\n') {
                fail(ParseError::BadRequest, "bare CR before request line");
                return i;
            }
            pending_cr_ = false;
            continue;
        }
        if (c == ' ') {
            if (req_head_.method.empty()) {
                fail(ParseError::BadRequest, "empty method");
                return i;
            }
            ++i;
            got_sp = true;
            break;
        }
        if (req_head_.method.empty() && c == '\r') {
            pending_cr_ = true;
            continue;
        }
        if ((kByteClasses[static_cast<unsigned char>(c)] & kTchar) == 0) {
            fail(ParseError::BadRequest, "invalid method");
            return i;
        }
        if (req_head_.method.size() == kMaxMethodLength) {
            fail(ParseError::BadRequest, "method too long");
            return i;
        }
        req_head_.method.push_back(c);
    }
    remember(data.data(), i);
    msg_bytes_ += i;
    if (got_sp) {
        method_done_ = true;
        target_start_ = msg_bytes_;
        // llhttp only needs to see CONNECT as itself (authority-form target, no body); any
        // other method, known to llhttp or not, parses the same as GET in a request.
        static constexpr std::string_view kConnect = "CONNECT ";
        static constexpr std::string_view kGet = "GET ";
        std::string_view stand_in = req_head_.method == "CONNECT" ? kConnect : kGet;
        exec_begin_ = stand_in.data();
        exec_len_ = stand_in.size();
        exec_base_ = msg_bytes_;  // nothing position-dependent fires on the stand-in
        if (llhttp_execute(&parser_, stand_in.data(), stand_in.size()) != HPE_OK) {
            fail(ParseError::BadRequest, "method rejected");
            return i;
        }
        stage_ = Stage::Head;
    }
    if (msg_bytes_ > limits_.max_request_line_bytes) {
        fail(ParseError::UriTooLong, "request line too long");
    }
    return i;
}

RequestParser::FeedResult ParserCore::feed(std::string_view data) {
    if (stage_ == Stage::Complete) {
        return {ParseStatus::Complete, 0};
    }
    if (stage_ == Stage::Error) {
        return {ParseStatus::Error, 0};
    }
    if (data.empty()) {
        return {ParseStatus::Ok, 0};
    }
    std::size_t pos = 0;
    if (stage_ == Stage::Idle) {
        stage_ = request_ ? Stage::Method : Stage::Head;
    }
    if (stage_ == Stage::Method) {
        pos = scanMethod(data);
        if (error_ != ParseError::None) {
            stage_ = Stage::Error;
            return {ParseStatus::Error, pos};
        }
        if (stage_ == Stage::Method) {
            return {ParseStatus::Ok, pos};
        }
    }
    for (;;) {
        exec_begin_ = data.data() + pos;
        exec_base_ = msg_bytes_;
        pause_ = Pause::None;
        std::size_t len = data.size() - pos;
        exec_len_ = len;
        llhttp_errno_t err = llhttp_execute(&parser_, exec_begin_, len);
        if (err == HPE_OK) {
            remember(exec_begin_, len);
            msg_bytes_ += len;
            if (stage_ == Stage::Head) {
                // The head is still incomplete: everything taken so far belongs to it.
                if (!line_done_ && msg_bytes_ > limits_.max_request_line_bytes) {
                    fail(request_ ? ParseError::UriTooLong : ParseError::BadResponse,
                         "start line too long");
                } else if (msg_bytes_ > limits_.max_header_bytes) {
                    fail(request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse,
                         "head too large");
                }
                if (error_ != ParseError::None) {
                    stage_ = Stage::Error;
                    return {ParseStatus::Error, data.size()};
                }
            }
            return {ParseStatus::Ok, data.size()};
        }
        if (err == HPE_PAUSED && error_ == ParseError::None) {
            std::size_t n = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - exec_begin_);
            pos += n;
            msg_bytes_ += n;
            if (pause_ == Pause::Head) {
                if (!finishHead()) {
                    stage_ = Stage::Error;
                    return {ParseStatus::Error, pos};
                }
                remember(exec_begin_, n);
                llhttp_resume(&parser_);
                continue;
            }
            if (pause_ == Pause::Message) {
                // llhttp also ends a chunked body on a bare LF after the last chunk/trailers.
                if (framing_ == BodyFraming::Chunked && !bytesAre(msg_bytes_ - 4, "\r\n\r\n")) {
                    fail(badInput(), "chunked body must end with CRLF");
                    stage_ = Stage::Error;
                    return {ParseStatus::Error, pos};
                }
                stage_ = Stage::Complete;
                if (request_) {
                    req_cb_->onRequestComplete();
                } else {
                    resp_cb_->onResponseComplete();
                }
                return {ParseStatus::Complete, pos};
            }
        }
        if (error_ == ParseError::None) {
            // llhttp's own verdict. Its reason strings are static.
            const char* reason = llhttp_get_error_reason(&parser_);
            fail(badInput(), reason != nullptr ? reason : llhttp_errno_name(err));
        }
        stage_ = Stage::Error;
        return {ParseStatus::Error, pos};
    }
}

void ParserCore::remember(const char* p, std::size_t n) {
    if (n >= tail_.size()) {
        std::copy(p + n - tail_.size(), p + n, tail_.begin());
        tail_len_ = tail_.size();
        return;
    }
    std::size_t keep = std::min(tail_len_, tail_.size() - n);
    std::copy(tail_.begin() + static_cast<std::ptrdiff_t>(tail_len_ - keep),
              tail_.begin() + static_cast<std::ptrdiff_t>(tail_len_), tail_.begin());
    std::copy(p, p + n, tail_.begin() + static_cast<std::ptrdiff_t>(keep));
    tail_len_ = keep + n;
}

int ParserCore::byteAt(std::uint64_t offset) const {
    if (offset >= exec_base_) {
        if (offset - exec_base_ < exec_len_) {
            return static_cast<unsigned char>(exec_begin_[offset - exec_base_]);
        }
        return -1;
    }
    std::uint64_t back = exec_base_ - offset;  // 1 = the last byte before this input
    if (back > tail_len_) {
        return -1;
    }
    return static_cast<unsigned char>(tail_[tail_len_ - back]);
}

bool ParserCore::bytesAreAcrossInputs(std::uint64_t offset, std::string_view expected) const {
    if (offset > std::numeric_limits<std::uint64_t>::max() / 2) {
        return false;  // underflow: the message is shorter than `expected`
    }
    for (std::size_t i = 0; i < expected.size(); ++i) {
        if (byteAt(offset + i) != static_cast<unsigned char>(expected[i])) {
            return false;
        }
    }
    return true;
}

int ParserCore::checkHeadPos(const char* end) {
    std::uint64_t at = offsetOf(end);
    if (!line_done_ && at > limits_.max_request_line_bytes) {
        return fail(request_ ? ParseError::UriTooLong : ParseError::BadResponse,
                    "start line too long");
    }
    if (at > limits_.max_header_bytes) {
        return fail(request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse,
                    "head too large");
    }
    return 0;
}

namespace {

// Fields a Connection list may never make hop-by-hop: framing, routing, and what the cache
// keys and decides on. Removing one of them on the way while keeping the message's meaning
// would make strata and the next hop disagree about the message.
bool namesReliedOnField(std::string_view connection_list) {
    static constexpr std::string_view kReliedOn[] = {"Content-Length",
                                                     "Transfer-Encoding",
                                                     "Host",
                                                     "Authorization",
                                                     "Cookie",
                                                     "Set-Cookie",
                                                     "Cache-Control",
                                                     "Pragma",
                                                     "Vary",
                                                     "Expires",
                                                     "Range",
                                                     "Content-Range",
                                                     "ETag",
                                                     "Last-Modified",
                                                     "Date",
                                                     "Age",
                                                     "Content-Encoding",
                                                     "Content-Type",
                                                     "Surrogate-Key",
                                                     "CDN-Cache-Control",
                                                     "Strata-Cache-Control"};
    bool named = false;
    forEachListElement(connection_list, [&](std::string_view element) {
        for (std::string_view relied : kReliedOn) {
            named = named || equalsIgnoreCase(element, relied);
        }
    });
    return named;
}

}  // namespace

bool ParserCore::checkFraming(const Fields& fields, int version_minor, bool& chunked,
                              bool& has_length, std::uint64_t& length) {
    const std::string* cl = nullptr;
    const std::string* te = nullptr;
    std::size_t cl_count = 0;
    std::size_t te_count = 0;
    for (const auto& f : fields) {
        if (equalsIgnoreCase(f.name, "Content-Length")) {
            cl = &f.value;
            ++cl_count;
        } else if (equalsIgnoreCase(f.name, "Transfer-Encoding")) {
            te = &f.value;
            ++te_count;
        } else if (equalsIgnoreCase(f.name, "Connection") && namesReliedOnField(f.value)) {
            // RFC 9110 7.6.1 lets a recipient refuse this. Honouring it would forward the
            // body without its framing (request smuggling) or drop what the cache decided on.
            fail(badInput(), "Connection names an end-to-end field strata relies on");
            return false;
        }
    }
    chunked = false;
    has_length = false;
    length = 0;
    if (cl_count > 1) {
        fail(badInput(), "several Content-Length fields");
        return false;
    }
    if (te_count > 0) {
        // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        if (version_minor == 0) {
            fail(badInput(), "Transfer-Encoding in HTTP/1.0");
            return false;
        }
        // RFC 9112 6.3: with both, a recipient MUST treat the framing as ambiguous (we reject).
        if (cl_count > 0) {
            fail(badInput(), "both Content-Length and Transfer-Encoding");
            return false;
        }
        // The only coding this proxy decodes is chunked, alone: anything else could leave the
        // two ends disagreeing about where the body stops.
        if (te_count > 1 || !equalsIgnoreCase(*te, "chunked")) {
            fail(badInput(), "unsupported Transfer-Encoding");
            return false;
        }
        chunked = true;
    }
    if (cl != nullptr) {
        auto v = parseDecimal(*cl);
        if (!v) {
            fail(badInput(), "invalid Content-Length");
            return false;
        }
        has_length = true;
        length = *v;
    }
    return true;
}

// Belt and braces against request smuggling: our framing and llhttp's must match exactly,
// since llhttp is what actually splits the byte stream.
bool ParserCore::checkLlhttpAgrees(BodyFraming framing, std::uint64_t length) {
    bool ll_chunked = (parser_.flags & F_CHUNKED) != 0;
    bool ll_length = (parser_.flags & F_CONTENT_LENGTH) != 0;
    bool ok = true;
    switch (framing) {
        case BodyFraming::Chunked:
            ok = ll_chunked && !ll_length;
            break;
        case BodyFraming::Length:
            ok = !ll_chunked && ll_length && parser_.content_length == length;
            break;
        case BodyFraming::None:
        case BodyFraming::UntilClose:
            ok = !ll_chunked && !ll_length;
            break;
    }
    if (!ok) {
        fail(badInput(), "framing disagreement");
    }
    return ok;
}

bool ParserCore::finishHead() {
    // llhttp paused right after the head's final LF, so msg_bytes_ is the exact head size.
    if (msg_bytes_ > limits_.max_header_bytes) {
        fail(request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse, "head too large");
        return false;
    }
    // llhttp takes a bare LF as the empty line ending the head (RFC 9112 2.2 forbids it here).
    if (!bytesAre(msg_bytes_ - 4, "\r\n\r\n")) {
        fail(badInput(), "head must end with CRLF CRLF");
        return false;
    }
    // llhttp treats "GET /" without a version as HTTP/0.9.
    if (!version_ok_) {
        fail(badInput(), "missing HTTP version");
        return false;
    }
    if (!(request_ ? finishRequestHead() : finishResponseHead())) {
        return false;
    }
    head_done_ = true;
    field_count_ = 0;  // from here on, fields are trailers with their own budget
    stage_ = Stage::Body;
    if (request_) {
        req_cb_->onRequestHead(std::move(req_head_));
    } else {
        resp_cb_->onResponseHead(std::move(resp_head_));
    }
    return true;
}

bool ParserCore::finishRequestHead() {
    RequestHead& h = req_head_;
    h.version_minor = parser_.http_minor;
    std::string_view target = h.target;
    std::string_view authority;  // from an absolute-form or authority-form target
    bool is_connect = h.method == "CONNECT";
    if (is_connect) {
        // RFC 9112 3.2.3: authority-form, and only for CONNECT.
        if (!isValidAuthority(target) || target.find(':') == std::string_view::npos ||
            target.back() == ']') {
            fail(ParseError::BadRequest, "invalid CONNECT target");
            return false;
        }
        authority = target;
        h.path.clear();
        h.query.clear();
    } else if (!target.empty() && target.front() == '/') {
        splitPathQuery(target, h);
    } else if (target == "*") {
        // RFC 9112 3.2.4: asterisk-form is only for a server-wide OPTIONS.
        if (h.method != "OPTIONS") {
            fail(ParseError::BadRequest, "asterisk-form target without OPTIONS");
            return false;
        }
        // assign(count, char): GCC 12 reports a false -Wrestrict on assign(const char*).
        h.path.assign(1, '*');
        h.query.clear();
    } else {
        // RFC 9112 3.2.2 absolute-form; this is an origin-facing proxy, so http(s) only.
        auto sep = target.find("://");
        std::string_view scheme = sep == std::string_view::npos ? target : target.substr(0, sep);
        if (sep == std::string_view::npos ||
            !(equalsIgnoreCase(scheme, "http") || equalsIgnoreCase(scheme, "https"))) {
            fail(ParseError::BadRequest, "invalid request target");
            return false;
        }
        std::string_view rest = target.substr(sep + 3);
        auto end = rest.find_first_of("/?");
        authority = rest.substr(0, end);
        // userinfo is deprecated (RFC 9110 4.2.4) and has no business in a request line.
        if (!isValidAuthority(authority) || authority.find('@') != std::string_view::npos) {
            fail(ParseError::BadRequest, "invalid authority in request target");
            return false;
        }
        std::string_view pq = end == std::string_view::npos ? std::string_view() : rest.substr(end);
        if (pq.empty() || pq.front() == '?') {
            h.path.assign(1, '/');
            h.query.assign(pq.empty() ? pq : pq.substr(1));
        } else {
            splitPathQuery(pq, h);
        }
    }

    const UnderscoreResult underscores = applyUnderscorePolicy(h.fields, limits_.underscores);
    if (underscores.refused != nullptr) {
        fail(ParseError::UnderscoreField, underscores.refused);
        return false;
    }
    h.underscore_fields_dropped = underscores.dropped;
    // RFC 9112 3.2: exactly one valid Host in HTTP/1.1; at most one in HTTP/1.0.
    const std::string* host = nullptr;
    std::size_t host_count = 0;
    for (const auto& f : h.fields) {
        if (equalsIgnoreCase(f.name, "Host")) {
            host = &f.value;
            ++host_count;
        }
    }
    if (host_count > 1) {
        fail(ParseError::BadRequest, "several Host fields");
        return false;
    }
    if (host_count == 0 && h.version_minor == 1) {
        fail(ParseError::BadRequest, "missing Host");
        return false;
    }
    if (host != nullptr && !isValidAuthority(*host)) {
        fail(ParseError::BadRequest, "invalid Host");
        return false;
    }
    // The target's authority wins over Host (RFC 9112 3.2.2).
    std::string_view host_src = !authority.empty() ? authority
                                : host != nullptr  ? std::string_view(*host)
                                                   : std::string_view();
    setHost(host_src, h);

    bool chunked = false;
    bool has_length = false;
    std::uint64_t length = 0;
    if (!checkFraming(h.fields, h.version_minor, chunked, has_length, length)) {
        return false;
    }
    // RFC 9110 9.3.6: CONNECT has no content; llhttp would not read one either.
    if (is_connect && (chunked || has_length)) {
        fail(ParseError::BadRequest, "CONNECT with a body");
        return false;
    }
    h.framing = chunked      ? BodyFraming::Chunked
                : has_length ? BodyFraming::Length
                             : BodyFraming::None;
    h.content_length = length;
    if (has_length && length > limits_.max_body_bytes) {
        fail(ParseError::BodyTooLarge, "declared body too large");
        return false;
    }
    if (!checkLlhttpAgrees(h.framing, length)) {
        return false;
    }
    framing_ = h.framing;
    if (h.version_minor == 1) {
        h.keep_alive = !h.fields.hasToken("Connection", "close");
    } else {
        h.keep_alive = h.fields.hasToken("Connection", "keep-alive") &&
                       !h.fields.hasToken("Connection", "close");
    }
    // RFC 9110 10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
    const std::string* expect = h.fields.get("Expect");
    h.expect_continue =
        h.version_minor == 1 && expect != nullptr && equalsIgnoreCase(*expect, "100-continue");
    return true;
}

bool ParserCore::finishResponseHead() {
    ResponseHead& h = resp_head_;
    h.version_minor = parser_.http_minor;
    h.status = parser_.status_code;
    if (h.status < 100 || h.status > 599) {
        fail(ParseError::BadResponse, "invalid status code");
        return false;
    }
    bool chunked = false;
    bool has_length = false;
    std::uint64_t length = 0;
    if (!checkFraming(h.fields, h.version_minor, chunked, has_length, length)) {
        return false;
    }
    bool no_body = h.status < 200 || h.status == 204 || h.status == 304 || expect_head_;
    if (no_body) {
        h.framing = BodyFraming::None;
        h.content_length = length;  // what a HEAD/304 announces; no body follows
        // Same as returning 1 from on_headers_complete: llhttp skips any body.
        parser_.flags |= F_SKIPBODY;
    } else {
        h.framing = chunked      ? BodyFraming::Chunked
                    : has_length ? BodyFraming::Length
                                 : BodyFraming::UntilClose;
        h.content_length = length;
        if (!checkLlhttpAgrees(h.framing, length)) {
            return false;
        }
    }
    framing_ = h.framing;
    if (h.framing == BodyFraming::UntilClose || h.fields.hasToken("Connection", "close")) {
        h.keep_alive = false;
    } else if (h.version_minor == 0) {
        h.keep_alive = h.fields.hasToken("Connection", "keep-alive");
    } else {
        h.keep_alive = true;
    }
    return true;
}

// --- llhttp callbacks -------------------------------------------------------------------------

namespace {
inline ParserCore& core(llhttp_t* p) {
    return *static_cast<ParserCore*>(p->data);
}
}  // namespace

int ParserCore::onMessageBegin(llhttp_t*) {
    return 0;
}

int ParserCore::onUrl(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    if (!allOf(at, n, kTargetByte)) {
        return c.fail(ParseError::BadRequest, "invalid character in request target");
    }
    // llhttp skips any number of spaces before the target; RFC 9112 3 allows exactly one.
    if (!c.url_seen_ && c.offsetOf(at) != c.target_start_) {
        return c.fail(ParseError::BadRequest, "extra whitespace before request target");
    }
    c.url_seen_ = true;
    c.url_end_ = c.offsetOf(at + n);
    c.req_head_.target.append(at, n);
    return c.checkHeadPos(at + n);
}

int ParserCore::onUrlComplete(llhttp_t* p) {
    ParserCore& c = core(p);
    // llhttp reads "GET /\r\n" as HTTP/0.9. Reject it here, where the byte after the target is
    // in the current input, rather than later: the start-line limit check needs a done line.
    if (c.byteAt(c.url_end_) != ' ') {
        return c.fail(ParseError::BadRequest, "missing HTTP version");
    }
    c.url_done_ = true;
    return 0;
}

int ParserCore::onStatus(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    if (!allOf(at, n, kFieldByte)) {
        return c.fail(ParseError::BadResponse, "invalid character in reason phrase");
    }
    c.resp_head_.reason.append(at, n);
    return c.checkHeadPos(at + n);
}

int ParserCore::onVersion(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    if (!c.version_seen_) {
        c.version_seen_ = true;
        // Exactly "SP HTTP/" after the target (llhttp also takes several spaces and "RTSP/"),
        // and a status line that starts the response (llhttp skips empty lines before it).
        std::uint64_t start = c.offsetOf(at);
        bool ok = c.request_
                      ? c.url_seen_ && start == c.url_end_ + 6 && c.bytesAre(c.url_end_, " HTTP/")
                      : start == 5;
        if (!ok) {
            return c.fail(c.badInput(), "malformed start line");
        }
    }
    return c.checkHeadPos(at + n);
}

int ParserCore::onVersionComplete(llhttp_t* p) {
    ParserCore& c = core(p);
    if (p->http_major != 1 || p->http_minor > 1) {
        return c.fail(c.badInput(), "unsupported HTTP version");
    }
    c.version_ok_ = true;
    if (c.request_) {
        c.line_done_ = true;
    }
    return 0;
}

int ParserCore::onStatusComplete(llhttp_t* p) {
    core(p).line_done_ = true;
    return 0;
}

int ParserCore::onHeaderField(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    c.line_done_ = true;  // a response without reason phrase has no on_status_complete
    if (!allOf(at, n, kTchar)) {
        return c.fail(c.badInput(), "invalid character in field name");
    }
    if (!c.in_name_) {
        // llhttp accepts a bare LF ending the start line; field lines it checks itself.
        std::uint64_t start = c.offsetOf(at);
        if (start < 2 || !c.bytesAre(start - 2, "\r\n")) {
            return c.fail(c.badInput(), "line must end with CRLF");
        }
        c.in_name_ = true;
        c.name_bytes_ = 0;
        c.value_seen_ = false;
        if (!c.head_done_) {
            auto& items = c.fields().items();
            if (items.capacity() == 0) {
                items.reserve(16);
            }
            items.emplace_back();
        }
    }
    c.name_bytes_ += n;
    if (c.head_done_) {
        c.trailer_bytes_ += n;
        if (c.trailer_bytes_ > c.limits_.max_header_bytes) {
            return c.fail(c.request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse,
                          "trailers too large");
        }
        return 0;
    }
    c.fields().items().back().name.append(at, n);
    return c.checkHeadPos(at + n);
}

int ParserCore::onHeaderFieldComplete(llhttp_t* p) {
    ParserCore& c = core(p);
    // llhttp reports ": v" as a zero-length name span, so count the bytes.
    if (!c.in_name_ || c.name_bytes_ == 0) {
        return c.fail(c.badInput(), "empty field name");
    }
    c.in_name_ = false;
    if (++c.field_count_ > c.limits_.max_headers) {
        return c.fail(c.request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse,
                      "too many fields");
    }
    return 0;
}

int ParserCore::onHeaderValue(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    if (!allOf(at, n, kFieldByte)) {
        return c.fail(c.badInput(), "invalid character in field value");
    }
    // llhttp joins obs-fold continuation lines into the value as a second, discontiguous span
    // (RFC 9112 5.2: a server MUST reject them or replace them; we reject).
    std::uint64_t start = c.offsetOf(at);
    if (c.value_seen_ && start != c.value_end_) {
        return c.fail(c.badInput(), "obs-fold in field value");
    }
    c.value_seen_ = true;
    c.value_end_ = c.offsetOf(at + n);
    if (c.head_done_) {
        c.trailer_bytes_ += n;
        if (c.trailer_bytes_ > c.limits_.max_header_bytes) {
            return c.fail(c.request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse,
                          "trailers too large");
        }
        return 0;
    }
    auto& items = c.fields().items();
    if (items.empty()) {
        return c.fail(c.badInput(), "field value without a name");
    }
    items.back().value.append(at, n);
    return c.checkHeadPos(at + n);
}

int ParserCore::onHeaderValueComplete(llhttp_t* p) {
    ParserCore& c = core(p);
    if (c.head_done_ || c.fields().empty()) {
        return 0;
    }
    std::string& v = c.fields().items().back().value;
    std::string_view t = trimOws(v);
    if (t.size() != v.size()) {
        std::size_t lead = static_cast<std::size_t>(t.data() - v.data());
        std::size_t len = t.size();
        v.erase(0, lead);
        v.resize(len);
    }
    return 0;
}

int ParserCore::onHeadersComplete(llhttp_t* p) {
    ParserCore& c = core(p);
    c.line_done_ = true;
    c.pause_ = Pause::Head;
    return HPE_PAUSED;
}

int ParserCore::onBody(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    c.body_bytes_ += n;
    if (c.request_) {
        c.req_cb_->onRequestBody(std::string_view(at, n));
    } else {
        c.resp_cb_->onResponseBody(std::string_view(at, n));
    }
    return 0;
}

int ParserCore::onChunkHeader(llhttp_t* p) {
    ParserCore& c = core(p);
    // Refuse an oversized chunk before any of it is delivered.
    if (c.request_ && p->content_length > c.limits_.max_body_bytes - c.body_bytes_) {
        return c.fail(ParseError::BodyTooLarge, "chunked body too large");
    }
    return 0;
}

int ParserCore::onChunkExtension(llhttp_t* p, const char* at, std::size_t n) {
    ParserCore& c = core(p);
    // Extensions are ignored, but bound them: they would otherwise be an unlimited sink.
    c.trailer_bytes_ += n;
    if (c.trailer_bytes_ > c.limits_.max_header_bytes) {
        return c.fail(c.request_ ? ParseError::HeadersTooLarge : ParseError::BadResponse,
                      "chunk extensions too large");
    }
    if (!allOf(at, n, kFieldByte)) {
        return c.fail(c.badInput(), "invalid chunk extension");
    }
    return 0;
}

int ParserCore::onMessageComplete(llhttp_t* p) {
    core(p).pause_ = Pause::Message;
    return HPE_PAUSED;
}

// --- public classes ---------------------------------------------------------------------------

struct RequestParser::Impl : ParserCore {
    Impl(RequestCallbacks& cb, const ParserLimits& limits)
        : ParserCore(/*request=*/true, limits, &cb, nullptr) {}
};

// The parser state (about 600 bytes) exists only while a message is being read: an idle
// keep-alive connection holds none, which is most of what 10,000 idle clients would cost.
RequestParser::RequestParser(RequestCallbacks& callbacks, const ParserLimits& limits)
    : callbacks_(callbacks), limits_(limits) {}
RequestParser::~RequestParser() = default;
RequestParser::FeedResult RequestParser::feed(std::string_view data) {
    if (!impl_) {
        impl_ = std::make_unique<Impl>(callbacks_, limits_);
    }
    return impl_->feed(data);
}
void RequestParser::nextMessage() {
    if (impl_ && impl_->stage_ != Stage::Error) {
        impl_.reset();  // an error is sticky: the connection must be closed
    }
}
bool RequestParser::inHead() const {
    return impl_ && impl_->inHead();
}
bool RequestParser::inMessage() const {
    return impl_ && impl_->inMessage();
}
ParseError RequestParser::error() const {
    return impl_ ? impl_->error_ : ParseError::None;
}
const std::string& RequestParser::errorDetail() const {
    static const std::string kNone;
    return impl_ ? impl_->error_detail_ : kNone;
}
RequestParser::StartLine RequestParser::startLineSoFar() const {
    if (!impl_) {
        return {};
    }
    const ParserCore& c = *impl_;
    StartLine out;
    if (c.head_done_) {
        return out;  // the head, strings included, went to onRequestHead()
    }
    if (c.method_done_) {
        out.method = c.req_head_.method;
    }
    if (c.url_done_) {
        out.target = c.req_head_.target;
    }
    if (c.version_ok_) {
        out.version_minor = c.parser_.http_minor;
    }
    return out;
}

struct ResponseParser::Impl : ParserCore {
    Impl(ResponseCallbacks& cb, const ParserLimits& limits)
        : ParserCore(/*request=*/false, limits, nullptr, &cb) {}
};

ResponseParser::ResponseParser(ResponseCallbacks& callbacks, const ParserLimits& limits)
    : impl_(std::make_unique<Impl>(callbacks, limits)) {}
ResponseParser::~ResponseParser() = default;
void ResponseParser::setCallbacks(ResponseCallbacks& callbacks) {
    impl_->resp_cb_ = &callbacks;
}
void ResponseParser::expectResponseTo(std::string_view request_method) {
    impl_->expect_head_ = request_method == "HEAD";
}
ResponseParser::FeedResult ResponseParser::feed(std::string_view data) {
    return impl_->feed(data);
}

ParseStatus ResponseParser::finish() {
    ParserCore& c = *impl_;
    switch (c.stage_) {
        case Stage::Idle:
        case Stage::Complete:
            return ParseStatus::Ok;
        case Stage::Error:
            return ParseStatus::Error;
        case Stage::Body:
            if (c.framing_ == BodyFraming::UntilClose) {
                c.stage_ = Stage::Complete;
                c.resp_cb_->onResponseComplete();
                return ParseStatus::Complete;
            }
            break;
        case Stage::Method:
        case Stage::Head:
            break;
    }
    c.fail(ParseError::Truncated, "connection closed inside a response");
    c.stage_ = Stage::Error;
    return ParseStatus::Error;
}

void ResponseParser::nextMessage() {
    impl_->nextMessage();
}
bool ResponseParser::inMessage() const {
    return impl_->inMessage();
}
ParseError ResponseParser::error() const {
    return impl_->error_;
}
const std::string& ResponseParser::errorDetail() const {
    return impl_->error_detail_;
}

}  // namespace strata::http
