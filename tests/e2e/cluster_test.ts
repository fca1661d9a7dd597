/**
 * @module
 * End-to-end: several `serve` processes sharing key state and budgets through one real Redis
 * (`state.redis`). A 429 on one instance rests the key on all three within 100 ms; budgets are
 * never overspent together under concurrent load; an operator's disable and enable reach every
 * instance within 100 ms; Redis killed under load costs no request and is said once each way,
 * and a rest made meanwhile reaches the others when it returns; a restarted instance reads the
 * shared state; `redis_required` answers 503 while Redis is down; client rate limits are shared;
 * `/health` and `/metrics` say how Redis is; the Redis password is never shown.
 */

import assert from "node:assert/strict";
import { hasRedis } from "../helpers/redis.ts";
import { runCli, type ServeProcess } from "../helpers/cli.ts";
import {
  admin,
  allUp,
  type Answer,
  ask,
  clusterConfigs,
  countLogs,
  errorOf,
  honest,
  type KeyedUpstream,
  keyEntry,
  keyStats,
  maskOf,
  pollUntil,
  REDIS_BACK_LOG,
  REDIS_DOWN_LOG,
  stateOf,
  withCluster,
} from "../helpers/cluster.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";

const K1 = "sk-clus-key-00000000001";
const K2 = "sk-clus-key-00000000002";
const K3 = "sk-clus-key-00000000003";
/** How soon a change made on one instance must be seen by the others. */
const PUSH_MS = 100;

/** A config of one upstream on `up`; `keys` is the YAML list of keys. */
const config = clusterConfigs("cluster-test:");

/** K1 first (priority 0), then K2, then K3. */
const ORDERED = `
      - { key: ${K1}, priority: 0 }
      - { key: ${K2}, priority: 1 }
      - { key: ${K3}, priority: 2 }`;

/** The config of the {@linkcode ORDERED} keys. */
const ordered = (redisUrl: string, up: KeyedUpstream) => config(redisUrl, up, ORDERED);

/**
 * Watches instances until `cond` holds on each; resolves with the moment each first saw it.
 * @returns `performance.now()` per instance, in order
 */
function watch(
  nodes: readonly ServeProcess[],
  cond: (url: string) => Promise<boolean>,
  what: string,
  timeoutMs = 3000,
): Promise<number[]> {
  const all = Promise.all(
    nodes.map((n) => pollUntil(() => cond(n.url), `${what} on ${n.url}`, timeoutMs)),
  );
  all.catch(() => {}); // reported where awaited; not unhandled when an earlier step failed
  return all;
}

/** {@linkcode watch}es instances until `key` is in `state` on each. */
function watchState(
  nodes: readonly ServeProcess[],
  key: string,
  state: string,
  what: string,
  timeoutMs?: number,
): Promise<number[]> {
  return watch(nodes, async (url) => (await stateOf(url, key)) === state, what, timeoutMs);
}

function ms(n: number): string {
  return `${n.toFixed(1)} ms`;
}

Deno.test({
  name: "cluster: a 429 on one instance rests that key on all three within 100 ms",
  ignore: !hasRedis,
  fn: () =>
    withCluster({ instances: 3, config: ordered }, async ({ up, nodes }) => {
      const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];
      for (const n of nodes) assert.equal(await stateOf(n.url, K1), "healthy");

      up.set(K1, "rate_limited");
      const seen = watchState([b, c], K1, "resting", "K1 rests");
      const answer = await ask(a.url);
      assert.equal(answer.status, 200, answer.text);
      const [seenB, seenC] = await seen;
      assert.deepEqual(up.arrivals.map((r) => [r.key, r.status]), [[K1, 429], [K2, 200]]);
      const at = up.arrivals[0]!.at;
      const delays = [seenB! - at, seenC! - at];
      console.log(`429 rest seen by the other instances after ${delays.map(ms).join(", ")}`);
      for (const d of delays) assert.ok(d <= PUSH_MS, `seen after ${ms(d)} (> ${PUSH_MS} ms)`);

      const onA = await keyEntry(a.url, K1);
      assert.equal(onA.state, "resting");
      assert.equal(onA.reason, "rate limited");
      const until = Date.parse(String(onA.until));
      assert.ok(Math.abs(until - (Date.now() + 60_000)) < 5000, `Retry-After: 60, ${onA.until}`);
      for (const n of [b, c]) {
        const e = await keyEntry(n.url, K1);
        assert.equal(e.state, "resting");
        assert.equal(e.reason, "rate limited");
        assert.equal(e.until, onA.until, "the same rest everywhere");
      }
      // no instance sends K1 anything while it rests
      for (const n of nodes) assert.equal((await ask(n.url)).status, 200);
      assert.equal(up.count(K1), 1);
      assert.equal(up.count(K2), 4);
    }),
});

