/**
 * @module
 * Tests of the soak client's classification (`sendOne`) against a scripted server: its own
 * marker is a success, someone else's a crossing, an OpenAI-style error an honest error, a
 * stream's error event an honest stream error, and anything else is lost or hung.
 */

import assert from "node:assert/strict";

import { Gate, type RequestResult, runLoad, sendOne } from "./_load.ts";

const MARKER = "SOAK-c1-1-0123abcd";
const OTHER = "SOAK-c2-9-89abcdef";

/** Serves one scripted answer per request and runs `sendOne` against it. */
async function classify(
  answer: (marker: string) => Response,
  stream = false,
  boundMs = 2000,
): Promise<RequestResult> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.text();
    return answer(req.headers.get("x-soak-marker") ?? "");
  });
  try {
    const url = `http://127.0.0.1:${server.addr.port}`;
    return await sendOne(url, { marker: MARKER, stream, pad: "x", boundMs });
  } finally {
    await server.shutdown();
  }
}

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

function sse(events: string[]): Response {
  return new Response(events.join(""), { headers: { "content-type": "text/event-stream" } });
}

const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };

Deno.test("sendOne takes a completion with its own marker as ok_json and reads its usage", async () => {
  const r = await classify((m) =>
    json({ choices: [{ message: { content: `Echo ${m}` } }], usage })
  );
  assert.equal(r.outcome, "ok_json");
  assert.deepEqual(r.tokens, { prompt: 3, completion: 2, total: 5 });
});

Deno.test("sendOne calls another request's marker a crossing, in answers and errors alike", async () => {
  const ok = await classify(() => json({ choices: [{ message: { content: `Echo ${OTHER}` } }] }));
  assert.equal(ok.outcome, "crossing");
  assert.match(ok.detail, new RegExp(OTHER));
  const err = await classify(() => json({ error: { message: `failed ${OTHER}` } }, 500));
  assert.equal(err.outcome, "crossing");
});

Deno.test("sendOne takes an OpenAI-style error as honest and any other error body as lost", async () => {
  const honest = await classify(() => json({ error: { message: "busy", code: "x" } }, 503));
  assert.deepEqual([honest.outcome, honest.detail, honest.message], [
    "error_status",
    "503 x",
    "busy",
  ]);
  const bare = await classify(() => new Response("Bad Gateway", { status: 502 }));
  assert.equal(bare.outcome, "lost");
});

Deno.test("sendOne takes a stream with [DONE] as ok, an error event as honest, a clean cut as lost", async () => {
  const chunk = (m: string) => `data: {"choices":[{"delta":{"content":"Echo ${m}"}}]}\n\n`;
  const done = await classify(
    (m) =>
      sse([
        chunk(m),
        `data: {"choices":[],"usage":${JSON.stringify(usage)}}\n\n`,
        "data: [DONE]\n\n",
      ]),
    true,
  );
  assert.equal(done.outcome, "ok_stream");
  assert.equal(done.tokens?.total, 5);
  const broken = await classify(
    (m) => sse([chunk(m), 'event: error\ndata: {"error":{"message":"Stream interrupted"}}\n\n']),
    true,
  );
  assert.equal(broken.outcome, "stream_error");
  assert.equal(broken.message, '{"error":{"message":"Stream interrupted"}}');
  const cut = await classify((m) => sse([chunk(m)]), true);
  assert.deepEqual([cut.outcome, cut.detail], [
    "lost",
    "stream ended cleanly without [DONE] or an error event",
  ]);
});

Deno.test("sendOne calls a request not answered within the bound a hang", async () => {
  const r = await classify(
    () =>
      new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode("data: {}\n\n"));
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      ),
    true,
    200,
  );
  assert.equal(r.outcome, "hang");
});

Deno.test("runLoad holds its clients at a closed gate, and Gate.idle says when none is in a request", async () => {
  let served = 0;
  let release: (() => void) | undefined;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.text();
    served++;
    // the first request waits until the test lets it go
    if (served === 1) await new Promise<void>((resolve) => release = resolve);
    const m = req.headers.get("x-soak-marker") ?? "";
    return json({ choices: [{ message: { content: `Echo ${m}` } }], usage });
  });
  const gate = new Gate();
  const stop = new AbortController();
  try {
    const load = runLoad({
      url: `http://127.0.0.1:${server.addr.port}`,
      concurrency: 1,
      seconds: 30,
      maxRequests: 1000,
      random: () => 0.5,
      boundMs: 5000,
      idleMs: 0,
      pauseChance: 0,
      lullEvery: 0,
      signal: stop.signal,
      gate,
    });
    while (release === undefined) await new Promise((r) => setTimeout(r, 5));
    gate.close();
    assert.equal(gate.busy, 1);
    assert.equal(await gate.idle(50), false, "a client is in a request");
    release();
    assert.equal(await gate.idle(2000), true);
    const held = served;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(served, held, "no request while the gate is closed");
    gate.open();
    while (served < held + 3) await new Promise((r) => setTimeout(r, 5));
    stop.abort();
    const results = await load;
    assert.ok(results.every((r) => r.outcome === "ok_json"));
  } finally {
    release?.();
    gate.open();
    await server.shutdown();
  }
});
