import { builtins } from "../../../plugins/mod.ts";
import assert from "node:assert/strict";
import endpointsPlugin from "../../../plugins/middleware/endpoints.ts";
import { App } from "../../../src/app.ts";
import { parseConfigText } from "../../../src/config/mod.ts";
import type { RequestContext } from "../../../src/plugin.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { errorResponse } from "../../../src/errors.ts";
import { Logger } from "../../../src/logger.ts";
import { startProxy } from "../../helpers/proxy.ts";

const K1 = "sk-endpoints-upstream-key-0000000000001";
const K2 = "sk-endpoints-upstream-key-0000000000002";
const CLIENT = "cl-endpoints-client-key-000000000000001";
const ADMIN = "ad-endpoints-admin-key-0000000000000001";

function native(baseUrl: string, auth = ""): string {
  return `
${auth}
upstreams:
  a: { base_url: "${baseUrl}", keys: [${K1}, ${K2}] }
pools:
  gpt-4o: { upstreams: [a] }
  org/model v2: { upstreams: [a] }
`;
}

function get(url: string, key?: string, method = "GET"): Promise<Response> {
  return fetch(url, { method, headers: key ? { authorization: `Bearer ${key}` } : {} });
}

async function status(res: Response): Promise<number> {
  await res.body?.cancel();
  return res.status;
}

function chat(url: string, key?: string): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
  });
}

/** Runs the endpoints middleware alone on a request from `remoteAddr`. */
async function direct(
  configText: string,
  path: string,
  init: {
    method?: string;
    key?: string;
    remoteAddr: string;
    adminKey?: string;
    headers?: Record<string, string>;
  },
): Promise<{ res: Response; forwarded: boolean }> {
  const config = parseConfigText(configText, "e.yaml", { env: () => undefined });
  if (init.adminKey !== undefined) config.adminKey = init.adminKey;
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
  try {
    const headers = new Headers(init.headers);
    if (init.key) headers.set("authorization", `Bearer ${init.key}`);
    const req = new Request(`http://proxy.test${path}`, { method: init.method ?? "GET", headers });
    const ctx = {
      req,
      url: new URL(req.url),
      path: new URL(req.url).pathname,
      search: new URL(req.url).search,
      app,
      rt: app.rt,
      startedAt: performance.now(),
      remoteAddr: init.remoteAddr,
      requestId: "t",
      client: undefined,
      res: undefined,
      log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
      done: undefined,
    } as RequestContext;
    let forwarded = false;
    try {
      await endpointsPlugin.create(config, app.services())(ctx, () => {
        forwarded = true;
        return Promise.resolve();
      });
    } catch (err) {
      return { res: errorResponse(err), forwarded };
    }
    return { res: ctx.res ?? new Response(null, { status: 599 }), forwarded };
  } finally {
    await app.close();
  }
}

Deno.test("endpoints: /health needs no key and says 503 when nothing is usable", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    native(mock.baseUrl, `auth: { admin_key: ${ADMIN}, client_keys: [${CLIENT}] }`),
  );
  const res = await get(`${proxy.url}/health`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.status, "ok");
  assert.deepEqual(body.pools["gpt-4o"], { available: 2, total: 2 });
  assert.equal(await status(await get(`${proxy.url}/health`, undefined, "HEAD")), 200);
  for (const c of proxy.app.rt.candidates.values()) proxy.app.board.setDisabled(c, true);
  const down = await get(`${proxy.url}/health`);
  assert.equal(down.status, 503);
  assert.equal((await down.json()).status, "unavailable");
});

Deno.test("endpoints: reading is open without any key configured", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  for (const p of ["/stats", "/metrics", "/v1/stats/load_balancers", "/v1/stats/models/gpt-4o"]) {
    assert.equal(await status(await get(proxy.url + p)), 200, p);
  }
});

