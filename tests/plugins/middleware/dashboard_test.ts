/**
 * @module
 * Tests of the dashboard middleware over real HTTP: the page and its headers, the data, the
 * redirect from `/`, the actions, and every access rule (the admin key by Basic or Bearer, a
 * 401 that asks the browser for it and shows nothing, client keys, keyless loopback and Host
 * checks, cross-site requests refused even with valid Basic credentials); no answer ever holds a
 * key.
 */

import assert from "node:assert/strict";
import dashboardPlugin, { DASHBOARD_CSP } from "../../../plugins/middleware/dashboard.ts";
import { builtins } from "../../../plugins/mod.ts";
import { App } from "../../../src/app.ts";
import { parseConfigText } from "../../../src/config/mod.ts";
import { errorResponse } from "../../../src/errors.ts";
import { Logger } from "../../../src/logger.ts";
import type { RequestContext } from "../../../src/plugin.ts";
import { DASHBOARD_HTML } from "../../../src/admin/dashboard_page.ts";
import type { DashboardData } from "../../../src/admin/dashboard_types.ts";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { rawRequest } from "../../helpers/e2e.ts";
import { startProxy, type TestProxy } from "../../helpers/proxy.ts";

const K1 = "sk-dashboard-mw-upstream-key-0000000001";
const K2 = "sk-dashboard-mw-upstream-key-0000000002";
const ADMIN = "ad-dashboard-mw-admin-key-000000000001";
const CLIENT = "cl-dashboard-mw-client-key-00000000001";
const SECRETS = [K1, K2, ADMIN, CLIENT];

function config(baseUrl: string, auth = ""): string {
  return `
${auth}
upstreams:
  a: { base_url: "${baseUrl}", keys: [${K1}, ${K2}] }
pools:
  gpt-4o: { upstreams: [a] }
`;
}

