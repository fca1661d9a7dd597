import assert from "node:assert/strict";
import { emptyState, MemoryStateStore } from "../src/state_store.ts";

Deno.test("MemoryStateStore.record() returns the same live record for an id", () => {
  const store = new MemoryStateStore();
  const a = store.record("u#1");
  a.requests = 5;
  assert.equal(store.record("u#1").requests, 5);
  assert.notEqual(store.record("u#2"), a);
  assert.deepEqual([...store.entries()].map(([id]) => id), ["u#1", "u#2"]);
});

Deno.test("emptyState() is healthy, idle and never used", () => {
  const s = emptyState();
  assert.equal(s.healthy, true);
  assert.equal(s.disabled, false);
  assert.equal(s.inFlight, 0);
  assert.equal(s.lastUsed, 0);
  assert.equal(s.ejectedUntil, 0);
  assert.equal(s.restUntil, 0);
});
