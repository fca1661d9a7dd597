/**
 * @module Tests of the pull-based streaming relay: chunks as they come, errors, cancel. The
 * attempt's limits run on a manual clock the tests move.
 */

import assert from "node:assert/strict";
import { relay, type RelayEnd } from "../../src/proxy/relay.ts";
import { AttemptControl } from "../../src/proxy/attempt_control.ts";
import { Watchdog } from "../../src/proxy/watchdog.ts";
import { ManualClock } from "../helpers/clock.ts";
import { within } from "../helpers/e2e.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** An upstream body the test drives; it errors when the attempt's signal aborts, as fetch does. */
function upstream(control: AttemptControl) {
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  let pulls = 0;
  let cancelled: unknown = "not cancelled";
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      ctrl = c;
      control.signal.addEventListener("abort", () => c.error(control.signal.reason), {
        once: true,
      });
    },
    pull() {
      pulls++;
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  return {
    reader: stream.getReader(),
    push: (s: string) => ctrl.enqueue(enc.encode(s)),
    close: () => ctrl.close(),
    fail: () => ctrl.error(new TypeError("connection reset")),
    pulls: () => pulls,
    cancelled: () => cancelled,
  };
}

interface SetupOptions {
  sse?: boolean;
  first?: string;
  idleMs?: number;
  transform?: (chunk: Uint8Array) => Uint8Array;
  flush?: () => Uint8Array;
}

function setup(opts: SetupOptions = {}) {
  const clock = new ManualClock();
  const watchdog = new Watchdog({ clock });
  const client = new AbortController();
  const control = new AttemptControl(client.signal, watchdog);
  control.armTotal(10_000);
  const up = upstream(control);
  const ends: RelayEnd[] = [];
  const seen: string[] = [];
  const body = relay({
    reader: up.reader,
    first: opts.first === undefined ? undefined : enc.encode(opts.first),
    control,
    idleMs: opts.idleMs ?? 0,
    sse: opts.sse ?? true,
    onChunk: (c) => seen.push(dec.decode(c)),
    transform: opts.transform,
    flush: opts.flush,
    onEnd: (e) => ends.push(e),
  });
  return { clock, watchdog, client, control, up, ends, seen, reader: body.getReader() };
}

/** Lets timers and I/O run until `cond()` holds (a few turns of the event loop at most). */
async function turnsUntil(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 0));
  assert.ok(cond(), `waiting for ${what}`);
}

/** Parses SSE text as a browser does: returns each dispatched event's type and data. */
function parseSse(text: string): { event: string; data: string }[] {
  const out: { event: string; data: string }[] = [];
  let event = "";
  let data: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === "") {
      if (data.length > 0) out.push({ event: event || "message", data: data.join("\n") });
      event = "";
      data = [];
    } else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    else if (line.startsWith("event:")) event = line.slice(6).trim();
  }
  return out;
}

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array>) {
  let text = "";
  let reads = 0;
  try {
    for (let i = 0; i < 1000; i++) {
      const r = await within(reader.read(), 3000, "the next chunk");
      if (r.done) return { text, reads, error: undefined };
      reads++;
      text += dec.decode(r.value, { stream: true });
    }
    throw new Error("too many reads");
  } catch (error) {
    return { text, reads, error };
  }
}

Deno.test("relay() sends the first chunk, then each upstream chunk unchanged, then ends", async () => {
  const t = setup({ first: "data: 1\n\n" });
  const read = readAll(t.reader);
  for (const s of ["data: 2\n", "\n", ": comment\r\ndata: 3\r\n\r\n"]) {
    await new Promise((r) => setTimeout(r, 5));
    t.up.push(s);
  }
  t.up.close();
  const { text, reads, error } = await read;
  assert.equal(error, undefined);
  assert.equal(text, "data: 1\n\ndata: 2\n\n: comment\r\ndata: 3\r\n\r\n");
  assert.equal(reads, 4);
  assert.deepEqual(t.seen, ["data: 1\n\n", "data: 2\n", "\n", ": comment\r\ndata: 3\r\n\r\n"]);
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.cls, e.bytes]), [[
    "complete",
    "ok",
    text.length,
  ]]);
});

