/**
 * @module Tests of {@linkcode SharedRateLimiter} against a real redis-server: the synchronous
 * fast path, the bound across three instances, refill, fallback and recovery, what Redis holds.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RateLimiter } from "../../src/rate_limiter.ts";
import type { RateDecision } from "../../src/rate_limiter.ts";
import { RedisLink } from "../../src/shared/link.ts";
import { SharedRateLimiter } from "../../src/shared/rate_bank.ts";
import { hasRedis, type RedisServer, withRedis } from "../helpers/redis.ts";

const quiet = { info() {}, warn() {} };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `ok()` holds, polling; fails after `ms`. */
async function until(ok: () => boolean | Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** `n` limiters, each on its own link to one fresh Redis; everything closed after `fn`. */
async function withLimiters(
  n: number,
  fn: (ctx: {
    server: RedisServer;
    prefix: string;
    links: RedisLink[];
    limiters: SharedRateLimiter[];
    locals: RateLimiter[];
  }) => Promise<void>,
): Promise<void> {
  await withRedis(async (server) => {
    const prefix = `t:${crypto.randomUUID().slice(0, 8)}:`;
    const links: RedisLink[] = [];
    const limiters: SharedRateLimiter[] = [];
    const locals: RateLimiter[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const link = new RedisLink({ url: server.url, prefix, logger: quiet });
        links.push(link);
        assert.equal(await link.start(), true);
        const local = new RateLimiter(Date.now);
        locals.push(local);
        limiters.push(new SharedRateLimiter({ link, local }));
      }
      await fn({ server, prefix, links, limiters, locals });
    } finally {
      for (const l of limiters) await l.close();
      for (const l of links) await l.close();
    }
  });
}

function bucketKey(prefix: string, client: string): string {
  return `${prefix}rl:${createHash("sha256").update(client).digest("hex").slice(0, 32)}`;
}

async function bucketTokens(server: RedisServer, key: string): Promise<number> {
  return Number(await server.cli("HGET", key, "tokens"));
}

/** Takes until refused (at most `max` times, one after the other); the allowed count and the refusal. */
async function drain(l: SharedRateLimiter, client: string, rpm: number, max: number) {
  let allowed = 0;
  for (let i = 0; i < max; i++) {
    const d = await l.take(client, rpm);
    if (!d.allowed) return { allowed, refusal: d };
    allowed++;
  }
  throw new Error(`Still allowed after ${max} requests`);
}

Deno.test({
  name: "SharedRateLimiter.take() answers without waiting once the instance holds a grant",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ limiters: [l] }) => {
      assert.ok(l !== undefined);
      const first = l.take("client-a", 6000);
      assert.ok(first instanceof Promise, "the first request waits for a grant");
      assert.equal((await first).allowed, true);
      let sync = 0;
      for (let i = 0; i < 200; i++) {
        await sleep(1); // requests arrive through I/O: the background refill gets its turn
        const d: RateDecision | Promise<RateDecision> = l.take("client-a", 6000);
        if (!(d instanceof Promise)) sync++;
        const decided: RateDecision = d instanceof Promise ? await d : d;
        assert.equal(decided.allowed, true);
        assert.equal(decided.limit, 6000);
        assert.ok(decided.remaining > 5000 && decided.remaining <= 6000);
      }
      assert.ok(sync >= 190, `only ${sync} of 200 decisions were synchronous`);
      assert.equal(l.size, 1);
    }),
});

Deno.test({
  name: "SharedRateLimiter.take() shares one Redis call among concurrent requests of a client",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ server, limiters: [l] }) => {
      assert.ok(l !== undefined);
      await server.cli("CONFIG", "RESETSTAT");
      const decisions = await Promise.all(Array.from({ length: 50 }, () => l.take("c", 6000)));
      assert.equal(decisions.filter((d) => d.allowed).length, 50);
      const stats = await server.cli("INFO", "commandstats");
      const calls = [...stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      // batches of 10: five calls for 50 requests, plus a background refill or two
      assert.ok(calls >= 5 && calls <= 8, `${calls} script calls for 50 requests`);
    }),
});

Deno.test({
  name:
    "SharedRateLimiter.take() lets three instances together allow rpm plus a batch each, not 3x",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(3, async ({ limiters }) => {
      const rpm = 100; // batches of 5
      const started = Date.now();
      const all: RateDecision[] = [];
      // a concurrent burst on each instance, then requests one after the other on each
      await Promise.all(limiters.map(async (l) => {
        all.push(...await Promise.all(Array.from({ length: 60 }, () => l.take("burst", rpm))));
        for (let i = 0; i < 20; i++) all.push(await l.take("burst", rpm));
      }));
      // what the bucket refilled meanwhile (a token per 600 ms) may pass too
      const refilled = Math.ceil((Date.now() - started) * rpm / 60_000);
      const allowed = all.filter((d) => d.allowed).length;
      assert.ok(
        allowed <= rpm + 3 * 5 + refilled,
        `${allowed} allowed with rpm ${rpm} on 3 instances`,
      );
      assert.ok(allowed >= rpm - 3 * 5, `only ${allowed} allowed with rpm ${rpm}`);
      const refused = all.filter((d) => !d.allowed);
      assert.equal(refused.length, all.length - allowed);
      for (const d of refused) {
        assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= 600, `retryAfterMs ${d.retryAfterMs}`);
        assert.equal(d.limit, rpm);
      }
    }),
});

