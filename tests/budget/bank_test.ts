/**
 * @module
 * Tests of {@linkcode BudgetBank} against a real redis-server, each simulated instance on its
 * own link: instances together never grant more than a limit, grants are spent without a round
 * trip, per-model, per-minute and token budgets refuse with their reason and when they end,
 * unused grants go back, a Redis that is down leaves the book to decide and is paid what was
 * spent meanwhile, Redis's clock picks the day, and the cluster's counts can be read and reset.
 */

import assert from "node:assert/strict";
import {
  type BankEvents,
  BudgetBank,
  type ClusterCounts,
  type Reservation,
} from "../../src/budget/bank.ts";
import type { Candidate } from "../../src/plugin.ts";
import type { QuotaConfig } from "../../src/config/types.ts";
import { RedisLink } from "../../src/shared/link.ts";
import { type FakeCandidate, makeCandidates } from "../helpers/candidates.ts";
import { hasRedis, randomPrefix, type RedisServer, withRedis } from "../helpers/redis.ts";

const quiet = { info() {}, warn() {} };
const DAY = 86_400_000;
const MINUTE = 60_000;
const HOUR = 3_600_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `ok()` holds; fails after `ms`. */
async function until(ok: () => boolean | Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits, if needed, so that the test does not straddle a minute (or a UTC day) boundary. */
async function awayFromEdges(): Promise<void> {
  const now = Date.now();
  const toMinute = MINUTE - (now % MINUTE);
  const toDay = DAY - (now % DAY);
  if (toMinute < 3000 || toDay < 3000) await sleep(Math.min(toMinute, toDay) + 100);
}

interface Refusal {
  id: string;
  model: string | undefined;
  why: string;
  until: number;
}

/** A bank's events, kept. */
interface Told {
  refused: Refusal[];
  counts: { model: string | undefined; counts: ClusterCounts }[];
}

interface Instance {
  link: RedisLink;
  bank: BudgetBank;
  told: Told;
}

interface InstanceOptions {
  now?: () => number;
  idleMs?: number;
}

/**
 * Waits away from a minute's (or UTC day's) edge, then runs `fn` on a fresh Redis, a random
 * prefix and `n` instances (a link and a bank each; the first one's also as `link`, `bank` and
 * `told`); all closed after.
 */
async function withBanks(
  n: number,
  options: InstanceOptions,
  fn: (
    ctx: { redis: RedisServer; prefix: string; instances: Instance[] } & Instance,
  ) => Promise<void>,
): Promise<void> {
  await awayFromEdges();
  await withRedis(async (redis) => {
    const prefix = randomPrefix();
    const instances: Instance[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const link = new RedisLink({ url: redis.url, prefix, logger: quiet });
        const bank = new BudgetBank({
          link,
          ...(options.now === undefined ? {} : { now: options.now }),
          ...(options.idleMs === undefined ? {} : { idleMs: options.idleMs }),
        });
        const told: Told = { refused: [], counts: [] };
        const events: BankEvents = {
          refused: (c, model, why, until) =>
            void told.refused.push({ id: c.id, model, why, until }),
          counts: (_c, model, counts) => void told.counts.push({ model, counts }),
        };
        bank.attach(events);
        instances.push({ link, bank, told });
        assert.equal(await link.start(), true);
      }
      await fn({ redis, prefix, instances, ...instances[0]! });
    } finally {
      for (const i of instances) await i.bank.close();
      for (const i of instances) await i.link.close();
    }
  });
}

/** One key with these budgets (each instance gets its own object, with the same id). */
function key(quota: Partial<QuotaConfig>): FakeCandidate {
  return makeCandidates([{ quota }])[0]!;
}

/** Takes one request and waits for the answer. */
async function take(bank: BudgetBank, c: Candidate, model?: string): Promise<boolean> {
  const r = bank.take(c, model);
  return r === true ? true : (await r) !== "refused";
}

/** The day hash of a key in Redis. */
function dayKey(prefix: string, c: Candidate, dayStart: number): string {
  return `${prefix}b:${c.id}:d:${dayStart}`;
}

function utcDayStart(now = Date.now()): number {
  return Math.floor(now / DAY) * DAY;
}

async function hget(redis: RedisServer, k: string, field: string): Promise<number> {
  const v = await redis.cli("HGET", k, field);
  return v === "" ? 0 : Number(v);
}

