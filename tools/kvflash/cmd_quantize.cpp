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
  if (Status s = expect_two_operands(args, "IN.npy and OUT.bin"); !s.ok()) return usage_error(kCommand, s);
  const std::string& in_path = args.positionals()[0];
  const std::string& out_path = args.positionals()[1];
  auto type = kv_type_flag(args, "type");
  if (!type.ok()) return fail(kCommand, type.status());

  auto in = io::read_npy_as_f32(in_path);
  if (!in.ok()) return fail(kCommand, in.status());
  auto layout = row_layout(*type, in->shape, "'" + in_path + "' has shape " + io::shape_string(in->shape));
  if (!layout.ok()) return fail(kCommand, layout.status());
  const int64_t rows = layout->rows, n = layout->n, bytes_per_row = layout->row_bytes;

  std::vector<uint8_t> out(static_cast<size_t>(layout->total_bytes));
  for (int64_t r = 0; r < rows; ++r) {
    const Status s = quantize_row(*type, in->values.data() + r * n, n, out.data() + r * bytes_per_row);
    if (!s.ok()) return fail(kCommand, "row " + std::to_string(r) + " of '" + in_path + "': " + s.message());
  }
  if (Status s = write_file_atomic(out_path, out.data(), out.size()); !s.ok()) return fail(kCommand, s);
  return 0;
}

}  // namespace kvflash::cli
