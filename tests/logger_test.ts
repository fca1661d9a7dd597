import assert from "node:assert/strict";
import { Logger, resolveFormat } from "../src/logger.ts";

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function logger(options: ConstructorParameters<typeof Logger>[0] = {}) {
  const lines: string[] = [];
  const log = new Logger({ now: () => T0, sink: (l) => lines.push(l), ...options });
  return { log, lines };
}

Deno.test("Logger writes one JSON object per line with time, level, msg and fields", () => {
  const { log, lines } = logger();
  log.info("request", { status: 200, path: "/v1/x", skipped: undefined, nested: { a: [1] } });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes("\n"));
  assert.deepEqual(JSON.parse(lines[0]!), {
    time: "2025-01-02T03:04:05.678Z",
    level: "info",
    msg: "request",
    status: 200,
    path: "/v1/x",
    nested: { a: [1] },
  });
});

Deno.test("Logger drops lines below its level, and setLevel() changes it", () => {
  const { log, lines } = logger({ level: "warn" });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  assert.deepEqual(lines.map((l) => JSON.parse(l).level), ["warn", "error"]);
  assert.equal(log.enabled("info"), false);
  log.setLevel("debug");
  assert.equal(log.enabled("debug"), true);
  log.debug("d2");
  assert.equal(JSON.parse(lines.at(-1)!).msg, "d2");
});

Deno.test("Logger defaults to info", () => {
  const { log, lines } = logger();
  log.debug("hidden");
  log.info("shown");
  assert.equal(lines.length, 1);
});

Deno.test("Logger writes Error values as their message", () => {
  const { log, lines } = logger();
  log.error("failed", { error: new Error("boom") });
  assert.equal(JSON.parse(lines[0]!).error, "boom");
});

Deno.test("Logger pretty format is one human-readable line", () => {
  const { log, lines } = logger({ format: "pretty" });
  log.warn("key resting", { key: "sk-a...wxyz", until: undefined, n: 3, o: { a: 1 } });
  assert.equal(
    lines[0],
    '2025-01-02T03:04:05.678Z WARN  key resting key=sk-a...wxyz n=3 o={"a":1}',
  );
});

Deno.test("Logger pretty format quotes values with spaces and never breaks the line", () => {
  const { log, lines } = logger({ format: "pretty" });
  log.error("failed\nbadly", { error: "upstream connection broke", stack: "a\n  at b", empty: "" });
  assert.equal(
    lines[0],
    '2025-01-02T03:04:05.678Z ERROR failed badly error="upstream connection broke" ' +
      'stack="a\\n  at b" empty=""',
  );
});

Deno.test("Logger scrubs every known secret from every line", () => {
  const { log, lines } = logger();
  const secret = "sk-live-0123456789abcdefghij";
  log.setSecrets(new Map([[secret, "sk-l...ghij"]]));
  log.info(`got ${secret}`, { header: `Bearer ${secret}`, list: [secret] });
  assert.ok(!lines[0]!.includes(secret));
  assert.equal(JSON.parse(lines[0]!).msg, "got sk-l...ghij");
  assert.equal(log.redact(`x${secret}y`), "xsk-l...ghijy");
});

Deno.test("Logger scrubs secrets in their JSON-escaped and URL-encoded forms", () => {
  const { log, lines } = logger();
  const odd = 'key"with\\odd/chars+&=';
  log.setSecrets(new Map([[odd, "..#odd"]]));
  log.info("odd", { value: odd, url: `https://x.example/?key=${encodeURIComponent(odd)}` });
  const line = lines[0]!;
  assert.ok(!line.includes(JSON.stringify(odd).slice(1, -1)), line);
  assert.ok(!line.includes(encodeURIComponent(odd)), line);
  const parsed = JSON.parse(line);
  assert.equal(parsed.value, "..#odd");
  assert.equal(parsed.url, "https://x.example/?key=..#odd");
});

Deno.test("Logger scrubs a key an upstream echoed escaped, encoded, or all but its end", () => {
  const { log, lines } = logger();
  const key = "sk-proj/0123456789abcdefghijKLMN";
  log.setSecrets(new Map([[key, "sk-p...KLMN"]]));
  // an upstream's JSON body (with `\/` and `\u` escapes) quoted in a field, so escaped twice
  const body = JSON.stringify({ error: { message: `bad key ${key}` } })
    .replace("/", "\\/").replace("0123", "\\u0030123");
  log.warn("upstream said", {
    body,
    url: `https://x.example/?key=${encodeURIComponent(key)}`,
    partial: `Incorrect API key provided: ${key.slice(0, -4)}****`,
  });
  const line = lines[0]!;
  for (let i = 0; i + 12 <= key.length; i++) {
    assert.ok(!line.includes(key.slice(i, i + 12)), `${key.slice(i, i + 12)} in ${line}`);
  }
  assert.ok(!line.includes("0123456789ab"), line);
  const parsed = JSON.parse(line);
  assert.equal(parsed.url, "https://x.example/?key=sk-p...KLMN");
  assert.equal(parsed.partial, "Incorrect API key provided: sk-p...KLMN****");
  assert.match(parsed.body, /bad key sk-p\.\.\.KLMN/);
  // the same for a value redacted on its own
  assert.equal(log.redact(`k=${key.slice(3, 20)}`), "k=sk-p...KLMN");
});

Deno.test("Logger leaves keys shorter than 6 characters alone", () => {
  const { log } = logger();
  log.setSecrets(new Map([["k1", "#1"], ["abcde", "#2"]]));
  assert.equal(log.redact("k1 abcde"), "k1 abcde");
});

Deno.test("Logger.setSecrets() replaces the longest secret first and can be cleared", () => {
  const { log } = logger();
  log.setSecrets(new Map([["sk-abc", "M1"], ["sk-abcdef", "M2"]]));
  assert.equal(log.redact("sk-abcdef sk-abc"), "M2 M1");
  log.setSecrets(new Map());
  assert.equal(log.redact("sk-abcdef"), "sk-abcdef");
});

Deno.test("resolveFormat() keeps explicit formats and picks by terminal for auto", () => {
  assert.equal(resolveFormat("json"), "json");
  assert.equal(resolveFormat("pretty"), "pretty");
  assert.equal(resolveFormat("auto"), Deno.stderr.isTerminal() ? "pretty" : "json");
});

Deno.test("Logger writes a record as one JSON line in its order, and as key=value (pretty)", () => {
  const json = logger();
  const record = {
    time: json.log.timeText(),
    level: "info" as const,
    msg: "request",
    request_id: "r-1",
    path: "/v1/x y",
    model: undefined,
    status: 200,
    duration_ms: NaN,
  };
  json.log.scrubbedRecord(record);
  json.log.scrubbedRecord({ time: json.log.timeText(), level: "debug", msg: "below the level" });
  assert.equal(json.lines.length, 1);
  // members without a value are left out, numbers JSON cannot hold are null
  assert.equal(
    json.lines[0],
    '{"time":"2025-01-02T03:04:05.678Z","level":"info","msg":"request","request_id":"r-1",' +
      '"path":"/v1/x y","status":200,"duration_ms":null}',
  );
  const pretty = logger({ format: "pretty" });
  pretty.log.scrubbedRecord({ ...record, duration_ms: 1.5 });
  assert.equal(
    pretty.lines[0],
    '2025-01-02T03:04:05.678Z INFO  request request_id=r-1 path="/v1/x y" status=200 duration_ms=1.5',
  );
});