Deno.test("endpoints: without an admin key, reading needs a client key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    native(mock.baseUrl, `auth: { client_keys: [${CLIENT}] }`),
  );
  for (const p of ["/stats", "/metrics", "/v1/stats/load_balancers"]) {
    const res = await get(proxy.url + p);
    assert.equal(res.status, 401, p);
    assert.equal((await res.json()).error.type, "authentication_error");
    assert.equal(await status(await get(proxy.url + p, CLIENT)), 200, p);
  }
});

Deno.test("endpoints: with an admin key, only the admin key reads (native config)", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    native(mock.baseUrl, `auth: { admin_key: ${ADMIN}, client_keys: [${CLIENT}] }`),
  );
  for (const p of ["/stats", "/metrics", "/v1/stats/load_balancers", "/v1/stats/models/gpt-4o"]) {
    const refused = await get(proxy.url + p, CLIENT);
    assert.equal(refused.status, 401, p);
    assert.equal((await refused.json()).error.code, "admin_key_required");
    assert.equal(await status(await get(proxy.url + p)), 401, p);
    assert.equal(await status(await get(proxy.url + p, ADMIN)), 200, p);
  }
  const xApiKey = await fetch(`${proxy.url}/stats`, { headers: { "x-api-key": ADMIN } });
  assert.equal(await status(xApiKey), 200);
  assert.equal(mock.requests.length, 0);
});

const SEED_B = (baseUrl: string) => `
auth:
  default_auth:
    api_keys: ["${CLIENT}"]
models:
  gpt-4o:
    upstreams:
      - { api_base: "${baseUrl}", api_key: "${K1}" }
`;

Deno.test("endpoints: Seed B's stats endpoints accept a client key, as Seed B did", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(SEED_B(mock.baseUrl));
  assert.equal(await status(await get(`${proxy.url}/v1/stats/load_balancers`)), 401);
  assert.equal(await status(await get(`${proxy.url}/v1/stats/load_balancers`, "wrong")), 401);
  assert.equal(await status(await get(`${proxy.url}/v1/stats/load_balancers`, CLIENT)), 200);
  assert.equal(await status(await get(`${proxy.url}/v1/stats/models/gpt-4o`, CLIENT)), 200);
});

Deno.test("endpoints: with an admin key, Seed B client keys read only Seed B's endpoints", async () => {
  const text = SEED_B("http://127.0.0.1:9/v1");
  const withAdmin = { remoteAddr: "127.0.0.1", adminKey: ADMIN };
  const lb = await direct(text, "/v1/stats/load_balancers", { ...withAdmin, key: CLIENT });
  assert.equal(await status(lb.res), 200);
  const model = await direct(text, "/v1/stats/models/gpt-4o", { ...withAdmin, key: CLIENT });
  assert.equal(await status(model.res), 200);
  assert.equal(
    await status((await direct(text, "/stats", { ...withAdmin, key: CLIENT })).res),
    401,
  );
  assert.equal(
    await status((await direct(text, "/metrics", { ...withAdmin, key: CLIENT })).res),
    401,
  );
  assert.equal(await status((await direct(text, "/stats", { ...withAdmin, key: ADMIN })).res), 200);
  const act = await direct(text, "/admin/keys", { ...withAdmin, key: CLIENT });
  assert.equal(await status(act.res), 401);
});

Deno.test("endpoints: /v1/stats/models/{model} finds pools by name, default included", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  const one = await (await get(`${proxy.url}/v1/stats/models/gpt-4o`)).json();
  assert.equal(one.model, "gpt-4o");
  assert.equal(one.total_servers, 2);
  const spaced = await get(`${proxy.url}/v1/stats/models/${encodeURIComponent("org/model v2")}`);
  assert.equal((await spaced.json()).model, "org/model v2");
  const slashed = await get(`${proxy.url}/v1/stats/models/org/model%20v2`);
  assert.equal((await slashed.json()).model, "org/model v2");
  const missing = await get(`${proxy.url}/v1/stats/models/nope`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "model_not_found");
  assert.equal(await status(await get(`${proxy.url}/v1/stats/models/%E0%A4%A`)), 400);
  await using withDefault = await startProxy(`
upstreams:
  a: { base_url: "${mock.baseUrl}", keys: [${K1}] }
`);
  const d = await (await get(`${withDefault.url}/v1/stats/models/default`)).json();
  assert.equal(d.model, "default");
});

