/**
 * @module
 * End-to-end regressions of shared state on Redis under faults (issue 18, the reviewer's
 * attacks): a Redis restarted empty does not let a day's budget be spent again; a reload that
 * lowers a limit holds from the next request; a client that leaves while its request waits for
 * Redis costs nothing upstream; SIGTERM with Redis frozen still exits; an operator's reset on one
 * instance voids another's grant; tokens are not counted twice after a Redis stall;
 * `redis_required` refuses requests that were waiting when Redis stalled; a reload that changes
 * `state` warns without showing the Redis password.
 */

import assert from "node:assert/strict";
import { hasRedis } from "../helpers/redis.ts";
import type { ServeProcess } from "../helpers/cli.ts";
import {
  admin,
  type Answer,
  ask,
  clusterBudget,
  clusterConfigs,
  countLogs,
  errorOf,
  honest,
  type KeyedUpstream,
  keyEntry,
  maskOf,
  MODEL,
  pollUntil,
  REDIS_BACK_LOG,
  REDIS_DOWN_LOG,
  withCluster,
} from "../helpers/cluster.ts";

const K1 = "sk-fault-key-0000000001";
const STATE_WARNING = "state changes need a restart; key state stays where it is";
/** Tokens of every answer of the keyed upstream (`usage.total_tokens`). */
const TOKENS_PER_ANSWER = 4;

/** A config of one upstream on `up`; `keys` is the YAML of its keys (and quota). */
const config = clusterConfigs("faults-test:");

/** K1 alone with a quota (YAML flow mapping body, e.g. `requests_per_day: 8`). */
function oneKey(quota: string): string {
  return `[${K1}]\n    quota: { ${quota} }`;
}

/** The config of K1 alone with a quota, for {@linkcode withCluster}. */
function keyed(
  quota: string,
  options: { extra?: string; required?: boolean } = {},
): (redisUrl: string, up: KeyedUpstream) => string {
  return (redisUrl, up) => config(redisUrl, up, oneKey(quota), options);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

/**
 * Sends `n` chat completions over the instances in turn, `concurrency` at a time.
 * @returns the answers, in the order sent
 */
async function burst(
  nodes: readonly ServeProcess[],
  n: number,
  concurrency: number,
): Promise<Answer[]> {
  const out: Answer[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await ask(nodes[i % nodes.length]!.url);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/** `status code` → how many, e.g. `{"200": 40, "503 no_upstream_available": 110}`. */
function tally(answers: readonly Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const code = errorOf(a)?.code;
    const k = code === undefined ? String(a.status) : `${a.status} ${String(code)}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Waits for a log line on every instance that logged `REDIS_DOWN_LOG` (none when none went down). */
async function backWhereDown(nodes: readonly ServeProcess[], timeoutMs = 5000): Promise<void> {
  for (const n of nodes) {
    if (countLogs(n, REDIS_DOWN_LOG) > 0) {
      await n.waitForLog((r) => r.msg === REDIS_BACK_LOG, timeoutMs);
    }
  }
}

Deno.test({
  name: "cluster faults: while Redis is away each of three instances spends only its share " +
    "of what was left",
  ignore: !hasRedis,
  fn: async () => {
    const LIMIT = 300;
    const text = keyed(`requests_per_day: ${LIMIT}`);
    await withCluster({ instances: 3, config: text }, async ({ redis, up, nodes }) => {
      await sleep(1500); // each instance has counted the three (once a second)
      assert.deepEqual(tally(await burst(nodes, 60, 6)), { "200": 60 });
      await redis.kill();
      for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_DOWN_LOG, 5000);
      const away = await burst(nodes, 400, 6);
      for (const a of away) {
        assert.ok(a.status === 200 || honest(a), `not an honest refusal: ${a.status} ${a.text}`);
      }
      const arrivals = up.count();
      console.log(
        `limit ${LIMIT}, 60 spent, then Redis away: ${JSON.stringify(tally(away))}; ` +
          `upstream got ${arrivals}`,
      );
      // each takes a third of what was left as it last saw it, plus what it still held: close
      // to the limit, not three times what was left
      assert.ok(arrivals <= LIMIT + 15, `${arrivals} spent while Redis was away`);
      assert.ok(arrivals >= LIMIT - 30, `the instances kept too much back: ${arrivals}`);
    });
  },
});

Deno.test({
  name: "cluster faults: a Redis restarted empty in the middle of a burst on three instances " +
    "does not let the day's budget be spent again",
  ignore: !hasRedis,
  fn: async () => {
    const LIMIT = 1000;
    const text = keyed(`requests_per_day: ${LIMIT}`);
    await withCluster({ instances: 3, config: text }, async ({ redis, up, nodes }) => {
      // the restart comes while the burst goes on: grants are held, requests are in flight
      let answered = 0;
      let restarted: Promise<void> | undefined;
      const out: Answer[] = [];
      let next = 0;
      const worker = async () => {
        while (next < 1400) {
          const i = next++;
          out.push(await ask(nodes[i % 3]!.url));
          if (++answered === 500) {
            restarted = (async () => {
              await redis.kill();
              await redis.restart();
            })();
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      await restarted;
      for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);
      const arrivals = up.count();
      console.log(
        `limit ${LIMIT}, Redis restarted empty after 500 answers of 1400: ` +
          `${JSON.stringify(tally(out))}; upstream got ${arrivals}`,
      );
      for (const a of out) {
        assert.ok(a.status === 200 || honest(a), `not an honest refusal: ${a.status} ${a.text}`);
      }
      assert.ok(arrivals <= LIMIT, `the day's budget was spent again: ${arrivals} > ${LIMIT}`);
      // nor counted twice: what each instance adds back is what it spent, not what it held
      assert.ok(arrivals >= LIMIT - 10, `the budget was counted twice: only ${arrivals} served`);
      await sleep(1500);
      const b = await clusterBudget(nodes[0]!.url, K1);
      assert.ok(b !== undefined && b.used >= arrivals, `cluster ${JSON.stringify(b)}`);
    });
  },
});

