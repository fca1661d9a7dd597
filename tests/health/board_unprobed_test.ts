/**
 * @module
 * Tests of `HealthBoard.unprobed()` (`src/health/board.ts`) and its use when an application
 * builds a runtime (`src/app.ts`): a saved probe verdict (`healthy: false`) on a key whose
 * upstream no longer has a health check would keep the key out forever, since no probe would
 * ever bring it back; the verdict is forgotten and the key serves. A key whose upstream still
 * has a health check keeps its verdict until a probe says otherwise.
 */

import assert from "node:assert/strict";
import { builtins } from "../../plugins/mod.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { Logger } from "../../src/logger.ts";
import type { Candidate, RequestContext } from "../../src/plugin.ts";
import { MemoryStateStore, type StateStore } from "../../src/state_store.ts";
import { ManualClock } from "../helpers/clock.ts";

const KEY_PLAIN = "sk-unp-aaaa-0000000001";
const KEY_PROBED = "sk-unp-bbbb-0000000002";

/** Two upstreams: `plain` without a health check, `probed` with one when `probed` is true. */
function yaml(probed = true): string {
  return `upstreams:
  plain: { base_url: "http://plain.test/v1", keys: [${KEY_PLAIN}] }
  probed: { base_url: "http://probed.test/v1", keys: [${KEY_PROBED}]${
    probed ? ", health_check: { interval: 60, timeout: 1 }" : ""
  } }
state: memory
`;
}

interface Built {
  app: App;
  logs: Record<string, unknown>[];
  /** The authorization of every request the fake upstream received. */
  seen: string[];
  byKey(key: string): Candidate;
}

async function build(store: StateStore, text: string): Promise<Built> {
  const logs: Record<string, unknown>[] = [];
  const seen: string[] = [];
  const config = parseConfigText(text, "board_unprobed_test.yaml", { env: () => undefined });
  const app = await App.create(config, {
    plugins: builtins,
    // no probe runs: only the runtime's build may change a verdict
    probes: false,
    store,
    clock: new ManualClock(),
    logger: new Logger({ format: "json", sink: (line) => logs.push(JSON.parse(line)) }),
    fetch: (_input, init) => {
      seen.push(new Headers(init?.headers).get("authorization") ?? "");
      return Promise.resolve(Response.json({ ok: true }));
    },
  });
  const byKey = (key: string) => {
    const c = [...app.rt.candidates.values()].find((c) => c.key?.reveal() === key);
    assert.ok(c !== undefined, key);
    return c;
  };
  return { app, logs, seen, byKey };
}

/** A store whose records say both keys failed their probes (as a saved state may). */
async function failedStore(): Promise<MemoryStateStore> {
  const store = new MemoryStateStore();
  const { app, byKey } = await build(store, yaml());
  for (const key of [KEY_PLAIN, KEY_PROBED]) {
    const s = store.record(byKey(key).id);
    s.healthy = false;
    s.unhealthyReason = "probe: HTTP 503";
  }
  await app.close();
  return store;
}

function contextOf(req: Request): RequestContext {
  const url = new URL(req.url);
  return {
    req,
    url,
    path: url.pathname,
    search: url.search,
    startedAt: 0,
    remoteAddr: "127.0.0.1",
    requestId: "req-1",
    client: undefined,
    res: undefined,
    log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
    done: undefined,
  };
}

/** Sends one chat completion through the application's forwarding engine. */
async function ask(app: App): Promise<number> {
  const ctx = contextOf(
    new Request("http://proxy.test/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [] }),
    }),
  );
  await app.services().forward(ctx);
  await ctx.res?.body?.cancel();
  return ctx.res?.status ?? 0;
}

Deno.test("App.create() forgets a saved probe verdict on a key whose upstream has no health check", async () => {
  const store = await failedStore();
  const { app, byKey, logs } = await build(store, yaml());
  try {
    const plain = byKey(KEY_PLAIN);
    assert.equal(plain.state.healthy, true, "no probe would ever bring it back");
    assert.equal(plain.state.unhealthyReason, "");
    assert.equal(store.record(plain.id).healthy, true, "the store's record too");
    const line = logs.find((l) =>
      l.msg === "candidate healthy again: its upstream has no health check"
    );
    assert.ok(line !== undefined, JSON.stringify(logs.map((l) => l.msg)));
    assert.equal(line.upstream, "plain");
  } finally {
    await app.close();
  }
});

Deno.test("App.create() keeps the saved probe verdict of a key whose upstream has a health check", async () => {
  const store = await failedStore();
  const { app, byKey } = await build(store, yaml());
  try {
    const probed = byKey(KEY_PROBED);
    assert.equal(probed.state.healthy, false, "a probe decides when it is back");
    assert.equal(probed.state.unhealthyReason, "probe: HTTP 503");
  } finally {
    await app.close();
  }
});

Deno.test("App.create() over a saved failed verdict serves the key without health check", async () => {
  const store = await failedStore();
  const { app, seen } = await build(store, yaml());
  try {
    for (let i = 0; i < 3; i++) assert.equal(await ask(app), 200);
    assert.deepEqual(seen, Array(3).fill(`Bearer ${KEY_PLAIN}`), "only the unprobed key serves");
  } finally {
    await app.close();
  }
});

Deno.test("App.reload() forgets the verdict once a config drops the upstream's health check", async () => {
  const store = await failedStore();
  const { app, byKey, seen } = await build(store, yaml());
  try {
    assert.equal(byKey(KEY_PROBED).state.healthy, false);
    const config = parseConfigText(yaml(false), "board_unprobed_test.yaml", {
      env: () => undefined,
    });
    await app.reload(config);
    assert.equal(byKey(KEY_PROBED).state.healthy, true);
    for (let i = 0; i < 4; i++) assert.equal(await ask(app), 200);
    assert.ok(seen.includes(`Bearer ${KEY_PROBED}`), "the key serves again");
  } finally {
    await app.close();
  }
});

Deno.test("HealthBoard.unprobed() leaves a healthy key alone", async () => {
  const store = new MemoryStateStore();
  const { app, byKey, logs } = await build(store, yaml());
  try {
    const c = byKey(KEY_PLAIN);
    const epoch = app.board.epoch;
    const before = logs.length;
    app.board.unprobed(c);
    assert.equal(app.board.epoch, epoch, "nothing changed: the pools keep their snapshot");
    assert.equal(logs.length, before, "nothing logged");
    assert.equal(c.state.healthy, true);
  } finally {
    await app.close();
  }
});

Deno.test("HealthBoard.unprobed() brings a key back and tells the pools", async () => {
  const store = new MemoryStateStore();
  const { app, byKey } = await build(store, yaml());
  try {
    const c = byKey(KEY_PLAIN);
    const pool = app.rt.poolFor("m")!;
    const now = app.now();
    store.record(c.id).healthy = false;
    store.record(c.id).unhealthyReason = "probe: timeout";
    app.board.epoch++;
    assert.ok(!pool.available(now).includes(c), "out while its verdict stands");
    const epoch = app.board.epoch;
    app.board.unprobed(c);
    assert.ok(app.board.epoch > epoch);
    assert.equal(c.state.unhealthyReason, "");
    assert.ok(pool.available(now).includes(c), "back in the pool's snapshot");
  } finally {
    await app.close();
  }
});
