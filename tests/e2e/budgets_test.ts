/**
 * @module
 * End-to-end budgets against a mock ModelScope, on a manual clock: what the provider's headers
 * say takes a key out before any 429 (for one model, or for every model when the account is
 * spent); configured budgets count without headers; a throttling 429 rests a key briefly while
 * an exhaustion keeps it out until the daily reset (midnight in Beijing, or local midnight in a
 * zone with daylight saving, checked at exact instants); a 200 without choices is retried on
 * another key; `/stats`, `/metrics` and the 503 of a pool whose every key is spent say it all.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { ManualClock } from "../helpers/clock.ts";
import { type ModelScopeMock, startModelScopeMock } from "../helpers/modelscope_mock.ts";
import { parsePrometheus } from "../helpers/prometheus.ts";
import type { Candidate } from "../../src/plugin.ts";
import { apiError } from "../helpers/sdk_error.ts";

const K1 = "ms-a-key-0000000000000001";
const K2 = "ms-b-key-0000000000000002";
const MODEL_A = "Qwen/Qwen3-8B";
const MODEL_B = "deepseek-ai/DeepSeek-V3";
const HOUR = 3_600_000;
/** 2026-12-07 23:00 in Beijing. */
const LATE_EVENING = Date.UTC(2026, 11, 7, 15, 0, 0);
/** 2026-12-08 00:00 in Beijing. */
const BEIJING_MIDNIGHT = Date.UTC(2026, 11, 7, 16, 0, 0);

/** Config text: one upstream on the mock, K1 preferred (priority 0) over K2. */
function config(ms: ModelScopeMock, quota = "time_zone: Asia/Shanghai", extra = ""): string {
  return `
upstreams:
  modelscope:
    base_url: "${ms.baseUrl}"
    keys:
      - { key: ${K1}, priority: 0 }
      - { key: ${K2}, priority: 1 }
    quota: { ${quota} }
retry: { backoff_base: 0.01, backoff_max: 0.02 }
${extra}`;
}

function sdk(proxy: TestProxy): OpenAI {
  return new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "client-key", maxRetries: 0 });
}

/** One chat completion through the proxy; resolves with its answer's text. */
async function ask(proxy: TestProxy, model = MODEL_A): Promise<string> {
  const r = await sdk(proxy).chat.completions.create({
    model,
    messages: [{ role: "user", content: "hi" }],
  });
  return r.choices[0]?.message.content ?? "";
}

/** The keys the mock's chat completions came with, in order. */
function keysSeen(ms: ModelScopeMock): string[] {
  return ms.requests.filter((r) => r.path === "/v1/chat/completions").map((r) => r.key);
}

function candidate(proxy: TestProxy, key: string): Candidate {
  const c = [...proxy.app.rt.candidates.values()].find((c) => c.key?.reveal() === key);
  assert.ok(c !== undefined, `no candidate for ${key}`);
  return c;
}

