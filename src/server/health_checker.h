// Active health checks, run on the main thread's loop: one probe per server of every upstream
// with a health_check block. A probe connects, sends one request (Connection: close), reads the
// response head with the strict parser, and counts passes and failures:
//
//   healthy ──fall consecutive failures──▶ unhealthy ──rise consecutive passes──▶ healthy
//
// Only the transitions touch ServerState (setHealthy; a server coming back also has its passive
// back-off cleared), so workers see a flag flip, nothing more. Probes never overlap: the config
// rejects timeout > interval, and the next probe is scheduled when the current one ends.
#pragma once

#include <map>
#include <memory>

#include "strata/event/loop.h"
#include "strata/proxy/snapshot.h"

namespace strata::server {

class HealthChecker {
public:
    explicit HealthChecker(event::Loop& loop);
    ~HealthChecker();
    HealthChecker(const HealthChecker&) = delete;
    HealthChecker& operator=(const HealthChecker&) = delete;

    // Probes exactly the servers of `snapshot` whose upstream has health checks. A server kept
    // across a reload (same ServerState) keeps its probe, counters and state; a probe whose
    // check settings changed starts over.
    void update(const proxy::Snapshot& snapshot);
    void stop();

private:
    class Probe;
    event::Loop& loop_;
    std::map<const void*, std::unique_ptr<Probe>> probes_;  // by ServerState address
};

}  // namespace strata::server
