/**
 * @module
 * Tests of a request's first lease (`src/proxy/acquire.ts`) over real pools built from a parsed
 * configuration and a manual clock: a lease at once, a wait in the pool's queue for its model
 * that a released lease ends (well before `max_wait`), a full queue (after the fallbacks, when
 * keys are only busy), no wait when no key can come back in time, a client that leaves,
 * shutdown, fallbacks in order (at once when the pool's keys are spent or resting), first come
 * first served (whatever order timers fire in, and against a newcomer while a woken waiter has
 * not tried yet), one queue per model, no busy poll when the strategy refuses available keys,
 * and panic picks that keep to a key's concurrency cap and budgets.
 */

import assert from "node:assert/strict";
import { builtins } from "../../plugins/mod.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { ProxyError } from "../../src/errors.ts";
import { statusOf } from "../../src/health/availability.ts";
import { Logger } from "../../src/logger.ts";
import type { PickContext } from "../../src/plugin.ts";
import type { Pool } from "../../src/pool.ts";
import {
  type Acquired,
  type AcquireDeps,
  fallbackLease,
  firstLease,
  withFallbacks,
} from "../../src/proxy/acquire.ts";
import type { Lease } from "../../src/proxy/lease.ts";
import type { QueueStats } from "../../src/proxy/wait_queue.ts";
import { PICK_CONTEXT } from "../helpers/candidates.ts";
import { ManualClock } from "../helpers/clock.ts";

/** Longer than any test should take: a test that reaches it waited when it should not have. */
const MAX_WAIT_S = 5;

interface Harness extends AsyncDisposable {
  app: App;
  clock: ManualClock;
  deps: AcquireDeps;
  pool(model: string): Pool;
  /** How many wait (or were woken and have not tried yet) for a pool's model. */
  waiting(model: string): number;
  /** The figures of a model's pool. */
  stats(model: string): QueueStats;
  /** Asks for a first lease for a model, as a request of that model would. */
  acquire(model: string, signal?: AbortSignal): Promise<Acquired>;
}

function yaml(quotaA: string, extra = ""): string {
  return `upstreams:
  up_a: { base_url: "http://a.test/v1", keys: [sk-acq-aaaa-0000000001], quota: ${quotaA} }
  up_b: { base_url: "http://b.test/v1", keys: [sk-acq-bbbb-0000000002] }
  up_c: { base_url: "http://c.test/v1", keys: [sk-acq-cccc-0000000003] }
pools:
  a: { upstreams: [up_a], fallbacks: [b, c] }
  b: { upstreams: [up_b] }
  c: { upstreams: [up_c] }
queue: { max_wait: ${MAX_WAIT_S}, max_length: 2 }
state: memory
${extra}`;
}

async function harness(text = yaml("{ max_concurrency: 1 }")): Promise<Harness> {
  const clock = new ManualClock();
  const config = parseConfigText(text, "acquire_test.yaml", { env: () => undefined });
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
    clock,
  });
  const deps: AcquireDeps = {
    poolFor: (model) => app.rt.poolFor(model),
    // the App's queues: its ledger wakes a waiter of these when a lease ends
    queues: app.queues,
    clock,
    queue: config.queue,
    stopping: () => app.stopping,
  };
  const pool = (model: string) => {
    const p = app.rt.poolFor(model);
    assert.ok(p !== undefined && p.model === model, `pool ${model}`);
    return p;
  };
  return {
    app,
    clock,
    deps,
    pool,
    waiting: (model) => app.queues.waiting(pool(model), model),
    stats: (model) => app.queues.stats(pool(model)),
    acquire: (model, signal = new AbortController().signal) =>
      firstLease(deps, pool(model), pick(model), () => signal),
    async [Symbol.asyncDispose]() {
      await app.close();
    },
  };
}

