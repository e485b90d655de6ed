// Content codings over zlib and libbrotli, Accept-Encoding negotiation and encoded ETags.
#include "strata/http/content_coding.h"

#include <algorithm>
#include <brotli/decode.h>
#include <brotli/encode.h>
#include <climits>
#include <zlib.h>

#include "strata/common/strings.h"

namespace strata::http {
namespace {

// zlib's windowBits for a gzip wrapper (RFC 1952) instead of zlib's own (RFC 1950).
constexpr int kGzipWindow = 15 + 16;
// zlib's memLevel 8 (its default): 128 KiB of deflate state besides the 32 KiB window.
constexpr int kGzipMemLevel = 8;
// Streaming brotli keeps a 256 KiB window: the bound on what one streamed answer holds, where
// a stored body (compressed once, in one call) gets brotli's default 4 MiB window.
constexpr int kStreamBrotliWindow = 18;
constexpr std::size_t kOutStep = 16 * 1024;

constexpr std::array<std::string_view, kCodingCount> kTokens{"identity", "gzip", "br"};

// RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), as 0..1000.
std::optional<int> parseQvalue(std::string_view s) {
    if (s.empty() || (s[0] != '0' && s[0] != '1')) {
        return std::nullopt;
    }
    int whole = s[0] - '0';
    if (s.size() == 1) {
        return whole * 1000;
    }
    if (s[1] != '.' || s.size() > 5) {
        return std::nullopt;
    }
    int frac = 0;
    int digits = 0;
    for (char c : s.substr(2)) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        frac = frac * 10 + (c - '0');
        ++digits;
    }
    for (; digits < 3; ++digits) {
        frac *= 10;
    }
    if (whole == 1 && frac != 0) {
        return std::nullopt;
    }
    return whole * 1000 + frac;
}

// One element "token [; q=value]": the lowercase token and its quality, or false when the
// element does not parse (it is then ignored).
bool parseElement(std::string_view element, std::string& token, int& q) {
    auto semi = element.find(';');
    token = toLower(trimOws(element.substr(0, semi)));
    q = 1000;
    if (token.empty()) {
        return false;
    }
    while (semi != std::string_view::npos) {
        element.remove_prefix(semi + 1);
        semi = element.find(';');
        std::string_view param = trimOws(element.substr(0, semi));
        auto eq = param.find('=');
        if (eq == std::string_view::npos) {
            return false;
        }
        if (equalsIgnoreCase(trimOws(param.substr(0, eq)), "q")) {
            auto parsed = parseQvalue(trimOws(param.substr(eq + 1)));
            if (!parsed) {
                return false;
            }
            q = *parsed;
        }
    }
    return true;
}

int qualityOr(int named, int star) {
    if (named >= 0) {
        return named;
    }
    return star >= 0 ? star : 0;
}

bool strongTag(std::string_view etag) {
    return etag.size() >= 2 && etag.front() == '"' && etag.back() == '"' &&
           etag.find('"', 1) == etag.size() - 1;
}

class GzipStream final : public StreamEncoder {
public:
    bool init(int level) {
        ok_ = deflateInit2(&z_, level, Z_DEFLATED, kGzipWindow, kGzipMemLevel,
                           Z_DEFAULT_STRATEGY) == Z_OK;
        return ok_;
    }
    ~GzipStream() override {
        if (ok_) {
            deflateEnd(&z_);
        }
    }
    bool write(std::string_view in, std::string& out) override { return run(in, Z_NO_FLUSH, out); }
    bool flush(std::string& out) override { return run({}, Z_SYNC_FLUSH, out); }
    bool finish(std::string& out) override { return run({}, Z_FINISH, out); }

private:
    bool run(std::string_view in, int mode, std::string& out) {
        if (!ok_) {
            return false;
        }
        while (true) {
            // uInt is 32 bits: a larger input goes in slices.
            const std::size_t slice = std::min<std::size_t>(in.size(), UINT_MAX);
            z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
            z_.avail_in = static_cast<uInt>(slice);
            const int step_mode = slice == in.size() ? mode : Z_NO_FLUSH;
            int rc = Z_OK;
            do {
                const std::size_t before = out.size();
                out.resize(before + kOutStep);
                z_.next_out = reinterpret_cast<Bytef*>(out.data() + before);
                z_.avail_out = static_cast<uInt>(kOutStep);
                rc = deflate(&z_, step_mode);
                out.resize(out.size() - z_.avail_out);
                if (rc == Z_STREAM_ERROR) {
                    return false;
                }
            } while (z_.avail_out == 0 || (step_mode == Z_FINISH && rc != Z_STREAM_END));
            in.remove_prefix(slice - z_.avail_in);
            if (in.empty()) {
                return true;
            }
        }
    }
    z_stream z_{};
    bool ok_ = false;
};

class BrotliStream final : public StreamEncoder {
public:
    bool init(int level) {
        state_ = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
        return state_ != nullptr &&
               BrotliEncoderSetParameter(state_, BROTLI_PARAM_QUALITY,
                                         static_cast<std::uint32_t>(level)) &&
               BrotliEncoderSetParameter(state_, BROTLI_PARAM_LGWIN, kStreamBrotliWindow);
    }
    ~BrotliStream() override {
        if (state_ != nullptr) {
            BrotliEncoderDestroyInstance(state_);
        }
    }
    bool write(std::string_view in, std::string& out) override {
        return run(in, BROTLI_OPERATION_PROCESS, out);
    }
    bool flush(std::string& out) override { return run({}, BROTLI_OPERATION_FLUSH, out); }
    bool finish(std::string& out) override { return run({}, BROTLI_OPERATION_FINISH, out); }

private:
    bool run(std::string_view in, BrotliEncoderOperation op, std::string& out) {
        if (state_ == nullptr) {
            return false;
        }
        std::size_t avail_in = in.size();
        const auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
        while (true) {
            std::size_t avail_out = 0;  // output is taken below, from brotli's own buffer
            if (!BrotliEncoderCompressStream(state_, op, &avail_in, &next_in, &avail_out, nullptr,
                                             nullptr)) {
                return false;
            }
            std::size_t n = 0;
            const std::uint8_t* p = BrotliEncoderTakeOutput(state_, &n);
            out.append(reinterpret_cast<const char*>(p), n);
            const bool drained = avail_in == 0 && !BrotliEncoderHasMoreOutput(state_);
            if (op == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(state_) != 0 : drained) {
                return true;
            }
        }
    }
    BrotliEncoderState* state_ = nullptr;
};

std::optional<std::string> gunzip(std::string_view data, std::size_t max_bytes) {
    z_stream z{};
    if (inflateInit2(&z, kGzipWindow) != Z_OK) {
        return std::nullopt;
    }
    std::string out;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (z.avail_in == 0 && !data.empty()) {
            const std::size_t slice = std::min<std::size_t>(data.size(), UINT_MAX);
            z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
            z.avail_in = static_cast<uInt>(slice);
            data.remove_prefix(slice);
        }
        const std::size_t before = out.size();
        out.resize(before + kOutStep);
        z.next_out = reinterpret_cast<Bytef*>(out.data() + before);
        z.avail_out = static_cast<uInt>(kOutStep);
        rc = inflate(&z, Z_NO_FLUSH);
        out.resize(out.size() - z.avail_out);
        const bool stuck = rc == Z_BUF_ERROR && z.avail_in == 0 && data.empty();
        if ((rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) || stuck ||
            out.size() > max_bytes) {
            inflateEnd(&z);
            return std::nullopt;
        }
    }
    inflateEnd(&z);
    return out;
}

