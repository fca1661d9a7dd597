/**
 * @module
 * End-to-end forwarding through llm-balance to mock upstreams: body bytes, paths, methods and
 * query strings kept; credentials replaced; hop-by-hop headers dropped both ways; useful
 * upstream headers returned; model names mapped per upstream; connections reused; no open relay.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { chat, postJson, rawRequest, startScriptedUpstream } from "../helpers/e2e.ts";

const UPSTREAM_KEY = "sk-upstream-key-000000000001";
const enc = new TextEncoder();

function oneUpstream(baseUrl: string, extra = ""): string {
  return `upstreams:\n  m:\n    base_url: "${baseUrl}"\n    keys: [${UPSTREAM_KEY}]\n${extra}`;
}

/** A request body a strict schema would mangle: every byte of it must reach the upstream. */
const ODD_BODY = `{ "model" :"gpt-4o",
  "messages":[{"role":"user","content":"h\\u00e9llo é \\"q\\" 🙂"}],
  "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}],
  "response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}},
  "stream_options":{"include_usage":true},
  "temperature":1.0, "top_p":1e2, "n":-0, "seed":12345678901234567890,
  "x_vendor_field":{"enable_thinking":false,"nested":[1.0,1E-2,0.10]}  ,"top_k":40
}
`;

Deno.test("proxy forwards the request body byte for byte, vendor fields and number formats included", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const res = await postJson(
    `${proxy.url}/v1/chat/completions?api-version=2024-01-01&x=a%20b`,
    ODD_BODY,
  );
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const got = mock.requests[0]!;
  assert.deepEqual(got.body, enc.encode(ODD_BODY));
  assert.equal(got.method, "POST");
  assert.equal(got.path, "/v1/chat/completions");
  assert.equal(got.search, "?api-version=2024-01-01&x=a%20b");
});

Deno.test("proxy forwards every /v1 path with its method and query string", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const cases: { method: string; path: string; body?: unknown }[] = [
    { method: "POST", path: "/v1/chat/completions", body: chat() },
    { method: "POST", path: "/v1/completions", body: { model: "gpt-4o", prompt: "hi" } },
    { method: "POST", path: "/v1/embeddings", body: { model: "e", input: ["a", "b"] } },
    { method: "POST", path: "/v1/responses", body: { model: "gpt-4o", input: "hi" } },
    { method: "GET", path: "/v1/models" },
    { method: "GET", path: "/v1/models/gpt-4o?x=1" },
    {
      method: "POST",
      path: "/v1/images/generations",
      body: { model: "dall-e-3", prompt: "a cat" },
    },
    { method: "DELETE", path: "/v1/files/file-123?purge=true" },
    { method: "PATCH", path: "/v1/fine_tuning/jobs/ft-1", body: { suffix: "x" } },
  ];
  for (const c of cases) {
    const init: RequestInit = { method: c.method, signal: AbortSignal.timeout(5000) };
    if (c.body !== undefined) {
      init.body = JSON.stringify(c.body);
      init.headers = { "content-type": "application/json" };
    }
    const res = await fetch(proxy.url + c.path, init);
    assert.equal(res.status, 200, `${c.method} ${c.path}`);
    await res.body?.cancel();
    const got = mock.requests.at(-1)!;
    assert.equal(got.method, c.method);
    assert.equal(got.path + got.search, c.path);
    assert.equal(got.text, c.body === undefined ? "" : JSON.stringify(c.body));
    assert.equal(got.key, UPSTREAM_KEY);
  }
  assert.equal(mock.requests.length, cases.length);
});

Deno.test("proxy forwards a multipart audio upload unchanged", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const audio = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) % 256);
  const form = new FormData();
  form.append("model", "whisper-1");
  form.append("file", new Blob([audio], { type: "audio/wav" }), "speech.wav");
  const built = new Request("http://x/", { method: "POST", body: form });
  const contentType = built.headers.get("content-type")!;
  const bytes = new Uint8Array(await built.arrayBuffer());
  const res = await fetch(`${proxy.url}/v1/audio/transcriptions`, {
    method: "POST",
    headers: { "content-type": contentType },
    body: bytes,
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const got = mock.requests[0]!;
  assert.equal(got.path, "/v1/audio/transcriptions");
  assert.equal(got.headers["content-type"], contentType);
  assert.deepEqual(got.body, bytes);
});

