#include "cli_common.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "io/npy.h"

namespace kvflash::cli {

int fail(std::string_view command, std::string_view message) {
  std::string line = "kvflash ";
  line += command;
  line += ": error: ";
  line += message;
  // One line, whatever the message held.
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  return 1;
}

int fail(std::string_view command, const Status& s) { return fail(command, s.message()); }

int usage_error(std::string_view command, std::string_view message) {
  std::string line(message);
  line += " (see 'kvflash ";
  line += command;
  line += " --help')";
  fail(command, line);
  return kUsageExit;
}

int usage_error(std::string_view command, const Status& s) { return usage_error(command, s.message()); }

int print_help(std::string_view synopsis, const Args& args) {
  std::fwrite(synopsis.data(), 1, synopsis.size(), stdout);
  std::fputs("\nflags:\n", stdout);
  std::fputs(args.usage().c_str(), stdout);
  return 0;
}

std::string kv_type_names() {
  std::string out;
  for (const KvTraits& t : all_kv_types()) {
    if (!out.empty()) out += ", ";
    out += t.name;
  }
  return out;
}

StatusOr<KvType> kv_type_flag(const Args& args, const std::string& flag, std::optional<KvType> fallback) {
  const std::optional<std::string> name = args.get(flag);
  if (!name) {
    if (fallback) return *fallback;
    return invalid_argument("--" + flag + " is required (one of " + kv_type_names() + ")");
  }
  if (auto t = kv_type_from_name(*name)) return *t;
  return invalid_argument("unknown type '" + *name + "' for --" + flag + " (valid types: " + kv_type_names() + ")");
}

StatusOr<std::vector<int64_t>> shape_flag(const Args& args, const std::string& flag) {
  const std::optional<std::string> text = args.get(flag);
  if (!text) return invalid_argument("--" + flag + " is required (e.g. --" + flag + " 8,128)");
  std::vector<int64_t> dims;
  size_t start = 0;
  while (true) {
    const size_t comma = text->find(',', start);
    std::string item = text->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int64_t v = 0;
    const char* end = item.data() + item.size();
    auto [ptr, ec] = std::from_chars(item.data(), end, v);
    if (item.empty() || ec != std::errc() || ptr != end || v < 0) {
      return invalid_argument("--" + flag + " '" + *text + "': '" + item +
                              "' is not a non-negative integer (write the dimensions as A,B,...)");
    }
    dims.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return dims;
}

Args& Args::value(std::string name, std::string help, std::vector<std::string> aliases) {
  specs_.push_back({std::move(name), std::move(help), std::move(aliases), true});
  return *this;
}

Args& Args::flag(std::string name, std::string help, std::vector<std::string> aliases) {
  specs_.push_back({std::move(name), std::move(help), std::move(aliases), false});
  return *this;
}

const Args::Spec* Args::find(std::string_view spelling) const {
  for (const Spec& s : specs_) {
    if (spelling == "--" + s.name) return &s;
    for (const std::string& a : s.aliases) {
      if (spelling == a) return &s;
    }
  }
  return nullptr;
}

Status Args::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9') && arg[1] != '.') {
      std::string_view spelling = arg;
      std::optional<std::string> inline_value;
      if (const size_t eq = arg.find('='); eq != std::string_view::npos) {
        spelling = arg.substr(0, eq);
        inline_value = std::string(arg.substr(eq + 1));
      }
      const Spec* spec = find(spelling);
      if (spec == nullptr) return invalid_argument("unknown flag '" + std::string(spelling) + "'");
      if (!spec->takes_value) {
        if (inline_value) return invalid_argument("flag --" + spec->name + " takes no value");
        values_[spec->name] = "1";
        continue;
      }
      if (inline_value) {
        values_[spec->name] = *inline_value;
      } else {
        if (i + 1 >= argc) return invalid_argument("flag --" + spec->name + " needs a value");
        values_[spec->name] = argv[++i];
      }
      continue;
    }
    positionals_.emplace_back(arg);
  }
  return Status::Ok();
}

bool Args::has(const std::string& name) const { return values_.count(name) != 0; }

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

namespace {

StatusOr<int64_t> parse_int(std::string_view text, std::string_view field) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return invalid_argument(std::string(field) + " = '" + std::string(text) + "' is not an integer");
  }
  return v;
}

}  // namespace

StatusOr<int64_t> Args::get_int(const std::string& name, int64_t fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  return parse_int(*v, "--" + name);
}

StatusOr<double> Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v->c_str(), &end);
  if (v->empty() || end != v->c_str() + v->size() || errno == ERANGE || !std::isfinite(d)) {
    return invalid_argument("--" + name + " = '" + *v + "' is not a finite number");
  }
  return d;
}