Deno.test({
  name: "bank: three instances, 200 concurrent takes of a 50-a-day key: exactly 50 granted",
  ignore: !hasRedis,
  fn: () =>
    withBanks(3, {}, async ({ redis, prefix, instances }) => {
      const keys = instances.map(() => key({ requestsPerDay: 50 }));
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) => take(instances[i % 3]!.bank, keys[i % 3]!)),
      );
      assert.equal(answers.filter((a) => a).length, 50);
      assert.equal(answers.filter((a) => !a).length, 150);
      const midnight = utcDayStart() + DAY;
      for (const [i, { told }] of instances.entries()) {
        assert.ok(told.refused.length >= 1, `instance ${i} was told of the refusal`);
        for (const r of told.refused) {
          assert.equal(r.why, "day");
          assert.equal(r.model, undefined);
          assert.equal(r.id, keys[0]!.id);
          assert.ok(Math.abs(r.until - midnight) < 2000, `until ${r.until} vs ${midnight}`);
        }
      }
      assert.equal(await hget(redis, dayKey(prefix, keys[0]!, utcDayStart()), "r"), 50);
    }),
});

Deno.test({
  name: "bank: a grant is spent without a round trip: most takes are synchronous",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ redis, prefix, bank }) => {
      const c = key({ requestsPerDay: 2000 });
      const batch = 20; // a hundredth of the limit, at most 20
      const takes = 500;
      let sync = 0;
      for (let i = 0; i < takes; i++) {
        const r = bank.take(c, undefined);
        if (r === true) sync++;
        else assert.equal(await r, "granted");
        await sleep(0); // requests come and go: replies from Redis arrive meanwhile
      }
      assert.ok(sync >= takes * 0.9, `${sync} of ${takes} synchronous`);
      const k = dayKey(prefix, c, utcDayStart());
      await until(async () => (await redis.cli("EXISTS", k)) === "1", 1000, "the day hash");
      const count = await hget(redis, k, "r");
      assert.ok(count >= takes, `Redis counts ${count} < ${takes}`);
      // what the instance holds: what is left of one batch when a top-up was asked, and the top-up
      assert.ok(count <= takes + batch + batch / 2, `Redis counts ${count}, held too many`);
      await bank.close();
      assert.equal(await hget(redis, k, "r"), takes, "closing gives back what was held");
    }),
});

Deno.test({
  name: "bank: a per-model budget refuses that model with why 'model'; other models still go",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ redis, prefix, bank, told }) => {
      const c = key({ modelRequestsPerDay: 5 });
      for (let i = 0; i < 5; i++) assert.equal(await take(bank, c, "a"), true, `take ${i + 1}`);
      assert.equal(await take(bank, c, "a"), false);
      assert.equal(told.refused.length, 1, JSON.stringify(told.refused));
      assert.deepEqual(
        { model: told.refused[0]!.model, why: told.refused[0]!.why },
        { model: "a", why: "model" },
      );
      assert.ok(Math.abs(told.refused[0]!.until - (utcDayStart() + DAY)) < 2000);
      assert.equal(await take(bank, c, "b"), true);
      assert.equal(await take(bank, c, "b"), true);
      const k = dayKey(prefix, c, utcDayStart());
      assert.equal(await hget(redis, k, "m:a"), 5);
      assert.ok((await hget(redis, k, "m:b")) >= 2);
    }),
});

Deno.test({
  name: "bank: requests_per_minute refuses with why 'minute' until the minute's end",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ bank, told }) => {
      const c = key({ requestsPerMinute: 10 });
      const answers: boolean[] = [];
      for (let i = 0; i < 12; i++) answers.push(await take(bank, c));
      assert.deepEqual(answers, [...Array(10).fill(true), false, false]);
      assert.ok(told.refused.length >= 1);
      const now = Date.now();
      const minuteEnd = Math.floor(now / MINUTE) * MINUTE + MINUTE;
      for (const r of told.refused) {
        assert.equal(r.why, "minute");
        assert.ok(r.until > now && r.until <= now + MINUTE, `until ${r.until - now} ms ahead`);
        assert.ok(Math.abs(r.until - minuteEnd) < 2000, `until ${r.until} vs ${minuteEnd}`);
      }
    }),
});

