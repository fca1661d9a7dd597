import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import modelsPlugin from "../../../plugins/middleware/models.ts";
import { builtins } from "../../../plugins/mod.ts";
import { App } from "../../../src/app.ts";
import { parseConfigText } from "../../../src/config/mod.ts";
import type { ClientKeyConfig } from "../../../src/config/types.ts";
import type { RequestContext } from "../../../src/plugin.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { errorResponse } from "../../../src/errors.ts";
import { Logger } from "../../../src/logger.ts";
import { startProxy } from "../../helpers/proxy.ts";

const KEY = "sk-models-upstream-key-000000000000000001";
const CLIENT = "cl-models-client-key-00000000000000000001";
const NARROW = "cl-models-narrow-key-00000000000000000002";

/** Loads the plugin from the config until plugins/mod.ts registers it as a built-in. */
const PLUGINS = builtins.some((p) => p.name === "models")
  ? ""
  : `plugins: ["${
    fileURLToPath(new URL("../../../plugins/middleware/models.ts", import.meta.url))
  }"]`;

function named(baseUrl: string): string {
  return `
auth:
  client_keys: [${CLIENT}, { key: ${NARROW}, models: [small] }]
upstreams:
  a: { base_url: "${baseUrl}", keys: [${KEY}] }
pools:
  gpt-4o: { upstreams: [a] }
  small: { upstreams: [a] }
  org/model: { upstreams: [a] }
${PLUGINS}
`;
}

/** Runs the models middleware alone. */
async function direct(
  text: string,
  path: string,
  options: { method?: string; client?: ClientKeyConfig } = {},
): Promise<{ res: Response | undefined; forwarded: boolean }> {
  const config = parseConfigText(text, "m.yaml", { env: () => undefined });
  config.plugins = [];
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
  try {
    const req = new Request(`http://proxy.test${path}`, { method: options.method ?? "GET" });
    const ctx = {
      req,
      url: new URL(req.url),
      path: new URL(req.url).pathname,
      search: new URL(req.url).search,
      app,
      rt: app.rt,
      startedAt: performance.now(),
      remoteAddr: "127.0.0.1",
      requestId: "t",
      client: options.client,
      res: undefined,
      log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
      done: undefined,
    } as RequestContext;
    let forwarded = false;
    try {
      await modelsPlugin.create(config, app.services())(ctx, () => {
        forwarded = true;
        return Promise.resolve();
      });
    } catch (err) {
      return { res: errorResponse(err), forwarded };
    }
    return { res: ctx.res, forwarded };
  } finally {
    await app.close();
  }
}

Deno.test("models lists the configured models in OpenAI's shape", async () => {
  const { res, forwarded } = await direct(named("http://127.0.0.1:9/v1"), "/v1/models");
  assert.equal(forwarded, false);
  assert.equal(res!.status, 200);
  assert.equal(res!.headers.get("content-type"), "application/json");
  const body = await res!.json();
  assert.equal(body.object, "list");
  assert.deepEqual(body.data.map((m: { id: string }) => m.id), ["gpt-4o", "small", "org/model"]);
  for (const m of body.data) {
    assert.equal(m.object, "model");
    assert.equal(typeof m.created, "number");
    assert.equal(m.owned_by, "llm-balance");
  }
});

Deno.test("models returns one model, with names holding a slash", async () => {
  const text = named("http://127.0.0.1:9/v1");
  const one = await direct(text, "/v1/models/org/model");
  assert.equal((await one.res!.json()).id, "org/model");
  const encoded = await direct(text, "/v1/models/org%2Fmodel");
  assert.equal((await encoded.res!.json()).id, "org/model");
  const missing = await direct(text, "/v1/models/nope");
  assert.equal(missing.res!.status, 404);
  assert.equal((await missing.res!.json()).error.code, "model_not_found");
  const malformed = await direct(text, "/v1/models/%E0%A4%A");
  assert.equal(malformed.res!.status, 404);
  await malformed.res!.body?.cancel();
});

Deno.test("models shows a restricted client key only its models", async () => {
  const text = named("http://127.0.0.1:9/v1");
  const client = { key: NARROW, name: "narrow", models: ["small"] };
  const list = await direct(text, "/v1/models", { client });
  assert.deepEqual((await list.res!.json()).data.map((m: { id: string }) => m.id), ["small"]);
  const hidden = await direct(text, "/v1/models/gpt-4o", { client });
  assert.equal(hidden.res!.status, 403);
  assert.equal((await hidden.res!.json()).error.code, "model_not_allowed");
});

Deno.test("models answers HEAD without a body", async () => {
  const { res } = await direct(named("http://127.0.0.1:9/v1"), "/v1/models", { method: "HEAD" });
  assert.equal(res!.status, 200);
  assert.equal(res!.body, null);
});

Deno.test("models lets other requests, and every request under a default pool, go on", async () => {
  const text = named("http://127.0.0.1:9/v1");
  for (
    const [path, method] of [["/v1/models", "POST"], ["/v1/modelsx", "GET"], [
      "/v1/chat/completions",
      "GET",
    ]]
  ) {
    assert.equal((await direct(text, path!, { method: method! })).forwarded, true, path);
  }
  const withDefault = `
upstreams:
  a: { base_url: "http://127.0.0.1:9/v1", keys: [${KEY}] }
pools:
  gpt-4o: { upstreams: [a] }
  default: { upstreams: [a] }
`;
  assert.equal((await direct(withDefault, "/v1/models")).forwarded, true);
});

Deno.test("models works end to end behind client auth, with the openai SDK", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(named(mock.baseUrl));
  const refused = await fetch(`${proxy.url}/v1/models`);
  assert.equal(refused.status, 401);
  await refused.body?.cancel();
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: CLIENT, maxRetries: 0 });
  const ids: string[] = [];
  for await (const m of await client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ["gpt-4o", "small", "org/model"]);
  const one = await client.models.retrieve("small");
  assert.equal(one.id, "small");
  assert.equal(mock.requests.length, 0, "answered without the upstream");
});

Deno.test("models forwards the list upstream when a default pool exists", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  a: { base_url: "${mock.baseUrl}", keys: [${KEY}] }
${PLUGINS}
`);
  const res = await fetch(`${proxy.url}/v1/models`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.ok(body.data.some((m: { id: string }) => m.id === "mock-model"));
  assert.equal(mock.requests.length, 1);
  assert.equal(mock.requests[0]!.path, "/v1/models");
});