function basic(password: string, user = "admin"): string {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

interface Answer {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** One raw request (chosen Host and Origin); `host` defaults to the proxy's own address. */
async function send(
  proxy: TestProxy,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body = "",
): Promise<Answer> {
  const own = new URL(proxy.url).host;
  const lines = Object.entries({ host: own, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
  const res = await rawRequest(
    proxy.url,
    `${method} ${path} HTTP/1.1\r\n${lines.join("")}content-length: ${body.length}\r\n` +
      `connection: close\r\n\r\n${body}`,
  );
  const answer = { status: res.status, headers: new Map(res.headers), body: res.body };
  for (const s of SECRETS) {
    assert.ok(!res.head.includes(s) && !res.body.includes(s), `a key in ${method} ${path}`);
  }
  return answer;
}

function code(a: Answer): string {
  return a.status < 400 ? String(a.status) : `${a.status} ${JSON.parse(a.body).error.code}`;
}

function disabled(proxy: TestProxy): number {
  return [...proxy.app.rt.candidates.values()].filter((c) => c.state.disabled).length;
}

function firstId(proxy: TestProxy): string {
  return encodeURIComponent([...proxy.app.rt.candidates.values()][0]!.id);
}

const JSON_POST = { "content-type": "application/json" };

Deno.test("dashboard: GET /dashboard serves the page with a strict policy", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const page = await send(proxy, "GET", "/dashboard", { authorization: `Bearer ${ADMIN}` });
  assert.equal(page.status, 200);
  assert.equal(page.body, DASHBOARD_HTML);
  const h = page.headers;
  assert.equal(h.get("content-type"), "text/html; charset=utf-8");
  assert.equal(h.get("cache-control"), "no-store");
  assert.equal(h.get("content-security-policy"), DASHBOARD_CSP);
  assert.match(DASHBOARD_CSP, /default-src 'none'/);
  assert.match(DASHBOARD_CSP, /connect-src 'self'/);
  assert.match(DASHBOARD_CSP, /frame-ancestors 'none'/);
  assert.equal(h.get("x-frame-options"), "DENY");
  assert.equal(h.get("referrer-policy"), "no-referrer");
  assert.equal(h.get("x-content-type-options"), "nosniff");
  const head = await send(proxy, "HEAD", "/dashboard", { authorization: `Bearer ${ADMIN}` });
  assert.equal(head.status, 200);
  assert.equal(code(await send(proxy, "POST", "/dashboard", JSON_POST)), "405 method_not_allowed");
  assert.equal(
    code(await send(proxy, "GET", "/dashboard/nope", { authorization: `Bearer ${ADMIN}` })),
    "404 not_found",
  );
  assert.equal(mock.requestCount, 0);
});

Deno.test("dashboard: GET / redirects to the page; /v1 paths are untouched", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const root = await send(proxy, "GET", "/");
  assert.equal(root.status, 302);
  assert.equal(root.headers.get("location"), "/dashboard");
  assert.equal((await send(proxy, "GET", "/dashboard/")).headers.get("location"), "/dashboard");
  const models = await fetch(`${proxy.url}/v1/models`);
  assert.equal(models.status, 200);
  assert.equal((await models.json()).data[0].id, "gpt-4o");
  // an upstream that takes every path (Seed A's target_url) still gets `/`
  await using full = await startProxy(`
upstreams:
  a: { base_url: "${mock.origin}", path_mode: full, keys: [${K1}] }
`);
  const forwarded = await fetch(`${full.url}/`);
  await forwarded.body?.cancel();
  assert.notEqual(forwarded.status, 302);
  assert.equal(mock.requestCount, 1);
});

Deno.test("dashboard: with an admin key, nothing is shown without it and the browser is asked", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    config(mock.baseUrl, `auth: { admin_key: ${ADMIN}, client_keys: [${CLIENT}] }`),
  );
  await (await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { ...JSON_POST, authorization: `Bearer ${CLIENT}` },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  })).body?.cancel();
  const masks = [...proxy.app.rt.candidates.values()].map((c) => c.mask);
  const refused: Record<string, string>[] = [
    {},
    { authorization: basic("wrong") },
    { authorization: basic(ADMIN.slice(0, -1)) },
    { authorization: `Bearer ${CLIENT}` },
    { authorization: basic(CLIENT) },
    { authorization: "Basic !!!not-base64" },
    { authorization: `Basic ${btoa(ADMIN)}` },
  ];
  for (const path of ["/dashboard", "/dashboard/data"]) {
    for (const headers of refused) {
      const a = await send(proxy, "GET", path, headers);
      assert.equal(code(a), "401 admin_key_required", `${path} ${JSON.stringify(headers)}`);
      assert.equal(a.headers.get("www-authenticate"), 'Basic realm="llm-balance", charset="UTF-8"');
      for (const m of masks) assert.ok(!a.body.includes(m));
      assert.ok(!/\d/.test(JSON.parse(a.body).error.message), "a figure in the refusal");
    }
    for (
      const headers of [
        { authorization: basic(ADMIN) },
        { authorization: basic(ADMIN, "") },
        { authorization: basic(ADMIN, "any user") },
        { authorization: `Bearer ${ADMIN}` },
        { "x-api-key": ADMIN },
      ]
    ) {
      assert.equal((await send(proxy, "GET", path, headers)).status, 200, JSON.stringify(headers));
    }
  }
  const data = await send(proxy, "GET", "/dashboard/data", { authorization: basic(ADMIN) });
  assert.equal(data.headers.get("content-type"), "application/json");
  assert.equal(data.headers.get("cache-control"), "no-store");
  const d = JSON.parse(data.body) as DashboardData;
  assert.equal(d.can_act, true);
  assert.deepEqual(d.keys.map((k) => k.mask), masks);
  assert.equal(d.keys.reduce((n, k) => n + k.requests, 0), 1);
  assert.equal(mock.requestCount, 1);
});