std::optional<std::string> unbrotli(std::string_view data, std::size_t max_bytes) {
    BrotliDecoderState* s = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
    if (s == nullptr) {
        return std::nullopt;
    }
    std::string out;
    std::size_t avail_in = data.size();
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(data.data());
    while (true) {
        std::size_t avail_out = 0;
        BrotliDecoderResult rc =
            BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, nullptr, nullptr);
        std::size_t n = 0;
        const std::uint8_t* p = BrotliDecoderTakeOutput(s, &n);
        out.append(reinterpret_cast<const char*>(p), n);
        if (out.size() > max_bytes || rc == BROTLI_DECODER_RESULT_ERROR ||
            rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) {
            BrotliDecoderDestroyInstance(s);
            return std::nullopt;
        }
        if (rc == BROTLI_DECODER_RESULT_SUCCESS) {
            BrotliDecoderDestroyInstance(s);
            return out;
        }
    }
}

}  // namespace

std::string_view codingToken(Coding coding) {
    return kTokens[static_cast<std::size_t>(coding)];
}

std::optional<Coding> parseCodingToken(std::string_view token) {
    if (equalsIgnoreCase(token, "gzip") || equalsIgnoreCase(token, "x-gzip")) {
        return Coding::Gzip;
    }
    if (equalsIgnoreCase(token, "br")) {
        return Coding::Br;
    }
    return std::nullopt;
}

