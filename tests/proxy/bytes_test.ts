/** @module Tests of src/proxy/bytes.ts. */

import assert from "node:assert/strict";
import { concat } from "../../src/proxy/bytes.ts";

Deno.test("concat() joins pieces in order and returns a lone piece as it is", () => {
  const a = new Uint8Array([1, 2]);
  const b = new Uint8Array([3]);
  assert.deepEqual(concat([a, b], 3), new Uint8Array([1, 2, 3]));
  assert.equal(concat([a], 2), a);
  assert.deepEqual(concat([], 0), new Uint8Array(0));
});
