/** @module Tests of the bench's result helpers (tests/bench/_report.ts). */

import assert from "node:assert/strict";
import {
  checksTable,
  median,
  medianRow,
  percentile,
  ratioChecks,
  roundRatio,
  type Row,
  type Sample,
  slope,
  streamsTable,
  table,
} from "./_report.ts";

function row(target: string, fields: Partial<Row> = {}): Row {
  return {
    target,
    rps: 1000,
    p50Ms: 1,
    p99Ms: 2,
    cpuUsPerReq: 50,
    peakRssMb: 100,
    errors: 0,
    requests: 5000,
    ...fields,
  };
}

function sample(fields: Partial<Sample> = {}): Sample {
  const { target: _, ...rest } = row("", fields);
  return rest;
}

Deno.test("median() takes the middle value, or the mean of the two middle ones, ignoring NaN", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([NaN, 5]), 5);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("percentile() uses the nearest rank", () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile([7], 0), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

Deno.test("medianRow() takes medians of rates and latencies, the top peak RSS and summed counts", () => {
  const samples = [
    { rps: 10, p50Ms: 1, p99Ms: 9, cpuUsPerReq: 5, peakRssMb: 70, errors: 1, requests: 100 },
    { rps: 30, p50Ms: 3, p99Ms: 7, cpuUsPerReq: 6, peakRssMb: 90, errors: 0, requests: 300 },
    { rps: 20, p50Ms: 2, p99Ms: 8, cpuUsPerReq: 7, peakRssMb: 80, errors: 2, requests: 200 },
  ];
  assert.deepEqual(medianRow("x", samples), {
    target: "x",
    rps: 20,
    p50Ms: 2,
    p99Ms: 8,
    cpuUsPerReq: 6,
    peakRssMb: 90,
    errors: 3,
    requests: 600,
  });
});

Deno.test("ratioChecks() compares llm-balance with the pass-through and checks the targets", () => {
  const checks = ratioChecks({
    throughput: [
      row("direct", { rps: 50_000 }),
      row("passthrough", { rps: 10_000, cpuUsPerReq: 80 }),
      row("llm-balance", { rps: 9_000, cpuUsPerReq: 100 }),
    ],
    latency: [
      row("direct", { p50Ms: 0.1, p99Ms: 0.5 }),
      row("llm-balance", { p50Ms: 0.5, p99Ms: 1 }),
    ],
    ttfb: [row("direct", { p50Ms: 0.3 }), row("llm-balance", { p50Ms: 0.8 })],
    pool: [row("3 keys", { rps: 9000 }), row("10000 keys", { rps: 4500 })],
  }, [{ measure: "extra", value: 1, unit: "MB" }]);
  const by = new Map(checks.map((c) => [c.measure, c]));
  const throughput = by.get("throughput llm-balance / passthrough");
  assert.equal(throughput?.value, 0.9);
  assert.equal(throughput?.pass, true);
  assert.equal(by.get("CPU per request llm-balance / passthrough")?.value, 1.25);
  const p50 = by.get("1 connection: p50 added vs direct");
  assert.ok(Math.abs(p50!.value - 0.4) < 1e-9);
  assert.equal(p50?.pass, false);
  assert.equal(by.get("1 connection: p99 added vs direct")?.pass, true);
  assert.equal(by.get("streaming TTFB added vs direct (p50)")?.pass, true);
  assert.equal(by.get("throughput 10000 keys / 3 keys")?.value, 0.5);
  assert.equal(checks.at(-1)?.measure, "extra");
});

Deno.test("ratioChecks() takes ratios measured side by side over the ratio of medians", () => {
  const checks = ratioChecks(
    {
      pool: [row("3 keys", { rps: 5000 }), row("10000 keys", { rps: 4000 })],
    },
    [],
    { throughput: 0.82, pool: 0.97 },
  );
  const by = new Map(checks.map((c) => [c.measure, c]));
  const side = by.get("throughput llm-balance / passthrough, side by side (paired)");
  assert.equal(side?.value, 0.82);
  assert.equal(side?.pass, true);
  const pool = by.get("throughput 10000 keys / 3 keys");
  assert.equal(pool?.value, 0.97);
  assert.equal(pool?.pass, true);
});

Deno.test("roundRatio() is the median of the per-round ratios, rounds taken pairwise", () => {
  const base = [1000, 500, 800, 1000].map((rps) => sample({ rps }));
  const other = [800, 400, 720].map((rps) => sample({ rps }));
  // rounds 1-3 only (round 4 has no pair): 0.8, 0.8, 0.9
  assert.equal(roundRatio(base, other), 0.8);
  assert.ok(Number.isNaN(roundRatio([], other)));
});

Deno.test("ratioChecks() takes the per-round ratio of rounds in turn and shows the medians' too", () => {
  const checks = ratioChecks(
    {
      throughput: [
        row("passthrough", { rps: 10_000, cpuUsPerReq: 80 }),
        row("llm-balance", { rps: 6_000, cpuUsPerReq: 100 }),
      ],
    },
    [],
    { inTurn: 0.81 },
  );
  const by = new Map(checks.map((c) => [c.measure, c]));
  assert.equal(by.get("throughput llm-balance / passthrough")?.value, 0.81);
  assert.equal(by.get("throughput llm-balance / passthrough")?.pass, true);
  assert.equal(by.get("throughput llm-balance / passthrough, ratio of the medians")?.value, 0.6);
});

Deno.test("ratioChecks() leaves out what was not measured", () => {
  assert.deepEqual(ratioChecks({ throughput: [row("direct")] }, []), []);
});

Deno.test("table() and checksTable() render markdown rows", () => {
  const text = table("Title", [row("direct", { note: "n", rps: NaN })]);
  assert.match(text, /^### Title\n/);
  assert.match(text, /\| direct \| - \| 1\.000 \| 2\.000 \| 50\.0 \| 100\.0 \| 0 \| n \|/);
  const checks = checksTable([
    { measure: "ratio", value: 0.912, unit: "x", target: ">= 0.8x", pass: true },
    { measure: "added", value: 1.5, unit: "ms", pass: false },
  ]);
  assert.match(checks, /\| ratio \| 0\.91x \| >= 0\.8x \| PASS \|/);
  assert.ok(checks.includes("| added | 1.500 ms |  | FAIL |"), checks);
});

Deno.test("slope() is the least-squares slope, NaN without two distinct x", () => {
  assert.equal(slope([[0, 1], [1, 3], [2, 5]]), 2);
  // a saw that ends where it began has no trend
  assert.equal(slope([[0, 10], [1, 20], [2, 10], [3, 20], [4, 10], [5, 20], [6, 10]]), 0);
  assert.ok(Number.isNaN(slope([[1, 1]])));
  assert.ok(Number.isNaN(slope([[1, 1], [1, 2]])));
});

Deno.test("ratioChecks() checks KB per stream and growth of llm-balance at each number of streams", () => {
  const streams = (target: string, n: number, kb: number, growth: number) =>
    row(target, {
      streams: n,
      kbPerStream: kb,
      growthMbPerS: growth,
      peakRssMb: 70 + n * kb / 1024,
    });
  const checks = ratioChecks({
    streams: [
      streams("passthrough", 1000, 95, 0),
      streams("llm-balance", 1000, 112, 0.1),
      streams("passthrough", 5000, 66, 0),
      streams("llm-balance", 5000, 142, 9.9),
    ],
  }, []);
  const by = new Map(checks.map((c) => [c.measure, c]));
  assert.equal(by.get("KB per stream with 1000 open streams, llm-balance")?.pass, true);
  assert.equal(by.get("RSS growth while 1000 open streams are held, llm-balance")?.pass, true);
  assert.equal(by.get("KB per stream with 5000 open streams, llm-balance")?.pass, false);
  assert.equal(by.get("RSS growth while 5000 open streams are held, llm-balance")?.pass, false);
  // issue 7's peak RSS target is for 1,000 streams, checked at the smallest number only
  assert.equal(by.get("peak RSS with 1000 open streams, llm-balance")?.pass, false);
  assert.equal(by.has("peak RSS with 5000 open streams, llm-balance"), false);
  assert.ok(by.get("peak RSS with 5000 open streams, llm-balance / passthrough")!.value > 1);
});

Deno.test("streamsTable() renders one row per target and number of streams", () => {
  const text = streamsTable("Streams", [
    row("llm-balance", {
      streams: 5000,
      rssBeforeMb: 70,
      kbPerStream: 99.46,
      heldRssMb: 540,
      growthMbPerS: -0.456,
      cpuUsPerReq: 37.12,
    }),
  ]);
  assert.match(text, /^### Streams\n/);
  const line = "| llm-balance | 5000 | 1000 | 1.0 | 2.0 | 37.1 | 70.0 | 100.0 | 99.5 | 540.0 | " +
    "-0.46 | 0 |  |";
  assert.ok(text.includes(line), text);
});