Deno.test("proxy forwards Anthropic /v1/messages with the upstream key as x-api-key", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(
    oneUpstream(
      mock.baseUrl,
      `    auth: x-api-key\n    headers: { anthropic-version: "2023-06-01" }\n`,
    ),
  );
  const body = {
    model: "claude-sonnet-4",
    max_tokens: 64,
    messages: [{ role: "user", content: "hi" }],
  };
  const res = await postJson(`${proxy.url}/v1/messages`, body, {
    "x-api-key": "client-own-key",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "tools-2024-04-04",
  });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).type, "message");
  const got = mock.requests[0]!;
  assert.equal(got.path, "/v1/messages");
  assert.equal(got.headers["x-api-key"], UPSTREAM_KEY);
  assert.equal(got.headers["authorization"], undefined);
  assert.equal(got.headers["anthropic-version"], "2023-06-01");
  assert.equal(got.headers["anthropic-beta"], "tools-2024-04-04");
});

Deno.test("proxy replaces every client credential with the upstream key in the upstream's style", async () => {
  for (
    const [style, header, value] of [
      ["bearer", "authorization", `Bearer ${UPSTREAM_KEY}`],
      ["x-api-key", "x-api-key", UPSTREAM_KEY],
      ["api-key", "api-key", UPSTREAM_KEY],
    ] as const
  ) {
    await using mock = await startMockUpstream();
    await using proxy = await startProxy(oneUpstream(mock.baseUrl, `    auth: ${style}\n`));
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat(), {
      authorization: "Bearer client-secret",
      "x-api-key": "client-secret",
      "api-key": "client-secret",
      cookie: "session=client-secret",
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const headers = mock.requests[0]!.headers;
    assert.equal(headers[header], value, style);
    const credentials = ["authorization", "x-api-key", "api-key"].filter((h) => h in headers);
    assert.deepEqual(credentials, [header], style);
    assert.ok(
      !JSON.stringify(headers).includes("client-secret"),
      `${style}: ${JSON.stringify(headers)}`,
    );
  }
});

Deno.test("proxy does not pass the client's hop-by-hop headers upstream", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const body = JSON.stringify(chat());
  const chunked = `${enc.encode(body).length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  const res = await rawRequest(
    proxy.url,
    "POST /v1/chat/completions HTTP/1.1\r\n" +
      `Host: ${new URL(proxy.url).host}\r\n` +
      "Connection: close, X-Foo\r\nX-Foo: hop-only\r\nKeep-Alive: timeout=5, max=100\r\n" +
      "TE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
      "Proxy-Connection: keep-alive\r\nTrailer: X-Checksum\r\nX-Kept: yes\r\n" +
      "Content-Type: application/json\r\n" +
      `Transfer-Encoding: chunked\r\n\r\n${chunked}`,
  );
  assert.equal(res.status, 200, res.head);
  const got = mock.requests[0]!;
  assert.equal(got.text, body);
  assert.equal(got.headers["x-kept"], "yes");
  for (
    const h of [
      "connection",
      "x-foo",
      "keep-alive",
      "te",
      "upgrade",
      "proxy-authorization",
      "proxy-connection",
      "transfer-encoding",
      "trailer",
    ]
  ) {
    assert.equal(
      got.headers[h],
      undefined,
      `${h} reached the upstream: ${JSON.stringify(got.headers)}`,
    );
  }
});

Deno.test("proxy does not pass the upstream's hop-by-hop headers back, but keeps ids and rate limits", async () => {
  await using up = startScriptedUpstream(() =>
    new Response('{"ok":true}', {
      headers: {
        "content-type": "application/json",
        connection: "x-hop",
        "x-hop": "hop-only",
        "keep-alive": "timeout=5",
        upgrade: "h2c",
        "proxy-authenticate": "Basic",
        trailer: "x-checksum",
        "x-request-id": "upstream-req-123",
        "x-ratelimit-remaining-requests": "42",
        "x-ratelimit-reset-tokens": "6m0s",
        "openai-processing-ms": "17",
      },
    })
  );
  await using proxy = await startProxy(oneUpstream(up.baseUrl));
  const res = await rawRequest(
    proxy.url,
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${JSON.stringify(chat()).length}\r\n\r\n${JSON.stringify(chat())}`,
  );
  assert.equal(res.status, 200, res.head);
  assert.equal(res.body, '{"ok":true}');
  const h = new Map(res.headers);
  for (const name of ["x-hop", "keep-alive", "upgrade", "proxy-authenticate", "trailer"]) {
    assert.equal(h.get(name), undefined, `${name} reached the client:\n${res.head}`);
  }
  const connection = res.headers.filter(([k]) => k === "connection").map(([, v]) =>
    v.toLowerCase()
  );
  assert.ok(connection.every((v) => v === "close"), res.head);
  assert.equal(h.get("x-upstream-request-id"), "upstream-req-123");
  assert.notEqual(h.get("x-request-id"), "upstream-req-123");
  assert.equal(h.get("x-ratelimit-remaining-requests"), "42");
  assert.equal(h.get("x-ratelimit-reset-tokens"), "6m0s");
  assert.equal(h.get("openai-processing-ms"), "17");
  assert.equal(h.get("x-llm-balance-upstream"), "m");
});

