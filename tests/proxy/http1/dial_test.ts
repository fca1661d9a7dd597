/**
 * @module
 * Tests of opening upstream connections (src/proxy/http1/dial.ts): `dialWithin`'s connect
 * limit and signal (with injected dialers, some resolving late with a real loopback
 * connection, which must then be closed) and `defaultDial` over TCP and TLS on 127.0.0.1.
 */

import assert from "node:assert/strict";
import {
  defaultDial,
  type Dial,
  type DialTarget,
  dialWithin,
} from "../../../src/proxy/http1/dial.ts";
import { ConnectTimeoutError } from "../../../src/proxy/http1/errors.ts";
import { closeQuietly, FakeConn, loopbackPair } from "../../helpers/conns.ts";
import { within } from "../../helpers/e2e.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const TO: DialTarget = { hostname: "127.0.0.1", port: 9, tls: false };
const TLS_DIR = new URL("../../fixtures/tls/", import.meta.url);

/** A dialer whose connection the test hands over (or fails) when it likes. */
function lateDial() {
  let resolve!: (conn: Deno.Conn) => void;
  let reject!: (err: unknown) => void;
  const targets: DialTarget[] = [];
  const dial: Dial = (to) => {
    targets.push(to);
    return new Promise<Deno.Conn>((res, rej) => {
      resolve = res;
      reject = rej;
    });
  };
  return {
    dial,
    targets,
    open: (conn: Deno.Conn) => resolve(conn),
    fail: (e: unknown) => reject(e),
  };
}

/** Whether the peer of `server` closed: its next read ends. */
async function peerClosed(server: Deno.Conn): Promise<boolean> {
  return await within(server.read(new Uint8Array(16)), 1000, "the peer's close") === null;
}

Deno.test("dialWithin() returns the dialer's connection for the target", async () => {
  const fake = new FakeConn();
  for (
    const limits of [
      { signal: undefined, timeoutMs: 0 },
      { signal: undefined, timeoutMs: 1000 },
      { signal: new AbortController().signal, timeoutMs: 0 },
      { signal: new AbortController().signal, timeoutMs: 1000 },
    ]
  ) {
    const { dial, targets, open } = lateDial();
    const dialing = dialWithin(dial, TO, limits);
    open(fake.conn);
    assert.equal(await dialing, fake.conn);
    assert.deepEqual(targets, [TO]);
  }
  assert.equal(fake.closed, false);
});

Deno.test("dialWithin() rethrows the dialer's failure", async () => {
  const refused = new Deno.errors.ConnectionRefused("refused");
  for (const timeoutMs of [0, 1000]) {
    for (const signal of [undefined, new AbortController().signal]) {
      const { dial, fail } = lateDial();
      const dialing = dialWithin(dial, TO, { signal, timeoutMs });
      fail(refused);
      await assert.rejects(dialing, (err) => err === refused);
    }
  }
});

Deno.test("dialWithin() waits without limit when timeoutMs is 0 or less", async () => {
  for (const timeoutMs of [0, -1, Number.NaN]) {
    const fake = new FakeConn();
    const { dial, open } = lateDial();
    const dialing = dialWithin(dial, TO, { signal: undefined, timeoutMs });
    setTimeout(() => open(fake.conn), 20);
    assert.equal(await dialing, fake.conn, String(timeoutMs));
  }
});

Deno.test("dialWithin() throws ConnectTimeoutError when the limit fires first", async () => {
  const { dial } = lateDial();
  const started = performance.now();
  await assert.rejects(dialWithin(dial, TO, { signal: undefined, timeoutMs: 30 }), (err) => {
    assert.ok(err instanceof ConnectTimeoutError);
    assert.equal(err.message, "connect timeout: no connection within 30 ms");
    return true;
  });
  const took = performance.now() - started;
  assert.ok(took >= 25 && took < 1000, `took ${took} ms`);
});

Deno.test("dialWithin() throws the signal's reason when it aborts first", async () => {
  for (const timeoutMs of [0, 10_000]) {
    const { dial } = lateDial();
    const controller = new AbortController();
    const reason = new Error("client went away");
    const dialing = dialWithin(dial, TO, { signal: controller.signal, timeoutMs });
    setTimeout(() => controller.abort(reason), 5);
    await assert.rejects(dialing, (err) => err === reason);
    // the limit's timer is cleared (the test sanitizer would see it otherwise)
  }
});

Deno.test("dialWithin() throws the reason of a signal aborted before the call, dialing nothing", async () => {
  const fake = new FakeConn();
  const reason = new Error("already gone");
  let dials = 0;
  const dialing = dialWithin(
    () => {
      dials++;
      return Promise.resolve(fake.conn);
    },
    TO,
    {
      signal: AbortSignal.abort(reason),
      timeoutMs: 0,
    },
  );
  try {
    await assert.rejects(dialing, (err) => err === reason);
    assert.equal(dials, 0, "no connection was opened");
  } finally {
    if (!fake.closed) fake.close();
  }
});

