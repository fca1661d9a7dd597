/**
 * @module Tests of the upstream HTTP/1.1 client (src/proxy/http1/client.ts) against raw TCP servers on
 * 127.0.0.1 that answer with exact bytes: framing, keep-alive reuse, stale connections,
 * cancellation, header hygiene and what is left to `fetch`.
 */

import assert from "node:assert/strict";
import {
  ConnectError,
  ConnectTimeoutError,
  Http1Client,
  StaleConnectionError,
  UpstreamProtocolError,
} from "../../../src/proxy/http1/mod.ts";
import { ManualClock } from "../../helpers/clock.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What a scripted server saw of one request. */
interface Seen {
  head: string;
  body: string;
  connection: number;
}

/** Answers each request on a connection with `answer`; keeps connections open unless it closes. */
type Answer = (req: Seen, conn: Deno.Conn, n: number) => Promise<"keep" | "close">;

function rawServer(answer: Answer) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Seen[] = [];
  const conns = new Set<Deno.Conn>();
  let connections = 0;
  const serve = async (conn: Deno.Conn, id: number) => {
    let buf = new Uint8Array(0);
    const read = async (): Promise<boolean> => {
      const chunk = new Uint8Array(65536);
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) return false;
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
      return true;
    };
    try {
      for (;;) {
        let end = dec.decode(buf).indexOf("\r\n\r\n");
        while (end < 0) {
          if (!await read()) return;
          end = dec.decode(buf).indexOf("\r\n\r\n");
        }
        const head = dec.decode(buf.subarray(0, end));
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        while (buf.length < end + 4 + length) if (!await read()) return;
        const body = dec.decode(buf.subarray(end + 4, end + 4 + length));
        buf = buf.slice(end + 4 + length);
        const req = { head, body, connection: id };
        seen.push(req);
        if (await answer(req, conn, seen.length) === "close") return;
      }
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // closed by the answer
      }
    }
  };
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      serve(conn, ++connections);
    }
  })().catch(() => {});
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    get connections() {
      return connections;
    },
    /** Closes every open connection (as a server does with idle keep-alive connections). */
    dropConnections() {
      for (const c of conns) c.close();
      conns.clear();
    },
    [Symbol.asyncDispose]: async () => {
      listener.close();
      for (const c of conns) c.close();
      await new Promise((r) => setTimeout(r, 10));
    },
  };
}

async function write(conn: Deno.Conn, ...parts: (string | Uint8Array)[]): Promise<void> {
  for (const p of parts) {
    const bytes = typeof p === "string" ? enc.encode(p) : p;
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
  }
}

/** A server answering every request with the same bytes, keeping the connection open. */
function answering(...parts: (string | Uint8Array)[]) {
  return rawServer(async (_req, conn) => {
    await write(conn, ...parts);
    return "keep";
  });
}

const tick = () => new Promise((r) => setTimeout(r, 5));
const POST: RequestInit = {
  method: "POST",
  redirect: "manual",
  headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
  body: enc.encode('{"model":"m"}'),
};

function client() {
  return new Http1Client({ useFallback: false });
}

Deno.test("Http1Client sends one well-formed request and reuses the connection", async () => {
  await using srv = answering(
    'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nx-request-id: up-1\r\n\r\n{"ok":true}',
  );
  const http = client();
  for (let i = 0; i < 3; i++) {
    const res = await http.fetch(`${srv.url}/v1/chat/completions?x=1`, POST);
    assert.equal(res.status, 200);
    assert.equal(res.statusText, "OK");
    assert.equal(res.headers.get("x-request-id"), "up-1");
    assert.equal(await res.text(), '{"ok":true}');
  }
  assert.equal(srv.connections, 1, "the keep-alive connection was reused");
  assert.equal(http.idleConnections, 1);
  const head = srv.seen[0]!.head.split("\r\n");
  assert.equal(head[0], "POST /v1/chat/completions?x=1 HTTP/1.1");
  assert.ok(head.includes(`host: ${new URL(srv.url).host}`));
  assert.ok(head.includes("content-length: 13"));
  assert.ok(head.includes("authorization: Bearer sk-test"));
  // as fetch does, when the request has none
  assert.ok(head.includes("accept: */*"));
  assert.ok(head.includes(`user-agent: Deno/${Deno.version.deno}`));
  assert.equal(srv.seen[0]!.body, '{"model":"m"}');
  http.close();
  assert.equal(http.idleConnections, 0);
});

