// strata-origin: the demo origin server used by the README quick start, the end-to-end tests and
// the benchmarks. It must never be the bottleneck of a benchmark, so it runs one event loop per
// thread (libevent bufferevents), parses with strata's own strict HTTP parser, answers small
// responses straight from the read callback and streams large bodies from a static block by
// reference (no copy) as the socket drains.
//
// Every listener is a distinct "server" with an id (its index, or "NAME-i" with --name). Tests
// count per-server requests through /__stats to check load balancing and retries.
//
// Exchange lifecycle on one connection (pipelined requests are answered strictly in order: the
// parser is not fed again until the current exchange is finished):
//
//   idle --head--> in_request --complete--> [responding: delay / stream / slowbody] --> done
//                      |  (echo streams its answer while the body arrives)               |
//                      +--/drop--> close                      keep-alive? next : close <--+
//                      +--/ws (valid handshake)--> 101 --> WebSocket echo until a close frame
//
// With --expect-proxy every connection must open with a PROXY protocol header (v1 or v2), as
// strata sends to upstreams with proxy_protocol; a connection without a valid one is closed.
// Each answer then says what the header carried: "X-Proxy-Protocol: v2 192.0.2.1:5555
// 127.0.0.1:8080" (source, destination) or "v2 local".
#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <signal.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "strata/common/strings.h"
#include "strata/http/message.h"
#include "strata/http/parser.h"
#include "strata/net/proxy_protocol.h"

namespace {

using strata::http::BodyFraming;
using strata::http::RequestHead;

// Body pattern of /bytes/N: byte i is kAlphabet[i % 64]. tests/support/origin.h knows it too.
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
bool g_expect_proxy = false;                   // --expect-proxy
constexpr std::size_t kBlockSize = 64 * 1024;  // a multiple of 64 keeps the pattern aligned
char g_block[kBlockSize];

// Output above this stops generating (or stops reading an echoed body); the write callback
// refills when the output drains under kLowWater.
constexpr std::size_t kHighWater = 512 * 1024;
constexpr std::size_t kLowWater = 128 * 1024;

// /__stats keeps at most this many distinct paths per server.
constexpr std::size_t kMaxCountedPaths = 100000;

struct Server {
    std::string id;
    std::string host;
    std::uint16_t port = 0;
    std::string port_text;
    std::mutex mu;  // guards counts: several worker threads may serve one listener
    std::map<std::string, std::uint64_t> counts;
    // Set by /__fail?status=CODE (0 clears): every other path answers CODE, for tests of an
    // origin that starts failing under a URL already cached (stale-if-error).
    std::atomic<int> fail_status{0};
};

struct Worker;

std::string urlDecode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '+') {
            out.push_back(' ');
        } else if (c == '%' && i + 2 < s.size()) {
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9')
                    return h - '0';
                if (h >= 'a' && h <= 'f')
                    return h - 'a' + 10;
                if (h >= 'A' && h <= 'F')
                    return h - 'A' + 10;
                return -1;
            };
            int hi = hex(s[i + 1]);
            int lo = hex(s[i + 2]);
            if (hi < 0 || lo < 0) {
                out.push_back(c);
                continue;
            }
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::uint64_t toNumber(std::string_view s, std::uint64_t fallback) {
    auto v = strata::parseDecimal(s);
    return v ? *v : fallback;
}

enum class Kind {
    Simple,    // body known at completion
    Bytes,     // /bytes/N generated as the socket drains
    Echo,      // /echo streams the request body back
    Upload,    // /upload hashes the body
    Delay,     // /delay/MS
    SlowBody,  // /slowbody/MS
    Events,    // /events/MS: two server-sent events MS apart, chunked
    Hang,      // /hang
    Drop,      // /drop
    Close,     // /close
    Ws,        // /ws: WebSocket handshake, then echo (RFC 6455)
};

