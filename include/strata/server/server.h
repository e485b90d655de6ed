// The process: command line, config load, listeners, worker threads, signals, reload and drain.
// src/main.cpp only calls run().
#pragma once

#include <string>

#include "strata/common/result.h"

namespace strata::server {

struct Options {
    std::string config_path;
    std::string port_file;  // written once every listener is bound: "NAME HOST:PORT" per line
    bool check_only = false;
    bool show_version = false;
    bool show_help = false;
};

Result<Options> parseOptions(int argc, const char* const* argv);
std::string usage();

// Exit codes: 0 ok, 1 runtime failure (bind, ...), 2 usage, 78 (EX_CONFIG) invalid config.
int run(int argc, const char* const* argv);

}  // namespace strata::server
