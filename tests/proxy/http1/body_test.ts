/**
 * @module
 * Tests of the response body framing of the upstream HTTP/1.1 client (src/proxy/http1/body.ts)
 * over scripted connections (and a real loopback socket): lengths, chunks split at every byte,
 * extensions and trailers, malformed chunk lines failing at once, bodies cut short failing, and
 * `done` called exactly once with the right value.
 */

import assert from "node:assert/strict";
import { bodyStream, chunkedDecoder } from "../../../src/proxy/http1/body.ts";
import { Connection } from "../../../src/proxy/http1/connection.ts";
import { UpstreamProtocolError } from "../../../src/proxy/http1/errors.ts";
import type { Framing } from "../../../src/proxy/http1/response_head.ts";
import { closeQuietly, FakeConn, loopbackPair, type Piece, settle } from "../../helpers/conns.ts";
import { within } from "../../helpers/e2e.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

type BodyFraming = Exclude<Framing, { kind: "none" }>;
const CHUNKED: BodyFraming = { kind: "chunked" };
const CLOSE: BodyFraming = { kind: "close" };
const length = (n: number): BodyFraming => ({ kind: "length", length: n });

/** A body stream over a scripted connection; `done` values are recorded (and close it). */
function open(pieces: Piece[], framing: BodyFraming) {
  const fake = new FakeConn(pieces);
  const c = new Connection(fake.conn);
  const dones: boolean[] = [];
  const body = bodyStream(c, framing, (complete) => {
    dones.push(complete);
    if (!complete) c.close();
  });
  return { fake, c, body, dones };
}

/** Every way to deliver `text`: whole, cut in two at each position, and one byte per read. */
function deliveries(text: string): Piece[][] {
  const ways: Piece[][] = [[text]];
  for (let cut = 1; cut < text.length; cut++) ways.push([text.slice(0, cut), text.slice(cut)]);
  ways.push([...text]);
  return ways;
}

/** Reads a stream to its end. */
async function readAll(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of body) parts.push(part);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Asserts that reading the whole body rejects with an UpstreamProtocolError matching `message`. */
async function rejects(body: ReadableStream<Uint8Array>, message: RegExp, what: string) {
  await assert.rejects(within(readAll(body), 1000, what), (err: unknown) => {
    assert.ok(err instanceof UpstreamProtocolError, `${what}: ${err}`);
    assert.match(err.message, message, what);
    return true;
  });
}

/** What is left unread in the connection's buffer. */
function unread(c: Connection): string {
  return dec.decode(c.buf.subarray(c.start, c.end));
}

Deno.test("bodyStream() streams a length-framed body however it is split", async () => {
  const text = "hello, world";
  for (const pieces of deliveries(text)) {
    const { c, body, dones } = open(pieces, length(text.length));
    assert.equal(dec.decode(await readAll(body)), text, JSON.stringify(pieces));
    assert.deepEqual(dones, [true]);
    assert.equal(unread(c), "");
  }
});

Deno.test("bodyStream() leaves what follows a length-framed body unread", async () => {
  const text = "hello" + "HTTP/1.1 204 No Content\r\n\r\n";
  for (const pieces of deliveries(text)) {
    const { fake, c, body, dones } = open(pieces, length(5));
    assert.equal(dec.decode(await readAll(body)), "hello");
    assert.deepEqual(dones, [true]);
    // never more than the body is taken: what was read of the next answer stays
    assert.equal(unread(c), text.slice(5, fake.delivered), JSON.stringify(pieces));
  }
  const { c, body } = open(["hello NEXT"], length(5));
  await readAll(body);
  assert.equal(unread(c), " NEXT");
});

Deno.test("bodyStream() serves bytes already read with the head first", async () => {
  const fake = new FakeConn(["HEAD|hel", "lo"]);
  const c = new Connection(fake.conn);
  assert.equal(await c.fill(), true);
  c.start = 5;
  const dones: boolean[] = [];
  const body = bodyStream(c, length(5), (complete) => dones.push(complete));
  assert.equal(dec.decode(await readAll(body)), "hello");
  assert.deepEqual(dones, [true]);
  assert.equal(fake.reads, 2);
});