Deno.test("dashboard: without an admin key, a client key reads (also as a Basic password)", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, `auth: { client_keys: [${CLIENT}] }`));
  for (const path of ["/dashboard", "/dashboard/data"]) {
    const a = await send(proxy, "GET", path);
    assert.equal(code(a), "401 invalid_api_key");
    assert.ok(a.headers.has("www-authenticate"));
    assert.equal(
      code(await send(proxy, "GET", path, { authorization: basic("nope") })),
      a.status + " invalid_api_key",
    );
    assert.equal((await send(proxy, "GET", path, { authorization: basic(CLIENT) })).status, 200);
    assert.equal(
      (await send(proxy, "GET", path, { authorization: `Bearer ${CLIENT}` })).status,
      200,
    );
  }
  // from loopback with the client key, it may act
  const d = JSON.parse(
    (await send(proxy, "GET", "/dashboard/data", { authorization: basic(CLIENT) })).body,
  ) as DashboardData;
  assert.equal(d.can_act, true);
  const id = firstId(proxy);
  const path = `/dashboard/actions/keys/${id}/disable`;
  assert.equal(code(await send(proxy, "POST", path, JSON_POST)), "401 invalid_api_key");
  assert.equal(
    code(await send(proxy, "POST", path, { ...JSON_POST, authorization: basic(CLIENT) })),
    "200",
  );
  assert.equal(disabled(proxy), 1);
});

Deno.test("dashboard: actions work with JSON and answer JSON; the data shows their effect", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const auth = { ...JSON_POST, authorization: basic(ADMIN) };
  const id = firstId(proxy);
  const off = await send(proxy, "POST", `/dashboard/actions/keys/${id}/disable`, auth, "{}");
  assert.equal(off.status, 200);
  assert.equal(off.headers.get("content-type"), "application/json");
  const body = JSON.parse(off.body);
  assert.equal(body.ok, true);
  assert.equal(body.action, "disable");
  assert.equal(body.keys.length, 1);
  assert.equal(disabled(proxy), 1);
  const read = async () =>
    JSON.parse((await send(proxy, "GET", "/dashboard/data", auth)).body) as DashboardData;
  let d = await read();
  assert.equal(d.keys[0]!.state, "disabled");
  assert.equal(d.keys[0]!.reason, "disabled by operator");
  assert.equal(d.pools[0]!.usable, 1);
  assert.equal(d.events[0]!.message, "candidate disabled by operator");
  assert.equal(d.events[0]!.key, d.keys[0]!.mask);
  const bearer = { ...JSON_POST, authorization: `Bearer ${ADMIN}` };
  assert.equal(
    code(await send(proxy, "POST", `/dashboard/actions/keys/${id}/enable`, bearer)),
    "200",
  );
  assert.equal(disabled(proxy), 0);
  assert.equal(
    code(await send(proxy, "POST", "/dashboard/actions/upstreams/a/disable", auth)),
    "200",
  );
  assert.equal(disabled(proxy), 2);
  assert.equal(
    code(await send(proxy, "POST", "/dashboard/actions/upstreams/a/reset", auth)),
    "200",
  );
  assert.equal(
    code(await send(proxy, "POST", "/dashboard/actions/upstreams/a/enable", auth)),
    "200",
  );
  d = await read();
  assert.ok(d.keys.every((k) => k.state === "serving"));
  assert.equal(
    code(await send(proxy, "POST", "/dashboard/actions/keys/nope/disable", auth)),
    "404 not_found",
  );
  assert.equal(
    code(await send(proxy, "POST", "/dashboard/actions/upstreams/zz/reset", auth)),
    "404 not_found",
  );
  assert.equal(
    code(await send(proxy, "POST", "/dashboard/actions/keys/x/explode", auth)),
    "404 not_found",
  );
  assert.equal(
    code(await send(proxy, "GET", `/dashboard/actions/keys/${id}/disable`, auth)),
    "405 method_not_allowed",
  );
  // without the admin key: refused, whatever else is sent
  for (const headers of [JSON_POST, { ...JSON_POST, authorization: basic("wrong") }]) {
    assert.equal(
      code(await send(proxy, "POST", `/dashboard/actions/keys/${id}/disable`, headers)),
      "401 admin_key_required",
    );
  }
  assert.equal(disabled(proxy), 0);
});

