// Strict HTTP/1.x parsing over llhttp (built with LLHTTP_STRICT_MODE, no lenient flags), plus
// the RFC 9112 checks llhttp leaves to its user. Anything ambiguous is an error: the caller
// answers 400/414/431/413 (requests) or 502 (responses) and closes the connection.
//
// Parsers stop after each complete message so the owner controls pipelining: feed() returns
// how many bytes it consumed; after onMessageComplete() it consumes nothing more until
// nextMessage() is called.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "strata/http/message.h"

namespace strata::http {

enum class ParseStatus {
    Ok,        // consumed what it could; more input wanted
    Complete,  // a message ended; call nextMessage() before feeding the next one
    Error,     // see error(); the connection must be closed
};

// Why a message was rejected; httpStatus() maps it to the answer a client gets.
enum class ParseError {
    None,
    BadRequest,       // malformed or ambiguous framing -> 400
    UriTooLong,       // request line over the limit -> 414
    HeadersTooLarge,  // head bytes or field count over the limit -> 431
    BodyTooLarge,     // declared or streamed body over max_body_bytes -> 413
    BadResponse,      // upstream response malformed -> 502 to the client
    Truncated,        // connection closed in the middle of a message
    UnderscoreField,  // a request field name with '_' refused (see UnderscoreFields) -> 400
};
int httpStatus(ParseError e);

struct ParserLimits {
    std::uint32_t max_request_line_bytes = 8 * 1024;  // also the cap on a status line
    std::uint32_t max_header_bytes = 32 * 1024;       // whole head, start line included
    std::uint32_t max_headers = 100;
    std::uint64_t max_body_bytes = UINT64_MAX;  // requests only
    // Requests only. Allow by default: only the proxy's client side decides otherwise.
    UnderscoreFields underscores = UnderscoreFields::Allow;
};

class RequestCallbacks {
public:
    virtual ~RequestCallbacks() = default;
    // The head is complete and valid. The parser no longer needs it.
    virtual void onRequestHead(RequestHead&& head) = 0;
    // Decoded body bytes (chunked framing removed). Points into the fed buffer: copy it.
    virtual void onRequestBody(std::string_view data) = 0;
    virtual void onRequestComplete() = 0;
};

class ResponseCallbacks {
public:
    virtual ~ResponseCallbacks() = default;
    // Also called for interim (1xx) responses, which are complete messages of their own.
    virtual void onResponseHead(ResponseHead&& head) = 0;
    virtual void onResponseBody(std::string_view data) = 0;
    virtual void onResponseComplete() = 0;
};

class RequestParser {
public:
    RequestParser(RequestCallbacks& callbacks, const ParserLimits& limits);
    ~RequestParser();
    RequestParser(const RequestParser&) = delete;
    RequestParser& operator=(const RequestParser&) = delete;

    struct FeedResult {
        ParseStatus status;
        std::size_t consumed;
    };
    FeedResult feed(std::string_view data);
    // Prepares for the next pipelined request after Complete.
    void nextMessage();
    // True between the first byte of a request and its onRequestHead (for header timeouts).
    bool inHead() const;
    // True after the first byte of a message was seen and before it completed.
    bool inMessage() const;

    ParseError error() const;
    const std::string& errorDetail() const;  // short text for the error log

    // What the start line of a request still in its head said so far, so that a request
    // rejected before onRequestHead() (400, 408, 414, 431) is logged with what was known: the
    // method once its SP was read, the target once the SP after it was, the minor version once
    // it was read (else 1). "" for what is not known; all "" once onRequestHead() took the
    // head. Valid until the next feed() or nextMessage().
    struct StartLine {
        std::string_view method;
        std::string_view target;
        int version_minor = 1;
    };
    StartLine startLineSoFar() const;

    struct Impl;

private:
    RequestCallbacks& callbacks_;
    ParserLimits limits_;
    std::unique_ptr<Impl> impl_;  // only while a message is in progress (or failed)
};

class ResponseParser {
public:
    ResponseParser(ResponseCallbacks& callbacks, const ParserLimits& limits);
    ~ResponseParser();
    ResponseParser(const ResponseParser&) = delete;
    ResponseParser& operator=(const ResponseParser&) = delete;

    using FeedResult = RequestParser::FeedResult;
    // Retargets the callbacks: a pooled upstream connection keeps one parser for all the
    // exchanges it serves. Call between messages only.
    void setCallbacks(ResponseCallbacks& callbacks);
    // Must be called before each response: a response to HEAD has no body whatever its
    // Content-Length says.
    void expectResponseTo(std::string_view request_method);
    FeedResult feed(std::string_view data);
    // The upstream closed the connection: completes an until-close body (Complete), or reports
    // Truncated (Error) when a message was in progress, or Ok when idle between messages.
    ParseStatus finish();
    void nextMessage();
    bool inMessage() const;

    ParseError error() const;
    const std::string& errorDetail() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::http
