import assert from "node:assert/strict";
import { maskAll, maskKey, shortHash } from "../src/mask.ts";

Deno.test("shortHash() is stable and 13 hex digits", () => {
  assert.equal(shortHash("abc"), shortHash("abc"));
  assert.match(shortHash("abc"), /^[0-9a-f]{13}$/);
  assert.notEqual(shortHash("key-1"), shortHash("key-2"));
});

Deno.test("maskKey() never throws and never shows a short key", () => {
  for (const key of ["", "a", "k1", "short-key", "0123456789a"]) {
    const m = maskKey(key);
    assert.match(m, /^\.\.\.~[0-9a-f]{4}$/);
    if (key.length > 4) assert.ok(!m.includes(key), `mask ${m} shows ${key}`);
  }
  assert.equal(maskKey("sk-abcdefghijklmnopqrstuvwxyz"), "sk-a...wxyz");
  assert.equal(maskKey("abcdefghijklmn"), "ab...mn");
});

Deno.test("maskAll() gives distinct masks to keys sharing a prefix and suffix", () => {
  const keys = ["sk-aaaa-1111-bbbb-zzzz", "sk-aaaa-2222-bbbb-zzzz", "sk-aaaa-3333-bbbb-zzzz"];
  const masks = maskAll(keys);
  assert.equal(new Set(masks.values()).size, 3);
  for (const [key, mask] of masks) {
    assert.ok(mask.startsWith("sk-a...zzzz~"));
    assert.ok(!mask.includes(key));
  }
});

Deno.test("maskAll() handles short and duplicate keys", () => {
  const masks = maskAll(["k1", "k2", "k1", "k3"]);
  assert.equal(masks.size, 3);
  assert.equal(new Set(masks.values()).size, 3);
  for (const [key, mask] of masks) assert.ok(!mask.includes(key));
});

Deno.test("maskAll() stays collision-free over many similar keys", () => {
  const keys = Array.from({ length: 2000 }, (_, i) => `sk-live-${String(i).padStart(6, "0")}-tail`);
  assert.equal(new Set(maskAll(keys).values()).size, 2000);
});
