/**
 * @module
 * Smoke test of `deno task soak` (tests/soak/soak.ts): a 10-second soak of llm-balance behind
 * the fault upstreams, run as a subprocess; every invariant must pass. Linux only (the soak
 * reads RSS and open files from /proc).
 */

import assert from "node:assert/strict";

const runnable = Deno.build.os === "linux";

Deno.test({
  name: "soak.ts for 10 s keeps every invariant: nothing lost, arrivals == attempts, tokens exact",
  ignore: !runnable,
  fn: async () => {
    const soak = new URL("./soak.ts", import.meta.url).pathname;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", soak, "--seconds=10", "--concurrency=8", "--json"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(90_000),
    }).output();
    const stdout = new TextDecoder().decode(output.stdout).trim();
    const stderr = new TextDecoder().decode(output.stderr);
    const line = stdout.split("\n").at(-1) ?? "";
    assert.ok(line.startsWith("{"), `soak printed no JSON line:\n${stdout}\n${stderr}`);
    const report = JSON.parse(line) as {
      pass: boolean;
      requests: number;
      checks: { id: string; title: string; pass: boolean; measured: string }[];
    };
    assert.ok(report.requests > 100, `only ${report.requests} requests:\n${stderr}`);
    const ids = report.checks.map((c) => c.id);
    for (
      const id of [
        "1a",
        "1b",
        "1c",
        "1d",
        "1e",
        "2a",
        "2b",
        "2c",
        "2d",
        "3a",
        "3b",
        "3c",
        "4a",
        "4b",
      ]
    ) {
      assert.ok(ids.includes(id), `check ${id} missing`);
    }
    const failed = report.checks.filter((c) => !c.pass);
    assert.deepEqual(
      failed.map((c) => `${c.id} ${c.title}: ${c.measured}`),
      [],
      `invariants failed; the soak's summary:\n${stderr}`,
    );
    assert.equal(report.pass, true);
    assert.equal(output.code, 0, stderr);
  },
});