Deno.test("relay() reads the upstream only when the client reads", async () => {
  const t = setup({ first: "a" });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(t.up.pulls(), 0);
  assert.equal(dec.decode((await within(t.reader.read(), 3000, "a chunk")).value), "a");
  assert.equal(t.up.pulls(), 0);
  const next = t.reader.read();
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(t.up.pulls(), 1);
  t.up.push("b");
  assert.equal(dec.decode((await within(next, 3000, "a chunk")).value), "b");
  t.up.close();
  assert.equal((await within(t.reader.read(), 3000, "a chunk")).done, true);
});

Deno.test("relay() skips empty chunks", async () => {
  const t = setup({ first: "" });
  const read = readAll(t.reader);
  t.up.push("");
  t.up.push("x");
  t.up.close();
  const { text, reads } = await read;
  assert.equal(text, "x");
  assert.equal(reads, 1);
});

Deno.test("relay() ends an event stream that breaks with an error event, then an error", async () => {
  const t = setup({ first: 'data: {"a":1}\n\ndata: {"b"' });
  const read = readAll(t.reader);
  await new Promise((r) => setTimeout(r, 5));
  t.up.fail();
  const { text, error } = await read;
  assert.ok(error instanceof Error);
  assert.match(error.message, /Stream interrupted: upstream connection broke/);
  assert.ok(!text.includes("[DONE]"));
  const events = parseSse(text);
  const last = events.at(-1)!;
  assert.equal(last.event, "error");
  assert.deepEqual(JSON.parse(last.data).error, {
    message: "Stream interrupted: upstream connection broke",
    type: "upstream_error",
    code: "stream_interrupted",
    param: null,
  });
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.cls]), [["failed", "server"]]);
});

Deno.test("relay() makes the error event an event of its own whatever came before (LF or CRLF)", async () => {
  for (const before of ["data: 1\n\n", "data: 1\r\n\r\n", "data: 1\n", "data: 1\r\n", "data: 1"]) {
    const t = setup({ first: before });
    const read = readAll(t.reader);
    await new Promise((r) => setTimeout(r, 5));
    t.up.fail();
    const { text } = await read;
    const events = parseSse(text);
    const errors = events.filter((e) => e.event === "error");
    assert.equal(errors.length, 1, `after ${JSON.stringify(before)}: ${JSON.stringify(text)}`);
    let code: unknown;
    try {
      code = JSON.parse(errors[0]!.data).error.code;
    } catch {
      code = `unparsable data ${JSON.stringify(errors[0]!.data)}`;
    }
    assert.equal(code, "stream_interrupted", `after ${JSON.stringify(before)}`);
  }
});

Deno.test("relay() errors a non-event body that breaks, adding no bytes", async () => {
  const t = setup({ sse: false, first: '{"id":' });
  const read = readAll(t.reader);
  await new Promise((r) => setTimeout(r, 5));
  t.up.fail();
  const { text, error } = await read;
  assert.equal(text, '{"id":');
  assert.ok(error instanceof Error);
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.bytes]), [["failed", 6]]);
});

Deno.test("relay() cancels the upstream at once when the client cancels", async () => {
  const t = setup({ first: "data: 1\n\n" });
  await within(t.reader.read(), 3000, "a chunk");
  await t.reader.cancel("client left");
  assert.equal(t.control.clientAborted, true);
  assert.equal(t.control.signal.aborted, true);
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.cls, e.bytes]), [[
    "client_abort",
    "client_abort",
    9,
  ]]);
});

Deno.test("relay() reports client_abort when the client's signal aborts during a read", async () => {
  const t = setup({ first: "data: 1\n\n" });
  await within(t.reader.read(), 3000, "a chunk");
  const next = t.reader.read();
  await new Promise((r) => setTimeout(r, 5));
  t.client.abort();
  await assert.rejects(within(next, 3000, "the read to fail"));
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.cls]), [["client_abort", "client_abort"]]);
});

