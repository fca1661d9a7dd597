import assert from "node:assert/strict";
import { decode, DEFAULT_FRAGMENT, SecretScanner } from "../src/secrets.ts";

const KEY = "sk-live-0123456789abcdefghijKLMNOP/+=xyz";
const MASK = "sk-l...=xyz";

function scanner(extra: [string, string][] = []): SecretScanner {
  return new SecretScanner(new Map([[KEY, MASK], ...extra]));
}

/** Every UTF-16 unit of `s` JSON-escaped as `\uXXXX`. */
const unicode = (s: string) =>
  Array.from({ length: s.length }, (_, i) => `\\u${s.charCodeAt(i).toString(16).padStart(4, "0")}`)
    .join("");
/** Every character of `s` as `%XX`. */
const percent = (s: string) =>
  [...s].map((c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`).join("");

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
  const text = "nothing to see here, secret-2 is not known, nor 50%, nor \\n";
  assert.equal(s.redact(text), text);
  assert.equal(s.redact(""), "");
  assert.equal(new SecretScanner(new Map()).redact(text), text);
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

Deno.test("SecretScanner.redact() masks any 12 characters of a secret in a row, not 11", () => {
  assert.equal(DEFAULT_FRAGMENT, 12);
  const s = scanner();
  // all but the last few characters, as providers quote a key
  assert.equal(s.redact(`key ${KEY.slice(0, -3)}... refused`), `key ${MASK}... refused`);
  // a middle part, glued to other text on both sides
  assert.equal(s.redact(`x${KEY.slice(7, 19)}y`), `x${MASK}y`);
  assert.equal(s.redact(`x${KEY.slice(7, 18)}y`), `x${KEY.slice(7, 18)}y`);
  // the key's end
  assert.equal(s.redact(`ends ${KEY.slice(-12)}`), `ends ${MASK}`);
});

Deno.test("SecretScanner.redact() masks a secret of 12 characters or fewer only whole", () => {
  const s = new SecretScanner(new Map([["short-key-12", "#s"], ["tiny-key", "#t"]]));
  assert.equal(s.redact("short-key-12 tiny-key"), "#s #t");
  assert.equal(s.redact("short-key-1 tiny-ke"), "short-key-1 tiny-ke");
});

Deno.test("SecretScanner.redact() masks a secret however JSON escapes it", () => {
  const s = scanner();
  const slashes = KEY.replaceAll("/", "\\/");
  assert.equal(s.redact(`{"message":"bad key ${slashes}"}`), `{"message":"bad key ${MASK}"}`);
  assert.equal(s.redact(`"${unicode(KEY)}"`), `"${MASK}"`);
  // each character its own way, upper and lower case hex
  const mixed = [...KEY].map((c, i) =>
    i % 3 === 0 ? unicode(c) : i % 3 === 1 ? unicode(c).toUpperCase().replace("\\U", "\\u") : c
  ).join("");
  assert.equal(s.redact(`<${mixed}>`), `<${MASK}>`);
  // escaped twice (a JSON body inside a JSON string)
  assert.equal(s.redact(`[${KEY.replaceAll("/", "\\\\\\/")}]`), `[${MASK}]`);
  assert.equal(s.redact(`[${unicode(KEY).replaceAll("\\", "\\\\")}]`), `[${MASK}]`);
  // a fragment, escaped
  assert.equal(s.redact(`x${unicode(KEY.slice(20, 33))}y`), `x${MASK}y`);
});

Deno.test("SecretScanner.redact() masks a secret however a URL encodes it", () => {
  const s = scanner();
  assert.equal(s.redact(`/v1/x?key=${encodeURIComponent(KEY)}&a=1`), `/v1/x?key=${MASK}&a=1`);
  assert.equal(s.redact(`?k=${percent(KEY)}`), `?k=${MASK}`);
  assert.equal(s.redact(`?k=${percent(KEY).toLowerCase()}`), `?k=${MASK}`);
  // encoded twice: %2F became %252F
  assert.equal(s.redact(`?k=${encodeURIComponent(encodeURIComponent(KEY))}`), `?k=${MASK}`);
});

Deno.test("SecretScanner.redact() leaves every character outside a match as it was", () => {
  const s = scanner();
  const before = 'a\\"b\\u00e9 50% \\/ %41 ';
  const after = " \\\\ %zz \\u12";
  assert.equal(s.redact(before + unicode(KEY) + after), before + MASK + after);
  assert.equal(s.redact(before + after), before + after);
});

Deno.test("SecretScanner.redact() finds secrets holding quotes, backslashes or percent signs", () => {
  const odd = 'key"with\\odd/chars+&=%41';
  const s = new SecretScanner(new Map([[odd, "#odd"]]));
  assert.equal(s.redact(`raw ${odd}`), "raw #odd");
  assert.equal(s.redact(`json ${JSON.stringify(odd)}`), 'json "#odd"');
  assert.equal(s.redact(`url ${encodeURIComponent(odd)}`), "url #odd");
  assert.equal(s.redact(`raw ${odd} and 100%`), "raw #odd and 100%");
});

Deno.test("SecretScanner.redact() finds a secret beyond ASCII raw, JSON-escaped and URL-encoded", () => {
  const key = "clé-secrète-🙂-0123456789";
  const s = new SecretScanner(new Map([[key, "#k"]]));
  assert.equal(s.redact(`a ${key} b`), "a #k b");
  assert.equal(s.redact(`a ${unicode(key)} b`), "a #k b");
  assert.equal(s.redact(`?k=${encodeURIComponent(key)}&x=%41`), "?k=#k&x=%41");
});

Deno.test("SecretScanner.redact() stays linear with 10,000 secrets", () => {
  const masks = new Map<string, string>();
  for (let i = 0; i < 10_000; i++) masks.set(`sk-${i.toString(36).padStart(8, "0")}-x`, `m${i}`);
  const t0 = performance.now();
  const s = new SecretScanner(masks);
  const built = performance.now() - t0;
  const text = "lorem ipsum ".repeat(20_000) + "sk-0000007p-x";
  const t1 = performance.now();
  const out = s.redact(text);
  const ms = performance.now() - t1;
  assert.ok(out.endsWith("m277"), out.slice(-20));
  assert.ok(ms < 1000, `took ${ms} ms`);
  assert.ok(built < 2000, `building took ${built} ms`);
});

Deno.test("SecretScanner.redact() leaves no 12 characters of a secret on random texts", () => {
  let seed = 7;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const alphabet = 'abcdefghij-_ \n"{}:é🙂\\/%';
  const pick = (n: number) =>
    Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join("");
  const keyChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/+=";
  const secrets = Array.from(
    { length: 40 },
    (_, i) =>
      `s${i}-` +
      Array.from({ length: 4 + (i % 30) }, () => keyChars[Math.floor(rand() * keyChars.length)])
        .join(""),
  );
  const s = new SecretScanner(new Map(secrets.map((k, i) => [k, `<${i}>`])));
  const encodings = [
    (t: string) => t,
    (t: string) => t.replaceAll("/", "\\/"),
    unicode,
    encodeURIComponent,
    percent,
  ];
  /** What a reader could still learn: a whole short secret, or 12 characters of a long one. */
  const leaks = (text: string) => {
    const plain = decode(text)?.text ?? text;
    const found: string[] = [];
    for (const k of secrets) {
      if (k.length <= DEFAULT_FRAGMENT) {
        if (plain.includes(k)) found.push(k);
        continue;
      }
      for (let i = 0; i + DEFAULT_FRAGMENT <= k.length; i++) {
        if (plain.includes(k.slice(i, i + DEFAULT_FRAGMENT))) {
          found.push(k);
          break;
        }
      }
    }
    return found;
  };
  let leaky = 0;
  for (let round = 0; round < 300; round++) {
    let text = "";
    let clean = "";
    for (let part = 0; part < 6; part++) {
      const filler = pick(Math.floor(rand() * 20));
      text += filler;
      clean += filler;
      if (rand() < 0.5) {
        const k = secrets[Math.floor(rand() * secrets.length)]!;
        // whole, or a part of at least 12 characters when the secret is longer
        const from = k.length > DEFAULT_FRAGMENT
          ? Math.floor(rand() * (k.length - DEFAULT_FRAGMENT + 1))
          : 0;
        const to = k.length > DEFAULT_FRAGMENT
          ? from + DEFAULT_FRAGMENT + Math.floor(rand() * (k.length - from - DEFAULT_FRAGMENT + 1))
          : k.length;
        text += encodings[Math.floor(rand() * encodings.length)]!(k.slice(from, to));
      }
    }
    if (leaks(text).length > 0) leaky++;
    assert.deepEqual(leaks(s.redact(text)), [], JSON.stringify(text));
    if (leaks(clean).length === 0) assert.equal(s.redact(clean), clean, JSON.stringify(clean));
  }
  // the texts did hold secrets to find
  assert.ok(leaky > 200, `${leaky} of 300`);
});

Deno.test("decode() reads JSON escapes and URL encoding, and says where each character began", () => {
  const d = decode("a\\/b\\u0041%43\\\\/%2544%e9z")!;
  assert.equal(d.text, "a/bAC/D%e9z");
  // a, \/, b, \u0041, %43, \\/, %2544, %, e, 9, z
  assert.deepEqual(
    Array.from({ length: d.text.length + 1 }, (_, i) => d.at(i)),
    [0, 1, 3, 4, 10, 13, 16, 21, 22, 23, 24, 25],
  );
  assert.equal(decode("nothing \\n to 100% decode"), undefined);
});
