/**
 * @module
 * Tests of what stats and metrics show of routing: pins per key and per pool, affinity counts,
 * peak-EWMA latency, slow start; through a real application forwarding to a fake upstream.
 */

import assert from "node:assert/strict";
import { builtins } from "../../plugins/mod.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { Logger } from "../../src/logger.ts";
import type { RequestContext } from "../../src/plugin.ts";
import { affinityView, pinsByKey, poolsOf } from "../../src/admin/routing_view.ts";

const KEYS = ["sk-route-aaaaaaaaaaaa1", "sk-route-bbbbbbbbbbbb2", "sk-route-cccccccccccc3"];

async function appWith(pool: string) {
  const yaml = `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [${KEYS.join(", ")}] }\n` +
    `pools:\n  default: ${pool}\n`;
  const lines: Record<string, unknown>[] = [];
  const app = await App.create(parseConfigText(yaml, "t.yaml", { env: () => undefined }), {
    plugins: [...builtins],
    probes: false,
    logger: new Logger({ format: "json", sink: (l) => lines.push(JSON.parse(l)) }),
    fetch: () => Promise.resolve(new Response('{"choices":[{}]}', { status: 200 })),
  });
  const send = async (body: Record<string, unknown>) => {
    const req = new Request("http://proxy.test/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [], ...body }),
    });
    const url = new URL(req.url);
    const ctx: RequestContext = {
      req,
      url,
      path: url.pathname,
      search: "",
      startedAt: 0,
      remoteAddr: "127.0.0.1",
      requestId: "r",
      client: undefined,
      res: undefined,
      log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
      done: undefined,
    };
    await app.services().forward(ctx);
    await ctx.res?.text();
    await ctx.done;
    return ctx.log;
  };
  return { app, send, lines };
}

Deno.test("pinsByKey() and affinityView() count each key's pins and the pool's routed requests", async () => {
  const { app, send } = await appWith(
    "{ upstreams: [up], affinity: { by: [prompt_cache_key], ttl: 60, max_load: 1.5 } }",
  );
  try {
    const logs = [];
    for (let i = 0; i < 12; i++) logs.push(await send({ prompt_cache_key: `c${i}` }));
    for (let i = 0; i < 12; i++) logs.push(await send({ prompt_cache_key: `c${i}` }));
    logs.push(await send({}));
    assert.deepEqual(
      logs.map((l) => l.affinity),
      [...Array(12).fill("new"), ...Array(12).fill("hit"), undefined],
    );
    const pins = pinsByKey(app.rt);
    assert.equal([...pins.values()].reduce((a, b) => a + b, 0), 12);
    assert.equal(pins.size, 3, "every key holds pins");
    const pool = poolsOf(app.rt)[0]!;
    assert.deepEqual(affinityView(pool), {
      by: ["prompt_cache_key"],
      ttl_seconds: 60,
      max_load: 1.5,
      pins: 12,
      requests: { hit: 12, new: 12, moved: 0, detour: 0 },
    });
    const stats = await app.services().stats.keys() as Record<string, Record<string, unknown>>;
    const shown = Object.values(stats).map((s) => s.pins as number);
    assert.equal(shown.reduce((a, b) => a + b, 0), 12);
    assert.ok(Object.values(stats).every((s) => typeof s.latency_ewma_ms === "number"));
    const lb = app.services().stats.loadBalancers() as {
      load_balancers: Record<string, { affinity: unknown; servers: { pins: number }[] }>;
    };
    assert.deepEqual(lb.load_balancers.default?.affinity, affinityView(pool));
    assert.equal(lb.load_balancers.default?.servers.reduce((n, s) => n + s.pins, 0), 12);
    const metrics = await app.services().stats.metrics();
    assert.match(
      metrics,
      /^llm_balance_affinity_requests_total\{pool="default",result="hit"\} 12$/m,
    );
    assert.match(
      metrics,
      /^llm_balance_affinity_requests_total\{pool="default",result="new"\} 12$/m,
    );
    assert.match(metrics, /^llm_balance_affinity_pins\{pool="default"\} 12$/m);
    assert.equal([...metrics.matchAll(/^llm_balance_key_pins\{/gm)].length, 3);
    assert.equal([...metrics.matchAll(/^llm_balance_key_latency_ewma_seconds\{/gm)].length, 3);
    assert.ok(!KEYS.some((k) => metrics.includes(k)), "no key in the metrics");
  } finally {
    await app.close();
  }
});

Deno.test("affinityView() is null and no pins are shown without affinity routing", async () => {
  const { app, send } = await appWith("{ upstreams: [up], slow_start: 5 }");
  try {
    const log = await send({ prompt_cache_key: "c" });
    assert.equal(log.affinity, undefined);
    const pool = poolsOf(app.rt)[0]!;
    assert.equal(affinityView(pool), null);
    assert.equal(pinsByKey(app.rt).size, 0);
    const stats = await app.services().stats.keys() as Record<string, Record<string, unknown>>;
    assert.ok(Object.values(stats).every((s) => !("pins" in s)));
    const lb = app.services().stats.loadBalancers() as {
      load_balancers: Record<string, Record<string, unknown>>;
    };
    assert.equal(lb.load_balancers.default?.slow_start_seconds, 5);
    const metrics = await app.services().stats.metrics();
    assert.doesNotMatch(metrics, /llm_balance_affinity_/);
  } finally {
    await app.close();
  }
});

Deno.test("pins survive a reload that keeps the pool's keys", async () => {
  const { app, send } = await appWith("{ upstreams: [up], affinity: { by: [user] } }");
  try {
    const first = [];
    for (let i = 0; i < 6; i++) first.push((await send({ user: `u${i}` })).key);
    await app.reload(app.rt.config);
    for (let i = 0; i < 6; i++) {
      const log = await send({ user: `u${i}` });
      assert.equal(log.affinity, "hit");
      assert.equal(log.key, first[i]);
    }
    assert.equal(poolsOf(app.rt)[0]!.affinity!.counts.new, 6, "counts carry over");
  } finally {
    await app.close();
  }
});