Deno.test("Http1Client decodes chunked bodies split anywhere, with extensions and trailers", async () => {
  const events = ["data: one\n\n", "data: " + "x".repeat(70_000) + "\n\n", "data: [DONE]\n\n"];
  await using srv = rawServer(async (_req, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n");
    await write(conn, "transfer-encoding: chunked\r\n\r\n");
    for (const e of events) {
      const size = enc.encode(e).length.toString(16);
      // the size line and the data arrive in pieces
      await write(conn, size.slice(0, 1));
      await tick();
      await write(conn, size.slice(1) + ";ext=1\r");
      await tick();
      await write(conn, "\n" + e.slice(0, 3));
      await tick();
      await write(conn, e.slice(3) + "\r\n");
      await tick();
    }
    await write(conn, "0\r\nx-trailer: t\r\n\r\n");
    return "keep";
  });
  const http = client();
  const res = await http.fetch(`${srv.url}/v1/chat/completions`, POST);
  assert.equal(res.headers.get("transfer-encoding"), "chunked");
  assert.equal(await res.text(), events.join(""));
  // the connection went back to the pool after the last chunk
  const again = await http.fetch(`${srv.url}/v1/chat/completions`, POST);
  assert.equal(await again.text(), events.join(""));
  assert.equal(srv.connections, 1);
  http.close();
});

Deno.test("Http1Client streams a body as it arrives, byte for byte", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const big = new Uint8Array(300_000).map((_, i) => i % 251);
  await using srv = rawServer(async (_req, conn) => {
    await write(conn, `HTTP/1.1 200 OK\r\ncontent-length: ${5 + big.length}\r\n\r\nfirst`);
    await gate;
    await write(conn, big);
    return "keep";
  });
  const http = client();
  const res = await http.fetch(`${srv.url}/v1/files`, { ...POST, method: "GET", body: null });
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.equal(dec.decode(first.value), "first", "the first bytes came before the rest was sent");
  release();
  let got = 0;
  let ok = true;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    for (let i = 0; i < r.value.length; i++) if (r.value[i] !== (got + i) % 251) ok = false;
    got += r.value.length;
  }
  assert.equal(got, big.length);
  assert.ok(ok, "bytes changed on the way");
  http.close();
});

Deno.test("Http1Client reads a body without length until the upstream closes, and drops the connection", async () => {
  await using srv = rawServer(async (_req, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ");
    await tick();
    await write(conn, "part two");
    return "close";
  });
  const http = client();
  const res = await http.fetch(`${srv.url}/v1/x`, POST);
  assert.equal(await res.text(), "part one, part two");
  assert.equal(http.idleConnections, 0);
  http.close();
});

Deno.test("Http1Client skips 1xx answers and gives HEAD, 204 and 304 no body", async () => {
  await using srv = rawServer(async (req, conn) => {
    if (req.head.startsWith("HEAD")) {
      await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n");
    } else if (req.head.includes("/no-content")) {
      await write(conn, "HTTP/1.1 204 No Content\r\n\r\n");
    } else {
      await write(
        conn,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
        "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nhi",
      );
    }
    return "keep";
  });
  const http = client();
  const head = await http.fetch(`${srv.url}/v1/x`, { method: "HEAD", redirect: "manual" });
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  const none = await http.fetch(`${srv.url}/v1/no-content`, POST);
  assert.equal(none.status, 204);
  assert.equal(none.body, null);
  const created = await http.fetch(`${srv.url}/v1/x`, POST);
  assert.equal(created.status, 201);
  assert.equal(created.headers.get("link"), null, "the 103's headers are not the answer's");
  assert.equal(await created.text(), "hi");
  assert.equal(srv.connections, 1);
  http.close();
});

