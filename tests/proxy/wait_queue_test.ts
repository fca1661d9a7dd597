/**
 * @module
 * Tests of the wait queues (`src/proxy/wait_queue.ts`). {@linkcode WaitQueue}: first come first
 * served by ticket (a waiter that waits again keeps its place, whatever order timers fire in),
 * `busy` counting woken waiters until they settle, timeouts (clamped to what `setTimeout`
 * takes), clients that leave, waking one or all. {@linkcode WaitQueues}: one queue per pool and
 * model, made only while someone waits, per-pool figures, waking every queue, pruning.
 * Waiters are woken by hand; the few timeouts are a few milliseconds.
 */

import assert from "node:assert/strict";
import { type WaitEnd, WaitQueue, WaitQueues } from "../../src/proxy/wait_queue.ts";

/** A wait that records its name when it ends, in the order waits end. */
function track(
  ended: string[],
  name: string,
  wait: Promise<WaitEnd>,
): Promise<WaitEnd> {
  return wait.then((end) => {
    ended.push(`${name}:${end}`);
    return end;
  });
}

/** A new request joins the queue: a ticket, then the wait. */
function join(q: WaitQueue, ms: number, signal: AbortSignal): Promise<WaitEnd> {
  return q.wait(ms, signal, q.ticket());
}

/** Lets pending promise callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** A long wait, ended by the test (its timer is cleared when it ends). */
const LONG = 60_000;

/** A pool, as the queues key it (any object). */
interface FakePool {
  name: string;
}

Deno.test("WaitQueue.wakeOne() wakes waiters first come first served", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const ended: string[] = [];
  const waits = ["a", "b", "c"].map((n) => track(ended, n, join(q, LONG, signal)));
  assert.equal(q.length, 3);
  q.wakeOne();
  await settle();
  assert.deepEqual(ended, ["a:woken"]);
  assert.equal(q.length, 2);
  q.wakeOne();
  q.wakeOne();
  await Promise.all(waits);
  assert.deepEqual(ended, ["a:woken", "b:woken", "c:woken"]);
  assert.equal(q.length, 0);
});

Deno.test("WaitQueue.ticket() hands out places in line in order", () => {
  const q = new WaitQueue();
  const tickets = [q.ticket(), q.ticket(), q.ticket()];
  assert.ok(tickets[0]! < tickets[1]! && tickets[1]! < tickets[2]!, String(tickets));
  assert.equal(q.length, 0, "a ticket alone is no wait");
  assert.equal(q.busy, 0);
});

Deno.test("WaitQueue.wait() with its ticket keeps a woken waiter's turn at the front", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const ended: string[] = [];
  const ticketA = q.ticket();
  const first = q.wait(LONG, signal, ticketA);
  const b = track(ended, "b", join(q, LONG, signal));
  q.wakeOne();
  assert.equal(await first, "woken");
  // the first found no key: it waits again, ahead of b
  const again = track(ended, "a", q.wait(LONG, signal, ticketA));
  const c = track(ended, "c", join(q, LONG, signal));
  q.wakeOne();
  await settle();
  assert.deepEqual(ended, ["a:woken"]);
  q.wakeOne();
  q.wakeOne();
  await Promise.all([again, b, c]);
  assert.deepEqual(ended, ["a:woken", "b:woken", "c:woken"]);
});

Deno.test("WaitQueue.wait() keeps ticket order when a later waiter's timer fires first", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const ended: string[] = [];
  const a = track(ended, "a", join(q, LONG, signal));
  const ticketB = q.ticket();
  const b = q.wait(2, signal, ticketB);
  const c = track(ended, "c", join(q, LONG, signal));
  assert.equal(await b, "timeout", "b's short timer fired while a and c wait");
  assert.equal(q.length, 2);
  // b found no key: it waits again, between a (before it) and c (after it), not behind c
  const bAgain = track(ended, "b", q.wait(LONG, signal, ticketB));
  q.wakeOne();
  await settle();
  q.wakeOne();
  await settle();
  q.wakeOne();
  await Promise.all([a, bAgain, c]);
  assert.deepEqual(ended, ["a:woken", "b:woken", "c:woken"]);
});

