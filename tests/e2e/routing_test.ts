/**
 * @module
 * End-to-end routing through llm-balance with a real upstream that tells keys apart by their
 * Authorization header: affinity by `prompt_cache_key` (bounded spread over the keys, the same
 * key for the same value, `new`/`hit` in the log and `/metrics`), a resting pinned key moving its
 * values for good, affinity by a session header and by the prompt's prefix, requests without an
 * affinity value left to the strategy, `p2c` steering away from a slow key and back, slow start
 * after a rest, a reload adding a key (about a fifth of the pins move), and config mistakes
 * refused by `check` and `serve`.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { seededRandom } from "../helpers/candidates.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";
import { runCli, startServe, tempConfig } from "../helpers/cli.ts";
import { type ScriptedUpstream, startScriptedUpstream, waitFor } from "../helpers/e2e.ts";

/** Five keys of one upstream; the tests use the first four unless they add the fifth. */
const KEYS = [1, 2, 3, 4, 5].map((i) => `sk-route-key-00000000000${i}`);
const MODEL = "gpt-4o";

/** What the upstream saw of one request. */
interface Seen {
  key: string;
  /** The body's `prompt_cache_key`. */
  value: string | undefined;
  status: number;
}

/** An upstream that records which key served what, and answers per key. */
interface KeyedUpstream extends AsyncDisposable {
  readonly baseUrl: string;
  readonly seen: Seen[];
  /** The answers with status 200, by key. */
  served(key: string): number;
  close(): Promise<void>;
}

/**
 * Starts an upstream answering chat completions; `answer` may override one answer (a 429) or
 * delay it.
 * @param answer per request: a response to send instead, a delay in ms, or nothing
 */
function keyedUpstream(
  answer: (key: string) => Response | number | undefined = () => undefined,
): KeyedUpstream {
  const seen: Seen[] = [];
  const up: ScriptedUpstream = startScriptedUpstream(async (req) => {
    const key = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "");
    const body = JSON.parse(new TextDecoder().decode(req.body)) as Record<string, unknown>;
    const value = typeof body.prompt_cache_key === "string" ? body.prompt_cache_key : undefined;
    const entry: Seen = { key, value, status: 0 };
    seen.push(entry);
    const a = answer(key);
    if (typeof a === "number") await new Promise((r) => setTimeout(r, a));
    if (a instanceof Response) {
      entry.status = a.status;
      return a;
    }
    entry.status = 200;
    return Response.json({
      id: `chatcmpl-${seen.length}`,
      object: "chat.completion",
      created: 1_700_000_000,
      model: body.model,
      choices: [{
        index: 0,
        message: { role: "assistant", content: "ok" },
        finish_reason: "stop",
      }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
  });
  return {
    baseUrl: up.baseUrl,
    seen,
    served: (key) => seen.filter((s) => s.key === key && s.status === 200).length,
    close: () => up.close(),
    [Symbol.asyncDispose]: () => up.close(),
  };
}

/** A 429 with `retry-after`. */
function rateLimited(seconds: number): Response {
  return Response.json(
    { error: { message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" } },
    { status: 429, headers: { "retry-after": String(seconds) } },
  );
}

/** Config text: one upstream with `keys`, and a default pool. */
function config(url: string, keys: readonly string[], pool: string, extra = ""): string {
  return `${extra}
upstreams:
  m: { base_url: "${url}", keys: [${keys.join(", ")}] }
pools:
  default:
    upstreams: [m]
${pool.trim().split("\n").map((l) => `    ${l}`).join("\n")}
`;
}

function client(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "client-key", maxRetries: 0, timeout: 10_000 });
}

/** The 40 affinity values of the distribution tests. */
const VALUES = Array.from({ length: 40 }, (_, i) => `conversation-${i}`);

/**
 * Sends one chat per value through the SDK, in order, and returns the key that served each.
 * @param sdk the client
 * @param up the upstream
 * @param values the prompt cache keys
 */
async function sendValues(
  sdk: OpenAI,
  up: KeyedUpstream,
  values: readonly string[],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const value of values) {
    const before = up.seen.length;
    await sdk.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: `hello from ${value}` }],
      prompt_cache_key: value,
    });
    const ok = up.seen.slice(before).filter((s) => s.status === 200);
    assert.equal(ok.length, 1, `${value}: one answer`);
    out.set(value, ok[0]!.key);
  }
  return out;
}