Deno.test("dashboard: cross-site requests cannot act, even with the browser's Basic credentials", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, `auth: { admin_key: ${ADMIN} }`));
  const own = new URL(proxy.url).host;
  const path = `/dashboard/actions/keys/${firstId(proxy)}/disable`;
  const ambient = { authorization: basic(ADMIN) };
  const form = { ...ambient, "content-type": "application/x-www-form-urlencoded" };
  // what a form on another site sends: its Origin, a form body, the remembered credentials
  assert.equal(
    code(await send(proxy, "POST", path, { ...form, origin: "https://evil.example" }, "a=1")),
    "403 cross_origin_refused",
  );
  assert.equal(
    code(await send(proxy, "POST", path, { ...form, origin: "null" }, "a=1")),
    "403 cross_origin_refused",
  );
  // even JSON from another origin (a CORS fetch) is refused
  assert.equal(
    code(
      await send(proxy, "POST", path, { ...ambient, ...JSON_POST, origin: "http://evil.example" }),
    ),
    "403 cross_origin_refused",
  );
  // a form-like POST without an Origin (an old browser): Basic proves nothing, a form cannot send JSON
  for (const headers of [form, ambient, { ...ambient, "content-type": "text/plain" }]) {
    assert.equal(code(await send(proxy, "POST", path, headers, "a=1")), "415 admin_json_required");
  }
  assert.equal(
    code(await send(proxy, "POST", path, { ...form, origin: `http://${own}` }, "a=1")),
    "415 admin_json_required",
  );
  assert.equal(disabled(proxy), 0);
  // the page itself: same origin, JSON
  assert.equal(
    code(await send(proxy, "POST", path, { ...ambient, ...JSON_POST, origin: `http://${own}` })),
    "200",
  );
  assert.equal(disabled(proxy), 1);
});

Deno.test("dashboard: without any key it is open from loopback, for an allowed Host only", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const port = new URL(proxy.url).port;
  for (const path of ["/dashboard", "/dashboard/data"]) {
    assert.equal((await send(proxy, "GET", path)).status, 200);
    assert.equal((await send(proxy, "GET", path, { host: `localhost:${port}` })).status, 200);
    assert.equal(
      code(await send(proxy, "GET", path, { host: `rebound.example:${port}` })),
      "403 host_not_allowed",
    );
  }
  const d = JSON.parse((await send(proxy, "GET", "/dashboard/data")).body) as DashboardData;
  assert.equal(d.can_act, true);
  const path = `/dashboard/actions/keys/${firstId(proxy)}/disable`;
  assert.equal(
    code(await send(proxy, "POST", path, { ...JSON_POST, host: `rebound.example:${port}` })),
    "403 host_not_allowed",
  );
  assert.equal(code(await send(proxy, "POST", path, {}, "")), "415 admin_json_required");
  assert.equal(code(await send(proxy, "POST", path, JSON_POST)), "200");
  assert.equal(disabled(proxy), 1);
});