// RFC 6455 1.3: the server proves it read the handshake by hashing the key with this GUID.
constexpr std::string_view kWebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string webSocketAccept(std::string_view key) {
    std::string text(strata::trimOws(key));
    text += kWebSocketGuid;
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
    unsigned char b64[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    const int n = EVP_EncodeBlock(b64, digest, SHA_DIGEST_LENGTH);
    return std::string(reinterpret_cast<const char*>(b64), static_cast<std::size_t>(n));
}

class Connection final : public strata::http::RequestCallbacks {
public:
    Connection(Worker& worker, Server& server, evutil_socket_t fd);
    ~Connection() override;

    void onRead();
    void onWrite();
    void onEvent(short what);

    // http::RequestCallbacks
    void onRequestHead(RequestHead&& head) override;
    void onRequestBody(std::string_view data) override;
    void onRequestComplete() override;

    Connection* prev = nullptr;  // intrusive list owned by the worker
    Connection* next = nullptr;

private:
    // Returns false when the connection was deleted (a /drop request).
    bool feedInput();
    void respond(int status, std::string_view body, std::string_view content_type = "text/plain");
    void appendHead(std::string& out, int status, std::string_view extra_fields);
    void startBytes();
    void pumpBytes();
    void finishResponse();
    void maybeFinishExchange();
    void closeNow();
    void armTimer(std::uint64_t ms);
    static void onTimer(evutil_socket_t, short, void* arg);
    void startWebSocket();
    // Echoes client frames as they arrive, unmasked, with the same opcode (a ping gets its
    // pong); payloads stream through, so frames of any size pass in bounded memory.
    void pumpWebSocket();
    evbuffer* output() { return bufferevent_get_output(bev_); }

    Worker& worker_;
    Server& server_;
    bufferevent* bev_ = nullptr;
    event* timer_ = nullptr;
    strata::http::RequestParser parser_;

    RequestHead head_;
    Kind kind_ = Kind::Simple;
    bool in_exchange_ = false;    // a request head was seen and its exchange is not finished
    bool request_done_ = false;   // onRequestComplete seen
    bool response_done_ = false;  // the whole response is queued in the output buffer
    bool close_after_ = false;    // close once the output drains
    bool keep_alive_ = true;
    bool chunked_out_ = false;     // echo / bytes?chunked=1 answer with chunked coding
    std::uint64_t remaining_ = 0;  // /bytes bytes still to generate
    std::uint64_t offset_ = 0;     // /bytes bytes generated so far
    std::uint64_t upload_bytes_ = 0;
    std::uint64_t upload_hash_ = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
    std::string extra_fields_;                           // from cc= and h= query parameters
    std::uint64_t seq_ = 0;      // this request's number among those for its path (1-based)
    bool not_modified_ = false;  // the request's validators match the h= ETag / Last-Modified
    bool in_feed_ = false;       // inside parser_.feed(): never reset or delete the parser
    bool need_next_ = false;     // the parser completed a message: nextMessage() before feeding
    bool websocket_ = false;     // after the 101: the input is frames, never HTTP again
    std::uint64_t ws_remaining_ = 0;  // payload bytes of the current frame still to echo
    std::uint64_t ws_offset_ = 0;     // payload bytes of the current frame echoed, for the mask
    unsigned char ws_mask_[4] = {};
    bool ws_closing_ = false;  // the current frame is a close: the connection ends after it
    bool awaiting_proxy_ = g_expect_proxy;  // --expect-proxy: the header has not been read yet
    std::string proxy_info_;                // what it carried, for X-Proxy-Protocol
};

struct Worker {
    event_base* base = nullptr;
    std::vector<evconnlistener*> listeners;
    Connection* conns = nullptr;
    std::thread thread;

    void add(Connection* c) {
        c->next = conns;
        if (conns != nullptr) {
            conns->prev = c;
        }
        conns = c;
    }
    void remove(Connection* c) {
        if (c->prev != nullptr) {
            c->prev->next = c->next;
        } else {
            conns = c->next;
        }
        if (c->next != nullptr) {
            c->next->prev = c->prev;
        }
    }
};

strata::http::ParserLimits originLimits() {
    strata::http::ParserLimits limits;
    limits.max_request_line_bytes = 64 * 1024;
    limits.max_header_bytes = 256 * 1024;
    limits.max_headers = 1000;
    return limits;
}

const strata::http::ParserLimits kLimits = originLimits();

Connection::Connection(Worker& worker, Server& server, evutil_socket_t fd)
    : worker_(worker), server_(server), parser_(*this, kLimits) {
    bev_ = bufferevent_socket_new(worker.base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(
        bev_, [](bufferevent*, void* arg) { static_cast<Connection*>(arg)->onRead(); },
        [](bufferevent*, void* arg) { static_cast<Connection*>(arg)->onWrite(); },
        [](bufferevent*, short what, void* arg) { static_cast<Connection*>(arg)->onEvent(what); },
        this);
    bufferevent_setwatermark(bev_, EV_WRITE, kLowWater, 0);
    // Bounded input: a stalled exchange (pipelined requests behind a /delay) or a fast uploader
    // stops the socket reads instead of growing the buffer.
    bufferevent_setwatermark(bev_, EV_READ, 0, kHighWater);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    worker_.add(this);
}

Connection::~Connection() {
    worker_.remove(this);
    if (timer_ != nullptr) {
        event_free(timer_);
    }
    bufferevent_free(bev_);
}

void Connection::closeNow() {
    delete this;
}

void Connection::onEvent(short what) {
    if (websocket_ && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) {
        closeNow();  // no close frame: the peer went away (or strata ended the tunnel)
        return;
    }
    if ((what & BEV_EVENT_ERROR) == 0 && (what & BEV_EVENT_EOF) != 0 && in_exchange_ &&
        request_done_) {
        // Half-closed after a complete request (nc, some HTTP/1.0 clients): still answer it,
        // then close once the answer is flushed.
        keep_alive_ = false;
        bufferevent_disable(bev_, EV_READ);
        return;
    }
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) != 0) {
        closeNow();
    }
}

void Connection::onRead() {
    // An echo whose output is backed up stops reading until the client drains it.
    feedInput();
}

