// The kvflash subcommands. Each lives in its own cmd_<name>.cpp and returns the process exit status.
#pragma once

#include <string_view>

namespace kvflash::cli {

int cmd_quantize(int argc, char** argv);    // argv[0] is "quantize"
int cmd_dequantize(int argc, char** argv);
int cmd_attend(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_routes(int argc, char** argv);
int cmd_plan(int argc, char** argv);

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(int argc, char** argv);
};

inline constexpr Command kCommands[] = {
    {"quantize", "quantize a float32 .npy into raw KV blocks", cmd_quantize},
    {"dequantize", "turn raw KV blocks back into a float32 .npy", cmd_dequantize},
    {"attend", "attention over a quantized K/V given as .npy files", cmd_attend},
    {"routes", "which kernel each backend picks for a problem, and why the others were not", cmd_routes},
    {"plan", "memory plan for a model: KV cache, workspace, what fits a budget", cmd_plan},
    {"bench", "decode and prefill timings over real KV caches at several depths", cmd_bench},
    {"info", "version, backends, CPU features, devices", cmd_info},
};

}  // namespace kvflash::cli