/** Runs the dashboard middleware alone on a request from `remoteAddr`. */
async function direct(
  configText: string,
  path: string,
  init: { method?: string; remoteAddr: string; headers?: Record<string, string> },
): Promise<{ res: Response; forwarded: boolean }> {
  const config = parseConfigText(configText, "d.yaml", { env: () => undefined });
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
  try {
    const req = new Request(`http://127.0.0.1:8080${path}`, {
      method: init.method ?? "GET",
      headers: { host: "127.0.0.1:8080", ...init.headers },
    });
    const url = new URL(req.url);
    const ctx = {
      req,
      url,
      path: url.pathname,
      search: url.search,
      startedAt: performance.now(),
      remoteAddr: init.remoteAddr,
      requestId: "t",
      client: undefined,
      res: undefined,
      log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
      done: undefined,
    } as RequestContext;
    let forwarded = false;
    const mw = dashboardPlugin.create(config, app.services());
    try {
      await mw(ctx, () => {
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

Deno.test("dashboard: without an admin key, actions come from loopback only; reading is open", async () => {
  const text = config("http://127.0.0.1:9/v1");
  const remote = { remoteAddr: "192.0.2.7" };
  const read = await direct(text, "/dashboard/data", remote);
  assert.equal(read.res.status, 200);
  const d = await read.res.json() as DashboardData;
  assert.equal(d.can_act, false);
  const act = await direct(text, "/dashboard/actions/upstreams/a/disable", {
    ...remote,
    method: "POST",
    headers: JSON_POST,
  });
  assert.equal(act.res.status, 403);
  assert.equal((await act.res.json()).error.code, "admin_loopback_only");
  const local = await direct(text, "/dashboard/actions/upstreams/a/disable", {
    remoteAddr: "127.0.0.1",
    method: "POST",
    headers: JSON_POST,
  });
  assert.equal(local.res.status, 200);
  await local.res.body?.cancel();
  // other paths pass on
  for (const path of ["/v1/chat/completions", "/dashboardx", "/stats"]) {
    assert.equal((await direct(text, path, remote)).forwarded, true, path);
  }
  assert.equal((await direct(text, "/", { ...remote, method: "POST" })).forwarded, true);
});

Deno.test("dashboard: the data is gzipped for a client that takes it, when worth it", async () => {
  const keys = Array.from(
    { length: 40 },
    (_, i) => `sk-dashboard-gzip-key-${String(i).padStart(6, "0")}`,
  );
  await using proxy = await startProxy(`
auth: { admin_key: "${ADMIN}" }
upstreams:
  a: { base_url: "http://127.0.0.1:9/v1", keys: [${keys.join(", ")}] }
`);
  const headers = { authorization: `Bearer ${ADMIN}` };
  const plain = await fetch(`${proxy.url}/dashboard/data`, {
    headers: { ...headers, "accept-encoding": "identity" },
  });
  const text = await plain.text();
  assert.equal(plain.headers.get("content-encoding"), null);
  assert.ok(text.length > 4096);
  // fetch asks for gzip and decodes it
  const zipped = await fetch(`${proxy.url}/dashboard/data`, { headers });
  assert.equal(zipped.headers.get("content-encoding"), "gzip");
  assert.equal(zipped.headers.get("vary"), "accept-encoding");
  const data = await zipped.json();
  assert.equal(data.keys.length, 40);
  for (const k of keys) assert.ok(!JSON.stringify(data).includes(k));
});

Deno.test("dashboard: behind a proxy that rewrites Host, a name in server.admin_hosts may act", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    config(
      mock.baseUrl,
      `auth: { admin_key: ${ADMIN} }\nserver: { admin_hosts: [llm.example.com] }`,
    ),
  );
  const path = `/dashboard/actions/keys/${firstId(proxy)}/disable`;
  const headers = { authorization: basic(ADMIN), ...JSON_POST };
  // the browser is on the proxy's public name; the proxy sent its own address as Host
  assert.equal(
    code(await send(proxy, "POST", path, { ...headers, origin: "https://llm.example.com" })),
    "200",
  );
  assert.equal(disabled(proxy), 1);
  // another name is still another site, and so is a look-alike
  for (const origin of ["https://evil.example", "https://llm.example.com.evil.example"]) {
    assert.equal(
      code(await send(proxy, "POST", path, { ...headers, origin })),
      "403 cross_origin_refused",
    );
  }
});