function pick(model: string): PickContext {
  return { ...PICK_CONTEXT, model };
}

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** Tells whether a promise has settled yet. */
async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => done = true, () => done = true);
  await settle();
  return done;
}

/** Takes every key of the named pools out (an operator disabled them). */
function disable(h: Harness, ...models: string[]): void {
  for (const m of models) for (const k of h.pool(m).candidates) h.app.board.setDisabled(k, true);
}

/**
 * A promise's value, or a failure once it has taken `ms` of real time: a waiter served out of
 * order fails the test instead of hanging it.
 */
async function within<T>(p: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not served within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

function leaseOf(a: Acquired): Lease {
  assert.ok(a.lease !== undefined, "a lease");
  return a.lease;
}

/**
 * Holds pool a's only slot and has three requests (w1, w2, w3) wait for it, in that order.
 * `releaseInOrder` frees the slot three times and checks that each went to the next in line.
 */
async function threeWaiting(h: Harness) {
  const served: string[] = [];
  let held = leaseOf(await h.acquire("a"));
  const waiters = ["w1", "w2", "w3"].map((name) =>
    h.acquire("a").then((got) => {
      served.push(name);
      return leaseOf(got);
    })
  );
  await settle();
  assert.equal(h.waiting("a"), 3);
  return {
    served,
    async releaseInOrder(after: (i: number) => void = () => {}): Promise<void> {
      for (let i = 0; i < 3; i++) {
        held.done({ cls: "ok" });
        held = await within(waiters[i]!, `w${i + 1}`);
        await settle();
        assert.deepEqual(served, ["w1", "w2", "w3"].slice(0, i + 1));
        after(i);
      }
      held.done({ cls: "ok" });
      assert.equal(h.stats("a").waited, 3);
    },
  };
}

Deno.test("firstLease() leases at once when a key is free", async () => {
  await using h = await harness();
  const got = await h.acquire("a");
  assert.equal(got.pool, h.pool("a"));
  assert.equal(got.model, "a");
  assert.equal(leaseOf(got).candidate.upstream.name, "up_a");
  assert.equal(h.waiting("a"), 0);
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() waits for a key at its concurrency cap and gets it when freed", async () => {
  await using h = await harness();
  const first = leaseOf(await h.acquire("a"));
  const started = performance.now();
  const second = h.acquire("a");
  await settle();
  assert.equal(await isSettled(second), false, "the second waits");
  assert.equal(h.waiting("a"), 1);
  h.clock.advance(200);
  first.done({ cls: "ok" });
  const got = await second;
  const took = performance.now() - started;
  assert.ok(took < 900, `woken by the release, not a timer (${took.toFixed(0)} ms)`);
  assert.equal(got.pool, h.pool("a"), "no fallback: the key came back");
  assert.equal(leaseOf(got).candidate, first.candidate);
  assert.equal(h.waiting("a"), 0);
  const s = h.stats("a");
  assert.equal(s.waited, 1);
  assert.equal(s.waitedMs, 200, "measured on the injected clock");
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() refuses with 503 queue_full beyond max_length", async () => {
  await using h = await harness();
  // no fallback can serve either (one that can is tried first: see below)
  disable(h, "b", "c");
  const held = leaseOf(await h.acquire("a"));
  const w1 = h.acquire("a");
  const w2 = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 2);
  await assert.rejects(h.acquire("a"), (err: unknown) => {
    assert.ok(err instanceof ProxyError);
    assert.equal(err.status, 503);
    assert.equal(err.code, "queue_full");
    assert.match(err.message, /\(2\)/);
    return true;
  });
  assert.equal(h.stats("a").refused, 1);
  assert.equal(h.waiting("a"), 2, "the waiters keep waiting");
  held.done({ cls: "ok" });
  leaseOf(await w1).done({ cls: "ok" });
  leaseOf(await w2).done({ cls: "ok" });
  assert.equal(h.stats("a").waited, 2);
});

