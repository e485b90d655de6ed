#include "health_checker.h"

#include <event2/buffer.h>

#include "strata/common/log.h"
#include "strata/http/message.h"
#include "strata/http/parser.h"
#include "strata/metrics/metrics.h"
#include "strata/net/connection.h"
#include "strata/net/proxy_protocol.h"

namespace strata::server {

class HealthChecker::Probe final : public net::ConnectionCallbacks, public http::ResponseCallbacks {
public:
    Probe(event::Loop& loop, upstream::ServerStatePtr server, const config::HealthCheck& check,
          net::TlsClientContextPtr tls, std::string proxy_protocol)
        : loop_(loop),
          server_(std::move(server)),
          check_(check),
          tls_(std::move(tls)),
          proxy_protocol_(std::move(proxy_protocol)),
          interval_timer_(loop, [this] { begin(); }),
          timeout_timer_(loop, [this] { end(false, "timeout"); }) {
        request_ = check_.method + " " + check_.path + " HTTP/1.1\r\nHost: " + server_->label() +
                   "\r\nUser-Agent: strata-health-check\r\nConnection: close\r\n\r\n";
        interval_timer_.arm(std::chrono::milliseconds(0));
    }

    ~Probe() override { dropConnection(); }

    // `tls` is compared by identity: a reload rebuilds the context whenever upstream TLS
    // settings change, and the probe must then meet the new ones.
    bool sameCheck(const config::HealthCheck& c, const net::TlsClientContextPtr& tls,
                   const std::string& proxy_protocol) const {
        return tls == tls_ && proxy_protocol == proxy_protocol_ && c.method == check_.method &&
               c.path == check_.path && c.interval == check_.interval &&
               c.timeout == check_.timeout && c.rise == check_.rise && c.fall == check_.fall &&
               c.expect_status_min == check_.expect_status_min &&
               c.expect_status_max == check_.expect_status_max;
    }

private:
    void begin() {
        status_ = 0;
        parser_ = std::make_unique<http::ResponseParser>(
            *this, http::ParserLimits{8 * 1024, 32 * 1024, 100, UINT64_MAX});
        parser_->expectResponseTo(check_.method);
        // The way requests go: over the upstream's TLS (SNI, verification, client certificate)
        // when it has one, so a probe never passes for a server requests cannot reach.
        connection_ = tls_ ? tls_->connect(loop_, server_->address(), /*session=*/nullptr)
                           : net::Connection::connectTo(loop_, server_->address());
        if (!connection_) {
            end(false, "connect failed");
            return;
        }
        if (proxy_protocol_ != "off") {
            // A server expecting PROXY headers refuses a connection without one. The probe is
            // strata's own connection, which the spec's LOCAL (v1: UNKNOWN) says.
            const net::SocketAddress none;
            connection_->setPreamble(proxy_protocol_ == "v1"
                                         ? net::proxy_protocol::encodeV1(none, none)
                                         : net::proxy_protocol::encodeV2(none, none));
        }
        connection_->setCallbacks(this);
        timeout_timer_.arm(check_.timeout);
    }

    // net::ConnectionCallbacks
    void onConnected(bool ok) override {
        if (!ok) {
            if (!connection_->tlsError().empty()) {
                tls_error_ = "TLS handshake failed: " + connection_->tlsError();
                end(false, tls_error_.c_str());
            } else {
                end(false,
                    connection_->ssl() != nullptr ? "TLS handshake failed" : "connect failed");
            }
            return;
        }
        evbuffer_add(connection_->output(), request_.data(), request_.size());
        connection_->flush();
    }
    void onWritable() override {}
    void onError() override { end(false, "connection error"); }
    void onReadable() override {
        evbuffer* in = connection_->input();
        while (connection_ && evbuffer_get_length(in) > 0) {
            evbuffer_iovec chunk;
            if (evbuffer_peek(in, -1, nullptr, &chunk, 1) < 1) {
                break;
            }
            auto result = parser_->feed(
                std::string_view(static_cast<const char*>(chunk.iov_base), chunk.iov_len));
            if (status_ >= 200) {
                return;  // the head decided it; end() ran
            }
            evbuffer_drain(in, result.consumed);
            if (result.status == http::ParseStatus::Error) {
                end(false, "bad response");
                return;
            }
            if (result.status == http::ParseStatus::Complete) {
                parser_->nextMessage();  // a 1xx
            } else if (result.consumed == 0) {
                break;
            }
            if (evbuffer_get_length(in) == 0 && connection_->readMore()) {
                continue;
            }
        }
        if (connection_ && connection_->peerClosed()) {
            end(false, "closed before response");
        }
    }

