// Admin-API helpers for end-to-end cases: scrape /metrics, poll until a condition holds.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "raw_client.h"

namespace strata::test {

// The value of the first sample in `metrics_text` named `name` (exactly: "x_bucket" is not "x")
// whose label set contains every `label_parts` entry (written `key="value"`); -1 when absent.
inline double metricIn(const std::string& metrics_text, const std::string& name,
                       const std::vector<std::string>& label_parts = {}) {
    std::istringstream in(metrics_text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) {
            continue;
        }
        const char next = line.size() > name.size() ? line[name.size()] : '\0';
        if (next != '{' && next != ' ') {
            continue;
        }
        const auto space = line.rfind(' ');
        const std::string labels = line.substr(name.size(), space - name.size());
        bool match = true;
        for (const auto& part : label_parts) {
            if (labels.find(part) == std::string::npos) {
                match = false;
                break;
            }
        }
        if (match) {
            return std::stod(line.substr(space + 1));
        }
    }
    return -1;
}

inline std::string scrape(std::uint16_t admin_port) {
    return get(admin_port, "/metrics").body;
}

inline double metric(std::uint16_t admin_port, const std::string& name,
                     const std::vector<std::string>& label_parts = {}) {
    return metricIn(scrape(admin_port), name, label_parts);
}

// Polls `pred` every 20 ms until it holds or `timeout` passes. For waiting on observable state
// (a metric, /status), never on time itself.
inline bool eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pred();
}

}  // namespace strata::test
