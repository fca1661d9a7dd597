/**
 * @module
 * End-to-end client authentication with the official openai SDK and raw requests: keys
 * required, refused and allowed per model, rate limits per client key with Retry-After, Seed B's
 * client keys and rate limit, and `serve` refusing a non-loopback address without client keys.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { runCli, startServe } from "../helpers/cli.ts";

const UPSTREAM = "sk-auth-e2e-upstream-key-0000000000000001";
const ALICE = "cl-auth-e2e-alice-000000000000000000000001";
const BOB = "cl-auth-e2e-bob-00000000000000000000000002";
const CAROL = "cl-auth-e2e-carol-000000000000000000000003";

function native(baseUrl: string): string {
  return `
auth:
  client_keys:
    - { key: ${ALICE}, name: alice }
    - { key: ${BOB}, name: bob, models: [gpt-4o-mini] }
    - { key: ${CAROL}, name: carol, rate_limit: 3 }
upstreams:
  m: { base_url: "${baseUrl}", keys: [${UPSTREAM}] }
`;
}

function sdk(url: string, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
}

const HI = [{ role: "user" as const, content: "hi" }];

Deno.test("e2e auth: the SDK is refused without a valid client key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  const raw = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: HI }),
  });
  assert.equal(raw.status, 401);
  assert.equal((await raw.json()).error.code, "missing_api_key");
  for (const key of ["cl-not-a-key", ALICE.slice(0, -1), `${ALICE}x`]) {
    const err = await sdk(proxy.url, key).chat.completions.create({ model: "gpt-4o", messages: HI })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
    assert.equal(err.status, 401);
    assert.equal((err.error as { type?: string }).type, "authentication_error");
  }
  assert.equal(mock.requests.length, 0);
});

Deno.test("e2e auth: the SDK works with a client key, streaming included", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  const client = sdk(proxy.url, ALICE);
  const done = await client.chat.completions.create({ model: "gpt-4o", messages: HI });
  assert.equal(done.object, "chat.completion");
  const stream = await client.chat.completions.create({
    model: "gpt-4o",
    messages: HI,
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
  assert.equal(text, "Hello from the mock upstream");
  assert.deepEqual(mock.requests.map((r) => r.key), [UPSTREAM, UPSTREAM]);
});

Deno.test("e2e auth: Anthropic-style clients authenticate with x-api-key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  const res = await fetch(`${proxy.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": ALICE },
    body: JSON.stringify({ model: "claude", max_tokens: 5, messages: HI }),
  });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).type, "message");
  assert.equal(mock.requests[0]!.key, UPSTREAM);
});

Deno.test("e2e auth: a client key restricted to some models gets 403 for the others", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  const bob = sdk(proxy.url, BOB);
  const ok = await bob.chat.completions.create({ model: "gpt-4o-mini", messages: HI });
  assert.equal(ok.model, "gpt-4o-mini");
  const err = await bob.chat.completions.create({ model: "gpt-4o", messages: HI }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof OpenAI.PermissionDeniedError, String(err));
  assert.equal(err.code, "model_not_allowed");
  const streamErr = await bob.chat.completions.create({
    model: "gpt-4o",
    messages: HI,
    stream: true,
  })
    .then(() => undefined, (e: unknown) => e);
  assert.ok(streamErr instanceof OpenAI.PermissionDeniedError);
  assert.equal(mock.requests.length, 1, "refused requests never reach the upstream");
  // the other keys may use any model
  const alice = await sdk(proxy.url, ALICE).chat.completions.create({
    model: "gpt-4o",
    messages: HI,
  });
  assert.equal(alice.model, "gpt-4o");
});

Deno.test("e2e auth: rate limit per client key with Retry-After", async () => {
  const clock = { t: 1_750_000_000_000 };
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl), { now: () => clock.t });
  const carol = sdk(proxy.url, CAROL);
  for (let i = 0; i < 3; i++) {
    const { response } = await carol.chat.completions.create({ model: "gpt-4o", messages: HI })
      .withResponse();
    assert.equal(response.headers.get("x-ratelimit-remaining-requests"), String(2 - i));
  }
  const err = await carol.chat.completions.create({ model: "gpt-4o", messages: HI }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof OpenAI.RateLimitError, String(err));
  assert.equal(err.headers.get("retry-after"), "20");
  assert.equal(err.headers.get("x-ratelimit-limit-requests"), "3");
  assert.equal(err.code, "rate_limit_exceeded");
  // alice has no limit, and carol's bucket is hers alone
  for (let i = 0; i < 5; i++) {
    await sdk(proxy.url, ALICE).chat.completions.create({ model: "gpt-4o", messages: HI });
  }
  assert.equal(mock.requests.length, 8);
  clock.t += 20_000;
  const again = await carol.chat.completions.create({ model: "gpt-4o", messages: HI });
  assert.equal(again.object, "chat.completion");
});

Deno.test("e2e auth: Seed B's client keys and rate limit work unchanged", async () => {
  const clock = { t: 1_750_000_000_000 };
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    `
auth:
  default_auth:
    api_keys: ["${ALICE}"]
models:
  gpt-3.5-turbo:
    upstreams:
      - api_base: "${mock.baseUrl}"
        api_key: "${UPSTREAM}"
rate_limit:
  enabled: true
  requests_per_minute: 2
`,
    { now: () => clock.t },
  );
  const none = await sdk(proxy.url, "wrong").chat.completions.create({
    model: "gpt-3.5-turbo",
    messages: HI,
  }).then(() => undefined, (e: unknown) => e);
  assert.ok(none instanceof OpenAI.AuthenticationError);
  const alice = sdk(proxy.url, ALICE);
  await alice.chat.completions.create({ model: "gpt-3.5-turbo", messages: HI });
  await alice.chat.completions.create({ model: "gpt-3.5-turbo", messages: HI });
  const limited = await alice.chat.completions.create({ model: "gpt-3.5-turbo", messages: HI })
    .then(() => undefined, (e: unknown) => e);
  assert.ok(limited instanceof OpenAI.RateLimitError);
  assert.equal(limited.headers.get("retry-after"), "30");
  const stats = await fetch(`${proxy.url}/v1/stats/load_balancers`, {
    headers: { authorization: `Bearer ${ALICE}` },
  });
  assert.equal(stats.status, 200, "Seed B's stats accept a client key");
  await stats.body?.cancel();
});

Deno.test("e2e auth: /health and preflights never need a key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  const h = await fetch(`${proxy.url}/health`);
  assert.equal(h.status, 200);
  await h.body?.cancel();
  const pre = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: "https://x.example", "access-control-request-method": "POST" },
  });
  assert.equal(pre.status, 204);
  await pre.body?.cancel();
});

async function writeConfig(text: string): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-auth-" });
  const path = `${dir}/config.yaml`;
  await Deno.writeTextFile(path, text);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("e2e auth: serve refuses a non-loopback address without client keys", async () => {
  await using file = await writeConfig(`
upstreams:
  m: { base_url: "http://127.0.0.1:9/v1", keys: [${UPSTREAM}] }
`);
  const r = await runCli(["serve", "--config", file.path, "--host", "0.0.0.0", "--port", "0"]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, "", "nothing listened");
  assert.match(r.stderr, /0\.0\.0\.0/);
  assert.match(r.stderr, /client.keys|client_keys/);
  assert.match(r.stderr, /allow_unauthenticated_remote/);
  assert.ok(!r.stderr.includes(UPSTREAM));
});

Deno.test("e2e auth: serve binds a non-loopback address when the config says so", async () => {
  for (
    const extra of [
      "server: { allow_unauthenticated_remote: true }",
      `auth: { client_keys: [${ALICE}] }`,
    ]
  ) {
    await using file = await writeConfig(`
${extra}
upstreams:
  m: { base_url: "http://127.0.0.1:9/v1", keys: [${UPSTREAM}] }
`);
    await using served = await startServe([
      "serve",
      "--config",
      file.path,
      "--host",
      "0.0.0.0",
      "--port",
      "0",
    ]);
    assert.match(served.url, /^http:\/\/(0\.0\.0\.0|\[::\]|[\d.]+):\d+$/, extra);
    const status = await served.close();
    assert.equal(status.code, 0);
  }
});
