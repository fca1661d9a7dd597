/**
 * @module
 * Tests of one upstream connection of the HTTP/1.1 client
 * (src/proxy/http1/connection.ts): its read buffer (filled, grown, taken from), its close, and
 * the idle watch that sees bytes, an end or a reset while the connection sits in the pool and
 * hands a read it started to the next fill.
 */

import assert from "node:assert/strict";
import { Connection } from "../../../src/proxy/http1/connection.ts";
import { closeQuietly, FakeConn, loopbackPair, settle } from "../../helpers/conns.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What is unread in the buffer. */
function unread(c: Connection): string {
  return dec.decode(c.buf.subarray(c.start, c.end));
}

Deno.test("Connection starts empty, not idle, not closed", () => {
  const fake = new FakeConn();
  const c = new Connection(fake.conn);
  assert.equal(c.conn, fake.conn);
  assert.equal(c.buf.length, 4096);
  assert.deepEqual(
    [c.start, c.end, c.origin, c.reused, c.idle, c.closed, c.answered],
    [0, 0, "", false, false, false, false],
  );
  assert.equal(new Connection(fake.conn, 16).buf.length, 16);
});

Deno.test("Connection.fill() appends what one read gives and marks the answer begun", async () => {
  const fake = new FakeConn(["HTTP/1.1 ", "200 OK\r\n"]);
  const c = new Connection(fake.conn);
  assert.equal(await c.fill(), true);
  assert.equal(unread(c), "HTTP/1.1 ");
  assert.equal(c.answered, true);
  assert.equal(await c.fill(), true);
  assert.equal(unread(c), "HTTP/1.1 200 OK\r\n");
  assert.equal(fake.reads, 2);
});

Deno.test("Connection.fill() gives false at the end, and the end stays", async () => {
  const fake = new FakeConn(["x", null]);
  const c = new Connection(fake.conn);
  assert.equal(await c.fill(), true);
  assert.equal(await c.fill(), false);
  assert.equal(await c.fill(), false);
  assert.equal(unread(c), "x", "what was read stays");
  const empty = new Connection(new FakeConn([null]).conn);
  assert.equal(await empty.fill(), false);
  assert.equal(empty.answered, false, "no byte arrived");
});

Deno.test("Connection.fill() rethrows what the socket throws", async () => {
  const reset = new Deno.errors.ConnectionReset("reset");
  const c = new Connection(new FakeConn([reset]).conn);
  await assert.rejects(c.fill(), (err) => err === reset);
  assert.equal(c.answered, false);
});

Deno.test("Connection.take() copies unread bytes and moves past them", async () => {
  const c = new Connection(new FakeConn(["hello world"]).conn);
  await c.fill();
  const hello = c.take(5);
  assert.equal(dec.decode(hello), "hello");
  assert.equal(c.start, 5);
  c.buf.fill(0);
  assert.equal(dec.decode(hello), "hello", "a copy, not a view");
  assert.equal(hello.buffer.byteLength, 5);
  assert.equal(c.take(0).length, 0);
  assert.equal(c.start, 5);
});

Deno.test("Connection.fill() reuses the buffer from its start once all is taken", async () => {
  const c = new Connection(new FakeConn(["abc", "def"]).conn, 8, 8);
  await c.fill();
  c.take(3);
  await c.fill();
  assert.deepEqual([c.start, c.end], [0, 3]);
  assert.equal(unread(c), "def");
  assert.equal(c.buf.length, 8);
});

Deno.test("Connection.fill() grows a buffer full of unread bytes, past maxBuffer", async () => {
  // a head or chunk line longer than the buffer: it doubles, keeping every unread byte
  const text = "0123456789abcdefghijklmnopqrstuvwxyz";
  const c = new Connection(new FakeConn([text]).conn, 8, 8);
  await c.fill();
  assert.equal(unread(c), "01234567");
  await c.fill();
  assert.equal(c.buf.length, 16);
  assert.equal(unread(c), "0123456789abcdef");
  await c.fill();
  assert.equal(c.buf.length, 32);
  assert.equal(unread(c), "0123456789abcdefghijklmnopqrstuv");
  await c.fill();
  assert.equal(unread(c), text);
});

Deno.test("Connection.fill() moves unread bytes to the front when it grows", async () => {
  const c = new Connection(new FakeConn(["01234567", "89abcdef"]).conn, 8, 64);
  await c.fill();
  c.take(3);
  await c.fill();
  assert.equal(c.buf.length, 16);
  assert.equal(c.start, 0);
  assert.equal(unread(c), "3456789abcdef");
});

Deno.test("Connection.fill() grows after a full read up to maxBuffer, and no further", async () => {
  const c = new Connection(new FakeConn(["x".repeat(1000)]).conn, 8, 32);
  const sizes: number[] = [];
  for (let i = 0; i < 6; i++) {
    await c.fill();
    c.take(c.end - c.start); // a fast body: every byte taken at once
    sizes.push(c.buf.length);
  }
  assert.deepEqual(sizes, [8, 16, 32, 32, 32, 32]);
});

Deno.test("Connection.fill() moves a short unread tail to the front, not past maxBuffer", async () => {
  // a full read ending two bytes into a chunk-size line: the line fits, nothing must grow
  const c = new Connection(new FakeConn(["abcdefgh", "ijklmnop"]).conn, 8, 8);
  await c.fill();
  c.take(6);
  await c.fill();
  assert.equal(c.buf.length, 8, "grown past maxBuffer for two unread bytes");
  assert.equal(unread(c), "ghijklmn");
});

