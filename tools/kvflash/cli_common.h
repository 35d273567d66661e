// Small pieces every kvflash subcommand shares: flag parsing, the one-line error, atomic output files.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvflash/status.h"

namespace kvflash::cli {

/// Prints "kvflash <command>: error: <message>" on one line to stderr and returns the exit status (1).
int fail(std::string_view command, std::string_view message);
int fail(std::string_view command, const Status& s);

/// Flags of one subcommand. Declare them, then parse; unknown flags and missing values are errors.
/// `--name value`, `--name=value` and short aliases (`-ctk`) are accepted; `--help`/`-h` is always known.
class Args {
 public:
  /// A flag taking a value. `aliases` are other spellings ("-ctk").
  Args& value(std::string name, std::string help, std::vector<std::string> aliases = {});
  /// A boolean switch.
  Args& flag(std::string name, std::string help, std::vector<std::string> aliases = {});

  /// Parses argv[first..argc). Positionals are kept in order.
  Status parse(int argc, char** argv, int first);

  bool help() const { return help_; }
  bool has(const std::string& name) const;
  std::optional<std::string> get(const std::string& name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

  /// Typed getters: a value that does not parse is an error naming the flag and the value.
  StatusOr<int64_t> get_int(const std::string& name, int64_t fallback) const;
  StatusOr<double> get_double(const std::string& name, double fallback) const;
  /// Comma-separated list ("0,4096,32768"); empty when the flag is absent.
  StatusOr<std::vector<int64_t>> get_int_list(const std::string& name) const;
  std::vector<std::string> get_list(const std::string& name) const;

  /// The flag table, one line per flag, for --help.
  std::string usage() const;

 private:
  struct Spec {
    std::string name;
    std::string help;
    std::vector<std::string> aliases;
    bool takes_value;
  };
  const Spec* find(std::string_view spelling) const;
  std::vector<Spec> specs_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positionals_;
  bool help_ = false;
};

/// Parses "16GiB", "512MiB", "1.5GB", "1000" into bytes.
StatusOr<int64_t> parse_bytes(std::string_view text, std::string_view field);

/// Writes `bytes` to `path` through a temporary file in the same folder renamed on success, so a failure never
/// leaves a half-written file at `path`.
Status write_file_atomic(const std::string& path, const void* bytes, size_t size);

/// Reads a whole file.
StatusOr<std::vector<uint8_t>> read_file(const std::string& path);

}  // namespace kvflash::cli