Deno.test("dialWithin() closes a real connection that opens after the limit fired", async () => {
  const { client, server } = await loopbackPair();
  try {
    const { dial, open } = lateDial();
    await assert.rejects(
      dialWithin(dial, TO, { signal: undefined, timeoutMs: 10 }),
      ConnectTimeoutError,
    );
    open(client);
    assert.equal(await peerClosed(server), true, "the late connection was closed");
  } finally {
    closeQuietly(client);
    closeQuietly(server);
  }
});

Deno.test("dialWithin() closes a real connection that opens after the signal fired", async () => {
  const { client, server } = await loopbackPair();
  try {
    const { dial, open } = lateDial();
    const controller = new AbortController();
    const dialing = dialWithin(dial, TO, { signal: controller.signal, timeoutMs: 10_000 });
    controller.abort(new Error("gone"));
    await assert.rejects(dialing, /gone/);
    open(client);
    assert.equal(await peerClosed(server), true, "the late connection was closed");
  } finally {
    closeQuietly(client);
    closeQuietly(server);
  }
});

Deno.test("dialWithin() ignores a dial that fails after the limit fired", async () => {
  const { dial, fail } = lateDial();
  await assert.rejects(
    dialWithin(dial, TO, { signal: undefined, timeoutMs: 5 }),
    ConnectTimeoutError,
  );
  // no unhandled rejection follows (the test runner would report one)
  fail(new Deno.errors.ConnectionRefused("late refusal"));
  await new Promise((r) => setTimeout(r, 0));
});

Deno.test("dialWithin() leaves the connection open when the signal aborts after it opened", async () => {
  const fake = new FakeConn();
  const controller = new AbortController();
  const conn = await dialWithin(() => Promise.resolve(fake.conn), TO, {
    signal: controller.signal,
    timeoutMs: 1000,
  });
  controller.abort();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(conn, fake.conn);
  assert.equal(fake.closed, false);
});

Deno.test("defaultDial() opens a TCP connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await defaultDial()({ hostname: "127.0.0.1", port: listener.addr.port, tls: false });
  const server = await accepted;
  try {
    await conn.write(enc.encode("ping"));
    const buf = new Uint8Array(4);
    assert.equal(await server.read(buf), 4);
    assert.equal(dec.decode(buf), "ping");
    assert.equal((conn.remoteAddr as Deno.NetAddr).port, listener.addr.port);
  } finally {
    conn.close();
    server.close();
    listener.close();
  }
});

Deno.test("defaultDial() rejects a refused TCP connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  await assert.rejects(
    defaultDial()({ hostname: "127.0.0.1", port, tls: false }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("defaultDial() completes the TLS handshake with ALPN http/1.1", async () => {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(new URL("cert.pem", TLS_DIR)),
    key: await Deno.readTextFile(new URL("key.pem", TLS_DIR)),
    alpnProtocols: ["http/1.1"],
  });
  const accepted = listener.accept().then(async (c) => ({ c, info: await c.handshake() }));
  const dial = defaultDial([await Deno.readTextFile(new URL("ca.pem", TLS_DIR))]);
  const conn = await dial({ hostname: "127.0.0.1", port: listener.addr.port, tls: true });
  const { c: server, info } = await accepted;
  try {
    assert.equal(info.alpnProtocol, "http/1.1", "the server saw ALPN http/1.1");
    await conn.write(enc.encode("ping"));
    const buf = new Uint8Array(4);
    assert.equal(await server.read(buf), 4);
    assert.equal(dec.decode(buf), "ping");
  } finally {
    conn.close();
    server.close();
    listener.close();
  }
});

Deno.test("defaultDial() fails inside the dial on an untrusted certificate", async () => {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(new URL("cert.pem", TLS_DIR)),
    key: await Deno.readTextFile(new URL("key.pem", TLS_DIR)),
    alpnProtocols: ["http/1.1"],
  });
  const accepted = listener.accept().then((c) =>
    c.handshake().catch(() => {}).finally(() => c.close())
  );
  try {
    // no test CA: the handshake, so the dial, fails (and the socket is closed: no leak)
    await assert.rejects(
      defaultDial()({ hostname: "127.0.0.1", port: listener.addr.port, tls: true }),
    );
  } finally {
    await accepted.catch(() => {});
    listener.close();
  }
});

Deno.test("defaultDial() fails inside the dial when the upstream does not speak TLS", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = listener.accept().then(async (c) => {
    await c.write(enc.encode("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")).catch(
      () => {},
    );
    c.close();
  });
  try {
    await assert.rejects(
      defaultDial()({ hostname: "127.0.0.1", port: listener.addr.port, tls: true }),
    );
  } finally {
    await served;
    listener.close();
  }
});