Deno.test({
  name: "cluster faults: a Redis restarted empty does not let the day's budget be spent again",
  ignore: !hasRedis,
  fn: async () => {
    const LIMIT = 100;
    const text = keyed(`requests_per_day: ${LIMIT}`);
    await withCluster({ instances: 2, config: text }, async ({ redis, up, nodes }) => {
      const first = await burst(nodes, 60, 4);
      assert.deepEqual(tally(first), { "200": 60 });
      assert.equal(up.count(), 60);

      // Redis loses everything (no persistence) and comes back empty on the same port
      await redis.kill();
      for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_DOWN_LOG, 5000);
      await redis.restart();
      for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);

      const second = await burst(nodes, 150, 4);
      const arrivals = up.count();
      console.log(
        `limit ${LIMIT}: 60 before the restart, then 150 more: ${JSON.stringify(tally(second))}; ` +
          `upstream got ${arrivals} in all`,
      );
      for (const a of second) {
        assert.ok(a.status === 200 || honest(a), `not an honest refusal: ${a.status} ${a.text}`);
      }
      // README: "together the instances never exceed a request limit", and a Redis that
      // restarted empty "gets each key's day counts back from the instances' last view"
      assert.ok(arrivals <= LIMIT, `the day's budget was spent again: ${arrivals} > ${LIMIT}`);
      assert.equal(
        second.filter((a) => a.status === 200).length,
        arrivals - 60,
        "every request sent upstream was answered 200",
      );
      // the cluster's count once unused grants went back (after a second): what was sent
      await sleep(1500);
      for (const n of nodes) {
        const b = await clusterBudget(n.url, K1);
        console.log(`cluster requests_per_day on ${n.url}: ${JSON.stringify(b)}`);
        assert.equal(b?.limit, LIMIT);
        assert.ok(b !== undefined && b.used >= arrivals && b.used <= LIMIT, JSON.stringify(b));
      }
    });
  },
});