Deno.test("WaitQueue.wait() keeps ticket order when woken waiters come back in any order", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const tickets = [q.ticket(), q.ticket(), q.ticket()];
  const first = tickets.map((t) => q.wait(LONG, signal, t));
  q.wakeAll();
  await Promise.all(first);
  // none found a key; they wait again, the last one first
  const ended: string[] = [];
  const again = [2, 0, 1].map((i) => track(ended, `w${i}`, q.wait(LONG, signal, tickets[i]!)));
  for (let i = 0; i < 3; i++) {
    q.wakeOne();
    await settle();
  }
  await Promise.all(again);
  assert.deepEqual(ended, ["w0:woken", "w1:woken", "w2:woken"]);
});

Deno.test("WaitQueue.busy counts woken waiters until they settle()", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const a = join(q, LONG, signal);
  const b = join(q, LONG, signal);
  assert.deepEqual([q.length, q.busy], [2, 2]);
  q.wakeOne();
  assert.equal(await a, "woken");
  assert.deepEqual([q.length, q.busy], [1, 2], "a has not tried yet: a newcomer queues behind");
  q.settled();
  assert.deepEqual([q.length, q.busy], [1, 1]);
  q.wakeAll();
  await b;
  assert.equal(q.busy, 1);
  q.settled();
  assert.equal(q.busy, 0);
  q.settled();
  assert.equal(q.busy, 0, "never below zero");
});

Deno.test("WaitQueue.busy does not count a waiter that timed out or left", async () => {
  const q = new WaitQueue();
  const ac = new AbortController();
  const timedOut = join(q, 1, new AbortController().signal);
  const leaving = join(q, LONG, ac.signal);
  assert.equal(await timedOut, "timeout");
  ac.abort();
  assert.equal(await leaving, "aborted");
  assert.deepEqual([q.length, q.busy], [0, 0]);
});

Deno.test("WaitQueue.wait() ends with timeout when no one wakes it", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const other = join(q, LONG, signal);
  assert.equal(await join(q, 1, signal), "timeout");
  assert.equal(q.length, 1, "the timed-out waiter left the queue, the other stays");
  q.wakeOne();
  assert.equal(await other, "woken", "the one that stayed is the first now");
});

Deno.test("WaitQueue.wait() with no time left times out at once", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  assert.equal(await join(q, 0, signal), "timeout");
  assert.equal(await join(q, -50, signal), "timeout");
  assert.equal(q.length, 0);
});

Deno.test("WaitQueue.wait() cuts a wait longer than setTimeout takes to its longest timer", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  // a timer over 2^31-1 ms would fire at once (and warn): a month's wait must not
  const waits = [2 ** 31, 30 * 86_400_000, Number.MAX_SAFE_INTEGER, Infinity].map((ms) =>
    join(q, ms, signal)
  );
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(q.length, 4, "none timed out");
  q.wakeAll();
  assert.deepEqual(await Promise.all(waits), ["woken", "woken", "woken", "woken"]);
});

Deno.test("WaitQueue.wait() ends with aborted when the client leaves", async () => {
  const q = new WaitQueue();
  const leaving = new AbortController();
  const staying = new AbortController();
  const ended: string[] = [];
  const a = track(ended, "a", join(q, LONG, staying.signal));
  const b = track(ended, "b", join(q, LONG, leaving.signal));
  const c = track(ended, "c", join(q, LONG, staying.signal));
  leaving.abort();
  assert.equal(await b, "aborted");
  assert.equal(q.length, 2, "the client that left left the queue");
  q.wakeOne();
  q.wakeOne();
  await Promise.all([a, c]);
  assert.deepEqual(ended, ["b:aborted", "a:woken", "c:woken"]);
});

Deno.test("WaitQueue.wait() answers aborted at once for a client already gone", async () => {
  const q = new WaitQueue();
  const signal = AbortSignal.abort();
  const ticket = q.ticket();
  assert.equal(await q.wait(LONG, signal, ticket), "aborted");
  assert.equal(await q.wait(LONG, signal, ticket), "aborted");
  assert.equal(q.length, 0, "it never joined");
  assert.equal(q.busy, 0);
});

Deno.test("WaitQueue.wait() ends once: a later abort or wake of a woken waiter does nothing", async () => {
  const q = new WaitQueue();
  const ac = new AbortController();
  const ends: WaitEnd[] = [];
  const w = join(q, LONG, ac.signal).then((e) => ends.push(e));
  q.wakeOne();
  ac.abort();
  q.wakeOne();
  q.wakeAll();
  await w;
  await settle();
  assert.deepEqual(ends, ["woken"]);
  assert.equal(q.length, 0);
  assert.equal(q.busy, 1, "woken once: one to settle");
});

