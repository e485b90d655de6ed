// Access log: one line per exchange. Workers append to their own buffer (no lock, no syscall on
// the request path); a buffer is written out when it grows past a threshold or on the worker's
// flush timer.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "strata/proxy/log_privacy.h"

namespace strata::proxy {

// The file all workers write to. Thread-safe; reopen() serves SIGUSR1 after logrotate.
class AccessLogSink {
public:
    // target: "stdout", "stderr", "off" or a file path.
    // `privacy` may be null (addresses and targets written as they are).
    static std::shared_ptr<AccessLogSink> open(const std::string& target, const std::string& format,
                                               std::shared_ptr<const LogPrivacy> privacy,
                                               std::string& error);
    ~AccessLogSink();

    bool enabled() const { return fd_ >= 0; }
    bool json() const { return json_; }
    const LogPrivacy* privacy() const { return privacy_.get(); }
    void write(std::string_view bytes);
    void reopen();

private:
    AccessLogSink() = default;
    static std::shared_ptr<AccessLogSink> openTarget(const std::string& target,
                                                     const std::string& format, std::string& error);
    std::mutex mutex_;
    int fd_ = -1;
    bool owns_fd_ = false;
    bool json_ = false;
    std::string path_;
    std::shared_ptr<const LogPrivacy> privacy_;
};

struct AccessRecord {
    std::string_view client;
    std::string_view method;
    std::string_view target;
    int version_minor = 1;
    int version_major = 1;  // 2: an HTTP/2 stream ("HTTP/2.0" in the combined line)
    int status = 0;
    std::uint64_t bytes_sent = 0;  // body bytes sent to the client
    std::string_view referer;
    std::string_view user_agent;
    std::string_view upstream;  // "127.0.0.1:9001" or "-"
    double duration_s = 0;
    double upstream_s = -1;        // time to upstream response head, -1 when no upstream was asked
    std::string_view cache;        // "hit", "miss", "bypass", ... (metrics::CacheResult names)
    std::string_view tls_version;  // "1.3", "1.2"; "" on plain TCP
    std::string_view tls_cipher;   // OpenSSL's name, "TLS_AES_128_GCM_SHA256"; "" on plain TCP
    std::string_view host;         // the request's host (lowercase, port kept); "" when unknown
    std::string_view route;        // routes[].name, or its index; "" when no route matched
    std::string_view listener;     // listeners[].name of the listener that accepted it
    std::string_view request_id;   // 16 hex digits, also sent upstream as X-Request-Id
    bool tunnel = false;           // an Upgrade tunnel that ended: the two counts below apply
    std::uint64_t tunnel_bytes_up = 0;    // client to upstream, after the 101
    std::uint64_t tunnel_bytes_down = 0;  // upstream to client, after the 101
};

// Per-worker buffer in front of the sink.
class AccessLogBuffer {
public:
    explicit AccessLogBuffer(std::shared_ptr<AccessLogSink> sink) : sink_(std::move(sink)) {}
    ~AccessLogBuffer() { flush(); }

    bool enabled() const { return sink_ && sink_->enabled(); }
    void append(const AccessRecord& record);
    void flush();
    void setSink(std::shared_ptr<AccessLogSink> sink);

private:
    std::shared_ptr<AccessLogSink> sink_;
    std::string buffer_;
    std::string client_seen_;   // the last client address logged, as received
    std::string client_shown_;  // and as the privacy policy writes it
    std::string client_scratch_;
    std::string target_scratch_;
};

}  // namespace strata::proxy
