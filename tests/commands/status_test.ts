/**
 * @module
 * Tests of `status`: the exit codes, the reason on stderr when it cannot read the state, the
 * admin key from the environment or the config, colors only on a terminal, `--json`, a bad
 * `--url` or `--interval`, and `--watch` driven by a hand-moved clock and an abort signal.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../../src/config/mod.ts";
import { status, type StatusIo } from "../../src/commands/status.ts";
import { ManualClock } from "../helpers/clock.ts";

import { ADMIN, answering, fixture, json, NOW, UPSTREAMS } from "../helpers/status_fixture.ts";

/** Injected io capturing stdout and stderr. */
function capture(extra: Partial<StatusIo> = {}) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: StatusIo = {
    env: () => undefined,
    write: (t) => void stdout.push(t),
    say: (t) => void stderr.push(t),
    isTerminal: false,
    now: () => NOW,
    ...extra,
  };
  return { io, stdout, stderr, out: () => stdout.join(""), err: () => stderr.join("\n") };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

Deno.test("status() exits 0 when every pool can serve, 1 when one cannot", async () => {
  const good = { ...fixture(), ok: true };
  const a = capture({ fetch: answering(() => json(good)) });
  assert.equal(await status({ url: "http://127.0.0.1:9" }, a.io), 0);
  assert.match(a.out(), /^OK {2}http:\/\/127\.0\.0\.1:9 /);
  assert.equal(a.err(), "");
  const b = capture({ fetch: answering(() => json(fixture())) });
  assert.equal(await status({ url: "http://127.0.0.1:9" }, b.io), 1);
  assert.match(b.out(), /^NOT OK/);
  assert.equal(b.err(), "llm-balance: 1 of 3 pool(s) cannot serve");
});

Deno.test("status() exits 1 with the reason on stderr when it cannot tell", async () => {
  const cases: [typeof fetch, RegExp][] = [
    [answering(() => json({}, 401)), /an admin key is needed \(401\)/],
    [() => Promise.reject(new TypeError("connection refused")), /cannot reach it/],
    [answering(() => new Response("{bad")), /not JSON/],
  ];
  for (const [fetch, want] of cases) {
    const c = capture({ fetch });
    assert.equal(await status({ url: "http://127.0.0.1:9" }, c.io), 1);
    assert.equal(c.out(), "");
    assert.match(c.err(), want);
  }
});

Deno.test("status() takes the admin key from LLM_BALANCE_ADMIN_KEY, else the config", async () => {
  const config = parseConfigText(
    `auth: { admin_key: ${ADMIN} }\nserver: { port: 9099 }\n${UPSTREAMS}`,
    "c.yaml",
    { env: () => undefined },
  );
  const seen: Request[] = [];
  const a = capture({ fetch: answering(() => json(fixture()), seen) });
  await status({ config }, a.io);
  assert.equal(seen[0]!.url, "http://127.0.0.1:9099/dashboard/data");
  assert.equal(seen[0]!.headers.get("authorization"), `Bearer ${ADMIN}`);
  const b = capture({
    fetch: answering(() => json(fixture()), seen),
    env: (n) => n === "LLM_BALANCE_ADMIN_KEY" ? "from-env" : undefined,
  });
  await status({ config }, b.io);
  assert.equal(seen[1]!.headers.get("authorization"), "Bearer from-env");
  assert.ok(!a.out().includes(ADMIN) && !a.err().includes(ADMIN));
});

Deno.test("status() sends the config's key only to the config's own address", async () => {
  const config = parseConfigText(
    `auth: { admin_key: ${ADMIN} }\nserver: { port: 9099 }\n${UPSTREAMS}`,
    "c.yaml",
    { env: () => undefined },
  );
  const seen: Request[] = [];
  const c = capture({ fetch: answering(() => json(fixture()), seen) });
  await status({ config, url: "http://127.0.0.1:9099/" }, c.io);
  assert.equal(seen[0]!.headers.get("authorization"), `Bearer ${ADMIN}`);
  // another instance: the local config's admin key stays here
  await status({ config, url: "http://10.0.0.5:8080" }, c.io);
  assert.equal(seen[1]!.headers.get("authorization"), null);
  // a config with client keys only: its first client key reads
  const clients = parseConfigText(
    `auth: { client_keys: [cl-status-client-key-0001] }\nserver: { port: 9099 }\n${UPSTREAMS}`,
    "c.yaml",
    { env: () => undefined },
  );
  await status({ config: clients }, c.io);
  assert.equal(seen[2]!.headers.get("authorization"), "Bearer cl-status-client-key-0001");
});

Deno.test("status() colors only on a terminal without NO_COLOR", async () => {
  const run = async (isTerminal: boolean, noColor?: string) => {
    const c = capture({
      fetch: answering(() => json(fixture())),
      isTerminal,
      columns: 100,
      env: (n) => n === "NO_COLOR" ? noColor : undefined,
    });
    await status({ url: "http://x" }, c.io);
    return c.out();
  };
  assert.doesNotMatch(await run(false), ANSI);
  assert.match(await run(true), ANSI);
  assert.doesNotMatch(await run(true, "1"), ANSI);
  assert.match(await run(true, ""), ANSI, "an empty NO_COLOR does not count");
});

