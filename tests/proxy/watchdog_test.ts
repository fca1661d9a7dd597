/** @module Tests of the watchdog: its interval, its manual tick and its clock. */

import assert from "node:assert/strict";
import { systemClock } from "../../src/clock.ts";
import { Watchdog } from "../../src/proxy/watchdog.ts";
import { ManualClock } from "../helpers/clock.ts";

Deno.test("Watchdog checks every watched deadline on its interval, then stops a tick after the last one", async () => {
  const dog = new Watchdog({ tickMs: 5 });
  const seen: number[] = [];
  const a = { check: (now: number) => seen.push(now) };
  const b = { check: () => {} };
  dog.watch(a);
  dog.watch(a);
  dog.watch(b);
  assert.equal(dog.size, 2);
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(seen.length >= 2, `checked ${seen.length} times`);
  assert.ok(seen.every((t, i) => i === 0 || t >= seen[i - 1]!));
  dog.unwatch(a);
  dog.unwatch(b);
  assert.equal(dog.size, 0);
  const count = seen.length;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(seen.length, count);
  assert.equal(dog.running, false, "the interval stops once nothing is watched");
});

Deno.test("Watchdog.tick() fires a deadline passed on a manual clock without waiting", () => {
  const clock = new ManualClock();
  const dog = new Watchdog({ clock });
  const at = clock.mono() + 100;
  const fired: number[] = [];
  const deadline = {
    watchSlot: -1,
    check(now: number) {
      if (now < at) return;
      fired.push(now);
      dog.unwatch(this);
    },
  };
  dog.watch(deadline);
  assert.equal(dog.running, true);
  dog.tick();
  clock.advance(99);
  dog.tick();
  assert.deepEqual(fired, [], "not before its time");
  clock.advance(1);
  dog.tick();
  assert.deepEqual(fired, [at], "checked against the clock's mono()");
  assert.equal(dog.size, 0);
  dog.tick();
  assert.equal(dog.running, false, "a tick finding nothing watched stops the interval");
});

Deno.test("Watchdog.tick() checks every watched one, also when checks unwatch themselves", () => {
  const clock = new ManualClock();
  const dog = new Watchdog({ clock });
  const checked: string[] = [];
  const make = (name: string, leaves: boolean) => {
    const w = {
      watchSlot: -1,
      check: () => {
        checked.push(name);
        if (leaves) dog.unwatch(w);
      },
    };
    return w;
  };
  const ws = [make("a", true), make("b", false), make("c", true), make("d", true)];
  for (const w of ws) dog.watch(w);
  dog.tick();
  assert.deepEqual(checked.toSorted(), ["a", "b", "c", "d"]);
  assert.equal(dog.size, 1);
  checked.length = 0;
  dog.tick();
  assert.deepEqual(checked, ["b"]);
  dog.unwatch(ws[1]!);
  dog.tick();
  assert.equal(dog.running, false);
});

Deno.test("Watchdog reads the system clock unless given one", () => {
  assert.equal(new Watchdog().clock, systemClock);
  const clock = new ManualClock();
  assert.equal(new Watchdog({ clock, tickMs: 50 }).clock, clock);
});