Deno.test("endpoints: unknown stats paths and other methods are never forwarded", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl));
  assert.equal(await status(await get(`${proxy.url}/v1/stats/other`)), 404);
  assert.equal(await status(await get(`${proxy.url}/v1/stats/models/`)), 404);
  const post = await get(`${proxy.url}/stats`, undefined, "POST");
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  assert.equal(
    await status(await get(`${proxy.url}/v1/stats/load_balancers`, undefined, "DELETE")),
    405,
  );
  assert.equal(await status(await get(`${proxy.url}/health`, undefined, "POST")), 405);
  assert.equal(mock.requests.length, 0);
});

Deno.test("endpoints: admin lists keys by id and mask, never the key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const res = await get(`${proxy.url}/admin/keys`, ADMIN);
  const text = await res.text();
  assert.equal(res.status, 200);
  assert.ok(!text.includes(K1) && !text.includes(K2));
  const keys = JSON.parse(text).keys as { id: string; key: string; upstream: string }[];
  assert.equal(keys.length, 2);
  for (const k of keys) {
    assert.match(k.id, /^a:[0-9a-f]{13}$/);
    assert.equal(k.upstream, "a");
  }
});

Deno.test("endpoints: admin disable, enable and reset a key by id or mask", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const [c1, c2] = [...proxy.app.rt.candidates.values()];
  const post = (path: string) => get(`${proxy.url}${path}`, ADMIN, "POST");
  const off = await post(`/admin/keys/${encodeURIComponent(c1!.id)}/disable`);
  assert.equal(off.status, 200);
  const body = await off.json();
  assert.equal(body.action, "disable");
  assert.equal(body.keys[0].state, "disabled");
  assert.equal(c1!.state.disabled, true);
  for (let i = 0; i < 4; i++) await status(await chat(proxy.url));
  const served = mock.requests.map((r) => r.key);
  assert.deepEqual(served, [K2, K2, K2, K2], "a disabled key gets no traffic");
  const on = await post(`/admin/keys/${encodeURIComponent(c1!.mask)}/enable`);
  assert.equal((await on.json()).keys[0].state, "healthy");
  proxy.app.board.end(c2!, "rate_limited", { status: 429 });
  assert.equal(
    (await (await post(`/admin/keys/${encodeURIComponent(c2!.id)}/reset`)).json()).keys[0].state,
    "healthy",
  );
});

Deno.test("endpoints: admin acts on every key of an upstream", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const res = await get(`${proxy.url}/admin/upstreams/a/disable`, ADMIN, "POST");
  assert.equal((await res.json()).keys.length, 2);
  const refused = await chat(proxy.url);
  assert.equal(refused.status, 503);
  await refused.body?.cancel();
  assert.equal(
    await status(await get(`${proxy.url}/admin/upstreams/a/enable`, ADMIN, "POST")),
    200,
  );
  assert.equal(await status(await chat(proxy.url)), 200);
});

