/**
 * @module
 * Tests of the idle connections of the HTTP/1.1 client (src/proxy/http1/pool.ts), on a clock
 * the tests move: lifetimes from `Keep-Alive`, most recently used first, expired, closed and
 * watched-away connections never handed out, the limits, `dropOlder` and `close`.
 */

import assert from "node:assert/strict";
import { Connection } from "../../../src/proxy/http1/connection.ts";
import { ConnectionPool, type PoolOptions } from "../../../src/proxy/http1/pool.ts";
import { ManualClock } from "../../helpers/clock.ts";
import { FakeConn, settle } from "../../helpers/conns.ts";

const A = "http://a.example";
const B = "http://b.example";

/** A pool on a clock the test moves, and the connections it made. */
function setup(options: PoolOptions = {}) {
  const clock = new ManualClock(undefined, 1_000_000);
  const pool = new ConnectionPool({ clock, ...options });
  const fakes: FakeConn[] = [];
  const conn = () => {
    const fake = new FakeConn();
    fakes.push(fake);
    return new Connection(fake.conn);
  };
  /** Closes what the test left open (the pool's and any taken). */
  const close = () => {
    pool.close();
    for (const f of fakes) if (!f.closed) f.close();
  };
  return { clock, pool, conn, fakes, close };
}

Deno.test("ConnectionPool.lifetime() follows Keep-Alive less a margin, capped", () => {
  const cases: [PoolOptions, number | undefined, number][] = [
    [{}, undefined, 4000],
    [{ idleTimeoutMs: 2500 }, undefined, 2500],
    [{}, 5, 4000],
    [{}, 2, 1000],
    [{}, 1, 0],
    [{}, 0, -1000],
    [{}, 600, 599_000],
    [{}, 601, 600_000],
    [{}, 999_999_999, 600_000],
    [{ maxIdleTimeoutMs: 30_000 }, 60, 30_000],
    [{ marginMs: 0 }, 5, 5000],
    [{ marginMs: 250 }, 1, 750],
  ];
  for (const [options, seconds, ms] of cases) {
    const pool = new ConnectionPool(options);
    assert.equal(pool.lifetime(seconds), ms, `${JSON.stringify(options)} timeout=${seconds}`);
  }
});

Deno.test("ConnectionPool.take() gives nothing for an origin without idle connections", () => {
  const { pool, close } = setup();
  assert.equal(pool.take(A), undefined);
  assert.equal(pool.size, 0);
  close();
});

Deno.test("ConnectionPool.put() then take() hands the connection back, marked reused", () => {
  const { pool, conn, fakes, clock, close } = setup();
  const c = conn();
  c.answered = true;
  pool.put(A, c, 4000);
  assert.equal(pool.size, 1);
  assert.deepEqual([c.idle, c.origin, c.idleSince, c.lifetimeMs], [true, A, clock.mono(), 4000]);
  assert.equal(fakes[0]!.unrefs, 1, "an idle connection does not hold the process");
  assert.equal(fakes[0]!.waiting, true, "and is watched");
  assert.equal(pool.take(B), undefined, "origins are apart");
  const taken = pool.take(A);
  assert.equal(taken, c);
  assert.deepEqual([c.idle, c.reused, c.answered, c.closed], [false, true, false, false]);
  assert.equal(fakes[0]!.refs, 1);
  assert.equal(pool.size, 0);
  assert.equal(pool.take(A), undefined, "taken once");
  close();
});

Deno.test("ConnectionPool.take() hands out the most recently used first", () => {
  const { pool, conn, clock, close } = setup();
  const [a, b, c] = [conn(), conn(), conn()];
  pool.put(A, a, 4000);
  clock.advance(10);
  pool.put(A, b, 4000);
  clock.advance(10);
  pool.put(A, c, 4000);
  assert.deepEqual([pool.take(A), pool.take(A), pool.take(A)], [c, b, a]);
  assert.equal(pool.take(A), undefined);
  close();
});

