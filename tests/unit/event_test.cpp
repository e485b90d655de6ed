#include <doctest/doctest.h>

TEST_SUITE("event") {
    TEST_CASE("placeholder") { CHECK(true); }
}
