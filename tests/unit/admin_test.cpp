#include "strata/admin/admin.h"

#include <optional>
#include <vector>

#include <doctest/doctest.h>

#include "strata/metrics/metrics.h"

using namespace strata::admin;

namespace {

class FakeStatus final : public StatusProvider {
public:
    Status status() override {
        Status s;
        s.config_version = 7;
        s.ready = ready;
        s.config_path = "/etc/strata/\"x\".yaml";
        UpstreamStatus up;
        up.name = "app";
        up.servers.push_back({"127.0.0.1:8000", 2, false, false, 3, 5});
        s.upstreams.push_back(up);
        return s;
    }
    bool ready = true;
};

class FakeReload final : public ReloadHandler {
public:
    ReloadOutcome reload() override {
        ++calls;
        return {ok, ok ? 8u : 7u,
                ok ? std::vector<std::string>{} : std::vector<std::string>{"f:1:1: x: bad"}};
    }
    bool ok = true;
    int calls = 0;
};

class FakePurge final : public PurgeHandler {
public:
    void purgeUrl(std::string_view url, bool soft, bool both_schemes, PurgeDone done) override {
        last = std::string(soft ? "soft " : "") + (both_schemes ? "" : "exact ") +
               "url:" + std::string(url);
        finish(1, std::move(done));
    }
    void purgePrefix(std::string_view p, bool soft, bool both_schemes, PurgeDone done) override {
        last = std::string(soft ? "soft " : "") + (both_schemes ? "" : "exact ") +
               "prefix:" + std::string(p);
        finish(4, std::move(done));
    }
    void purgeTag(std::string_view t, bool soft, PurgeDone done) override {
        last = std::string(soft ? "soft " : "") + "tag:" + std::string(t);
        finish(2, std::move(done));
    }
    // defer: keep the completion, as the server does while L2 appends to its purge log.
    void finish(std::uint64_t n, PurgeDone done) {
        if (defer) {
            deferred = std::move(done);
            deferred_count = n;
        } else {
            done({200, n, ""});
        }
    }
    std::string last;
    bool defer = false;
    PurgeDone deferred;
    std::uint64_t deferred_count = 0;
};

Request req(std::string method, std::string path, std::string query = "", std::string auth = "") {
    return Request{std::move(method), std::move(path), std::move(query), std::move(auth), ""};
}

// Endpoints that answer inline.
Response call(Router& router, const Request& request) {
    std::optional<Response> answer;
    router.handle(request, [&](Response r) { answer = std::move(r); });
    REQUIRE(answer.has_value());
    return *answer;
}

}  // namespace