bool Connection::feedInput() {
    evbuffer* in = bufferevent_get_input(bev_);
    if (awaiting_proxy_) {
        namespace pp = strata::net::proxy_protocol;
        const std::size_t n = std::min(evbuffer_get_length(in), pp::kMaxHeaderBytes);
        const auto* data =
            reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(n)));
        const auto result = pp::parse(std::string_view(data, n));
        if (result.status == pp::Status::NeedMore) {
            return true;
        }
        if (result.status == pp::Status::Error) {
            std::fprintf(stderr, "strata-origin: bad PROXY header: %s\n", result.error);
            closeNow();
            return false;
        }
        // Appended rather than "v" + to_string(): GCC 12's -Wrestrict misreads that at -O3.
        proxy_info_ = "v";
        proxy_info_.append(std::to_string(result.header.version)).append(" ");
        proxy_info_ += result.header.local ? std::string("local")
                                           : result.header.source.toString() + " " +
                                                 result.header.destination.toString();
        evbuffer_drain(in, result.consumed);
        awaiting_proxy_ = false;
    }
    for (;;) {
        if (websocket_) {
            pumpWebSocket();
            return true;
        }
        if (in_exchange_ && request_done_) {
            return true;  // a pipelined request waits until this exchange finishes
        }
        if (need_next_) {
            need_next_ = false;
            parser_.nextMessage();
        }
        if (evbuffer_get_length(in) == 0) {
            return true;
        }
        if (kind_ == Kind::Echo && in_exchange_ && evbuffer_get_length(output()) >= kHighWater) {
            bufferevent_disable(bev_, EV_READ);  // onWrite() resumes once the client drained
            return true;
        }
        evbuffer_iovec vec;
        if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) {
            return true;
        }
        in_feed_ = true;
        auto result =
            parser_.feed(std::string_view(static_cast<const char*>(vec.iov_base), vec.iov_len));
        in_feed_ = false;
        evbuffer_drain(in, result.consumed);
        if (kind_ == Kind::Drop && in_exchange_) {
            closeNow();
            return false;
        }
        if (result.status == strata::http::ParseStatus::Error) {
            int status = strata::http::httpStatus(parser_.error());
            keep_alive_ = false;
            close_after_ = true;
            in_exchange_ = true;
            request_done_ = true;
            extra_fields_.clear();
            std::string out;
            appendHead(out, status, "Content-Length: 0\r\n");
            bufferevent_write(bev_, out.data(), out.size());
            bufferevent_disable(bev_, EV_READ);
            return true;
        }
        if (result.status == strata::http::ParseStatus::Complete) {
            need_next_ = true;
            continue;  // returns above while the exchange is still answering
        }
        if (result.consumed < vec.iov_len) {
            return true;  // defensive: the parser wants nothing more right now; never spin
        }
    }
}

void Connection::onWrite() {
    if (websocket_ && !close_after_) {
        bufferevent_enable(bev_, EV_READ);  // the client drained: echo more
        pumpWebSocket();
        return;
    }
    if (kind_ == Kind::Bytes && in_exchange_ && !response_done_) {
        pumpBytes();
    }
    if (kind_ == Kind::Echo && in_exchange_ && !request_done_) {
        bufferevent_enable(bev_, EV_READ);
        if (!feedInput()) {
            return;
        }
    }
    if (close_after_ && evbuffer_get_length(output()) == 0) {
        closeNow();
    }
}

void Connection::onRequestHead(RequestHead&& head) {
    head_ = std::move(head);
    in_exchange_ = true;
    request_done_ = false;
    response_done_ = false;
    chunked_out_ = false;
    keep_alive_ = head_.keep_alive;
    extra_fields_.clear();
    upload_bytes_ = 0;
    upload_hash_ = 0xcbf29ce484222325ULL;
    seq_ = 0;

    const std::string& path = head_.path;
    if (path != "/__stats" && path != "/__reset") {
        std::lock_guard lock(server_.mu);
        auto it = server_.counts.find(path);
        if (it != server_.counts.end()) {
            seq_ = ++it->second;
        } else if (server_.counts.size() < kMaxCountedPaths) {
            server_.counts.emplace(path, 1);
            seq_ = 1;
        } else {
            ++server_.counts["(other)"];  // benchmarks with millions of URLs stay bounded
        }
    }

    // cc=... and h=Name:Value apply to every endpoint (cache tests shape responses this way).
    std::string_view q = head_.query;
    std::string etag;
    std::string last_modified;
    while (!q.empty()) {
        auto amp = q.find('&');
        std::string_view param = q.substr(0, amp);
        auto eq = param.find('=');
        std::string_view key = param.substr(0, eq);
        std::string value = eq == std::string_view::npos ? "" : urlDecode(param.substr(eq + 1));
        if (key == "cc") {
            extra_fields_ += "Cache-Control: " + value + "\r\n";
        } else if (key == "h") {
            auto colon = value.find(':');
            if (colon != std::string::npos) {
                std::string field_value(strata::trimOws(value.substr(colon + 1)));
                std::string_view name = std::string_view(value).substr(0, colon);
                if (strata::equalsIgnoreCase(name, "ETag")) {
                    etag = field_value;
                } else if (strata::equalsIgnoreCase(name, "Last-Modified")) {
                    last_modified = field_value;
                }
                extra_fields_ += std::string(name) + ": " + field_value + "\r\n";
            }
        }
        if (amp == std::string_view::npos) {
            break;
        }
        q.remove_prefix(amp + 1);
    }

    // A validator set with h= makes the origin answer conditionals (RFC 9110 13.1.1, 13.1.3),
    // so caches can revalidate against it: If-None-Match by weak comparison (or "*"), else
    // If-Modified-Since by exact text (caches send back the Last-Modified they stored).
    not_modified_ = false;
    if (const std::string* inm = head_.fields.get("If-None-Match"); inm != nullptr) {
        auto weak = [](std::string_view t) { return t.starts_with("W/") ? t.substr(2) : t; };
        std::string_view list = *inm;
        while (!list.empty() && !etag.empty()) {
            auto comma = list.find(',');
            std::string_view tag = strata::trimOws(list.substr(0, comma));
            if (tag == "*" || weak(tag) == weak(etag)) {
                not_modified_ = true;
            }
            if (comma == std::string_view::npos) {
                break;
            }
            list.remove_prefix(comma + 1);
        }
    } else if (const std::string* ims = head_.fields.get("If-Modified-Since"); ims != nullptr) {
        not_modified_ = !last_modified.empty() && *ims == last_modified;
    }

    if (path == "/echo") {
        kind_ = Kind::Echo;
    } else if (path == "/upload") {
        kind_ = Kind::Upload;
    } else if (path.starts_with("/bytes/")) {
        kind_ = Kind::Bytes;
    } else if (path.starts_with("/delay/")) {
        kind_ = Kind::Delay;
    } else if (path.starts_with("/slowbody/")) {
        kind_ = Kind::SlowBody;
    } else if (path.starts_with("/events/")) {
        kind_ = Kind::Events;
    } else if (path == "/hang") {
        kind_ = Kind::Hang;
    } else if (path == "/drop") {
        kind_ = Kind::Drop;
    } else if (path == "/close") {
        kind_ = Kind::Close;
    } else if (path.ends_with("/ws")) {  // a route prefix in front still reaches it
        kind_ = Kind::Ws;
    } else {
        kind_ = Kind::Simple;
    }

    if (kind_ == Kind::Drop) {
        return;  // feedInput() closes once the parser returns: never delete it mid-callback
    }

    bool has_body = head_.framing != BodyFraming::None;
    if (head_.expect_continue && has_body && head_.version_minor >= 1) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        bufferevent_write(bev_, kContinue.data(), kContinue.size());
    }

    if (kind_ == Kind::Echo) {
        std::string out;
        if (head_.framing == BodyFraming::Length) {
            appendHead(out, 200,
                       "Content-Length: " + std::to_string(head_.content_length) + "\r\n");
        } else if (head_.framing == BodyFraming::None) {
            appendHead(out, 200, "Content-Length: 0\r\n");
        } else if (head_.version_minor >= 1) {
            chunked_out_ = true;
            appendHead(out, 200, "Transfer-Encoding: chunked\r\n");
        } else {
            keep_alive_ = false;  // HTTP/1.0 cannot take chunked: delimit by close
            appendHead(out, 200, "");
        }
        bufferevent_write(bev_, out.data(), out.size());
    }
}

