/**
 * @module
 * The shared key state against a real redis-server: a change on one instance reaches another
 * within 100 ms, concurrent writes converge, the hot path writes nothing when no shared field
 * changed, changes made while Redis is down are written when it returns, and a Redis that lost
 * its data is filled again.
 */

import assert from "node:assert/strict";
import { hasRedis, randomPrefix, type RedisServer, withRedis } from "../helpers/redis.ts";
import { RedisLink } from "../../src/shared/link.ts";
import { applyField, RedisStateStore, sharedFields } from "../../src/state/redis_store.ts";
import { emptyState, MemoryStateStore } from "../../src/state_store.ts";
import { waitFor } from "../helpers/e2e.ts";

const quiet = { info() {}, warn() {} };
const ID = "up:abc123";

interface Node {
  link: RedisLink;
  store: RedisStateStore;
  told: string[];
}

async function node(redis: RedisServer, prefix: string, instance: string): Promise<Node> {
  const link = new RedisLink({ url: redis.url, prefix, logger: quiet });
  const store = new RedisStateStore({ link, local: new MemoryStateStore(), instance });
  const told: string[] = [];
  store.onRemote((id) => told.push(id));
  store.record(ID);
  await link.start();
  await store.start();
  return { link, store, told };
}

async function closeAll(...nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    await n.store.close();
    await n.link.close();
  }
}

/**
 * A fresh Redis and a random prefix; `node(instance)` starts an instance on them. Every instance
 * is closed, in the order started, and Redis stopped after `fn`.
 */
async function withNodes(
  fn: (ctx: {
    redis: RedisServer;
    prefix: string;
    node: (instance: string) => Promise<Node>;
  }) => Promise<void>,
): Promise<void> {
  await withRedis(async (redis) => {
    const p = randomPrefix();
    const started: Node[] = [];
    try {
      await fn({
        redis,
        prefix: p,
        node: async (instance) => {
          const n = await node(redis, p, instance);
          started.push(n);
          return n;
        },
      });
    } finally {
      await closeAll(...started);
    }
  });
}

Deno.test("redis store: fields round-trip, and a record nothing happened to has the defaults", () => {
  const s = emptyState();
  s.restUntil = 5000;
  s.restReason = "rate_limited";
  s.disabled = true;
  s.budget.modelSpentUntil["Qwen/Qwen3-8B"] = 9000;
  const f = sharedFields(s, 1000);
  const t = emptyState();
  for (const [name, v] of f) applyField(t, name, v);
  assert.deepEqual(sharedFields(t, 1000), f);
  assert.equal(applyField(t, "r", "5000|rate_limited"), false, "no change the second time");
  assert.equal(applyField(t, "m:__proto__", "7"), true);
  assert.equal(Object.getPrototypeOf(t.budget.modelSpentUntil), Object.prototype);
  assert.equal(applyField(t, "r", "1|nonsense"), true);
  assert.equal(t.restReason, "", "an unknown reason is not taken");
});

Deno.test({
  name: "redis store: a rest on one instance reaches another within 100 ms",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ node }) => {
      const a = await node("a");
      const b = await node("b");
      const until = Date.now() + 60_000;
      const s = a.store.record(ID);
      s.restUntil = until;
      s.restReason = "rate_limited";
      const t0 = performance.now();
      a.store.changed(ID);
      await waitFor(() => b.store.record(ID).restUntil === until, "the rest on b", 1000);
      const ms = performance.now() - t0;
      assert.ok(ms < 100, `took ${ms} ms`);
      assert.equal(b.store.record(ID).restReason, "rate_limited");
      assert.deepEqual(b.told, [ID]);
      assert.equal(a.told.length, 0, "its own change is not news to a");
    }),
});