Deno.test("firstLease() does not wait when every key is spent until tomorrow", async () => {
  await using h = await harness(yaml("{ requests_per_day: 1 }"));
  // the one request of the day, taken and ended: the key is out until the daily reset
  leaseOf(await h.acquire("a")).done({ cls: "ok" });
  const c = h.pool("a").candidates[0]!;
  assert.ok(c.state.budget.spentUntil > h.clock.now() + MAX_WAIT_S * 1000);
  const b = h.pool("b");
  for (const k of b.candidates) h.app.board.setDisabled(k, true);
  const cPool = h.pool("c");
  for (const k of cPool.candidates) h.app.board.setDisabled(k, true);
  const started = performance.now();
  const got = await h.acquire("a");
  const took = performance.now() - started;
  assert.equal(got.lease, undefined);
  assert.equal(got.pool, h.pool("a"));
  assert.equal(got.model, "a");
  assert.ok(took < 1000, `answered at once (${took.toFixed(0)} ms)`);
  assert.equal(h.waiting("a"), 0);
  assert.equal(h.stats("a").waited, 0);
});

Deno.test("firstLease() goes to a fallback at once when every key is spent until tomorrow", async () => {
  await using h = await harness(yaml("{ requests_per_day: 1 }"));
  leaseOf(await h.acquire("a")).done({ cls: "ok" });
  const started = performance.now();
  const got = await h.acquire("a");
  assert.ok(performance.now() - started < 1000, "no wait");
  assert.equal(got.pool, h.pool("b"));
  assert.equal(got.model, "b");
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() stops waiting when the client leaves, and tries no fallback", async () => {
  await using h = await harness();
  const held = leaseOf(await h.acquire("a"));
  const ac = new AbortController();
  const waiting = h.acquire("a", ac.signal);
  await settle();
  assert.equal(h.waiting("a"), 1);
  ac.abort();
  const got = await waiting;
  assert.equal(got.lease, undefined);
  assert.equal(got.pool, h.pool("a"), "a client that left is served by no fallback");
  assert.equal(h.waiting("a"), 0);
  assert.equal(h.stats("a").waited, 0);
  assert.equal(h.pool("b").candidates[0]!.state.inFlight, 0);
  held.done({ cls: "ok" });
});

Deno.test("firstLease() for a client already gone neither waits nor falls back", async () => {
  await using h = await harness();
  const held = leaseOf(await h.acquire("a"));
  const got = await h.acquire("a", AbortSignal.abort());
  assert.equal(got.lease, undefined);
  assert.equal(got.pool, h.pool("a"));
  assert.equal(h.waiting("a"), 0);
  held.done({ cls: "ok" });
});

Deno.test("firstLease() leases from the first fallback with a free key, in order", async () => {
  await using h = await harness();
  for (const k of h.pool("a").candidates) h.app.board.setDisabled(k, true);
  const got = await h.acquire("a");
  assert.equal(got.pool, h.pool("b"));
  assert.equal(got.model, "b");
  const lease = leaseOf(got);
  assert.equal(lease.candidate.upstream.name, "up_b");
  lease.done({ cls: "ok" });
  assert.equal(h.waiting("a"), 0, "no key of a could come back: no wait");

  for (const k of h.pool("b").candidates) h.app.board.setDisabled(k, true);
  const next = await h.acquire("a");
  assert.equal(next.pool, h.pool("c"), "b has no key either: c");
  assert.equal(next.model, "c");
  leaseOf(next).done({ cls: "ok" });

  for (const k of h.pool("c").candidates) h.app.board.setDisabled(k, true);
  const none = await h.acquire("a");
  assert.equal(none.lease, undefined);
  assert.equal(none.pool, h.pool("a"), "nothing served: the request's own pool");
  assert.equal(none.model, "a");
});