Deno.test({
  name: "cluster: a quota exhausted on one instance takes the key out on all three within 100 ms",
  ignore: !hasRedis,
  fn: () =>
    withCluster({ instances: 3, config: ordered }, async ({ up, nodes }) => {
      const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];
      up.set(K1, "quota");
      const seen = watchState([b, c], K1, "spent", "K1 spent");
      const answer = await ask(a.url);
      assert.equal(answer.status, 200, answer.text);
      const [seenB, seenC] = await seen;
      const at = up.arrivals[0]!.at;
      const delays = [seenB! - at, seenC! - at];
      console.log(`quota spend seen by the other instances after ${delays.map(ms).join(", ")}`);
      for (const d of delays) assert.ok(d <= PUSH_MS, `seen after ${ms(d)} (> ${PUSH_MS} ms)`);
      const onA = await keyEntry(a.url, K1);
      for (const n of [b, c]) assert.equal((await keyEntry(n.url, K1)).until, onA.until);
      for (const n of nodes) assert.equal((await ask(n.url)).status, 200);
      assert.equal(up.count(K1), 1, "no instance sends the spent key anything");
    }),
});

Deno.test({
  name: "cluster: three instances under concurrent load never overspend a daily budget together",
  ignore: !hasRedis,
  fn: async () => {
    const N = 25;
    const keys = `[${K1}, ${K2}]\n    quota: { requests_per_day: ${N} }`;
    const text = (url: string, up: KeyedUpstream) => config(url, up, keys);
    await withCluster({ instances: 3, config: text }, async ({ up, nodes }) => {
      for (const n of nodes) await keyStats(n.url); // warm: the burst reaches all three at once
      const answers = await Promise.all(
        Array.from({ length: 150 }, (_, i) => ask(nodes[i % 3]!.url)),
      );
      const ok = answers.filter((a) => a.status === 200).length;
      const refused = answers.filter((a) => a.status !== 200);
      console.log(
        `150 requests: ${ok} answered 200, upstream got ${up.count()} ` +
          `(K1 ${up.count(K1)}, K2 ${up.count(K2)}), refusals ${[
            ...new Set(refused.map((a) => `${a.status} ${errorOf(a)?.code}`)),
          ]}`,
      );
      for (const a of refused) assert.ok(honest(a), `not an honest refusal: ${a.status} ${a.text}`);
      assert.ok(up.count() <= 2 * N + 3, `at most one extra per instance: ${up.count()}`);
      for (const k of [K1, K2]) assert.ok(up.count(k) <= N + 3, `${k}: ${up.count(k)}`);
      assert.equal(up.count(), 2 * N, "the budget is spent exactly");
      assert.equal(ok, up.count(), "every request sent upstream was answered 200");
      // what each instance served adds up to the budget (how it splits depends on timing)
      const served: number[] = [];
      for (const n of nodes) {
        const s = await keyStats(n.url);
        served.push(Number(s[maskOf(K1)]?.requests) + Number(s[maskOf(K2)]?.requests));
      }
      console.log(`served per instance: ${served.join(", ")}`);
      assert.equal(served.reduce((x, y) => x + y, 0), 2 * N);

      // every instance knows both keys are spent
      await watch(
        nodes,
        async (url) => {
          const s = await keyStats(url);
          return s[maskOf(K1)]?.state === "spent" && s[maskOf(K2)]?.state === "spent";
        },
        "both keys spent",
        2000,
      );
      for (const n of nodes) {
        for (const k of [K1, K2]) {
          const e = await keyEntry(n.url, k);
          assert.equal(e.reason, "spent its daily requests");
        }
      }
      // and sends nothing more
      const more = await Promise.all(Array.from({ length: 9 }, (_, i) => ask(nodes[i % 3]!.url)));
      for (const a of more) assert.ok(a.status === 503 && honest(a), `${a.status} ${a.text}`);
      assert.equal(up.count(), 2 * N);

      // the cluster's counts, read from Redis, beside each instance's own view
      for (const n of nodes) {
        for (const k of [K1, K2]) {
          const e = await keyEntry(n.url, k);
          const cluster = e.cluster_budgets as Record<string, unknown> | null | undefined;
          assert.deepEqual(
            cluster?.requests_per_day,
            { limit: N, used: up.count(k), remaining: Math.max(0, N - up.count(k)) },
            `cluster_budgets of ${maskOf(k)} on ${n.url}: ${JSON.stringify(cluster)}`,
          );
          const own = (e.budgets as Record<string, Record<string, unknown>>).requests_per_day;
          assert.equal(own?.limit, N);
        }
      }
    });
  },
});

