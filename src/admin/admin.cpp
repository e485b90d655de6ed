#include "strata/admin/admin.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <event2/buffer.h>

#include "strata/common/log.h"
#include "strata/http/message.h"
#include "strata/http/parser.h"
#include "strata/http/response_out.h"
#include "strata/metrics/metrics.h"
#include "strata/net/connection.h"
#include "strata/net/listener.h"

namespace strata::admin {
namespace {

constexpr std::chrono::milliseconds kAdminIdleTimeout{30000};
constexpr std::size_t kMaxTokenBytes = 4096;

Response text(int status, std::string body) {
    Response r;
    r.status = status;
    r.body = std::move(body);
    if (!r.body.empty() && r.body.back() != '\n') {
        r.body += '\n';
    }
    return r;
}

// RFC 9110 15.5.6: a 405 MUST carry Allow, listing the methods the endpoint does take.
Response methodNotAllowed(std::string_view allow) {
    Response r = text(405, "use " + std::string(allow));
    r.allow = std::string(allow);
    return r;
}

void appendJsonString(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\u%04x", u);
            out += esc;
        } else {
            out += c;
        }
    }
    out += '"';
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// An operator-supplied value as one log line: control bytes (a decoded %0A) become '?', so
// an audit line cannot be forged by the value it records.
std::string loggable(std::string_view value) {
    std::string out(value.substr(0, 2048));
    for (char& c : out) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            c = '?';
        }
    }
    return out;
}

// The endpoint label of a path: bounded, never the raw path.
std::string_view endpointLabel(std::string_view path) {
    static constexpr std::string_view kKnown[] = {"/metrics", "/healthz", "/readyz",
                                                  "/status",  "/reload",  "/purge"};
    for (auto k : kKnown) {
        if (path == k) {
            return k;
        }
    }
    return "other";
}

}  // namespace

bool constantTimeEquals(std::string_view a, std::string_view b) {
    // Length differences still leak, which is fine: the token's length is not the secret.
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    const std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

bool queryParam(std::string_view query, std::string_view key, std::string& value) {
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        auto eq = pair.find('=');
        if (pair.substr(0, eq) != key) {
            continue;
        }
        std::string_view raw =
            eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
        value.clear();
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '+') {
                value += ' ';
            } else if (raw[i] == '%') {
                if (i + 2 >= raw.size()) {
                    return false;
                }
                int hi = hexValue(raw[i + 1]);
                int lo = hexValue(raw[i + 2]);
                if (hi < 0 || lo < 0) {
                    return false;
                }
                value += static_cast<char>(hi * 16 + lo);
                i += 2;
            } else {
                value += raw[i];
            }
        }
        return true;
    }
    return false;
}

bool readTokenFile(const std::string& path, std::string& token, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "cannot read admin token file " + path;
        return false;
    }
    std::string content(kMaxTokenBytes + 1, '\0');
    in.read(content.data(), static_cast<std::streamsize>(content.size()));
    content.resize(static_cast<std::size_t>(in.gcount()));
    if (content.size() > kMaxTokenBytes) {
        error = "admin token file " + path + " is larger than 4 KiB";
        return false;
    }
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!content.empty() && is_space(content.back())) {
        content.pop_back();
    }
    std::size_t start = 0;
    while (start < content.size() && is_space(content[start])) {
        ++start;
    }
    token = content.substr(start);
    if (token.empty()) {
        error = "admin token file " + path + " is empty";
        return false;
    }
    return true;
}

