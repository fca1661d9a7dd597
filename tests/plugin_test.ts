import assert from "node:assert/strict";
import { Secret } from "../src/plugin.ts";

Deno.test("Secret prints, serializes and inspects as its mask", () => {
  const s = new Secret("sk-very-secret-value-123456", "sk-v...3456");
  assert.equal(String(s), "sk-v...3456");
  assert.equal(JSON.stringify({ s }), '{"s":"sk-v...3456"}');
  assert.ok(!Deno.inspect(s).includes("secret-value"));
  assert.ok(!`${s}`.includes("secret-value"));
  assert.equal(s.reveal(), "sk-very-secret-value-123456");
});