Deno.test("Connection.fill() keeps its size after a read that did not fill it", async () => {
  const c = new Connection(new FakeConn(["abc", "def", "ghi"]).conn, 8, 64);
  for (let i = 0; i < 3; i++) {
    await c.fill();
    c.take(3);
  }
  assert.equal(c.buf.length, 8);
});

Deno.test("Connection.close() closes the socket once, and is no longer idle", () => {
  const fake = new FakeConn();
  const c = new Connection(fake.conn);
  c.idle = true;
  c.close();
  assert.deepEqual([c.closed, c.idle, fake.closed, fake.closes], [true, false, true, 1]);
  c.close();
  assert.equal(fake.closes, 1, "idempotent");
  // a socket closed under it (its close throws) is closed quietly
  const under = new FakeConn();
  under.close();
  const d = new Connection(under.conn);
  d.close();
  assert.equal(d.closed, true);
});

Deno.test("Connection.close() makes a read in progress fail", async () => {
  const fake = new FakeConn();
  const c = new Connection(fake.conn);
  const filling = c.fill();
  await settle();
  c.close();
  await assert.rejects(filling, Deno.errors.Interrupted);
});

Deno.test("Connection.watchIdle() reports bytes, an end or a reset while idle", async () => {
  const cases: [string, string | null | Error][] = [
    ["bytes", "HTTP/1.1 408 Request Timeout\r\n\r\n"],
    ["end", null],
    ["reset", new Deno.errors.ConnectionReset("reset")],
  ];
  for (const [what, piece] of cases) {
    const fake = new FakeConn();
    const c = new Connection(fake.conn);
    const events: Connection[] = [];
    c.idle = true;
    c.watchIdle((x) => events.push(x));
    await settle();
    assert.equal(fake.waiting, true, `${what}: a read waits`);
    assert.equal(events.length, 0, what);
    fake.feed(piece);
    await settle();
    assert.deepEqual(events, [c], what);
  }
});

Deno.test("Connection.watchIdle() starts from an empty buffer", async () => {
  const fake = new FakeConn(["leftover"]);
  const c = new Connection(fake.conn);
  await c.fill();
  c.take(8);
  c.idle = true;
  c.watchIdle(() => {});
  assert.deepEqual([c.start, c.end], [0, 0]);
  c.close();
  await settle();
});

Deno.test("Connection.watchIdle() is silent once the connection is no longer idle", async () => {
  for (const piece of ["late bytes", null, new Deno.errors.ConnectionReset("reset")]) {
    const fake = new FakeConn();
    const c = new Connection(fake.conn);
    let events = 0;
    c.idle = true;
    c.watchIdle(() => events++);
    c.idle = false; // taken from the pool
    fake.feed(piece);
    await settle();
    assert.equal(events, 0, String(piece));
    // the read it started is the next fill's
    if (piece instanceof Error) await assert.rejects(c.fill(), (err) => err === piece);
    else assert.equal(await c.fill(), piece !== null);
    c.close();
  }
});

Deno.test("Connection.watchIdle() is silent when the connection is closed", async () => {
  const fake = new FakeConn();
  const c = new Connection(fake.conn);
  let events = 0;
  c.idle = true;
  c.watchIdle(() => events++);
  c.close();
  await settle();
  assert.equal(events, 0);
});

Deno.test("Connection.fill() takes the read started while idle before reading again", async () => {
  const fake = new FakeConn();
  const c = new Connection(fake.conn);
  c.idle = true;
  c.watchIdle(() => assert.fail("no event once taken"));
  c.idle = false;
  const filling = c.fill();
  await settle();
  assert.equal(fake.reads, 1, "no second read while the first waits");
  fake.feed("HTTP/1.1 200 OK\r\n", "content-length: 0\r\n\r\n");
  assert.equal(await filling, true);
  assert.equal(unread(c), "HTTP/1.1 200 OK\r\n");
  assert.equal(c.answered, true);
  assert.equal(await c.fill(), true, "then reads on");
  assert.equal(unread(c), "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  assert.equal(fake.reads, 2);
});

Deno.test("Connection.fill() takes an idle read that already completed", async () => {
  const fake = new FakeConn();
  const c = new Connection(fake.conn, 8, 64);
  c.watchIdle(() => {});
  fake.feed("12345678", "9");
  await settle();
  assert.equal(await c.fill(), true);
  assert.equal(unread(c), "12345678");
  // the idle read filled the buffer: the next read gets a bigger one
  assert.equal(await c.fill(), true);
  assert.equal(c.buf.length, 16);
  assert.equal(unread(c), "123456789");
});

Deno.test("Connection.watchIdle() sees a real peer close and send while idle", async () => {
  for (const act of ["close", "send"] as const) {
    const { client, server } = await loopbackPair();
    try {
      const c = new Connection(client);
      c.idle = true;
      const event = new Promise<Connection>((resolve) => c.watchIdle(resolve));
      if (act === "close") server.close();
      else await server.write(enc.encode("HTTP/1.1 408 Request Timeout\r\n\r\n"));
      assert.equal(await event, c, act);
      c.close();
    } finally {
      closeQuietly(client);
      closeQuietly(server);
    }
  }
});

Deno.test("Connection.fill() receives a real answer through the idle read", async () => {
  const { client, server } = await loopbackPair();
  try {
    const c = new Connection(client);
    c.idle = true;
    c.watchIdle(() => assert.fail("no event once taken"));
    await settle();
    c.idle = false;
    await server.write(enc.encode("HTTP/1.1 200 OK\r\n\r\n"));
    assert.equal(await c.fill(), true);
    assert.equal(unread(c), "HTTP/1.1 200 OK\r\n\r\n");
  } finally {
    closeQuietly(client);
    closeQuietly(server);
  }
});
