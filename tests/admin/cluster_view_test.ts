/**
 * @module
 * Tests of {@linkcode clusterSnapshot} against a real redis-server: the cluster's budgets of
 * keys that have some (read by any instance, whichever took the requests), nothing for keys
 * without, and how Redis is (its URL without the password, up or down).
 */

import assert from "node:assert/strict";
import { clusterSnapshot } from "../../src/admin/cluster_view.ts";
import { Cluster } from "../../src/shared/cluster.ts";
import { MemoryStateStore } from "../../src/state_store.ts";
import type { Candidate } from "../../src/plugin.ts";
import { makeCandidates } from "../helpers/candidates.ts";
import { hasRedis, randomPrefix, type RedisServer, withRedis } from "../helpers/redis.ts";
import { waitFor } from "../helpers/e2e.ts";

const quiet = { info() {}, warn() {} };
const PASSWORD = "cluster-view-pw-77";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits, if needed, so that the test does not straddle a minute (or a UTC day) boundary. */
async function awayFromEdges(): Promise<void> {
  const now = Date.now();
  const toMinute = 60_000 - (now % 60_000);
  const toDay = 86_400_000 - (now % 86_400_000);
  if (toMinute < 3000 || toDay < 3000) await sleep(Math.min(toMinute, toDay) + 100);
}

/** Keys: with request and token budgets, without any, with a token budget only. */
function keys(): [Candidate, Candidate, Candidate] {
  const [a, b, c] = makeCandidates([
    {
      quota: {
        requestsPerDay: 100,
        modelRequestsPerDay: 10,
        requestsPerMinute: 60,
        tokensPerDay: 1000,
      },
    },
    {},
    { quota: { tokensPerDay: 500 } },
  ]);
  return [a!, b!, c!];
}

/**
 * Runs `fn` on a fresh Redis and one {@linkcode Cluster} per instance name (a random one where
 * undefined), all on a random prefix and not started yet; closed, in order, and Redis stopped
 * after.
 */
async function withClusters(
  options: { password?: string; required: boolean; instances: (string | undefined)[] },
  fn: (ctx: { redis: RedisServer; clusters: Cluster[] }) => Promise<void>,
): Promise<void> {
  await withRedis(options, async (redis) => {
    const config = { url: redis.url, prefix: randomPrefix(), required: options.required };
    const clusters = options.instances.map((instance) =>
      Cluster.open(config, {
        local: new MemoryStateStore(),
        logger: quiet,
        ...(instance === undefined ? {} : { instance }),
      })
    );
    try {
      await fn({ redis, clusters });
    } finally {
      for (const c of clusters) await c.close();
    }
  });
}

async function take(cluster: Cluster, c: Candidate, model: string): Promise<boolean> {
  const r = cluster.bank.take(c, model);
  return r === true ? true : (await r) !== "refused";
}

Deno.test({
  name: "cluster view: budgets of keys that have some, as Redis counts them; status up then down",
  ignore: !hasRedis,
  async fn() {
    await awayFromEdges();
    await withClusters({
      password: PASSWORD,
      required: false,
      instances: ["one", "two"],
    }, async ({ redis, clusters }) => {
      const [one, two] = clusters as [Cluster, Cluster];
      assert.equal(await one.start(), true);
      assert.equal(await two.start(), true);
      const [a1, b1, c1] = keys();
      const [a2, b2, c2] = keys();
      // a model budget of 10 is taken one request at a time: Redis's counts are exact
      assert.equal(await take(one, a1, "m1"), true);
      assert.equal(await take(one, a1, "m1"), true);
      assert.equal(await take(one, a1, "m2"), true);
      one.bank.tokens(a1, 40);
      one.bank.tokens(c1, 25);
      await sleep(300);
      assert.equal(await take(one, b1, "m1"), true);

      const snap = await clusterSnapshot(two, [a2, b2, c2]);
      assert.deepEqual(snap.status, {
        redis: `redis://:***@127.0.0.1:${redis.port}/0`,
        up: true,
        required: false,
        downs: 0,
        instance: "two",
      });
      assert.deepEqual(snap.budgets.get(a2.id), {
        requests_per_day: { limit: 100, used: 3, remaining: 97 },
        "model_requests_per_day:m1": { limit: 10, used: 2, remaining: 8 },
        "model_requests_per_day:m2": { limit: 10, used: 1, remaining: 9 },
        requests_per_minute: { limit: 60, used: 3, remaining: 57 },
        tokens_per_day: { limit: 1000, used: 40, remaining: 960 },
      });
      assert.equal(snap.budgets.has(b2.id), false, "a key without budgets");
      assert.deepEqual(snap.budgets.get(c2.id), {
        tokens_per_day: { limit: 500, used: 25, remaining: 475 },
      });
      assert.deepEqual([...snap.budgets.keys()].sort(), [a2.id, c2.id].sort());
      assert.ok(!JSON.stringify(snap.status).includes(PASSWORD));

      // the instance that took them sees the same
      const own = await clusterSnapshot(one, [a1, b1, c1]);
      assert.deepEqual(own.budgets, snap.budgets);

      await redis.kill();
      await waitFor(() => !two.up, "Redis down for two", 5000);
      const down = await clusterSnapshot(two, [a2, b2, c2]);
      assert.equal(down.status.up, false);
      assert.equal(down.status.downs, 1);
      assert.equal(down.budgets.size, 0);
    });
  },
});

Deno.test({
  name: "cluster view: remaining never goes below 0",
  ignore: !hasRedis,
  async fn() {
    await awayFromEdges();
    await withClusters({ required: true, instances: [undefined] }, async ({ clusters }) => {
      const [one] = clusters as [Cluster];
      assert.equal(await one.start(), true);
      const [c] = makeCandidates([{ quota: { tokensPerDay: 100 } }]);
      one.bank.tokens(c!, 250);
      await sleep(300);
      const snap = await clusterSnapshot(one, [c!]);
      assert.equal(snap.status.required, true);
      assert.deepEqual(snap.budgets.get(c!.id), {
        tokens_per_day: { limit: 100, used: 250, remaining: 0 },
      });
    });
  },
});
