/**
 * @module
 * Tests of the cross-compilation script's arguments and messages (building needs a runtime
 * download, so only `tests/e2e/compiled_test.ts` builds, when it can).
 */

import assert from "node:assert/strict";
import {
  COMPILE_FLAGS,
  compileArgs,
  explainFailure,
  HOST_OUTPUT,
  hostCompileArgs,
  main,
  outputFor,
  TARGETS,
  V8_FLAGS,
} from "../../tools/compile_all.ts";
import denoJson from "../../deno.json" with { type: "json" };

Deno.test("TARGETS covers Linux x64/arm64, macOS x64/arm64 and Windows x64", () => {
  assert.deepEqual([...TARGETS].sort(), [
    "aarch64-apple-darwin",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "x86_64-unknown-linux-gnu",
  ]);
});

Deno.test("COMPILE_FLAGS bake in network, file, environment permissions and the plugins", () => {
  assert.deepEqual(COMPILE_FLAGS, [
    "--allow-net",
    "--allow-read",
    "--allow-write", // the state file
    "--allow-env",
    "--include",
    "plugins",
    V8_FLAGS,
  ]);
});

Deno.test("deno.json's compile and compile:all tasks both go through this script", () => {
  const compile = denoJson.tasks.compile.split(/\s+/);
  const all = denoJson.tasks["compile:all"].split(/\s+/);
  assert.deepEqual(compile.slice(-2), ["tools/compile_all.ts", "--host"]);
  assert.equal(all.at(-1), "tools/compile_all.ts");
  assert.deepEqual(compile.slice(0, -1), all, "same permissions");
});

Deno.test("hostCompileArgs() builds ./llm-balance for this machine with the same flags", () => {
  assert.equal(HOST_OUTPUT, "llm-balance");
  assert.deepEqual(hostCompileArgs(), [
    "compile",
    ...COMPILE_FLAGS,
    "--output",
    "llm-balance",
    "main.ts",
  ]);
  assert.deepEqual(hostCompileArgs("/tmp/x").slice(-3), ["--output", "/tmp/x", "main.ts"]);
});

Deno.test("the start and cli tasks run with the V8 settings the binary is built with", () => {
  for (const name of ["start", "cli"] as const) {
    assert.ok(
      denoJson.tasks[name].split(/\s+/).includes(V8_FLAGS),
      `${name} task lacks ${V8_FLAGS}`,
    );
  }
});

Deno.test("the start and cli tasks run with the permissions the binary is built with", () => {
  const permissions = COMPILE_FLAGS.filter((f) => f.startsWith("--allow-"));
  assert.ok(permissions.includes("--allow-write"), "the state file needs --allow-write");
  for (const name of ["start", "cli"] as const) {
    const flags = denoJson.tasks[name].split(/\s+/);
    for (const p of permissions) assert.ok(flags.includes(p), `${name} task lacks ${p}`);
  }
});

Deno.test("compileArgs() builds one target into dist/llm-balance-<target>", () => {
  assert.equal(outputFor("x86_64-unknown-linux-gnu"), "dist/llm-balance-x86_64-unknown-linux-gnu");
  assert.equal(
    outputFor("x86_64-pc-windows-msvc", "out"),
    "out/llm-balance-x86_64-pc-windows-msvc.exe",
  );
  assert.deepEqual(compileArgs("aarch64-apple-darwin"), [
    "compile",
    ...COMPILE_FLAGS,
    "--target",
    "aarch64-apple-darwin",
    "--output",
    "dist/llm-balance-aarch64-apple-darwin",
    "main.ts",
  ]);
});

