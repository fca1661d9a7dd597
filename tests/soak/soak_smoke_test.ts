/**
 * @module
 * Smoke tests of `deno task soak` (tests/soak/soak.ts), run as a subprocess: a 10-second soak
 * of llm-balance behind the fault upstreams, and one with shared state on Redis (`--redis`:
 * Redis killed for 2 s midway and started again; skipped when `redis-server` is not
 * installed); every invariant must pass. Linux only (the soak reads RSS and open files from
 * /proc).
 */

import assert from "node:assert/strict";

import { hasRedis } from "../helpers/redis.ts";

const runnable = Deno.build.os === "linux";

const CHECKS = ["1a", "1b", "1c", "1d", "1e", "2a", "2b", "2c", "2d", "3a", "3b", "3c", "4a", "4b"];
const REDIS_CHECKS = ["5a", "5b", "5c", "5d", "5e"];

interface Report {
  pass: boolean;
  requests: number;
  checks: { id: string; title: string; pass: boolean; measured: string }[];
}

/** Runs the soak with `args` and asserts that every invariant in `ids` was checked and held. */
async function soakPasses(args: string[], ids: readonly string[]): Promise<Report> {
  const soak = new URL("./soak.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", soak, "--seconds=10", "--concurrency=8", "--json", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(90_000),
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const stderr = new TextDecoder().decode(output.stderr);
  const line = stdout.split("\n").at(-1) ?? "";
  assert.ok(line.startsWith("{"), `soak printed no JSON line:\n${stdout}\n${stderr}`);
  const report = JSON.parse(line) as Report;
  assert.ok(report.requests > 100, `only ${report.requests} requests:\n${stderr}`);
  const checked = report.checks.map((c) => c.id);
  for (const id of ids) assert.ok(checked.includes(id), `check ${id} missing`);
  const failed = report.checks.filter((c) => !c.pass);
  assert.deepEqual(
    failed.map((c) => `${c.id} ${c.title}: ${c.measured}`),
    [],
    `invariants failed; the soak's summary:\n${stderr}`,
  );
  assert.equal(report.pass, true);
  assert.equal(output.code, 0, stderr);
  return report;
}

Deno.test({
  name: "soak.ts for 10 s keeps every invariant: nothing lost, arrivals == attempts, tokens exact",
  ignore: !runnable,
  fn: async () => {
    const report = await soakPasses([], CHECKS);
    assert.ok(!report.checks.some((c) => c.id.startsWith("5")), "Redis checks without --redis");
  },
});

Deno.test({
  name:
    "soak.ts --redis for 10 s, Redis killed for 2 s midway: outage logged once each way, nothing failed, cluster counts exact",
  ignore: !runnable || !hasRedis,
  fn: async () => {
    await soakPasses(["--redis"], [...CHECKS, ...REDIS_CHECKS]);
  },
});
