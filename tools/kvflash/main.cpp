#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include "commands.h"
#include "kvflash/version.h"

namespace {

void print_usage(FILE* out) {
  std::fprintf(out, "kvflash %s - attention over quantized KV caches\n\nusage: kvflash <command> [flags]\n\ncommands:\n",
               KVFLASH_VERSION);
  for (const auto& c : kvflash::cli::kCommands) {
    std::fprintf(out, "  %-11.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                 static_cast<int>(c.summary.size()), c.summary.data());
  }
  std::fprintf(out, "\n'kvflash <command> --help' lists a command's flags.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    // An error is one line on stderr (the CLI contract); the command list is one --help away.
    std::fprintf(stderr, "kvflash: error: no command given (see 'kvflash --help')\n");
    return 2;
  }
  const std::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("kvflash %s\n", KVFLASH_VERSION);
    return 0;
  }
  for (const auto& c : kvflash::cli::kCommands) {
    if (c.name == name) {
      // The library reports errors as Status; this catch turns anything unexpected (bad_alloc) into one line
      // and a clean exit instead of a signal.
      try {
        return c.run(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "kvflash %s: error: %s\n", argv[1], e.what());
        return 1;
      }
    }
  }
  std::fprintf(stderr, "kvflash: error: unknown command '%s' (see 'kvflash --help')\n", argv[1]);
  return 2;
}