Deno.test("proxy answers with its own request id, the client's when it gives a sane one", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const a = await postJson(`${proxy.url}/v1/chat/completions`, chat());
  await a.body?.cancel();
  const ours = a.headers.get("x-request-id") ?? "";
  assert.match(ours, /^[\w.:@-]{1,128}$/);
  assert.notEqual(ours, "mock-1");
  assert.equal(a.headers.get("x-upstream-request-id"), "mock-1");
  const b = await postJson(`${proxy.url}/v1/chat/completions`, chat(), {
    "x-request-id": "trace-42",
  });
  await b.body?.cancel();
  assert.equal(b.headers.get("x-request-id"), "trace-42");
  assert.equal(b.headers.get("x-upstream-request-id"), "mock-2");
  assert.ok(Number(b.headers.get("x-ratelimit-remaining-requests")) > 0);
});

Deno.test("proxy maps the model name per upstream and changes no other byte", async () => {
  await using ds = await startMockUpstream({ name: "ds" });
  await using plain = await startMockUpstream({ name: "plain" });
  await using proxy = await startProxy(`
upstreams:
  siliconflow:
    base_url: "${ds.baseUrl}"
    keys: [sk-sf-0000000000000001]
    models: { gpt-4o: deepseek-ai/DeepSeek-V3.1 }
  openai:
    base_url: "${plain.baseUrl}"
    keys: [sk-oa-0000000000000001]
pools:
  gpt-4o: { strategy: round_robin, upstreams: [siliconflow, openai] }
`);
  for (let i = 0; i < 2; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, ODD_BODY);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  assert.equal(ds.requests[0]!.text, ODD_BODY.replace('"gpt-4o"', '"deepseek-ai/DeepSeek-V3.1"'));
  assert.equal(plain.requests[0]!.text, ODD_BODY);
});

