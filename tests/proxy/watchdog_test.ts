import assert from "node:assert/strict";
import { Watchdog } from "../../src/proxy/watchdog.ts";

Deno.test("Watchdog checks every watched deadline on its interval, then stops a tick after the last one", async () => {
  const dog = new Watchdog(5);
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
