#include "raw_client.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

#include "strata/common/strings.h"

namespace strata::test {

namespace {

using SteadyClock = std::chrono::steady_clock;

int connectTo(const std::string& host, std::uint16_t port, int& error) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = errno;
        return -1;
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    ::inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        error = errno;
        ::close(fd);
        return -1;
    }
    return fd;
}

// llhttp callback state for one response.
struct ParseState {
    Response* resp = nullptr;
    const ReadOptions* options = nullptr;
    std::string field;
    std::string value;
    bool in_value = false;
    bool complete = false;

    void flushField() {
        if (in_value) {
            resp->headers.emplace_back(std::move(field), std::move(value));
            field.clear();
            value.clear();
            in_value = false;
        }
    }
};

ParseState& state(llhttp_t* p) {
    return *static_cast<ParseState*>(p->data);
}

const llhttp_settings_t& settings() {
    static const llhttp_settings_t kSettings = [] {
        llhttp_settings_t st;
        llhttp_settings_init(&st);
        st.on_status = [](llhttp_t* p, const char* at, size_t n) {
            state(p).resp->reason.append(at, n);
            return 0;
        };
        st.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
            auto& s = state(p);
            s.flushField();
            s.field.append(at, n);
            return 0;
        };
        st.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
            auto& s = state(p);
            s.in_value = true;
            s.value.append(at, n);
            return 0;
        };
        st.on_header_value_complete = [](llhttp_t* p) {
            state(p).in_value = true;  // an empty value still makes a field
            state(p).flushField();
            return 0;
        };
        st.on_headers_complete = [](llhttp_t* p) {
            auto& s = state(p);
            s.flushField();
            s.resp->status = p->status_code;
            s.resp->version_major = p->http_major;
            s.resp->version_minor = p->http_minor;
            s.resp->chunked = (p->flags & F_CHUNKED) != 0;
            return s.options->head ? 1 : 0;
        };
        st.on_body = [](llhttp_t* p, const char* at, size_t n) {
            auto& s = state(p);
            s.resp->body_bytes += n;
            if (s.options->on_body) {
                s.options->on_body(std::string_view(at, n));
            } else {
                s.resp->body.append(at, n);
            }
            return 0;
        };
        st.on_message_complete = [](llhttp_t* p) {
            state(p).complete = true;
            return static_cast<int>(HPE_PAUSED);  // stop here: the rest is the next response
        };
        return st;
    }();
    return kSettings;
}

}  // namespace

std::string Response::header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (equalsIgnoreCase(k, name)) {
            return v;
        }
    }
    return "";
}

bool Response::hasHeader(std::string_view name) const {
    return headerCount(name) > 0;
}

std::size_t Response::headerCount(std::string_view name) const {
    std::size_t n = 0;
    for (const auto& [k, v] : headers) {
        n += equalsIgnoreCase(k, name) ? 1 : 0;
    }
    return n;
}

RawClient::RawClient(std::uint16_t port, const std::string& host) {
    int error = 0;
    fd_ = connectTo(host, port, error);
    if (fd_ < 0) {
        throw std::runtime_error("connect " + host + ":" + std::to_string(port) + ": " +
                                 std::strerror(error));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

RawClient::~RawClient() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

bool RawClient::send(std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

void RawClient::shutdownWrite() {
    ::shutdown(fd_, SHUT_WR);
}

long RawClient::fill(SteadyClock::time_point deadline) {
    if (eof_) {
        return 0;
    }
    for (;;) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
        if (left.count() <= 0) {
            return -1;
        }
        pollfd pfd{fd_, POLLIN, 0};
        int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        char buf[64 * 1024];
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            eof_ = true;  // reset counts as closed too
            return 0;
        }
        buffer_.append(buf, static_cast<std::size_t>(n));
        return n;
    }
}

Response RawClient::readResponse(const ReadOptions& options) {
    Response resp;
    ParseState st;
    st.resp = &resp;
    st.options = &options;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_RESPONSE, &settings());
    parser.data = &st;
    auto deadline = SteadyClock::now() + options.timeout;
    bool started = false;
    for (;;) {
        if (!buffer_.empty()) {
            started = true;
            llhttp_errno_t err = llhttp_execute(&parser, buffer_.data(), buffer_.size());
            // A 101 pauses as an upgrade: what follows is the new protocol's, left buffered.
            if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
                std::size_t used =
                    static_cast<std::size_t>(llhttp_get_error_pos(&parser) - buffer_.data());
                buffer_.erase(0, used);
                return resp;
            }
            if (err != HPE_OK) {
                resp.error = std::string("malformed response: ") + llhttp_errno_name(err) + " " +
                             llhttp_get_error_reason(&parser);
                resp.status = 0;
                return resp;
            }
            buffer_.clear();
        }
        long n = fill(deadline);
        if (n == 0) {
            if (started) {
                llhttp_errno_t err = llhttp_finish(&parser);
                if ((err == HPE_OK || err == HPE_PAUSED) && st.complete) {
                    return resp;
                }
            }
            resp.error = started ? "connection closed mid-response" : "connection closed";
            resp.status = 0;
            return resp;
        }
        if (n < 0) {
            resp.error = "timeout waiting for response";
            resp.status = 0;
            return resp;
        }
    }
}