int AcceptEncoding::quality(Coding coding) const {
    if (!present) {
        // No field: RFC 9110 12.5.3 says any coding is acceptable, yet a client that sends
        // none (curl, scripts) usually cannot decode one; identity is what it gets.
        return coding == Coding::Identity ? 1000 : 0;
    }
    const int named = q[static_cast<std::size_t>(coding)];
    if (coding == Coding::Identity) {
        // Acceptable by default unless refused by name or by "*;q=0" without a name.
        if (named >= 0) {
            return named;
        }
        return star == 0 ? 0 : 1000;
    }
    return qualityOr(named, star);
}

AcceptEncoding parseAcceptEncoding(std::string_view value, bool present) {
    AcceptEncoding out;
    out.present = present;
    if (!present) {
        return out;
    }
    std::string token;
    forEachListElement(value, [&](std::string_view element) {
        int q = 0;
        if (!parseElement(element, token, q)) {
            return;
        }
        // A repeated coding keeps its first quality; later ones are ignored.
        auto set = [q](int& slot) {
            if (slot < 0) {
                slot = q;
            }
        };
        if (token == "*") {
            set(out.star);
        } else if (token == "identity") {
            set(out.q[static_cast<std::size_t>(Coding::Identity)]);
        } else if (token == "deflate") {
            set(out.deflate);
        } else if (token == "zstd") {
            set(out.zstd);
        } else if (auto coding = parseCodingToken(token)) {
            set(out.q[static_cast<std::size_t>(*coding)]);
        }
    });
    return out;
}

AcceptEncoding acceptEncodingOf(const Fields& request_fields) {
    std::string joined;
    bool present = false;
    for (const auto& f : request_fields) {
        if (equalsIgnoreCase(f.name, "Accept-Encoding")) {
            if (present) {
                joined.push_back(',');
            }
            joined.append(f.value);
            present = true;
        }
    }
    return parseAcceptEncoding(joined, present);
}

Coding chooseCoding(const AcceptEncoding& accept, std::span<const Coding> available) {
    Coding best = Coding::Identity;
    int best_q = 0;
    for (Coding c : available) {
        const int q = c == Coding::Identity ? 0 : accept.quality(c);
        if (q > best_q) {
            best = c;
            best_q = q;
        }
    }
    // A tie with identity goes to the coding ("gzip, identity" and "*" want compression).
    if (best != Coding::Identity && best_q < accept.quality(Coding::Identity)) {
        return Coding::Identity;
    }
    return best;
}

unsigned acceptClass(const AcceptEncoding& accept) {
    if (!accept.present) {
        return 0;
    }
    unsigned bits = 0;
    bits |= accept.quality(Coding::Gzip) > 0 ? 1u : 0u;
    bits |= accept.quality(Coding::Br) > 0 ? 2u : 0u;
    bits |= qualityOr(accept.deflate, accept.star) > 0 ? 4u : 0u;
    bits |= qualityOr(accept.zstd, accept.star) > 0 ? 8u : 0u;
    return bits;
}