Deno.test("ConnectionPool.take() closes expired connections and skips them", () => {
  const { pool, conn, clock, close } = setup();
  const long = conn();
  const short = conn();
  pool.put(A, long, 10_000);
  pool.put(A, short, 100);
  clock.advance(99);
  const early = pool.take(A);
  assert.equal(early, short, "still within its lifetime");
  pool.put(A, early!, 100);
  clock.advance(100); // exactly its lifetime: expired
  assert.equal(pool.take(A), long);
  assert.equal(short.closed, true);
  assert.equal(pool.size, 0);
  clock.advance(10_000);
  pool.put(A, long, 10_000);
  clock.advance(10_000);
  assert.equal(pool.take(A), undefined);
  assert.equal(long.closed, true);
  close();
});

Deno.test("ConnectionPool measures idle lifetimes on the monotonic clock, not the wall clock", () => {
  const { pool, conn, clock, close } = setup();
  const c = conn();
  pool.put(A, c, 4000);
  clock.set(clock.now() + 3_600_000); // the system clock is set an hour on
  assert.equal(pool.take(A), c, "a wall-clock jump does not expire it");
  pool.put(A, c, 4000);
  clock.set(clock.now() - 7_200_000); // and two hours back
  clock.advance(4000);
  assert.equal(pool.take(A), undefined, "its lifetime passed on the monotonic clock");
  assert.equal(c.closed, true);
  close();
});

Deno.test("ConnectionPool.take() skips connections closed while idle", () => {
  const { pool, conn, close } = setup();
  const a = conn();
  const b = conn();
  pool.put(A, a, 4000);
  pool.put(A, b, 4000);
  b.close();
  assert.equal(pool.take(A), a);
  assert.equal(pool.take(A), undefined);
  close();
});

Deno.test("ConnectionPool.put() closes what must not be reused", async () => {
  const cases: [string, (c: Connection) => void, number][] = [
    ["unread bytes", (c) => c.end = 3, 4000],
    ["a lifetime of 0", () => {}, 0],
    ["a negative lifetime", () => {}, -1000],
    ["a closed connection", (c) => c.close(), 4000],
  ];
  for (const [what, prepare, lifetime] of cases) {
    const { pool, conn, fakes, close } = setup();
    const c = conn();
    prepare(c);
    pool.put(A, c, lifetime);
    assert.equal(c.closed, true, what);
    assert.equal(fakes[0]!.closed, true, what);
    assert.equal(c.idle, false, what);
    assert.equal(pool.size, 0, what);
    assert.equal(pool.take(A), undefined, what);
    assert.equal(fakes[0]!.reads, 0, `${what}: not watched`);
    close();
  }
  await settle();
});

Deno.test("ConnectionPool.put() closes a connection whose upstream said timeout=1", () => {
  const { pool, conn, close } = setup();
  const c = conn();
  pool.put(A, c, pool.lifetime(1));
  assert.equal(c.closed, true);
  assert.equal(pool.size, 0);
  close();
});

Deno.test("ConnectionPool.put() keeps at most maxIdlePerOrigin per origin", () => {
  const { pool, conn, close } = setup({ maxIdlePerOrigin: 2 });
  const [a, b, c, d] = [conn(), conn(), conn(), conn()];
  pool.put(A, a, 4000);
  pool.put(A, b, 4000);
  pool.put(A, c, 4000);
  assert.equal(c.closed, true, "the third is closed");
  pool.put(B, d, 4000);
  assert.equal(d.closed, false, "another origin has its own room");
  assert.equal(pool.size, 3);
  assert.equal(pool.take(A), b);
  close();
});

Deno.test("ConnectionPool drops and closes a connection that sees anything while idle", async () => {
  const cases: [string, string | null | Error][] = [
    ["bytes", "HTTP/1.1 408 Request Timeout\r\n\r\n"],
    ["the end", null],
    ["a reset", new Deno.errors.ConnectionReset("reset")],
  ];
  for (const [what, piece] of cases) {
    const { pool, conn, fakes, close } = setup();
    const a = conn();
    const b = conn();
    pool.put(A, a, 4000);
    pool.put(A, b, 4000);
    fakes[1]!.feed(piece);
    await settle();
    assert.equal(b.closed, true, what);
    assert.equal(fakes[1]!.closed, true, what);
    assert.equal(pool.size, 1, what);
    assert.equal(pool.take(A), a, `${what}: the other is handed out`);
    assert.equal(pool.take(A), undefined, what);
    close();
  }
});