Deno.test("firstLease() answers at once with max_wait 0, trying the fallbacks", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 1 }").replace("max_wait: 5", "max_wait: 0"),
  );
  const held = leaseOf(await h.acquire("a"));
  const got = await h.acquire("a");
  assert.equal(got.pool, h.pool("b"));
  assert.equal(h.waiting("a"), 0);
  leaseOf(got).done({ cls: "ok" });
  held.done({ cls: "ok" });
});

Deno.test("firstLease() gives a freed slot to waiters in arrival order", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 1 }").replace("max_length: 2", "max_length: 3"),
  );
  const three = await threeWaiting(h);
  await three.releaseInOrder((i) => assert.equal(h.waiting("a"), 2 - i));
});

Deno.test("firstLease() queues a new request behind those already waiting", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 1 }").replace("max_length: 2", "max_length: 3"),
  );
  const served: string[] = [];
  const held = leaseOf(await h.acquire("a"));
  const w1 = h.acquire("a").then((got) => (served.push("w1"), leaseOf(got)));
  await settle();
  const late = h.acquire("a").then((got) => (served.push("late"), leaseOf(got)));
  await settle();
  assert.equal(h.waiting("a"), 2, "the newcomer waits too, behind w1");
  held.done({ cls: "ok" });
  const first = await within(w1, "w1");
  await settle();
  assert.deepEqual(served, ["w1"], "the first waiter got the slot");
  assert.equal(h.waiting("a"), 1, "the newcomer, woken too, found none and waits again");
  first.done({ cls: "ok" });
  (await within(late, "late")).done({ cls: "ok" });
  assert.deepEqual(served, ["w1", "late"]);
});

Deno.test("firstLease() wakes a waiter when an operator resets a key's budgets", async () => {
  await using h = await harness();
  // no fallback can serve (one that can serves at once: the key is not merely busy)
  disable(h, "b", "c");
  const c = h.pool("a").candidates[0]!;
  // out for 3 s by the provider's word: within max_wait, so a request waits for it
  h.app.budgets.exhaust(c, "a", "key", h.clock.now() + 3000, h.clock.now());
  const started = performance.now();
  const waiting = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 1);
  h.app.budgets.reset(c);
  h.app.wake();
  const got = await waiting;
  assert.ok(performance.now() - started < 2000, "woken by the operator, not its timer");
  assert.equal(got.pool, h.pool("a"));
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() waits for a key that comes back by itself within max_wait", async () => {
  await using h = await harness();
  disable(h, "b", "c");
  const c = h.pool("a").candidates[0]!;
  // out for 20 ms: the waiter's own timer wakes it when the key is back
  h.app.budgets.exhaust(c, "a", "key", h.clock.now() + 20, h.clock.now());
  const waiting = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 1);
  h.clock.advance(20);
  const got = await waiting;
  assert.equal(got.pool, h.pool("a"));
  assert.equal(leaseOf(got).candidate, c);
  assert.equal(h.stats("a").waitedMs, 20);
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() gives up once max_wait has passed, then tries the fallbacks", async () => {
  await using h = await harness();
  const held = leaseOf(await h.acquire("a"));
  const waiting = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 1);
  h.clock.advance(MAX_WAIT_S * 1000);
  // woken (as by any release elsewhere) after its time is up: no key of a, so b serves
  h.app.wake();
  const got = await waiting;
  assert.equal(got.pool, h.pool("b"));
  assert.equal(got.model, "b");
  assert.equal(h.waiting("a"), 0);
  assert.equal(h.stats("a").waited, 0, "it got no key of its own pool");
  leaseOf(got).done({ cls: "ok" });
  held.done({ cls: "ok" });
});

