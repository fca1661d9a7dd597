import assert from "node:assert/strict";
import { startMockUpstream } from "../../../tools/mock_upstream.ts";
import { startProxy } from "../../helpers/proxy.ts";

const CLIENT = "cl-cors-test-client-key-00000000000000001";

function config(baseUrl: string, cors?: string): string {
  return `
${cors === undefined ? "" : `server:\n  cors: ${cors}`}
auth:
  client_keys: [${CLIENT}]
upstreams:
  m: { base_url: "${baseUrl}", keys: [sk-upstream-cors-test-0000000000000001] }
`;
}

function preflight(url: string, origin: string, requestHeaders?: string): Promise<Response> {
  const headers: Record<string, string> = { origin, "access-control-request-method": "POST" };
  if (requestHeaders) headers["access-control-request-headers"] = requestHeaders;
  return fetch(`${url}/v1/chat/completions`, { method: "OPTIONS", headers });
}

function chat(url: string, origin: string, key = CLIENT): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, origin },
    body: JSON.stringify({ model: "gpt-x", messages: [{ role: "user", content: "hi" }] }),
  });
}

Deno.test("cors is off by default: preflights get a bare 204, responses no CORS headers", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const pre = await preflight(proxy.url, "https://app.example");
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), null);
  await pre.body?.cancel();
  const res = await chat(proxy.url, "https://app.example");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  await res.body?.cancel();
  assert.equal(mock.requests.length, 1, "the preflight never reaches the upstream");
});

Deno.test("cors answers preflights without a key when enabled for every origin", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, "true"));
  const pre = await preflight(proxy.url, "https://app.example", "authorization, content-type");
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  assert.match(pre.headers.get("access-control-allow-methods") ?? "", /POST/);
  assert.equal(pre.headers.get("access-control-allow-headers"), "authorization, content-type");
  assert.equal(pre.headers.get("access-control-max-age"), "600");
  await pre.body?.cancel();
  const res = await chat(proxy.url, "https://app.example");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("access-control-expose-headers") ?? "", /x-request-id/);
  await res.body?.cancel();
  assert.equal(mock.requests.length, 1);
});

Deno.test("cors allows only the configured origins", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    config(mock.baseUrl, '{ enabled: true, origins: ["https://ok.example"] }'),
  );
  const ok = await preflight(proxy.url, "https://ok.example");
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://ok.example");
  assert.match(ok.headers.get("vary") ?? "", /origin/i);
  await ok.body?.cancel();
  const other = await preflight(proxy.url, "https://evil.example");
  assert.equal(other.status, 204);
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  await other.body?.cancel();
  const res = await chat(proxy.url, "https://evil.example");
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  await res.body?.cancel();
  const good = await chat(proxy.url, "https://ok.example");
  assert.equal(good.headers.get("access-control-allow-origin"), "https://ok.example");
  assert.match(good.headers.get("vary") ?? "", /origin/i);
  await good.body?.cancel();
});

Deno.test("cors headers are on error responses, so a browser can read a 401", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, "true"));
  const res = await chat(proxy.url, "https://app.example", "cl-wrong-key");
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal((await res.json()).error.code, "invalid_api_key");
  const missing = await fetch(`${proxy.url}/stats`, { headers: { origin: "https://app.example" } });
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get("access-control-allow-origin"), "*");
  await missing.body?.cancel();
});

Deno.test("cors leaves requests without Origin alone", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl, "true"));
  const res = await fetch(`${proxy.url}/health`);
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  await res.body?.cancel();
});

Deno.test("cors never grants a preflight for /admin paths, whatever the origins", async () => {
  await using mock = await startMockUpstream();
  for (const cors of ["true", '{ enabled: true, origins: ["https://ok.example"] }']) {
    await using proxy = await startProxy(config(mock.baseUrl, cors));
    for (const path of ["/admin/keys", "/admin/upstreams/m/disable", "/admin"]) {
      const pre = await fetch(`${proxy.url}${path}`, {
        method: "OPTIONS",
        headers: {
          origin: "https://ok.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
      assert.equal(pre.status, 204, path);
      assert.equal(pre.headers.get("access-control-allow-origin"), null, `${cors} ${path}`);
      assert.equal(pre.headers.get("access-control-allow-methods"), null);
      await pre.body?.cancel();
    }
    const stats = await fetch(`${proxy.url}/stats`, {
      method: "OPTIONS",
      headers: { origin: "https://ok.example", "access-control-request-method": "GET" },
    });
    assert.equal(
      stats.headers.get("access-control-allow-origin") !== null,
      true,
      "reads as before",
    );
    await stats.body?.cancel();
  }
  assert.equal(mock.requests.length, 0);
});
