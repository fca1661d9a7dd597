/**
 * @module
 * End-to-end model fallbacks (`pools.<model>.fallbacks`): when every key of a pool is disabled
 * or spent, the first fallback pool that can serve does, with the body's `model` rewritten (the
 * upstream sees the fallback's model, streamed or not), `x-llm-balance-model` on the answer and
 * `served_model` in the request's log line; a pool that can serve never falls back; a queue does
 * not hold a request that a fallback can serve now; when no fallback can serve either, the
 * client gets the pool's honest 503.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { ManualClock } from "../helpers/clock.ts";
import { type ModelScopeMock, startModelScopeMock } from "../helpers/modelscope_mock.ts";
import { requestLines, waitFor } from "../helpers/e2e.ts";
import { apiError } from "../helpers/sdk_error.ts";

const BIG_KEY = "ms-big-key-00000000000001";
const SMALL_KEY = "ms-sml-key-00000000000002";
const T0 = Date.UTC(2026, 11, 7, 20, 0, 0);

/** Pools `big` (falls back to `small`) and `small`, each on its own upstream of the mock. */
function config(ms: ModelScopeMock, bigQuota = "", smallQuota = "", extra = ""): string {
  return `
upstreams:
  bigup: { base_url: "${ms.baseUrl}", keys: [${BIG_KEY}], quota: { ${bigQuota} } }
  smallup: { base_url: "${ms.baseUrl}", keys: [${SMALL_KEY}], quota: { ${smallQuota} } }
pools:
  big: { upstreams: [bigup], fallbacks: [small] }
  small: { upstreams: [smallup] }
${extra}`;
}

function sdk(proxy: TestProxy): OpenAI {
  return new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "client-key", maxRetries: 0 });
}

/** Asks for `big`; resolves with the answer and its headers. */
async function askBig(proxy: TestProxy) {
  const { data, response } = await sdk(proxy).chat.completions
    .create({ model: "big", messages: [{ role: "user", content: "hi" }] })
    .withResponse();
  return { text: data.choices[0]?.message.content, headers: response.headers };
}

async function adminDisable(proxy: TestProxy, key: string): Promise<void> {
  const c = [...proxy.app.rt.candidates.values()].find((c) => c.key?.reveal() === key)!;
  const res = await fetch(`${proxy.url}/admin/keys/${c.id}/disable`, {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  assert.equal(res.status, 200, await res.text());
}

Deno.test("fallbacks: a pool whose keys are disabled is served by its fallback, model rewritten", async () => {
  await using ms = startModelScopeMock();
  await using proxy = await startProxy(config(ms));
  const direct = await askBig(proxy);
  assert.equal(direct.headers.get("x-llm-balance-model"), null, "no fallback, no header");
  await adminDisable(proxy, BIG_KEY);
  const served = await askBig(proxy);
  assert.equal(served.text, "Hello from ModelScope");
  assert.equal(served.headers.get("x-llm-balance-model"), "small");
  assert.equal(served.headers.get("x-llm-balance-upstream"), "smallup");
  assert.deepEqual(ms.requests.map((r) => [r.key, r.model]), [
    [BIG_KEY, "big"],
    [SMALL_KEY, "small"],
  ]);
  assert.equal(JSON.parse(ms.requests[1]!.body).model, "small", "the body names the fallback");
  const chats = () => requestLines(proxy).filter((l) => l.path === "/v1/chat/completions");
  await waitFor(() => chats().length === 2, "both chat log lines");
  const [first, second] = chats();
  assert.equal(first?.served_model, undefined);
  assert.equal(second?.model, "big");
  assert.equal(second?.served_model, "small");
  assert.equal(second?.upstream, "smallup");
});

Deno.test("fallbacks: a pool whose keys are spent is served by its fallback, streams too", async () => {
  const clock = new ManualClock(T0);
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(config(ms, "requests_per_day: 1"), { clock });
  await askBig(proxy);
  const { data, response } = await sdk(proxy).chat.completions
    .create({ model: "big", messages: [{ role: "user", content: "hi" }], stream: true })
    .withResponse();
  let text = "";
  for await (const chunk of data) {
    text += chunk.choices[0]?.delta.content ?? "";
    assert.equal(chunk.model, "small");
  }
  assert.equal(text, "Hello from ModelScope");
  assert.equal(response.headers.get("x-llm-balance-model"), "small");
  assert.deepEqual(ms.requests.map((r) => [r.key, r.model, r.stream]), [
    [BIG_KEY, "big", false],
    [SMALL_KEY, "small", true],
  ]);
  // the next day the pool serves again by itself
  clock.set(Date.UTC(2026, 11, 8, 0, 0, 0));
  const back = await askBig(proxy);
  assert.equal(back.headers.get("x-llm-balance-model"), null);
  assert.equal(ms.requests.at(-1)?.key, BIG_KEY);
});

Deno.test("fallbacks: a request the fallback can serve now does not wait in the queue", async () => {
  const clock = new ManualClock(T0);
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(
    config(ms, "requests_per_day: 1", "", "queue: { max_wait: 20, max_length: 10 }"),
    { clock },
  );
  await askBig(proxy);
  const started = performance.now();
  const served = await askBig(proxy);
  assert.ok(performance.now() - started < 1000, "no wait for a key spent until tomorrow");
  assert.equal(served.headers.get("x-llm-balance-model"), "small");
});

Deno.test("fallbacks: when no fallback can serve either, the client gets the pool's honest 503", async () => {
  const clock = new ManualClock(T0);
  await using ms = startModelScopeMock({ now: clock.now });
  await using proxy = await startProxy(config(ms, "requests_per_day: 1"), { clock });
  await askBig(proxy);
  await adminDisable(proxy, SMALL_KEY);
  const err = await apiError(askBig(proxy));
  assert.equal(err.status, 503);
  assert.equal(
    (err.error as { message?: string }).message,
    'No upstream key can serve this request: the only key of upstream "bigup" has spent ' +
      "its quota; next reset 2026-12-08T00:00:00+00:00",
  );
  assert.equal(err.headers?.get("retry-after"), String(4 * 3600));
  assert.equal(err.headers?.get("x-llm-balance-model"), null);
  assert.equal(ms.arrivals(), 1, "nothing was sent upstream");
});
