/**
 * @module
 * Honest errors, end to end with the official `openai` SDK at its default retries (2): every
 * 5xx llm-balance makes says when to retry; what llm-balance already retried is not retried
 * again by the SDK (`x-should-retry: false`), so a call costs at most `retry.max_attempts`
 * upstream attempts; an all-rate-limited pool is the SDK's RateLimitError with `retry-after`;
 * an upstream's own explanation reaches the SDK's message; and a key an upstream echoes
 * escaped, encoded or in part is masked in the answer and the logs.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { postJson, requestLines, startScriptedUpstream, waitFor } from "../helpers/e2e.ts";
import { apiError } from "../helpers/sdk_error.ts";

const T0 = Date.UTC(2025, 5, 1);
const MESSAGES = [{ role: "user" as const, content: "hi" }];

/** The SDK as an application uses it: default retries. */
function sdk(proxy: TestProxy): OpenAI {
  return new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "client-key" });
}

function failing(status: number, body: string, headers: Record<string, string> = {}) {
  return startScriptedUpstream(() =>
    new Response(body, { status, headers: { "content-type": "application/json", ...headers } })
  );
}

Deno.test("honest errors: upstreams all answering 500 cost retry.max_attempts attempts, the SDK adds none", async () => {
  const boom = '{"error":{"message":"boom","type":"server_error"}}';
  await using a = failing(500, boom);
  await using b = failing(500, boom);
  await using c = failing(500, boom);
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [sk-honest-a-0001] }
  b: { base_url: "${b.baseUrl}", keys: [sk-honest-b-0002] }
  c: { base_url: "${c.baseUrl}", keys: [sk-honest-c-0003] }
retry: { max_attempts: 3, backoff_base: 0.01, backoff_max: 0.02 }
`);
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "m", messages: MESSAGES }),
  );
  assert.ok(err instanceof OpenAI.InternalServerError);
  assert.equal(err.status, 500);
  assert.equal(err.message, "500 boom");
  assert.equal(err.headers?.get("x-should-retry"), "false");
  assert.equal(err.headers?.get("retry-after"), "1");
  const attempts = a.requests.length + b.requests.length + c.requests.length;
  assert.equal(attempts, 3, "retry.max_attempts upstream attempts in all");
  await waitFor(() => requestLines(proxy).length >= 1, "the request's log line");
  assert.equal(requestLines(proxy).length, 1, "the SDK sent the call once");
});

Deno.test("honest errors: no upstream reachable is a 503 with Retry-After that the SDK does not retry", async () => {
  const gone = await startMockUpstream({ name: "gone" });
  const url = gone.baseUrl;
  await gone.close(); // nothing listens there any more
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${url}", keys: [sk-honest-down-01] }
  b: { base_url: "${url}", keys: [sk-honest-down-02] }
retry: { max_attempts: 2, backoff_base: 0.01, backoff_max: 0.02 }
`);
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "m", messages: MESSAGES }),
  );
  assert.equal(err.status, 503);
  assert.equal(err.code, "upstream_unreachable");
  assert.match(err.message, /Could not reach upstream "[ab]"/);
  assert.equal(err.headers?.get("x-should-retry"), "false");
  assert.ok(Number(err.headers?.get("retry-after")) >= 1);
  await waitFor(() => requestLines(proxy).length >= 1, "the request's log line");
  assert.equal(requestLines(proxy).length, 1, "the SDK sent the call once");
  assert.equal(requestLines(proxy)[0]?.attempts, 2);
});

Deno.test("honest errors: a timeout is a 504 the SDK does not retry", async () => {
  await using hang = await startMockUpstream({ name: "hang", mode: "hang" });
  await using proxy = await startProxy(`
upstreams:
  h: { base_url: "${hang.baseUrl}", keys: [sk-honest-hang-01], timeout: { first_byte: 0.2 } }
retry: { max_attempts: 2, backoff_base: 0.01, backoff_max: 0.02 }
`);
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "m", messages: MESSAGES }),
  );
  assert.equal(err.status, 504);
  assert.equal(err.headers?.get("x-should-retry"), "false");
  assert.ok(Number(err.headers?.get("retry-after")) >= 1);
  assert.equal(hang.requestCount, 2, "retry.max_attempts upstream attempts, none from the SDK");
});

Deno.test("honest errors: an all-rate-limited pool is the SDK's RateLimitError with retry-after", async () => {
  const limited = '{"error":{"message":"Rate limit reached for requests","type":"requests"}}';
  await using up = failing(429, limited, { "retry-after": "120" });
  await using proxy = await startProxy(
    `
upstreams:
  u: { base_url: "${up.baseUrl}", keys: [sk-honest-rl-0001, sk-honest-rl-0002] }
`,
    { now: () => T0 },
  );
  const client = sdk(proxy);
  const first = await apiError(client.chat.completions.create({ model: "m", messages: MESSAGES }));
  assert.ok(first instanceof OpenAI.RateLimitError);
  assert.equal(first.message, "429 Rate limit reached for requests");
  assert.equal(first.headers?.get("retry-after"), "120");
  // two minutes is past what an SDK waits for: it would retry within a second, in vain
  assert.equal(first.headers?.get("x-should-retry"), "false");
  assert.equal(up.requests.length, 2, "each key once");
  // now nothing is tried at all: llm-balance's own 429
  const second = await apiError(client.chat.completions.create({ model: "m", messages: MESSAGES }));
  assert.ok(second instanceof OpenAI.RateLimitError);
  assert.equal(second.code, "all_keys_rate_limited");
  assert.match(second.message, /all 2 keys of upstream "u" are unavailable: 2 rate limited/);
  assert.equal(second.headers?.get("retry-after"), "120");
  assert.equal(second.headers?.get("x-should-retry"), "false");
  assert.equal(up.requests.length, 2, "no upstream attempt while every key rests");
});