Deno.test({
  name: "cluster: disable on one instance reaches the others within 100 ms; enable on another",
  ignore: !hasRedis,
  fn: () =>
    withCluster({ instances: 3, config: ordered }, async ({ up, nodes }) => {
      const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];
      for (const n of nodes) assert.equal((await ask(n.url)).status, 200);
      assert.equal(up.count(K1), 3, "K1 comes first everywhere");

      const disabled = watchState([b, c], K1, "disabled", "K1 disabled");
      const sent = performance.now();
      const res = await admin(a.url, `keys/${maskOf(K1)}/disable`);
      const answered = performance.now();
      assert.equal(res.status, 200, res.text);
      const seen = await disabled;
      const delays = seen.map((t) => t - answered);
      console.log(
        `disable seen by the other instances after ${delays.map(ms).join(", ")} ` +
          `(admin call took ${ms(answered - sent)})`,
      );
      for (const d of delays) assert.ok(d <= PUSH_MS, `seen after ${ms(d)} (> ${PUSH_MS} ms)`);
      assert.equal(await stateOf(a.url, K1), "disabled");
      for (const n of nodes) {
        for (let i = 0; i < 3; i++) assert.equal((await ask(n.url)).status, 200);
      }
      assert.equal(up.count(K1), 3, "no instance sends the disabled key anything");
      assert.equal(up.count(K2), 9);

      const enabled = watchState([a, c], K1, "healthy", "K1 enabled");
      const res2 = await admin(b.url, `keys/${maskOf(K1)}/enable`);
      const answered2 = performance.now();
      assert.equal(res2.status, 200, res2.text);
      const delays2 = (await enabled).map((t) => t - answered2);
      console.log(`enable seen by the other instances after ${delays2.map(ms).join(", ")}`);
      for (const d of delays2) assert.ok(d <= PUSH_MS, `seen after ${ms(d)} (> ${PUSH_MS} ms)`);
      for (const n of nodes) assert.equal((await ask(n.url)).status, 200);
      assert.equal(up.count(K1), 6, "every instance uses the key again");
    }),
});

