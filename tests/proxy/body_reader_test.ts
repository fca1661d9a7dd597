/** @module Tests of the upstream body reader whose buffers follow the body's pace. */

import assert from "node:assert/strict";
import { bodyReader, MAX_READ_BYTES, MIN_READ_BYTES } from "../../src/proxy/body_reader.ts";

const enc = new TextEncoder();

/** Serves `parts` as one streamed body, `gapMs` apart, and fetches it. */
async function fetchParts(parts: string[], gapMs = 5) {
  let cancelled = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async start(c) {
          for (const p of parts) {
            if (cancelled) return;
            c.enqueue(enc.encode(p));
            await new Promise((r) => setTimeout(r, gapMs));
          }
          c.close();
        },
        cancel() {
          cancelled = true;
        },
      }),
    ));
  const res = await fetch(`http://127.0.0.1:${server.addr.port}/`);
  return { res, server, cancelled: () => cancelled };
}

Deno.test("bodyReader() passes every byte of a fetch body, in small reads for small events", async () => {
  const parts = ["data: one\n\n", "data: two\n\n", "data: three\n\n"];
  const { res, server } = await fetchParts(parts);
  const reader = bodyReader(res.body!);
  const chunks: Uint8Array[] = [];
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    chunks.push(r.value);
  }
  const text = new TextDecoder().decode(
    new Uint8Array(chunks.flatMap((c) => [...c])),
  );
  assert.equal(text, parts.join(""));
  for (const c of chunks) {
    // copied out of the one 4 KiB buffer the reads reuse: no buffer per event
    assert.ok(c.length < MIN_READ_BYTES / 2);
    assert.equal(c.buffer.byteLength, c.length, "a small event holds only its own bytes");
  }
  await server.shutdown();
});

Deno.test("bodyReader() grows its reads while the upstream fills them, up to 64 KiB", async () => {
  const big = "x".repeat(1024 * 1024);
  const { res, server } = await fetchParts([big]);
  const reader = bodyReader(res.body!);
  let total = 0;
  let largest = 0;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    total += r.value.length;
    largest = Math.max(largest, r.value.buffer.byteLength);
  }
  assert.equal(total, big.length);
  assert.equal(largest, MAX_READ_BYTES);
  await server.shutdown();
});

Deno.test("bodyReader() cancels the body it reads", async () => {
  const { res, server, cancelled } = await fetchParts(Array(50).fill("data: x\n\n"), 20);
  const reader = bodyReader(res.body!);
  assert.equal((await reader.read()).done, false);
  await reader.cancel(new Error("client left"));
  for (let i = 0; i < 50 && !cancelled(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(cancelled(), true, "the upstream's stream was cancelled");
  await server.shutdown();
});

Deno.test("bodyReader() reads a stream that is not a byte stream with a default reader", async () => {
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc.encode("abc"));
      c.close();
    },
  });
  const reader = bodyReader(stream);
  const r = await reader.read();
  assert.equal(r.done, false);
  assert.equal(new TextDecoder().decode(r.value), "abc");
  assert.equal((await reader.read()).done, true);
});