Deno.test({
  name: "bank: tokens are added within 100 ms; a full token budget is refused as 'day_tokens'",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ redis, prefix, bank, told }) => {
      const c = key({ tokensPerDay: 100 });
      bank.tokens(c, 60);
      bank.tokens(c, 60);
      const t0 = performance.now();
      await until(() => told.refused.length > 0, 1000, "the refusal");
      const ms = performance.now() - t0;
      assert.ok(ms < 300, `took ${ms} ms`);
      assert.equal(told.refused[0]!.why, "day_tokens");
      assert.equal(told.refused[0]!.id, c.id);
      assert.ok(Math.abs(told.refused[0]!.until - (utcDayStart() + DAY)) < 2000);
      assert.equal(await hget(redis, dayKey(prefix, c, utcDayStart()), "t"), 120);
    }),
});

Deno.test({
  name: "bank: a grant left unused goes back to Redis after idleMs",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, { idleMs: 200 }, async ({ redis, prefix, bank }) => {
      const c = key({ requestsPerDay: 2000 });
      assert.equal(await take(bank, c), true);
      const k = dayKey(prefix, c, utcDayStart());
      assert.ok((await hget(redis, k, "r")) > 1, "a batch was taken");
      await sleep(500);
      assert.equal(await hget(redis, k, "r"), 1);
    }),
});

Deno.test({
  name: "bank: a request given back stays in the grant: the next take needs no round trip",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ redis, prefix, bank }) => {
      const c = key({ requestsPerDay: 50 }); // batches of one
      assert.equal(await take(bank, c), true);
      const k = dayKey(prefix, c, utcDayStart());
      assert.equal(await hget(redis, k, "r"), 1);
      bank.giveBack(c, undefined);
      assert.equal(bank.take(c, undefined), true, "synchronous");
      assert.equal(await hget(redis, k, "r") >= 1, true);
    }),
});

Deno.test({
  name: "bank: while Redis is down the book decides; what was owed is added when it is back",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ redis, prefix, link, bank }) => {
      const c = key({ requestsPerDay: 50 });
      assert.equal(bank.covers(c), true);
      await redis.kill();
      await until(() => !link.up, 5000, "the link down");
      assert.equal(bank.covers(c), false);
      assert.equal(bank.up, false);
      let r: true | Promise<Reservation> = true;
      assert.doesNotThrow(() => r = bank.take(c, undefined));
      assert.equal(await r, "owed", "counted alone, told to Redis when it is back");
      // a take that finds Redis down is owed too (the book counts it alone meanwhile)
      bank.owe(c, undefined);
      bank.owe(c, undefined);
      bank.owe(c, undefined);
      bank.unowe(c, undefined); // given back before Redis returned: not owed any more
      await redis.restart();
      const k = dayKey(prefix, c, utcDayStart());
      await until(async () => (await hget(redis, k, "r")) === 3, 5000, "the owed requests");
      assert.equal(bank.covers(c), true);
      const ttl = Number(await redis.cli("PTTL", k));
      assert.ok(ttl > 0, `the day hash expires (PTTL ${ttl})`);
    }),
});

/** A reset an hour ahead of the real time (UTC): the real day started 23 h ago. */
function resetAhead(): { reset: { hour: number; minute: number }; realStart: number } {
  const next = Math.floor((Date.now() + HOUR) / MINUTE) * MINUTE;
  const d = new Date(next);
  return { reset: { hour: d.getUTCHours(), minute: d.getUTCMinutes() }, realStart: next - DAY };
}

Deno.test({
  name: "bank: Redis's clock decides the day, not an instance's clock that is 2 h ahead",
  ignore: !hasRedis,
  async fn() {
    const skewed = () => Date.now() + 2 * HOUR;
    await withBanks(1, { now: skewed }, async ({ redis, prefix, bank, told }) => {
      const { reset, realStart } = resetAhead();
      const c = key({ requestsPerDay: 100, reset, timeZone: "UTC" });
      assert.equal(await take(bank, c), true);
      assert.ok((await hget(redis, dayKey(prefix, c, realStart), "r")) >= 1, "in Redis's day");
      const skewedStart = realStart + DAY; // the skewed instance is past the reset
      assert.equal(await redis.cli("EXISTS", dayKey(prefix, c, skewedStart)), "0");
      // the grant lasts until Redis's day ends, told in the instance's clock
      assert.ok(told.counts.length >= 1);
    });
  },
});