Deno.test({
  name: "cluster: Redis killed under load costs no request, is said once, and reconciles on return",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 3,
      config: (url, up) => config(url, up, `[${K1}, ${K2}]`),
    }, async ({ redis, up, nodes }) => {
      const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];

      // 30 requests a second over the three for 3 s; Redis killed after 1.5 s
      const pending: Promise<Answer>[] = [];
      const t0 = performance.now();
      let killed: Promise<void> | undefined;
      for (let i = 0; i < 90; i++) {
        const due = t0 + i * (1000 / 30);
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (i === 45) killed = redis.kill();
        pending.push(ask(nodes[i % 3]!.url));
      }
      await killed;
      const answers = await Promise.all(pending);
      const bad = answers.filter((x) => x.status !== 200);
      assert.deepEqual(bad.map((x) => `${x.status} ${x.text}`), [], "no request failed");
      assert.equal(up.count(), 90);

      for (const n of nodes) {
        const line = await n.waitForLog((r) => r.msg === REDIS_DOWN_LOG, 5000);
        assert.equal(line.level, "warn");
      }
      // a rest made while Redis is down: on this instance's view only, for now
      up.set(K1, "rate_limited");
      for (let i = 0; i < 10 && (await stateOf(a.url, K1)) !== "resting"; i++) {
        assert.equal((await ask(a.url)).status, 200, "retried on K2 at once");
      }
      assert.equal(await stateOf(a.url, K1), "resting");
      const restUntil = (await keyEntry(a.url, K1)).until;
      up.set(K1, "ok");
      for (const n of [b, c]) assert.equal(await stateOf(n.url, K1), "healthy", "not heard yet");

      const restarted = performance.now();
      await redis.restart();
      for (const n of nodes) {
        const line = await n.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);
        assert.equal(line.level, "info");
      }
      const back = performance.now();
      const seen = await watchState(
        [b, c],
        K1,
        "resting",
        "the rest made while Redis was down",
        5000,
      );
      console.log(
        `Redis back on every instance ${ms(back - restarted)} after its restart; the rest made ` +
          `meanwhile seen by the others ${seen.map((t) => ms(t - restarted)).join(", ")} after it`,
      );
      for (const n of [b, c]) assert.equal((await keyEntry(n.url, K1)).until, restUntil);
      for (const n of nodes) {
        assert.equal(countLogs(n, REDIS_DOWN_LOG), 1, `one "down" line:\n${n.lines.join("\n")}`);
        assert.equal(countLogs(n, REDIS_BACK_LOG), 1, `one "back" line:\n${n.lines.join("\n")}`);
      }
    }),
});

Deno.test({
  name: "cluster: a restarted instance reads the keys disabled and rested through the others",
  ignore: !hasRedis,
  fn: () =>
    withCluster({ instances: 3, config: ordered }, async ({ up, nodes, serve }) => {
      const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];
      assert.equal((await admin(a.url, `keys/${maskOf(K1)}/disable`)).status, 200);
      await watchState([b, c], K1, "disabled", "K1 disabled");
      up.set(K2, "rate_limited");
      assert.equal((await ask(b.url)).status, 200);
      assert.deepEqual(up.arrivals.map((r) => [r.key, r.status]), [[K2, 429], [K3, 200]]);
      await watchState([a, c], K2, "resting", "K2 rests");
      const restUntil = (await keyEntry(b.url, K2)).until;
      up.set(K2, "ok");

      await c.close();
      const again = await serve();
      // read at start: the first /stats already knows
      const s = await keyStats(again.url);
      assert.equal(s[maskOf(K1)]?.state, "disabled");
      assert.equal(s[maskOf(K2)]?.state, "resting");
      assert.equal(s[maskOf(K2)]?.until, restUntil);
      assert.equal(s[maskOf(K3)]?.state, "healthy");
      const before = up.count();
      for (let i = 0; i < 3; i++) assert.equal((await ask(again.url)).status, 200);
      assert.deepEqual(up.arrivals.slice(before).map((r) => r.key), [K3, K3, K3]);
    }),
});

