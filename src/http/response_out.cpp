#include "strata/http/response_out.h"

namespace strata::http {

Http1Framing appendHttp1ResponseHead(std::string& out, const OutgoingResponse& response,
                                     int client_minor, bool close) {
    static const Fields kNoFields;
    static const FieldEdits kNoEdits;
    Http1Framing framing;
    framing.close = close;
    const bool streamed = response.body == ResponseBody::Stream && !response.head_only;
    if (streamed) {
        if (client_minor == 0) {
            framing.close = true;  // the end of the body is the end of the connection
        } else {
            framing.chunked = true;
        }
    }
    const Fields& fields = response.fields != nullptr ? *response.fields : kNoFields;
    const FieldEdits& edits = response.edits != nullptr ? *response.edits : kNoEdits;
    if (!response.serialized_http1.empty()) {
        out.append(response.serialized_http1);
        appendForwardedFields(out, kNoFields, edits);
    } else {
        appendStatusLine(out, response.status,
                         response.reason.empty() ? reasonPhrase(response.status) : response.reason,
                         1);
        appendForwardedFields(out, fields, edits);
    }
    if (response.state_length && response.body == ResponseBody::Length) {
        out.append("Content-Length: ");
        out.append(std::to_string(response.content_length));
        out.append("\r\n");
    }
    if (framing.chunked) {
        out.append("Transfer-Encoding: chunked\r\n");
    }
    if (framing.close) {
        out.append("Connection: close\r\n");
    } else if (client_minor == 0) {
        out.append("Connection: keep-alive\r\n");
    }
    out.append("\r\n");
    return framing;
}

}  // namespace strata::http