Deno.test("ConnectionPool hands the idle read of a taken connection to its next fill", async () => {
  const { pool, conn, fakes, close } = setup();
  const c = conn();
  pool.put(A, c, 4000);
  const taken = pool.take(A)!;
  fakes[0]!.feed("HTTP/1.1 200 OK\r\n\r\n");
  await settle();
  assert.equal(taken.closed, false, "an answer to a taken connection is not an idle event");
  assert.equal(await taken.fill(), true);
  assert.equal(
    new TextDecoder().decode(taken.buf.subarray(0, taken.end)),
    "HTTP/1.1 200 OK\r\n\r\n",
  );
  assert.equal(fakes[0]!.reads, 1);
  close();
});

Deno.test("ConnectionPool.put() watches a connection again each time it goes idle", async () => {
  const { pool, conn, fakes, close } = setup();
  const c = conn();
  pool.put(A, c, 4000);
  const taken = pool.take(A)!;
  fakes[0]!.feed("HTTP/1.1 204 No Content\r\n\r\n");
  await taken.fill();
  taken.take(taken.end - taken.start);
  pool.put(A, taken, 4000);
  assert.equal(fakes[0]!.reads, 2);
  fakes[0]!.feed(null);
  await settle();
  assert.equal(taken.closed, true);
  assert.equal(pool.size, 0);
  close();
});

Deno.test("ConnectionPool.put() sweeps expired connections of every origin", () => {
  const { pool, conn, clock, close } = setup({ idleTimeoutMs: 1000 });
  const a = conn();
  const b = conn();
  const keep = conn();
  pool.put(A, a, 500);
  pool.put(B, keep, 60_000);
  clock.advance(1001);
  pool.put(B, b, 1000);
  assert.equal(a.closed, true, "expired, swept");
  assert.equal(keep.closed, false);
  assert.equal(pool.size, 2);
  close();
});

Deno.test("ConnectionPool.dropOlder() closes an origin's connections idle since no later", () => {
  const { pool, conn, clock, close } = setup();
  const [a, b, c, other] = [conn(), conn(), conn(), conn()];
  const start = clock.mono();
  const since = start + 200;
  // another origin's connection, idle since before all of them
  pool.put(B, other, 60_000);
  for (const [x, at] of [[a, 100], [b, 200], [c, 300]] as [Connection, number][]) {
    clock.advance(start + at - clock.mono());
    pool.put(A, x, 60_000);
  }
  pool.dropOlder(A, since);
  assert.deepEqual([a.closed, b.closed, c.closed, other.closed], [true, true, false, false]);
  assert.equal(pool.size, 2);
  assert.equal(pool.take(A), c);
  assert.equal(pool.take(A), undefined);
  pool.dropOlder("http://unknown.example", since);
  assert.equal(pool.take(B), other);
  close();
});

Deno.test("ConnectionPool.close() closes every idle connection and refuses more", () => {
  const { pool, conn, close } = setup();
  const [a, b, c] = [conn(), conn(), conn()];
  pool.put(A, a, 4000);
  pool.put(B, b, 4000);
  pool.close();
  assert.deepEqual([a.closed, b.closed], [true, true]);
  assert.equal(pool.size, 0);
  assert.equal(pool.take(A), undefined);
  pool.put(A, c, 4000);
  assert.equal(c.closed, true, "a connection whose answer ends after close is closed");
  assert.equal(pool.size, 0);
  pool.close();
  close();
});

Deno.test("ConnectionPool.size counts idle connections over all origins", () => {
  const { pool, conn, close } = setup();
  assert.equal(pool.size, 0);
  pool.put(A, conn(), 4000);
  pool.put(A, conn(), 4000);
  pool.put(B, conn(), 4000);
  assert.equal(pool.size, 3);
  pool.take(A);
  assert.equal(pool.size, 2);
  close();
});