Deno.test("Http1Client drops a kept-alive connection the upstream closed while idle", async () => {
  await using srv = answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  const http = client();
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(http.idleConnections, 1);
  srv.dropConnections();
  await tick();
  assert.equal(http.idleConnections, 0, "the close was seen while the connection was idle");
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(srv.connections, 2);
  assert.equal(srv.seen.length, 2, "the request reached the upstream once per call");
  http.close();
});

Deno.test("Http1Client reports a stale connection and never sends the request again", async () => {
  // the upstream reads the second request on the kept-alive connection, then closes it
  await using srv = rawServer(async (_req, conn, n) => {
    if (n === 1) {
      await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
      return "keep";
    }
    return "close";
  });
  const http = client();
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  const err = await http.fetch(`${srv.url}/v1/x`, POST).then(() => undefined, (e) => e);
  assert.ok(err instanceof StaleConnectionError, String(err));
  assert.doesNotMatch(err.message, /127\.0\.0\.1/);
  await tick();
  assert.equal(srv.seen.length, 2, "one arrival per call: nothing sent twice");
  assert.equal(srv.connections, 1);
  // a fresh connection is asked for: a new one, the request sent once
  await assert.rejects(http.fetch(`${srv.url}/v1/x`, { ...POST, fresh: true } as RequestInit));
  assert.equal(srv.connections, 2);
  assert.equal(srv.seen.length, 3);
  http.close();
});

Deno.test("Http1Client keeps a connection only as long as Keep-Alive: timeout allows", async () => {
  await using srv = rawServer(async (req, conn) => {
    const timeout = /x-timeout: (\d+)/.exec(req.head)?.[1] ?? "2";
    await write(
      conn,
      `HTTP/1.1 200 OK\r\nkeep-alive: timeout=${timeout}\r\ncontent-length: 2\r\n\r\nok`,
    );
    return "keep";
  });
  const clock = new ManualClock();
  const http = new Http1Client({ useFallback: false, clock });
  const get = (t: string) =>
    http.fetch(`${srv.url}/v1/x`, { ...POST, headers: { "x-timeout": t } }).then((r) => r.text());
  assert.equal(await get("2"), "ok"); // 2 s less the 1 s margin
  clock.advance(900);
  assert.equal(await get("2"), "ok");
  assert.equal(srv.connections, 1, "reused within the announced lifetime");
  clock.advance(1100);
  assert.equal(await get("1"), "ok");
  assert.equal(srv.connections, 2, "not reused past it");
  assert.equal(http.idleConnections, 0, "timeout=1 leaves no time to reuse it");
  http.close();
});

Deno.test("Http1Client closes a connection when bytes follow a complete answer", async () => {
  await using srv = answering(
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray",
  );
  const http = client();
  for (let i = 0; i < 3; i++) {
    assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  }
  assert.equal(srv.connections, 3, "no connection with stray bytes was reused");
  assert.equal(http.idleConnections, 0);
  http.close();
});

Deno.test("Http1Client drops an idle connection that receives late bytes", async () => {
  await using srv = rawServer(async (_req, conn) => {
    await write(conn, "HTTP/1.1 204 No Content\r\n\r\n");
    setTimeout(() => write(conn, "late body").catch(() => {}), 20);
    return "keep";
  });
  const http = client();
  assert.equal((await http.fetch(`${srv.url}/v1/x`, POST)).status, 204);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(http.idleConnections, 0);
  assert.equal((await http.fetch(`${srv.url}/v1/x`, POST)).status, 204);
  assert.equal(srv.connections, 2);
  http.close();
});

Deno.test("Http1Client relays an answer sent before the request body was read", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const served = (async () => {
    const conn = await listener.accept();
    await conn.read(new Uint8Array(1024));
    await write(conn, "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo long");
    conn.close();
  })();
  const http = client();
  const big = new Uint8Array(8 * 1024 * 1024);
  const res = await http.fetch(`http://127.0.0.1:${port}/v1/x`, { ...POST, body: big });
  assert.equal(res.status, 413);
  assert.equal(await res.text(), "too long");
  await served;
  listener.close();
  assert.equal(http.idleConnections, 0);
  http.close();
});