Deno.test("WaitQueue.wakeAll() wakes every waiter in order", async () => {
  const q = new WaitQueue();
  const signal = new AbortController().signal;
  const ended: string[] = [];
  const waits = ["a", "b", "c"].map((n) => track(ended, n, join(q, LONG, signal)));
  q.wakeAll();
  assert.equal(q.length, 0);
  assert.equal(q.busy, 3);
  await Promise.all(waits);
  assert.deepEqual(ended, ["a:woken", "b:woken", "c:woken"]);
});

Deno.test("WaitQueue.wakeOne() and wakeAll() on an empty queue do nothing", () => {
  const q = new WaitQueue();
  q.wakeOne();
  q.wakeAll();
  assert.equal(q.length, 0);
  assert.equal(q.busy, 0);
});

Deno.test("WaitQueue.wait() leaves no listener on the client's signal once it ended", async () => {
  const q = new WaitQueue();
  const ac = new AbortController();
  let added = 0;
  let removed = 0;
  const signal = ac.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    added++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    removed++;
    remove(...args);
  };
  const w1 = join(q, LONG, signal);
  q.wakeOne();
  await w1;
  await join(q, 1, signal);
  assert.equal(added, 2);
  assert.equal(removed, 2);
});

Deno.test("WaitQueues.of() gives one queue per pool and model, the same while in use", () => {
  const queues = new WaitQueues<FakePool>();
  const p1 = { name: "p1" };
  const p2 = { name: "p2" };
  const q = queues.of(p1, "x");
  assert.equal(queues.of(p1, "x"), q);
  assert.notEqual(queues.of(p1, "y"), q, "another model: another queue");
  assert.notEqual(queues.of(p2, "x"), q, "another pool: another queue");
  assert.equal(queues.of(p1, undefined), queues.of(p1, undefined), "no model is a model too");
});

Deno.test("WaitQueues.waiting() counts waiting and woken-not-yet-tried requests of one queue", async () => {
  const queues = new WaitQueues<FakePool>();
  const p = { name: "p" };
  const signal = new AbortController().signal;
  assert.equal(queues.waiting(p, "x"), 0);
  const q = queues.of(p, "x");
  const a = join(q, LONG, signal);
  const b = join(q, LONG, signal);
  assert.equal(queues.waiting(p, "x"), 2);
  assert.equal(queues.waiting(p, "y"), 0, "another model's queue is another line");
  assert.equal(queues.waiting({ name: "p" }, "x"), 0, "another pool (by identity)");
  q.wakeOne();
  await a;
  assert.equal(queues.waiting(p, "x"), 2, "the woken one has not tried yet");
  q.settled();
  assert.equal(queues.waiting(p, "x"), 1);
  q.wakeAll();
  await b;
  q.settled();
  assert.equal(queues.waiting(p, "x"), 0);
});

Deno.test("WaitQueues.waiting() makes no queue", () => {
  const queues = new WaitQueues<FakePool>();
  const p = { name: "p" };
  queues.stats(p);
  for (let i = 0; i < 1000; i++) assert.equal(queues.waiting(p, `model-${i}`), 0);
  // prune forgets a pool's figures only when it holds no queue: none was made
  queues.prune(() => false);
  assert.deepEqual([...queues.pools()], []);
});

Deno.test("WaitQueues.release() drops an empty queue, keeps one in use", async () => {
  const queues = new WaitQueues<FakePool>();
  const p = { name: "p" };
  const signal = new AbortController().signal;
  const q = queues.of(p, "x");
  const a = join(q, LONG, signal);
  queues.release(p, "x");
  assert.equal(queues.of(p, "x"), q, "someone waits: the queue stays");
  q.wakeOne();
  await a;
  queues.release(p, "x");
  assert.equal(queues.of(p, "x"), q, "woken, not yet tried: the queue stays");
  q.settled();
  queues.release(p, "x");
  assert.notEqual(queues.of(p, "x"), q, "empty: it went, a new one is made");
  queues.release(p, "x");
  queues.release(p, "never-made");
  queues.release({ name: "other" }, "x");
  queues.stats(p);
  queues.prune(() => false);
  assert.deepEqual([...queues.pools()], [], "no queue of p is left");
});