Deno.test({
  name: "cluster: redis_required answers 503 while Redis is down and will not start without it; " +
    "others start without Redis",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 1,
      config: (url, up) => config(url, up, `[${K1}, ${K2}]`, { required: true }),
    }, async ({ redis, up, path, nodes, serve, writeConfig }) => {
      const optional = await writeConfig(config(redis.url, up, `[${K1}, ${K2}]`));
      assert.match(await Deno.readTextFile(path), /redis_required: true/);
      const [r] = nodes as [ServeProcess];
      assert.equal((await ask(r.url)).status, 200);

      await redis.kill();
      await r.waitForLog((l) => l.msg === REDIS_DOWN_LOG, 5000);
      const refused = await ask(r.url);
      assert.equal(refused.status, 503, refused.text);
      assert.equal(errorOf(refused)?.code, "shared_state_unavailable");
      assert.equal(errorOf(refused)?.type, "service_unavailable");
      const retry = Number(refused.headers.get("retry-after"));
      assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After: ${retry}`);
      const sentBefore = up.count();

      // an instance started while Redis is down starts anyway, unless Redis is required: then
      // it says why and exits 1
      const denied = await runCli(["serve", "--config", path, "--port", "0"]);
      assert.equal(denied.code, 1, denied.stderr);
      assert.equal(denied.stdout, "", "no URL line");
      assert.match(
        denied.stderr,
        /Cannot start: state\.redis_required is set and Redis at redis:\/\/127\.0\.0\.1:\d+\/0 cannot be reached/,
      );
      const o2 = await serve(optional);
      const l = await o2.waitForLog((x) => x.msg === "listening");
      assert.equal(l.redis_up, false);
      assert.equal((await ask(o2.url)).status, 200, "not required: serves on its local view");
      assert.equal(up.count(), sentBefore + 1, "nothing sent while refusing");

      await redis.restart();
      await pollUntil(async () => (await ask(r.url)).status === 200, "serving again", 5000, 50);
      assert.equal((await ask(o2.url)).status, 200);
      await o2.waitForLog((l) => l.msg === REDIS_BACK_LOG, 5000);
    }),
});

Deno.test({
  name: "cluster: a client key's rate limit is shared by the three instances",
  ignore: !hasRedis,
  fn: async () => {
    const RPM = 30;
    const CLIENT = "client-key-cluster-0001";
    const clientKeys =
      `auth:\n  client_keys: [ { key: ${CLIENT}, name: team, rate_limit: ${RPM} } ]\n`;
    const text = (url: string, up: KeyedUpstream) =>
      config(url, up, `[${K1}, ${K2}]`, { extra: clientKeys });
    await withCluster({ instances: 3, config: text }, async ({ up, nodes }) => {
      const auth = { authorization: `Bearer ${CLIENT}` };
      const answers = await Promise.all(
        Array.from({ length: 90 }, (_, i) => ask(nodes[i % 3]!.url, auth)),
      );
      const ok = answers.filter((a) => a.status === 200).length;
      const limited = answers.filter((a) => a.status === 429);
      console.log(`client limit ${RPM}/min over three instances: ${ok} of 90 passed`);
      assert.equal(ok + limited.length, 90, `${[...new Set(answers.map((a) => a.status))]}`);
      assert.ok(ok <= RPM + 3 * 2, `${ok} passed: the limit is not shared`);
      assert.ok(ok >= RPM, `${ok} passed: fewer than the limit`);
      assert.equal(up.count(), ok);
      for (const a of limited) {
        assert.equal(errorOf(a)?.code, "rate_limit_exceeded", a.text);
        const retry = Number(a.headers.get("retry-after"));
        assert.ok(Number.isInteger(retry) && retry >= 1, `Retry-After: ${retry}`);
      }
    });
  },
});

Deno.test({
  name: "cluster: /health and /metrics say whether Redis is up",
  ignore: !hasRedis,
  fn: () =>
    withCluster({
      instances: 0,
      config: (url, up) => config(url, up, `[${K1}]`),
    }, async ({ redis, up, startInstances, writeConfig }) => {
      const required = await writeConfig(config(redis.url, up, `[${K1}]`, { required: true }));
      const nodes: ServeProcess[] = [];
      nodes.push(...await startInstances(1));
      nodes.push(...await startInstances(1, required));
      await allUp(nodes);
      const [o, r] = nodes as [ServeProcess, ServeProcess];
      const health = async (url: string) => {
        const res = await fetch(`${url}/health`);
        return { status: res.status, body: await res.json() as Record<string, unknown> };
      };
      const metrics = async (url: string) => {
        const res = await fetch(`${url}/metrics`);
        assert.equal(res.status, 200);
        const m = parsePrometheus(await res.text());
        const value = (name: string) => m.samples.find((s) => s.name === name)?.value;
        return [value("llm_balance_redis_up"), value("llm_balance_redis_down_total")];
      };
      assert.deepEqual((await health(o.url)).body.shared_state, { redis: "up", required: false });
      assert.deepEqual((await health(r.url)).body.shared_state, { redis: "up", required: true });
      for (const n of nodes) assert.deepEqual(await metrics(n.url), [1, 0]);

      await redis.kill();
      for (const n of nodes) await n.waitForLog((l) => l.msg === REDIS_DOWN_LOG, 5000);
      const ho = await health(o.url);
      assert.equal(ho.status, 200, "keys are usable: not required");
      assert.deepEqual(ho.body.shared_state, { redis: "down", required: false });
      const hr = await health(r.url);
      assert.equal(hr.status, 503, "required and down: nothing is served");
      assert.deepEqual(hr.body.shared_state, { redis: "down", required: true });
      for (const n of nodes) assert.deepEqual(await metrics(n.url), [0, 1]);

      await redis.restart();
      for (const n of nodes) await n.waitForLog((l) => l.msg === REDIS_BACK_LOG, 5000);
      assert.deepEqual((await health(r.url)).body.shared_state, { redis: "up", required: true });
      assert.equal((await health(r.url)).status, 200);
      for (const n of nodes) assert.deepEqual(await metrics(n.url), [1, 1]);
    }),
});

Deno.test({
  name: "cluster: the Redis password appears in no log line, check output or error",
  ignore: !hasRedis,
  fn: async () => {
    // with characters a URL must escape: neither the raw nor the escaped form may show
    const PASSWORD = "Sup3r:S3cret/Redis@Pw";
    const ESCAPED = encodeURIComponent(PASSWORD);
    const WRONG = "Wr0ngRedisPassw0rd";
    const debug = (url: string, up: KeyedUpstream) =>
      config(url, up, ORDERED, { extra: "log: { level: debug }" });
    const leaks = (text: string) => [PASSWORD, ESCAPED, WRONG].some((p) => text.includes(p));
    await withCluster({
      instances: 0,
      config: debug,
      redis: { password: PASSWORD },
    }, async ({ redis, up, path, startInstances, serve, writeConfig }) => {
      const wrongUrl = redis.url.replace(ESCAPED, WRONG);
      const wrong = await writeConfig(debug(wrongUrl, up));
      const broken = await writeConfig(config(`${redis.url}x`, up, ORDERED));
      assert.ok(redis.url.includes(ESCAPED) && wrongUrl.includes(WRONG));
      for (const args of [[], ["--json"]]) {
        const out = await runCli(["check", "--config", path, ...args]);
        assert.equal(out.code, 0, out.stderr);
        assert.ok(!leaks(out.stdout + out.stderr), `check ${args}:\n${out.stdout}${out.stderr}`);
        assert.ok(
          out.stdout.includes(`redis://:***@127.0.0.1:${redis.port}/0`),
          `check shows the URL without its password:\n${out.stdout}`,
        );
      }
      const invalid = await runCli(["check", "--config", broken]);
      assert.equal(invalid.code, 2, "an invalid Redis URL is a config error");
      assert.match(invalid.stderr + invalid.stdout, /state\.redis/);
      assert.ok(!leaks(invalid.stdout + invalid.stderr), invalid.stderr);

      const nodes = await startInstances(3);
      await allUp(nodes);
      const [a, b] = nodes as [ServeProcess, ServeProcess, ServeProcess];
      const listening = await a.waitForLog((r) => r.msg === "listening");
      assert.equal(listening.redis, `redis://:***@127.0.0.1:${redis.port}/0`);
      up.set(K1, "rate_limited");
      assert.equal((await ask(a.url)).status, 200);
      await watchState([b], K1, "resting", "K1 rests");
      await redis.kill();
      for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_DOWN_LOG, 5000);
      assert.equal((await ask(b.url)).status, 200);
      await redis.restart();
      for (const n of nodes) await n.waitForLog((r) => r.msg === REDIS_BACK_LOG, 5000);

      // a wrong password: it starts anyway, serves on its local view, and says neither password
      const bad = await serve(wrong);
      const warned = await bad.waitForLog((r) => /^shared state: Redis/.test(String(r.msg)));
      assert.equal(warned.level, "warn");
      const l = await bad.waitForLog((r) => r.msg === "listening");
      assert.equal(l.redis_up, false);
      assert.equal(l.redis, `redis://:***@127.0.0.1:${redis.port}/0`);
      assert.equal((await ask(bad.url)).status, 200);
      await new Promise((r) => setTimeout(r, 500)); // a few reconnection attempts
      assert.ok(bad.lines.length > 0);
      for (const n of [...nodes, bad]) {
        const leaked = n.lines.filter(leaks);
        assert.deepEqual(leaked, [], "no line shows a password");
      }
    });
  },
});
