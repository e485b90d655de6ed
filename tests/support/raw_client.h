// A test-side HTTP/1.1 client over a plain TCP socket. It sends exactly the bytes it is given
// (malformed requests, pipelines) and reads responses with llhttp directly, independently of
// strata's own http module, so a bug there cannot hide itself in the tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace strata::test {

struct Response {
    int status = 0;  // 0: no complete response (see error)
    std::string reason;
    int version_major = 1;
    int version_minor = 1;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;              // empty when ReadOptions::on_body took the bytes
    std::uint64_t body_bytes = 0;  // decoded body length, also when streamed to on_body
    bool chunked = false;          // the response used Transfer-Encoding: chunked
    std::string error;             // why no complete response was read

    bool ok() const { return status != 0 && error.empty(); }
    // First value of a field (case-insensitive), "" when absent.
    std::string header(std::string_view name) const;
    bool hasHeader(std::string_view name) const;
    std::size_t headerCount(std::string_view name) const;
};

struct ReadOptions {
    bool head = false;  // the request was HEAD: no body whatever the framing says
    std::chrono::milliseconds timeout{10000};  // whole response
    // Receives the decoded body instead of Response::body (for huge bodies).
    std::function<void(std::string_view)> on_body;
};

class RawClient {
public:
    // Connects to host:port (blocking); throws std::runtime_error when it cannot.
    explicit RawClient(std::uint16_t port, const std::string& host = "127.0.0.1");
    ~RawClient();
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    // Writes all bytes; false when the peer is gone or did not read for 10 s.
    bool send(std::string_view bytes);
    // Reads one response (an interim 1xx counts as one). Bytes after it stay buffered for the
    // next call, so pipelined answers are read one by one.
    Response readResponse(const ReadOptions& options = {});
    // Waits up to `timeout` for the peer to close (EOF or reset). Data arriving meanwhile is
    // buffered. True when closed.
    bool isClosed(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
    // Takes exactly `n` bytes (buffered ones first) into `out`; false on timeout or close.
    bool readExact(std::size_t n, std::string& out,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
    // Reads whatever arrives within `timeout` (until close or timeout), for raw assertions.
    std::string readAvailable(std::chrono::milliseconds timeout);
    void shutdownWrite();
    int fd() const { return fd_; }

private:
    // Reads more bytes into buffer_; returns bytes read, 0 at EOF, -1 on timeout/error.
    long fill(std::chrono::steady_clock::time_point deadline);

    int fd_ = -1;
    std::string buffer_;
    bool eof_ = false;
};

// Keep-alive load on 127.0.0.1:port from `clients` threads until stop() (or destruction), for
// "nothing fails while ..." cases: each thread sends request(i), i = 0, 1, ..., 50 to a
// connection, then opens the next. A 200 counts as ok and goes to on_ok(i, response); any other
// answer, a failed send or a refused connection counts as bad and the thread reconnects.
class BackgroundLoad {
public:
    BackgroundLoad(std::uint16_t port, int clients, std::function<std::string(int)> request,
                   std::function<void(int, const Response&)> on_ok = {});
    ~BackgroundLoad() { stop(); }
    BackgroundLoad(const BackgroundLoad&) = delete;
    BackgroundLoad& operator=(const BackgroundLoad&) = delete;

    void stop();  // the clients finish their request and are joined
    int ok() const { return ok_; }
    int bad() const { return bad_; }

private:
    std::atomic<bool> stop_{false};
    std::atomic<int> ok_{0};
    std::atomic<int> bad_{0};
    std::vector<std::thread> threads_;
};

// One request on a fresh connection: "METHOD TARGET HTTP/1.1", Host, the extra header lines
// (each ending in \r\n), Content-Length when body is not empty.
Response request(std::uint16_t port, const std::string& method, const std::string& target,
                 const std::string& extra_headers = "", const std::string& body = "");
inline Response get(std::uint16_t port, const std::string& target,
                    const std::string& extra_headers = "") {
    return request(port, "GET", target, extra_headers);
}

// True when connecting to 127.0.0.1:port is refused (nothing listens).
bool connectRefused(std::uint16_t port);
// A port on 127.0.0.1 that nothing listens on while the test runs: it stays bound (never
// listening) until the process exits, so connects are refused and no parallel test can listen
// on it or connect from it meanwhile.
std::uint16_t closedPort();
// A port on 127.0.0.1 that was free a moment ago (bound, then closed), for a server the test
// starts on it itself. Another process may take it meanwhile; use closedPort() for "refused".
std::uint16_t freePort();

// FNV-1a 64-bit, as strata-origin's /upload reports it.
class Fnv1a64 {
public:
    void update(std::string_view data);
    std::uint64_t value() const { return h_; }
    std::string hex() const;  // 16 lowercase hex digits

private:
    std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

// The body of strata-origin's /bytes/N: byte i is originPatternByte(i).
char originPatternByte(std::uint64_t i);
// Fills `out` with the pattern bytes [offset, offset + out.size()).
void originPattern(std::uint64_t offset, std::string& out);

}  // namespace strata::test
