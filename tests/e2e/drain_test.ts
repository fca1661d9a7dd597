/**
 * @module
 * Graceful shutdown of a `serve` subprocess: SIGTERM lets a stream in flight finish within
 * `server.drain_timeout` and exits 0; new connections are refused at once; answers during the
 * drain carry `Connection: close`, so a keep-alive client never loses a request on a closing
 * connection; with a short drain time, a never-ending stream gets an honest error event, a
 * request still waiting for its upstream gets a 503, and the process still exits 0 within the
 * drain time plus a margin.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startServe, tempConfig } from "../helpers/cli.ts";
import { waitFor } from "../helpers/e2e.ts";

function config(baseUrl: string, drainSeconds: number): string {
  return `server: { drain_timeout: ${drainSeconds} }
log: { level: info, format: json }
upstreams:
  mock: { base_url: ${baseUrl}, keys: [sk-drain-test-key-0001], timeout: { first_byte: 60, idle: 60 } }
`;
}

function chat(url: string, stream: boolean): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", stream, messages: [{ role: "user", content: "hi" }] }),
  });
}

/** Reads a body to its end; returns the text and whether it ended with an error. */
async function drain(res: Response): Promise<{ text: string; failed: boolean }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (let i = 0; i < 100_000; i++) {
      const r = await reader.read();
      if (r.done) return { text, failed: false };
      text += decoder.decode(r.value, { stream: true });
    }
  } catch {
    return { text, failed: true };
  }
  return { text, failed: false };
}

/** Whether a new connection to the server is refused (or dropped before any answer). */
async function refused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ hostname, port: Number(port) });
  } catch {
    return true;
  }
  try {
    await conn.write(new TextEncoder().encode(`GET /health HTTP/1.1\r\nhost: ${hostname}\r\n\r\n`));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    return n === null || !new TextDecoder().decode(buf.subarray(0, n)).startsWith("HTTP/1.1 200");
  } catch {
    return true;
  } finally {
    conn.close();
  }
}

Deno.test("SIGTERM lets a stream in flight finish, refuses new connections, and exits 0", async () => {
  await using mock = await startMockUpstream({ chunks: 10, chunkDelayMs: 80 });
  const cfg = await tempConfig(config(mock.baseUrl, 10));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const res = await chat(served.url, true);
    assert.equal(res.status, 200);
    const body = drain(res);
    await new Promise((r) => setTimeout(r, 150));
    served.child.kill("SIGTERM");
    const shutting = await served.waitForLog((r) => String(r.msg).startsWith("shutting down"));
    assert.equal(shutting.in_flight, 1);
    assert.ok(await refused(served.url), "a new connection was served after SIGTERM");
    const { text, failed } = await body;
    assert.equal(failed, false);
    assert.ok(text.endsWith("data: [DONE]\n\n"), text);
    const status = await served.exited;
    assert.equal(status.code, 0);
    const stopped = served.logs().find((r) => r.msg === "stopped");
    assert.deepEqual([stopped?.drained, stopped?.cut], [true, 0]);
  } finally {
    await cfg.remove();
  }
});

/**
 * How one request of a keep-alive client ended: `status connection-header what` for an answer,
 * `refused` when the connection could not be opened (nothing was sent: safe to retry anywhere),
 * the error otherwise (a request sent and lost, e.g. a reset).
 */
async function outcome(sending: Promise<Response>): Promise<string> {
  try {
    const res = await sending;
    const body = await res.json();
    return `${res.status} ${res.headers.get("connection")} ${body.object ?? body.error?.code}`;
  } catch (err) {
    const why = String((err as Error).cause ?? err);
    return /client error \(Connect\)|refused/i.test(why) ? "refused" : why;
  }
}

