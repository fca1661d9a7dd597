/** @module Tests of an attempt's control: its limits on the watchdog's clock, and OpenAttempts. */

import assert from "node:assert/strict";
import { AttemptControl, LAZY_CLIENT_MS, OpenAttempts } from "../../src/proxy/attempt_control.ts";
import { Watchdog } from "../../src/proxy/watchdog.ts";
import { ManualClock } from "../helpers/clock.ts";

/** A manual clock and a watchdog on it. */
function timing() {
  const clock = new ManualClock();
  return { clock, dog: new Watchdog({ clock }) };
}

Deno.test("OpenAttempts adds and removes in any order, each once", () => {
  const { dog } = timing();
  const open = new OpenAttempts();
  const [a, b, c] = [0, 1, 2].map(() => new AttemptControl(undefined, dog));
  open.add(a!);
  open.add(b!);
  open.add(b!);
  open.add(c!);
  assert.equal(open.size, 3);
  open.delete(a!);
  open.delete(a!);
  assert.equal(open.size, 2);
  assert.deepEqual(new Set(open.toArray()), new Set([b, c]));
  open.delete(c!);
  open.delete(b!);
  assert.equal(open.size, 0);
  open.add(a!);
  assert.deepEqual(open.toArray(), [a]);
});

Deno.test("OpenAttempts.toArray() lets every open attempt be cut while the set changes", () => {
  const { dog } = timing();
  const open = new OpenAttempts();
  const controls = [0, 1, 2, 3].map(() => new AttemptControl(undefined, dog));
  for (const c of controls) open.add(c);
  // cutting an attempt ends it, and an ended attempt leaves the set
  for (const c of open.toArray()) {
    c.shutdown();
    open.delete(c);
  }
  assert.equal(open.size, 0);
  assert.ok(controls.every((c) => c.signal.aborted && c.shutDown));
});

Deno.test("AttemptControl fires each limit when its watchdog's clock passes it", () => {
  for (const kind of ["first_byte", "total", "idle"] as const) {
    const { clock, dog } = timing();
    const c = new AttemptControl(undefined, dog);
    if (kind === "first_byte") c.armFirstByte(100);
    else if (kind === "total") c.armTotal(100);
    else c.armIdle(100);
    assert.equal(c.watchdog, dog);
    assert.equal(dog.size, 1, kind);
    clock.advance(99);
    dog.tick();
    assert.equal(c.signal.aborted, false, `${kind}: not before its time`);
    clock.advance(1);
    dog.tick();
    assert.equal(c.timedOut, kind);
    assert.equal((c.signal.reason as DOMException).name, "TimeoutError", kind);
    assert.equal(dog.size, 0, `${kind}: unwatched once fired`);
    c.dispose();
  }
});

Deno.test("AttemptControl measures limits from the start time it is given", () => {
  const { clock, dog } = timing();
  const startedAt = clock.mono();
  clock.advance(40);
  const c = new AttemptControl(undefined, dog, startedAt);
  c.armTotal(100, startedAt);
  c.armFirstByte(0);
  c.armIdle(Infinity);
  clock.advance(59);
  dog.tick();
  assert.equal(c.signal.aborted, false);
  clock.advance(1);
  dog.tick();
  assert.equal(c.timedOut, "total", "100 ms after the start, not after the arming");
});

Deno.test("AttemptControl clears limits that were met, and a disposed one never fires", () => {
  const { clock, dog } = timing();
  const c = new AttemptControl(undefined, dog);
  c.armFirstByte(50);
  c.armTotal(1000);
  c.firstByteArrived();
  c.armIdle(50);
  c.idleOver();
  clock.advance(999);
  dog.tick();
  assert.equal(c.signal.aborted, false);
  c.dispose();
  assert.equal(dog.size, 0);
  clock.advance(10_000);
  dog.tick();
  assert.equal(c.signal.aborted, false);
  assert.equal(dog.running, false);
});

Deno.test("AttemptControl reads a client signal given as a function only after LAZY_CLIENT_MS", () => {
  const { clock, dog } = timing();
  const client = new AbortController();
  let reads = 0;
  const c = new AttemptControl(() => {
    reads++;
    return client.signal;
  }, dog);
  clock.advance(LAZY_CLIENT_MS - 1);
  dog.tick();
  assert.equal(reads, 0);
  clock.advance(1);
  dog.tick();
  assert.equal(reads, 1);
  assert.equal(c.signal.aborted, false);
  client.abort();
  assert.equal(c.clientAborted, true);
  assert.equal(c.timedOut, undefined);
  c.dispose();
});
