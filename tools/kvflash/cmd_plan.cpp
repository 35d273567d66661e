// Placeholder until its stream lands; replaced, never shipped as done.
#include "cli_common.h"
#include "commands.h"

namespace kvflash::cli {
int cmd_plan(int, char**) { return fail("plan", "not built yet in this version"); }
}  // namespace kvflash::cli
