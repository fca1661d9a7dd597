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
  outputFor,
  TARGETS,
  V8_FLAGS,
} from "../src/compile_all.ts";
import denoJson from "../deno.json" with { type: "json" };

Deno.test("TARGETS covers Linux x64/arm64, macOS x64/arm64 and Windows x64", () => {
  assert.deepEqual([...TARGETS].sort(), [
    "aarch64-apple-darwin",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "x86_64-unknown-linux-gnu",
  ]);
});

Deno.test("COMPILE_FLAGS are the permissions and includes of deno.json's compile task", () => {
  const task = denoJson.tasks.compile.split(/\s+/);
  for (const flag of COMPILE_FLAGS) assert.ok(task.includes(flag), `compile task lacks ${flag}`);
  const taskFlags = task.filter((a) =>
    a.startsWith("--allow") || a === "--include" || a.startsWith("--v8-flags")
  );
  assert.deepEqual(taskFlags, COMPILE_FLAGS.filter((f) => f.startsWith("--")));
});

Deno.test("the start and cli tasks run with the V8 settings the binary is built with", () => {
  for (const name of ["start", "cli"] as const) {
    assert.ok(
      denoJson.tasks[name].split(/\s+/).includes(V8_FLAGS),
      `${name} task lacks ${V8_FLAGS}`,
    );
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
  assert.equal(
    explainFailure(
      "x86_64-unknown-linux-gnu",
      "Check main.ts\nerror: TS2322 [ERROR]: bad type\n\n",
    ),
    "Cannot build dist/llm-balance-x86_64-unknown-linux-gnu: deno compile failed:\n  Check main.ts\n  error: TS2322 [ERROR]: bad type",
  );
});
