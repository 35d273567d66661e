// Runs the real kvflash binary (KVFLASH_CLI_PATH) in a fresh temporary folder and captures what it did: exit
// status or signal, stdout, stderr, and the folder's entries, so that CLI tests can assert the contract (one error
// line, status 1..125, never a signal, no output or temporary file left behind).
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "io/npy.h"

extern char** environ;

namespace kvflash::testing {

struct CliResult {
  int exit_code = -1;   // -1 when killed by a signal
  int signal = 0;       // the signal that ended it, 0 if it exited
  std::string out;
  std::string err;
  int stderr_lines() const {
    int n = 0;
    for (char c : err) n += c == '\n';
    return n;
  }
};

class CliSandbox {
 public:
  CliSandbox() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvflash_cli_XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    std::filesystem::create_directory(root_ / "work");
  }
  ~CliSandbox() { std::filesystem::remove_all(root_); }
  CliSandbox(const CliSandbox&) = delete;
  CliSandbox& operator=(const CliSandbox&) = delete;

  /// The folder the command runs in; relative paths in arguments resolve here.
  std::filesystem::path dir() const { return root_ / "work"; }
  std::string path(const std::string& name) const { return (dir() / name).string(); }

  /// Runs `kvflash args...` with the working folder as its current directory.
  CliResult run(const std::vector<std::string>& args) const {
    const std::string out_path = (root_ / "stdout").string(), err_path = (root_ / "stderr").string();
    std::vector<std::string> argv_text = {KVFLASH_CLI_PATH};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const std::filesystem::path here = std::filesystem::current_path();
    std::filesystem::current_path(dir());  // posix_spawn_file_actions_addchdir_np is glibc >= 2.29 only
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, KVFLASH_CLI_PATH, &actions, nullptr, argv.data(), environ);
    std::filesystem::current_path(here);
    posix_spawn_file_actions_destroy(&actions);
    CliResult r;
    if (rc != 0) {
      r.err = std::string("posix_spawn failed: ") + std::strerror(rc);
      return r;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
  }

  /// Names in the working folder, hidden ones (temporary files) included.
  std::set<std::string> entries() const {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir())) names.insert(e.path().filename().string());
    return names;
  }

  void write(const std::string& name, std::span<const uint8_t> bytes) const {
    std::ofstream f(path(name), std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  void write_npy(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values) const {
    auto bytes = io::encode_npy_f32(shape, values);
    if (bytes.ok()) write(name, *bytes);
  }
  void write_npy_f64(const std::string& name, const std::vector<int64_t>& shape,
                     const std::vector<double>& values) const {
    auto bytes = io::encode_npy_f64(shape, values);
    if (bytes.ok()) write(name, *bytes);
  }
  std::vector<uint8_t> read(const std::string& name) const {
    const std::string s = slurp(path(name));
    return std::vector<uint8_t>(s.begin(), s.end());
  }

 private:
  static std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  std::filesystem::path root_;
};

}  // namespace kvflash::testing