Deno.test({
  name: "redis store: concurrent writes of one field converge on every instance",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ redis, prefix: p, node }) => {
      const nodes = [await node("a"), await node("b"), await node("c")];
      for (let round = 0; round < 20; round++) {
        nodes.forEach((n, i) => {
          const s = n.store.record(ID);
          s.ejectedUntil = 1_000_000 + round * 10 + i;
          s.ejections = i + 1;
          n.store.changed(ID);
        });
      }
      await new Promise((r) => setTimeout(r, 200));
      const stored = await redis.cli("HGET", `${p}key:${ID}`, "e");
      for (const n of nodes) {
        const s = n.store.record(ID);
        assert.equal(`${s.ejectedUntil}|${s.ejections}`, stored);
      }
    }),
});

Deno.test({
  name: "redis store: a change of per-instance fields only writes nothing to Redis",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ redis, node }) => {
      const a = await node("a");
      const before = await redis.cli("INFO", "commandstats");
      const s = a.store.record(ID);
      for (let i = 0; i < 1000; i++) {
        s.inFlight++;
        s.requests++;
        a.store.changed(ID);
        s.inFlight--;
        a.store.changed(ID);
      }
      await new Promise((r) => setTimeout(r, 50));
      const after = await redis.cli("INFO", "commandstats");
      const calls = (text: string) => Number(/cmdstat_evalsha:calls=(\d+)/.exec(text)?.[1] ?? 0);
      assert.equal(calls(after), calls(before));
    }),
});

Deno.test({
  name: "redis store: changes made while Redis is down reach the others when it is back",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ redis, prefix: p, node }) => {
      const a = await node("a");
      const b = await node("b");
      await redis.kill();
      await waitFor(() => !a.link.up && !b.link.up, "both links down", 5000);
      const s = a.store.record(ID);
      s.disabled = true;
      a.store.changed(ID);
      assert.equal(b.store.record(ID).disabled, false);
      await redis.restart();
      await waitFor(() => b.store.record(ID).disabled, "the disable on b", 8000);
      assert.equal(await redis.cli("HGET", `${p}key:${ID}`, "d"), "1");
    }),
});

Deno.test({
  name: "redis store: a Redis that lost its data is filled again; a new instance reads it",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ redis, prefix: p, node }) => {
      const a = await node("a");
      const s = a.store.record(ID);
      s.restUntil = Date.now() + 60_000;
      s.restReason = "quota";
      s.budget.modelSpentUntil["m1"] = Date.now() + 60_000;
      a.store.changed(ID);
      await waitFor(() => true, "", 10);
      await redis.kill();
      await redis.restart();
      await waitFor(() => a.link.up, "a back", 8000);
      let stored = "";
      for (let i = 0; i < 100 && stored === ""; i++) {
        stored = await redis.cli("HGET", `${p}key:${ID}`, "r");
        if (stored === "") await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(stored, `${s.restUntil}|quota`);
      const c = await node("c");
      await waitFor(() => c.store.record(ID).restReason === "quota", "c reads the rest", 2000);
      assert.equal(c.store.record(ID).budget.modelSpentUntil["m1"], s.budget.modelSpentUntil["m1"]);
    }),
});

Deno.test({
  name: "redis store: garbage on the channel and keys it does not serve are ignored",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ redis, prefix: p, node }) => {
      const a = await node("a");
      await redis.cli("PUBLISH", `${p}events`, "not json");
      await redis.cli(
        "PUBLISH",
        `${p}events`,
        JSON.stringify({ i: "x", k: "other:1", f: { d: "1" } }),
      );
      await redis.cli("PUBLISH", `${p}events`, JSON.stringify({ i: "x", k: ID, f: { d: 1 } }));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(a.store.record(ID).disabled, false);
      assert.equal([...a.store.entries()].length, 1);
    }),
});

Deno.test({
  name: "redis store: a local change back to the value before a remote one is written",
  ignore: !hasRedis,
  fn: () =>
    withNodes(async ({ node }) => {
      const a = await node("a");
      const b = await node("b");
      const sa = a.store.record(ID);
      a.store.changed(ID); // a's baseline: not disabled
      const sb = b.store.record(ID);
      sb.disabled = true;
      b.store.changed(ID);
      await waitFor(() => sa.disabled, "the disable on a", 1000);
      sa.disabled = false; // an operator enables it on a
      a.store.changed(ID);
      await waitFor(() => !sb.disabled, "the enable on b", 1000);
    }),
});
