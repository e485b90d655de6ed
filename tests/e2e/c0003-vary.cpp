// Vary (RFC 9111 4.1): variants of one URL stored side by side, each served only to requests
// with matching values; Vary: * never served from the cache.
#include "cache_support.h"

using namespace strata::test;

TEST_SUITE("e2e/cache") {
    TEST_CASE("two Accept-Encoding variants stored side by side") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        // /headers echoes the request fields, so each variant's body names its own value.
        const std::string url =
            "/headers?" + ccParam("max-age=60") + "&" + hParam("Vary", "Accept-Encoding");
        const auto port = strata.port();

        auto gzip1 = get(port, url, "Accept-Encoding: gzip\r\n");
        STRATA_CACHE_STATUS(gzip1);
        CHECK(cacheStatusHas(gzip1, "fwd=uri-miss"));
        CHECK(cacheStatusHas(gzip1, "stored"));
        auto br1 = get(port, url, "Accept-Encoding: br\r\n");
        STRATA_CACHE_STATUS(br1);
        CHECK(cacheStatusHas(br1, "fwd=vary-miss"));
        CHECK(cacheStatusHas(br1, "stored"));
        CHECK(origin.requestCount(0, "/headers") == 2);

        auto gzip2 = get(port, url, "Accept-Encoding: gzip\r\n");
        auto br2 = get(port, url, "Accept-Encoding: br\r\n");
        STRATA_CACHE_STATUS(gzip2);
        CHECK(cacheStatusHas(gzip2, "hit"));
        CHECK(cacheStatusHas(br2, "hit"));
        CHECK(EchoedHead(gzip2.body).value("Accept-Encoding") == "gzip");
        CHECK(EchoedHead(br2.body).value("Accept-Encoding") == "br");
        CHECK(gzip2.header("Vary") == "Accept-Encoding");
        CHECK(origin.requestCount(0, "/headers") == 2);

        // No Accept-Encoding at all is a third variant.
        auto none = get(port, url);
        CHECK(cacheStatusHas(none, "fwd=vary-miss"));
        CHECK_FALSE(EchoedHead(none.body).has("Accept-Encoding"));
        auto none2 = get(port, url);
        CHECK(cacheStatusHas(none2, "hit"));
        CHECK(origin.requestCount(0, "/headers") == 3);
    }

    TEST_CASE("Vary values compare after whitespace normalisation, not case-folding") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url =
            "/headers?" + ccParam("max-age=60") + "&" + hParam("Vary", "Accept-Encoding");
        get(strata.port(), url, "Accept-Encoding: gzip, br\r\n");
        auto same = get(strata.port(), url, "Accept-Encoding: gzip,br\r\n");
        STRATA_CACHE_STATUS(same);
        CHECK(cacheStatusHas(same, "hit"));
        CHECK(origin.requestCount(0, "/headers") == 1);
    }

    TEST_CASE("Accept-Language variants compare as sets: case and order do not split them") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url =
            "/headers?" + ccParam("max-age=60") + "&" + hParam("Vary", "Accept-Language");
        get(strata.port(), url, "Accept-Language: en-US, fr;q=0.8\r\n");
        auto same = get(strata.port(), url, "Accept-Language: fr; q=0.8, en-us\r\n");
        STRATA_CACHE_STATUS(same);
        CHECK(cacheStatusHas(same, "hit"));
        auto other = get(strata.port(), url, "Accept-Language: fr, en-US;q=0.8\r\n");
        CHECK(cacheStatusHas(other, "fwd=vary-miss"));
        CHECK(origin.requestCount(0, "/headers") == 2);
    }

    TEST_CASE("Vary: * is never served from the cache") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/star?" + ccParam("max-age=60") + "&" + hParam("Vary", "*");
        for (int i = 0; i < 3; ++i) {
            auto r = get(strata.port(), url);
            STRATA_CACHE_STATUS(r);
            CHECK(r.status == 200);
            CHECK_FALSE(cacheStatusHas(r, "hit"));
            CHECK_FALSE(cacheStatusHas(r, "stored"));
        }
        CHECK(origin.requestCount(0, "/star") == 3);
    }

    TEST_CASE("Vary on two fields: both must match") {
        Origin origin;
        Strata strata(cacheConfig(origin.serversYaml()));
        const std::string url = "/headers?" + ccParam("max-age=60") + "&" +
                                hParam("Vary", "Accept-Encoding, Accept-Language");
        get(strata.port(), url, "Accept-Encoding: gzip\r\nAccept-Language: en\r\n");
        auto other_lang =
            get(strata.port(), url, "Accept-Encoding: gzip\r\nAccept-Language: fr\r\n");
        CHECK(cacheStatusHas(other_lang, "fwd=vary-miss"));
        auto en = get(strata.port(), url, "Accept-Language: en\r\nAccept-Encoding: gzip\r\n");
        STRATA_CACHE_STATUS(en);
        CHECK(cacheStatusHas(en, "hit"));
        CHECK(EchoedHead(en.body).value("Accept-Language") == "en");
        CHECK(origin.requestCount(0, "/headers") == 2);
    }
}
