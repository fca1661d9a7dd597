/**
 * @module
 * llm-balance's entry point: `deno run main.ts [serve|check|probe|version] [options]`, or the
 * compiled `llm-balance` binary. See `src/cli.ts` for commands and exit codes.
 */

import { main } from "./src/cli.ts";
import { flushStderr } from "./src/logger.ts";

if (import.meta.main) {
  const code = await main(Deno.args);
  flushStderr();
  Deno.exit(code);
}
