#include "servers.h"

#include <arpa/inet.h>
#include <csignal>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <doctest/doctest.h>

namespace strata::test {

namespace {

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty()) {
            out.push_back(line);
        }
    }
    return out;
}

std::uint16_t portOf(const std::string& host_port) {
    auto colon = host_port.rfind(':');
    if (colon == std::string::npos) {
        throw std::runtime_error("bad address in port file: " + host_port);
    }
    return static_cast<std::uint16_t>(std::stoul(host_port.substr(colon + 1)));
}

[[noreturn]] void startFailed(const std::string& what, Process& proc) {
    proc.stop(1000ms);
    throw std::runtime_error(what + " did not start (exit " + std::to_string(proc.exitCode()) +
                             "); stderr:\n" + proc.stderrText());
}

// Called from destructors of helpers whose process a test may have left running.
void stopAndReport(const char* what, Process& proc) {
    if (proc.running()) {
        // By now the case's clients are gone (declared after the servers, destroyed first), so
        // a drain has nothing to wait for: 10 s is generous and keeps a stuck case bounded.
        proc.stop(10000ms);
    }
    int code = proc.exitCode();
    // -1: never started. A test that expects another exit code checks it and resets nothing,
    // so a crash or sanitizer report is never silent.
    if (code != 0 && code != -1) {
        std::string err = proc.stderrText();
        if (err.size() > 4000) {
            err = "..." + err.substr(err.size() - 4000);
        }
        FAIL_CHECK(std::string(what) << " exited with " << code << "; stderr:\n" << err);
    }
}

}  // namespace

Origin::~Origin() {
    stopAndReport("strata-origin", proc_);
}

Strata::~Strata() {
    stopAndReport("strata", proc_);
}

void Strata::kill() {
    proc_.signal(SIGKILL);
    proc_.wait(10000ms);
    proc_ = Process();  // never started, as far as the destructor is concerned
}

Origin::Origin(int listeners, const std::vector<std::string>& extra_args) {
    std::vector<std::string> argv = {binaryFromEnv("STRATA_ORIGIN_BIN")};
    for (int i = 0; i < listeners; ++i) {
        argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
    }
    std::string port_file = dir_.file("ports");
    argv.insert(argv.end(), {"--port-file", port_file});
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    proc_ = Process(argv, dir_.file("origin"));
    if (!waitForFile(port_file, 10000ms, &proc_)) {
        startFailed("strata-origin", proc_);
    }
    for (const auto& line : lines(readFile(port_file))) {
        ports_.push_back(portOf(line));
    }
}

std::string Origin::serversYaml() const {
    std::string out = "[";
    for (int i = 0; i < size(); ++i) {
        out += (i != 0 ? ", \"" : "\"") + addr(i) + "\"";
    }
    return out + "]";
}

std::uint64_t Origin::requestCount(int i, const std::string& path) {
    Response r = get(port(i), "/__stats");
    if (r.status != 200) {
        throw std::runtime_error("origin /__stats failed: " + r.error);
    }
    for (const auto& line : lines(r.body)) {
        auto space = line.rfind(' ');
        if (line.substr(0, space) == path) {
            return std::stoull(line.substr(space + 1));
        }
    }
    return 0;
}

std::uint64_t Origin::totalCount(const std::string& path) {
    std::uint64_t n = 0;
    for (int i = 0; i < size(); ++i) {
        n += requestCount(i, path);
    }
    return n;
}

void Origin::reset() {
    for (int i = 0; i < size(); ++i) {
        get(port(i), "/__reset");
    }
}

Strata::Strata(const std::string& yaml, const Vars& vars, const std::vector<std::string>& extra) {
    Vars all = vars;
    all["tmp"] = dir_.path().string();
    config_path_ = dir_.file("strata.yaml");
    writeFile(config_path_, substitute(yaml, all));
    std::string port_file = dir_.file("ports");
    std::vector<std::string> argv = {binaryFromEnv("STRATA_BIN"), "-c", config_path_, "--port-file",
                                     port_file};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc_ = Process(argv, dir_.file("strata"));
    if (!waitForFile(port_file, 10000ms, &proc_)) {
        startFailed("strata", proc_);
    }
    // Contract with the server: "NAME HOST:PORT" per listener, written (tmp + rename) after
    // every listener is bound.
    for (const auto& line : lines(readFile(port_file))) {
        auto space = line.find(' ');
        if (space == std::string::npos) {
            throw std::runtime_error("bad port file line: " + line);
        }
        ports_[line.substr(0, space)] = portOf(line.substr(space + 1));
    }
}