Deno.test({
  name: "cluster faults: after a Redis restarted empty, an instance that comes back late " +
    "still brings back the counts only it saw",
  ignore: !hasRedis,
  fn: async () => {
    const LIMIT = 100;
    const text = keyed(`requests_per_day: ${LIMIT}`);
    await withCluster({ instances: 2, config: text }, async ({ redis, up, nodes }) => {
      const [a, b] = nodes as [ServeProcess, ServeProcess];
      let stopped: ServeProcess | undefined;
      try {
        // A last saw the day's count at about 10, B at 60
        for (let i = 0; i < 10; i++) assert.equal((await ask(a.url)).status, 200);
        for (let i = 0; i < 50; i++) assert.equal((await ask(b.url)).status, 200);
        assert.equal(up.count(), 60);

        await redis.kill();
        for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_DOWN_LOG, 5000);
        // B reconnects later than A (a longer backoff, a partition): here, it is frozen meanwhile
        Deno.kill(b.child.pid, "SIGSTOP");
        stopped = b;
        await redis.restart();
        await a.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);
        // A spends 30 within the limit: 90 in all so far
        for (let i = 0; i < 30; i++) assert.equal((await ask(a.url)).status, 200);
        Deno.kill(b.child.pid, "SIGCONT");
        stopped = undefined;
        await b.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);
        await sleep(300);
        const seen = await clusterBudget(a.url, K1);

        const more = await burst(nodes, 80, 2);
        console.log(
          `limit ${LIMIT}: 60 before the restart, 30 through A alone after it; once B was back ` +
            `too the cluster counted ${JSON.stringify(seen)}; 80 more: ` +
            `${JSON.stringify(tally(more))}; upstream got ${up.count()} in all`,
        );
        // README: a Redis that restarted empty "gets each key's day counts back from the
        // instances' last view", and "together the instances never exceed a request limit"
        assert.ok(
          up.count() <= LIMIT,
          `the day's budget was spent again: ${up.count()} > ${LIMIT}`,
        );
        assert.ok(
          seen !== undefined && seen.used >= 90,
          `counted ${JSON.stringify(seen)}, 90 sent`,
        );
      } finally {
        if (stopped !== undefined) {
          try {
            Deno.kill(stopped.child.pid, "SIGCONT");
          } catch { /* gone */ }
        }
      }
    });
  },
});

Deno.test({
  name: "cluster faults: a reload that lowers a daily limit holds from the next request",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 1,
      config: keyed("requests_per_day: 10000"),
    }, async ({ redis, up, path, nodes }) => {
      const [n] = nodes as [ServeProcess];
      // a limit of 10000 takes a batch of 100: 95 are still held after these
      for (let i = 0; i < 5; i++) assert.equal((await ask(n.url)).status, 200);
      assert.equal(up.count(), 5);

      await Deno.writeTextFile(path, keyed("requests_per_day: 8")(redis.url, up));
      n.child.kill("SIGHUP");
      const reloaded = await n.waitForLog((r) => r.msg === "config reloaded");
      assert.equal(reloaded.trigger, "SIGHUP");

      const after: Answer[] = [];
      for (let i = 0; i < 30; i++) after.push(await ask(n.url));
      console.log(`after lowering to 8: ${JSON.stringify(tally(after))}, upstream ${up.count()}`);
      assert.equal(up.count(), 8, "5 before the reload, 3 after it");
      assert.equal(after.filter((a) => a.status === 200).length, 3);
      for (const a of after.filter((a) => a.status !== 200)) {
        assert.ok(a.status === 503 && honest(a), `${a.status} ${a.text}`);
        assert.equal(errorOf(a)?.code, "no_upstream_available");
      }
      const e = await keyEntry(n.url, K1);
      assert.equal(e.state, "spent", JSON.stringify(e));
      assert.deepEqual(await clusterBudget(n.url, K1), { limit: 8, used: 8, remaining: 0 });
      const own = (e.budgets as Record<string, Record<string, unknown>>).requests_per_day;
      assert.equal(own?.limit, 8);
    }),
});

