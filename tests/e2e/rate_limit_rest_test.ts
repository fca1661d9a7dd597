/**
 * @module
 * End-to-end rate limits and quota, with an injected clock: a 429 rests that key (not the
 * upstream) until Retry-After or the reset headers say, and the request is retried at once on
 * another key; an exhausted quota rests the key until its reset; when every key rests, the
 * client gets a 503 saying why with a Retry-After of the earliest return.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { KEY_A, MASK_A, MESSAGES, sdk, stats, twoUpstreams } from "../helpers/failures.ts";
import { apiError } from "../helpers/sdk_error.ts";

const T0 = Date.UTC(2025, 0, 1, 0, 0, 0);

async function chat(proxy: TestProxy): Promise<string | null> {
  const { response } = await sdk(proxy).chat.completions
    .create({ model: "gpt-x", messages: MESSAGES })
    .withResponse();
  return response.headers.get("x-llm-balance-upstream");
}

Deno.test("proxy rests a key answering 429 until its Retry-After and retries at once elsewhere", async () => {
  let t = T0;
  await using a = await startMockUpstream({ name: "a", mode: "rate_limit" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b), { now: () => t });
  const started = performance.now();
  assert.equal(await chat(proxy), "b");
  assert.ok(performance.now() - started < 1000, "no backoff before trying another key");
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.state, "resting");
  assert.equal(s[MASK_A]?.reason, "rate limited");
  assert.equal(s[MASK_A]?.until, new Date(T0 + 2000).toISOString(), "Retry-After: 2");
  assert.equal(s[MASK_A]?.consecutive_failures, 0, "a rate limit is no health failure");
  assert.equal(await chat(proxy), "b", "a resting key gets no traffic");
  assert.equal(a.requestCount, 1);
  await a.setMode("ok");
  t += 1999;
  assert.equal(await chat(proxy), "b");
  t += 1;
  assert.equal(await chat(proxy), "a", "the rest expires by time alone");
  assert.equal(a.requestCount, 2);
  const rests = proxy.logRecords().filter((l) => String(l.msg).startsWith("key resting"));
  assert.equal(rests.length, 1);
  assert.equal(rests[0]?.key, MASK_A);
});

Deno.test("proxy rests only the rate-limited key, not its whole upstream", async () => {
  const t = T0;
  await using m = await startMockUpstream({ name: "m", keys: ["sk-good-00000000000002"] });
  const fetchFn: typeof fetch = (input, init) => {
    const auth = new Headers(init?.headers).get("authorization");
    if (auth === "Bearer sk-limited-000000000001") {
      return Promise.resolve(
        new Response('{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}', {
          status: 429,
          headers: {
            "content-type": "application/json",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-remaining-tokens": "100",
            "x-ratelimit-reset-tokens": "1s",
          },
        }),
      );
    }
    return fetch(input, init);
  };
  await using proxy = await startProxy(
    `
upstreams:
  m: { base_url: "${m.baseUrl}", keys: [sk-limited-000000000001, sk-good-00000000000002] }
`,
    { now: () => t, fetch: fetchFn },
  );
  assert.equal(await chat(proxy), "m");
  const s = await stats(proxy);
  const limited = s["sk-l...0001"];
  assert.equal(limited?.state, "resting");
  assert.equal(limited?.until, new Date(T0 + 360_000).toISOString(), "x-ratelimit-reset-requests");
  assert.equal(s["sk-g...0002"]?.state, "healthy");
  assert.equal(m.requestCount, 1);
  assert.equal(m.requests[0]?.key, "sk-good-00000000000002");
});

Deno.test("proxy takes out a key whose quota is exhausted, at most health.quota_rest", async () => {
  const t = T0;
  await using a = await startMockUpstream({ name: "a", mode: "quota" });
  await using b = await startMockUpstream({ name: "b" });
  await using proxy = await startProxy(twoUpstreams(a, b, "health: { quota_rest: 7200 }"), {
    now: () => t,
  });
  assert.equal(await chat(proxy), "b");
  const s = await stats(proxy);
  assert.equal(s[MASK_A]?.state, "spent");
  assert.equal(s[MASK_A]?.reason, "spent its quota");
  assert.equal(s[MASK_A]?.until, new Date(T0 + 7_200_000).toISOString());
  assert.equal(s[MASK_A]?.last_error, "quota");
  const line = proxy.logRecords().find((l) => l.msg === "key out of quota until its reset");
  assert.equal(line?.key, MASK_A);
});

Deno.test("proxy shows the 429 when the only key is rate limited, without hammering it", async () => {
  const t = T0;
  await using a = await startMockUpstream({ name: "a", mode: "rate_limit" });
  await using proxy = await startProxy(
    `
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}] }
`,
    { now: () => t },
  );
  const err = await apiError(
    sdk(proxy).chat.completions.create({ model: "gpt-x", messages: MESSAGES }),
  );
  assert.ok(err instanceof OpenAI.RateLimitError);
  assert.equal(err.headers?.get("retry-after"), "2");
  assert.equal(a.requestCount, 1, "a resting key is not retried");
});

Deno.test("proxy answers 503 saying why, with Retry-After, when every key is resting", async () => {
  let t = T0;
  await using m = await startMockUpstream({
    name: "m",
    mode: "rate_limit",
    keys: ["sk-k1-0000000000000001", "sk-k2-0000000000000002"],
  });
  await using proxy = await startProxy(
    `
upstreams:
  m:
    base_url: "${m.baseUrl}"
    keys: [sk-k1-0000000000000001, sk-k2-0000000000000002, sk-k3-0000000000000003]
`,
    { now: () => t },
  );
  const client = sdk(proxy);
  await apiError(client.chat.completions.create({ model: "gpt-x", messages: MESSAGES }));
  assert.equal(m.requestCount, 3, "two 429s and one 401");
  t += 500;
  const err = await apiError(
    client.chat.completions.create({ model: "gpt-x", messages: MESSAGES }),
  );
  assert.equal(err.status, 503);
  assert.equal(err.type, "service_unavailable");
  assert.equal(err.code, "no_upstream_available");
  assert.equal(
    (err.error as { message?: string }).message,
    'No upstream key can serve this request: all 3 keys of upstream "m" are unavailable: ' +
      "2 rate limited, 1 refused by the upstream (401/403)",
  );
  assert.equal(err.headers?.get("retry-after"), "2", "the earliest key returns in 1.5 s");
  assert.equal(m.requestCount, 3, "no upstream attempt while every key rests");
});
