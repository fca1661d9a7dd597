/**
 * @module
 * `deno task compile:all`: builds `dist/llm-balance-<target>` (`.exe` on Windows) for Linux
 * x64/arm64, macOS x64/arm64 and Windows x64 with `deno compile --target`, with the same
 * permissions and baked-in plugins as `deno task compile`. `deno compile` downloads a Deno
 * runtime per target on first use; without internet access set `DENORT_BIN` to a `denort`
 * binary of this Deno version for the target, or build where the download works.
 *
 * Usage: `deno task compile:all [TARGET...]` (default: every target).
 */

/** The targets built by default. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/**
 * The V8 setting llm-balance runs with (deno.json's `start`, `cli` and `compile` tasks, and
 * `deno task bench`): no allocation-site pretenuring. Parsing the configuration at start-up
 * leads V8 to allocate every later request's fetch body streams straight into the old
 * generation, where only full collections free them; without it the proxy spends about 4% less
 * CPU per request (measured with `deno task bench`).
 */
export const V8_FLAGS = "--v8-flags=--no-allocation-site-pretenuring";

/** Permissions, files and V8 settings baked into the binary; as deno.json's `compile` task. */
export const COMPILE_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--include",
  "plugins",
  V8_FLAGS,
];

/**
 * The output file of a target.
 * @param target a Deno target triple
 * @param dir the output folder
 * @default dir "dist"
 * @returns e.g. `dist/llm-balance-x86_64-unknown-linux-gnu`, with `.exe` for Windows
 */
export function outputFor(target: string, dir = "dist"): string {
  return `${dir}/llm-balance-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/**
 * The `deno` arguments that build one target.
 * @param target a Deno target triple
 * @param dir the output folder
 * @default dir "dist"
 */
export function compileArgs(target: string, dir = "dist"): string[] {
  return [
    "compile",
    ...COMPILE_FLAGS,
    "--target",
    target,
    "--output",
    outputFor(target, dir),
    "main.ts",
  ];
}

/**
 * Explains a failed build: a runtime that could not be downloaded gets a clear hint.
 * @param target the target that failed
 * @param stderr what `deno compile` printed
 * @returns one message for people
 */
export function explainFailure(target: string, stderr: string): string {
  const download = /dl\.deno\.land|denort|error sending request|dns error|Download/i.test(stderr);
  if (download) {
    return `Cannot build ${outputFor(target)}: deno compile could not download the Deno runtime ` +
      `for ${target} (no internet access?). Build where the download works, or set DENORT_BIN ` +
      `to a denort binary of Deno ${Deno.version.deno} for ${target}`;
  }
  const last = stderr.trim().split("\n").filter((l) => l.trim() !== "").slice(-3).join("\n  ");
  return `Cannot build ${outputFor(target)}: deno compile failed:\n  ${last}`;
}

// Strips ANSI colours from deno's output.
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

async function build(target: string): Promise<boolean> {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(target),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).replace(ANSI, "");
  if (!out.success) {
    console.error(explainFailure(target, stderr));
    return false;
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`built ${outputFor(target)} (${secs} s)`);
  return true;
}

if (import.meta.main) {
  const wanted = Deno.args.length > 0 ? Deno.args : [...TARGETS];
  const unknown = wanted.filter((t) => !(TARGETS as readonly string[]).includes(t));
  if (unknown.length > 0) {
    console.error(`Unknown target "${unknown[0]}" (known: ${TARGETS.join(", ")})`);
    Deno.exit(2);
  }
  if (Deno.env.get("DENORT_BIN") && wanted.length > 1) {
    console.error(
      "DENORT_BIN holds the runtime of one target: name that target, e.g. " +
        "deno task compile:all x86_64-unknown-linux-gnu",
    );
    Deno.exit(2);
  }
  let failed = 0;
  for (const target of wanted) if (!await build(target)) failed++;
  if (failed > 0) console.error(`${failed} of ${wanted.length} target(s) failed`);
  Deno.exit(failed > 0 ? 1 : 0);
}