Deno.test("bodyStream() ends an empty length-framed body without reading", async () => {
  const { fake, body, dones } = open([], length(0));
  assert.equal((await readAll(body)).length, 0);
  assert.deepEqual(dones, [true]);
  assert.equal(fake.reads, 0);
});

Deno.test("bodyStream() rejects a length-framed body cut short", async () => {
  const text = "hello, world";
  for (let cut = 0; cut < text.length; cut++) {
    for (const pieces of [[text.slice(0, cut), null], [...text.slice(0, cut), null]]) {
      const { body, dones } = open(pieces, length(text.length));
      await rejects(body, /closed the connection before the body ended/, `cut at ${cut}`);
      assert.deepEqual(dones, [false]);
    }
  }
});

Deno.test("bodyStream() rejects a connection failing mid-body, naming only the failure", async () => {
  const secret = "http://h/v1?key=sk-secret-123";
  const cases: [BodyFraming, string][] = [
    [length(100), "hello"],
    [CHUNKED, "5\r\nhello\r\n"],
    [CLOSE, "hello"],
  ];
  for (const [framing, first] of cases) {
    const reset = new Deno.errors.ConnectionReset(`reset talking to ${secret}`);
    const { body, dones } = open([first, reset], framing);
    await assert.rejects(within(readAll(body), 1000, framing.kind), (err: unknown) => {
      assert.ok(err instanceof UpstreamProtocolError);
      assert.equal(
        err.message,
        "upstream connection failed in the middle of the body (ConnectionReset)",
      );
      assert.ok(!err.message.includes("sk-secret"));
      return true;
    });
    assert.deepEqual(dones, [false], framing.kind);
  }
});

