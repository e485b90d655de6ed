#include <string_view>

#include "strata/server/server.h"

namespace strata::server {

std::string usage() {
    return "usage: strata -c FILE [--port-file FILE]\n"
           "       strata --check -c FILE\n"
           "\n"
           "  -c, --config FILE   configuration file (YAML)\n"
           "      --check         validate the configuration and exit (0 when valid)\n"
           "      --port-file F   write \"NAME HOST:PORT\" for every bound listener to F\n"
           "  -v, --version       print the version and exit\n"
           "  -h, --help          print this help and exit\n"
           "\n"
           "signals: HUP reloads the configuration, TERM/INT drain and exit, USR1 reopens logs\n";
}

Result<Options> parseOptions(int argc, const char* const* argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&](std::string_view name) -> Result<std::string> {
            if (i + 1 >= argc) {
                return Error{std::string(name) + " needs a value"};
            }
            return std::string(argv[++i]);
        };
        if (arg == "-c" || arg == "--config") {
            auto v = value(arg);
            if (!v) {
                return Error{v.error()};
            }
            options.config_path = v.value();
        } else if (arg.starts_with("--config=")) {
            options.config_path = std::string(arg.substr(9));
        } else if (arg == "--port-file") {
            auto v = value(arg);
            if (!v) {
                return Error{v.error()};
            }
            options.port_file = v.value();
        } else if (arg == "--check" || arg == "-t") {
            options.check_only = true;
        } else if (arg == "-v" || arg == "--version") {
            options.show_version = true;
        } else if (arg == "-h" || arg == "--help") {
            options.show_help = true;
        } else {
            return Error{"unknown argument: " + std::string(arg)};
        }
    }
    if (!options.show_help && !options.show_version && options.config_path.empty()) {
        return Error{"missing -c FILE"};
    }
    return options;
}

}  // namespace strata::server
