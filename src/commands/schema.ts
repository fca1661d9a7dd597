/**
 * @module
 * `llm-balance schema`: prints the JSON Schema of the native config on stdout, the repository's
 * `config.schema.json` (regenerate it with `deno run -A main.ts schema > config.schema.json`).
 * Editors read it from a `# yaml-language-server: $schema=...` first line to complete and check
 * fields; the built-in strategies and probes are offered as completions.
 */

import { configJsonSchema } from "../config/json_schema.ts";
import { builtins } from "../../plugins/mod.ts";
import { out } from "./_io.ts";

/**
 * The schema as `config.schema.json` holds it.
 * @returns pretty-printed JSON ending with a newline
 */
export function schemaText(): string {
  const names = (kind: string) => builtins.filter((p) => p.kind === kind).map((p) => p.name);
  const schema = configJsonSchema({ strategies: names("strategy"), probes: names("probe") });
  return JSON.stringify(schema, null, 2) + "\n";
}

/**
 * Runs `schema`: prints {@linkcode schemaText} on stdout.
 * @returns the exit code, 0
 */
export function schema(): number {
  out(schemaText().trimEnd());
  return 0;
}