Deno.test("relay() times out when the next chunk takes longer than idleMs", async () => {
  const t = setup({ first: "data: 1\n\n", idleMs: 50 });
  const t0 = performance.now();
  const read = readAll(t.reader);
  // the first chunk went out and the relay waits for the next one
  await turnsUntil(() => t.up.pulls() === 1, "the relay to read the upstream");
  t.clock.advance(49);
  t.watchdog.tick();
  assert.equal(t.control.timedOut, undefined, "not before idleMs");
  t.clock.advance(1);
  t.watchdog.tick();
  const { text, error } = await read;
  assert.ok(performance.now() - t0 < 2000);
  assert.ok(error instanceof Error);
  assert.match(error.message, /upstream idle timeout/);
  assert.equal(parseSse(text).at(-1)?.event, "error");
  assert.equal(t.control.timedOut, "idle");
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.cls]), [["failed", "timeout"]]);
});

Deno.test("relay() tells the client when llm-balance shuts down mid-stream", async () => {
  const t = setup({ first: "data: 1\n\n" });
  const read = readAll(t.reader);
  await new Promise((r) => setTimeout(r, 5));
  t.control.shutdown();
  const { text, error } = await read;
  assert.ok(error instanceof Error);
  assert.match(error.message, /llm-balance shut down before the upstream finished/);
  assert.match(text, /event: error/);
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.cls]), [["failed", "client_abort"]]);
});

Deno.test("relay() calls onEnd once however the body ends", async () => {
  const t = setup({ first: "x" });
  await within(t.reader.read(), 3000, "a chunk");
  t.up.close();
  assert.equal((await within(t.reader.read(), 3000, "a chunk")).done, true);
  await t.reader.cancel().catch(() => {});
  t.client.abort();
  assert.equal(t.ends.length, 1);
});

/** A transform that holds back a trailing partial line, as a line-based rewriter does. */
function lineHolder() {
  let held = "";
  return {
    transform: (c: Uint8Array) => {
      const all = held + dec.decode(c);
      const cut = all.lastIndexOf("\n") + 1;
      held = all.slice(cut);
      return enc.encode(all.slice(0, cut).replaceAll("secret", "******"));
    },
    flush: () => {
      const out = held;
      held = "";
      return enc.encode(out);
    },
  };
}

Deno.test("relay() sends what transform makes of each chunk, reading on when it holds all back", async () => {
  const t = setup({ first: "data: sec", ...lineHolder() });
  const read = readAll(t.reader);
  t.up.push("ret\n\ndata: 2");
  t.up.push("\n\n");
  t.up.close();
  const { text, reads, error } = await read;
  assert.equal(error, undefined);
  assert.equal(text, "data: ******\n\ndata: 2\n\n");
  assert.equal(reads, 2);
  assert.deepEqual(t.seen, ["data: sec", "ret\n\ndata: 2", "\n\n"], "onChunk sees upstream bytes");
  assert.deepEqual(t.ends.map((e) => [e.outcome, e.bytes]), [["complete", text.length]]);
});

Deno.test("relay() sends what flush holds before the end", async () => {
  const t = setup({ first: "data: 1\n\ntail", ...lineHolder() });
  const read = readAll(t.reader);
  t.up.close();
  const { text } = await read;
  assert.equal(text, "data: 1\n\ntail");
});

Deno.test("relay() sends what flush holds before the error event", async () => {
  const t = setup({ first: "data: 1\n\ndata: {", ...lineHolder() });
  const read = readAll(t.reader);
  await new Promise((r) => setTimeout(r, 5));
  t.up.fail();
  const { text, error } = await read;
  assert.ok(error instanceof Error);
  assert.ok(text.startsWith("data: 1\n\ndata: {\n\nevent: error\n"), JSON.stringify(text));
  assert.equal(parseSse(text).at(-1)?.event, "error");
});