    // http::ResponseCallbacks
    void onResponseHead(http::ResponseHead&& head) override {
        if (head.status < 200) {
            return;
        }
        status_ = head.status;
        const bool ok =
            head.status >= check_.expect_status_min && head.status <= check_.expect_status_max;
        end(ok, ok ? "" : "unexpected status");
    }
    void onResponseBody(std::string_view) override {}
    void onResponseComplete() override {}

    void dropConnection() {
        if (connection_) {
            connection_->setCallbacks(nullptr);
            connection_->close();
            // May run inside the connection's own callback.
            loop_.deferredDelete(event::deferrable(std::move(connection_)));
        }
        if (parser_) {
            loop_.deferredDelete(event::deferrable(std::move(parser_)));
        }
    }

    void end(bool ok, const char* why) {
        timeout_timer_.cancel();
        dropConnection();
        metrics::global().healthCheck(server_->metricsSlot(), ok);
        if (ok) {
            failures_ = 0;
            if (++passes_ >= check_.rise && !server_->healthy()) {
                server_->setHealthy(true);
                server_->recordSuccess();  // clears the passive back-off too
                LOG_WARN("upstream %s: server %s is up (%u checks passed)",
                         server_->upstreamName().c_str(), server_->label().c_str(), passes_);
            }
        } else {
            passes_ = 0;
            if (++failures_ >= check_.fall && server_->healthy()) {
                server_->setHealthy(false);
                if (status_ > 0) {
                    LOG_WARN("upstream %s: server %s is down (%u checks failed; last: status %d)",
                             server_->upstreamName().c_str(), server_->label().c_str(), failures_,
                             status_);
                } else {
                    LOG_WARN("upstream %s: server %s is down (%u checks failed; last: %s)",
                             server_->upstreamName().c_str(), server_->label().c_str(), failures_,
                             why);
                }
            }
        }
        interval_timer_.arm(check_.interval);
    }

    event::Loop& loop_;
    upstream::ServerStatePtr server_;
    config::HealthCheck check_;
    net::TlsClientContextPtr tls_;  // null: plain TCP
    std::string proxy_protocol_;    // upstreams.NAME.proxy_protocol: "off" | "v1" | "v2"
    std::string request_;
    std::string tls_error_;  // keeps the text end() logs alive
    event::Timer interval_timer_;
    event::Timer timeout_timer_;
    net::ConnectionPtr connection_;
    std::unique_ptr<http::ResponseParser> parser_;
    int status_ = 0;
    std::uint32_t passes_ = 0;
    std::uint32_t failures_ = 0;
};

HealthChecker::HealthChecker(event::Loop& loop) : loop_(loop) {}

HealthChecker::~HealthChecker() {
    stop();
}

void HealthChecker::update(const proxy::Snapshot& snapshot) {
    std::map<const void*, std::unique_ptr<Probe>> next;
    for (const auto& [name, group] : snapshot.upstreams) {
        const auto& check = group->config().health_check;
        for (const auto& server : group->servers()) {
            if (!check.enabled) {
                server->setHealthy(true);  // checks removed: nothing may keep it down
                continue;
            }
            auto it = probes_.find(server.get());
            const std::string& proxy_protocol = group->config().proxy_protocol;
            if (it != probes_.end() &&
                it->second->sameCheck(check, group->tlsContext(), proxy_protocol)) {
                next.emplace(server.get(), std::move(it->second));
                probes_.erase(it);
            } else {
                next.emplace(server.get(),
                             std::make_unique<Probe>(loop_, server, check, group->tlsContext(),
                                                     proxy_protocol));
            }
        }
    }
    probes_ = std::move(next);  // probes of removed servers stop here
}

void HealthChecker::stop() {
    probes_.clear();
}

}  // namespace strata::server