Deno.test("endpoints: admin answers 404 or 400 for what it does not know", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(native(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const [c] = [...proxy.app.rt.candidates.values()];
  const id = encodeURIComponent(c!.id);
  const cases: [string, string, number][] = [
    ["POST", "/admin/keys/nope/disable", 404],
    ["POST", "/admin/upstreams/nope/disable", 404],
    ["POST", `/admin/keys/${id}/explode`, 400],
    ["GET", `/admin/keys/${id}/disable`, 404],
    ["POST", `/admin/keys/${id}`, 404],
    ["POST", `/admin/keys/${id}/disable/more`, 404],
    ["GET", "/admin", 404],
    ["POST", "/admin/other/x/disable", 404],
    ["POST", "/admin/keys/%E0%A4%A/disable", 400],
  ];
  for (const [method, path, code] of cases) {
    assert.equal(
      await status(await get(proxy.url + path, ADMIN, method)),
      code,
      `${method} ${path}`,
    );
  }
  assert.equal(c!.state.disabled, false);
  assert.equal(mock.requests.length, 0);
});

Deno.test("endpoints: admin needs the admin key when one is configured", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    native(mock.baseUrl, `auth: { admin_key: ${ADMIN}, client_keys: [${CLIENT}] }`),
  );
  for (const key of [undefined, CLIENT, "wrong"]) {
    const res = await get(`${proxy.url}/admin/keys`, key);
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.code, "admin_key_required");
  }
});

Deno.test("endpoints: without an admin key, admin takes loopback requests with a client key", async () => {
  const text = native("http://127.0.0.1:9/v1", `auth: { client_keys: [${CLIENT}] }`);
  const local = await direct(text, "/admin/keys", { remoteAddr: "127.0.0.1", key: CLIENT });
  assert.equal(await status(local.res), 200);
  const noKey = await direct(text, "/admin/keys", { remoteAddr: "127.0.0.1" });
  assert.equal(await status(noKey.res), 401);
  const remote = await direct(text, "/admin/keys", { remoteAddr: "10.1.2.3", key: CLIENT });
  assert.equal(remote.res.status, 403);
  assert.equal((await remote.res.json()).error.code, "admin_loopback_only");
  const open = native("http://127.0.0.1:9/v1");
  assert.equal(await status((await direct(open, "/admin/keys", { remoteAddr: "::1" })).res), 200);
  assert.equal(
    await status((await direct(open, "/admin/keys", { remoteAddr: "192.168.0.2" })).res),
    403,
  );
  const withAdmin = native("http://127.0.0.1:9/v1", `auth: { admin_key: ${ADMIN} }`);
  const far = await direct(withAdmin, "/admin/keys", { remoteAddr: "10.1.2.3", key: ADMIN });
  assert.equal(await status(far.res), 200);
});

Deno.test("endpoints: other requests go on down the chain", async () => {
  const text = native("http://127.0.0.1:9/v1");
  for (const path of ["/v1/chat/completions", "/v1/models", "/statsx", "/v1/statsy"]) {
    const { forwarded } = await direct(text, path, { remoteAddr: "127.0.0.1", method: "POST" });
    assert.equal(forwarded, true, path);
  }
});

/** What `direct` answered: status and error code. */
async function outcome(p: Promise<{ res: Response }>): Promise<string> {
  const { res } = await p;
  const code = res.status >= 400 ? (await res.json()).error.code : (await res.body?.cancel(), "");
  return code === "" ? String(res.status) : `${res.status} ${code}`;
}

Deno.test("endpoints: without any key, stats and admin answer only allowed Host names", async () => {
  const text = native("http://127.0.0.1:9/v1", "server: { admin_hosts: [llm.internal] }");
  const at = (path: string, host: string, method = "GET") =>
    outcome(direct(text, path, {
      remoteAddr: "127.0.0.1",
      method,
      headers: { host, "content-type": "application/json" },
    }));
  const read = ["/stats", "/metrics", "/v1/stats/load_balancers", "/admin/keys"];
  for (const path of read) {
    for (const host of ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", "llm.internal."]) {
      assert.equal(await at(path, host), "200", `${path} ${host}`);
    }
    for (const host of ["evil.example:8080", "localhost.evil.example", "a@127.0.0.1"]) {
      assert.equal(await at(path, host), "403 host_not_allowed", `${path} ${host}`);
    }
  }
  assert.equal(
    await at("/admin/upstreams/a/disable", "evil.example:8080", "POST"),
    "403 host_not_allowed",
  );
  assert.equal(await at("/admin/upstreams/a/disable", "localhost:8080", "POST"), "200");
  assert.equal(await at("/health", "evil.example:8080"), "200", "/health answers any Host");
});

