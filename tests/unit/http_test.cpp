#include <doctest/doctest.h>

TEST_SUITE("http") {
    TEST_CASE("placeholder") { CHECK(true); }
}