std::string renderStatusJson(const Status& s, const CacheStats& cache) {
    std::string out;
    char num[128];
    out += "{\"config\":{\"version\":";
    out += std::to_string(s.config_version);
    std::snprintf(num, sizeof num, ",\"loaded_at\":%.3f,\"path\":", s.config_loaded_at);
    out += num;
    appendJsonString(out, s.config_path);
    out += "},\"ready\":";
    out += s.ready ? "true" : "false";
    out += ",\"draining\":";
    out += s.draining ? "true" : "false";
    out += ",\"workers\":" + std::to_string(s.workers);
    out += ",\"pending_restart\":[";
    for (std::size_t i = 0; i < s.pending_restart.size(); ++i) {
        out += i ? "," : "";
        appendJsonString(out, s.pending_restart[i]);
    }
    out += "]";
    out += ",\"client_connections\":" + std::to_string(s.client_connections);
    out += ",\"listeners\":[";
    for (std::size_t i = 0; i < s.listeners.size(); ++i) {
        out += i ? "," : "";
        appendJsonString(out, s.listeners[i]);
    }
    out += "],\"upstreams\":{";
    for (std::size_t u = 0; u < s.upstreams.size(); ++u) {
        const auto& up = s.upstreams[u];
        out += u ? "," : "";
        appendJsonString(out, up.name);
        out += ":{\"health_check\":";
        out += up.health_check ? "true" : "false";
        out += ",\"servers\":[";
        for (std::size_t i = 0; i < up.servers.size(); ++i) {
            const auto& srv = up.servers[i];
            out += i ? "," : "";
            out += "{\"address\":";
            appendJsonString(out, srv.address);
            out += ",\"weight\":" + std::to_string(srv.weight);
            out += ",\"healthy\":";
            out += srv.healthy ? "true" : "false";
            out += ",\"available\":";
            out += srv.available ? "true" : "false";
            out += ",\"consecutive_failures\":" + std::to_string(srv.consecutive_failures);
            out += ",\"in_flight\":" + std::to_string(srv.in_flight) + "}";
        }
        out += "]}";
    }
    out += "},\"cache\":{\"l1\":{\"bytes\":" + std::to_string(cache.l1_bytes);
    out += ",\"max_bytes\":" + std::to_string(cache.l1_max_bytes);
    out += ",\"objects\":" + std::to_string(cache.l1_objects);
    out += "},\"l2\":{\"servers\":" + std::to_string(cache.l2_servers);
    out += ",\"breakers_open\":" + std::to_string(cache.l2_breakers_open) + "}}}\n";
    return out;
}

// ---- router -------------------------------------------------------------------------------------

bool Router::authorized(const Request& request, Response& refusal) const {
    if (token_.empty()) {
        refusal = text(403, "disabled: set admin.token_file to enable this endpoint");
        return false;
    }
    constexpr std::string_view kBearer = "Bearer ";
    std::string_view auth = request.authorization;
    if (auth.size() > kBearer.size() && auth.substr(0, kBearer.size()) == kBearer &&
        constantTimeEquals(auth.substr(kBearer.size()), token_)) {
        return true;
    }
    LOG_WARN("admin: %s %s refused: %s token", request.method.c_str(),
             std::string(endpointLabel(request.path)).c_str(), auth.empty() ? "missing" : "wrong");
    metrics::global().adminUnauthorized();
    refusal = text(401, "unauthorized");
    return false;
}

void Router::handle(const Request& request, Responder respond) {
    // endpointLabel() views a static string: safe to keep until a late answer.
    Responder counted = [endpoint = endpointLabel(request.path),
                         respond = std::move(respond)](Response r) {
        metrics::global().adminRequest(endpoint, r.status);
        respond(std::move(r));
    };
    if (request.path == "/purge") {
        purge(request, std::move(counted));
    } else {
        counted(answer(request));
    }
}

Response Router::answer(const Request& request) {
    const std::string& p = request.path;
    const bool read = request.method == "GET" || request.method == "HEAD";
    if (p == "/healthz") {
        return read ? text(200, "ok") : methodNotAllowed("GET, HEAD");
    }
    if (p == "/readyz") {
        if (!read) {
            return methodNotAllowed("GET, HEAD");
        }
        bool ready = handlers_.status != nullptr && handlers_.status->status().ready;
        return ready ? text(200, "ready") : text(503, "not ready");
    }
    if (p == "/metrics") {
        if (!read) {
            return methodNotAllowed("GET, HEAD");
        }
        Response m;
        m.content_type = "text/plain; version=0.0.4; charset=utf-8";
        m.body = handlers_.metrics_text_for_test.empty() ? metrics::global().serialize()
                                                         : handlers_.metrics_text_for_test;
        return m;
    }
    if (p == "/status") {
        if (!read) {
            return methodNotAllowed("GET, HEAD");
        }
        if (handlers_.status == nullptr) {
            return text(503, "no status");
        }
        CacheStats cache;
        if (handlers_.cache != nullptr) {
            cache = handlers_.cache->cacheStats();
        }
        Response s;
        s.content_type = "application/json";
        s.body = renderStatusJson(handlers_.status->status(), cache);
        return s;
    }
    if (p == "/reload") {
        if (request.method != "POST") {
            return methodNotAllowed("POST");
        }
        Response refusal;
        if (!authorized(request, refusal)) {
            return refusal;
        }
        if (handlers_.reload == nullptr) {
            return text(501, "reload not available");
        }
        ReloadOutcome outcome = handlers_.reload->reload();
        std::string body = outcome.ok ? "reloaded" : "reload failed";
        body += "; running version " + std::to_string(outcome.version) + "\n";
        for (const auto& e : outcome.errors) {
            body += e + "\n";
        }
        return text(outcome.ok ? 200 : 422, body);
    }
    return text(404, "not found");
}