Deno.test({
  name: "cluster faults: a client that leaves while its request waits for Redis is never sent " +
    "upstream, and the instance keeps serving",
  ignore: !hasRedis,
  fn: () =>
    // a limit of 8 takes one request at a time: every request asks Redis
    withCluster({
      instances: 1,
      config: keyed("requests_per_day: 8"),
    }, async ({ redis, up, nodes }) => {
      const [n] = nodes as [ServeProcess];
      assert.equal((await ask(n.url)).status, 200);
      assert.equal(up.count(), 1);

      assert.equal(await redis.cli("CLIENT", "PAUSE", "1500", "ALL"), "OK");
      const pausedAt = performance.now();
      const ac = new AbortController();
      const aborted = fetch(`${n.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }] }),
        signal: ac.signal,
      }).then(async (r) => `status ${r.status}: ${await r.text()}`, (e: unknown) => String(e));
      setTimeout(() => ac.abort(), 100);
      const outcome = await aborted;
      assert.match(outcome, /abort/i, "the client gave up before any answer");

      // watched until 2 s after the pause ended
      await sleep(pausedAt + 1500 + 2000 - performance.now());
      assert.equal(up.count(), 1, "the request of the client that left was never sent");
      const logged = n.logs().filter((r) => r.msg === "request").map((r) => r.status);
      assert.deepEqual(logged, [200, 499], "logged as the client's abort");

      await backWhereDown(nodes);
      const again = await ask(n.url);
      assert.equal(again.status, 200, again.text);
      assert.equal(up.count(), 2);
      // nothing of the request that never left is counted once grants went back
      await pollUntil(
        async () => (await clusterBudget(n.url, K1))?.used === up.count(),
        "the cluster counts what was sent",
        3000,
        100,
      );
    }),
});

Deno.test({
  name: "cluster faults: SIGTERM exits within seconds while Redis is frozen",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 1,
      config: keyed("requests_per_day: 8", { extra: "server: { drain_timeout: 1 }" }),
    }, async ({ redis, up, nodes }) => {
      const [n] = nodes as [ServeProcess];
      let frozen = false;
      try {
        assert.equal((await ask(n.url)).status, 200);

        redis.signal("SIGSTOP");
        frozen = true;
        // requests that wait for Redis (the key's grant is empty) when the signal comes
        const pending = Array.from(
          { length: 3 },
          () => ask(n.url).then((a) => `${a.status} ${errorOf(a)?.code ?? ""}`, (e) => String(e)),
        );
        await sleep(100);
        const t0 = performance.now();
        n.child.kill("SIGTERM");
        const status = await Promise.race([n.exited, sleep(8000).then(() => undefined)]);
        const took = performance.now() - t0;
        const answers = await Promise.all(pending);
        const exited = status === undefined ? "not at all" : status.code;
        console.log(
          `SIGTERM with Redis frozen: exited ${exited} after ${took.toFixed(0)} ms; ` +
            `waiting requests got ${JSON.stringify(answers)}`,
        );
        assert.ok(status !== undefined, `still running 8 s after SIGTERM:\n${n.lines.join("\n")}`);
        assert.ok(took <= 5000, `exited ${took.toFixed(0)} ms after SIGTERM`);
        assert.equal(status.code, 0);
        for (const a of answers) {
          assert.ok(a === "200 " || a === "503 shutting_down", `a waiting request got ${a}`);
        }
        assert.ok(up.count() <= 4);
      } finally {
        if (frozen) {
          try {
            redis.signal("SIGCONT");
          } catch { /* gone */ }
        }
      }
    }),
});

Deno.test({
  name: "cluster faults: an operator's reset on one instance voids the grant another holds",
  ignore: !hasRedis,
  fn: () =>
    // 2000 a day: batches of 20 (a hundredth), topped up when half is spent
    withCluster({
      instances: 2,
      config: keyed("requests_per_day: 2000"),
    }, async ({ up, nodes }) => {
      const [a, b] = nodes as [ServeProcess, ServeProcess];
      // each takes a batch of 20 and spends 3: 17 held by each
      for (let i = 0; i < 3; i++) assert.equal((await ask(b.url)).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await ask(a.url)).status, 200);
      assert.deepEqual(await clusterBudget(a.url, K1), { limit: 2000, used: 40, remaining: 1960 });

      const res = await admin(a.url, `keys/${maskOf(K1)}/reset`);
      assert.equal(res.status, 200, res.text);
      const before = up.count();
      for (let i = 0; i < 30; i++) assert.equal((await ask(b.url)).status, 200);
      for (let i = 0; i < 5; i++) assert.equal((await ask(a.url)).status, 200);
      const sent = up.count() - before;
      assert.equal(sent, 35);

      // unused grants go back after a second
      await sleep(1600);
      const onA = await clusterBudget(a.url, K1);
      const onB = await clusterBudget(b.url, K1);
      console.log(`${sent} requests after the reset; the cluster counts ${JSON.stringify(onA)}`);
      assert.deepEqual(onB, onA, "the same count read from Redis on both");
      // B spends what is left of its old grant (17) until half a batch (10) is left: its next
      // top-up then learns of the new generation and voids the rest. The 7 requests spent
      // meanwhile (8 if one more came before the top-up's answer) are uncounted; nothing of
      // the old grant is given back to the new counts.
      const used = onA?.used ?? -1;
      assert.ok(used <= sent, `counted more than was sent: ${used} > ${sent}`);
      assert.ok(used >= sent - 8, `B's requests after the reset are not counted: ${used}`);
    }),
});

Deno.test({
  name: "cluster faults: tokens spent around a Redis stall are counted once",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 2,
      config: keyed("tokens_per_day: 100000000"),
    }, async ({ redis, up, nodes }) => {
      // steady load for 3 s, Redis paused for 1.5 s after 0.8 s
      const answers: Answer[] = [];
      let stop = false;
      const workers = Array.from({ length: 4 }, async (_, w) => {
        while (!stop) answers.push(await ask(nodes[w % 2]!.url));
      });
      await sleep(800);
      assert.equal(await redis.cli("CLIENT", "PAUSE", "1500", "ALL"), "OK");
      await sleep(2200);
      stop = true;
      await Promise.all(workers);
      assert.deepEqual(Object.keys(tally(answers)), ["200"], "not required: nothing refused");
      const downs = nodes.map((n) => countLogs(n, REDIS_DOWN_LOG));
      await backWhereDown(nodes);
      await sleep(1500);

      const expected = up.count() * TOKENS_PER_ANSWER;
      const seen = await Promise.all(
        nodes.map((n) => clusterBudget(n.url, K1, "tokens_per_day")),
      );
      console.log(
        `${up.count()} answers of ${TOKENS_PER_ANSWER} tokens (Redis down on ` +
          `${downs.filter((d) => d > 0).length} of 2); cluster tokens_per_day: ` +
          `${JSON.stringify(seen)}, expected used ${expected}`,
      );
      assert.ok(downs.some((d) => d > 0), "the stall was noticed (the test tests something)");
      for (const s of seen) {
        assert.deepEqual(s, { limit: 100_000_000, used: expected, remaining: 1e8 - expected });
      }
    }),
});

