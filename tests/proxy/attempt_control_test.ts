import assert from "node:assert/strict";
import { AttemptControl, OpenAttempts } from "../../src/proxy/attempt_control.ts";

Deno.test("OpenAttempts adds and removes in any order, each once", () => {
  const open = new OpenAttempts();
  const [a, b, c] = [0, 1, 2].map(() => new AttemptControl(undefined));
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
  const open = new OpenAttempts();
  const controls = [0, 1, 2, 3].map(() => new AttemptControl(undefined));
  for (const c of controls) open.add(c);
  // cutting an attempt ends it, and an ended attempt leaves the set
  for (const c of open.toArray()) {
    c.shutdown();
    open.delete(c);
  }
  assert.equal(open.size, 0);
  assert.ok(controls.every((c) => c.signal.aborted && c.shutDown));
});
