#include "strata/admin/admin.h"

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
    PurgeResult purgeUrl(std::string_view url, bool soft) override {
        last = std::string(soft ? "soft " : "") + "url:" + std::string(url);
        return {200, 1, ""};
    }
    PurgeResult purgePrefix(std::string_view p, bool soft) override {
        last = std::string(soft ? "soft " : "") + "prefix:" + std::string(p);
        return {200, 4, ""};
    }
    PurgeResult purgeTag(std::string_view t, bool soft) override {
        last = std::string(soft ? "soft " : "") + "tag:" + std::string(t);
        return {200, 2, ""};
    }
    std::string last;
};

Request req(std::string method, std::string path, std::string query = "", std::string auth = "") {
    return Request{std::move(method), std::move(path), std::move(query), std::move(auth)};
}

}  // namespace

TEST_SUITE("admin/router") {
    TEST_CASE("read-only endpoints answer without a token") {
        FakeStatus status;
        Router router(Handlers{&status, nullptr, nullptr, nullptr, "strata_x 1\n"});
        CHECK(router.handle(req("GET", "/healthz")).status == 200);
        CHECK(router.handle(req("GET", "/readyz")).status == 200);
        status.ready = false;
        CHECK(router.handle(req("GET", "/readyz")).status == 503);
        auto m = router.handle(req("GET", "/metrics"));
        CHECK(m.status == 200);
        CHECK(m.body == "strata_x 1\n");
        CHECK(m.content_type.find("version=0.0.4") != std::string::npos);
        auto s = router.handle(req("GET", "/status"));
        CHECK(s.status == 200);
        CHECK(s.content_type == "application/json");
        CHECK(s.body.find("\"version\":7") != std::string::npos);
        CHECK(s.body.find("\"path\":\"/etc/strata/\\\"x\\\".yaml\"") != std::string::npos);
        CHECK(s.body.find("\"address\":\"127.0.0.1:8000\",\"weight\":2,\"healthy\":false") !=
              std::string::npos);
        CHECK(s.body.find("\"in_flight\":5") != std::string::npos);
        CHECK(s.body.find("\"l1\":{\"bytes\":0") != std::string::npos);
        CHECK(router.handle(req("GET", "/nope")).status == 404);
        CHECK(router.handle(req("POST", "/metrics")).status == 405);
        CHECK(router.handle(req("GET", "/reload")).status == 405);
    }

    TEST_CASE("state-changing endpoints need the bearer token") {
        FakeStatus status;
        FakeReload reload;
        FakePurge purge;
        Router router(Handlers{&status, &reload, &purge, nullptr, ""});
        SUBCASE("no token file: disabled") {
            CHECK(router.handle(req("POST", "/reload", "", "Bearer x")).status == 403);
            CHECK(reload.calls == 0);
        }
        SUBCASE("wrong or missing token: 401, counted, nothing done") {
            router.setToken("s3cret");
            double before =
                strata::metrics::global().valueForTest("strata_admin_unauthorized_total");
            CHECK(router.handle(req("POST", "/reload")).status == 401);
            CHECK(router.handle(req("POST", "/reload", "", "Bearer s3cre")).status == 401);
            CHECK(router.handle(req("POST", "/reload", "", "Bearer s3cret2")).status == 401);
            CHECK(router.handle(req("POST", "/reload", "", "s3cret")).status == 401);
            CHECK(router.handle(req("POST", "/purge", "url=/a", "Basic s3cret")).status == 401);
            CHECK(reload.calls == 0);
            CHECK(purge.last.empty());
            CHECK(strata::metrics::global().valueForTest("strata_admin_unauthorized_total") ==
                  before + 5);
        }
        SUBCASE("right token: reload and purge run") {
            router.setToken("s3cret");
            auto ok = router.handle(req("POST", "/reload", "", "Bearer s3cret"));
            CHECK(ok.status == 200);
            CHECK(ok.body.find("running version 8") != std::string::npos);
            reload.ok = false;
            auto bad = router.handle(req("POST", "/reload", "", "Bearer s3cret"));
            CHECK(bad.status == 422);
            CHECK(bad.body.find("f:1:1: x: bad") != std::string::npos);
            CHECK(reload.calls == 2);
            CHECK(router.handle(req("POST", "/purge", "url=%2Fa%20b", "Bearer s3cret")).status ==
                  200);
            CHECK(purge.last == "url:/a b");
            auto p = router.handle(req("POST", "/purge", "prefix=/img/", "Bearer s3cret"));
            CHECK(p.body == "purged 4\n");
            CHECK(router.handle(req("POST", "/purge", "tag=t1", "Bearer s3cret")).status == 200);
            CHECK(purge.last == "tag:t1");
            CHECK(router.handle(req("POST", "/purge", "x=1", "Bearer s3cret")).status == 400);
        }
        SUBCASE("soft=1 or soft=true marks stale instead of removing") {
            router.setToken("s3cret");
            auto soft = router.handle(req("POST", "/purge", "url=%2Fa&soft=1", "Bearer s3cret"));
            CHECK(soft.status == 200);
            CHECK(soft.body == "soft-purged 1\n");
            CHECK(purge.last == "soft url:/a");
            CHECK(
                router.handle(req("POST", "/purge", "soft=true&tag=t1", "Bearer s3cret")).status ==
                200);
            CHECK(purge.last == "soft tag:t1");
            CHECK(router.handle(req("POST", "/purge", "prefix=/p&soft=0", "Bearer s3cret")).body ==
                  "purged 4\n");
            CHECK(purge.last == "prefix:/p");
            purge.last.clear();
            CHECK(
                router.handle(req("POST", "/purge", "url=%2Fa&soft=yes", "Bearer s3cret")).status ==
                400);
            CHECK(purge.last.empty());
        }
    }

    TEST_CASE("purge answers 501 until the cache provides a handler") {
        Router router(Handlers{});
        router.setToken("t");
        CHECK(router.handle(req("POST", "/purge", "url=/a", "Bearer t")).status == 501);
        CHECK(router.handle(req("POST", "/reload", "", "Bearer t")).status == 501);
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