TEST_SUITE("admin/router") {
    TEST_CASE("read-only endpoints answer without a token") {
        FakeStatus status;
        Router router(Handlers{&status, nullptr, nullptr, nullptr, "strata_x 1\n"});
        CHECK(call(router, req("GET", "/healthz")).status == 200);
        CHECK(call(router, req("GET", "/readyz")).status == 200);
        status.ready = false;
        CHECK(call(router, req("GET", "/readyz")).status == 503);
        auto m = call(router, req("GET", "/metrics"));
        CHECK(m.status == 200);
        CHECK(m.body == "strata_x 1\n");
        CHECK(m.content_type.find("version=0.0.4") != std::string::npos);
        auto s = call(router, req("GET", "/status"));
        CHECK(s.status == 200);
        CHECK(s.content_type == "application/json");
        CHECK(s.body.find("\"version\":7") != std::string::npos);
        CHECK(s.body.find("\"path\":\"/etc/strata/\\\"x\\\".yaml\"") != std::string::npos);
        CHECK(s.body.find("\"address\":\"127.0.0.1:8000\",\"weight\":2,\"healthy\":false") !=
              std::string::npos);
        CHECK(s.body.find("\"in_flight\":5") != std::string::npos);
        CHECK(s.body.find("\"l1\":{\"bytes\":0") != std::string::npos);
        CHECK(call(router, req("GET", "/nope")).status == 404);
        auto wrong_read = call(router, req("POST", "/metrics"));
        CHECK(wrong_read.status == 405);
        CHECK(wrong_read.allow == "GET, HEAD");
        auto wrong_write = call(router, req("GET", "/reload"));
        CHECK(wrong_write.status == 405);
        CHECK(wrong_write.allow == "POST");
        CHECK(call(router, req("GET", "/purge")).allow == "POST");
        CHECK(call(router, req("GET", "/status")).allow.empty());
    }

    TEST_CASE("state-changing endpoints need the bearer token") {
        FakeStatus status;
        FakeReload reload;
        FakePurge purge;
        Router router(Handlers{&status, &reload, &purge, nullptr, ""});
        SUBCASE("no token file: disabled") {
            CHECK(call(router, req("POST", "/reload", "", "Bearer x")).status == 403);
            CHECK(reload.calls == 0);
        }
        SUBCASE("wrong or missing token: 401, counted, nothing done") {
            router.setToken("s3cret");
            double before =
                strata::metrics::global().valueForTest("strata_admin_unauthorized_total");
            CHECK(call(router, req("POST", "/reload")).status == 401);
            CHECK(call(router, req("POST", "/reload", "", "Bearer s3cre")).status == 401);
            CHECK(call(router, req("POST", "/reload", "", "Bearer s3cret2")).status == 401);
            CHECK(call(router, req("POST", "/reload", "", "s3cret")).status == 401);
            CHECK(call(router, req("POST", "/purge", "url=/a", "Basic s3cret")).status == 401);
            CHECK(reload.calls == 0);
            CHECK(purge.last.empty());
            CHECK(strata::metrics::global().valueForTest("strata_admin_unauthorized_total") ==
                  before + 5);
        }
        SUBCASE("right token: reload and purge run") {
            router.setToken("s3cret");
            auto ok = call(router, req("POST", "/reload", "", "Bearer s3cret"));
            CHECK(ok.status == 200);
            CHECK(ok.body.find("running version 8") != std::string::npos);
            reload.ok = false;
            auto bad = call(router, req("POST", "/reload", "", "Bearer s3cret"));
            CHECK(bad.status == 422);
            CHECK(bad.body.find("f:1:1: x: bad") != std::string::npos);
            CHECK(reload.calls == 2);
            CHECK(call(router, req("POST", "/purge", "url=%2Fa%20b", "Bearer s3cret")).status ==
                  200);
            CHECK(purge.last == "url:/a b");
            auto p = call(router, req("POST", "/purge", "prefix=/img/", "Bearer s3cret"));
            CHECK(p.body == "purged 4\n");
            CHECK(call(router, req("POST", "/purge", "tag=t1", "Bearer s3cret")).status == 200);
            CHECK(purge.last == "tag:t1");
            CHECK(call(router, req("POST", "/purge", "x=1", "Bearer s3cret")).status == 400);
        }
        SUBCASE("soft=1 or soft=true marks stale instead of removing") {
            router.setToken("s3cret");
            auto soft = call(router, req("POST", "/purge", "url=%2Fa&soft=1", "Bearer s3cret"));
            CHECK(soft.status == 200);
            CHECK(soft.body == "soft-purged 1\n");
            CHECK(purge.last == "soft url:/a");
            CHECK(call(router, req("POST", "/purge", "soft=true&tag=t1", "Bearer s3cret")).status ==
                  200);
            CHECK(purge.last == "soft tag:t1");
            CHECK(call(router, req("POST", "/purge", "prefix=/p&soft=0", "Bearer s3cret")).body ==
                  "purged 4\n");
            CHECK(purge.last == "prefix:/p");
            // Both schemes unless asked for one; anything else is refused before purging.
            CHECK(call(router, req("POST", "/purge", "url=%2Fa&scheme=exact", "Bearer s3cret"))
                      .status == 200);
            CHECK(purge.last == "exact url:/a");
            CHECK(call(router, req("POST", "/purge", "prefix=/p&scheme=both", "Bearer s3cret"))
                      .status == 200);
            CHECK(purge.last == "prefix:/p");
            purge.last.clear();
            CHECK(call(router, req("POST", "/purge", "url=%2Fa&scheme=http", "Bearer s3cret"))
                      .status == 400);
            CHECK(purge.last.empty());
            CHECK(
                call(router, req("POST", "/purge", "url=%2Fa&soft=yes", "Bearer s3cret")).status ==
                400);
            CHECK(purge.last.empty());
        }
    }

    TEST_CASE("a purge waiting for the shared tier answers late, and is counted then") {
        FakePurge purge;
        purge.defer = true;
        Router router(Handlers{nullptr, nullptr, &purge, nullptr, ""});
        router.setToken("t");
        auto& registry = strata::metrics::global();
        auto counted = [&](const char* code) {
            double v = registry.valueForTest("strata_admin_requests_total",
                                             {{"endpoint", "/purge"}, {"code", code}});
            return v < 0 ? 0 : v;
        };
        const double ok_before = counted("200");
        const double failed_before = counted("503");
        std::vector<Response> answers;
        auto collect = [&](Response r) { answers.push_back(std::move(r)); };

        router.handle(req("POST", "/purge", "tag=t1", "Bearer t"), collect);
        CHECK(answers.empty());  // not until L2 has answered
        CHECK(counted("200") == ok_before);
        REQUIRE(purge.deferred);
        purge.deferred({200, purge.deferred_count, ""});
        REQUIRE(answers.size() == 1);
        CHECK(answers[0].status == 200);
        CHECK(answers[0].body == "purged 2\n");
        CHECK(counted("200") == ok_before + 1);

        router.handle(req("POST", "/purge", "url=%2Fa&soft=1", "Bearer t"), collect);
        CHECK(answers.size() == 1);
        purge.deferred({503, 1, "soft-purged 1 locally; shared cache (L2) purge failed"});
        REQUIRE(answers.size() == 2);
        CHECK(answers[1].status == 503);
        CHECK(answers[1].body == "soft-purged 1 locally; shared cache (L2) purge failed\n");
        CHECK(counted("503") == failed_before + 1);

        // Refusals and bad arguments never reach the handler: answered inline.
        purge.deferred = nullptr;
        CHECK(call(router, req("POST", "/purge", "url=%2Fa", "Bearer x")).status == 401);
        CHECK(call(router, req("POST", "/purge", "soft=2&url=%2Fa", "Bearer t")).status == 400);
        CHECK(call(router, req("POST", "/purge", "nothing=1", "Bearer t")).status == 400);
        CHECK_FALSE(purge.deferred);
    }

    TEST_CASE("purge answers 501 until the cache provides a handler") {
        Router router(Handlers{});
        router.setToken("t");
        CHECK(call(router, req("POST", "/purge", "url=/a", "Bearer t")).status == 501);
        CHECK(call(router, req("POST", "/reload", "", "Bearer t")).status == 501);
    }
}

TEST_SUITE("admin/helpers") {
    TEST_CASE("constant-time comparison") {
        CHECK(constantTimeEquals("abc", "abc"));
        CHECK_FALSE(constantTimeEquals("abc", "abd"));
        CHECK_FALSE(constantTimeEquals("abc", "ab"));
        CHECK_FALSE(constantTimeEquals("", "a"));
        CHECK(constantTimeEquals("", ""));
    }

    TEST_CASE("query parameters are percent-decoded; malformed escapes rejected") {
        std::string v;
        CHECK(queryParam("a=1&url=%2Fx%3Fy%3D1", "url", v));
        CHECK(v == "/x?y=1");
        CHECK_FALSE(queryParam("a=1", "url", v));
        CHECK_FALSE(queryParam("url=%2", "url", v));
        CHECK_FALSE(queryParam("url=%zz", "url", v));
        CHECK(queryParam("tag=a+b", "tag", v));
        CHECK(v == "a b");
    }
}