void Router::purge(const Request& request, Responder respond) {
    if (request.method != "POST") {
        return respond(methodNotAllowed("POST"));
    }
    Response refusal;
    if (!authorized(request, refusal)) {
        return respond(std::move(refusal));
    }
    if (handlers_.purge == nullptr) {
        return respond(text(501, "purge not implemented by the cache yet"));
    }
    std::string value;
    bool soft = false;
    if (queryParam(request.query, "soft", value)) {
        if (value == "1" || value == "true") {
            soft = true;
        } else if (value != "0" && value != "false") {
            return respond(text(400, "soft must be 1, true, 0 or false"));
        }
    }
    // A URL is cached apart per scheme (the key starts with it) but is one resource to most
    // sites, so by default a url or prefix purge takes both copies.
    bool both_schemes = true;
    if (queryParam(request.query, "scheme", value)) {
        if (value == "exact") {
            both_schemes = false;
        } else if (value != "both") {
            return respond(text(400, "scheme must be both or exact"));
        }
    }
    std::string kind;
    std::string target;
    if (queryParam(request.query, "url", target)) {
        kind = "url";
    } else if (queryParam(request.query, "prefix", target)) {
        kind = "prefix";
    } else if (queryParam(request.query, "tag", target)) {
        kind = "tag";
    }
    // The audit trail: who asked, for what, and what it did, written once the answer is known
    // (a purge waiting for L2 logs when L2 answered). Never the token.
    PurgeDone done = [soft, both_schemes, kind, target, peer = request.peer,
                      respond = std::move(respond)](PurgeResult result) {
        std::string what = kind.empty() ? std::string("-") : kind + " " + loggable(target);
        LOG_INFO("admin: purge by %s: %s%s%s: %d, %llu objects purged from L1%s%s",
                 peer.empty() ? "-" : peer.c_str(), what.c_str(), soft ? " (soft)" : "",
                 kind == "tag" || kind.empty() ? ""
                 : both_schemes                ? " (http and https)"
                                               : " (this scheme only)",
                 result.status, static_cast<unsigned long long>(result.purged),
                 result.status == 200 ? "" : ": ",
                 result.status == 200 ? "" : loggable(result.message.substr(0, 200)).c_str());
        if (result.status != 200) {
            return respond(text(result.status, std::move(result.message)));
        }
        respond(text(200, (soft ? "soft-purged " : "purged ") + std::to_string(result.purged)));
    };
    if (kind == "url") {
        handlers_.purge->purgeUrl(target, soft, both_schemes, std::move(done));
    } else if (kind == "prefix") {
        handlers_.purge->purgePrefix(target, soft, both_schemes, std::move(done));
    } else if (kind == "tag") {
        handlers_.purge->purgeTag(target, soft, std::move(done));
    } else {
        done({400, 0, "expected ?url=, ?prefix= or ?tag= (and optionally &soft=1, &scheme=exact)"});
    }
}

// ---- listener and sessions ----------------------------------------------------------------------

struct AdminServer::ListenerHolder {
    std::unique_ptr<net::Listener> listener;
};