Deno.test("firstLease() waits for a busy key even when max_wait is under a second", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 1 }").replace("max_wait: 5", "max_wait: 0.5"),
  );
  const held = leaseOf(await h.acquire("a"));
  const waiting = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 1, "a release may come any moment: worth the wait");
  h.clock.advance(400);
  held.done({ cls: "ok" });
  const got = await waiting;
  assert.equal(got.pool, h.pool("a"));
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() keeps a busy-key waiter to the very end of max_wait", async () => {
  await using h = await harness();
  const held = leaseOf(await h.acquire("a"));
  const waiting = h.acquire("a");
  await settle();
  h.clock.advance(MAX_WAIT_S * 1000 - 100);
  h.app.wake();
  await settle();
  assert.equal(h.waiting("a"), 1, "100 ms left: still waiting");
  held.done({ cls: "ok" });
  const got = await waiting;
  assert.equal(got.pool, h.pool("a"));
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() tries a fallback that can serve before refusing queue_full when keys are busy", async () => {
  await using h = await harness();
  const held = leaseOf(await h.acquire("a"));
  const w1 = h.acquire("a");
  const w2 = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 2, "the queue is full");
  const got = await h.acquire("a");
  assert.equal(got.pool, h.pool("b"), "b serves now: no queue_full");
  assert.equal(got.model, "b");
  assert.equal(h.stats("a").refused, 0);
  assert.equal(h.waiting("a"), 2, "the waiters keep waiting");
  leaseOf(got).done({ cls: "ok" });
  held.done({ cls: "ok" });
  leaseOf(await w1).done({ cls: "ok" });
  leaseOf(await w2).done({ cls: "ok" });
  assert.equal(h.stats("a").waited, 2);
});

Deno.test("firstLease() goes to a fallback at once when the pool's key rests, though it returns within max_wait", async () => {
  await using h = await harness();
  const c = h.pool("a").candidates[0]!;
  h.app.budgets.exhaust(c, "a", "key", h.clock.now() + 3000, h.clock.now());
  const started = performance.now();
  const got = await h.acquire("a");
  assert.ok(performance.now() - started < 1000, "no wait");
  assert.equal(got.pool, h.pool("b"));
  assert.equal(h.waiting("a"), 0);
  leaseOf(got).done({ cls: "ok" });
});

Deno.test("firstLease() serves waiters woken together in arrival order, each keeping its place", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 1 }").replace("max_length: 2", "max_length: 3"),
  );
  const three = await threeWaiting(h);
  // an operator enabled a key: every waiter is woken, none finds a free slot
  h.app.wake();
  await settle();
  assert.deepEqual(three.served, []);
  assert.equal(h.waiting("a"), 3, "all three wait again");
  await three.releaseInOrder();
});

Deno.test("firstLease() keeps arrival order when a later waiter's timer fires first", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 2 }").replace("max_length: 2", "max_length: 3"),
  );
  disable(h, "b", "c");
  const c = h.pool("a").candidates[0]!;
  const wall = h.clock.now();
  h.app.budgets.exhaust(c, "a", "key", wall + 600, wall);
  const served: string[] = [];
  const acquire = (name: string) => h.acquire("a").then((got) => (served.push(name), leaseOf(got)));
  const a = acquire("a"); // its timer: 600 ms, when the key returns
  h.clock.set(wall + 590);
  const b = acquire("b"); // 10 ms: it fires first, finds no key (the wall clock goes back)
  h.clock.set(wall);
  const cc = acquire("c"); // 600 ms
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(served, []);
  assert.equal(h.waiting("a"), 3, "b waits again");
  // the key is back; a release wakes the first: it takes a slot and wakes the next
  h.app.budgets.reset(c);
  h.app.queues.wakeOne();
  const first = await within(a, "a");
  const second = await within(b, "b");
  await settle();
  assert.deepEqual(served, ["a", "b"], "b, not c, had the place after a");
  first.done({ cls: "ok" });
  (await within(cc, "c")).done({ cls: "ok" });
  second.done({ cls: "ok" });
  assert.deepEqual(served, ["a", "b", "c"]);
});