Deno.test("Http1Client forwards a chunked answer without its Content-Length", async () => {
  await using srv = answering(
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  );
  const http = client();
  const res = await http.fetch(`${srv.url}/v1/x`, POST);
  assert.equal(res.headers.get("content-length"), null);
  assert.equal(await res.text(), "hello");
  assert.equal(http.idleConnections, 0, "a message framed both ways is not reused");
  http.close();
});

Deno.test("Http1Client fails when a fresh connection closes before an answer, or mid-body", async () => {
  await using srv = rawServer(async (req, conn) => {
    if (req.head.includes("/mid-body")) {
      await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + "x".repeat(40));
    }
    return "close";
  });
  const http = client();
  await assert.rejects(http.fetch(`${srv.url}/v1/none`, POST), UpstreamProtocolError);
  const res = await http.fetch(`${srv.url}/v1/mid-body`, POST);
  await assert.rejects(res.text(), /before the body ended/);
  assert.equal(http.idleConnections, 0);
  http.close();
});

Deno.test("Http1Client keeps no connection the upstream asks to close", async () => {
  await using srv = answering(
    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
  );
  const http = client();
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(http.idleConnections, 0);
  http.close();
});

Deno.test("Http1Client aborts before the answer and mid-body, closing the connection", async () => {
  const closed: number[] = [];
  await using srv = rawServer(async (req, conn) => {
    if (req.head.includes("/slow-body")) {
      await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nstart");
    }
    // holds the connection until the client goes away
    const n = await conn.read(new Uint8Array(16)).catch(() => null);
    if (n === null) closed.push(req.connection);
    return "close";
  });
  const http = client();
  const early = new AbortController();
  const pending = http.fetch(`${srv.url}/v1/slow`, { ...POST, signal: early.signal });
  await tick();
  early.abort(new DOMException("gone", "AbortError"));
  await assert.rejects(pending, (e: unknown) => e instanceof DOMException && e.message === "gone");
  const late = new AbortController();
  const res = await http.fetch(`${srv.url}/v1/slow-body`, { ...POST, signal: late.signal });
  const reader = res.body!.getReader();
  assert.equal(dec.decode((await reader.read()).value), "start");
  late.abort();
  await assert.rejects(reader.read());
  for (let i = 0; i < 100 && closed.length < 2; i++) await tick();
  assert.deepEqual(closed.sort(), [1, 2], "the upstream saw both connections close");
  await assert.rejects(
    http.fetch(`${srv.url}/v1/x`, { ...POST, signal: AbortSignal.abort() }),
    (e: unknown) => e instanceof DOMException && e.name === "AbortError",
  );
  http.close();
});

Deno.test("Http1Client refuses header values that would split the request", async () => {
  await using srv = rawServer(() => Promise.resolve("close"));
  const http = client();
  await assert.rejects(
    http.fetch(`${srv.url}/v1/x`, {
      ...POST,
      headers: { "x-evil": "a\r\nx-injected: yes" },
    }),
    TypeError,
  );
  assert.equal(srv.seen.length, 0);
  http.close();
});

Deno.test("Http1Client takes headers as a record, Headers or pairs, and writes host and length itself", async () => {
  await using srv = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  const http = client();
  const inits: HeadersInit[] = [
    { "X-One": "1", host: "evil.example", "content-length": "999", "user-agent": "sdk/1" },
    new Headers({ "x-one": "1" }),
    [["x-one", "1"]],
  ];
  for (const headers of inits) {
    await (await http.fetch(`${srv.url}/v1/x`, { ...POST, headers })).arrayBuffer();
  }
  for (const s of srv.seen) {
    const lines = s.head.split("\r\n");
    assert.ok(lines.includes("x-one: 1"));
    assert.equal(lines.filter((l) => l.startsWith("host:")).length, 1);
    assert.ok(!s.head.includes("evil.example"));
    assert.ok(lines.includes("content-length: 13"));
    assert.equal(lines.filter((l) => l.startsWith("user-agent:")).length, 1);
  }
  assert.ok(srv.seen[0]!.head.includes("user-agent: sdk/1"), "the client's own agent is kept");
  http.close();
});

