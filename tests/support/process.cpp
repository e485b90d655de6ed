#include "process.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace strata::test {

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string templ =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/strata-e2e-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
        throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
    }
    path_ = buf.data();
}

TempDir::~TempDir() {
    if (std::getenv("STRATA_KEEP_TMP") != nullptr) {
        return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

Process::Process(const std::vector<std::string>& argv, const std::string& log_prefix,
                 const std::map<std::string, std::string>& env)
    : out_path_(log_prefix + ".out"), err_path_(log_prefix + ".err") {
    std::map<std::string, std::string> merged;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string kv = *e;
        auto eq = kv.find('=');
        if (eq != std::string::npos) {
            merged[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
    }
    for (const auto& [k, v] : env) {
        merged[k] = v;
    }
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : merged) {
        env_strings.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& s : env_strings) {
        envp.push_back(s.data());
    }
    envp.push_back(nullptr);
    std::vector<std::string> args = argv;
    std::vector<char*> argp;
    for (auto& s : args) {
        argp.push_back(s.data());
    }
    argp.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // The test ignores SIGPIPE; the child must start with default dispositions.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    int rc = posix_spawn(&pid_, argp[0], &fa, &attr, argp.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        pid_ = -1;
        throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
    }
}

Process::~Process() {
    if (pid_ > 0) {
        stop(2000ms);
    }
}

Process::Process(Process&& other) noexcept {
    *this = std::move(other);
}

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        if (pid_ > 0) {
            stop(2000ms);
        }
        pid_ = other.pid_;
        exit_code_ = other.exit_code_;
        out_path_ = std::move(other.out_path_);
        err_path_ = std::move(other.err_path_);
        other.pid_ = -1;
    }
    return *this;
}

void Process::reap(int status) {
    if (WIFEXITED(status)) {
        exit_code_ = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        exit_code_ = 128 + WTERMSIG(status);
    }
    pid_ = -1;
}

bool Process::running() {
    if (pid_ <= 0) {
        return false;
    }
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        reap(status);
        return false;
    }
    return true;
}

void Process::signal(int sig) {
    if (pid_ > 0) {
        ::kill(pid_, sig);
    }
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    // Exit is observed by polling waitpid: a child exiting is a state change, not behaviour we
    // synchronise on, and SIGCHLD handling would interfere with other helpers.
    auto step = 1ms;
    while (running()) {
        if (Clock::now() >= deadline) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(step);
        step = std::min<std::chrono::milliseconds>(step * 2, 20ms);
    }
    return exit_code_;
}

int Process::stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0) {
        return exit_code_;
    }
    signal(SIGTERM);
    if (!wait(grace)) {
        signal(SIGKILL);
        int status = 0;
        if (::waitpid(pid_, &status, 0) == pid_) {
            reap(status);
        }
    }
    return exit_code_;
}

std::string Process::stdoutText() const {
    return readFile(out_path_);
}
std::string Process::stderrText() const {
    return readFile(err_path_);
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string runCommand(const std::string& command) {
    std::string out;
    if (FILE* p = ::popen((command + " 2>/dev/null").c_str(), "r")) {
        char buf[4096];
        std::size_t n = 0;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
            out.append(buf, n);
        }
        ::pclose(p);
    }
    return out;
}

void writeFile(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out) {
            throw std::runtime_error("cannot write " + tmp);
        }
    }
    std::filesystem::rename(tmp, path);
}

bool waitForFile(const std::string& path, std::chrono::milliseconds timeout, Process* proc) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        if (std::filesystem::exists(path)) {
            return true;
        }
        if (proc != nullptr && !proc->running()) {
            return false;
        }
        if (Clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
}

std::string binaryFromEnv(const char* var) {
    const char* v = std::getenv(var);
    if (v == nullptr || *v == '\0') {
        throw std::runtime_error(std::string(var) + " is not set (run through meson test)");
    }
    return v;
}

std::uint64_t residentBytes(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;  // in kB
        }
    }
    return 0;
}

std::string substitute(const std::string& text, const std::map<std::string, std::string>& vars) {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        auto open = text.find("${", i);
        if (open == std::string::npos) {
            out.append(text, i, std::string::npos);
            break;
        }
        auto close = text.find('}', open);
        if (close == std::string::npos) {
            out.append(text, i, std::string::npos);
            break;
        }
        out.append(text, i, open - i);
        std::string name = text.substr(open + 2, close - open - 2);
        auto it = vars.find(name);
        if (it != vars.end()) {
            out += it->second;
        } else {
            out.append(text, open, close - open + 1);
        }
        i = close + 1;
    }
    return out;
}

}  // namespace strata::test
