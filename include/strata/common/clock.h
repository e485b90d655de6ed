// Time is passed in (h2o style) so cache and health logic can be tested with a ManualClock.
#pragma once

#include <chrono>
#include <cstdint>

namespace strata {

using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

class Clock {
public:
    virtual ~Clock() = default;
    virtual MonoTime monotonic() const = 0;
    virtual WallTime wall() const = 0;
};

class SystemClock final : public Clock {
public:
    MonoTime monotonic() const override { return std::chrono::steady_clock::now(); }
    WallTime wall() const override { return std::chrono::system_clock::now(); }
    static SystemClock& instance();
};

class ManualClock final : public Clock {
public:
    MonoTime monotonic() const override { return mono_; }
    WallTime wall() const override { return wall_; }
    void advance(Millis d) {
        mono_ += d;
        wall_ += d;
    }
    void setWall(WallTime t) { wall_ = t; }

private:
    MonoTime mono_{std::chrono::hours(1)};
    WallTime wall_{std::chrono::seconds(1'700'000'000)};
};

}  // namespace strata