void Connection::onRequestBody(std::string_view data) {
    if (kind_ == Kind::Echo) {
        if (head_.isHead()) {
            return;
        }
        if (chunked_out_) {
            char line[32];
            int n = std::snprintf(line, sizeof line, "%zx\r\n", data.size());
            bufferevent_write(bev_, line, static_cast<std::size_t>(n));
            bufferevent_write(bev_, data.data(), data.size());
            bufferevent_write(bev_, "\r\n", 2);
        } else {
            bufferevent_write(bev_, data.data(), data.size());
        }
    } else if (kind_ == Kind::Upload) {
        std::uint64_t h = upload_hash_;
        for (unsigned char c : data) {
            h ^= c;
            h *= 0x100000001b3ULL;
        }
        upload_hash_ = h;
        upload_bytes_ += data.size();
    }
}

void Connection::appendHead(std::string& out, int status, std::string_view extra_fields) {
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += strata::http::reasonPhrase(status);
    out += "\r\nX-Origin: ";
    out += server_.id;
    out += "\r\nX-Origin-Port: ";
    out += server_.port_text;
    out += "\r\n";
    if (!proxy_info_.empty()) {
        out += "X-Proxy-Protocol: " + proxy_info_ + "\r\n";
    }
    if (seq_ > 0 && head_.path.starts_with("/seq")) {
        // Also on a 304: a cache must update its stored field from it (RFC 9111 4.3.4).
        out += "X-Seq: " + std::to_string(seq_) + "\r\n";
    }
    out += extra_fields;
    out += extra_fields_;
    if (!keep_alive_) {
        out += "Connection: close\r\n";
    } else if (head_.version_minor == 0) {
        out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
}

void Connection::respond(int status, std::string_view body, std::string_view content_type) {
    if (status == 200 && not_modified_ && (head_.method == "GET" || head_.isHead())) {
        std::string out;
        appendHead(out, 304, "");  // the validators and cc= fields come from extra_fields_
        bufferevent_write(bev_, out.data(), out.size());
        finishResponse();
        return;
    }
    std::string out;
    out.reserve(256 + body.size());
    std::string fields = "Content-Type: ";
    fields += content_type;
    fields += "\r\n";
    if (status >= 200 && status != 204) {
        fields += "Content-Length: ";
        fields += std::to_string(body.size());
        fields += "\r\n";
    }
    appendHead(out, status, fields);
    bool no_body = head_.isHead() || status == 204 || status == 304 || status < 200;
    if (!no_body) {
        out += body;
    }
    bufferevent_write(bev_, out.data(), out.size());
    finishResponse();
}

void Connection::onRequestComplete() {
    request_done_ = true;
    const std::string& path = head_.path;
    if (int fail = server_.fail_status.load();
        fail != 0 && kind_ != Kind::Echo && kind_ != Kind::Drop && !path.starts_with("/__")) {
        if (fail < 0) {
            kind_ = Kind::Hang;  // never answers; the connection stays until the peer goes
            return;
        }
        kind_ = Kind::Simple;
        not_modified_ = false;
        respond(fail, "failing with " + std::to_string(fail) + "\n");
        return;
    }
    if (auto pos = head_.query.find("early="); pos != std::string::npos) {
        // ?early=N: N interim answers first, a 102 then 103 Early Hints, each with a Link and
        // a field of its own that must reach neither the final answer nor a stored copy.
        std::string_view value = std::string_view(head_.query).substr(pos + 6);
        value = value.substr(0, value.find('&'));
        const std::uint64_t n = std::min<std::uint64_t>(toNumber(value, 0), 4);
        std::string out;
        for (std::uint64_t i = 0; i < n; ++i) {
            const std::string number = std::to_string(i);
            out.append(i == 0 && n > 1 ? "HTTP/1.1 102 Processing\r\n"
                                       : "HTTP/1.1 103 Early Hints\r\n");
            out.append("Link: </hint-").append(number).append(".css>; rel=preload\r\n");
            out.append("X-Interim: ").append(number).append("\r\n\r\n");
        }
        bufferevent_write(bev_, out.data(), out.size());
    }
    switch (kind_) {
        case Kind::Echo:
            if (chunked_out_) {
                bufferevent_write(bev_, strata::http::kLastChunk.data(),
                                  strata::http::kLastChunk.size());
            }
            finishResponse();
            return;
        case Kind::Upload: {
            char hex[17];
            std::snprintf(hex, sizeof hex, "%016llx",
                          static_cast<unsigned long long>(upload_hash_));
            std::string body =
                "{\"bytes\":" + std::to_string(upload_bytes_) + ",\"fnv1a64\":\"" + hex + "\"}\n";
            respond(200, body, "application/json");
            return;
        }
        case Kind::Bytes:
            startBytes();
            return;
        case Kind::Events: {
            // The first event now, the second and the end of the stream after MS: a proxy that
            // holds bytes back (buffering, a compressor never flushed) delays the first one.
            std::string out;
            appendHead(out, 200,
                       "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n");
            if (head_.isHead()) {
                bufferevent_write(bev_, out.data(), out.size());
                finishResponse();
                return;
            }
            out += "d\r\ndata: first\n\n\r\n";
            bufferevent_write(bev_, out.data(), out.size());
            armTimer(toNumber(std::string_view(path).substr(8), 0));
            return;
        }
        case Kind::Delay:
        case Kind::SlowBody: {
            auto slash = path.rfind('/');
            std::uint64_t ms = toNumber(std::string_view(path).substr(slash + 1), 0);
            if (kind_ == Kind::SlowBody) {
                // The head goes now, the body when the timer fires.
                std::string out;
                appendHead(out, 200, "Content-Type: text/plain\r\nContent-Length: 10\r\n");
                bufferevent_write(bev_, out.data(), out.size());
                if (head_.isHead()) {
                    finishResponse();
                    return;
                }
            }
            armTimer(ms);
            return;
        }
        case Kind::Hang:
            return;  // never answers; the connection stays until the peer goes away
        case Kind::Drop:
            return;
        case Kind::Close:
            keep_alive_ = false;
            respond(200, "closing\n");
            return;
        case Kind::Ws:
            startWebSocket();
            return;
        case Kind::Simple:
            break;
    }

    if (path == "/__fail") {
        int code = 0;
        auto pos = head_.query.find("status=");
        if (pos != std::string::npos) {
            std::string_view value = std::string_view(head_.query).substr(pos + 7);
            // "hang": requests are read but never answered (upstream timeouts).
            code = value == "hang" ? -1 : static_cast<int>(toNumber(value, 0));
        }
        server_.fail_status = code;
        respond(200, "fail status " + std::to_string(code) + "\n");
        return;
    }
    if (path.starts_with("/seq")) {
        // The body changes with every request, so a test can tell which fetch it was served.
        respond(200, "seq " + std::to_string(seq_) + " " + path + "\n");
        return;
    }

    if (path.starts_with("/status/")) {
        std::uint64_t code = toNumber(std::string_view(path).substr(8), 0);
        if (code < 100 || code > 999) {
            respond(400, "bad status code\n");
        } else {
            respond(static_cast<int>(code), "status " + std::to_string(code) + "\n");
        }
        return;
    }
    if (path == "/headers") {
        std::string body = head_.method + " " + head_.target + " HTTP/1." +
                           std::to_string(head_.version_minor) + "\n";
        for (const auto& f : head_.fields) {
            body += f.name;
            body += ": ";
            body += f.value;
            body += '\n';
        }
        respond(200, body);
        return;
    }
    if (path == "/__stats") {
        std::string body;
        {
            std::lock_guard lock(server_.mu);
            for (const auto& [p, n] : server_.counts) {
                body += p + " " + std::to_string(n) + "\n";
            }
        }
        respond(200, body);
        return;
    }
    if (path == "/__reset") {
        {
            std::lock_guard lock(server_.mu);
            server_.counts.clear();
        }
        respond(200, "reset\n");
        return;
    }
    if (auto at = path.find("/text/"); at != std::string::npos) {
        // .../text/N: a compressible body of N bytes (HTML-like lines; c0017-compression.cpp
        // builds the same), Content-Type text/html unless ?type= names another.
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(toNumber(std::string_view(path).substr(at + 6), 0), 64 << 20));
        std::string body;
        body.reserve(n + 64);
        for (std::size_t i = 0; body.size() < n; ++i) {
            body += "<p id=\"l" + std::to_string(i) + "\">strata compresses this line " +
                    std::to_string(i * 7919 % 1000) + "</p>\n";
        }
        body.resize(n);
        std::string type = "text/html";
        if (auto pos = head_.query.find("type="); pos != std::string::npos) {
            std::string_view rest = std::string_view(head_.query).substr(pos + 5);
            type = urlDecode(rest.substr(0, rest.find('&')));
        }
        respond(200, body, type);
        return;
    }
    if (path == "/") {
        respond(200, "hello from " + server_.id + "\n");
        return;
    }
    respond(200, "strata-origin " + server_.id + ": " + head_.method + " " + path + "\n");
}