/** The `affinity` field of the chat requests' log lines, in order. */
function affinityLog(proxy: TestProxy): unknown[] {
  return proxy.logRecords()
    .filter((r) => r.msg === "request" && r.path === "/v1/chat/completions")
    .map((r) => r.affinity);
}

async function waitForLines(proxy: TestProxy, n: number): Promise<unknown[]> {
  await waitFor(() => affinityLog(proxy).length >= n, `${n} request log lines`);
  return affinityLog(proxy);
}

/** Counts per key of a value → key map. */
function perKey(owners: ReadonlyMap<string, string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const key of owners.values()) out.set(key, (out.get(key) ?? 0) + 1);
  return out;
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200, url);
  return await res.json();
}

async function adminPost(url: string, path: string): Promise<void> {
  const res = await fetch(`${url}/admin/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200, path);
  await res.body?.cancel();
}

/** The default pool in `/v1/stats/load_balancers`. */
async function defaultPool(url: string): Promise<{
  affinity: unknown;
  slow_start_seconds: number;
  servers: { key: string; pins?: number }[];
}> {
  const body = await getJson(`${url}/v1/stats/load_balancers`);
  const pools = body.load_balancers as Record<string, unknown>;
  return pools.default as Awaited<ReturnType<typeof defaultPool>>;
}

/** How llm-balance shows one of {@linkcode KEYS} (in /stats, logs, admin URLs). */
function maskOf(key: string): string {
  return `${key.slice(0, 4)}...${key.slice(-4)}`;
}

/** Sends a chat with extra headers through fetch, returns the key that served it. */
async function sendRaw(
  url: string,
  up: KeyedUpstream,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<string> {
  const before = up.seen.length;
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: MODEL, ...body }),
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200, await res.clone().text());
  await res.body?.cancel();
  const ok = up.seen.slice(before).filter((s) => s.status === 200);
  assert.equal(ok.length, 1);
  return ok[0]!.key;
}

/**
 * Sends `n` chats without an affinity value, `concurrency` at a time.
 * @returns the keys that served them, in order of arrival upstream
 */
async function burst(
  sdk: OpenAI,
  up: KeyedUpstream,
  n: number,
  concurrency: number,
): Promise<string[]> {
  const before = up.seen.length;
  let started = 0;
  const worker = async () => {
    while (started < n) {
      started++;
      await sdk.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return up.seen.slice(before).map((s) => s.key);
}

function share(keys: readonly string[], key: string): number {
  return keys.filter((k) => k === key).length / keys.length;
}

Deno.test("affinity by prompt_cache_key spreads 40 values over 4 keys within max_load and keeps each on its key", async () => {
  await using up = keyedUpstream();
  await using proxy = await startProxy(config(
    up.baseUrl,
    KEYS.slice(0, 4),
    `strategy: round_robin
affinity: { by: [prompt_cache_key], max_load: 1.25 }`,
  ));
  const sdk = client(proxy.url);
  const owners = await sendValues(sdk, up, VALUES);
  assert.deepEqual(up.seen.map((s) => s.value), VALUES, "prompt_cache_key reaches the upstream");
  const counts = perKey(owners);
  assert.equal(counts.size, 4, `every key holds values: ${[...counts]}`);
  // the router's promise: at most max(floor(1.25·T/n), ceil(T/n)) pins per key
  const bound = Math.max(Math.floor(1.25 * 40 / 4), Math.ceil(40 / 4));
  for (const [key, n] of counts) assert.ok(n <= bound, `${key} holds ${n} > ${bound} values`);
  for (let round = 0; round < 3; round++) {
    const again = await sendValues(sdk, up, VALUES);
    for (const v of VALUES) assert.equal(again.get(v), owners.get(v), `${v}, round ${round}`);
  }
  const log = await waitForLines(proxy, 160);
  assert.deepEqual(log.slice(0, 40), Array(40).fill("new"));
  assert.deepEqual(log.slice(40), Array(120).fill("hit"));
  const metrics = parsePrometheus(await (await fetch(`${proxy.url}/metrics`)).text());
  const routed = (result: string) =>
    metrics.sum("llm_balance_affinity_requests_total", { pool: "default", result });
  assert.equal(routed("hit"), 120);
  assert.equal(routed("new"), 40);
  assert.equal(routed("moved") + routed("detour"), 0);
  assert.equal(metrics.sum("llm_balance_affinity_pins", { pool: "default" }), 40);
  const stats = await getJson(`${proxy.url}/stats`) as Record<string, { pins: number }>;
  const pins = Object.values(stats).map((s) => s.pins).sort((a, b) => a - b);
  assert.deepEqual(pins, [...counts.values()].sort((a, b) => a - b));
  for (const [key, n] of counts) {
    assert.equal(metrics.sum("llm_balance_key_pins", { key: maskOf(key) }), n, key);
  }
  const pool = await defaultPool(proxy.url);
  assert.deepEqual(pool.affinity, {
    by: ["prompt_cache_key"],
    ttl_seconds: 600,
    max_load: 1.25,
    pins: 40,
    requests: { hit: 120, new: 40, moved: 0, detour: 0 },
  });
  assert.deepEqual(pool.servers.map((v) => v.pins), KEYS.slice(0, 4).map((k) => counts.get(k)));
});

Deno.test("affinity moves the values of a rate-limited pinned key to other keys, and they stay after its reset", async () => {
  let limited: string | undefined;
  await using up = keyedUpstream((key) => key === limited ? rateLimited(30) : undefined);
  await using proxy = await startProxy(config(
    up.baseUrl,
    KEYS.slice(0, 4),
    "affinity: { by: [prompt_cache_key] }",
  ));
  const sdk = client(proxy.url);
  const owners = await sendValues(sdk, up, VALUES);
  const [victim] = [...perKey(owners)].sort((a, b) => b[1] - a[1])[0]!;
  const pinned = VALUES.filter((v) => owners.get(v) === victim);
  limited = victim;
  const moved = await sendValues(sdk, up, VALUES);
  assert.equal(up.seen.filter((s) => s.status === 429).length, 1, "one 429, then the key rests");
  for (const v of VALUES) {
    if (pinned.includes(v)) assert.notEqual(moved.get(v), victim, v);
    else assert.equal(moved.get(v), owners.get(v), `${v} is not on the resting key: it stays`);
  }
  const log = (await waitForLines(proxy, 80)).slice(40);
  for (const [i, v] of VALUES.entries()) {
    assert.equal(log[i], pinned.includes(v) ? "moved" : "hit", v);
  }
  const stats = await getJson(`${proxy.url}/stats`) as Record<
    string,
    { state: string; pins: number }
  >;
  assert.equal(stats[maskOf(victim)]?.state, "resting");
  assert.equal(stats[maskOf(victim)]?.pins, 0, "its pins moved with its values");

  limited = undefined;
  await adminPost(proxy.url, `keys/${maskOf(victim)}/reset`);
  const reset = await getJson(`${proxy.url}/stats`) as typeof stats;
  assert.equal(reset[maskOf(victim)]?.state, "healthy");
  const after = await sendValues(sdk, up, VALUES);
  assert.deepEqual(after, moved, "the moved values stay on their new keys");
  assert.deepEqual((await waitForLines(proxy, 120)).slice(80), Array(40).fill("hit"));
  const metrics = parsePrometheus(await (await fetch(`${proxy.url}/metrics`)).text());
  const moves = metrics.sum("llm_balance_affinity_requests_total", { result: "moved" });
  assert.equal(moves, pinned.length);
});

Deno.test("affinity by a session header sends each session to one key, sessions spread", async () => {
  await using up = keyedUpstream();
  await using proxy = await startProxy(config(
    up.baseUrl,
    KEYS.slice(0, 4),
    'affinity: { by: ["header:x-session-id"] }',
  ));
  const sessions = Array.from({ length: 20 }, (_, i) => `session-${i}`);
  const owners = new Map<string, string>();
  const hi = { messages: [{ role: "user", content: "hi" }], prompt_cache_key: "ignored" };
  for (const s of sessions) owners.set(s, await sendRaw(proxy.url, up, hi, { "x-session-id": s }));
  assert.equal(new Set(owners.values()).size, 4, "20 sessions use every key");
  for (const s of sessions) {
    const turn = { messages: [{ role: "user", content: `turn 2 of ${s}` }] };
    assert.equal(await sendRaw(proxy.url, up, turn, { "x-session-id": s }), owners.get(s), s);
  }
  const log = await waitForLines(proxy, 40);
  assert.deepEqual(log, [...Array(20).fill("new"), ...Array(20).fill("hit")]);
});

Deno.test("affinity by prefix keeps a conversation on its key as it grows, without any key sent", async () => {
  await using up = keyedUpstream();
  await using proxy = await startProxy(config(
    up.baseUrl,
    KEYS.slice(0, 4),
    "affinity: { by: [prefix] }",
  ));
  const system = { role: "system", content: "You are a helpful assistant. Answer briefly." };
  const firsts = Array.from(
    { length: 12 },
    (_, i) => `Conversation ${i}: tell me about the history of the number ${i * 7}.`,
  );
  const owners = new Map<string, string>();
  for (const first of firsts) {
    const messages = [system, { role: "user", content: first }];
    owners.set(first, await sendRaw(proxy.url, up, { messages }));
  }
  assert.ok(new Set(owners.values()).size >= 2, "12 conversations use more than one key");
  for (const first of firsts) {
    const messages = [
      system,
      { role: "user", content: first },
      { role: "assistant", content: "It is a long story." },
      { role: "user", content: "Tell me more." },
    ];
    assert.equal(await sendRaw(proxy.url, up, { messages }), owners.get(first), first);
  }
  const log = await waitForLines(proxy, 24);
  assert.deepEqual(log, [...Array(12).fill("new"), ...Array(12).fill("hit")]);
});

Deno.test("requests without an affinity value are left to the pool's strategy (round_robin spreads them)", async () => {
  await using up = keyedUpstream();
  await using proxy = await startProxy(config(
    up.baseUrl,
    KEYS.slice(0, 4),
    `strategy: round_robin
affinity: { by: [prompt_cache_key] }`,
  ));
  const sdk = client(proxy.url);
  const unkeyed: string[] = [];
  for (let i = 0; i < 8; i++) {
    // a pinned request between two unkeyed ones does not move the round-robin cursor
    await sendValues(sdk, up, ["always-the-same"]);
    const before = up.seen.length;
    await sdk.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
    });
    unkeyed.push(up.seen[before]!.key);
  }
  assert.deepEqual(unkeyed, [...KEYS.slice(0, 4), ...KEYS.slice(0, 4)]);
  const log = await waitForLines(proxy, 16);
  assert.deepEqual(log.filter((_, i) => i % 2 === 1), Array(8).fill(undefined));
  assert.deepEqual(log.filter((_, i) => i % 2 === 0), ["new", ...Array(7).fill("hit")]);
});

Deno.test("affinity with pin: false pins nothing: the strategy picks every request", async () => {
  await using up = keyedUpstream();
  await using proxy = await startProxy(config(
    up.baseUrl,
    KEYS.slice(0, 4),
    `strategy: round_robin
affinity: { by: [prompt_cache_key], pin: false }`,
  ));
  await sendValues(client(proxy.url), up, Array(4).fill("one-value"));
  assert.deepEqual(up.seen.map((s) => s.key), KEYS.slice(0, 4), "round_robin, as if no value");
  assert.deepEqual(await waitForLines(proxy, 4), Array(4).fill(undefined));
  const pool = await defaultPool(proxy.url);
  assert.equal(pool.affinity, null);
  assert.ok(pool.servers.every((v) => v.pins === undefined));
});

Deno.test("p2c sends most requests away from a 10x slower key, and back to it once it is fast", async () => {
  const [fast1, fast2, slow] = KEYS as [string, string, string];
  let slowMs = 150;
  await using up = keyedUpstream((key) => key === slow ? slowMs : 15);
  await using proxy = await startProxy(config(
    up.baseUrl,
    [fast1, fast2, slow],
    `strategy: p2c
strategy_options: { decay: 1 }`,
  ));
  const sdk = client(proxy.url);
  await burst(sdk, up, 9, 1);
  assert.ok(up.served(slow) >= 1, "the warm-up reached the slow key");
  const loaded = await burst(sdk, up, 100, 4);
  assert.ok(share(loaded, slow) < 0.2, `the slow key took ${share(loaded, slow)} of 100`);
  const stats = await getJson(`${proxy.url}/stats`) as Record<
    string,
    { latency_ewma_ms: number; latency_p50_ms: number }
  >;
  // /stats shows each key's peak-EWMA (10 s time constant: a one-off slow answer of a fast key
  // lingers in it for seconds) beside its percentiles
  const row = (key: string) => stats[maskOf(key)]!;
  assert.ok(row(slow).latency_ewma_ms >= 100, JSON.stringify(stats));
  assert.ok(
    row(slow).latency_p50_ms > 2 * Math.max(row(fast1).latency_p50_ms, row(fast2).latency_p50_ms),
    JSON.stringify(stats),
  );

  slowMs = 15;
  const switched = performance.now();
  let recent: string[] = [];
  for (;;) {
    recent = [...recent, ...await burst(sdk, up, 10, 2)].slice(-50);
    if (recent.length === 50 && share(recent, slow) >= 0.2) break;
    assert.ok(
      performance.now() - switched < 6000,
      `6 s after it sped up, the key took ${share(recent, slow)} of the last 50 requests`,
    );
  }
});

Deno.test("slow_start ramps a key back from a rest: well below half at first, then half again", async () => {
  const T0 = Date.UTC(2025, 0, 1);
  let t = T0;
  const [a, b] = KEYS as [string, string];
  let limitA = true;
  await using up = keyedUpstream((key) => {
    if (key !== a || !limitA) return undefined;
    limitA = false;
    return rateLimited(1);
  });
  await using proxy = await startProxy(
    config(up.baseUrl, [a, b], "strategy: round_robin\nslow_start: 3"),
    { now: () => t, random: seededRandom(19) },
  );
  const sdk = client(proxy.url);
  assert.deepEqual(await burst(sdk, up, 1, 1), [a, b], "a 429 on a, retried on b");
  const stats = await getJson(`${proxy.url}/stats`) as Record<string, { state: string }>;
  assert.equal(stats[maskOf(a)]?.state, "resting");
  /** a's share of 60 requests, one every 25 ms from `from` ms after its rest ended */
  const window = async (from: number) => {
    const keys: string[] = [];
    for (let i = 0; i < 60; i++) {
      t = T0 + 1000 + from + i * 25;
      keys.push(...await burst(sdk, up, 1, 1));
    }
    return share(keys, a);
  };
  const first = await window(0);
  const second = await window(1500);
  const after = await window(3000);
  // a's weight grows from 0 to 1 over 3 s: at weight w it takes w / (1 + w) of the requests,
  // about a fifth on average over the first 1.5 s, and a half once the ramp is over
  assert.ok(first <= 0.3, `a took ${first} of the first 1.5 s back`);
  assert.ok(first < second, `a took ${first}, then ${second}`);
  assert.ok(after >= 0.45 && after <= 0.55, `a took ${after} once the ramp was over`);
  assert.equal((await defaultPool(proxy.url)).slow_start_seconds, 3);
});

Deno.test("a reload that adds a fifth key moves about a fifth of the pinned values to it, the rest stay", async () => {
  await using up = keyedUpstream();
  const text = (keys: readonly string[]) =>
    config(up.baseUrl, keys, "affinity: { by: [prompt_cache_key] }", "log: { level: info }");
  const cfg = await tempConfig(text(KEYS.slice(0, 4)));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const sdk = client(served.url);
    const before = await sendValues(sdk, up, VALUES);
    await Deno.writeTextFile(cfg.path, text(KEYS));
    served.child.kill("SIGHUP");
    const reloaded = await served.waitForLog((r) => r.msg === "config reloaded");
    assert.equal(reloaded.keys, 5);
    const after = await sendValues(sdk, up, VALUES);
    const moved = VALUES.filter((v) => after.get(v) !== before.get(v));
    assert.ok(moved.length >= 2 && moved.length <= 16, `${moved.length} of 40 values moved`);
    for (const v of moved) assert.equal(after.get(v), KEYS[4], `${v} moved, not to the new key`);
    const again = await sendValues(sdk, up, VALUES);
    assert.deepEqual(again, after, "the values stay where the reload put them");
    const chatLog = () =>
      served.logs()
        .filter((r) => r.msg === "request" && r.path === "/v1/chat/completions")
        .map((r) => r.affinity);
    await served.waitForLog(() => chatLog().length >= 120);
    const log = chatLog();
    assert.deepEqual(
      log.slice(40, 80),
      VALUES.map((v) => moved.includes(v) ? "new" : "hit"),
      "a value whose home is now the new key is placed again",
    );
    assert.equal((await served.close()).code, 0);
  } finally {
    await cfg.remove();
  }
});

Deno.test("check and serve refuse affinity and p2c mistakes with exit 2, naming the field", async () => {
  const cases = [
    {
      pool: "affinity: { max_load: 0.5 }",
      want: /pools\.default\.affinity\.max_load \(line \d+\): must be >= 1/,
    },
    {
      pool: "affinity: { ttl: 0 }",
      want: /pools\.default\.affinity\.ttl \(line \d+\): must be a number of seconds from 1/,
    },
    {
      pool: "affinity: { by: [cookie] }",
      want: /pools\.default\.affinity\.by\[0\] \(line \d+\): must be "prompt_cache_key"/,
    },
    {
      pool: "strategy: p2c\nstrategy_options: { decay: -1 }",
      want:
        /pools\.default\.strategy_options.*strategy_options\.decay must be a number of seconds from 0\.01/,
    },
  ];
  await Promise.all(cases.map(async (c) => {
    const cfg = await tempConfig(config("http://127.0.0.1:9/v1", KEYS.slice(0, 2), c.pool));
    try {
      const [check, serve] = await Promise.all([
        runCli(["check", "--config", cfg.path]),
        runCli(["serve", "--config", cfg.path, "--port", "0"], { timeoutMs: 15_000 }),
      ]);
      assert.equal(check.code, 2, `${c.pool}: ${check.stdout}${check.stderr}`);
      assert.match(check.stderr, c.want);
      assert.equal(serve.code, 2, `${c.pool}: ${serve.stdout}${serve.stderr}`);
      assert.equal(serve.stdout, "", `${c.pool}: no URL line, no server`);
      assert.match(serve.stderr, c.want);
    } finally {
      await cfg.remove();
    }
  }));
});