Deno.test("explainFailure() says when the runtime could not be downloaded", () => {
  const offline =
    "error: Writing deno compile executable\nCaused by:\n 1: error sending request for url " +
    "(https://dl.deno.land/release/v2.9.6/denort-x86_64-apple-darwin.zip): dns error";
  assert.match(
    explainFailure("x86_64-apple-darwin", offline),
    /^Cannot build dist\/llm-balance-x86_64-apple-darwin: deno compile could not download the Deno runtime for x86_64-apple-darwin .*DENORT_BIN/,
  );
  // deno task compile (--host) says the same about ./llm-balance
  assert.match(
    explainFailure("x86_64-unknown-linux-gnu", offline, "llm-balance"),
    /^Cannot build llm-balance: deno compile could not download the Deno runtime for x86_64-unknown-linux-gnu .*DENORT_BIN/,
  );
  assert.equal(
    explainFailure(
      "x86_64-unknown-linux-gnu",
      "Check main.ts\nerror: TS2322 [ERROR]: bad type\n\n",
    ),
    "Cannot build dist/llm-balance-x86_64-unknown-linux-gnu: deno compile failed:\n  error: TS2322 [ERROR]: bad type",
  );
  // deno's hints and backtrace are left out; the error and where it is stay
  const typeError = [
    "Check main.ts",
    "TS2322 [ERROR]: Type 'string' is not assignable to type 'number'.",
    "    at file:///src/x.ts:3:7",
    "",
    "error: Type checking failed.",
    "",
    "  info: The program failed type-checking, but it still might work correctly.",
    "  hint: Re-run with --no-check to skip type-checking.",
    "",
    "Stack backtrace:",
    "   0: <unknown>",
  ].join("\n");
  assert.equal(
    explainFailure("x86_64-unknown-linux-gnu", typeError, "llm-balance"),
    [
      "Cannot build llm-balance: deno compile failed:",
      "  TS2322 [ERROR]: Type 'string' is not assignable to type 'number'.",
      "      at file:///src/x.ts:3:7",
      "  error: Type checking failed.",
    ].join("\n"),
  );
});

/** Runs main() with a fake deno that fails as it does offline; returns what it printed. */
async function offline(args: string[], denortBin?: string) {
  const runs: string[][] = [];
  const out: string[] = [];
  const err: string[] = [];
  const stderr =
    "\x1b[32mDownload\x1b[0m https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip\n" +
    "error: Writing deno compile executable\nCaused by:\n 1: error sending request for url " +
    "(https://dl.deno.land/release/v2.9.6/denort.zip): client error (Connect): dns error";
  const code = await main(args, {
    run: (a) => {
      runs.push(a);
      return Promise.resolve({ success: false, stderr });
    },
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    denortBin,
  });
  return { code, runs, out, err };
}

Deno.test("main() --host (deno task compile) explains an offline build as compile:all does", async () => {
  const host = await offline(["--host"]);
  assert.equal(host.code, 1);
  assert.deepEqual(host.runs, [hostCompileArgs()]);
  assert.deepEqual(host.out, []);
  assert.deepEqual(host.err, [explainFailure(Deno.build.target, "dl.deno.land", "llm-balance")]);
  assert.match(host.err[0]!, /could not download the Deno runtime .*set DENORT_BIN/);
  const all = await offline(["x86_64-apple-darwin"]);
  assert.equal(all.code, 1);
  assert.deepEqual(all.err, [
    explainFailure("x86_64-apple-darwin", "dl.deno.land"),
    "1 of 1 target(s) failed",
  ]);
});

Deno.test("main() says what it built", async () => {
  const out: string[] = [];
  const code = await main(["--host"], {
    run: () => Promise.resolve({ success: true, stderr: "" }),
    out: (l) => out.push(l),
    err: () => {},
  });
  assert.equal(code, 0);
  assert.match(out[0]!, /^built llm-balance \(\d+\.\d s\)$/);
});

Deno.test("main() refuses unknown targets, --host with a target, and DENORT_BIN for several", async () => {
  assert.equal((await offline(["mips-unknown"])).code, 2);
  const mixed = await offline(["--host", "x86_64-apple-darwin"]);
  assert.equal(mixed.code, 2);
  assert.deepEqual(mixed.runs, []);
  const several = await offline([], "/opt/denort");
  assert.equal(several.code, 2);
  assert.match(several.err[0]!, /DENORT_BIN holds the runtime of one target/);
  // with DENORT_BIN, --host builds (deno compile reads DENORT_BIN itself)
  assert.deepEqual((await offline(["--host"], "/opt/denort")).runs, [hostCompileArgs()]);
});
