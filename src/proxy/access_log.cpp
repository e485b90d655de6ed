#include "strata/proxy/access_log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

namespace strata::proxy {
namespace {

constexpr std::size_t kFlushThreshold = 32 * 1024;

void appendQuoted(std::string& out, std::string_view value, bool json) {
    out += '"';
    if (value.empty() && !json) {
        out += '-';
    }
    for (char c : value) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\' || u < 0x20 || u == 0x7f) {
            // Escaped so that a request cannot forge log lines or break JSON.
            char esc[8];
            std::snprintf(esc, sizeof esc, json ? "\\u%04x" : "\\x%02x", u);
            out += esc;
        } else {
            out += c;
        }
    }
    out += '"';
}

// A bare token of the combined format: key=value fields are split on spaces, so a byte that
// could end or fake a field becomes '?'; an empty value is "-".
void appendToken(std::string& out, std::string_view value) {
    if (value.empty()) {
        out += '-';
        return;
    }
    for (char c : value) {
        auto u = static_cast<unsigned char>(c);
        out += (u <= 0x20 || u == 0x7f || c == '"') ? '?' : c;
    }
}

// A JSON string, or null when the value is unknown.
void appendJsonOrNull(std::string& out, std::string_view value) {
    if (value.empty()) {
        out += "null";
    } else {
        appendQuoted(out, value, true);
    }
}

}  // namespace

std::shared_ptr<AccessLogSink> AccessLogSink::open(const std::string& target,
                                                   const std::string& format,
                                                   std::shared_ptr<const LogPrivacy> privacy,
                                                   std::string& error) {
    auto sink = openTarget(target, format, error);
    if (sink && privacy && privacy->active()) {
        sink->privacy_ = std::move(privacy);
    }
    return sink;
}

std::shared_ptr<AccessLogSink> AccessLogSink::openTarget(const std::string& target,
                                                         const std::string& format,
                                                         std::string& error) {
    std::shared_ptr<AccessLogSink> sink(new AccessLogSink());
    sink->json_ = (format == "json");
    if (target == "off") {
        sink->fd_ = -1;
    } else if (target == "stdout" || target.empty()) {
        sink->fd_ = STDOUT_FILENO;
    } else if (target == "stderr") {
        sink->fd_ = STDERR_FILENO;
    } else {
        sink->fd_ = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (sink->fd_ < 0) {
            error = "cannot open access log " + target;
            return nullptr;
        }
        sink->owns_fd_ = true;
        sink->path_ = target;
    }
    return sink;
}

AccessLogSink::~AccessLogSink() {
    if (owns_fd_ && fd_ >= 0) {
        ::close(fd_);
    }
}

