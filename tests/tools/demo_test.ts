/** @module Tests of `deno task demo` (tools/demo.ts), run as a subprocess the way the task runs it. */

import assert from "node:assert/strict";

Deno.test("demo --once tours all three upstreams and exits 0", async () => {
  const demo = new URL("../../tools/demo.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    // The permissions of the `demo` task in deno.json.
    args: ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", demo, "--once"],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `demo failed:\n${stdout}\n${stderr}`);
  const answered = stdout.split("\n").find((line) => line.includes("answered by:"));
  assert.ok(answered, `no "answered by" line in:\n${stdout}`);
  for (const name of ["alpha", "beta", "gamma"]) {
    assert.match(answered, new RegExp(`${name} [1-9]`), `${name} answered nothing: ${answered}`);
  }
  assert.match(stdout, /2\. One streamed completion/);
  assert.match(stdout, /200 from \S+: Hello/);
  assert.match(stdout, /3\. GET \/stats/);
  assert.match(stdout, /curl http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions/);
});