Deno.test("Http1Client keeps header bytes as they came, and every set-cookie", async () => {
  await using srv = answering(
    enc.encode("HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-name: "),
    new Uint8Array([0xe9, 0x74, 0xe9]),
    "\r\ncontent-length: 0\r\n\r\n",
  );
  const http = client();
  const res = await http.fetch(`${srv.url}/v1/x`, POST);
  assert.deepEqual(res.headers.getSetCookie(), ["a=1", "b=2"]);
  assert.equal(res.headers.get("x-name"), "\u00e9t\u00e9");
  http.close();
});

Deno.test("Http1Client rejects a malformed answer", async () => {
  await using srv = rawServer(async (_req, conn) => {
    await write(conn, "SPDY/9 200 OK\r\n\r\n");
    return "close";
  });
  const http = client();
  await assert.rejects(http.fetch(`${srv.url}/v1/x`, POST), /malformed status line/);
  http.close();
});

Deno.test("Http1Client leaves to fetch what it does not take", async () => {
  const calls: string[] = [];
  const fallback = ((input: string | URL | Request) => {
    calls.push(String(input));
    return Promise.resolve(new Response("from fetch"));
  }) as typeof fetch;
  const http = new Http1Client({ useFallback: false, fallback });
  // redirects followed, another scheme, credentials in the URL
  await http.fetch("http://127.0.0.1:1/v1/health", { method: "GET" });
  await http.fetch("file:///etc/hosts", { redirect: "manual" });
  await http.fetch("http://user:pw@127.0.0.1:1/v1/x", { redirect: "manual" });
  assert.equal(calls.length, 3);
  const proxied = new Http1Client({ useFallback: true, fallback });
  await proxied.fetch("http://127.0.0.1:1/v1/x", POST);
  assert.equal(calls.length, 4);
});

Deno.test("Http1Client hands a named origin over to fetch when fetch reaches it and it could not", async () => {
  const calls: string[] = [];
  let fetchWorks = false;
  const fallback = ((input: string | URL | Request) => {
    calls.push(String(input));
    return fetchWorks
      ? Promise.resolve(new Response("via fetch"))
      : Promise.reject(new TypeError(`error sending request for url (${String(input)}): refused`));
  }) as typeof fetch;
  // a port nothing listens on
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr as Deno.NetAddr;
  probe.close();
  const switches: string[] = [];
  const http = new Http1Client({
    useFallback: false,
    fallback,
    onFallback: (origin, reason) => switches.push(`${origin} ${reason}`),
  });
  // an upstream that is simply down: fetch fails too, the origin stays ours
  const err = await http.fetch(`http://localhost:${port}/v1/x`, POST).then(() => 0, (e) => e);
  assert.ok(err instanceof UpstreamProtocolError);
  assert.doesNotMatch(err.message, /localhost|url/);
  assert.ok(err instanceof ConnectError);
  assert.equal(switches.length, 0);
  fetchWorks = true;
  assert.equal(await (await http.fetch(`http://localhost:${port}/v1/y`, POST)).text(), "via fetch");
  assert.equal(switches.length, 1, "the switch is reported");
  assert.match(switches[0]!, /connect failed/);
  assert.equal(await (await http.fetch(`http://localhost:${port}/v1/z`, POST)).text(), "via fetch");
  assert.equal(calls.length, 3, "the third went to fetch directly");
  assert.equal(switches.length, 1, "reported once");
});

Deno.test("Http1Client does not try fetch for an IP address it could not connect to", async () => {
  let calls = 0;
  const fallback = (() => {
    calls++;
    return Promise.resolve(new Response("via fetch"));
  }) as typeof fetch;
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr as Deno.NetAddr;
  probe.close();
  const http = new Http1Client({ useFallback: false, fallback });
  const err = await http.fetch(`http://127.0.0.1:${port}/v1/x`, POST).then(() => 0, (e) => e);
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /connect failed/);
  assert.equal(calls, 0, "fetch could not reach an address that refused us");
});