std::vector<std::string> Args::get_list(const std::string& name) const {
  std::vector<std::string> out;
  auto v = get(name);
  if (!v) return out;
  std::stringstream ss(*v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

StatusOr<std::vector<int64_t>> Args::get_int_list(const std::string& name) const {
  std::vector<int64_t> out;
  for (const std::string& item : get_list(name)) {
    auto v = parse_int(item, "--" + name);
    if (!v.ok()) return v.status();
    out.push_back(*v);
  }
  return out;
}

std::string Args::usage() const {
  std::string out;
  for (const Spec& s : specs_) {
    // Appends one piece at a time: GCC 12 warns falsely (-Wrestrict, PR 105651) on "literal" + string.
    std::string left = "  --";
    left += s.name;
    for (const std::string& a : s.aliases) {
      left += ", ";
      left += a;
    }
    if (s.takes_value) left += " V";
    if (left.size() < 28) left.resize(28, ' ');
    else left += "  ";
    out += left + s.help + "\n";
  }
  std::string help_line = "  --help, -h";
  help_line.resize(28, ' ');
  out += help_line + "this text\n";
  return out;
}

int64_t checked_rows_bytes(KvType type, int64_t rows, int64_t n) {
  const KvTraits& t = kv_traits(type);
  int64_t row = 0, total = 0;
  if (rows < 0 || n < 0 || __builtin_mul_overflow(n / t.block_elems, int64_t{t.block_bytes}, &row) ||
      __builtin_mul_overflow(rows, row, &total)) {
    return -1;
  }
  return total;
}

StatusOr<RowLayout> row_layout(KvType type, const std::vector<int64_t>& shape, const std::string& what) {
  const KvTraits& traits = kv_traits(type);
  if (shape.empty()) return invalid_argument(what + ": a 0-d array (a scalar) has no rows; the last axis is the row");
  RowLayout layout;
  layout.n = shape.back();
  if (layout.n == 0) return invalid_argument(what + ": the last dimension (the row length) is 0");
  if (layout.n % traits.block_elems != 0) {
    return invalid_argument(what + ": the last dimension " + std::to_string(layout.n) + " is not a multiple of " +
                            std::string(traits.name) + "'s block size " + std::to_string(traits.block_elems));
  }
  layout.rows = io::checked_product(std::span<const int64_t>(shape.data(), shape.size() - 1));
  layout.total_bytes = checked_rows_bytes(type, layout.rows, layout.n);
  if (layout.rows < 0 || layout.total_bytes < 0 || io::checked_product(shape) < 0) {
    return invalid_argument(what + " is too large (its byte count overflows 64 bits)");
  }
  layout.row_bytes = checked_rows_bytes(type, 1, layout.n);
  return layout;
}

Status expect_two_operands(const Args& args, std::string_view expected) {
  if (args.positionals().size() == 2) return Status::Ok();
  return invalid_argument("expected " + std::string(expected) + ", got " + std::to_string(args.positionals().size()) +
                          " operands");
}

StatusOr<int64_t> parse_bytes(std::string_view text, std::string_view field) {
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double number = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || errno == ERANGE || !std::isfinite(number) || number < 0) {
    return invalid_argument(std::string(field) + " = '" + s + "' is not a size (e.g. 16GiB, 512MiB, 1000000)");
  }
  std::string unit(end);
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K") mult = 1024.0;
  else if (unit == "MiB" || unit == "M") mult = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "TiB" || unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else return invalid_argument(std::string(field) + " = '" + s + "' has an unknown unit '" + unit + "'");
  const double bytes = number * mult;
  if (bytes > 9.0e18) return invalid_argument(std::string(field) + " = '" + s + "' is too large");
  return static_cast<int64_t>(bytes);
}

Status write_file_atomic(const std::string& path, const void* bytes, size_t size) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = mkstemp(tmpl.data());
  if (fd < 0) return io_error("cannot create a file next to '" + path + "': " + std::strerror(errno));
  const char* p = static_cast<const char*>(bytes);
  size_t left = size;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmpl.c_str());
      return io_error("cannot write '" + path + "': " + why);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    ::unlink(tmpl.c_str());
    return io_error("cannot write '" + path + "': " + std::strerror(errno));
  }
  ::chmod(tmpl.c_str(), 0644);
  if (std::rename(tmpl.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmpl.c_str());
    return io_error("cannot write '" + path + "': " + why);
  }
  return Status::Ok();
}

StatusOr<std::vector<uint8_t>> read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return io_error("'" + path + "' is a directory, not a file");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return io_error("cannot open '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> data;
  if (std::fseek(f, 0, SEEK_END) == 0) {
    const long size = std::ftell(f);
    if (size > 0) data.reserve(static_cast<size_t>(size));
    std::rewind(f);
  }
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  const bool err = std::ferror(f) != 0;
  std::fclose(f);
  if (err) return io_error("cannot read '" + path + "'");
  return data;
}

}  // namespace kvflash::cli
