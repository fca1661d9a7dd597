/**
 * @module
 * End-to-end test of affinity pins told between instances through a real Redis: a pin one
 * instance moves is followed by the others.
 */

import assert from "node:assert/strict";
import { hasRedis } from "../helpers/redis.ts";
import type { ServeProcess } from "../helpers/cli.ts";
import {
  admin,
  clusterConfigs,
  type KeyedUpstream,
  maskOf,
  MODEL,
  pollUntil,
  stateOf,
  withCluster,
} from "../helpers/cluster.ts";

const KEYS = [1, 2, 3, 4].map((i) => `sk-pins-key-0000000000${i}`);
const config = clusterConfigs("cluster-pins-test:");
const pinned = (redisUrl: string, up: KeyedUpstream) =>
  config(redisUrl, up, `[${KEYS.join(", ")}]`, {
    extra: "pools:\n  default: { upstreams: [up], affinity: { by: [prompt_cache_key] } }\n",
  });

/** Sends one chat completion with a prompt_cache_key; returns the key that served it. */
async function send(node: ServeProcess, up: KeyedUpstream, value: string): Promise<string> {
  const before = up.arrivals.length;
  const res = await fetch(`${node.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      prompt_cache_key: value,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200, await res.text());
  assert.equal(up.arrivals.length, before + 1);
  return up.arrivals[before]!.key;
}

Deno.test({
  name: "cluster: a pin moved on one instance is followed by the other",
  ignore: !hasRedis,
  fn: () =>
    withCluster({ instances: 2, config: pinned }, async ({ up, nodes, serve }) => {
      const [a, b] = nodes as [ServeProcess, ServeProcess];
      const values = Array.from({ length: 8 }, (_, i) => `conversation-${i}`);
      const home = new Map<string, string>();
      for (const v of values) home.set(v, await send(a, up, v));
      // the other instance agrees from the start (the same ring, and the pins it heard)
      for (const v of values) assert.equal(await send(b, up, v), home.get(v), v);

      // one key out: its values move on instance a, and the moves are told to b
      const out = home.get(values[0]!)!;
      const moved = values.filter((v) => home.get(v) === out);
      const path = `keys/${encodeURIComponent(maskOf(out))}`;
      assert.equal((await admin(a.url, `${path}/disable`)).status, 200);
      await pollUntil(async () => (await stateOf(b.url, out)) === "disabled", "disabled on b");
      const to = new Map<string, string>();
      for (const v of moved) {
        const k = await send(a, up, v);
        assert.notEqual(k, out);
        to.set(v, k);
      }
      // the key comes back; b follows a's moves instead of its own pins to the old key
      assert.equal((await admin(a.url, `${path}/enable`)).status, 200);
      await pollUntil(async () => (await stateOf(b.url, out)) === "healthy", "enabled on b");
      for (const v of moved) assert.equal(await send(b, up, v), to.get(v), `${v} on b`);
      for (const v of values) {
        if (!to.has(v)) assert.equal(await send(b, up, v), home.get(v), `${v} stayed`);
      }

      // an instance that starts knows no pin: its first request of a moved value goes to the
      // ring's home, but it does not pull the others back; they tell it where the pin stands
      const c = await serve();
      const v = moved[0]!;
      await send(c, up, v);
      await pollUntil(async () => (await send(c, up, v)) === to.get(v), "c follows the pin", 3000);
      assert.equal(await send(a, up, v), to.get(v), "a keeps its pin");
      assert.equal(await send(b, up, v), to.get(v), "b keeps its pin");
    }),
});