const CHUNKED_BODIES: [string, string, string][] = [
  ["two chunks", "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n", "hello, world"],
  [
    "upper- and lower-case hex",
    "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
    "0123456789abcdefghijk",
  ],
  ["leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"],
  ["twelve hex digits", "000000000005\r\nhello\r\n0\r\n\r\n", "hello"],
  ["no data", "0\r\n\r\n", ""],
  ["extensions", '5;name=value\r\nhello\r\n1;a;b="c d"\r\n!\r\n0;last\r\n\r\n', "hello!"],
  ["an empty extension", "5;\r\nhello\r\n0\r\n\r\n", "hello"],
  ["whitespace before an extension", "5 ;a\r\nhello\r\n1\t;b\r\n!\r\n0 ;c\r\n\r\n", "hello!"],
  ["trailers", "5\r\nhello\r\n0\r\nx-checksum: abc\r\nx-more: 1\r\n\r\n", "hello"],
  ["a chunk holding CRLF", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"],
  ["a chunk holding a chunk", "b\r\n1\r\nx\r\n0\r\n\r\n\r\n0\r\n\r\n", "1\r\nx\r\n0\r\n\r\n"],
];

Deno.test("bodyStream() decodes chunks split at every byte", async () => {
  for (const [what, text, decoded] of CHUNKED_BODIES) {
    for (const pieces of deliveries(text)) {
      const { c, body, dones } = open(pieces, CHUNKED);
      const got = dec.decode(await within(readAll(body), 1000, what));
      assert.equal(got, decoded, `${what}: ${JSON.stringify(pieces)}`);
      assert.deepEqual(dones, [true], what);
      assert.equal(unread(c), "", what);
    }
  }
});

Deno.test("bodyStream() leaves what follows the last chunk unread", async () => {
  const next = "HTTP/1.1 200 OK\r\n\r\n";
  const text = "5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n" + next;
  for (const pieces of deliveries(text)) {
    const { fake, c, body, dones } = open(pieces, CHUNKED);
    assert.equal(dec.decode(await readAll(body)), "hello");
    assert.deepEqual(dones, [true]);
    assert.equal(unread(c), text.slice(text.length - next.length, fake.delivered));
  }
  const { c, body } = open([text], CHUNKED);
  await readAll(body);
  assert.equal(unread(c), next);
});

Deno.test("bodyStream() decodes chunks larger than the read buffer", async () => {
  const big = new Uint8Array(200_000).map((_, i) => (i * 7) % 251);
  const framed = [
    enc.encode("1869f\r\n"), // 99999
    big.subarray(0, 99_999),
    enc.encode("\r\n186a1\r\n"), // 100001
    big.subarray(99_999),
    enc.encode("\r\n0\r\n\r\n"),
  ];
  const whole = new Uint8Array(framed.reduce((n, p) => n + p.length, 0));
  framed.reduce((at, p) => (whole.set(p, at), at + p.length), 0);
  for (const size of [whole.length, 65_536, 1000, 4093]) {
    const pieces: Piece[] = [];
    for (let at = 0; at < whole.length; at += size) pieces.push(whole.subarray(at, at + size));
    const { body, dones } = open(pieces, CHUNKED);
    assert.deepEqual(await readAll(body), big, `pieces of ${size}`);
    assert.deepEqual(dones, [true]);
  }
  const { body, dones } = open([big], length(big.length));
  assert.deepEqual(await readAll(body), big);
  assert.deepEqual(dones, [true]);
});

Deno.test("bodyStream() fails a bare LF in a chunk line at once, without waiting for more", async () => {
  const cases: [string, string][] = [
    ["size line", "5\n"],
    ["empty size line", "\n"],
    ["size line with an extension", "5;a=b\n"],
    ["line after the data", "5\r\nhello\n"],
    ["trailer", "5\r\nhello\r\n0\r\nx-t: 1\n"],
    ["last line", "5\r\nhello\r\n0\r\n\n"],
  ];
  for (const [what, text] of cases) {
    for (const pieces of [[text], [...text]]) {
      // nothing is fed after the LF, not even the end: a reader that waited would hang
      const { fake, body, dones } = open(pieces, CHUNKED);
      await rejects(body, /chunk line without CRLF/, what);
      assert.deepEqual(dones, [false], what);
      assert.equal(fake.closed, true, what);
    }
  }
});

Deno.test("bodyStream() refuses invalid chunk sizes", async () => {
  const sizes = [
    "",
    " 5",
    "\t5",
    "0x5",
    "-1",
    "+5",
    "5x",
    "g",
    "5 x",
    "5\vx",
    ";ext",
    "1234567890abc",
    "\u0665",
    "5,5",
  ];
  for (const size of sizes) {
    const text = `${size}\r\nhello\r\n0\r\n\r\n`;
    const { body, dones } = open([text], CHUNKED);
    await rejects(body, /malformed chunk size/, JSON.stringify(size));
    assert.deepEqual(dones, [false]);
  }
});

Deno.test("bodyStream() refuses chunk data not followed by CRLF", async () => {
  const cases = [
    "5\r\nhelloX\r\n0\r\n\r\n",
    "5\r\nhelloworld\r\n0\r\n\r\n",
    "5\r\nhel\r\n0\r\n\r\n",
    "5\r\nhello0\r\n\r\n",
    "5\r\nhello \r\n0\r\n\r\n",
  ];
  for (const text of cases) {
    for (const pieces of deliveries(text)) {
      const { body, dones } = open(pieces, CHUNKED);
      await rejects(body, /malformed chunk$/, JSON.stringify(pieces));
      assert.deepEqual(dones, [false]);
    }
  }
});

Deno.test("bodyStream() refuses a CR inside a chunk line", async () => {
  const cases: [string, RegExp][] = [
    ["5\r\r\nhello\r\n0\r\n\r\n", /malformed chunk line/],
    ["5;a\rb\r\nhello\r\n0\r\n\r\n", /malformed chunk line/],
    ["\r5\r\nhello\r\n0\r\n\r\n", /malformed chunk line/],
    ["5\r\nhello\r\r\n0\r\n\r\n", /malformed chunk line/],
    ["0\r\nx-t: a\rb\r\n\r\n", /malformed chunk line/],
    ["0\r\n\r\r\n", /malformed chunk line/],
  ];
  for (const [text, message] of cases) {
    const { body, dones } = open([text], CHUNKED);
    await rejects(body, message, JSON.stringify(text));
    assert.deepEqual(dones, [false]);
  }
});

Deno.test("bodyStream() takes a chunk line of 4095 characters and refuses 4096", async () => {
  const line = (n: number) => "5;" + "x".repeat(n - 2);
  const ok = open([`${line(4095)}\r\nhello\r\n0\r\n\r\n`], CHUNKED);
  assert.equal(dec.decode(await readAll(ok.body)), "hello");
  assert.deepEqual(ok.dones, [true]);
  for (
    const pieces of [[`${line(4096)}\r\nhello\r\n0\r\n\r\n`], [
      line(4096),
      "\r\nhello\r\n0\r\n\r\n",
    ]]
  ) {
    const long = open(pieces, CHUNKED);
    await rejects(long.body, /chunk line too long/, "4096");
    assert.deepEqual(long.dones, [false]);
  }
});

Deno.test("bodyStream() refuses an over-long chunk line before its end arrives", async () => {
  // 5000 bytes and no line end, then nothing: a reader that waited for the LF would hang
  for (const size of [5000, 1000, 100]) {
    const text = "5;" + "x".repeat(4998);
    const pieces: Piece[] = [];
    for (let at = 0; at < text.length; at += size) pieces.push(text.slice(at, at + size));
    const { body, dones } = open(pieces, CHUNKED);
    await rejects(body, /chunk line too long/, `pieces of ${size}`);
    assert.deepEqual(dones, [false]);
  }
});

Deno.test("bodyStream() takes trailers up to 16 KiB and refuses more", async () => {
  const trailers = (n: number) =>
    Array.from({ length: n }, (_, i) => `x-t${i}: ${"v".repeat(990)}\r\n`).join("");
  const ok = open([`5\r\nhello\r\n0\r\n${trailers(15)}\r\n`], CHUNKED);
  assert.equal(dec.decode(await readAll(ok.body)), "hello");
  assert.deepEqual(ok.dones, [true]);
  const big = open([`5\r\nhello\r\n0\r\n${trailers(17)}\r\n`], CHUNKED);
  await rejects(big.body, /chunk line too long/, "17 KiB of trailers");
  assert.deepEqual(big.dones, [false]);
});

Deno.test("bodyStream() rejects a chunked body cut short at any byte", async () => {
  const text = "5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n";
  for (let cut = 0; cut < text.length; cut++) {
    const { body, dones } = open([text.slice(0, cut), null], CHUNKED);
    await rejects(body, /closed the connection before the body ended/, `cut at ${cut}`);
    assert.deepEqual(dones, [false], `cut at ${cut}`);
  }
});

Deno.test("bodyStream() ends a close-delimited body at EOF with done(false)", async () => {
  const text = "data: 1\n\ndata: 2\n\n";
  for (const pieces of deliveries(text)) {
    const { body, dones } = open([...pieces, null], CLOSE);
    assert.equal(dec.decode(await readAll(body)), text);
    assert.deepEqual(dones, [false], "a close-delimited connection is never reused");
  }
  const empty = open([null], CLOSE);
  assert.equal((await readAll(empty.body)).length, 0);
  assert.deepEqual(empty.dones, [false]);
});

Deno.test("bodyStream() reads nothing ahead of its consumer", async () => {
  for (
    const [framing, first, second] of [
      [length(10), "hello", "world"],
      [CHUNKED, "5\r\nhello\r\n", "5\r\nworld\r\n0\r\n\r\n"],
      [CLOSE, "hello", "world"],
    ] as [BodyFraming, string, string][]
  ) {
    const { fake, body, dones } = open([first], framing);
    const reader = body.getReader();
    assert.equal(dec.decode((await reader.read()).value), "hello");
    await settle();
    assert.equal(fake.reads, 1, `${framing.kind}: one read for one piece`);
    assert.equal(fake.waiting, false, `${framing.kind}: no read waiting`);
    fake.feed(second, null);
    assert.equal(dec.decode((await reader.read()).value), "world");
    assert.equal((await reader.read()).done, true);
    assert.deepEqual(dones, [framing.kind !== "close"], framing.kind);
  }
});

Deno.test("bodyStream() calls done once, with false, when cancelled", async () => {
  // before any read
  const before = open(["hello"], length(5));
  await before.body.cancel();
  assert.deepEqual(before.dones, [false]);
  // after a first piece
  const middle = open(["hel", "lo"], length(5));
  const reader = middle.body.getReader();
  await reader.read();
  await reader.cancel();
  assert.deepEqual(middle.dones, [false]);
  // while a read waits for bytes: done closes the connection, which fails that read
  const waiting = open(["5\r\nhello\r\n"], CHUNKED);
  const r = waiting.body.getReader();
  await r.read();
  const pending = r.read();
  await settle();
  assert.equal(waiting.fake.waiting, true);
  await r.cancel();
  assert.deepEqual(await pending, { done: true, value: undefined });
  await settle();
  assert.deepEqual(waiting.dones, [false]);
  assert.equal(waiting.fake.closed, true);
});

Deno.test("bodyStream() calls done once when cancelled after it ended or failed", async () => {
  const ended = open(["hello"], length(5));
  const reader = ended.body.getReader();
  await reader.read();
  assert.equal((await reader.read()).done, true);
  await reader.cancel();
  assert.deepEqual(ended.dones, [true]);
  const failed = open(["5\n"], CHUNKED);
  const r = failed.body.getReader();
  await assert.rejects(r.read(), UpstreamProtocolError);
  await r.cancel().catch(() => {});
  assert.deepEqual(failed.dones, [false]);
});

Deno.test("chunkedDecoder() gives bytes as they come, null to read more, then the end", async () => {
  const fake = new FakeConn(["5\r\nhel", "lo\r\n0\r\n", "\r\n"]);
  const c = new Connection(fake.conn);
  const next = chunkedDecoder(c);
  assert.equal(next(), null, "nothing buffered");
  await c.fill();
  assert.equal(dec.decode(next() as Uint8Array), "hel");
  assert.equal(next(), null);
  await c.fill();
  assert.equal(dec.decode(next() as Uint8Array), "lo");
  assert.equal(next(), null, "the trailer section is not complete");
  await c.fill();
  const end = next();
  assert.equal(typeof end, "symbol");
  assert.equal(next(), end, "the end stays the end");
});

Deno.test("bodyStream() reads a chunked body from a real socket, written in pieces", async () => {
  const { client, server } = await loopbackPair();
  try {
    const c = new Connection(client);
    const dones: boolean[] = [];
    const body = bodyStream(c, CHUNKED, (complete) => dones.push(complete));
    // (a write after the test closed the socket fails quietly)
    const writes = (async () => {
      for (const part of ["5\r\nhel", "lo\r\n", "7;x=1\r\n, wor", "ld\r\n0\r\n", "\r\n"]) {
        await server.write(enc.encode(part));
        await new Promise((r) => setTimeout(r, 2));
      }
    })().catch(() => {});
    assert.equal(dec.decode(await readAll(body)), "hello, world");
    await writes;
    assert.deepEqual(dones, [true]);
  } finally {
    closeQuietly(client);
    closeQuietly(server);
  }
});

Deno.test("bodyStream() rejects a real socket closed before the length is read", async () => {
  const { client, server } = await loopbackPair();
  try {
    const c = new Connection(client);
    const dones: boolean[] = [];
    const body = bodyStream(c, length(100), (complete) => dones.push(complete));
    await server.write(enc.encode("only part"));
    server.close();
    await rejects(body, /closed the connection before the body ended/, "length");
    assert.deepEqual(dones, [false]);
  } finally {
    closeQuietly(client);
    closeQuietly(server);
  }
});

Deno.test("bodyStream() ends a close-delimited body when a real socket closes", async () => {
  const { client, server } = await loopbackPair();
  try {
    const c = new Connection(client);
    const dones: boolean[] = [];
    const body = bodyStream(c, CLOSE, (complete) => dones.push(complete));
    await server.write(enc.encode("all of "));
    await server.write(enc.encode("it"));
    server.close();
    assert.equal(dec.decode(await readAll(body)), "all of it");
    assert.deepEqual(dones, [false]);
  } finally {
    closeQuietly(client);
    closeQuietly(server);
  }
});