Deno.test("endpoints: a configured key lifts the Host check (the key guards)", async () => {
  const foreign = { host: "rebound.example:8080" };
  const withAdmin = native("http://127.0.0.1:9/v1", `auth: { admin_key: ${ADMIN} }`);
  const asAdmin = { remoteAddr: "127.0.0.1", key: ADMIN, headers: foreign };
  assert.equal(await outcome(direct(withAdmin, "/stats", asAdmin)), "200");
  assert.equal(await outcome(direct(withAdmin, "/admin/keys", asAdmin)), "200");
  const withClients = native("http://127.0.0.1:9/v1", `auth: { client_keys: [${CLIENT}] }`);
  const asClient = { remoteAddr: "127.0.0.1", key: CLIENT, headers: foreign };
  assert.equal(await outcome(direct(withClients, "/stats", asClient)), "200");
  assert.equal(await outcome(direct(withClients, "/admin/keys", asClient)), "200");
  assert.equal(
    await outcome(direct(withClients, "/stats", { remoteAddr: "127.0.0.1", headers: foreign })),
    "401 invalid_api_key",
  );
});

Deno.test("endpoints: admin refuses another site's Origin, with or without an admin key", async () => {
  const open = native("http://127.0.0.1:9/v1");
  const withAdmin = native("http://127.0.0.1:9/v1", `auth: { admin_key: ${ADMIN} }`);
  const act = "/admin/upstreams/a/disable";
  for (const origin of ["http://evil.example", "null", "http://127.0.0.1:3000"]) {
    const headers = { host: "127.0.0.1:8080", origin, "content-type": "application/json" };
    const base = { remoteAddr: "127.0.0.1", headers };
    assert.equal(
      await outcome(direct(open, act, { ...base, method: "POST" })),
      "403 cross_origin_refused",
      origin,
    );
    assert.equal(await outcome(direct(open, "/admin/keys", base)), "403 cross_origin_refused");
    assert.equal(
      await outcome(direct(withAdmin, act, { ...base, method: "POST", key: ADMIN })),
      "403 cross_origin_refused",
      origin,
    );
    assert.equal(await outcome(direct(open, "/stats", base)), "200", "reads follow server.cors");
  }
  const same = { host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" };
  const sameOrigin = { remoteAddr: "127.0.0.1", method: "POST", key: ADMIN, headers: same };
  assert.equal(await outcome(direct(withAdmin, act, sameOrigin)), "200");
});

Deno.test("endpoints: without an admin key, POST /admin needs JSON or a key header", async () => {
  const open = native("http://127.0.0.1:9/v1");
  const act = "/admin/upstreams/a/disable";
  const post = (headers: Record<string, string>) =>
    outcome(direct(open, act, { remoteAddr: "127.0.0.1", method: "POST", headers }));
  assert.equal(await post({}), "415 admin_json_required");
  assert.equal(await post({ "content-type": "text/plain" }), "415 admin_json_required");
  assert.equal(
    await post({ "content-type": "application/x-www-form-urlencoded" }),
    "415 admin_json_required",
  );
  assert.equal(await post({ "content-type": "application/json" }), "200");
  assert.equal(await post({ authorization: "Bearer anything" }), "200");
  const getKeys = direct(open, "/admin/keys", { remoteAddr: "127.0.0.1" });
  assert.equal(await outcome(getKeys), "200", "listing needs no content type");
  const clients = native("http://127.0.0.1:9/v1", `auth: { client_keys: [${CLIENT}] }`);
  const withClient = { remoteAddr: "127.0.0.1", method: "POST", key: CLIENT };
  assert.equal(await outcome(direct(clients, act, withClient)), "200", "the key header suffices");
});
