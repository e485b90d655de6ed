// Route actions and rules (src/proxy/route_actions.cpp): redirect Locations, path rewrites,
// header rule templates and the edits they make.
#include "strata/proxy/route_actions.h"

#include <doctest/doctest.h>

namespace sp = strata::proxy;
using strata::config::RouteRedirect;
using strata::config::RouteRewrite;

namespace {

std::string location(const RouteRedirect& r, std::string_view prefix, std::string_view scheme,
                     std::string_view host, std::string_view path, std::string_view query = "") {
    return sp::redirectLocation(r, prefix, scheme, host, path, query);
}

std::string rewritten(const RouteRewrite& r, std::string_view path) {
    return sp::PathRewrite(r).apply(path);
}

// The forwarded head of `fields` after `rules`, one "Name: value" line per field.
std::string edited(const strata::config::HeaderRules& rules, strata::http::Fields fields,
                   const sp::RuleVariables& vars = {}) {
    sp::HeaderRuleSet set(rules);
    strata::http::FieldEdits edits;
    std::vector<std::string> storage;
    set.apply(edits, vars, storage);
    std::string out;
    strata::http::appendForwardedFields(out, fields, edits);
    return out;
}

}  // namespace

TEST_SUITE("proxy/route_actions") {
    TEST_CASE("redirect: scheme change drops the request's port, an explicit port is written") {
        RouteRedirect r;
        r.scheme = "https";
        CHECK(location(r, "", "http", "example.com:8080", "/a", "q=1") ==
              "https://example.com/a?q=1");
        CHECK(location(r, "", "http", "[2001:db8::1]:80", "/") == "https://[2001:db8::1]/");
        r.port = 8443;
        CHECK(location(r, "", "http", "example.com", "/a") == "https://example.com:8443/a");
        r.port = 443;  // the scheme's default is not written
        CHECK(location(r, "", "http", "example.com", "/a") == "https://example.com/a");
        RouteRedirect same;  // nothing changes the authority: it stays as the client wrote it
        CHECK(location(same, "", "http", "example.com:8080", "/a") == "http://example.com:8080/a");
    }

    TEST_CASE("redirect: host, whole path, prefix replacement and query drop") {
        RouteRedirect r;
        r.host = "www.example.com";
        r.path = "/moved";
        r.query = "drop";
        CHECK(location(r, "", "https", "example.com", "/old/page", "a=1") ==
              "https://www.example.com/moved");
        RouteRedirect p;
        p.prefix = "/new/";
        CHECK(location(p, "/old/", "http", "h", "/old/x/y", "k=v") == "http://h/new/x/y?k=v");
        p.prefix = "/";
        CHECK(location(p, "/docs", "http", "h", "/docs/intro") == "http://h/intro");
    }

    TEST_CASE("rewrite: strip and add prefixes, never an empty path") {
        RouteRewrite r;
        r.strip_prefix = "/api";
        CHECK(rewritten(r, "/api/users") == "/users");
        CHECK(rewritten(r, "/api") == "/");
        CHECK(rewritten(r, "/other") == "/other");  // no prefix: left as it is
        r.add_prefix = "/v2/";
        CHECK(rewritten(r, "/api/users") == "/v2/users");
        RouteRewrite add;
        add.add_prefix = "/internal";
        CHECK(rewritten(add, "/x") == "/internal/x");
    }

    TEST_CASE("rewrite: a regex over the whole path with captures, or nothing") {
        RouteRewrite r;
        r.regex = "/api/v([0-9]+)/(.*)";
        r.replace = "/\\2?version=\\1";
        CHECK(rewritten(r, "/api/v3/users/7") == "/users/7?version=3");
        CHECK(rewritten(r, "/x/api/v3/users") == "/x/api/v3/users");  // not a whole match
        RouteRewrite alt;  // leftmost-first alternation still has to cover the whole path
        alt.regex = "/a|/ab";
        alt.replace = "/z";
        CHECK(rewritten(alt, "/ab") == "/z");
    }

    TEST_CASE("value templates fill in the request's variables") {
        sp::RuleVariables vars{"198.51.100.7", "00ab", "https", "example.com"};
        std::string out;
        sp::ValueTemplate("id=${request_id}; for=${client_address}").expand(vars, out);
        CHECK(out == "id=00ab; for=198.51.100.7");
        sp::ValueTemplate("${scheme}://${host}/").expand(vars, out);
        CHECK(out == "https://example.com/");
        sp::ValueTemplate plain("max-age=63072000");
        CHECK(plain.constant());
        plain.expand(vars, out);
        CHECK(out == "max-age=63072000");
    }

    TEST_CASE("header rules: remove drops all, set replaces, add appends; names any case") {
        strata::config::HeaderRules rules;
        rules.remove = {"x-debug"};
        rules.set = {{"X-Route", "api"}, {"Cache-Control", "no-store"}};
        rules.add = {{"X-Id", "${request_id}"}};
        strata::http::Fields fields;
        fields.add("X-Debug", "1");
        fields.add("X-DEBUG", "2");
        fields.add("Cache-Control", "max-age=60");
        fields.add("X-Kept", "k");
        sp::RuleVariables vars;
        vars.request_id = "r1";
        const std::string out = edited(rules, fields, vars);
        CHECK(out.find("X-Debug") == std::string::npos);
        CHECK(out.find("X-DEBUG") == std::string::npos);
        CHECK(out.find("max-age=60") == std::string::npos);
        CHECK(out.find("X-Kept: k\r\n") != std::string::npos);
        CHECK(out.find("X-Route: api\r\n") != std::string::npos);
        CHECK(out.find("Cache-Control: no-store\r\n") != std::string::npos);
        CHECK(out.find("X-Id: r1\r\n") != std::string::npos);

        sp::HeaderRuleSet set(rules);
        CHECK(set.dropsAnyOf(fields));
        CHECK(set.adds("x-route"));
        CHECK_FALSE(set.adds("X-Debug"));
        strata::http::Fields other;
        other.add("X-Kept", "k");
        CHECK_FALSE(set.dropsAnyOf(other));
    }
}