/** A key's entry of `/stats`. */
async function keyStats(proxy: TestProxy, key: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${proxy.url}/stats`);
  assert.equal(res.status, 200);
  const all = await res.json() as Record<string, Record<string, unknown>>;
  const id = candidate(proxy, key).id;
  const found = Object.values(all).find((v) => v.id === id);
  assert.ok(found !== undefined, `no stats for ${key}`);
  return found;
}

/** A key's budget of `/stats`. */
async function budget(
  proxy: TestProxy,
  key: string,
  name: string,
): Promise<Record<string, unknown> | undefined> {
  const s = await keyStats(proxy, key);
  return (s.budgets as Record<string, Record<string, unknown>>)[name];
}

Deno.test("budgets: the answer whose headers say 0 left is the key's last call, no 429 needed", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({ accountLimits: { [K1]: 2 }, now: clock.now });
  await using proxy = await startProxy(config(ms), { clock });
  for (let i = 0; i < 4; i++) assert.equal(await ask(proxy), "Hello from ModelScope");
  assert.deepEqual(keysSeen(ms), [K1, K1, K2, K2]);
  assert.ok(ms.requests.every((r) => r.status === 200), "the mock never had to refuse");
  const s = await keyStats(proxy, K1);
  assert.equal(s.state, "spent");
  assert.equal(s.reason, "has no requests left, says the provider");
  assert.equal(s.until, new Date(BEIJING_MIDNIGHT).toISOString());
  assert.deepEqual(await budget(proxy, K1, "requests_per_day"), {
    limit: 2,
    used: 2,
    remaining: 0,
    source: "provider",
    resets_at: "2026-12-08T00:00:00+08:00",
  });
  assert.equal((await keyStats(proxy, K2)).state, "healthy");
});

Deno.test("budgets: a key spent for one model still serves others; a spent account serves none", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({
    accountLimits: { [K1]: 3 },
    modelLimits: { [MODEL_A]: 1 },
    now: clock.now,
  });
  await using proxy = await startProxy(config(ms), { clock });
  await ask(proxy, MODEL_A); // K1: none left for A
  await ask(proxy, MODEL_A); // K2
  assert.equal((await keyStats(proxy, K1)).state, "healthy", "spent for A only");
  assert.deepEqual(await budget(proxy, K1, `model_requests_per_day:${MODEL_A}`), {
    limit: 1,
    used: 1,
    remaining: 0,
    source: "provider",
    resets_at: "2026-12-08T00:00:00+08:00",
  });
  await ask(proxy, MODEL_B); // K1 still serves B: 1 call left on the account
  await ask(proxy, MODEL_B); // K1: the account's last call
  await ask(proxy, MODEL_B); // K2
  assert.deepEqual(keysSeen(ms), [K1, K2, K1, K1, K2]);
  assert.deepEqual(ms.requests.map((r) => r.model), [MODEL_A, MODEL_A, MODEL_B, MODEL_B, MODEL_B]);
  assert.ok(ms.requests.every((r) => r.status === 200));
  const s = await keyStats(proxy, K1);
  assert.equal(s.state, "spent");
  assert.equal(s.until, new Date(BEIJING_MIDNIGHT).toISOString());
});

Deno.test("budgets: configured requests_per_day counts without any provider headers", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({ headers: false, now: clock.now });
  await using proxy = await startProxy(
    config(ms, "requests_per_day: 2, time_zone: Asia/Shanghai"),
    { clock },
  );
  for (let i = 0; i < 3; i++) await ask(proxy);
  assert.deepEqual(keysSeen(ms), [K1, K1, K2]);
  const s = await keyStats(proxy, K1);
  assert.equal(s.state, "spent");
  assert.equal(s.reason, "spent its daily requests");
  assert.equal(s.until, new Date(BEIJING_MIDNIGHT).toISOString());
  assert.deepEqual(await budget(proxy, K1, "requests_per_day"), {
    limit: 2,
    used: 2,
    remaining: 0,
    source: "counted",
    resets_at: "2026-12-08T00:00:00+08:00",
  });
  clock.set(BEIJING_MIDNIGHT);
  await ask(proxy);
  assert.deepEqual(keysSeen(ms), [K1, K1, K2, K1], "a new day, a new budget");
});

Deno.test("budgets: configured model_requests_per_day passes the key over for that model only", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({ headers: false, now: clock.now });
  await using proxy = await startProxy(
    config(ms, "model_requests_per_day: 1, time_zone: Asia/Shanghai"),
    { clock },
  );
  await ask(proxy, MODEL_A);
  await ask(proxy, MODEL_A);
  await ask(proxy, MODEL_B);
  assert.deepEqual(keysSeen(ms), [K1, K2, K1]);
  assert.equal((await keyStats(proxy, K1)).state, "healthy");
  assert.deepEqual(await budget(proxy, K1, `model_requests_per_day:${MODEL_A}`), {
    limit: 1,
    used: 1,
    remaining: 0,
    source: "counted",
    resets_at: "2026-12-08T00:00:00+08:00",
  });
});

Deno.test("budgets: ModelScope's exhaustion body alone takes the key out for that model until the reset", async () => {
  const clock = new ManualClock(LATE_EVENING);
  await using ms = startModelScopeMock({ headers: false, now: clock.now });
  await using proxy = await startProxy(config(ms), { clock });
  ms.exhaust(K1, MODEL_A); // other clients of K1's account used up model A today
  assert.equal(await ask(proxy, MODEL_A), "Hello from ModelScope", "retried on K2 at once");
  assert.deepEqual(ms.requests.map((r) => r.answer), ["exhausted", "ok"]);
  await ask(proxy, MODEL_A);
  await ask(proxy, MODEL_B);
  assert.deepEqual(keysSeen(ms), [K1, K2, K2, K1], "K1 passed over for A only");
  clock.set(BEIJING_MIDNIGHT - 1);
  await ask(proxy, MODEL_A);
  assert.equal(keysSeen(ms).at(-1), K2);
  ms.newDay();
  clock.set(BEIJING_MIDNIGHT);
  await ask(proxy, MODEL_A);
  assert.equal(keysSeen(ms).at(-1), K1, "back for A at midnight in Beijing");
});

Deno.test("budgets: a 429 whose headers show the model's calls spent takes the key out for that model", async () => {
  const clock = new ManualClock(LATE_EVENING);
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(config(ms), { clock });
  ms.exhaust(K1, MODEL_A);
  await ask(proxy, MODEL_A);
  assert.deepEqual(ms.requests.map((r) => [r.key, r.answer]), [[K1, "exhausted"], [K2, "ok"]]);
  assert.equal((await keyStats(proxy, K1)).state, "healthy", "the account has calls left");
  assert.equal((await budget(proxy, K1, `model_requests_per_day:${MODEL_A}`))?.remaining, 0);
  await ask(proxy, MODEL_A);
  await ask(proxy, MODEL_B);
  assert.deepEqual(keysSeen(ms), [K1, K2, K2, K1]);
  const line = proxy.logRecords().find((l) =>
    l.msg === "key out of quota for a model until its reset"
  );
  assert.equal(line?.model, MODEL_A);
  assert.equal(line?.until, new Date(BEIJING_MIDNIGHT).toISOString());
});

Deno.test("budgets: streamed answers count too: the provider's headers and the usage at the end", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({ accountLimits: { [K1]: 1 }, now: clock.now });
  await using proxy = await startProxy(config(ms), { clock });
  const stream = async () => {
    const s = await sdk(proxy).chat.completions.create({
      model: MODEL_A,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let tokens = 0;
    for await (const chunk of s) {
      text += chunk.choices[0]?.delta.content ?? "";
      tokens = chunk.usage?.total_tokens ?? tokens;
    }
    return { text, tokens };
  };
  assert.deepEqual(await stream(), { text: "Hello from ModelScope", tokens: 8 });
  assert.deepEqual(await stream(), { text: "Hello from ModelScope", tokens: 8 });
  assert.deepEqual(keysSeen(ms), [K1, K2], "the stream's headers said K1 had none left");
  assert.ok(ms.requests.every((r) => r.stream && r.status === 200));
  const s = await keyStats(proxy, K1);
  assert.equal(s.state, "spent");
  assert.equal(s.total_tokens, 8);

  // tokens_per_day, counted from the usage at the end of a stream
  await using ms2 = startModelScopeMock({ headers: false, now: clock.now });
  await using proxy2 = await startProxy(
    config(ms2, "tokens_per_day: 8, time_zone: Asia/Shanghai"),
    { clock },
  );
  for (let i = 0; i < 2; i++) {
    const s2 = await sdk(proxy2).chat.completions.create({
      model: MODEL_A,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const _ of s2) { /* read to the end */ }
  }
  assert.deepEqual(keysSeen(ms2), [K1, K2]);
  const t = await keyStats(proxy2, K1);
  assert.equal(t.state, "spent");
  assert.equal(t.reason, "spent its daily tokens");
});

Deno.test("budgets: a throttling 429 rests the key briefly, an exhaustion keeps it out until the reset", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(
    config(ms, "time_zone: Asia/Shanghai", "health: { rate_limit_rest: 30 }"),
    { clock },
  );
  ms.throttle(1);
  assert.equal(await ask(proxy), "Hello from ModelScope");
  assert.deepEqual(ms.requests.map((r) => [r.key, r.answer]), [[K1, "throttled"], [K2, "ok"]]);
  let s = await keyStats(proxy, K1);
  assert.equal(s.state, "resting");
  assert.equal(s.reason, "rate limited");
  assert.equal(s.until, new Date(clock.now() + 30_000).toISOString());
  clock.advance(29_999);
  await ask(proxy);
  assert.equal(keysSeen(ms).at(-1), K2);
  clock.advance(1);
  await ask(proxy);
  assert.equal(keysSeen(ms).at(-1), K1, "back after the short rest");

  ms.exhaust(K1); // K1's account is used up elsewhere: the next call gets the 429
  await ask(proxy);
  assert.deepEqual(ms.requests.slice(-2).map((r) => [r.key, r.answer]), [
    [K1, "exhausted"],
    [K2, "ok"],
  ]);
  s = await keyStats(proxy, K1);
  assert.equal(s.state, "spent");
  assert.equal(s.until, new Date(BEIJING_MIDNIGHT).toISOString());
  const k1Calls = ms.arrivals({ key: K1 });
  clock.set(BEIJING_MIDNIGHT - 1);
  await ask(proxy);
  assert.equal(ms.arrivals({ key: K1 }), k1Calls, "an exhausted key is not tried again today");
  ms.newDay();
  clock.set(BEIJING_MIDNIGHT);
  await ask(proxy);
  assert.equal(keysSeen(ms).at(-1), K1);
  assert.equal((await keyStats(proxy, K1)).state, "healthy");
});

Deno.test("budgets: a ModelScope host resets at midnight in Beijing without configuration", async () => {
  const clock = new ManualClock(LATE_EVENING);
  await using ms = startModelScopeMock({
    accountLimits: { [K1]: 1 },
    now: clock.now,
    dayOf: (t) => Math.floor((t + 8 * HOUR) / (24 * HOUR)),
  });
  const official = "https://api-inference.modelscope.cn";
  // the real host name, its requests delivered to the mock
  const routed: typeof fetch = (input, init) =>
    fetch(String(input).replace(official, ms.origin), init);
  await using proxy = await startProxy(
    `
upstreams:
  modelscope:
    base_url: "${official}/v1"
    keys: [{ key: ${K1}, priority: 0 }, { key: ${K2}, priority: 1 }]
`,
    { clock, fetch: routed },
  );
  await ask(proxy);
  const s = await keyStats(proxy, K1);
  assert.equal(s.state, "spent");
  assert.equal(s.until, "2026-12-07T16:00:00.000Z");
  const b = await budget(proxy, K1, "requests_per_day");
  assert.equal(b?.resets_at, "2026-12-08T00:00:00+08:00");
  clock.set(BEIJING_MIDNIGHT - 1);
  await ask(proxy);
  assert.equal(keysSeen(ms).at(-1), K2);
  clock.set(BEIJING_MIDNIGHT);
  await ask(proxy);
  assert.equal(keysSeen(ms).at(-1), K1, "back at 16:00 UTC");
  assert.equal(ms.requests.at(-1)?.day, 1, "the mock's own day rolled too");
  const next = await keyStats(proxy, K1);
  assert.equal(next.until, "2026-12-08T16:00:00.000Z", "its one call of the new day spent it");
});

Deno.test("budgets: in America/New_York a spent key returns at local midnight across DST changes", async () => {
  const cases = [
    // spent at 23:30 EST on March 7: back at midnight EST, before the spring change
    {
      spentAt: "2026-03-08T04:30:00Z",
      back: "2026-03-08T05:00:00Z",
      resetsAt: "2026-03-08T00:00:00-05:00",
    },
    // spent on the 23-hour day: back at midnight EDT
    {
      spentAt: "2026-03-08T16:00:00Z",
      back: "2026-03-09T04:00:00Z",
      resetsAt: "2026-03-09T00:00:00-04:00",
    },
    // spent at 23:30 EDT on October 31: back at midnight EDT, before the fall change
    {
      spentAt: "2026-11-01T03:30:00Z",
      back: "2026-11-01T04:00:00Z",
      resetsAt: "2026-11-01T00:00:00-04:00",
    },
    // spent on the 25-hour day: back at midnight EST
    {
      spentAt: "2026-11-01T16:00:00Z",
      back: "2026-11-02T05:00:00Z",
      resetsAt: "2026-11-02T00:00:00-05:00",
    },
  ];
  for (const { spentAt, back, resetsAt } of cases) {
    const clock = new ManualClock(Date.parse(spentAt));
    await using ms = startModelScopeMock({ headers: false, now: clock.now });
    await using proxy = await startProxy(
      `
upstreams:
  modelscope:
    base_url: "${ms.baseUrl}"
    keys:
      - { key: ${K1}, priority: 0, quota: { requests_per_day: 1 } }
      - { key: ${K2}, priority: 1 }
    quota: { time_zone: America/New_York }
`,
      { clock },
    );
    await ask(proxy);
    const s = await keyStats(proxy, K1);
    assert.equal(s.state, "spent", spentAt);
    assert.equal(s.until, new Date(back).toISOString(), spentAt);
    const b = await budget(proxy, K1, "requests_per_day");
    assert.equal(b?.resets_at, resetsAt, spentAt);
    clock.set(Date.parse(back) - 1);
    await ask(proxy);
    assert.equal(keysSeen(ms).at(-1), K2, `${spentAt}: still out 1 ms before ${back}`);
    clock.set(Date.parse(back));
    await ask(proxy);
    assert.equal(keysSeen(ms).at(-1), K1, `${spentAt}: back at ${back}`);
  }
});

Deno.test("budgets: a 200 whose choices is null is retried on another key; the client gets an answer", async () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(config(ms), { clock });
  ms.emptyChoices(1);
  const { data, response } = await sdk(proxy).chat.completions
    .create({ model: MODEL_A, messages: [{ role: "user", content: "hi" }] })
    .withResponse();
  assert.equal(data.choices[0]?.message.content, "Hello from ModelScope");
  assert.equal(data.usage?.total_tokens, 8);
  assert.equal(response.status, 200);
  assert.deepEqual(ms.requests.map((r) => [r.key, r.answer]), [[K1, "empty"], [K2, "ok"]]);
  const s = await keyStats(proxy, K1);
  assert.equal(s.failures, 1, "the empty answer is a failed call");
  assert.equal(s.last_error, "server");
  const failed = proxy.logRecords().find((l) => l.msg === "upstream attempt failed");
  assert.equal(failed?.key, candidate(proxy, K1).mask);
});

Deno.test("budgets: every key spent answers 503 naming the next reset, with Retry-After to it", async () => {
  const clock = new ManualClock(LATE_EVENING);
  await using ms = startModelScopeMock({ modelLimits: { [MODEL_A]: 1 }, now: clock.now });
  await using proxy = await startProxy(config(ms), { clock });
  await ask(proxy, MODEL_A);
  await ask(proxy, MODEL_A);
  const err = await apiError(ask(proxy, MODEL_A));
  assert.equal(err.status, 503);
  assert.equal(
    (err.error as { message?: string }).message,
    'No upstream key can serve this request: all 2 keys of upstream "modelscope" have spent ' +
      `their quota for model "${MODEL_A}"; next reset 2026-12-08T00:00:00+08:00`,
  );
  assert.equal(err.headers?.get("retry-after"), "3600");
  assert.equal(ms.arrivals(), 2, "no call was wasted on a spent key");
  assert.equal(await ask(proxy, MODEL_B), "Hello from ModelScope", "other models still served");

  // the whole account of both keys spent
  ms.exhaust(K1);
  ms.exhaust(K2);
  clock.advance(HOUR / 2);
  await apiError(ask(proxy, MODEL_B)); // K1 then K2 answer 429 with 0 left: both out
  const all = await apiError(ask(proxy, MODEL_B));
  assert.equal(all.status, 503);
  assert.equal(
    (all.error as { message?: string }).message,
    'No upstream key can serve this request: all 2 keys of upstream "modelscope" have spent ' +
      "their quota; next reset 2026-12-08T00:00:00+08:00",
  );
  assert.equal(all.headers?.get("retry-after"), "1800");
  for (const key of [K1, K2]) {
    const s = await keyStats(proxy, key);
    assert.equal(s.state, "spent");
    assert.equal(s.until, new Date(BEIJING_MIDNIGHT).toISOString());
  }
});

Deno.test("budgets: /metrics shows each key's budgets as gauges", async () => {
  const clock = new ManualClock(LATE_EVENING);
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(
    `
upstreams:
  modelscope:
    base_url: "${ms.baseUrl}"
    keys: [${K1}]
    quota: { time_zone: Asia/Shanghai, requests_per_day: 500 }
pools:
  "${MODEL_A}": { upstreams: [modelscope] }
`,
    { clock },
  );
  await ask(proxy, MODEL_A);
  const res = await fetch(`${proxy.url}/metrics`);
  assert.equal(res.status, 200);
  const m = parsePrometheus(await res.text());
  const key = candidate(proxy, K1).mask;
  const day = { upstream: "modelscope", key, budget: "requests_per_day", model: "" };
  const model = { upstream: "modelscope", key, budget: "model_requests_per_day", model: MODEL_A };
  assert.equal(m.types.get("llm_balance_budget_limit"), "gauge");
  assert.equal(m.sum("llm_balance_budget_limit", day), 500, "the configured limit");
  assert.equal(m.sum("llm_balance_budget_used", day), 1);
  assert.equal(m.sum("llm_balance_budget_remaining", day), 499);
  assert.equal(m.sum("llm_balance_budget_reset_seconds", day), 3600);
  assert.equal(m.sum("llm_balance_budget_limit", model), 200, "the provider's word");
  assert.equal(m.sum("llm_balance_budget_remaining", model), 199);
  assert.equal(m.sum("llm_balance_budget_reset_seconds", model), 3600);
  assert.equal(m.find("llm_balance_budget_used", model).length, 1);
});