Deno.test("WaitQueues leave no queue behind for a client naming ever new models", async () => {
  const queues = new WaitQueues<FakePool>();
  const p = { name: "p" };
  const signal = new AbortController().signal;
  const waits: Promise<WaitEnd>[] = [];
  for (let i = 0; i < 1000; i++) waits.push(join(queues.of(p, `m${i}`), LONG, signal));
  assert.equal(queues.waiting(p, "m999"), 1);
  queues.wakeAll();
  await Promise.all(waits);
  for (let i = 0; i < 1000; i++) {
    queues.of(p, `m${i}`).settled();
    queues.release(p, `m${i}`);
  }
  queues.stats(p);
  queues.prune(() => false);
  assert.deepEqual([...queues.pools()], [], "every queue went");
});

Deno.test("WaitQueues.stats() keeps a pool's figures, made on first use", () => {
  const queues = new WaitQueues<FakePool>();
  const p = { name: "p" };
  assert.deepEqual([...queues.pools()], []);
  const s = queues.stats(p);
  assert.deepEqual(s, { waited: 0, waitedMs: 0, refused: 0 });
  s.waited++;
  s.waitedMs += 250;
  s.refused++;
  assert.equal(queues.stats(p), s, "the same figures");
  assert.deepEqual(queues.stats(p), { waited: 1, waitedMs: 250, refused: 1 });
  assert.deepEqual(queues.stats({ name: "q" }), { waited: 0, waitedMs: 0, refused: 0 });
});

Deno.test("WaitQueues.pools() yields each pool's figures and how many wait in all its queues", async () => {
  const queues = new WaitQueues<FakePool>();
  const p1 = { name: "p1" };
  const p2 = { name: "p2" };
  const signal = new AbortController().signal;
  queues.stats(p1).waited = 3;
  queues.stats(p2).refused = 1;
  const waits = [
    join(queues.of(p1, "x"), LONG, signal),
    join(queues.of(p1, "x"), LONG, signal),
    join(queues.of(p1, "y"), LONG, signal),
  ];
  const rows = [...queues.pools()].map(([pool, s, n]) => [pool.name, s.waited, s.refused, n]);
  assert.deepEqual(rows, [["p1", 3, 0, 3], ["p2", 0, 1, 0]]);
  queues.wakeAll();
  await Promise.all(waits);
  assert.deepEqual([...queues.pools()].map(([, , n]) => n), [0, 0]);
});

Deno.test("WaitQueues.wakeOne() wakes the first waiter of every queue", async () => {
  const queues = new WaitQueues<FakePool>();
  const p1 = { name: "p1" };
  const p2 = { name: "p2" };
  const signal = new AbortController().signal;
  const ended: string[] = [];
  const waits = [
    track(ended, "p1x-1", join(queues.of(p1, "x"), LONG, signal)),
    track(ended, "p1x-2", join(queues.of(p1, "x"), LONG, signal)),
    track(ended, "p1y-1", join(queues.of(p1, "y"), LONG, signal)),
    track(ended, "p2x-1", join(queues.of(p2, "x"), LONG, signal)),
  ];
  queues.wakeOne();
  await settle();
  assert.deepEqual(ended.toSorted(), ["p1x-1:woken", "p1y-1:woken", "p2x-1:woken"]);
  assert.equal(queues.of(p1, "x").length, 1);
  queues.wakeAll();
  await Promise.all(waits);
  assert.equal(ended.at(-1), "p1x-2:woken");
  queues.wakeOne();
  queues.wakeAll();
  new WaitQueues<FakePool>().wakeOne();
});

Deno.test("WaitQueues.prune() forgets figures of pools not kept, once nobody waits in them", async () => {
  const queues = new WaitQueues<FakePool>();
  const kept = { name: "kept" };
  const gone = { name: "gone" };
  const busy = { name: "busy" };
  const signal = new AbortController().signal;
  for (const p of [kept, gone, busy]) queues.stats(p).waited = 1;
  const w = join(queues.of(busy, "x"), LONG, signal);
  queues.prune((p) => p === kept);
  assert.deepEqual([...queues.pools()].map(([p]) => p.name), ["kept", "busy"]);
  queues.wakeAll();
  await w;
  queues.of(busy, "x").settled();
  queues.release(busy, "x");
  queues.prune((p) => p === kept);
  assert.deepEqual([...queues.pools()].map(([p]) => p.name), ["kept"]);
});
