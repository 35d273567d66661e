// kvflash dequantize --type T --shape A,B[,...] IN.bin OUT.npy [--rotated]: raw KV blocks back to float32.
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "io/npy.h"
#include "kvflash/quantize.h"

namespace kvflash::cli {

namespace {

constexpr std::string_view kCommand = "dequantize";

constexpr std::string_view kSynopsis =
    "usage: kvflash dequantize --type T --shape A,B[,...] IN.bin OUT.npy [--rotated]\n"
    "\n"
    "The inverse of 'kvflash quantize': reads IN, rows of KV type T concatenated (raw bytes, as quantize writes\n"
    "them), and writes OUT, a float32 .npy of shape --shape. The last dimension of --shape is the row length (a\n"
    "multiple of T's block size); IN must hold exactly rows x row_bytes(T, row length) bytes. For turbo types OUT\n"
    "is the reconstruction in the original domain (inverse rotation applied); --rotated gives the stored\n"
    "rotated-domain values (centroid x norm) instead. --rotated changes nothing for the other types.\n";

}  // namespace

int cmd_dequantize(int argc, char** argv) {
  Args args;
  args.value("type", "KV type of IN: " + kv_type_names(), {"-t"});
  args.value("shape", "shape of OUT, e.g. 8,128 (the last dimension is the row length)");
  args.flag("rotated", "turbo types: output the stored rotated-domain values");
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (Status s = expect_two_operands(args, "IN.bin and OUT.npy"); !s.ok()) return usage_error(kCommand, s);
  const std::string& in_path = args.positionals()[0];
  const std::string& out_path = args.positionals()[1];
  auto type = kv_type_flag(args, "type");
  if (!type.ok()) return fail(kCommand, type.status());
  auto shape = shape_flag(args, "shape");
  if (!shape.ok()) return fail(kCommand, shape.status());
  const std::string shape_text = io::shape_string(*shape);
  auto layout = row_layout(*type, *shape, "--shape " + shape_text);
  if (!layout.ok()) return fail(kCommand, layout.status());
  const int64_t rows = layout->rows, n = layout->n, need = layout->total_bytes;

  auto in = read_file(in_path);
  if (!in.ok()) return fail(kCommand, in.status());
  const int64_t have = static_cast<int64_t>(in->size());
  if (have != need) {
    return fail(kCommand, "'" + in_path + "' holds " + std::to_string(have) + " bytes, but --shape " + shape_text +
                              " of " + std::string(kv_traits(*type).name) + " needs " + std::to_string(need) + " (" +
                              std::to_string(rows) + " rows of " + std::to_string(layout->row_bytes) + " bytes)");
  }

  const bool rotated = args.has("rotated");
  const int64_t bytes_per_row = layout->row_bytes;
  std::vector<float> values(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    const Status s = dequantize_row(*type, in->data() + r * bytes_per_row, n, values.data() + r * n, rotated);
    if (!s.ok()) return fail(kCommand, "row " + std::to_string(r) + " of '" + in_path + "': " + s.message());
  }
  auto npy = io::encode_npy_f32(*shape, values);
  if (!npy.ok()) return fail(kCommand, npy.status());
  if (Status s = write_file_atomic(out_path, npy->data(), npy->size()); !s.ok()) return fail(kCommand, s);
  return 0;
}

}  // namespace kvflash::cli
