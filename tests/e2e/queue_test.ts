/**
 * @module
 * End-to-end wait queue (`queue: { max_wait, max_length }`) against a mock ModelScope that
 * answers slowly: a request finding every key at its concurrency cap waits for a free slot and
 * succeeds; a request that no key can serve within `max_wait` is answered 503 at once, with
 * Retry-After; a client that leaves while waiting leaves the queue and nothing reaches the
 * upstream for it; `max_concurrency` holds under load; waiters are served first come first
 * served; beyond `max_length` the answer is `queue_full`; a rate-limited key that comes back
 * within `max_wait` serves the waiting request; at shutdown waiting requests are answered 503
 * `shutting_down` and never reach the upstream.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { ManualClock } from "../helpers/clock.ts";
import { type ModelScopeMock, startModelScopeMock } from "../helpers/modelscope_mock.ts";
import { chat, postJson, requestLines, waitFor } from "../helpers/e2e.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";

const K1 = "ms-q-key-0000000000000001";
const K2 = "ms-r-key-0000000000000002";
const MODEL = "Qwen/Qwen3-8B";

/** Config text: the keys on the mock, each with `quota`, and a queue. */
function config(ms: ModelScopeMock, keys: string[], quota: string, queue: string): string {
  return `
upstreams:
  modelscope:
    base_url: "${ms.baseUrl}"
    keys: [${keys.join(", ")}]
    quota: { ${quota} }
queue: { ${queue} }
`;
}

function sdk(proxy: TestProxy): OpenAI {
  return new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "client-key", maxRetries: 0 });
}

/** A chat completion whose message names the request, so the mock's records tell them apart. */
function ask(proxy: TestProxy, tag: string, signal?: AbortSignal): Promise<Response> {
  const init: RequestInit = {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: tag }] }),
  };
  if (signal !== undefined) init.signal = signal;
  return fetch(`${proxy.url}/v1/chat/completions`, init);
}

/** Requests waiting for a key of MODEL (or woken and not yet back), in the proxy's queues. */
function waiting(proxy: TestProxy): number {
  const pool = proxy.app.rt.poolFor(MODEL);
  return pool === undefined ? 0 : proxy.app.queues.waiting(pool, MODEL);
}

/** The tags of the chat completions the mock received, in order. */
function tagsSeen(ms: ModelScopeMock): string[] {
  return ms.requests.map((r) =>
    (JSON.parse(r.body) as { messages: { content: string }[] })
      .messages[0]!.content
  );
}

async function metrics(proxy: TestProxy) {
  const res = await fetch(`${proxy.url}/metrics`);
  assert.equal(res.status, 200);
  return parsePrometheus(await res.text());
}

Deno.test("queue: a request finding the key at its concurrency cap waits for the slot and succeeds", async () => {
  await using ms = startModelScopeMock({ latencyMs: 200 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 5, max_length: 10"),
  );
  const client = sdk(proxy);
  const started = performance.now();
  const both = await Promise.all(
    [1, 2].map((i) =>
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: `${i}` }],
      })
    ),
  );
  const took = performance.now() - started;
  for (const r of both) assert.equal(r.choices[0]?.message.content, "Hello from ModelScope");
  assert.equal(ms.arrivals(), 2);
  assert.equal(ms.maxInFlight(K1), 1, "never two at once on the key");
  assert.ok(ms.requests[1]!.at - ms.requests[0]!.at >= 180, "the second arrived after the first");
  assert.ok(took >= 380 && took < 2000, `both took ${took} ms`);
  const m = await metrics(proxy);
  assert.equal(m.sum("llm_balance_queue_waited_total", { pool: "default" }), 1);
  assert.ok(m.sum("llm_balance_queue_wait_seconds_total", { pool: "default" }) >= 0.15);
  assert.equal(m.sum("llm_balance_queue_length", { pool: "default" }), 0);
});

Deno.test("queue: every key spent until tomorrow answers 503 at once, with Retry-After to the reset", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 20, 0, 0));
  await using ms = startModelScopeMock({ headers: false, now: clock.now });
  await using proxy = await startProxy(
    config(ms, [K1], "requests_per_day: 1", "max_wait: 30, max_length: 10"),
    { clock },
  );
  const first = await ask(proxy, "first");
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const started = performance.now();
  const res = await ask(proxy, "second");
  const took = performance.now() - started;
  assert.equal(res.status, 503);
  assert.ok(took < 500, `answered in ${took} ms, not after max_wait`);
  assert.equal(res.headers.get("retry-after"), String(4 * 3600), "UTC midnight in 4 hours");
  const body = await res.json();
  assert.match(body.error.message, /has spent its quota; next reset 2026-12-08T00:00:00\+00:00$/);
  assert.equal(ms.arrivals(), 1);
  assert.equal(waiting(proxy), 0);
});