Deno.test("honest errors: a short rate limit stays retryable, Retry-After saying when a key is back", async () => {
  await using up = failing(429, '{"error":{"message":"slow down"}}', { "retry-after": "7" });
  await using proxy = await startProxy(
    `
upstreams:
  u: { base_url: "${up.baseUrl}", keys: [sk-honest-rl-short-1] }
`,
    { now: () => T0 },
  );
  for (const expected of ["slow down", /1 rate limited/]) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, { model: "m", messages: [] });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("retry-after"), "7");
    assert.equal(res.headers.get("x-should-retry"), "true");
    const message = (await res.json()).error.message;
    if (typeof expected === "string") assert.equal(message, expected);
    else assert.match(message, expected);
  }
  assert.equal(up.requests.length, 1);
});

Deno.test("honest errors: a gateway's JSON error without an error member reaches the SDK's message", async () => {
  const body = '{"status":"failure","message":"Invalid config passed"}';
  await using gw = failing(400, body);
  await using proxy = await startProxy(`
upstreams:
  gw: { base_url: "${gw.baseUrl}", keys: [sk-honest-gateway-1] }
`);
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "m", messages: MESSAGES }),
  );
  assert.ok(err instanceof OpenAI.BadRequestError);
  assert.equal(err.message, "400 Invalid config passed");
  assert.equal(gw.requests.length, 1, "a client error is not retried");
  const res = await postJson(`${proxy.url}/v1/chat/completions`, { model: "m", messages: [] });
  assert.equal(res.status, 400);
  const json = await res.json();
  // the upstream's own members are all there
  assert.equal(json.status, "failure");
  assert.equal(json.message, "Invalid config passed");
  assert.equal(res.headers.get("retry-after"), null);
});

Deno.test("honest errors: a non-JSON upstream error is wrapped, its text quoted", async () => {
  await using gw = startScriptedUpstream(() =>
    new Response("upstream config invalid: model list empty", {
      status: 422,
      headers: { "content-type": "text/plain" },
    })
  );
  await using proxy = await startProxy(`
upstreams:
  gw: { base_url: "${gw.baseUrl}", keys: [sk-honest-gateway-2] }
`);
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "m", messages: MESSAGES }),
  );
  assert.equal(err.status, 422);
  assert.equal(
    err.message,
    '422 Upstream "gw" answered HTTP 422 Unprocessable Entity: upstream config invalid: model ' +
      "list empty",
  );
});

Deno.test("honest errors: a key echoed escaped, URL-encoded or in part is masked in answers and logs", async () => {
  const key = `sk-ECHO/${crypto.randomUUID().replaceAll("-", "")}`;
  await using echo = startScriptedUpstream((req) => {
    const sent = req.headers.get("authorization")!.replace(/^Bearer /, "");
    const escaped = sent.replace("/", "\\/");
    const unicode = [...sent.slice(8, 20)].map((c) =>
      `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`
    ).join("");
    const body = `{"error":{"message":"Invalid key ${escaped}; also ${sent.slice(0, 8)}${unicode}` +
      `${sent.slice(20)}; or ${sent.slice(0, -4)}****","key_url":"${encodeURIComponent(sent)}"}}`;
    return new Response(body, {
      status: 400,
      headers: {
        "content-type": "application/json",
        "x-debug-key": sent.slice(2, -2),
        "x-debug-url": encodeURIComponent(sent),
      },
    });
  });
  await using proxy = await startProxy(`
upstreams:
  echo: { base_url: "${echo.baseUrl}", keys: [${key}] }
`);
  const res = await postJson(`${proxy.url}/v1/chat/completions`, { model: "m", messages: [] });
  assert.equal(res.status, 400);
  const head = [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
  const text = await res.text();
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "m", messages: MESSAGES }),
  );
  await waitFor(() => requestLines(proxy).length >= 2, "both requests' log lines");
  const outputs = [head, text, `${err.message} ${JSON.stringify(err)}`, proxy.logs.join("\n")];
  assert.ok(echo.requests.length >= 2);
  /** Runs of 12 characters of the key's random part in a text, however escaped or encoded. */
  const leaks = (out: string) => {
    const plain = out
      .replace(/\\+u([0-9a-f]{4})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)))
      .replace(/\\+\//g, "/")
      .replace(/%([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
    const found: string[] = [];
    for (let i = 8; i + 12 <= key.length; i++) {
      if (plain.includes(key.slice(i, i + 12))) found.push(key.slice(i, i + 12));
    }
    return found;
  };
  for (const out of outputs) assert.deepEqual(leaks(out), [], out);
  // the check sees the key in what the upstream sent, in each of its forms
  const raw = await fetch(`${echo.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
  });
  const sent = await raw.text();
  for (const form of sent.split(";")) assert.notDeepEqual(leaks(form), [], form);
  assert.notDeepEqual(leaks(raw.headers.get("x-debug-key")!), []);
  const masked = JSON.parse(text).error;
  assert.match(
    masked.message,
    /^Invalid key sk-E\.\.\.\w{4}; also sk-E\.\.\.\w{4}; or sk-E\.\.\.\w{4}\*\*\*\*$/,
  );
  assert.equal(masked.key_url, proxy.app.rt.masks.get(key));
  assert.ok(proxy.logRecords().some((l) => l.msg === "a key was masked in a response to a client"));
});
