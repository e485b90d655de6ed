#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>

#include "strata/common/clock.h"
#include "strata/common/free_lists.h"
#include "strata/common/log.h"
#include "strata/common/memory.h"
#include "strata/common/result.h"
#include "strata/common/strings.h"

using namespace strata;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> listElements(std::string_view list) {
    std::vector<std::string> out;
    forEachListElement(list, [&](std::string_view item) { out.emplace_back(item); });
    return out;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

struct TestListsTag {};
using TestLists = ThreadFreeLists<TestListsTag, 4>;

}  // namespace

TEST_SUITE("common/strings") {
    TEST_CASE("case-insensitive comparison is ASCII only and length-sensitive") {
        CHECK(equalsIgnoreCase("Content-Length", "content-length"));
        CHECK(equalsIgnoreCase("", ""));
        CHECK_FALSE(equalsIgnoreCase("Content-Length", "Content-Lengt"));
        CHECK_FALSE(equalsIgnoreCase("a", "b"));
        // '[' is 'A' + 26 and '{' is 'a' + 26: only letters fold.
        CHECK_FALSE(equalsIgnoreCase("[", "{"));
        CHECK_FALSE(equalsIgnoreCase("\xC3\x84", "\xC3\xA4"));  // no Unicode folding
        CHECK(toLower("X-Cache-KEY_1") == "x-cache-key_1");
        CHECK(asciiLower('@') == '@');
        CHECK(asciiLower('Z') == 'z');
    }

    TEST_CASE("trimOws removes spaces and tabs only, at both ends") {
        CHECK(trimOws(" \t max-age=60 \t") == "max-age=60");
        CHECK(trimOws("   ") == "");
        CHECK(trimOws("a b") == "a b");
        CHECK(trimOws("\r\na\r\n") == "\r\na\r\n");  // CR and LF are not OWS
    }

    TEST_CASE("list elements are trimmed and empty ones skipped") {
        CHECK(listElements("gzip, br ,  ,zstd,") == std::vector<std::string>{"gzip", "br", "zstd"});
        CHECK(listElements("").empty());
        CHECK(listElements(" , ,").empty());
        CHECK(listElements("one") == std::vector<std::string>{"one"});
    }

    TEST_CASE("parseDecimal takes plain digits only and never overflows") {
        CHECK(parseDecimal("0") == 0u);
        CHECK(parseDecimal("007") == 7u);
        CHECK(parseDecimal("9999999999999999999") == 9999999999999999999ull);  // 19 digits fit
        CHECK_FALSE(parseDecimal("99999999999999999999"));  // 20 digits could overflow
        CHECK_FALSE(parseDecimal(""));
        CHECK_FALSE(parseDecimal("+1"));
        CHECK_FALSE(parseDecimal("-1"));
        CHECK_FALSE(parseDecimal(" 1"));
        CHECK_FALSE(parseDecimal("1 "));
        CHECK_FALSE(parseDecimal("1.0"));
        CHECK_FALSE(parseDecimal("0x10"));
    }
}

TEST_SUITE("common/result") {
    TEST_CASE("a Result holds either its value or its error") {
        Result<std::string> good(std::string("value"));
        REQUIRE(good.ok());
        CHECK(static_cast<bool>(good));
        CHECK(*good == "value");
        CHECK(good->size() == 5);
        std::string moved = std::move(good).value();
        CHECK(moved == "value");

        Result<std::string> bad(Error{"no such file"});
        CHECK_FALSE(bad.ok());
        CHECK_FALSE(static_cast<bool>(bad));
        CHECK(bad.error() == "no such file");
    }

    TEST_CASE("a default Status is ok; one made from an error is not") {
        Status fine;
        CHECK(fine.ok());
        CHECK(fine.error().empty());
        Status failed(Error{"bind: address in use"});
        CHECK_FALSE(failed.ok());
        CHECK(failed.error() == "bind: address in use");
    }
}

