import assert from "node:assert/strict";
import { SecretScanner } from "../src/secrets.ts";

Deno.test("SecretScanner.redact() masks every occurrence of every secret", () => {
  const s = new SecretScanner(
    new Map([["sk-live-aaaa1111", "sk-l...1111"], ["sk-live-bbbb2222", "sk-l...2222"]]),
  );
  assert.equal(
    s.redact("a sk-live-aaaa1111 b sk-live-bbbb2222sk-live-aaaa1111 c"),
    "a sk-l...1111 b sk-l...2222sk-l...1111 c",
  );
});

Deno.test("SecretScanner.redact() returns the same string when nothing matches", () => {
  const s = new SecretScanner(new Map([["secret-value-1", "m1"]]));
  const text = "nothing to see here, secret-value-2 is not known";
  assert.equal(s.redact(text), text);
  assert.equal(s.redact(""), "");
});

Deno.test("SecretScanner.redact() prefers the longest secret sharing a start", () => {
  const s = new SecretScanner(new Map([["abcdefgh", "SHORT"], ["abcdefghijkl", "LONG"]]));
  assert.equal(s.redact("x abcdefghijkl y abcdefgh z"), "x LONG y SHORT z");
});

Deno.test("SecretScanner.redact() handles short secrets and text shorter than them", () => {
  const s = new SecretScanner(new Map([["k1", "#1"], ["key-number-two", "#2"]]));
  assert.equal(s.redact("k1 and key-number-two"), "#1 and #2");
  assert.equal(s.redact("k"), "k");
});

Deno.test("SecretScanner.redact() stays linear with 10,000 secrets", () => {
  const masks = new Map<string, string>();
  for (let i = 0; i < 10_000; i++) masks.set(`sk-${i.toString(36).padStart(8, "0")}-x`, `m${i}`);
  const s = new SecretScanner(masks);
  const text = "lorem ipsum ".repeat(20_000) + "sk-0000007p-x";
  const t0 = performance.now();
  const out = s.redact(text);
  const ms = performance.now() - t0;
  assert.ok(out.endsWith("m277"), out.slice(-20));
  assert.ok(ms < 1000, `took ${ms} ms`);
});

Deno.test("SecretScanner.redact() agrees with a plain search on random texts", () => {
  let seed = 7;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const alphabet = 'abcdefghij-_ \n"{}:é🙂';
  const pick = (n: number) =>
    Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join("");
  const secrets = Array.from({ length: 50 }, (_, i) => `s${i}-${pick(6 + (i % 5))}`);
  const masks = new Map(secrets.map((s, i) => [s, `<${i}>`]));
  const scanner = new SecretScanner(masks);
  const naive = (t: string) => {
    let out = "";
    for (let i = 0; i < t.length;) {
      const hit = [...masks.keys()].filter((k) => t.startsWith(k, i))
        .sort((a, b) => b.length - a.length)[0];
      if (hit === undefined) out += t[i++];
      else {
        out += masks.get(hit);
        i += hit.length;
      }
    }
    return out;
  };
  for (let round = 0; round < 200; round++) {
    let text = "";
    for (let part = 0; part < 6; part++) {
      text += pick(Math.floor(rand() * 20));
      if (rand() < 0.5) text += secrets[Math.floor(rand() * secrets.length)];
    }
    assert.equal(scanner.redact(text), naive(text), JSON.stringify(text));
  }
});