Deno.test("queue: a request that gets no slot within max_wait is answered 503, never later", async () => {
  await using ms = startModelScopeMock({ latencyMs: 600 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 0.3, max_length: 10"),
  );
  const first = ask(proxy, "slow");
  await waitFor(() => ms.arrivals() === 1, "the first request upstream");
  const started = performance.now();
  const res = await ask(proxy, "impatient");
  const took = performance.now() - started;
  assert.equal(res.status, 503);
  assert.ok(took < 550, `answered after ${took} ms: no later than max_wait`);
  assert.equal(res.headers.get("retry-after"), "1");
  const body = await res.json();
  assert.match(body.error.message, /1 at their concurrency cap/);
  assert.equal((await first).status, 200);
  assert.deepEqual(tagsSeen(ms), ["slow"]);
});

Deno.test("queue: a waiter whose key turns out spent until tomorrow is answered at once", async () => {
  await using ms = startModelScopeMock({ accountLimits: { [K1]: 1 }, latencyMs: 300 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 10, max_length: 10"),
  );
  const first = ask(proxy, "last call of the day");
  await waitFor(() => ms.arrivals() === 1, "the first request upstream");
  const started = performance.now();
  const second = ask(proxy, "too late");
  await waitFor(() => waiting(proxy) === 1, "the second request in the queue");
  assert.equal((await first).status, 200, "its headers say no call is left today");
  const res = await second;
  const took = performance.now() - started;
  assert.equal(res.status, 503);
  assert.ok(took < 1500, `answered ${took} ms after it came, not after max_wait`);
  assert.ok(Number(res.headers.get("retry-after")) >= 1);
  const body = await res.json();
  assert.match(body.error.message, /has spent its quota; next reset /);
  assert.deepEqual(tagsSeen(ms), ["last call of the day"]);
});

Deno.test("queue: a client that leaves while waiting leaves the queue; nothing is sent upstream for it", async () => {
  await using ms = startModelScopeMock({ latencyMs: 300 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 5, max_length: 10"),
  );
  const first = ask(proxy, "stays");
  await waitFor(() => ms.arrivals() === 1, "the first request upstream");
  const leaver = new AbortController();
  const second = ask(proxy, "leaves", leaver.signal);
  await waitFor(() => waiting(proxy) === 1, "the second request in the queue");
  leaver.abort();
  await assert.rejects(second, (e: Error) => e.name === "AbortError");
  await waitFor(() => waiting(proxy) === 0, "the queue to empty");
  const res = await first;
  assert.equal(res.status, 200);
  await res.body?.cancel();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(tagsSeen(ms), ["stays"], "no upstream arrival for the client that left");
  await waitFor(() => requestLines(proxy).length === 2, "both request log lines");
  const left = requestLines(proxy).find((l) => l.status === 499);
  assert.equal(left?.outcome, "client_abort");
});

Deno.test("queue: max_concurrency is never exceeded under 20 concurrent requests", async () => {
  await using ms = startModelScopeMock({ latencyMs: 40 });
  await using proxy = await startProxy(
    config(ms, [K1, K2], "max_concurrency: 2", "max_wait: 10, max_length: 100"),
  );
  const all = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const res = await ask(proxy, `r${i}`);
      await res.body?.cancel();
      return res.status;
    }),
  );
  assert.deepEqual(all, Array(20).fill(200));
  assert.equal(ms.arrivals(), 20);
  assert.equal(ms.maxInFlight(K1), 2, "the cap was reached, never passed");
  assert.equal(ms.maxInFlight(K2), 2);
  assert.equal(ms.arrivals({ key: K1 }) + ms.arrivals({ key: K2 }), 20);
  for (const c of proxy.app.rt.candidates.values()) assert.equal(c.state.inFlight, 0);
  assert.equal(waiting(proxy), 0);
});

