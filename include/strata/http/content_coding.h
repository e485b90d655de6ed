// Content codings (RFC 9110 8.4, 12.5.3): gzip and br compressors over zlib and libbrotli, the
// Accept-Encoding negotiation, the variant classes a cache keys Accept-Encoding by, and the
// ETag of an encoded representation. Pure (no sockets, no clock), so it is tested table-driven.
//
//   store time: compressBody(identity) ──▶ one stored body per coding (compress once)
//   delivery:   parseAcceptEncoding(request) ─▶ chooseCoding(stored codings) ─▶ that body,
//               Content-Encoding, Vary: Accept-Encoding, encodedEtag()
//   streaming:  StreamEncoder write/flush/finish, bounded memory whatever the body's length
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "strata/http/message.h"

namespace strata::http {

// The codings strata produces. Identity is "no coding".
enum class Coding : std::uint8_t { Identity = 0, Gzip = 1, Br = 2 };
inline constexpr std::size_t kCodingCount = 3;

// "identity", "gzip", "br".
std::string_view codingToken(Coding coding);
// A coding strata can produce, by its token (case-insensitive; "x-gzip" is gzip, RFC 9110
// 8.4.1.3). Identity is not a coding one configures, so it is not returned.
std::optional<Coding> parseCodingToken(std::string_view token);

// An Accept-Encoding field value (RFC 9110 12.5.3) as qualities in thousandths (0..1000).
// Codings not strata's own are kept only as far as they matter for the variant class.
struct AcceptEncoding {
    bool present = false;  // the request had the field (empty counts as present)
    // -1: not named. Indexed by Coding.
    std::array<int, kCodingCount> q{-1, -1, -1};
    int star = -1;
    int deflate = -1;  // codings an origin may choose (variant classes, see acceptClass())
    int zstd = -1;

    // The client's quality for `coding`: named, else "*", else 0 (identity: 1000 unless
    // refused by "identity;q=0" or an unnamed identity under "*;q=0").
    int quality(Coding coding) const;
};

// Every Accept-Encoding field line of a request, joined (several lines form one list). An
// element that does not parse (bad q) is ignored, not the whole field.
AcceptEncoding parseAcceptEncoding(std::string_view value, bool present = true);
// The request's Accept-Encoding: every line of it, as one list (RFC 9110 5.3).
AcceptEncoding acceptEncodingOf(const Fields& request_fields);

// Which of `available` (strata's codings for this object, in the route's preference order;
// identity need not be listed) the client gets: the acceptable one with the highest quality,
// ties going to the earlier in `available`; identity when the client wants it more, or when
// nothing else is acceptable (strata sends identity rather than 406: RFC 9110 12.5.3 allows it).
Coding chooseCoding(const AcceptEncoding& accept, std::span<const Coding> available);

// The variant class of an Accept-Encoding value: which of gzip, br, deflate and zstd it accepts
// (quality > 0), as a bit mask 0..15. A cache keys a response that varies on Accept-Encoding by
// this class, not by the raw value, so the thousand spellings clients send make at most 16
// variants. Every coding an origin could pick for one client of a class is acceptable to every
// other client of the class.
unsigned acceptClass(const AcceptEncoding& accept);
// The class as a secondary-key fragment: "ae:" and one hex digit.
std::string acceptClassKey(const AcceptEncoding& accept);
std::string acceptClassKey(std::string_view accept_encoding_value, bool present);

// RFC 9110 8.8.3: a strong ETag names one sequence of bytes, so each coding of a representation
// gets its own: "abc" -> "abc-br". A weak ETag stays as it is (semantically equivalent
// representations may share it), as does identity. "" when `etag` is empty or not an
// entity-tag (no validator is better than a wrong one).
std::string encodedEtag(std::string_view etag, Coding coding);
// The reverse: the identity ETag an encodedEtag() result came from, or nullopt when `etag`
// carries no coding suffix. Lets If-None-Match with an encoded tag match the stored entry.
std::optional<std::string> identityEtag(std::string_view etag);

// Whether a Content-Type value names one of `types` (media types, lowercase, "type/*" for a
// whole top-level type); parameters (charset) are ignored.
bool typeListed(std::string_view content_type, std::span<const std::string> types);

// Compression level as configured (1..9): gzip's level and brotli's quality.
inline constexpr int kDefaultLevel = 6;

// The whole body compressed, or nullopt when the library fails (never for valid input).
std::optional<std::string> compressBody(Coding coding, std::string_view body, int level);
// The body decoded, or nullopt when it is not a valid stream of that coding or would exceed
// `max_bytes` decoded (a decompression bomb stops there).
std::optional<std::string> decompressBody(Coding coding, std::string_view data,
                                          std::size_t max_bytes);

// A compressor fed chunk by chunk. Memory is bounded by the coding's window (gzip 32 KiB +
// state, br a 256 KiB window), not by the body: output leaves with every call.
class StreamEncoder {
public:
    virtual ~StreamEncoder() = default;
    // Appends to `out` what the coding emits for `in` (possibly nothing: it buffers).
    virtual bool write(std::string_view in, std::string& out) = 0;
    // Appends everything written so far in decodable form (zlib Z_SYNC_FLUSH, brotli FLUSH):
    // what the client has can be shown now, so a server-sent event is never held back.
    virtual bool flush(std::string& out) = 0;
    // Ends the stream (trailer, checksum). Nothing may be written after.
    virtual bool finish(std::string& out) = 0;
};
using StreamEncoderPtr = std::unique_ptr<StreamEncoder>;
// Null for identity or when the library cannot allocate its state.
StreamEncoderPtr makeStreamEncoder(Coding coding, int level);

}  // namespace strata::http