Deno.test("firstLease() does not let a newcomer take the slot a woken waiter was woken for", async () => {
  await using h = await harness(
    yaml("{ max_concurrency: 1 }").replace("max_length: 2", "max_length: 3"),
  );
  disable(h, "b", "c");
  const served: string[] = [];
  const held = leaseOf(await h.acquire("a"));
  const w1 = h.acquire("a").then((got) => (served.push("w1"), leaseOf(got)));
  await settle();
  // the slot frees and w1 is woken; before w1 runs, a newcomer arrives
  held.done({ cls: "ok" });
  assert.equal(h.waiting("a"), 1, "w1, woken, has not tried yet");
  const late = h.acquire("a").then((got) => (served.push("late"), leaseOf(got)));
  const first = await within(w1, "w1");
  await settle();
  assert.deepEqual(served, ["w1"], "the woken waiter got its slot");
  assert.equal(h.waiting("a"), 1, "the newcomer waits");
  first.done({ cls: "ok" });
  (await within(late, "late")).done({ cls: "ok" });
  assert.deepEqual(served, ["w1", "late"]);
  assert.equal(h.stats("a").waited, 2);
});

Deno.test("firstLease() queues per model: a key spent for one model serves another at once", async () => {
  await using h = await harness(`upstreams:
  up: { base_url: "http://up.test/v1", keys: [sk-acq-dddd-0000000004], quota: { max_concurrency: 2 } }
queue: { max_wait: ${MAX_WAIT_S}, max_length: 1 }
state: memory
`);
  const pool = h.app.rt.poolFor("x")!;
  assert.equal(pool, h.app.rt.poolFor("y"), "the default pool serves both");
  const c = pool.candidates[0]!;
  // out for model x for 3 s (within max_wait): requests for x wait
  h.app.budgets.exhaust(c, "x", "model", h.clock.now() + 3000, h.clock.now());
  const signal = new AbortController().signal;
  const get = (model: string) => firstLease(h.deps, pool, pick(model), () => signal);
  const x1 = get("x");
  await settle();
  assert.equal(h.app.queues.waiting(pool, "x"), 1);
  await assert.rejects(
    get("x"),
    (e: unknown) => e instanceof ProxyError && e.code === "queue_full",
  );
  assert.equal(h.app.queues.stats(pool).refused, 1);
  // y has its own line, empty: served at once, with no queue_full
  const y = await get("y");
  assert.equal(y.pool, pool);
  assert.equal(y.model, "y");
  assert.equal(leaseOf(y).candidate, c);
  assert.equal(h.app.queues.waiting(pool, "y"), 0);
  assert.equal(h.app.queues.stats(pool).refused, 1, "nothing refused for y");
  leaseOf(y).done({ cls: "ok" });
  assert.equal(await isSettled(x1), false, "x still waits");
  h.app.budgets.reset(c);
  h.app.wake();
  const x = await x1;
  assert.equal(leaseOf(x).candidate, c);
  leaseOf(x).done({ cls: "ok" });
});

Deno.test("firstLease() does not busy-poll a pool whose strategy refuses its available keys", async () => {
  // weight 0 under `weighted`: the keys are available, the strategy never picks them
  const config = parseConfigText(
    `upstreams:
  up: { base_url: "http://up.test/v1", keys: [sk-acq-eeee-0000000005, sk-acq-ffff-0000000006], weight: 0 }
pools:
  a: { strategy: weighted, upstreams: [up] }
queue: { max_wait: 0.3, max_length: 10 }
state: memory
`,
    "acquire_test.yaml",
    { env: () => undefined },
  );
  // the system clock: the wait ends by max_wait in real time
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
  try {
    const pool = app.rt.poolFor("a")!;
    let leases = 0;
    const lease = pool.lease.bind(pool);
    pool.lease = (...args) => (leases++, lease(...args));
    const deps: AcquireDeps = {
      poolFor: (model) => app.rt.poolFor(model),
      queues: app.queues,
      clock: app.clock,
      queue: config.queue,
      stopping: () => false,
    };
    const started = performance.now();
    const got = await firstLease(deps, pool, pick("a"), () => new AbortController().signal);
    const took = performance.now() - started;
    assert.equal(got.lease, undefined);
    assert.equal(got.pool, pool);
    assert.ok(took >= 280 && took < 1500, `ended by max_wait (${took.toFixed(0)} ms)`);
    assert.ok(leases <= 4, `${leases} tries in ${took.toFixed(0)} ms: no poll every millisecond`);
    assert.equal(app.queues.waiting(pool, "a"), 0);
  } finally {
    await app.close();
  }
});