std::uint16_t Strata::port(const std::string& listener) const {
    auto it = ports_.find(listener);
    if (it == ports_.end()) {
        throw std::runtime_error("strata has no listener named " + listener);
    }
    return it->second;
}

CheckResult Strata::check(const std::string& yaml, const Vars& vars) {
    TempDir dir;
    Vars all = vars;
    all["tmp"] = dir.path().string();
    CheckResult result;
    result.file = dir.file("strata.yaml");
    writeFile(result.file, substitute(yaml, all));
    Process proc({binaryFromEnv("STRATA_BIN"), "--check", "-c", result.file}, dir.file("check"));
    auto code = proc.wait(20000ms);
    result.exit_code = code ? *code : proc.stop(100ms);
    result.output = proc.stdoutText() + proc.stderrText();
    return result;
}

std::string proxyConfig(const std::string& servers_yaml, const std::string& extra,
                        const std::string& upstream_extra) {
    std::string out =
        "listeners:\n"
        "  - {name: http, bind: \"127.0.0.1:0\"}\n"
        "upstreams:\n"
        "  app:\n"
        "    servers: " +
        servers_yaml + "\n";
    if (!upstream_extra.empty()) {
        out += "    " + upstream_extra + "\n";
    }
    out +=
        "routes:\n"
        "  - {match: {path_prefix: /}, upstream: app}\n"
        "logging: {access_log: off}\n";
    return out + extra;
}

Memcached::Memcached(const std::vector<std::string>& extra_args) {
    std::string port_file = dir_.file("memcached.port");
    std::vector<std::string> argv = {
        "/usr/bin/memcached", "-l", "127.0.0.1", "-p", "-1", "-U", "0"};
    if (::geteuid() == 0) {
        argv.insert(argv.end(), {"-u", "root"});  // memcached refuses to run as root otherwise
    }
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    proc_ = Process(argv, dir_.file("memcached"), {{"MEMCACHED_PORT_FILENAME", port_file}});
    // memcached writes "TCP INET: PORT" once listening (through a .lck file and a rename).
    if (!waitForFile(port_file, 10000ms, &proc_)) {
        startFailed("memcached", proc_);
    }
    for (const auto& line : lines(readFile(port_file))) {
        if (line.rfind("TCP INET:", 0) == 0) {
            port_ = static_cast<std::uint16_t>(std::stoul(line.substr(9)));
        }
    }
    if (port_ == 0) {
        startFailed("memcached (no port in " + port_file + ")", proc_);
    }
}

ScriptedServer::ScriptedServer(std::string reply, bool close_after)
    : reply_(std::move(reply)), close_after_(close_after) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
        throw std::runtime_error("ScriptedServer: bind/listen failed");
    }
    socklen_t len = sizeof sa;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { run(); });
}

ScriptedServer::~ScriptedServer() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes poll() in run()
    thread_.join();
    ::close(listen_fd_);
    for (int fd : kept_) {
        ::close(fd);
    }
}

void ScriptedServer::run() {
    while (!stop_) {
        pollfd pfd{listen_fd_, POLLIN, 0};
        if (::poll(&pfd, 1, 1000) <= 0 || stop_) {
            continue;
        }
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ++connections_;
        std::string head;
        auto deadline = Clock::now() + 5s;
        while (head.find("\r\n\r\n") == std::string::npos && Clock::now() < deadline && !stop_) {
            pollfd cfd{fd, POLLIN, 0};
            if (::poll(&cfd, 1, 100) <= 0) {
                continue;
            }
            char buf[4096];
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) {
                break;
            }
            head.append(buf, static_cast<std::size_t>(n));
        }
        std::string_view out = reply_;
        while (!out.empty()) {
            ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            out.remove_prefix(static_cast<std::size_t>(n));
        }
        if (close_after_) {
            ::close(fd);
        } else {
            kept_.push_back(fd);
        }
    }
}

}  // namespace strata::test