Deno.test("SIGTERM: a keep-alive client's requests across the drain each get an answer or a refused connection", async () => {
  await using mock = await startMockUpstream({ latencyMs: 400 });
  const cfg = await tempConfig(config(mock.baseUrl, 10));
  // a pool of its own: one keep-alive connection reused request after request, as SDKs do
  using client = Deno.createHttpClient({});
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const outcomes: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const sending = fetch(`${served.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
        client,
      });
      if (i === 3) {
        // the drain starts while request 3 waits for its upstream
        await waitFor(() => mock.requests.length === 3, "request 3 upstream");
        served.child.kill("SIGTERM");
        await served.waitForLog((r) => String(r.msg).startsWith("shutting down"));
      }
      outcomes.push(await outcome(sending));
    }
    assert.deepEqual(outcomes.slice(0, 3), [
      "200 null chat.completion",
      "200 null chat.completion",
      "200 close chat.completion",
    ]);
    // after the drain began: refused (never sent), or an honest 503; never lost on the way
    for (const o of outcomes.slice(3)) assert.match(o, /^(refused|503 close shutting_down)$/);
    assert.equal((await served.exited).code, 0);
  } finally {
    await cfg.remove();
  }
});

Deno.test("after the drain time, a never-ending stream gets an error event and the process exits 0", async () => {
  await using mock = await startMockUpstream({ chunks: 100_000, chunkDelayMs: 100 });
  const cfg = await tempConfig(config(mock.baseUrl, 1));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const res = await chat(served.url, true);
    assert.equal(res.status, 200);
    const body = drain(res);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    served.child.kill("SIGTERM");
    const status = await served.exited;
    const took = performance.now() - t0;
    assert.equal(status.code, 0);
    assert.ok(took < 1000 + 3000, `exit took ${took} ms`);
    assert.ok(took >= 900, `exited before the drain time: ${took} ms`);
    const { text } = await body;
    assert.match(
      text,
      /event: error\ndata: \{"error":\{"message":"Stream interrupted: llm-balance shut down/,
    );
    assert.ok(!text.includes("[DONE]"));
    const stopped = served.logs().find((r) => r.msg === "stopped");
    assert.deepEqual([stopped?.drained, stopped?.cut], [false, 1]);
  } finally {
    await cfg.remove();
  }
});

Deno.test("after the drain time, a request still waiting for its upstream gets a 503", async () => {
  await using mock = await startMockUpstream({ mode: "hang" });
  const cfg = await tempConfig(config(mock.baseUrl, 0.5));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const pending = chat(served.url, false);
    for (let i = 0; i < 100 && mock.requests.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(mock.requests.length, 1);
    served.child.kill("SIGTERM");
    const res = await pending;
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.error.code, "shutting_down");
    assert.equal((await served.exited).code, 0);
  } finally {
    await cfg.remove();
  }
});

Deno.test("the same SIGTERM delivered twice at once (deno task, Ctrl-C) still drains", async () => {
  await using mock = await startMockUpstream({ chunks: 8, chunkDelayMs: 100 });
  const cfg = await tempConfig(config(mock.baseUrl, 30));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const res = await chat(served.url, true);
    const body = drain(res);
    await new Promise((r) => setTimeout(r, 150));
    served.child.kill("SIGTERM");
    served.child.kill("SIGTERM");
    assert.equal((await served.exited).code, 0);
    const text = (await body).text;
    assert.doesNotMatch(text, /event: error/);
    assert.match(text, /\[DONE\]/);
  } finally {
    await cfg.remove();
  }
});

Deno.test("a second SIGTERM cuts the drain short", async () => {
  await using mock = await startMockUpstream({ chunks: 100_000, chunkDelayMs: 100 });
  const cfg = await tempConfig(config(mock.baseUrl, 30));
  try {
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const res = await chat(served.url, true);
    const body = drain(res);
    await new Promise((r) => setTimeout(r, 150));
    const t0 = performance.now();
    served.child.kill("SIGTERM");
    await served.waitForLog((r) => String(r.msg).startsWith("shutting down"));
    // a signal within 300 ms of the first counts as the same one delivered twice
    await new Promise((r) => setTimeout(r, 400));
    served.child.kill("SIGTERM");
    assert.equal((await served.exited).code, 0);
    assert.ok(performance.now() - t0 < 5000);
    assert.match((await body).text, /event: error/);
  } finally {
    await cfg.remove();
  }
});
