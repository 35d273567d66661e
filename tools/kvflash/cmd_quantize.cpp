// kvflash quantize --type T IN.npy OUT.bin: every row (last axis) of a float32 or float64 array into KV blocks.
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "io/npy.h"
#include "kvflash/quantize.h"

namespace kvflash::cli {

namespace {

constexpr std::string_view kCommand = "quantize";

constexpr std::string_view kSynopsis =
    "usage: kvflash quantize --type T IN.npy OUT.bin\n"
    "\n"
    "Quantizes each row (the last axis) of IN, a float32 or float64 .npy in C order, into blocks of KV type T and\n"
    "writes the rows' blocks one after another to OUT: raw bytes, no header, exactly what a KV cache row holds\n"
    "(rows x row_bytes(T, last dimension) bytes). The last dimension must be a multiple of T's block size:\n"
    "1 for f32, f16, bf16; 32 for q8_0, q4_0, q4_1, q5_0, q5_1; 128 for turbo2, turbo3, turbo4.\n"
    "Turbo rows are stored in the rotated domain (see 'kvflash dequantize --rotated'). The quantizers take\n"
    "float32: float64 values are first rounded to the nearest float32 (for T = f32 that is the stored value).\n";

}  // namespace

int cmd_quantize(int argc, char** argv) {
  Args args;
  args.value("type", "KV type of OUT: " + kv_type_names(), {"-t"});
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (args.positionals().size() != 2) {
    return usage_error(kCommand, "expected IN.npy and OUT.bin, got " + std::to_string(args.positionals().size()) +
                                     " operands");
  }
  const std::string& in_path = args.positionals()[0];
  const std::string& out_path = args.positionals()[1];
  auto type = kv_type_flag(args, "type");
  if (!type.ok()) return fail(kCommand, type.status());
  const KvTraits& traits = kv_traits(*type);

  auto in = io::read_npy_as_f32(in_path);
  if (!in.ok()) return fail(kCommand, in.status());
  const std::vector<int64_t>& shape = in->shape;
  if (shape.empty()) {
    return fail(kCommand, "'" + in_path + "' is 0-d (a scalar); quantize needs rows: an array whose last axis is a row");
  }
  const int64_t n = shape.back();
  if (n == 0) return fail(kCommand, "'" + in_path + "' has shape " + io::shape_string(shape) + ": its rows are empty");
  if (n % traits.block_elems != 0) {
    return fail(kCommand, "'" + in_path + "' has shape " + io::shape_string(shape) + ": the last dimension " +
                              std::to_string(n) + " is not a multiple of " + std::string(traits.name) +
                              "'s block size " + std::to_string(traits.block_elems));
  }
  const int64_t rows = io::checked_product(std::span<const int64_t>(shape.data(), shape.size() - 1));
  const int64_t out_bytes = checked_rows_bytes(*type, rows, n);
  if (rows < 0 || out_bytes < 0) return fail(kCommand, "'" + in_path + "' is too large to quantize");
  const int64_t bytes_per_row = rows > 0 ? out_bytes / rows : 0;

  std::vector<uint8_t> out(static_cast<size_t>(out_bytes));
  for (int64_t r = 0; r < rows; ++r) {
    const Status s = quantize_row(*type, in->values.data() + r * n, n, out.data() + r * bytes_per_row);
    if (!s.ok()) return fail(kCommand, "row " + std::to_string(r) + " of '" + in_path + "': " + s.message());
  }
  if (Status s = write_file_atomic(out_path, out.data(), out.size()); !s.ok()) return fail(kCommand, s);
  return 0;
}

}  // namespace kvflash::cli