Deno.test("queue: waiting requests are served in the order they arrived", async () => {
  // r0 holds the key while the others queue up; they are answered quickly
  await using ms = startModelScopeMock({ latencyMs: 400 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 10, max_length: 100"),
  );
  const pending = [ask(proxy, "r0")];
  await waitFor(() => ms.arrivals() === 1, "r0 upstream");
  ms.latencyMs = 10;
  for (let i = 1; i <= 5; i++) {
    pending.push(ask(proxy, `r${i}`));
    await waitFor(() => waiting(proxy) === i, `r${i} in the queue`);
  }
  for (const res of await Promise.all(pending)) {
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.deepEqual(tagsSeen(ms), ["r0", "r1", "r2", "r3", "r4", "r5"]);
  assert.equal(ms.maxInFlight(K1), 1);
});

Deno.test("queue: beyond max_length the answer is 503 queue_full at once", async () => {
  await using ms = startModelScopeMock({ latencyMs: 300 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 5, max_length: 2"),
  );
  const pending = [ask(proxy, "r0")];
  await waitFor(() => ms.arrivals() === 1, "r0 upstream");
  ms.latencyMs = 10;
  pending.push(ask(proxy, "r1"), ask(proxy, "r2"));
  await waitFor(() => waiting(proxy) === 2, "r1 and r2 in the queue");
  const started = performance.now();
  const full = await ask(proxy, "r3");
  assert.ok(performance.now() - started < 200, "refused without waiting");
  assert.equal(full.status, 503);
  assert.equal(full.headers.get("retry-after"), "5");
  const body = await full.json();
  assert.equal(body.error.code, "queue_full");
  assert.equal(
    body.error.message,
    "Too many requests are waiting for a key of this pool (2); retry later",
  );
  for (const res of await Promise.all(pending)) {
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.deepEqual(tagsSeen(ms), ["r0", "r1", "r2"]);
  const m = await metrics(proxy);
  assert.equal(m.sum("llm_balance_queue_refused_total", { pool: "default" }), 1);
  assert.equal(m.sum("llm_balance_queue_waited_total", { pool: "default" }), 2);
});

Deno.test("queue: a request waits for a rate-limited key to come back within max_wait", async () => {
  await using ms = startModelScopeMock();
  await using proxy = await startProxy(
    config(ms, [K1], "time_zone: Asia/Shanghai", "max_wait: 5, max_length: 10") +
      "health: { rate_limit_rest: 0.3 }\n",
  );
  ms.throttle(1);
  const throttled = await postJson(`${proxy.url}/v1/chat/completions`, chat(MODEL));
  assert.equal(throttled.status, 429, "the only key throttled: the client is told");
  await throttled.body?.cancel();
  const started = performance.now();
  const res = await ask(proxy, "after the rest");
  const took = performance.now() - started;
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.ok(took >= 200 && took < 2000, `waited ${took} ms for the rest to end`);
  assert.deepEqual(ms.requests.map((r) => r.answer), ["throttled", "ok"]);
});

Deno.test("queue: at shutdown waiting requests are answered 503 shutting_down and never sent upstream", async () => {
  await using ms = startModelScopeMock({ latencyMs: 400 });
  await using proxy = await startProxy(
    config(ms, [K1], "max_concurrency: 1", "max_wait: 10, max_length: 10"),
  );
  const first = ask(proxy, "in flight");
  await waitFor(() => ms.arrivals() === 1, "the first request upstream");
  const started = performance.now();
  // two wait: the cut attempt's release alone would wake only the first
  const waiters = [ask(proxy, "waiting 1"), ask(proxy, "waiting 2")];
  await waitFor(() => waiting(proxy) === 2, "two requests in the queue");
  // the drain time is over
  proxy.app.cutAll();
  for (const res of await Promise.all(waiters)) {
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.error.code, "shutting_down");
  }
  const took = performance.now() - started;
  assert.ok(took < 1000, `answered at once, not after max_wait (${took.toFixed(0)} ms)`);
  const cut = await first.catch(() => undefined);
  await cut?.body?.cancel().catch(() => {});
  await new Promise((r) => setTimeout(r, 450));
  assert.deepEqual(tagsSeen(ms), ["in flight"], "nothing reached the upstream for the waiters");
  assert.equal(ms.arrivals(), 1);
  assert.equal(waiting(proxy), 0);
  await waitFor(() => requestLines(proxy).length === 3, "every request log line");
  const lines = requestLines(proxy);
  assert.ok(lines.every((l) => l.status === 503), JSON.stringify(lines.map((l) => l.status)));
});