bool RawClient::readExact(std::size_t n, std::string& out, std::chrono::milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    while (buffer_.size() < n) {
        if (fill(deadline) <= 0) {
            return false;
        }
    }
    out.assign(buffer_, 0, n);
    buffer_.erase(0, n);
    return true;
}

bool RawClient::isClosed(std::chrono::milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    for (;;) {
        long n = fill(deadline);
        if (n == 0) {
            return true;
        }
        if (n < 0) {
            return false;
        }
    }
}

std::string RawClient::readAvailable(std::chrono::milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    while (fill(deadline) > 0) {
    }
    std::string out = std::move(buffer_);
    buffer_.clear();
    return out;
}

Response request(std::uint16_t port, const std::string& method, const std::string& target,
                 const std::string& extra_headers, const std::string& body) {
    RawClient c(port);
    std::string req = method + " " + target +
                      " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n" +
                      extra_headers;
    if (!body.empty()) {
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n" + body;
    if (!c.send(req)) {
        Response r;
        r.error = "send failed";
        return r;
    }
    ReadOptions opts;
    opts.head = method == "HEAD";
    return c.readResponse(opts);
}

bool connectRefused(std::uint16_t port) {
    int error = 0;
    int fd = connectTo("127.0.0.1", port, error);
    if (fd >= 0) {
        ::close(fd);
        return false;
    }
    return error == ECONNREFUSED;
}

namespace {
// A socket bound to 127.0.0.1 on an ephemeral port; returns the fd, the port in `port`.
int bindEphemeral(std::uint16_t& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(errno));
    }
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
    return fd;
}
}  // namespace

std::uint16_t closedPort() {
    // Closed at exit. A port merely bound and closed could be taken by a listener of a test
    // running in parallel (the connect would then reach it), or become strata's own local
    // port for that very connect (a self-connection that succeeds).
    std::uint16_t port = 0;
    bindEphemeral(port);
    return port;
}

std::uint16_t freePort() {
    std::uint16_t port = 0;
    ::close(bindEphemeral(port));
    return port;
}

void Fnv1a64::update(std::string_view data) {
    std::uint64_t h = h_;
    for (unsigned char c : data) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    h_ = h;
}

std::string Fnv1a64::hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
}

char originPatternByte(std::uint64_t i) {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    return kAlphabet[i % kAlphabet.size()];
}

void originPattern(std::uint64_t offset, std::string& out) {
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = originPatternByte(offset + i);
    }
}

BackgroundLoad::BackgroundLoad(std::uint16_t port, int clients,
                               std::function<std::string(int)> request,
                               std::function<void(int, const Response&)> on_ok) {
    for (int t = 0; t < clients; ++t) {
        threads_.emplace_back([this, port, request, on_ok] {
            while (!stop_) {
                try {
                    RawClient c(port);
                    for (int i = 0; i < 50 && !stop_; ++i) {
                        if (!c.send(request(i))) {
                            bad_++;
                            break;
                        }
                        Response r = c.readResponse();
                        if (r.status != 200) {
                            bad_++;
                            break;
                        }
                        if (on_ok) {
                            on_ok(i, r);
                        }
                        ok_++;
                    }
                } catch (...) {
                    bad_++;
                }
            }
        });
    }
}

void BackgroundLoad::stop() {
    stop_ = true;
    for (auto& t : threads_) {
        if (t.joinable()) {
            t.join();
        }
    }
}

}  // namespace strata::test