Deno.test("proxy reuses upstream connections across sequential requests", async () => {
  await using mock = await startMockUpstream({ record: false });
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  for (let i = 0; i < 40; i++) {
    const stream = i % 4 === 0;
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o", { stream }));
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
  assert.equal(mock.requestCount, 40);
  assert.ok(mock.connections <= 2, `${mock.connections} upstream connections for 40 requests`);
});

Deno.test("proxy only ever talks to the configured upstream (Host, absolute URI, X-Forwarded-Host)", async () => {
  await using mock = await startMockUpstream();
  const fetched: string[] = [];
  const spy: typeof fetch = (input, init) => {
    fetched.push(input instanceof Request ? input.url : String(input));
    return fetch(input, init);
  };
  await using proxy = await startProxy(oneUpstream(mock.baseUrl), { fetch: spy });
  const body = JSON.stringify(chat());
  const tail =
    `Connection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const byHost = await rawRequest(
    proxy.url,
    `POST /v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\n${tail}`,
  );
  const absolute = await rawRequest(
    proxy.url,
    `POST http://evil.example/v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\n${tail}`,
  );
  const absolutePort = await rawRequest(
    proxy.url,
    `POST http://evil.example:8443/v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n${tail}`,
  );
  const forwarded = await postJson(`${proxy.url}/v1/chat/completions`, chat(), {
    "x-forwarded-host": "evil.example",
    forwarded: "host=evil.example;proto=https",
    "x-forwarded-proto": "https",
  });
  await forwarded.body?.cancel();
  for (const r of [byHost, absolute, absolutePort]) assert.equal(r.status, 200, r.head);
  assert.equal(forwarded.status, 200);
  assert.equal(mock.requests.length, 4);
  assert.equal(fetched.length, 4);
  for (const url of fetched) assert.ok(url.startsWith(`${mock.origin}/v1/chat/completions`), url);
  for (const r of mock.requests) {
    assert.equal(r.headers["host"], `127.0.0.1:${mock.port}`);
    assert.equal(r.headers["x-forwarded-host"], undefined);
    assert.equal(r.headers["forwarded"], undefined);
  }
});

Deno.test("proxy never lets a body's repeated or escaped model key reach a model the client may not use", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
auth:
  client_keys:
    - { key: sk-client-limited-0000001, models: [gpt-4o-mini] }
upstreams:
  m: { base_url: "${mock.baseUrl}", keys: [${UPSTREAM_KEY}] }
`);
  const auth = { authorization: "Bearer sk-client-limited-0000001" };
  const allowed = await postJson(`${proxy.url}/v1/chat/completions`, chat("gpt-4o-mini"), auth);
  assert.equal(allowed.status, 200);
  await allowed.body?.cancel();
  for (
    const body of [
      '{"model":"gpt-4o"}',
      '{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}',
      '{"\\u006dodel":"gpt-4o","messages":[]}',
    ]
  ) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, body, auth);
    await res.body?.cancel();
    assert.ok(res.status === 403 || res.status === 400, `${body} -> ${res.status}`);
  }
  assert.equal(mock.requests.length, 1, `the upstream got ${mock.requests.map((r) => r.text)}`);
});

Deno.test("proxy returns a compressed upstream body in a form the client can read", async () => {
  const json = JSON.stringify({ id: "x", usage: { prompt_tokens: 1, completion_tokens: 2 } });
  await using up = startScriptedUpstream(() =>
    new Response(new Blob([json]).stream().pipeThrough(new CompressionStream("gzip")), {
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
    })
  );
  await using proxy = await startProxy(oneUpstream(up.baseUrl));
  const res = await postJson(`${proxy.url}/v1/chat/completions`, chat());
  assert.equal(res.status, 200);
  assert.equal(await res.text(), json);
});

Deno.test("paths with dot segments or escapes are routed and forwarded as the URL parser normalizes them; queries are kept", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(oneUpstream(mock.baseUrl));
  const body = JSON.stringify(chat());
  const send = (target: string) =>
    rawRequest(
      proxy.url,
      `POST ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
    );
  const dotted = await send("/v1/models/../chat/./completions");
  const queried = await send("/v1/chat/completions?api-version=2024-10-21&x=a%20b");
  const plain = await send("/v1/chat/completions");
  for (const r of [dotted, queried, plain]) assert.equal(r.status, 200, r.head);
  assert.deepEqual(
    mock.requests.map((r) => [r.path, r.search]),
    [
      ["/v1/chat/completions", ""],
      ["/v1/chat/completions", "?api-version=2024-10-21&x=a%20b"],
      ["/v1/chat/completions", ""],
    ],
  );
  // routing reads the normalized path too: /v1/../health is /health, answered here (a POST to
  // it is refused) and never forwarded
  const health = await send("/v1/../health");
  assert.equal(health.status, 405, health.head);
  assert.equal(mock.requests.length, 3);
});
