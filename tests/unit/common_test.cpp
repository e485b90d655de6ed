#include <doctest/doctest.h>

TEST_SUITE("common") {
    TEST_CASE("placeholder") {
        CHECK(true);
    }
}