Deno.test({
  name: "SharedRateLimiter.take() refuses an empty bucket at once, and passes again after refill",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ limiters: [l] }) => {
      assert.ok(l !== undefined);
      const { allowed, refusal } = await drain(l, "slow", 60, 100); // 1 token a second
      assert.ok(allowed >= 60 && allowed <= 61, `${allowed} allowed with rpm 60`);
      assert.ok(refusal.retryAfterMs > 0 && refusal.retryAfterMs <= 1000);
      assert.equal(refusal.remaining, 0);
      assert.ok(refusal.resetMs > 55_000 && refusal.resetMs <= 60_000);
      // the refusal is remembered until the bucket holds a token: no Redis call meanwhile
      const again = l.take("slow", 60);
      assert.ok(!(again instanceof Promise));
      assert.equal(again.allowed, false);
      assert.ok(again.retryAfterMs > 0 && again.retryAfterMs <= refusal.retryAfterMs);
      await sleep(refusal.retryAfterMs + 50);
      assert.equal((await l.take("slow", 60)).allowed, true);
    }),
});

Deno.test({
  name: "SharedRateLimiter.take() decides locally while Redis is down and uses it again when back",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ server, prefix, links: [link], limiters: [l] }) => {
      assert.ok(l !== undefined && link !== undefined);
      assert.equal((await l.take("before", 5)).allowed, true);
      await server.kill();
      // right after the kill, whether the link has noticed or not: an answer, never an exception
      for (let i = 0; i < 3; i++) assert.equal((await l.take("meanwhile", 5)).allowed, true);
      await until(() => !link.up, 3000, "the link to go down");
      // the local limiter's decisions: at once, 5 a minute
      const local: RateDecision[] = [];
      for (let i = 0; i < 6; i++) {
        const d = l.take("down", 5);
        assert.ok(!(d instanceof Promise), "a decision while Redis is down waits");
        local.push(d);
      }
      assert.deepEqual(local.map((d) => d.allowed), [true, true, true, true, true, false]);
      assert.equal(local[5]?.retryAfterMs, 12_000);
      await server.restart();
      await until(() => link.up, 5000, "the link to come back");
      const back = l.take("back", 5);
      assert.ok(back instanceof Promise, "a new client is asked of Redis again");
      assert.equal((await back).allowed, true);
      assert.equal(await server.cli("EXISTS", bucketKey(prefix, "back")), "1");
      assert.equal(l.size, 4);
    }),
});

Deno.test({
  name: "SharedRateLimiter.take() decides locally when Redis does not answer in time",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ server, prefix, links: [link], limiters: [l] }) => {
      assert.ok(l !== undefined && link !== undefined);
      assert.equal((await l.take("before", 5)).allowed, true);
      await server.cli("CLIENT", "PAUSE", "1000", "ALL"); // the link's 500 ms timeout passes
      const slow = l.take("paused", 5);
      assert.ok(slow instanceof Promise);
      const d = await slow;
      assert.equal(d.allowed, true);
      assert.equal(link.up, false);
      await until(() => link.up, 5000, "the link to come back");
      const back = l.take("back", 5);
      assert.ok(back instanceof Promise, "a new client is asked of Redis again");
      assert.equal((await back).allowed, true);
      assert.equal(await server.cli("EXISTS", bucketKey(prefix, "back")), "1");
    }),
});

Deno.test({
  name: "SharedRateLimiter.take() writes only a hash of the client key to Redis",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ server, prefix, limiters: [l] }) => {
      assert.ok(l !== undefined);
      const secret = "sk-live-SECRET-client-key-8c1f";
      for (let i = 0; i < 30; i++) await l.take(secret, 600);
      const keys = (await server.cli("KEYS", "*")).split("\n");
      assert.deepEqual(keys, [bucketKey(prefix, secret)]);
      const dumped = [
        keys.join(" "),
        await server.cli("HGETALL", keys[0]!),
        await server.cli("DUMP", keys[0]!),
      ].join("\n");
      assert.ok(!dumped.includes(secret) && !dumped.includes("SECRET"));
      const ttl = Number(await server.cli("PTTL", keys[0]!));
      assert.ok(ttl > 1000 && ttl <= 61_000, `PTTL ${ttl}`);
    }),
});

Deno.test({
  name: "SharedRateLimiter gives unused grants back to the bucket when idle and on close()",
  ignore: !hasRedis,
  fn: () =>
    withLimiters(1, async ({ server, prefix, links: [link] }) => {
      assert.ok(link !== undefined);
      const l = new SharedRateLimiter({ link, local: new RateLimiter(Date.now) });
      try {
        // rpm 60: batches of 3, one token back a second
        assert.equal((await l.take("idle", 60)).allowed, true);
        const key = bucketKey(prefix, "idle");
        assert.equal(await bucketTokens(server, key), 57);
        await sleep(300);
        assert.equal(await bucketTokens(server, key), 57, "given back before the idle time");
        // the two tokens held come back: 57 + about 1 refilled + 2, capped at 60
        await until(async () => await bucketTokens(server, key) >= 59.5, 3000, "the grant back");
        assert.equal(await bucketTokens(server, key), 60);

        assert.equal((await l.take("closing", 60)).allowed, true);
        assert.equal(await bucketTokens(server, bucketKey(prefix, "closing")), 57);
      } finally {
        await l.close();
      }
      assert.ok(await bucketTokens(server, bucketKey(prefix, "closing")) >= 59);
    }),
});
