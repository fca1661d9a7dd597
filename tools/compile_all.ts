/**
 * @module
 * `deno task compile:all`: builds `dist/llm-balance-<target>` (`.exe` on Windows) for Linux
 * x64/arm64, macOS x64/arm64 and Windows x64 with `deno compile --target`; `deno task compile`
 * (`--host`) builds `./llm-balance` for this machine. Both bake in the same permissions and
 * plugins. `deno compile` downloads a Deno runtime per target on first use; without internet
 * access both say so plainly: set `DENORT_BIN` to a `denort` binary of this Deno version for
 * the target, or build where the download works.
 *
 * Usage: `deno task compile:all [TARGET...]` (default: every target), or `--host`.
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
export const V8_FLAGS =
  "--v8-flags=--no-allocation-site-pretenuring,--heap-growing-percent=20,--max-semi-space-size=8";

/** Permissions, files and V8 settings baked into every binary. */
export const COMPILE_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
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

/** The binary `deno task compile` builds for this machine. */
export const HOST_OUTPUT = "llm-balance";

/**
 * The `deno` arguments that build the binary for this machine (`deno task compile`).
 * @param output the binary's path
 * @default output "llm-balance"
 */
export function hostCompileArgs(output = HOST_OUTPUT): string[] {
  return ["compile", ...COMPILE_FLAGS, "--output", output, "main.ts"];
}

/**
 * Explains a failed build: a runtime that could not be downloaded gets a clear hint.
 * @param target the target that failed
 * @param stderr what `deno compile` printed
 * @param output the binary that was being built
 * @default output outputFor(target)
 * @returns one message for people
 */
export function explainFailure(target: string, stderr: string, output = outputFor(target)): string {
  const download = /dl\.deno\.land|denort|error sending request|dns error|Download/i.test(stderr);
  if (download) {
    return `Cannot build ${output}: deno compile could not download the Deno runtime ` +
      `for ${target} (no internet access?). Build where the download works, or set DENORT_BIN ` +
      `to a denort binary of Deno ${Deno.version.deno} for ${target}`;
  }
  // deno's progress lines, hints and its own backtrace say nothing about what failed
  const lines = stderr.split("\n").map((l) => l.trimEnd()).filter((l) =>
    l.trim() !== "" && !NOISE.test(l)
  );
  const first = lines.findIndex((l) => /error/i.test(l));
  const shown = first < 0 ? lines.slice(-3) : lines.slice(first, first + 8);
  return `Cannot build ${output}: deno compile failed:\n  ${shown.join("\n  ")}`;
}

const NOISE = /^\s*(Check|Compile|Download|Stack backtrace:|\d+: <unknown>|info:|hint:)/;

// Strips ANSI colours from deno's output.
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** What {@linkcode main} runs and where it writes (injected by tests). */
export interface CompileIo {
  /** Runs `deno` with arguments. @default a `Deno.Command` of this Deno, output piped */
  run?: (args: string[]) => Promise<{ success: boolean; stderr: string }>;
  /** A line for stdout. @default console.log */
  out?: (line: string) => void;
  /** A line for stderr. @default console.error */
  err?: (line: string) => void;
  /** `DENORT_BIN`. @default Deno.env.get("DENORT_BIN") */
  denortBin?: string | undefined;
}

async function runDeno(args: string[]): Promise<{ success: boolean; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .output();
  return { success: out.success, stderr: new TextDecoder().decode(out.stderr) };
}

/**
 * Builds what the arguments ask: `--host` the binary for this machine (`deno task compile`),
 * else the named targets, or every target (`deno task compile:all`). Says what it built, or
 * plainly why it could not.
 * @param args the script's arguments
 * @param io how `deno` runs and where messages go
 * @returns the exit code: 0 built, 1 a build failed, 2 bad arguments
 */
export async function main(args: readonly string[], io: CompileIo = {}): Promise<number> {
  const run = io.run ?? runDeno;
  const out = io.out ?? ((line: string) => console.log(line));
  const err = io.err ?? ((line: string) => console.error(line));
  const denortBin = "denortBin" in io ? io.denortBin : Deno.env.get("DENORT_BIN");
  const build = async (target: string, host: boolean): Promise<boolean> => {
    const started = performance.now();
    const output = host ? HOST_OUTPUT : outputFor(target);
    const r = await run(host ? hostCompileArgs() : compileArgs(target));
    if (!r.success) {
      err(explainFailure(target, r.stderr.replace(ANSI, ""), output));
      return false;
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    out(`built ${output} (${secs} s)`);
    return true;
  };
  if (args.includes("--host")) {
    if (args.length > 1) {
      err("--host builds ./llm-balance for this machine and takes no target");
      return 2;
    }
    return await build(Deno.build.target, true) ? 0 : 1;
  }
  const wanted = args.length > 0 ? [...args] : [...TARGETS];
  const unknown = wanted.filter((t) => !(TARGETS as readonly string[]).includes(t));
  if (unknown.length > 0) {
    err(`Unknown target "${unknown[0]}" (known: ${TARGETS.join(", ")})`);
    return 2;
  }
  if (denortBin && wanted.length > 1) {
    err(
      "DENORT_BIN holds the runtime of one target: name that target, e.g. " +
        "deno task compile:all x86_64-unknown-linux-gnu",
    );
    return 2;
  }
  let failed = 0;
  for (const target of wanted) if (!await build(target, false)) failed++;
  if (failed > 0) err(`${failed} of ${wanted.length} target(s) failed`);
  return failed > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