void Connection::startWebSocket() {
    const std::string* upgrade = head_.fields.get("Upgrade");
    const std::string* key = head_.fields.get("Sec-WebSocket-Key");
    const std::string* version = head_.fields.get("Sec-WebSocket-Version");
    kind_ = Kind::Simple;
    if (head_.method != "GET" || upgrade == nullptr ||
        !strata::equalsIgnoreCase(strata::trimOws(*upgrade), "websocket") ||
        !head_.fields.hasToken("Connection", "upgrade") || key == nullptr) {
        // An origin that gets here without a handshake shows strata forwarded a broken one.
        respond(400, "not a WebSocket handshake\n");
        return;
    }
    if (version == nullptr || strata::trimOws(*version) != "13") {
        std::string out;  // RFC 6455 4.4: name the version this server speaks
        appendHead(out, 426, "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n");
        bufferevent_write(bev_, out.data(), out.size());
        finishResponse();
        return;
    }
    std::string out =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
    out += webSocketAccept(*key);
    out += "\r\nX-Origin: ";
    out += server_.id;
    out += "\r\n\r\n";
    // ?hello=TEXT: a text frame right behind the 101, in the same write, so a proxy must pass
    // on bytes that arrive with the upgrade answer.
    if (auto pos = head_.query.find("hello="); pos != std::string::npos) {
        std::string text = urlDecode(std::string_view(head_.query).substr(pos + 6));
        text = text.substr(0, std::min<std::size_t>(text.find('&'), 125));
        out += static_cast<char>(0x81);
        out += static_cast<char>(text.size());
        out += text;
    }
    bufferevent_write(bev_, out.data(), out.size());
    websocket_ = true;
    in_exchange_ = true;
    response_done_ = true;  // never finishes as an HTTP exchange: the connection ends as it is
    // The parser returns to feedInput(), which pumps frames already behind the request head.
}