Deno.test("status() --json prints the data as received", async () => {
  const data = { ...fixture(), extra_field: { kept: true } };
  const c = capture({ fetch: answering(() => json(data)) });
  assert.equal(await status({ url: "http://x", json: true }, c.io), 1);
  assert.equal(c.out(), JSON.stringify(data, null, 2) + "\n");
  const ok = capture({ fetch: answering(() => json({ ...data, ok: true })) });
  assert.equal(await status({ url: "http://x", json: true }, ok.io), 0);
});

Deno.test("status() refuses a bad --url or --interval with exit 2", async () => {
  const c = capture({ fetch: answering(() => json(fixture())) });
  assert.equal(await status({ url: "127.0.0.1:8080" }, c.io), 2);
  assert.match(c.err(), /--url must be an http:\/\/ or https:\/\/ URL, got "127\.0\.0\.1:8080"/);
  assert.equal(await status({ url: "http://x", watch: true, intervalS: 0 }, c.io), 2);
  assert.match(c.err(), /--interval must be a number of seconds above 0, got "0"/);
});

/** A watch run: the clock moves by the sleep asked for; the signal aborts after `frames`. */
function watchRun(answers: (() => Response)[], extra: Partial<StatusIo> = {}) {
  const clock = new ManualClock(NOW);
  const stop = new AbortController();
  const sleeps: number[] = [];
  let i = 0;
  const fetch: typeof globalThis.fetch = () => {
    const make = answers[Math.min(i, answers.length - 1)]!;
    i++;
    clock.advance(150); // the answer takes 150 ms
    return Promise.resolve(make());
  };
  const c = capture({
    fetch,
    now: clock.now,
    signal: stop.signal,
    sleep: (ms) => {
      if (i >= answers.length) stop.abort();
      else sleeps.push(ms);
      clock.advance(ms);
      return Promise.resolve();
    },
    ...extra,
  });
  return { ...c, sleeps, fetched: () => i };
}

Deno.test("status() --watch redraws every interval until stopped; the last frame decides", async () => {
  const w = watchRun([
    () => json(fixture()),
    () => json({}, 401),
    () => json({ ...fixture(), ok: true }),
  ]);
  assert.equal(await status({ url: "http://x", watch: true, intervalS: 5 }, w.io), 0);
  assert.equal(w.fetched(), 3);
  assert.deepEqual(w.sleeps, [4850, 4850], "the interval counts from each frame's start");
  const out = w.out();
  assert.equal(out.match(/^--- /gm)?.length, 2, "a separator between frames");
  assert.match(out, /^--- 2025-10-09T08:53:25\.150Z$/m);
  assert.equal(out.match(/^NOT OK/gm)?.length, 1);
  assert.equal(out.match(/^OK/gm)?.length, 1);
  assert.match(w.err(), /an admin key is needed \(401\)/);
  assert.doesNotMatch(w.err(), /pool\(s\) cannot serve/, "no verdict on stderr per frame");
  assert.doesNotMatch(out, ANSI);
});

Deno.test("status() --watch clears the screen on a terminal and exits 1 when the last frame fails", async () => {
  const w = watchRun([() => json({ ...fixture(), ok: true }), () => json({}, 500)], {
    isTerminal: true,
    columns: 100,
    env: (n) => n === "NO_COLOR" ? "1" : undefined,
  });
  assert.equal(await status({ url: "http://x", watch: true }, w.io), 1);
  assert.deepEqual(w.sleeps, [1850], "every 2 s by default");
  assert.equal(w.out().split("\x1b[H\x1b[2J\x1b[3J").length - 1, 2);
  assert.match(w.out(), /every 2 s; Ctrl-C to stop/);
  assert.doesNotMatch(w.out(), /^--- /m);
  assert.match(w.err(), /HTTP 500/);
});

Deno.test("status() --watch --json prints one line of JSON per frame", async () => {
  const w = watchRun([() => json({ ...fixture(), ok: true }), () => json(fixture())]);
  assert.equal(await status({ url: "http://x", watch: true, json: true }, w.io), 1);
  const lines = w.out().trimEnd().split("\n");
  assert.equal(lines.length, 2);
  assert.deepEqual(lines.map((l) => JSON.parse(l).ok), [true, false]);
});

Deno.test("status() --watch stopped during a read keeps the last finished frame's code", async () => {
  const stop = new AbortController();
  let calls = 0;
  const fetch: typeof globalThis.fetch = (_input, init) => {
    calls++;
    if (calls === 1) return Promise.resolve(json({ ...fixture(), ok: true }));
    return new Promise((_, reject) => {
      init?.signal?.addEventListener("abort", () => reject(new DOMException("", "AbortError")));
      queueMicrotask(() => stop.abort());
    });
  };
  const c = capture({ fetch, signal: stop.signal, sleep: () => Promise.resolve() });
  assert.equal(await status({ url: "http://x", watch: true }, c.io), 0);
  assert.equal(calls, 2);
  assert.equal(c.err(), "", "a stop is not an error");
});
