/**
 * @module
 * Tests of `status_read.ts`: the URL `status` reads, the shape check of the answer, one read of
 * `/dashboard/data` (the bearer token, what it says when it cannot read the state: 401,
 * unreachable, not JSON, not the data, a redirect; the time limit) and the optional config.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/config/errors.ts";
import {
  isDashboardData,
  optionalConfig,
  readDashboard,
  statusUrl,
} from "../../src/commands/status_read.ts";

import { ADMIN, answering, fixture, json, UPSTREAMS } from "../helpers/status_fixture.ts";

Deno.test("isDashboardData() accepts the fixture and refuses other shapes", () => {
  assert.ok(isDashboardData(fixture()));
  assert.ok(!isDashboardData({ ok: true }));
  assert.ok(!isDashboardData([]));
  assert.ok(!isDashboardData({ ...fixture(), pools: [{ model: 1 }] }));
  assert.ok(!isDashboardData({ ...fixture(), keys: [{ id: "x" }] }));
});

Deno.test("statusUrl() takes --url, else the config's address, else 127.0.0.1:8080", () => {
  const cfg = (server: string) =>
    parseConfigText(`server: ${server}\n${UPSTREAMS}`, "c.yaml", { env: () => undefined });
  assert.equal(statusUrl({}), "http://127.0.0.1:8080");
  assert.equal(statusUrl({ url: "https://lb.example/llm/" }), "https://lb.example/llm");
  assert.equal(statusUrl({ config: cfg("{ port: 9091 }") }), "http://127.0.0.1:9091");
  assert.equal(statusUrl({ config: cfg("{ host: 0.0.0.0, port: 1 }") }), "http://127.0.0.1:1");
  assert.equal(statusUrl({ config: cfg('{ host: "::", port: 2 }') }), "http://[::1]:2");
  assert.equal(statusUrl({ config: cfg("{ host: 10.0.0.5 }") }), "http://10.0.0.5:8080");
  assert.equal(statusUrl({ url: "http://h:1", config: cfg("{ port: 3 }") }), "http://h:1");
});

Deno.test("readDashboard() sends the admin key as a bearer token to /dashboard/data", async () => {
  const seen: Request[] = [];
  const r = await readDashboard("http://lb.example/prefix", {
    adminKey: ADMIN,
    fetch: answering(() => json(fixture()), seen),
  });
  assert.ok(r.ok);
  assert.equal(seen[0]!.url, "http://lb.example/prefix/dashboard/data");
  assert.equal(seen[0]!.headers.get("authorization"), `Bearer ${ADMIN}`);
  assert.equal(seen[0]!.redirect, "manual");
  const open: Request[] = [];
  await readDashboard("http://x", { fetch: answering(() => json(fixture()), open) });
  assert.equal(open[0]!.headers.get("authorization"), null);
});

Deno.test("readDashboard() says why it cannot read the state, never showing the key", async () => {
  const cases: { name: string; fetch: typeof fetch; key?: string; want: RegExp }[] = [
    {
      name: "401 without a key",
      fetch: answering(() => json({ error: { message: "admin key required" } }, 401)),
      want: /an admin key is needed \(401\): set LLM_BALANCE_ADMIN_KEY or auth\.admin_key/,
    },
    {
      name: "401 with a key",
      key: ADMIN,
      fetch: answering(() => json({}, 401)),
      want: /the admin key was refused \(401\)/,
    },
    {
      name: "unreachable",
      fetch: () => Promise.reject(new TypeError("tcp connect error: Connection refused")),
      want: /cannot reach it: tcp connect error: Connection refused/,
    },
    {
      name: "connection refused, as Deno's fetch says it",
      fetch: () =>
        Promise.reject(
          new TypeError("fetch failed", {
            cause: new Error(
              "error sending request for url (http://127.0.0.1:1/dashboard/data): client error " +
                "(Connect): tcp connect error: Connection refused (os error 111)",
            ),
          }),
        ),
      want: /: cannot reach it: tcp connect error: Connection refused \(os error 111\)$/,
    },
    {
      name: "not JSON",
      fetch: answering(() => new Response("<html>hello</html>")),
      want: /the answer is not JSON$/,
    },
    {
      name: "not the data",
      fetch: answering(() => json({ hello: "world" })),
      want: /the answer is not llm-balance dashboard data$/,
    },
    {
      name: "404",
      fetch: answering(() => new Response("nope", { status: 404 })),
      want: /no dashboard there \(404\)/,
    },
    {
      name: "403 with an OpenAI-style error",
      fetch: answering(() =>
        json({ error: { code: "host_not_allowed", message: "Host not allowed" } }, 403)
      ),
      want: /HTTP 403: host_not_allowed: Host not allowed$/,
    },
    {
      name: "redirect",
      key: ADMIN,
      fetch: answering(() =>
        new Response(null, { status: 302, headers: { location: "https://other/x" } })
      ),
      want: /redirected \(302\) to "https:\/\/other\/x": use --url$/,
    },
  ];
  for (const c of cases) {
    const r = await readDashboard("http://user:pw@127.0.0.1:1", {
      fetch: c.fetch,
      ...(c.key === undefined ? {} : { adminKey: c.key }),
    });
    assert.ok(!r.ok, c.name);
    assert.match(r.message, /^Cannot read status from "http:\/\/127\.0\.0\.1:1": /, c.name);
    assert.match(r.message, c.want, c.name);
    assert.ok(!r.message.includes(ADMIN) && !r.message.includes("pw"), c.name);
  }
});

Deno.test("readDashboard() gives up after its time limit", async () => {
  const hang: typeof fetch = (_input, init) =>
    new Promise((_, reject) =>
      init?.signal?.addEventListener("abort", () => reject(new DOMException("", "AbortError")))
    );
  const r = await readDashboard("http://x", { fetch: hang, timeoutMs: 1 });
  assert.ok(!r.ok);
  assert.match(r.message, /cannot reach it: no answer within 0\.001 s/);
});

Deno.test("optionalConfig() passes over a missing implicit file, not a named one", async () => {
  const missing = () =>
    Promise.reject(new ConfigError("./config.yaml", [{ path: "", message: "file not found" }]));
  assert.equal(await optionalConfig(missing, false), undefined);
  await assert.rejects(optionalConfig(missing, true), ConfigError);
  const config = parseConfigText(UPSTREAMS, "c.yaml", { env: () => undefined });
  assert.equal(await optionalConfig(() => Promise.resolve(config), false), config);
});