void Connection::pumpWebSocket() {
    evbuffer* in = bufferevent_get_input(bev_);
    evbuffer* out = output();
    while (!close_after_) {
        if (evbuffer_get_length(out) >= kHighWater) {
            bufferevent_disable(bev_, EV_READ);  // onWrite() resumes once the client drained
            return;
        }
        if (ws_remaining_ > 0) {
            unsigned char buf[16 * 1024];
            const std::size_t want =
                static_cast<std::size_t>(std::min<std::uint64_t>(ws_remaining_, sizeof buf));
            const int n = evbuffer_remove(in, buf, want);
            if (n <= 0) {
                return;
            }
            for (int i = 0; i < n; ++i) {
                buf[i] ^= ws_mask_[(ws_offset_ + static_cast<std::uint64_t>(i)) % 4];
            }
            evbuffer_add(out, buf, static_cast<std::size_t>(n));
            ws_remaining_ -= static_cast<std::uint64_t>(n);
            ws_offset_ += static_cast<std::uint64_t>(n);
        }
        if (ws_remaining_ == 0 && ws_closing_) {
            close_after_ = true;  // our close frame is queued: done once it is flushed
            bufferevent_disable(bev_, EV_READ);
            bufferevent_trigger(bev_, EV_WRITE,
                                BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
            return;
        }
        if (ws_remaining_ > 0) {
            continue;  // more of this payload may be buffered
        }
        // A frame head: 2 bytes, then a 16- or 64-bit length, then the client's mask key.
        unsigned char h[14];
        const ev_ssize_t have = evbuffer_copyout(in, h, sizeof h);
        if (have < 2) {
            return;
        }
        const unsigned opcode = h[0] & 0x0f;
        const bool masked = (h[1] & 0x80) != 0;
        std::uint64_t len = h[1] & 0x7f;
        std::size_t head_len = 2;
        if (len == 126) {
            head_len = 4;
        } else if (len == 127) {
            head_len = 10;
        }
        if (have < static_cast<ev_ssize_t>(head_len + 4)) {
            return;
        }
        if (!masked) {
            // RFC 6455 5.1: a client frame must be masked; answer with close 1002.
            static constexpr unsigned char kProtocolError[] = {0x88, 0x02, 0x03, 0xea};
            evbuffer_add(out, kProtocolError, sizeof kProtocolError);
            ws_closing_ = true;
            continue;
        }
        if (head_len == 4) {
            len = (std::uint64_t{h[2]} << 8) | h[3];
        } else if (head_len == 10) {
            len = 0;
            for (int i = 2; i < 10; ++i) {
                len = (len << 8) | h[i];
            }
        }
        std::memcpy(ws_mask_, h + head_len, 4);
        evbuffer_drain(in, head_len + 4);
        unsigned char reply[10];
        // Same FIN bit and opcode, a ping becomes its pong; server frames are never masked.
        reply[0] = static_cast<unsigned char>((h[0] & 0x80) | (opcode == 0x9 ? 0xa : opcode));
        std::size_t reply_len = 2;
        if (len < 126) {
            reply[1] = static_cast<unsigned char>(len);
        } else if (len <= 0xffff) {
            reply[1] = 126;
            reply[2] = static_cast<unsigned char>(len >> 8);
            reply[3] = static_cast<unsigned char>(len);
            reply_len = 4;
        } else {
            reply[1] = 127;
            for (int i = 0; i < 8; ++i) {
                reply[2 + i] = static_cast<unsigned char>(len >> (8 * (7 - i)));
            }
            reply_len = 10;
        }
        evbuffer_add(out, reply, reply_len);
        ws_remaining_ = len;
        ws_offset_ = 0;
        ws_closing_ = opcode == 0x8;
    }
}

void Connection::armTimer(std::uint64_t ms) {
    if (timer_ == nullptr) {
        timer_ = evtimer_new(worker_.base, &Connection::onTimer, this);
    }
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    evtimer_add(timer_, &tv);
}

void Connection::onTimer(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Connection*>(arg);
    if (self->kind_ == Kind::Delay) {
        self->respond(200, "delayed " + self->head_.path.substr(7) + "ms\n");
    } else if (self->kind_ == Kind::SlowBody) {
        bufferevent_write(self->bev_, "slow body\n", 10);
        self->finishResponse();
    } else if (self->kind_ == Kind::Events) {
        static constexpr std::string_view kRest = "e\r\ndata: second\n\n\r\n0\r\n\r\n";
        bufferevent_write(self->bev_, kRest.data(), kRest.size());
        self->finishResponse();
    }
}

void Connection::startBytes() {
    std::uint64_t n = toNumber(std::string_view(head_.path).substr(7), 0);
    bool want_chunked = head_.query.find("chunked=1") != std::string::npos;
    // ?ranges=1: one "bytes=A-B" or "bytes=A-" range is answered 206 (others get the 200), so
    // tests can tell a Range the proxy relayed from one it dropped.
    std::uint64_t first = 0;
    std::uint64_t length = n;
    int status = 200;
    std::string fields = "Content-Type: application/octet-stream\r\n";
    const std::string* range = head_.fields.get("Range");
    if (range != nullptr && head_.query.find("ranges=1") != std::string::npos &&
        range->starts_with("bytes=") && range->find(',') == std::string::npos) {
        const std::string_view spec = std::string_view(*range).substr(6);
        const auto dash = spec.find('-');
        const auto from = strata::parseDecimal(spec.substr(0, dash));
        const auto to = dash == std::string_view::npos || dash + 1 == spec.size()
                            ? std::optional<std::uint64_t>(n == 0 ? 0 : n - 1)
                            : strata::parseDecimal(spec.substr(dash + 1));
        if (dash != std::string_view::npos && from && to && *from <= *to && *from < n) {
            first = *from;
            length = std::min(*to, n - 1) - first + 1;
            status = 206;
            fields += "Content-Range: bytes " + std::to_string(first) + "-" +
                      std::to_string(first + length - 1) + "/" + std::to_string(n) + "\r\n";
            want_chunked = false;
        }
    }
    if (want_chunked && head_.version_minor >= 1) {
        chunked_out_ = true;
        fields += "Transfer-Encoding: chunked\r\n";
    } else {
        fields += "Content-Length: " + std::to_string(length) + "\r\n";
    }
    std::string out;
    appendHead(out, status, fields);
    bufferevent_write(bev_, out.data(), out.size());
    if (head_.isHead()) {
        finishResponse();
        return;
    }
    remaining_ = length;
    offset_ = first;
    pumpBytes();
}

void Connection::pumpBytes() {
    evbuffer* out = output();
    while (remaining_ > 0 && evbuffer_get_length(out) < kHighWater) {
        // A piece starts where the pattern is at offset_ and runs to the end of the block at
        // most, so every later piece starts in phase (kBlockSize is a multiple of 64).
        const std::size_t phase = static_cast<std::size_t>(offset_ % kBlockSize);
        std::size_t piece = remaining_ < kBlockSize - phase ? static_cast<std::size_t>(remaining_)
                                                            : kBlockSize - phase;
        if (chunked_out_) {
            char line[32];
            int n = std::snprintf(line, sizeof line, "%zx\r\n", piece);
            evbuffer_add(out, line, static_cast<std::size_t>(n));
        }
        evbuffer_add_reference(out, g_block + phase, piece, nullptr, nullptr);
        if (chunked_out_) {
            evbuffer_add(out, "\r\n", 2);
        }
        remaining_ -= piece;
        offset_ += piece;
    }
    if (remaining_ == 0) {
        if (chunked_out_) {
            evbuffer_add(out, strata::http::kLastChunk.data(), strata::http::kLastChunk.size());
        }
        finishResponse();
    }
}

void Connection::finishResponse() {
    response_done_ = true;
    maybeFinishExchange();
}

void Connection::maybeFinishExchange() {
    if (!request_done_ || !response_done_) {
        return;
    }
    in_exchange_ = false;
    kind_ = Kind::Simple;
    if (!keep_alive_) {
        close_after_ = true;
        bufferevent_disable(bev_, EV_READ);
        // onWrite() closes once the output is flushed (it also runs when it already is).
        bufferevent_trigger(bev_, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    if (!in_feed_) {
        // Finished from a timer or the write callback: pipelined bytes may already wait in the
        // input buffer and the read callback would not fire for them again.
        bufferevent_trigger(bev_, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
}

struct Args {
    std::vector<std::string> listens;
    std::string port_file;
    std::string name;
    unsigned threads = 1;
};

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "strata-origin: %s\nusage: strata-origin --listen HOST:PORT [--listen ...] "
                 "[--port-file FILE] [--name NAME] [--threads N] [--expect-proxy]\n",
                 msg);
    std::exit(64);
}

int bindListener(const std::string& host, std::uint16_t port, std::uint16_t& bound_port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (::inet_pton(AF_INET, host.empty() ? "0.0.0.0" : host.c_str(), &sa.sin_addr) != 1) {
        ::close(fd);
        errno = EINVAL;
        return -1;
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 1024) != 0) {
        int saved = errno;
        ::close(fd);
        errno = saved;
        return -1;
    }
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    bound_port = ntohs(sa.sin_port);
    return fd;
}

struct AcceptCtx {
    Worker* worker;
    Server* server;
};

void onAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
    auto* ctx = static_cast<AcceptCtx*>(arg);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evutil_make_socket_nonblocking(fd);
    new Connection(*ctx->worker, *ctx->server, fd);  // owned by the worker's list
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage(("missing value for " + a).c_str());
            }
            return argv[++i];
        };
        if (a == "--listen") {
            args.listens.push_back(value());
        } else if (a == "--port-file") {
            args.port_file = value();
        } else if (a == "--name") {
            args.name = value();
        } else if (a == "--expect-proxy") {
            g_expect_proxy = true;
        } else if (a == "--threads") {
            args.threads =
                static_cast<unsigned>(std::max(1L, std::strtol(value().c_str(), nullptr, 10)));
        } else if (a == "-v" || a == "--version") {
            std::printf("strata-origin %s\n", STRATA_VERSION);
            return 0;
        } else if (a == "-h" || a == "--help") {
            std::printf(
                "usage: strata-origin --listen HOST:PORT [--listen ...] [--port-file FILE] "
                "[--name NAME] [--threads N] [--expect-proxy]\n"
                "endpoints: / /bytes/N[?chunked=1][?ranges=1] /status/CODE /delay/MS /echo "
                "/upload\n"
                "           /headers /close /drop /hang /slowbody/MS /events/MS /seq... /__stats "
                "/__reset\n"
                "           .../ws[?hello=TEXT] (WebSocket echo)\n"
                "           /__fail?status=CODE|hang; ?early=N (102/103 first) ?cc=... ?h=N:V "
                "(h=ETag:.. / "
                "Last-Modified:..\n"
                "           answer matching conditionals with 304)\n");
            return 0;
        } else {
            usage(("unknown argument " + a).c_str());
        }
    }
    if (args.listens.empty()) {
        args.listens.push_back("127.0.0.1:8000");
    }
    for (std::size_t i = 0; i < kBlockSize; ++i) {
        g_block[i] = kAlphabet[i % kAlphabet.size()];
    }
    ::signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    // Signal handlers go in before the port file exists: a test may send SIGTERM the moment it
    // has read the file, and must get exit status 0, not death by the default disposition.
    event_base* main_base = event_base_new();
    auto on_signal = [](evutil_socket_t, short, void* arg) {
        event_base_loopbreak(static_cast<event_base*>(arg));
    };
    event* sigterm = evsignal_new(main_base, SIGTERM, on_signal, main_base);
    event* sigint = evsignal_new(main_base, SIGINT, on_signal, main_base);
    evsignal_add(sigterm, nullptr);
    evsignal_add(sigint, nullptr);

    std::vector<std::unique_ptr<Server>> servers;
    std::vector<Worker> workers(args.threads);
    std::vector<std::unique_ptr<AcceptCtx>> ctxs;
    for (auto& w : workers) {
        w.base = event_base_new();
    }
    for (std::size_t i = 0; i < args.listens.size(); ++i) {
        const std::string& spec = args.listens[i];
        auto colon = spec.rfind(':');
        if (colon == std::string::npos) {
            usage(("bad --listen " + spec).c_str());
        }
        auto s = std::make_unique<Server>();
        s->id = args.name.empty() ? std::to_string(i) : args.name + "-" + std::to_string(i);
        s->host = spec.substr(0, colon);
        auto port = strata::parseDecimal(std::string_view(spec).substr(colon + 1));
        if (!port || *port > 65535) {
            usage(("bad port in " + spec).c_str());
        }
        std::uint16_t want = static_cast<std::uint16_t>(*port);
        // One SO_REUSEPORT socket per worker thread: the kernel spreads the accepts. The first
        // bind picks the ephemeral port, the others join it.
        for (auto& w : workers) {
            std::uint16_t bound = 0;
            int fd = bindListener(s->host, want, bound);
            if (fd < 0) {
                std::fprintf(stderr, "strata-origin: cannot listen on %s: %s\n", spec.c_str(),
                             std::strerror(errno));
                return 1;
            }
            want = bound;
            auto ctx = std::make_unique<AcceptCtx>(AcceptCtx{&w, s.get()});
            evconnlistener* l =
                evconnlistener_new(w.base, onAccept, ctx.get(), LEV_OPT_CLOSE_ON_FREE, -1, fd);
            w.listeners.push_back(l);
            ctxs.push_back(std::move(ctx));
        }
        s->port = want;
        s->port_text = std::to_string(want);
        servers.push_back(std::move(s));
    }

    if (!args.port_file.empty()) {
        std::string tmp = args.port_file + ".tmp";
        FILE* f = std::fopen(tmp.c_str(), "w");
        if (f == nullptr) {
            std::fprintf(stderr, "strata-origin: cannot write %s\n", tmp.c_str());
            return 1;
        }
        for (const auto& s : servers) {
            std::fprintf(f, "%s:%u\n", s->host.c_str(), s->port);
        }
        std::fclose(f);
        if (std::rename(tmp.c_str(), args.port_file.c_str()) != 0) {
            std::fprintf(stderr, "strata-origin: cannot rename %s\n", tmp.c_str());
            return 1;
        }
    }
    for (const auto& s : servers) {
        std::fprintf(stderr, "strata-origin: server %s listening on %s:%u\n", s->id.c_str(),
                     s->host.c_str(), s->port);
    }

    for (auto& w : workers) {
        w.thread = std::thread([&w] { event_base_dispatch(w.base); });
    }

    // The main thread only waits for SIGTERM/SIGINT, then stops every worker loop.
    event_base_dispatch(main_base);

    // loopexit, not loopbreak: a worker thread that has not entered its loop yet (SIGTERM right
    // after startup) would clear a break flag, but a pending exit event still fires.
    for (auto& w : workers) {
        event_base_loopexit(w.base, nullptr);
    }
    for (auto& w : workers) {
        w.thread.join();
        for (auto* l : w.listeners) {
            evconnlistener_free(l);
        }
        while (w.conns != nullptr) {
            delete w.conns;
        }
        event_base_free(w.base);
    }
    event_free(sigterm);
    event_free(sigint);
    event_base_free(main_base);
    return 0;
}