void AccessLogSink::write(std::string_view bytes) {
    std::lock_guard lock(mutex_);
    while (!bytes.empty() && fd_ >= 0) {
        ssize_t n = ::write(fd_, bytes.data(), bytes.size());
        if (n <= 0) {
            return;  // a full disk must not stop the proxy; lines are lost
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

void AccessLogSink::reopen() {
    std::lock_guard lock(mutex_);
    if (!owns_fd_ || path_.empty()) {
        return;
    }
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        return;
    }
    ::close(fd_);
    fd_ = fd;
}

void AccessLogBuffer::setSink(std::shared_ptr<AccessLogSink> sink) {
    flush();
    sink_ = std::move(sink);
    client_seen_.clear();  // the new sink may hide addresses another way
    client_shown_.clear();
}

void AccessLogBuffer::append(const AccessRecord& r) {
    if (!enabled()) {
        return;
    }
    std::string_view client = r.client;
    std::string_view target = r.target;
    if (const LogPrivacy* privacy = sink_->privacy()) {
        // A keep-alive connection logs one address many times: hash it once.
        if (r.client != client_seen_) {
            client_seen_.assign(r.client);
            client_shown_.assign(privacy->client(r.client, client_scratch_));
        }
        client = client_shown_;
        target = privacy->target(r.target, target_scratch_);
    }
    // Milliseconds: workers buffer their own lines, so a merged file is put in time order by
    // sorting on this field (the JSON "time", the combined "time=").
    const auto wall = std::chrono::system_clock::now();
    const auto since_epoch_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count();
    std::time_t now = static_cast<std::time_t>(since_epoch_ms / 1000);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char stamp[64];
    char iso[64];
    char num[64];
    {
        char seconds[32];
        std::strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &tm);
        std::snprintf(iso, sizeof iso, "%s.%03dZ", seconds,
                      static_cast<int>(since_epoch_ms % 1000));
    }
    if (sink_->json()) {
        buffer_ += "{\"time\":\"";
        buffer_ += iso;
        buffer_ += "\",\"client\":";
        appendQuoted(buffer_, client, true);
        buffer_ += ",\"method\":";
        appendQuoted(buffer_, r.method, true);
        buffer_ += ",\"target\":";
        appendQuoted(buffer_, target, true);
        std::snprintf(num, sizeof num, ",\"status\":%d,\"bytes\":%llu,", r.status,
                      static_cast<unsigned long long>(r.bytes_sent));
        buffer_ += num;
        buffer_ += "\"referer\":";
        appendQuoted(buffer_, r.referer, true);
        buffer_ += ",\"user_agent\":";
        appendQuoted(buffer_, r.user_agent, true);
        buffer_ += ",\"upstream\":";
        if (r.upstream.empty() || r.upstream == "-") {
            buffer_ += "null";  // answered without an upstream (hit or local answer)
        } else {
            appendQuoted(buffer_, r.upstream, true);
        }
        std::snprintf(num, sizeof num, ",\"duration\":%.6f,\"upstream_time\":", r.duration_s);
        buffer_ += num;
        if (r.upstream_s < 0) {
            buffer_ += "null";  // never went upstream
        } else {
            std::snprintf(num, sizeof num, "%.6f", r.upstream_s);
            buffer_ += num;
        }
        buffer_ += ",\"cache\":";
        appendQuoted(buffer_, r.cache, true);
        buffer_ += ",\"tls_version\":";
        appendQuoted(buffer_, r.tls_version, true);
        buffer_ += ",\"tls_cipher\":";
        appendQuoted(buffer_, r.tls_cipher, true);
        buffer_ += ",\"host\":";
        appendJsonOrNull(buffer_, r.host);
        buffer_ += ",\"route\":";
        appendJsonOrNull(buffer_, r.route);
        buffer_ += ",\"listener\":";
        appendJsonOrNull(buffer_, r.listener);
        buffer_ += ",\"request_id\":";
        appendJsonOrNull(buffer_, r.request_id);
        if (r.tunnel) {
            std::snprintf(num, sizeof num, ",\"tunnel_up\":%llu,\"tunnel_down\":%llu",
                          static_cast<unsigned long long>(r.tunnel_bytes_up),
                          static_cast<unsigned long long>(r.tunnel_bytes_down));
            buffer_ += num;
        }
        buffer_ += "}\n";
    } else {
        // Combined log format plus upstream and timings, key=value at the end.
        std::strftime(stamp, sizeof stamp, "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
        buffer_ += client;
        buffer_ += " - - ";
        buffer_ += stamp;
        buffer_ += " \"";
        for (char c : r.method) {
            buffer_ += (static_cast<unsigned char>(c) < 0x20 || c == '"') ? '?' : c;
        }
        buffer_ += ' ';
        for (char c : target) {
            buffer_ += (static_cast<unsigned char>(c) < 0x20 || c == '"') ? '?' : c;
        }
        buffer_ += r.version_major == 2   ? " HTTP/2.0\" "
                   : r.version_minor == 0 ? " HTTP/1.0\" "
                                          : " HTTP/1.1\" ";
        std::snprintf(num, sizeof num, "%d %llu ", r.status,
                      static_cast<unsigned long long>(r.bytes_sent));
        buffer_ += num;
        appendQuoted(buffer_, r.referer, false);
        buffer_ += ' ';
        appendQuoted(buffer_, r.user_agent, false);
        buffer_ += " upstream=";
        buffer_ += r.upstream.empty() ? std::string_view("-") : r.upstream;
        std::snprintf(num, sizeof num, " rt=%.6f urt=", r.duration_s);
        buffer_ += num;
        if (r.upstream_s < 0) {
            buffer_ += '-';  // never went upstream
        } else {
            std::snprintf(num, sizeof num, "%.6f", r.upstream_s);
            buffer_ += num;
        }
        buffer_ += " cache=";
        buffer_ += r.cache.empty() ? std::string_view("-") : r.cache;
        buffer_ += " tls=";
        buffer_ += r.tls_version.empty() ? std::string_view("-") : r.tls_version;
        if (!r.tls_cipher.empty()) {
            buffer_ += " cipher=";
            buffer_ += r.tls_cipher;
        }
        buffer_ += " time=";
        buffer_ += iso;
        // After time= so that parsers of the earlier layout keep working.
        buffer_ += " host=";
        appendToken(buffer_, r.host);
        buffer_ += " route=";
        appendToken(buffer_, r.route);
        buffer_ += " listener=";
        appendToken(buffer_, r.listener);
        buffer_ += " request_id=";
        appendToken(buffer_, r.request_id);
        if (r.tunnel) {
            std::snprintf(num, sizeof num, " tunnel_up=%llu tunnel_down=%llu",
                          static_cast<unsigned long long>(r.tunnel_bytes_up),
                          static_cast<unsigned long long>(r.tunnel_bytes_down));
            buffer_ += num;
        }
        buffer_ += '\n';
    }
    if (buffer_.size() >= kFlushThreshold) {
        flush();
    }
}

void AccessLogBuffer::flush() {
    if (!buffer_.empty() && sink_) {
        sink_->write(buffer_);
    }
    buffer_.clear();
}

}  // namespace strata::proxy