std::string acceptClassKey(const AcceptEncoding& accept) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "ae:";
    out.push_back(kHex[acceptClass(accept) & 0xf]);
    return out;
}

std::string acceptClassKey(std::string_view accept_encoding_value, bool present) {
    return acceptClassKey(parseAcceptEncoding(accept_encoding_value, present));
}

std::string encodedEtag(std::string_view etag, Coding coding) {
    etag = trimOws(etag);
    if (etag.starts_with("W/")) {
        return strongTag(etag.substr(2)) ? std::string(etag) : std::string();
    }
    if (!strongTag(etag)) {
        return {};
    }
    if (coding == Coding::Identity) {
        return std::string(etag);
    }
    std::string out(etag.substr(0, etag.size() - 1));
    out.push_back('-');
    out.append(codingToken(coding));
    out.push_back('"');
    return out;
}

std::optional<std::string> identityEtag(std::string_view etag) {
    etag = trimOws(etag);
    if (!strongTag(etag)) {
        return std::nullopt;
    }
    std::string_view inner = etag.substr(1, etag.size() - 2);
    for (Coding c : {Coding::Gzip, Coding::Br}) {
        std::string suffix = "-" + std::string(codingToken(c));
        if (inner.size() > suffix.size() && inner.ends_with(suffix)) {
            return "\"" + std::string(inner.substr(0, inner.size() - suffix.size())) + "\"";
        }
    }
    return std::nullopt;
}

bool typeListed(std::string_view content_type, std::span<const std::string> types) {
    std::string media = toLower(trimOws(content_type.substr(0, content_type.find(';'))));
    if (media.empty()) {
        return false;
    }
    const auto slash = media.find('/');
    for (const std::string& t : types) {
        if (t == media) {
            return true;
        }
        if (t.ends_with("/*") && slash != std::string::npos &&
            std::string_view(t).substr(0, t.size() - 1) ==
                std::string_view(media).substr(0, slash + 1)) {
            return true;
        }
    }
    return false;
}

std::optional<std::string> compressBody(Coding coding, std::string_view body, int level) {
    switch (coding) {
        case Coding::Identity:
            return std::string(body);
        case Coding::Gzip: {
            GzipStream z;
            std::string out;
            out.reserve(body.size() / 3 + 64);
            if (!z.init(level) || !z.write(body, out) || !z.finish(out)) {
                return std::nullopt;
            }
            out.shrink_to_fit();
            return out;
        }
        case Coding::Br: {
            std::string out(BrotliEncoderMaxCompressedSize(body.size()), '\0');
            if (out.empty()) {
                return std::nullopt;  // too large for brotli's one-shot bound
            }
            std::size_t size = out.size();
            if (!BrotliEncoderCompress(level, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC,
                                       body.size(),
                                       reinterpret_cast<const std::uint8_t*>(body.data()), &size,
                                       reinterpret_cast<std::uint8_t*>(out.data()))) {
                return std::nullopt;
            }
            out.resize(size);
            out.shrink_to_fit();
            return out;
        }
    }
    return std::nullopt;
}

std::optional<std::string> decompressBody(Coding coding, std::string_view data,
                                          std::size_t max_bytes) {
    switch (coding) {
        case Coding::Identity:
            if (data.size() > max_bytes) {
                return std::nullopt;
            }
            return std::string(data);
        case Coding::Gzip:
            return gunzip(data, max_bytes);
        case Coding::Br:
            return unbrotli(data, max_bytes);
    }
    return std::nullopt;
}

StreamEncoderPtr makeStreamEncoder(Coding coding, int level) {
    switch (coding) {
        case Coding::Identity:
            return nullptr;
        case Coding::Gzip: {
            auto z = std::make_unique<GzipStream>();
            return z->init(level) ? std::move(z) : nullptr;
        }
        case Coding::Br: {
            auto b = std::make_unique<BrotliStream>();
            return b->init(level) ? std::move(b) : nullptr;
        }
    }
    return nullptr;
}

}  // namespace strata::http