Deno.test("firstLease() lets a waiter of a strategy-refused pool try again on a release", async () => {
  const config = parseConfigText(
    `upstreams:
  up: { base_url: "http://up.test/v1", keys: [sk-acq-eeee-0000000005], weight: 0 }
pools:
  a: { strategy: weighted, upstreams: [up] }
queue: { max_wait: ${MAX_WAIT_S}, max_length: 10 }
state: memory
`,
    "acquire_test.yaml",
    { env: () => undefined },
  );
  const clock = new ManualClock();
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
    clock,
  });
  try {
    const pool = app.rt.poolFor("a")!;
    let leases = 0;
    const lease = pool.lease.bind(pool);
    pool.lease = (...args) => (leases++, lease(...args));
    const deps: AcquireDeps = {
      poolFor: (model) => app.rt.poolFor(model),
      queues: app.queues,
      clock,
      queue: config.queue,
      stopping: () => app.stopping,
    };
    const ac = new AbortController();
    const waiting = firstLease(deps, pool, pick("a"), () => ac.signal);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(leases, 1, "one try, then a wait for a release (no timer of 1 ms)");
    app.queues.wakeOne();
    await settle();
    assert.equal(leases, 2, "a release: one more try");
    assert.equal(app.queues.waiting(pool, "a"), 1);
    ac.abort();
    assert.equal((await waiting).lease, undefined);
  } finally {
    await app.close();
  }
});

Deno.test("firstLease() stops waiting at shutdown and tries no fallback", async () => {
  await using h = await harness();
  const held = leaseOf(await h.acquire("a"));
  const waiting = h.acquire("a");
  await settle();
  assert.equal(h.waiting("a"), 1);
  h.app.cutAll();
  const got = await waiting;
  assert.equal(got.lease, undefined);
  assert.equal(got.pool, h.pool("a"));
  assert.equal(h.waiting("a"), 0);
  assert.equal(h.pool("b").candidates[0]!.state.inFlight, 0, "no fallback leased");
  held.done({ cls: "ok" });
});

Deno.test("Pool.lease() panic picks keep to max_concurrency", async () => {
  await using h = await harness();
  const a = h.pool("a");
  const c = a.candidates[0]!;
  for (let i = 0; i < c.upstream.config.maxFailures; i++) h.app.board.end(c, "server");
  assert.equal(statusOf(c.state, h.clock.now()), "ejected");
  const panic = a.lease(pick("a"));
  assert.ok(panic !== undefined, "every key ejected: a panic pick");
  assert.equal(panic.candidate, c);
  assert.equal(a.lease(pick("a")), undefined, "max_concurrency 1: no second panic pick");
  assert.equal(a.any(undefined, "a"), false);
  // the request goes to a fallback rather than a second attempt on the ejected key
  const got = await h.acquire("a");
  assert.equal(got.pool, h.pool("b"));
  assert.equal(c.state.inFlight, 1);
  leaseOf(got).done({ cls: "ok" });
  panic.done({ cls: "client_abort" });
  assert.equal(statusOf(c.state, h.clock.now()), "ejected");
  const again = a.lease(pick("a"));
  assert.equal(again?.candidate, c, "the slot is free again");
  again!.done({ cls: "client_abort" });
});