Deno.test({
  name: "bank: requests owed while Redis was down land in Redis's day, not a skewed instance's",
  ignore: !hasRedis,
  async fn() {
    const skewed = () => Date.now() + 2 * HOUR;
    await withBanks(1, { now: skewed }, async ({ redis, prefix, link, bank }) => {
      const { reset, realStart } = resetAhead();
      const c = key({ requestsPerDay: 100, reset, timeZone: "UTC" });
      await redis.kill();
      await until(() => !link.up, 5000, "the link down");
      bank.owe(c, undefined);
      bank.owe(c, undefined);
      await redis.restart();
      await until(() => link.up, 5000, "the link back");
      const real = dayKey(prefix, c, realStart);
      const wrong = dayKey(prefix, c, realStart + DAY);
      await until(
        async () =>
          (await redis.cli("EXISTS", real)) === "1" || (await redis.cli("EXISTS", wrong)) === "1",
        5000,
        "the owed requests",
      );
      assert.equal(await redis.cli("EXISTS", wrong), "0", "added to the skewed instance's day");
      assert.equal(await hget(redis, real, "r"), 2);
    });
  },
});

Deno.test({
  name: "bank: cluster() reads the cluster's counts; reset() deletes them",
  ignore: !hasRedis,
  fn: () =>
    withBanks(2, {}, async ({ redis, prefix, instances }) => {
      const [a, b] = instances as [Instance, Instance];
      const quota = {
        requestsPerDay: 50,
        modelRequestsPerDay: 40,
        requestsPerMinute: 30,
        tokensPerDay: 10_000,
        tokensPerMinute: 5_000,
      };
      const ca = key(quota);
      const cb = key(quota);
      assert.equal(await take(a.bank, ca, "m1"), true);
      assert.equal(await take(a.bank, ca, "m1"), true);
      assert.equal(await take(b.bank, cb, "m2"), true);
      a.bank.tokens(ca, 120);
      b.bank.tokens(cb, 30);
      const k = dayKey(prefix, ca, utcDayStart());
      await until(async () => (await hget(redis, k, "t")) === 150, 1000, "the tokens");
      const read = await b.bank.cluster(cb);
      assert.ok(read !== undefined);
      const minutes = (await redis.cli("KEYS", `${prefix}b:${ca.id}:m:*`)).split("\n");
      assert.equal(minutes.length, 1);
      assert.deepEqual(read.counts, {
        dayRequests: await hget(redis, k, "r"),
        modelRequests: 0,
        minuteRequests: await hget(redis, minutes[0]!, "r"),
        dayTokens: 150,
        minuteTokens: 150,
      });
      assert.ok(read.counts.dayRequests >= 3);
      assert.deepEqual(read.models, {
        m1: await hget(redis, k, "m:m1"),
        m2: await hget(redis, k, "m:m2"),
      });
      assert.ok(read.models.m1! >= 2 && read.models.m2! >= 1);
      assert.equal(await a.bank.cluster(key({})), undefined, "a key without budgets");

      await a.bank.reset(ca);
      // only the key's generation stays, one higher: grants held elsewhere are void
      assert.equal(await redis.cli("KEYS", `${prefix}b:${ca.id}:*`), `${prefix}b:${ca.id}:gen`);
      assert.equal(await redis.cli("GET", `${prefix}b:${ca.id}:gen`), "1");
      const after = await a.bank.cluster(ca);
      assert.deepEqual(after, {
        counts: {
          dayRequests: 0,
          modelRequests: 0,
          minuteRequests: 0,
          dayTokens: 0,
          minuteTokens: 0,
        },
        models: {},
      });
      // the grants it held are gone too: the next take asks Redis
      assert.notEqual(a.bank.take(ca, "m1"), true);
    }),
});

Deno.test({
  name: "bank: reset() of a key whose id has glob characters leaves other keys' counts alone",
  ignore: !hasRedis,
  fn: () =>
    withBanks(1, {}, async ({ redis, prefix, bank }) => {
      const [star] = makeCandidates([{ upstream: "a*", quota: { requestsPerDay: 50 } }]);
      const [plain] = makeCandidates([{ upstream: "ab", quota: { requestsPerDay: 50 } }]);
      assert.equal(await take(bank, star!), true);
      assert.equal(await take(bank, plain!), true);
      await bank.reset(star!);
      assert.equal(await hget(redis, dayKey(prefix, star!, utcDayStart()), "r"), 0);
      assert.ok((await hget(redis, dayKey(prefix, plain!, utcDayStart()), "r")) >= 1);
    }),
});
