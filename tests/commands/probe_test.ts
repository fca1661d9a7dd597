/**
 * @module
 * Tests of `probe`: one probe per key through each upstream's probe plugin, and the table.
 */

import { builtins } from "../../plugins/mod.ts";
import assert from "node:assert/strict";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { formatProbeTable, probeAll, type ProbeRow } from "../../src/commands/probe.ts";

Deno.test("probeAll() probes every key once and reports each result", async () => {
  await using ok = await startMockUpstream({ name: "ok", keys: ["sk-probe-good-0001"] });
  await using limited = await startMockUpstream({ name: "limited", mode: "rate_limit" });
  const config = parseConfigText(
    `upstreams:
  ok: { base_url: ${ok.baseUrl}, keys: [sk-probe-good-0001, sk-probe-bad-00002] }
  limited: { base_url: ${limited.baseUrl}, keys: [sk-probe-lim-00003] }
`,
    "probe.yaml",
    { env: () => undefined },
  );
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
  });
  let rows: ProbeRow[];
  try {
    rows = await probeAll(app);
  } finally {
    await app.close();
  }
  // in configuration order: the default pool interleaves upstreams (ok#1, limited#1, ok#2)
  assert.deepEqual(rows.map((r) => [r.upstream, r.result, r.status]), [
    ["ok", "healthy", 200],
    ["limited", "rate_limited", 429],
    ["ok", "auth", 401],
  ]);
  assert.equal(ok.requests.length, 2);
  assert.equal(limited.requests.length, 1);
  assert.ok(!JSON.stringify(rows).includes("sk-probe-good-0001"), "keys are masked");
  // each row names its key by the stable id /admin/keys and the admin URLs take
  const ids = [...app.rt.candidates.values()].map((c) => c.id);
  assert.deepEqual(rows.map((r) => r.id), ids);
  for (const r of rows) assert.match(r.id, new RegExp(`^${r.upstream}:[0-9a-f]+$`));
});

Deno.test("formatProbeTable() aligns a header and one row per key", () => {
  const table = formatProbeTable([
    {
      key: "sk...01",
      id: "a:01",
      upstream: "a",
      result: "healthy",
      status: 200,
      latency_ms: 3.2,
      detail: null,
    },
    {
      key: "sk...02",
      id: "bbbb:02",
      upstream: "bbbb",
      result: "network",
      status: null,
      latency_ms: 0.5,
      detail: "connection refused",
    },
  ]);
  assert.deepEqual(table.split("\n"), [
    "KEY      UPSTREAM  RESULT   STATUS  LATENCY  DETAIL",
    "sk...01  a         healthy  200     3.2 ms",
    "sk...02  bbbb      network  -       0.5 ms   connection refused",
  ]);
});
