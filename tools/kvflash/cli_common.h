// Small pieces every kvflash subcommand shares: flag parsing, the one-line error, atomic output files.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash::cli {

/// Prints "kvflash <command>: error: <message>" on one line to stderr and returns the exit status (1).
int fail(std::string_view command, std::string_view message);
int fail(std::string_view command, const Status& s);

/// Exit status of a command line that cannot be understood (unknown flag, missing operand): 2, as getopt tools do.
inline constexpr int kUsageExit = 2;
/// Like fail(), for a usage error: adds "(see 'kvflash <command> --help')" and returns kUsageExit.
int usage_error(std::string_view command, std::string_view message);
int usage_error(std::string_view command, const Status& s);

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

/// Prints `synopsis` then the flag table of `args` to stdout (for --help); returns 0.
int print_help(std::string_view synopsis, const Args& args);

/// The KV type named by flag --`flag` ("q4_0"); an unknown name is an error listing every valid name.
/// `fallback` is used when the flag is absent; without one the flag is required.
StatusOr<KvType> kv_type_flag(const Args& args, const std::string& flag, std::optional<KvType> fallback = {});

/// "f32, f16, bf16, q8_0, ..." for messages and help.
std::string kv_type_names();

/// Parses "--shape 4,32,128": non-negative integers separated by commas.
StatusOr<std::vector<int64_t>> shape_flag(const Args& args, const std::string& flag);

/// Bytes of `rows` stored rows of `n` values each (n a multiple of the block size), or -1 on int64 overflow.
int64_t checked_rows_bytes(KvType type, int64_t rows, int64_t n);

/// An array of stored KV rows: its last axis is the row (n values), the axes before it count the rows.
struct RowLayout {
  int64_t rows = 0;
  int64_t n = 0;            // values per row, a multiple of the type's block size
  int64_t row_bytes = 0;    // stored bytes of one row
  int64_t total_bytes = 0;  // rows * row_bytes
};
/// Checks that `shape` holds rows of `type` (a last axis > 0 and a multiple of the block size, byte counts within
/// 64 bits); `what` names the array in the message ("'in.npy' has shape 3,64", "--shape 3,64").
StatusOr<RowLayout> row_layout(KvType type, const std::vector<int64_t>& shape, const std::string& what);

/// The operands of a command that converts IN into OUT: exactly two, else a usage error naming `expected`
/// ("IN.npy and OUT.bin").
Status expect_two_operands(const Args& args, std::string_view expected);

/// Parses "16GiB", "512MiB", "1.5GB", "1000" into bytes.
StatusOr<int64_t> parse_bytes(std::string_view text, std::string_view field);

/// Writes `bytes` to `path` through a temporary file in the same folder renamed on success, so a failure never
/// leaves a half-written file at `path`.
Status write_file_atomic(const std::string& path, const void* bytes, size_t size);

/// Reads a whole file.
StatusOr<std::vector<uint8_t>> read_file(const std::string& path);

}  // namespace kvflash::cli
