/**
 * @module
 * Tests of the start of the forwarding step through a real proxy and a scripted upstream: which
 * methods are forwarded, and how a client key limited to some models has its model checked.
 * (The retry loop is tested end to end in tests/e2e.)
 */

import assert from "node:assert/strict";
import { startProxy } from "../../helpers/proxy.ts";
import { postJson, rawRequest, startScriptedUpstream } from "../../helpers/e2e.ts";

const UPSTREAM_KEY = "sk-upstream-proxy-plugin-test-0000000001";
const FREE = "cl-free-proxy-plugin-test-00000000000001";
const NARROW = "cl-narrow-proxy-plugin-test-000000000002";
const ALLOW = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

function config(baseUrl: string): string {
  return `
server: { cors: true }
auth:
  client_keys:
    - { key: ${FREE}, name: free }
    - { key: ${NARROW}, name: narrow, models: [cheap, whisper-1] }
upstreams:
  m: { base_url: "${baseUrl}", keys: [${UPSTREAM_KEY}] }
`;
}

/** An upstream that answers every request with 200 `{"ok":true}`. */
function okUpstream() {
  return startScriptedUpstream(() => Response.json({ ok: true }));
}

function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

Deno.test("proxy answers methods no API uses with 405, Allow and an OpenAI-style error", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  const auth = `authorization: Bearer ${FREE}\r\nconnection: close\r\n`;
  const requests = [
    `TRACE /v1/chat/completions HTTP/1.1\r\nhost: x\r\n${auth}\r\n`,
    `CONNECT 127.0.0.1:443 HTTP/1.1\r\nhost: 127.0.0.1:443\r\n${auth}\r\n`,
    `PROPFIND /v1/files HTTP/1.1\r\nhost: x\r\n${auth}\r\n`,
    `get /v1/models HTTP/1.1\r\nhost: x\r\n${auth}\r\n`,
    `TRACE /v1/chat/completions HTTP/1.1\r\nhost: x\r\n${auth}content-length: 11\r\n\r\n{"model":1}`,
  ];
  for (const head of requests) {
    const res = await rawRequest(proxy.url, head);
    const what = head.split(" ")[0]!;
    assert.equal(res.status, 405, what);
    assert.equal(new Map(res.headers).get("allow"), ALLOW, what);
    assert.equal(new Map(res.headers).get("content-type"), "application/json", what);
    const err = JSON.parse(res.body).error;
    assert.equal(err.type, "invalid_request_error", what);
    assert.equal(err.code, "method_not_allowed", what);
    assert.match(err.message, new RegExp(`"${what}" is not allowed`), what);
    assert.ok(!res.body.includes(UPSTREAM_KEY));
  }
  assert.equal(up.requests.length, 0, "no request reached the upstream");
});

Deno.test("proxy answers a plain OPTIONS itself; the cors step answers preflights", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  const plain = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: bearer(FREE),
  });
  assert.equal(plain.status, 204);
  assert.equal(plain.headers.get("allow"), ALLOW);
  await plain.body?.cancel();
  const pre = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST" },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  await pre.body?.cancel();
  assert.equal(up.requests.length, 0);
});

Deno.test("proxy forwards GET, POST, PUT, PATCH, DELETE and HEAD as they came", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
  for (const method of methods) {
    const withBody = method !== "GET" && method !== "HEAD";
    const res = await fetch(`${proxy.url}/v1/things/1`, {
      method,
      headers: { ...bearer(FREE), "content-type": "application/json" },
      body: withBody ? '{"model":"m","x":1}' : null,
    });
    assert.equal(res.status, 200, method);
    await res.body?.cancel();
  }
  assert.deepEqual(up.requests.map((r) => r.method), methods);
  assert.equal(new TextDecoder().decode(up.requests[3]!.body), '{"model":"m","x":1}');
});

Deno.test("proxy refuses a limited key's body whose model is not unambiguous", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  const url = `${proxy.url}/v1/chat/completions`;
  const refused: [string, string][] = [
    ['{"Model":"expensive","messages":[]}', "model_unverifiable"],
    ['{"model":"cheap","MODEL":"expensive"}', "model_unverifiable"],
    ['{"model":"cheap","model":"expensive"}', "model_unverifiable"],
    ['{"messages":[{"role":"user","content":"hi"}]}', "model_unverifiable"],
    ['{"model":"cheap","x":[1,]}', "model_unverifiable"],
    ['{"model":"expensive"}', "model_not_allowed"],
  ];
  for (const [body, code] of refused) {
    const res = await postJson(url, body, bearer(NARROW));
    assert.equal(res.status, 403, body);
    const err = (await res.json()).error;
    assert.equal(err.type, "permission_error", body);
    assert.equal(err.code, code, body);
  }
  const text = await fetch(url, {
    method: "POST",
    headers: { ...bearer(NARROW), "content-type": "application/octet-stream" },
    body: "model=cheap",
  });
  assert.equal(text.status, 403);
  assert.equal((await text.json()).error.code, "model_unverifiable");
  assert.equal(up.requests.length, 0, "no refused body reached the upstream");
  const ok = await postJson(url, '{"model":"cheap","messages":[]}', bearer(NARROW));
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.equal(up.requests.length, 1);
});

Deno.test("proxy checks a limited key's multipart model and forwards the form unchanged", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  const url = `${proxy.url}/v1/audio/transcriptions`;
  const send = (model: string, field = "model") => {
    const fd = new FormData();
    fd.append("file", new Blob([new Uint8Array(2048).fill(7)], { type: "audio/wav" }), "a.wav");
    fd.append(field, model);
    return fetch(url, { method: "POST", headers: bearer(NARROW), body: fd });
  };
  const ok = await send("whisper-1");
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.equal(up.requests.length, 1);
  assert.match(
    up.requests[0]!.headers.get("content-type") ?? "",
    /^multipart\/form-data; boundary=/,
  );
  assert.match(new TextDecoder().decode(up.requests[0]!.body), /name="model"\r\n\r\nwhisper-1\r\n/);
  for (
    const [model, field, code] of [
      ["gpt-4o-transcribe", "model", "model_not_allowed"],
      ["gpt-4o-transcribe", "Model", "model_unverifiable"],
    ]
  ) {
    const res = await send(model!, field);
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error.code, code);
  }
  assert.equal(up.requests.length, 1);
});

Deno.test("proxy lets a limited key's requests without a body through", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  for (const method of ["GET", "DELETE"]) {
    const res = await fetch(`${proxy.url}/v1/files/file-1`, { method, headers: bearer(NARROW) });
    assert.equal(res.status, 200, method);
    await res.body?.cancel();
  }
  assert.deepEqual(up.requests.map((r) => r.method), ["GET", "DELETE"]);
});

Deno.test("proxy forwards any body of a key without model limits, as before", async () => {
  await using up = okUpstream();
  await using proxy = await startProxy(config(up.baseUrl));
  const body = '{"Model":"x","model":"a","model":"b"}';
  const res = await postJson(`${proxy.url}/v1/chat/completions`, body, bearer(FREE));
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.equal(new TextDecoder().decode(up.requests[0]!.body), body);
});