TEST_SUITE("common/free_lists") {
    TEST_CASE("a parked block is popped again, last in first out, per size class") {
        void* a = std::malloc(32);
        void* b = std::malloc(32);
        void* c = std::malloc(64);
        const std::size_t parked_before = TestLists::parked();
        REQUIRE(TestLists::push(a, 0, 8));
        REQUIRE(TestLists::push(b, 0, 8));
        REQUIRE(TestLists::push(c, 1, 8));
        CHECK(TestLists::parked() == parked_before + 3);
        CHECK(TestLists::pop(2) == nullptr);  // an empty class has nothing
        CHECK(TestLists::pop(0) == b);
        CHECK(TestLists::pop(0) == a);
        CHECK(TestLists::pop(0) == nullptr);
        CHECK(TestLists::pop(1) == c);
        CHECK(TestLists::parked() == parked_before);
        std::free(a);
        std::free(b);
        std::free(c);
    }

    TEST_CASE("a class holds at most its limit; the caller frees the rest") {
        void* first = std::malloc(16);
        void* second = std::malloc(16);
        REQUIRE(TestLists::push(first, 3, 1));
        CHECK_FALSE(TestLists::push(second, 3, 1));
        CHECK(TestLists::pop(3) == first);
        CHECK(TestLists::pop(3) == nullptr);
        std::free(first);
        std::free(second);
    }

    TEST_CASE("each thread parks on its own lists and frees them when it exits") {
        void* mine = std::malloc(16);
        REQUIRE(TestLists::push(mine, 2, 4));
        std::size_t other_parked = 99;
        void* other_pop = &other_parked;
        bool other_pushed = false;
        std::thread other([&] {
            other_pop = TestLists::pop(2);  // not this thread's block
            other_pushed = TestLists::push(std::malloc(16), 2, 4);
            other_parked = TestLists::parked();
        });  // its exit frees what it parked (ASan would report a leak otherwise)
        other.join();
        CHECK(other_pop == nullptr);
        CHECK(other_pushed);
        CHECK(other_parked == 1);
        CHECK(TestLists::pop(2) == mine);
        std::free(mine);
    }
}

TEST_SUITE("common/log") {
    TEST_CASE("level names parse; anything else is refused and leaves the output alone") {
        log::Level level = log::Level::Info;
        CHECK(log::parseLevel("debug", level));
        CHECK(level == log::Level::Debug);
        CHECK(log::parseLevel("off", level));
        CHECK(level == log::Level::Off);
        level = log::Level::Warn;
        CHECK_FALSE(log::parseLevel("verbose", level));
        CHECK_FALSE(log::parseLevel("", level));
        CHECK(level == log::Level::Warn);
    }

    TEST_CASE("lines below the level are dropped; a file target is reopened after rotation") {
        char dir_template[] = "/tmp/strata-common-test-XXXXXX";
        const std::string dir = ::mkdtemp(dir_template);
        const std::string path = dir + "/error.log";
        std::string error;
        REQUIRE(log::setTarget(path, error));
        log::setLevel(log::Level::Warn);
        CHECK_FALSE(log::enabled(log::Level::Info));
        CHECK(log::enabled(log::Level::Error));
        LOG_INFO("dropped %d", 1);
        LOG_WARN("kept %d", 2);
        std::string text = readFile(path);
        CHECK(text.find("dropped") == std::string::npos);
        CHECK(text.find("kept 2\n") != std::string::npos);

        std::filesystem::rename(path, path + ".1");
        log::reopen();
        LOG_ERROR("after %s", "rotation");
        CHECK(readFile(path).find("after rotation") != std::string::npos);
        CHECK(readFile(path + ".1").find("after rotation") == std::string::npos);

        CHECK_FALSE(log::setTarget(dir + "/missing/dir/error.log", error));
        CHECK(error.find("cannot open") != std::string::npos);
        REQUIRE(log::setTarget("stderr", error));
        log::setLevel(log::Level::Info);
        std::filesystem::remove_all(dir);
    }

    TEST_CASE("internal errors are counted") {
        const std::uint64_t before = log::internalErrors();
        log::countInternalError();
        log::countInternalError();
        CHECK(log::internalErrors() == before + 2);
    }
}

TEST_SUITE("common/clock") {
    TEST_CASE("a ManualClock moves only when advanced, both clocks together") {
        ManualClock clock;
        const MonoTime mono = clock.monotonic();
        const WallTime wall = clock.wall();
        CHECK(clock.monotonic() == mono);
        clock.advance(1500ms);
        CHECK(clock.monotonic() - mono == 1500ms);
        CHECK(clock.wall() - wall == 1500ms);
        clock.setWall(WallTime{std::chrono::seconds(42)});
        CHECK(clock.wall() == WallTime{std::chrono::seconds(42)});
        CHECK(clock.monotonic() - mono == 1500ms);
    }
}

namespace {
int releases = 0;
}

TEST_CASE("memory::releaseFreedMemory calls the installed hook, and nothing without one") {
    strata::memory::releaseFreedMemory();  // no hook: nothing happens
    strata::memory::setReleaseHook([] { ++releases; });
    strata::memory::releaseFreedMemory();
    strata::memory::releaseFreedMemory();
    CHECK(releases == 2);
    strata::memory::setReleaseHook(nullptr);
    strata::memory::releaseFreedMemory();
    CHECK(releases == 2);
}
