/**
 * @module
 * Tests of the HTTP server: the request handler, request tracking, and shutdown (drain, then
 * cut with an honest error; every answer during the drain is its connection's last).
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../tools/mock_upstream.ts";
import { createHandler, lastOnConnection } from "../src/server.ts";
import { waitFor } from "./helpers/e2e.ts";
import { startProxy } from "./helpers/proxy.ts";

function config(baseUrl: string): string {
  return `upstreams:
  mock: { base_url: ${baseUrl}, keys: [sk-server-test-0001], timeout: { first_byte: 30, idle: 30 } }
`;
}

function chat(url: string, stream: boolean): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }),
  });
}

async function readAll(res: Response): Promise<{ text: string; failed: boolean }> {
  const reader = res.body!.getReader();
  let text = "";
  try {
    for (let i = 0; i < 100_000; i++) {
      const r = await reader.read();
      if (r.done) return { text, failed: false };
      text += new TextDecoder().decode(r.value);
    }
  } catch {
    return { text, failed: true };
  }
  return { text, failed: false };
}

/** What a raw connection received, and how it ended. */
interface Received {
  /** Everything read, decoded. */
  text: string;
  /** `eof`: the server closed the connection; `timeout`: it stayed open; `reset`: it was reset. */
  end: "eof" | "timeout" | "reset";
}

/** Reads a raw connection until the server closes it, or for at most `ms`. */
async function readUntilClosed(conn: Deno.Conn, ms: number): Promise<Received> {
  const buf = new Uint8Array(64 * 1024);
  const dec = new TextDecoder();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  try {
    for (;;) {
      const n = await Promise.race([conn.read(buf), timeout]);
      if (n === "timeout") return { text, end: "timeout" };
      if (n === null) return { text, end: "eof" };
      text += dec.decode(buf.subarray(0, n), { stream: true });
    }
  } catch {
    return { text, end: "reset" };
  } finally {
    clearTimeout(timer);
  }
}

/** Reads one answer with a `content-length` body off a raw connection, leaving it open. */
async function readAnswer(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(64 * 1024);
  const dec = new TextDecoder();
  let text = "";
  for (let i = 0; i < 1000; i++) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n), { stream: true });
    const split = text.indexOf("\r\n\r\n");
    const length = /\r\ncontent-length: *(\d+)/i.exec(text)?.[1];
    if (split >= 0 && length !== undefined && text.length >= split + 4 + Number(length)) break;
  }
  return text;
}

/** The header lines of the first response in `text`, names lowercased. */
function headLines(text: string): string[] {
  return text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n").map((l) => l.toLowerCase());
}

const CHAT_BODY = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] });

/** A keep-alive HTTP/1.1 chat request, as an SDK sends it. */
function rawChat(): Uint8Array {
  return new TextEncoder().encode(
    "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n" +
      "content-type: application/json\r\n" +
      `content-length: ${CHAT_BODY.length}\r\n\r\n${CHAT_BODY}`,
  );
}

const INFO = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
} as Deno.ServeHandlerInfo<
  Deno.NetAddr
>;

Deno.test("createHandler() answers through the chain and tracks each request until it ends", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const started: string[] = [];
  const ended: string[] = [];
  const handle = createHandler(proxy.app, {
    track: { start: (ctx) => started.push(ctx.requestId), end: (ctx) => ended.push(ctx.requestId) },
  });
  const res = await handle(new Request("http://x/health"), INFO);
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const missing = await handle(
    new Request("http://x/v1/chat/completions", { method: "POST", body: "{}" }),
    INFO,
  );
  assert.ok(missing.headers.get("x-request-id"));
  await missing.body?.cancel();
  assert.equal(started.length, 2);
  assert.deepEqual(ended, started);
});