Deno.test("Http1Client speaks HTTP/1.1 over TLS, verifying the upstream's certificate", async () => {
  const dir = new URL("../../fixtures/tls/", import.meta.url);
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(new URL("cert.pem", dir)),
    key: Deno.readTextFileSync(new URL("key.pem", dir)),
    alpnProtocols: ["http/1.1"],
  });
  const { port } = listener.addr;
  const served = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecure");
    return { text, conn };
  })();
  const trusting = new Http1Client({
    useFallback: false,
    caCerts: [Deno.readTextFileSync(new URL("ca.pem", dir))],
  });
  const res = await trusting.fetch(`https://localhost:${port}/v1/x`, POST);
  assert.equal(await res.text(), "secure");
  const { text, conn } = await served;
  assert.ok(text.includes(`host: localhost:${port}\r\n`));
  conn.close();
  trusting.close();
  // without the test CA the certificate is refused (and fetch, the fallback, refuses it too)
  const strict = new Http1Client({
    useFallback: false,
    fallback: () => Promise.reject(new TypeError("fetch refused the certificate too")),
  });
  const accepted = listener.accept().then((c) =>
    c.handshake().catch(() => {}).finally(() => c.close())
  );
  await assert.rejects(strict.fetch(`https://localhost:${port}/v1/x`, POST), TypeError);
  listener.close();
  await accepted.catch(() => {});
});

Deno.test("Http1Client gives up on a connection that does not open within connectTimeoutMs", async () => {
  let fallbacks = 0;
  const http = new Http1Client({
    useFallback: false,
    fallback: () => {
      fallbacks++;
      return Promise.resolve(new Response("from fetch"));
    },
    // a connect that never completes (as to a host that drops the SYN)
    dial: () => new Promise<Deno.Conn>(() => {}),
  });
  const started = performance.now();
  await assert.rejects(
    http.fetch("http://127.0.0.1:9/v1/x", { ...POST, connectTimeoutMs: 50 }),
    ConnectTimeoutError,
  );
  const took = performance.now() - started;
  assert.ok(took >= 45 && took < 1000, `gave up after ${took} ms`);
  assert.equal(fallbacks, 0, "a timeout is not handed to fetch (it would wait as long again)");
});

Deno.test("Http1Client does not reuse a connection idle for longer than idleTimeoutMs", async () => {
  await using srv = answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  const clock = new ManualClock();
  const http = new Http1Client({ useFallback: false, idleTimeoutMs: 30, clock });
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(srv.connections, 1);
  clock.advance(29);
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(srv.connections, 1, "reused just within idleTimeoutMs");
  clock.advance(30);
  assert.equal(await (await http.fetch(`${srv.url}/v1/x`, POST)).text(), "ok");
  assert.equal(srv.connections, 2, "the idle connection was replaced");
  assert.equal(http.idleConnections, 1);
  http.close();
});

Deno.test("Http1Client sends header values as the bytes they stand for", async () => {
  await using srv = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  const http = client();
  // what Deno.serve hands over for a client's UTF-8 "Café": one character per byte
  await (await http.fetch(`${srv.url}/v1/x`, {
    ...POST,
    headers: { "x-title": "Caf\u00c3\u00a9" },
  })).arrayBuffer();
  assert.ok(
    srv.seen[0]!.head.includes("x-title: Café"),
    "the bytes reached the upstream unchanged",
  );
  await assert.rejects(
    http.fetch(`${srv.url}/v1/x`, { ...POST, headers: { "x-title": "\u20ac" } }),
    TypeError,
  );
  http.close();
});

Deno.test("Http1Client does not hand bytes that reached an idle connection while the process was busy to the next request", async () => {
  let stray!: () => Promise<void>;
  await using srv = rawServer(async (req, conn) => {
    await write(
      conn,
      `HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n${req.head.includes("/two") ? "two" : "one"}`,
    );
    stray = () => write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTRAY");
    return "keep";
  });
  const http = client();
  assert.equal(await (await http.fetch(`${srv.url}/v1/one`, POST)).text(), "one");
  await tick();
  // the stray answer is written, then this process stays busy: its idle watch cannot see it
  await stray();
  const until = performance.now() + 30;
  while (performance.now() < until) {
    // busy, as a large JSON parse would be
  }
  assert.equal(await (await http.fetch(`${srv.url}/v1/two`, POST)).text(), "two");
  http.close();
});