// One admin connection: requests answered one at a time, in order; keep-alive allowed. While an
// answer is pending (a purge waiting for L2) the session neither reads nor parses: pipelined
// requests wait in the socket and are taken up once the answer is written.
class AdminServer::Session final : public event::DeferredDeletable,
                                   public http::RequestCallbacks,
                                   public net::ConnectionCallbacks {
public:
    Session(AdminServer& server, int fd, std::string peer)
        : server_(server),
          peer_(std::move(peer)),
          connection_(server.loop_, fd),
          parser_(*this, http::ParserLimits{8 * 1024, 32 * 1024, 100, 64 * 1024}),
          timer_(server.loop_, [this] { close(); }) {
        connection_.setCallbacks(this);
        timer_.arm(kAdminIdleTimeout);
    }

    void close() {
        if (closed_) {
            return;
        }
        closed_ = true;
        *alive_ = false;  // a late answer for this session is dropped (the purge still happened)
        timer_.cancel();
        connection_.close();
        server_.remove(this);
        server_.loop_.deferredDelete(event::DeferredDeletablePtr(this));
    }

private:
    // net::ConnectionCallbacks
    void onReadable() override {
        try {
            process();
        } catch (...) {
            log::countInternalError();
            LOG_ERROR("admin: exception while answering");
            close();
        }
    }
    void onWritable() override {
        if (closing_ && connection_.outputLength() == 0) {
            close();
        }
    }
    void onConnected(bool) override {}
    void onError() override { close(); }

    void process() {
        evbuffer* in = connection_.input();
        while (!closed_ && !closing_ && !waiting_) {
            if (evbuffer_get_length(in) == 0 && !connection_.readMore()) {
                break;
            }
            if (evbuffer_get_length(in) == 0) {
                break;
            }
            evbuffer_iovec chunk;
            if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) {
                break;
            }
            auto result = parser_.feed(
                std::string_view(static_cast<const char*>(chunk.iov_base), chunk.iov_len));
            if (closed_) {
                return;
            }
            evbuffer_drain(in, result.consumed);
            if (result.status == http::ParseStatus::Error) {
                respond(text(http::httpStatus(parser_.error()), "bad request"), false, false);
                return;
            }
            if (result.status == http::ParseStatus::Complete) {
                parser_.nextMessage();
                continue;
            }
            if (result.consumed == 0) {
                break;
            }
        }
        if (!closed_ && !closing_ && !waiting_ && connection_.peerClosed()) {
            close();
        }
    }

    // http::RequestCallbacks
    void onRequestHead(http::RequestHead&& head) override {
        timer_.arm(kAdminIdleTimeout);
        request_.method = head.method;
        request_.path = head.path;
        request_.query = head.query;
        const std::string* auth = head.fields.get("Authorization");
        request_.authorization = auth ? *auth : std::string();
        request_.peer = peer_;
        keep_alive_ = head.keep_alive;
        is_head_ = head.isHead();
    }
    void onRequestBody(std::string_view) override {}  // admin requests carry no body we read
    void onRequestComplete() override {
        waiting_ = true;
        in_handle_ = true;
        server_.router_.handle(request_, [this, alive = alive_, keep_alive = keep_alive_,
                                          head_only = is_head_](Response r) {
            if (!*alive) {
                return;
            }
            waiting_ = false;
            respond(r, keep_alive, head_only);
            if (!in_handle_) {
                answeredLate();
            }
        });
        in_handle_ = false;
        if (waiting_) {
            connection_.pauseReading();
        }
    }

    // Runs from a loop callback of its own (the L2 completion or its deadline): carries on
    // with the requests that arrived meanwhile.
    void answeredLate() {
        try {
            if (closed_ || closing_) {
                return;
            }
            connection_.resumeReading();
            if (!closed_) {
                process();
            }
        } catch (...) {
            log::countInternalError();
            LOG_ERROR("admin: exception while answering");
            close();
        }
    }

    void respond(const Response& r, bool keep_alive, bool head_only) {
        http::FieldEdits edits;
        edits.add("Content-Type", r.content_type);
        edits.add("Cache-Control", "no-store");
        if (!r.allow.empty()) {
            edits.add("Allow", r.allow);
        }
        http::OutgoingResponse head;
        head.status = r.status;
        head.edits = &edits;
        head.body = http::ResponseBody::Length;
        head.content_length = r.body.size();
        head.state_length = true;
        head.head_only = head_only;
        std::string out;
        http::appendHttp1ResponseHead(out, head, 1, !keep_alive);
        if (!head_only) {
            out += r.body;
        }
        evbuffer_add(connection_.output(), out.data(), out.size());
        connection_.flush();
        if (!keep_alive) {
            closing_ = true;
            connection_.pauseReading();
            if (connection_.outputLength() == 0 || connection_.failed()) {
                close();
            }
        }
    }

    AdminServer& server_;
    std::string peer_;  // "HOST:PORT" of the client, for the purge audit log
    net::Connection connection_;
    http::RequestParser parser_;
    event::Timer timer_;
    Request request_;
    bool keep_alive_ = true;
    bool is_head_ = false;
    bool closing_ = false;
    bool closed_ = false;
    bool waiting_ = false;    // a request is being answered; parse nothing more until it is
    bool in_handle_ = false;  // inside Router::handle(): an answer now is an inline one
    // Late answers hold this, not the session: the session may be gone by then.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

AdminServer::AdminServer(event::Loop& loop, int listen_fd, Handlers handlers)
    : loop_(loop), router_(std::move(handlers)), listener_(std::make_unique<ListenerHolder>()) {
    listener_->listener = std::make_unique<net::Listener>(
        loop, listen_fd,
        [this](int fd, const net::SocketAddress& peer) { accept(fd, peer.toString()); });
}

AdminServer::~AdminServer() {
    close();
}

void AdminServer::accept(int fd, std::string peer) {
    auto* session =
        new Session(*this, fd, std::move(peer));  // owns itself; dies through deferredDelete
    sessions_.push_back(session);
}

void AdminServer::remove(Session* session) {
    sessions_.erase(std::remove(sessions_.begin(), sessions_.end(), session), sessions_.end());
}

void AdminServer::close() {
    if (listener_ && listener_->listener) {
        listener_->listener->close();
        listener_->listener.reset();
    }
    auto sessions = sessions_;
    for (Session* s : sessions) {
        s->close();
    }
}

}  // namespace strata::admin