Deno.test("createHandler() answers 503 shutting_down once the cut signal is aborted", async () => {
  await using mock = await startMockUpstream({ mode: "hang" });
  await using proxy = await startProxy(config(mock.baseUrl));
  const cut = new AbortController();
  const handle = createHandler(proxy.app, { cut: cut.signal });
  const waiting = handle(
    new Request("http://x/v1/chat/completions", { method: "POST", body: '{"model":"m"}' }),
    INFO,
  );
  for (let i = 0; i < 100 && mock.requests.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  cut.abort();
  const res = await waiting;
  assert.equal(res.status, 503);
  assert.equal((await res.json()).error.code, "shutting_down");
  const late = await handle(new Request("http://x/health"), INFO);
  assert.equal(late.status, 503);
  await late.body?.cancel();
  await mock.close(); // releases the hung upstream request
});

Deno.test("RunningServer.shutdown() lets a stream finish within the drain time", async () => {
  await using mock = await startMockUpstream({ chunks: 6, chunkDelayMs: 50 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url, true);
  const body = readAll(res);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(proxy.server.inFlight(), 1);
  const report = await proxy.server.shutdown(5000);
  assert.deepEqual(report, { drained: true, cut: 0 });
  const { text, failed } = await body;
  assert.equal(failed, false);
  assert.ok(text.endsWith("data: [DONE]\n\n"));
  assert.equal(proxy.server.inFlight(), 0);
  assert.equal(proxy.server.shutdown(5000), proxy.server.shutdown(1), "the same shutdown");
});

Deno.test("RunningServer.shutdown() cuts a stream still open after the drain time with an error event", async () => {
  await using mock = await startMockUpstream({ chunks: 100_000, chunkDelayMs: 50 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url, true);
  const body = readAll(res);
  await new Promise((r) => setTimeout(r, 60));
  const t0 = performance.now();
  const report = await proxy.server.shutdown(200);
  assert.ok(performance.now() - t0 < 200 + 1500);
  assert.deepEqual(report, { drained: false, cut: 1 });
  const { text } = await body;
  assert.match(text, /event: error\ndata: .*"code":"stream_interrupted"/);
  assert.ok(
    proxy.logRecords().some((r) => r.msg === "drain time over: cutting the requests still open"),
  );
});

Deno.test("RunningServer.cutNow() ends the drain at once", async () => {
  await using mock = await startMockUpstream({ chunks: 100_000, chunkDelayMs: 50 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const res = await chat(proxy.url, true);
  const body = readAll(res);
  await new Promise((r) => setTimeout(r, 60));
  const t0 = performance.now();
  const stopping = proxy.server.shutdown(60_000);
  await new Promise((r) => setTimeout(r, 50));
  proxy.server.cutNow();
  assert.deepEqual(await stopping, { drained: false, cut: 1 });
  assert.ok(performance.now() - t0 < 2000);
  assert.match((await body).text, /event: error/);
});

Deno.test("createHandler() adds no connection header while not draining", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const handle = createHandler(proxy.app, { drain: new AbortController().signal });
  const res = await handle(
    new Request("http://x/v1/chat/completions", { method: "POST", body: CHAT_BODY }),
    INFO,
  );
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("connection"), null);
  await res.body?.cancel();
});

Deno.test("createHandler() marks every answer Connection: close once the drain signal is aborted", async () => {
  await using mock = await startMockUpstream({ chunks: 3, chunkDelayMs: 10 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const drain = new AbortController();
  const cut = new AbortController();
  const handle = createHandler(proxy.app, { drain: drain.signal, cut: cut.signal });
  drain.abort();
  const answers = [
    // a plain answer, an error answer from the chain, a stream that starts during the drain
    await handle(new Request("http://x/health"), INFO),
    await handle(new Request("http://x/v1/chat/completions", { method: "POST", body: "{" }), INFO),
    await handle(
      new Request("http://x/v1/chat/completions", {
        method: "POST",
        body: JSON.stringify({ model: "m", stream: true, messages: [] }),
      }),
      INFO,
    ),
  ];
  cut.abort();
  answers.push(await handle(new Request("http://x/health"), INFO));
  assert.deepEqual(answers.map((r) => r.status), [200, 400, 200, 503]);
  for (const res of answers) {
    assert.equal(res.headers.get("connection"), "close", `${res.status}`);
    await res.body?.cancel();
  }
});

Deno.test("createHandler() marks the 503 of a cut request Connection: close", async () => {
  await using mock = await startMockUpstream({ mode: "hang" });
  await using proxy = await startProxy(config(mock.baseUrl));
  const cut = new AbortController();
  const handle = createHandler(proxy.app, { cut: cut.signal });
  const waiting = handle(
    new Request("http://x/v1/chat/completions", { method: "POST", body: CHAT_BODY }),
    INFO,
  );
  await waitFor(() => mock.requests.length === 1, "the upstream request");
  cut.abort();
  const res = await waiting;
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("connection"), "close");
  await res.body?.cancel();
  await mock.close();
});

Deno.test("lastOnConnection() sets Connection: close, copying a response whose headers are immutable", async () => {
  const own = new Response("x", { headers: { "x-a": "1" } });
  assert.equal(lastOnConnection(own), own);
  assert.equal(own.headers.get("connection"), "close");
  await using mock = await startMockUpstream();
  const fetched = await fetch(`${mock.baseUrl}/models`);
  const copy = lastOnConnection(fetched);
  assert.notEqual(copy, fetched);
  assert.equal(copy.status, fetched.status);
  assert.equal(copy.headers.get("connection"), "close");
  assert.equal(copy.headers.get("content-type"), fetched.headers.get("content-type"));
  assert.ok(Array.isArray((await copy.json()).data));
});

Deno.test("RunningServer.shutdown() answers a keep-alive request in flight with Connection: close, then closes the connection", async () => {
  await using mock = await startMockUpstream({ latencyMs: 300 });
  await using proxy = await startProxy(config(mock.baseUrl));
  const { port } = new URL(proxy.url);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  await conn.write(rawChat());
  await waitFor(() => mock.requests.length === 1, "the upstream request");
  const stopping = proxy.server.shutdown(5000);
  const got = await readUntilClosed(conn, 3000);
  assert.match(got.text, /^HTTP\/1\.1 200 /);
  assert.ok(headLines(got.text).includes("connection: close"), got.text);
  assert.equal(
    JSON.parse(got.text.slice(got.text.indexOf("\r\n\r\n") + 4)).object,
    "chat.completion",
  );
  // the server closed the connection after the answer: the client never sent on it again
  assert.equal(got.end, "eof");
  assert.deepEqual(await stopping, { drained: true, cut: 0 });
});

Deno.test("RunningServer.shutdown() closes an idle keep-alive connection at once", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(config(mock.baseUrl));
  const { port } = new URL(proxy.url);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  await conn.write(rawChat());
  const first = await readAnswer(conn);
  assert.match(first, /^HTTP\/1\.1 200 /);
  assert.ok(
    !headLines(first).some((l) => l.startsWith("connection:")),
    "no header before the drain",
  );
  const stopping = proxy.server.shutdown(5000);
  const got = await readUntilClosed(conn, 3000);
  assert.deepEqual(got, { text: "", end: "eof" });
  assert.deepEqual(await stopping, { drained: true, cut: 0 });
});

Deno.test("RunningServer.shutdown() answers a keep-alive request cut after the drain time 503 with Connection: close", async () => {
  await using mock = await startMockUpstream({ mode: "hang" });
  await using proxy = await startProxy(config(mock.baseUrl));
  const { port } = new URL(proxy.url);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  await conn.write(rawChat());
  await waitFor(() => mock.requests.length === 1, "the upstream request");
  const stopping = proxy.server.shutdown(100);
  const got = await readUntilClosed(conn, 3000);
  assert.match(got.text, /^HTTP\/1\.1 503 /);
  assert.ok(headLines(got.text).includes("connection: close"), got.text);
  assert.match(got.text, /"code":"shutting_down"/);
  assert.equal(got.end, "eof");
  assert.deepEqual(await stopping, { drained: false, cut: 1 });
  await mock.close();
});