Deno.test("Pool.lease() panic picks keep to a key's budget for the model", async () => {
  await using h = await harness(yaml("{ model_requests_per_day: 1 }"));
  const a = h.pool("a");
  const c = a.candidates[0]!;
  leaseOf(await h.acquire("a")).done({ cls: "ok" });
  for (let i = 0; i < c.upstream.config.maxFailures; i++) h.app.board.end(c, "server");
  assert.equal(statusOf(c.state, h.clock.now()), "ejected");
  assert.equal(a.lease(pick("a")), undefined, "model a's one request today is spent");
  const other = a.lease(pick("other"));
  assert.equal(other?.candidate, c, "another model's budget is untouched");
  other!.done({ cls: "client_abort" });
});

Deno.test("fallbackLease() leases from the first fallback that can serve, else undefined", async () => {
  await using h = await harness();
  const got = fallbackLease(h.deps, h.pool("a"), pick("a"));
  assert.ok(got !== undefined);
  assert.equal(got.pool, h.pool("b"));
  assert.equal(got.model, "b");
  assert.equal(leaseOf(got).candidate.upstream.name, "up_b");
  leaseOf(got).done({ cls: "ok" });
  for (const k of h.pool("b").candidates) h.app.board.setDisabled(k, true);
  const next = fallbackLease(h.deps, h.pool("a"), pick("a"));
  assert.equal(next?.model, "c");
  leaseOf(next!).done({ cls: "ok" });
  for (const k of h.pool("c").candidates) h.app.board.setDisabled(k, true);
  assert.equal(fallbackLease(h.deps, h.pool("a"), pick("a")), undefined);
  assert.equal(fallbackLease(h.deps, h.pool("b"), pick("b")), undefined, "no fallbacks");
});

Deno.test("fallbackLease() skips fallbacks with no pool and the request's own pool", async () => {
  await using h = await harness();
  const a = h.pool("a");
  // a runtime whose fallback names resolve to nothing, or back to the pool itself
  const deps = { poolFor: (model: string | undefined) => model === "b" ? undefined : a };
  assert.equal(fallbackLease(deps, a, pick("a")), undefined);
});

Deno.test("withFallbacks() lists the request's pool, then its fallbacks' in order, once each", async () => {
  await using h = await harness();
  assert.deepEqual(withFallbacks(h.deps, h.pool("a")), [h.pool("a"), h.pool("b"), h.pool("c")]);
  assert.deepEqual(withFallbacks(h.deps, h.pool("b")), [h.pool("b")]);
  const a = h.pool("a");
  const deps = {
    poolFor: (model: string | undefined) => model === "b" ? undefined : a,
  };
  assert.deepEqual(withFallbacks(deps, a), [a], "unknown and repeated pools are left out");
});

Deno.test("firstLease() lets an earlier waiter take a returning key before a later one whose timer fired first", async () => {
  await using h = await harness(yaml("{ max_concurrency: 1 }", ""));
  disable(h, "b", "c");
  const a = h.pool("a");
  const c = a.candidates[0]!;
  const wall = h.clock.now();
  h.app.budgets.exhaust(c, "a", "key", wall + 300, wall);
  const served: string[] = [];
  const ask = (name: string) => h.acquire("a").then((got) => (served.push(name), got));
  const first = ask("w1"); // waits for the key's return: a 300 ms timer
  await settle();
  h.clock.set(wall + 290);
  const second = ask("w2"); // 10 ms timer
  await settle();
  h.clock.set(wall + 300); // the key is back on the wall clock: w2's timer fires first
  const got1 = await within(first, "the first waiter");
  assert.deepEqual(served, ["w1"], "the earlier request takes the key");
  leaseOf(got1).done({ cls: "ok" });
  const got2 = await within(second, "the second waiter");
  assert.deepEqual(served, ["w1", "w2"]);
  leaseOf(got2).done({ cls: "ok" });
});
