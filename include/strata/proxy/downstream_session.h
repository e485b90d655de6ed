// One client connection (HAProxy's "session"): reads requests with the strict parser, runs one
// Transaction at a time, keeps the connection alive between exchanges, answers pipelined
// requests in order (the next request is parsed only after the current response is handed
// over), and enforces the client-side limits and timeouts.
//
//   accept ─▶ WaitingRequest ─first byte─▶ ReadingHead ─head─▶ InTransaction ─done─┐
//                  ▲      (idle timer)         (header deadline)   (body, response)  │
//                  └────────────────────────── keep-alive ◀──────────────────────────┘
//   any error: answer 4xx when nothing was sent yet, then close; client EOF aborts.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "strata/event/loop.h"
#include "strata/http/parser.h"
#include "strata/net/connection.h"
#include "strata/net/socket.h"
#include "strata/net/tls_context.h"
#include "strata/proxy/client_stream.h"
#include "strata/proxy/parked_connection.h"
#include "strata/proxy/tunnel.h"
#include "strata/proxy/worker_context.h"

struct evbuffer;

namespace strata::proxy {

class H2Session;
class Transaction;

// The HTTP/1 codec's client side: it is the ClientStream of the one transaction it runs, and
// the only writer of HTTP/1 response bytes to a client.
class DownstreamSession final : public event::DeferredDeletable,
                                public http::RequestCallbacks,
                                public ClientStream,
                                private net::ConnectionCallbacks {
public:
    // `tls`: the listener's TLS context when it terminates TLS (the handshake runs first).
    // `peer` is the client (a PROXY header's source on such listeners); `local`, when not
    // empty, the address it connected to as a PROXY header said (else the socket's, on demand).
    DownstreamSession(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                      const ListenerInfo& listener, net::TlsServerContextPtr tls = nullptr,
                      const net::SocketAddress& local = {});
    ~DownstreamSession() override;

    // A parked connection woke (a byte, or its close): a session again, reading at once.
    static void resume(WorkerContext& worker, const ParkedConnection::Identity& identity);

    // The connection took a slot in WorkerContext::client_connections; it gives it back when
    // it closes.
    void holdClientSlot() { holds_client_slot_ = true; }
    void start();

    std::uint64_t id() const { return id_; }
    void closeIfIdle();  // drain
    // "1.3" / "1.2" on a TLS listener once the TLS engineer fills it; "" for plain TCP.
    void setTlsVersion(std::string_view version) { tls_version_ = version; }
    bool isTls() const { return connection_.ssl() != nullptr; }
    // Something broke: closes the connection, dropping the exchange in progress.
    void abortConnection();

    // ClientStream, for the Transaction it runs.
    WorkerContext& worker() override { return worker_; }
    const std::string& clientAddress() const override { return client_address_; }
    const net::SocketAddress& peerAddress() const override { return peer_; }
    const net::SocketAddress& localAddress() override;
    void setRealClient(std::string_view address) override { real_client_.assign(address); }
    const ListenerInfo& listener() const override { return listener_; }
    std::uint64_t connectionId() const override { return id_; }
    const std::string& forwardSubjectHeader() const override;
    std::string clientSubject() const override { return connection_.peerSubject(); }
    void sendInterim(const http::OutgoingResponse& head) override;
    void sendHead(const http::OutgoingResponse& head) override;
    void sendBody(std::string_view data) override;
    using ClientStream::sendBody;
    void sendBody(const cache::BodyPtr& body, std::uint64_t offset, std::uint64_t length) override;
    void flush() override { flushOutput(); }
    void endResponse() override;
    void sendError(int status, std::string_view detail, std::string_view cache_status) override;
    void abortResponse() override { abortConnection(); }
    std::size_t outputPending() const override;
    void pauseRequestBody() override;
    void resumeRequestBody() override;
    void setCacheResult(metrics::CacheResult result) override { cache_result_ = result; }
    void logAccess(std::string_view method, std::string_view target, std::string_view host,
                   int version_minor, int status, std::uint64_t bytes, std::string_view referer,
                   std::string_view user_agent, std::string_view upstream, double upstream_s,
                   std::chrono::steady_clock::time_point started) override;
    std::string_view requestId() const override {
        return adopted_request_id_.empty() ? view(request_id_) : adopted_request_id_;
    }
    void adoptRequestId(std::string_view id) override { adopted_request_id_.assign(id); }
    void startTunnel(const http::ResponseHead& upstream_head, std::string http1_head,
                     upstream::UpstreamConnectionPtr upstream,
                     std::chrono::milliseconds idle_timeout) override;

    // A finished exchange whose answer is still being written (see logAccess()); an HTTP/2
    // stream keeps one too and writes it through writeAccess().
    struct PendingAccess {
        std::chrono::steady_clock::time_point started;
        int version_minor = 1;
        int version_major = 1;
        int status = 0;
        std::uint64_t bytes = 0;
        std::uint64_t sent_bytes = 0;  // head and body, once sent_settled
        bool sent_settled = false;
        double upstream_s = -1;
        std::uint16_t route_slot = metrics::kNoRoute;
        metrics::MethodClass method_class = metrics::MethodClass::Other;
        metrics::CacheResult cache_result = metrics::CacheResult::Bypass;
        std::string method;  // the strings only when the access log is on
        std::string target;
        std::string referer;
        std::string user_agent;
        std::string upstream;
        std::string host;
        std::string route;
        std::string client;  // the exchange's real client (trusted_proxies); "" = the peer
        RequestIdGenerator::Id request_id{};
        std::string adopted_request_id;  // a trusted client's id, used instead when not ""
        bool tunnel = false;  // the exchange became a tunnel; its line is written when it ends
        std::uint64_t tunnel_up = 0;
        std::uint64_t tunnel_down = 0;
    };
    // Fills `out` from a logAccess() call (the strings only when the access log is on).
    static void recordAccess(PendingAccess& out, bool logged, std::string_view method,
                             std::string_view target, std::string_view host, int version_minor,
                             int status, std::uint64_t bytes, std::string_view referer,
                             std::string_view user_agent, std::string_view upstream,
                             double upstream_s, std::chrono::steady_clock::time_point started);
    // The access-log line and request metrics of a finished exchange, this connection's or
    // one of its HTTP/2 streams'.
    void writeAccess(const PendingAccess& access);

    // http::RequestCallbacks
    void onRequestHead(http::RequestHead&& head) override;
    void onRequestBody(std::string_view data) override;
    void onRequestComplete() override;

private:
    friend class H2Session;
    friend class H2Stream;

    // One timer per session, armed for the earlier of the read and send deadlines.
    enum class ReadDeadline { None, Header, Idle, Body };

    // The resumed session of a parked connection: its id, already counted.
    DownstreamSession(WorkerContext& worker, const ParkedConnection::Identity& identity);
    // What both make; neither counts the connection.
    DownstreamSession(WorkerContext& worker, int fd, const net::SocketAddress& peer,
                      const ListenerInfo& listener, net::TlsServerContextPtr tls,
                      const net::SocketAddress& local, std::uint64_t id);

    // net::ConnectionCallbacks
    void onReadable() override;
    void onWritable() override;
    void onConnected(bool ok) override;  // TLS handshake done
    void onError() override;

    void processInput();
    evbuffer* output();
    // Sends what was appended to output() as far as the socket takes it now.
    void flushOutput();
    // Answers `status` with a short body; the transaction (if any) is gone. `close` ends the
    // connection after it.
    void answerError(int status, std::string_view detail, bool close,
                     std::string_view cache_status = "strata; fwd=bypass");
    // The response was fully written to output(). The transaction is finished with the session.
    void transactionDone();
    void responseDone();
    void dropTransaction();
    void setReadDeadline(ReadDeadline mode);
    void setSendDeadline(bool waiting);
    void scheduleTimer();  // after a deadline changed
    void onTimer();
    void finishIfFlushed();
    // The access-log line and request metrics of the exchange that logAccess() recorded, once
    // its last byte is handed to the kernel (or the connection ends).
    void finishAccessLogIfFlushed();
    void finishAccessLog();
    // Bytes the current exchange queued to the client, fixed once its answer is complete (or
    // the connection ends: then only what the socket took).
    void settleSentBytes();
    // Request bytes read for the current exchange, counted on its route when it ends.
    void recordReceivedBytes();
    // logAccess() for a request the parser rejected or the header timeout ended: with what was
    // known of it (the routed head, or the start line read so far).
    void logRejected(int status);
    // The connection speaks HTTP/2 from here (ALPN h2, or the preface on a plain listener).
    void startH2();
    // A plain listener with h2: true once the first bytes decided (HTTP/2 started or not).
    bool checkPreface();
    void close();
    // The tunnel's end: its counts go to the access-log line and the metrics (once).
    void finishTunnel();
    bool canPark() const;
    // Hands the socket to a ParkedConnection and frees the session (canPark() first).
    void park();

    WorkerContext& worker_;
    net::TlsServerContextPtr tls_;  // before connection_: it makes the connection's SSL
    net::Connection connection_;
    std::string client_address_;
    bool holds_client_slot_ = false;
    net::SocketAddress peer_;
    net::SocketAddress local_;  // filled on first use when no PROXY header named it
    std::string real_client_;   // setRealClient() for the current exchange, until logAccess()
    ListenerInfo listener_;
    std::uint64_t id_;
    http::RequestParser parser_;
    std::unique_ptr<Transaction> transaction_;
    // Set once the connection speaks HTTP/2: from then on it carries every exchange.
    std::unique_ptr<H2Session> h2_;
    bool preface_checked_ = false;  // a plain h2 listener looked at the first bytes
    event::Timer timer_;
    ReadDeadline read_mode_ = ReadDeadline::None;
    std::chrono::steady_clock::time_point read_deadline_;
    std::chrono::steady_clock::time_point send_deadline_;
    std::chrono::steady_clock::time_point park_at_;  // while idle between exchanges
    bool request_in_progress_ = false;               // head parsed, response not yet fully queued
    bool request_complete_ = false;                  // parser saw the end of the current request
    bool response_done_ = false;                     // the answer to the current request is queued
    bool request_has_body_ = false;  // the current request has a body (CL or chunked)
    int request_minor_ = 1;          // HTTP/1.x version of the current request
    bool response_chunked_ = false;  // the current response body is chunk-encoded
    bool in_parser_ = false;         // inside parser_.feed(): parser state must not change
    bool body_paused_ = false;
    bool close_after_response_ = false;
    bool closing_ = false;  // flushing the last bytes, then close
    bool closed_ = false;
    std::chrono::steady_clock::time_point started_;
    std::uint16_t route_slot_ = metrics::kNoRoute;  // metric series of the current exchange
    // The current exchange's route name; points into the snapshot its transaction holds, and
    // logAccess() copies it. Empty when no route matched.
    std::string_view route_name_;
    RequestIdGenerator::Id request_id_{};
    std::string adopted_request_id_;    // adoptRequestId() for the current exchange
    std::uint64_t received_bytes_ = 0;  // consumed by the parser, not yet counted
    // connection_.bytesSent() + outputLength() when the previous exchange's answer was complete:
    // what is queued beyond it belongs to the current exchange.
    std::uint64_t queued_mark_ = 0;
    metrics::CacheResult cache_result_ = metrics::CacheResult::Bypass;
    std::string_view tls_version_;  // static strings only
    std::string_view tls_cipher_;   // OpenSSL's static cipher names
    // Only while an exchange's line and metrics wait to be written: an idle connection holds
    // none (see takePendingAccess()).
    std::unique_ptr<PendingAccess> pending_;
    // Set after a 101: the connection is a byte tunnel from then on, until it closes.
    std::unique_ptr<Tunnel> tunnel_;
    bool tunnel_finished_ = false;
};

}  // namespace strata::proxy
