/**
 * @module
 * Smoke test of `deno task bench` (tests/bench/bench.ts) with tiny settings: every scenario
 * runs once for a second and the JSON report is complete. Skipped when wrk is not installed.
 */

import assert from "node:assert/strict";

function hasWrk(): boolean {
  try {
    new Deno.Command("wrk", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

const runnable = Deno.build.os === "linux" && hasWrk();
if (!runnable) console.log("bench_smoke_test skipped: wrk not installed (apt-get install -y wrk)");

Deno.test({
  name: "bench.ts with tiny settings measures every scenario and writes its JSON report",
  ignore: !runnable,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "bench-smoke-" });
    try {
      const json = `${dir}/bench.json`;
      const bench = new URL("./bench.ts", import.meta.url).pathname;
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          bench,
          "--duration=1",
          "--rounds=1",
          "--warmup=0",
          "--ttfb-requests=5",
          "--streams=20",
          "--hold=1",
          "--pool-keys=100",
          "--scenarios=throughput,paired,ttfb,streams,pool",
          `--json=${json}`,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(90_000),
      }).output();
      const stdout = new TextDecoder().decode(output.stdout);
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, `bench failed:\n${stdout}\n${stderr}`);
      assert.match(stdout, /### Ratios and targets/);
      const report = JSON.parse(await Deno.readTextFile(json));
      for (const scenario of ["throughput", "paired", "ttfb", "streams", "pool"]) {
        const rows: { target: string; rps: number; errors: number }[] = report.results[scenario];
        assert.ok(rows?.length >= 2, `${scenario} has no rows`);
        for (const row of rows) {
          assert.ok(row.rps > 0, `${scenario} ${row.target} measured nothing`);
          assert.equal(row.errors, 0, `${scenario} ${row.target} had errors`);
        }
      }
      assert.deepEqual(report.results.throughput.map((r: { target: string }) => r.target), [
        "direct",
        "passthrough",
        "llm-balance",
      ]);
      assert.ok(report.checks.length > 0);
      const sideBySide = report.checks.find((c: { measure: string }) =>
        c.measure === "throughput llm-balance / passthrough, side by side (paired)"
      );
      assert.ok(sideBySide?.value > 0, "the paired ratio was measured");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
