/**
 * @module
 * Tests of the soak's fault-injecting upstream: each fault puts exactly the promised bytes on
 * the wire (a reset is a reset, a close a clean end with no answer), arrivals and tokens are
 * counted as documented, and idle kept-alive connections are closed.
 */

import assert from "node:assert/strict";

import {
  type Fault,
  FAULTS,
  FaultyUpstream,
  type FaultyUpstreamOptions,
} from "./_faulty_upstream.ts";
import { seededRandom } from "../helpers/candidates.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MARKER = "SOAK-c1-1-0123abcd";

function only(fault: Fault): Record<Fault, number> {
  return Object.fromEntries(FAULTS.map((f) => [f, f === fault ? 1 : 0])) as Record<Fault, number>;
}

function upstream(
  fault: Fault,
  extra: Partial<FaultyUpstreamOptions> = {},
): Promise<FaultyUpstream> {
  return FaultyUpstream.start({
    name: "t",
    random: seededRandom(3),
    weights: only(fault),
    keepAliveHeader: 0,
    connectionClose: 0,
    delayMs: 0,
    ...extra,
  });
}

/** A chat completion request with a body larger than the upstream's 1 KB read. */
function request(stream = false): Uint8Array {
  const body = JSON.stringify({
    model: "m",
    stream,
    messages: [{ role: "system", content: "x".repeat(3000) }, {
      role: "user",
      content: `Echo ${MARKER}`,
    }],
  });
  return encoder.encode(
    "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer k1\r\n" +
      `x-soak-marker: ${MARKER}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\n\r\n${body}`,
  );
}

/** Reads until the end of the connection; the error, if the connection was reset. */
async function readToEnd(conn: Deno.Conn): Promise<{ text: string; error: unknown }> {
  let text = "";
  const buf = new Uint8Array(4096);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return { text, error: undefined };
      text += decoder.decode(buf.subarray(0, n));
    }
  } catch (error) {
    return { text, error };
  }
}

async function send(u: FaultyUpstream, bytes: Uint8Array): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(u.origin).port) });
  await conn.write(bytes);
  return conn;
}

Deno.test("FaultyUpstream ok answers a JSON completion echoing the marker and counts its tokens", async () => {
  const u = await upstream("ok", { connectionClose: 1 });
  try {
    const conn = await send(u, request());
    const { text } = await readToEnd(conn);
    conn.close();
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(text.includes(`Echo ${MARKER}`));
    const usage = JSON.parse(/"usage":(\{[^}]*\})/.exec(text)![1]!);
    assert.deepEqual(u.tokens(), {
      prompt: usage.prompt_tokens,
      completion: usage.completion_tokens,
      total: usage.total_tokens,
    });
    assert.equal(u.arrivals.length, 1);
    assert.equal(u.arrivals[0]!.marker, MARKER);
    assert.equal(u.arrivals[0]!.key, "k1");
    assert.match(u.arrivals[0]!.fault, /^ok:json/);
  } finally {
    await u.close();
  }
});

Deno.test("FaultyUpstream reset counts the head and answers with a reset alone", async () => {
  const u = await upstream("reset");
  try {
    const conn = await send(u, request());
    const { text, error } = await readToEnd(conn);
    conn.close();
    assert.equal(text, "");
    assert.ok(error instanceof Deno.errors.ConnectionReset, `got ${error}`);
    assert.equal(u.arrivals.length, 1);
    assert.equal(u.arrivals[0]!.marker, MARKER);
    assert.deepEqual(u.tokens(), { prompt: 0, completion: 0, total: 0 });
  } finally {
    await u.close();
  }
});

Deno.test("FaultyUpstream close reads the request and ends the connection without an answer", async () => {
  const u = await upstream("close");
  try {
    const conn = await send(u, request());
    const { text, error } = await readToEnd(conn);
    conn.close();
    assert.deepEqual({ text, error }, { text: "", error: undefined });
    assert.equal(u.arrivals.length, 1);
  } finally {
    await u.close();
  }
});

Deno.test("FaultyUpstream hang holds the request unanswered until hangMs", async () => {
  const u = await upstream("hang", { hangMs: 300 });
  try {
    const started = performance.now();
    const conn = await send(u, request());
    const { text } = await readToEnd(conn);
    conn.close();
    assert.equal(text, "");
    assert.ok(performance.now() - started >= 250);
  } finally {
    await u.close();
  }
});

Deno.test("FaultyUpstream 429 says retry-after and echoes the marker in an OpenAI-style error", async () => {
  const u = await upstream("rate_limit", { connectionClose: 1 });
  try {
    const conn = await send(u, request());
    const { text } = await readToEnd(conn);
    conn.close();
    assert.match(text, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(text, /\r\nretry-after: 1\r\n/);
    const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
    assert.ok(body.error.message.includes(MARKER));
  } finally {
    await u.close();
  }
});

Deno.test("FaultyUpstream ok streams end with a usage chunk and [DONE] when asked to stream", async () => {
  const u = await upstream("ok", { connectionClose: 1 });
  try {
    const conn = await send(u, request(true));
    const { text } = await readToEnd(conn);
    conn.close();
    assert.match(text, /content-type: text\/event-stream/);
    assert.ok(text.includes('"usage":{"prompt_tokens":'));
    assert.ok(text.includes("data: [DONE]"));
    assert.ok(u.tokens().total > 0);
  } finally {
    await u.close();
  }
});

Deno.test("FaultyUpstream closes an idle kept-alive connection with a FIN and counts a later request as late", async () => {
  const u = await upstream("ok", { idleMs: [50, 50] });
  try {
    const conn = await send(u, request());
    const { text } = await readToEnd(conn); // ends with the FIN of the idle close
    assert.match(text, /^HTTP\/1\.1 200 OK/);
    assert.equal(u.idleCloses, 1);
    await conn.write(request()); // the upstream still reads: this request came too late
    for (let i = 0; i < 50 && u.lateRequests.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const after = await readToEnd(conn);
    conn.close();
    assert.equal(after.text, "");
    assert.equal(u.arrivals.length, 1);
    assert.deepEqual(u.lateRequests.map((a) => [a.marker, a.onConn, a.fault]), [[
      MARKER,
      2,
      "late",
    ]]);
  } finally {
    await u.close();
  }
});