Deno.test({
  name: "cluster faults: redis_required refuses the requests that were waiting for Redis " +
    "when it stalled",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 1,
      config: keyed("requests_per_day: 8", { required: true }),
    }, async ({ redis, up, nodes }) => {
      const [n] = nodes as [ServeProcess];
      assert.equal((await ask(n.url)).status, 200);

      assert.equal(await redis.cli("CLIENT", "PAUSE", "2000", "ALL"), "OK");
      const waiting = await Promise.all(Array.from({ length: 3 }, () => ask(n.url)));
      console.log(`requests waiting when Redis stalled: ${JSON.stringify(tally(waiting))}`);
      for (const a of waiting) {
        assert.equal(a.status, 503, a.text);
        assert.equal(errorOf(a)?.code, "shared_state_unavailable", a.text);
        const retry = Number(a.headers.get("retry-after"));
        assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After: ${retry}`);
      }
      assert.equal(up.count(), 1, "nothing was sent while Redis was away");

      await n.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);
      const again = await ask(n.url);
      assert.equal(again.status, 200, again.text);
      assert.equal(up.count(), 2);
      await pollUntil(
        async () => (await clusterBudget(n.url, K1))?.used === up.count(),
        "the cluster counts only what was sent",
        3000,
        100,
      );
    }),
});

Deno.test({
  name: "cluster faults: a reload that changes state.redis warns it needs a restart, " +
    "without the password",
  ignore: !hasRedis,
  fn: async () => {
    const PASSWORD = "Re1oad:S3cret/Pw@x";
    const ESCAPED = encodeURIComponent(PASSWORD);
    const WRONG = "Wr0ngReloadPassw0rd";
    const keys = oneKey("requests_per_day: 1000");
    const text = (url: string, up: KeyedUpstream, prefix: string) =>
      config(url, up, keys, { prefix, extra: "log: { level: debug }" });
    const leaks = (s: string) => [PASSWORD, ESCAPED, WRONG].some((p) => s.includes(p));
    await withCluster({
      instances: 1,
      config: (url, up) => text(url, up, "faults-a:"),
      redis: { password: PASSWORD },
    }, async ({ redis, up, path, nodes }) => {
      const scan = async (pattern: string) =>
        (await redis.cli("--scan", "--pattern", pattern)).split("\n").filter((l) => l !== "");
      const [n] = nodes as [ServeProcess];
      assert.equal((await ask(n.url)).status, 200);

      // another prefix
      await Deno.writeTextFile(path, text(redis.url, up, "faults-b:"));
      n.child.kill("SIGHUP");
      await n.waitForLog((r) => r.msg === "config reloaded");
      const warned = n.logs().filter((r) => r.msg === STATE_WARNING);
      assert.equal(warned.length, 1, n.lines.join("\n"));
      const w = warned[0]!;
      console.log(`reload warning: ${JSON.stringify(w)}`);
      assert.equal(w.level, "warn");
      assert.ok(!leaks(JSON.stringify(w)), JSON.stringify(w));
      assert.equal(w.state, `memory, redis://:***@127.0.0.1:${redis.port}/0 (prefix "faults-a:")`);
      // and it stays where it is: budgets are still counted under the first prefix
      assert.equal((await ask(n.url)).status, 200);
      assert.ok((await scan("faults-a:b:*")).length > 0);
      assert.deepEqual(await scan("faults-b:*"), []);

      // another password (a wrong one): still warned, neither password shown
      await Deno.writeTextFile(path, text(redis.url.replace(ESCAPED, WRONG), up, "faults-b:"));
      n.child.kill("SIGHUP");
      await n.waitForLog(() => countLogs(n, "config reloaded") === 2, 5000);
      const again = n.logs().filter((r) => r.msg === STATE_WARNING);
      assert.equal(again.length, 2, n.lines.join("\n"));
      // key state is still where the instance started: the first prefix
      assert.equal(again[1]!.state, w.state, "it names where key state is");
      assert.equal((await ask(n.url)).status, 200, "still served through the first Redis link");
      assert.deepEqual(n.lines.filter(leaks), [], "no line shows a password");
    });
  },
});
