/**
 * @module
 * Small helpers shared by the end-to-end tests (tests/e2e/*): a raw HTTP/1.1 client over
 * `Deno.connect` (to send what `fetch` refuses to, such as hop-by-hop headers or an
 * absolute-URI request line), a scripted upstream whose exact bytes a test controls, polling
 * with a time limit, and readers for bodies and log lines.
 */

import type { TestProxy } from "./proxy.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A response read off the wire by {@linkcode rawRequest}. */
export interface RawResponse {
  status: number;
  /** Header lines as sent, names lowercased, in order. */
  headers: [string, string][];
  /** The header block as sent (status line included). */
  head: string;
  /** The body, de-chunked when `transfer-encoding: chunked`. */
  body: string;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function dechunk(raw: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let i = 0;
  for (let guard = 0; guard < 1_000_000 && i < raw.length; guard++) {
    let eol = i;
    while (eol + 1 < raw.length && !(raw[eol] === 13 && raw[eol + 1] === 10)) eol++;
    const size = parseInt(decoder.decode(raw.subarray(i, eol)), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return concatBytes(parts);
}

/**
 * Sends one raw HTTP/1.1 request and reads the whole response until the server closes the
 * connection (send `Connection: close`).
 * @param origin `http://127.0.0.1:PORT`
 * @param request the request text, CRLF line ends included
 * @param timeoutMs the longest the exchange may take
 * @returns the parsed response
 */
export async function rawRequest(
  origin: string,
  request: string,
  timeoutMs = 5000,
): Promise<RawResponse> {
  const { hostname, port } = new URL(origin);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  const parts: Uint8Array[] = [];
  try {
    await conn.write(encoder.encode(request));
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed by the timer
    }
  }
  const all = concatBytes(parts);
  let split = -1;
  for (let i = 0; i + 3 < all.length; i++) {
    if (all[i] === 13 && all[i + 1] === 10 && all[i + 2] === 13 && all[i + 3] === 10) {
      split = i;
      break;
    }
  }
  if (split < 0) throw new Error(`No complete response head within ${timeoutMs} ms`);
  const head = decoder.decode(all.subarray(0, split));
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = lines.map((l): [string, string] => {
    const colon = l.indexOf(":");
    return [l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim()];
  });
  const rawBody = all.subarray(split + 4);
  const chunked = headers.some(([k, v]) => k === "transfer-encoding" && /chunked/i.test(v));
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    head,
    body: decoder.decode(chunked ? dechunk(rawBody) : rawBody),
  };
}

/** A request as a {@linkcode ScriptedUpstream} received it. */
export interface ScriptedRequest {
  method: string;
  /** Path and query, e.g. `/v1/chat/completions?x=1`. */
  path: string;
  headers: Headers;
  body: Uint8Array;
  /** Aborts when the caller (llm-balance) drops the request. */
  signal: AbortSignal;
}

/** An upstream whose every answer the test writes itself. */
export interface ScriptedUpstream extends AsyncDisposable {
  readonly origin: string;
  /** `origin + "/v1"` */
  readonly baseUrl: string;
  readonly requests: ScriptedRequest[];
  close(): Promise<void>;
}

/**
 * Starts an upstream on 127.0.0.1 that answers with `answer(request)`.
 * @param answer builds each response (it may stream)
 * @returns the running upstream
 */
export function startScriptedUpstream(
  answer: (req: ScriptedRequest) => Response | Promise<Response>,
): ScriptedUpstream {
  const requests: ScriptedRequest[] = [];
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      onError: () => new Response(null, { status: 500 }),
    },
    async (req) => {
      const url = new URL(req.url);
      const r: ScriptedRequest = {
        method: req.method,
        path: url.pathname + url.search,
        headers: req.headers,
        body: new Uint8Array(await req.arrayBuffer()),
        signal: req.signal,
      };
      requests.push(r);
      return await answer(r);
    },
  );
  const origin = `http://127.0.0.1:${server.addr.port}`;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.shutdown();
  };
  return {
    origin,
    baseUrl: `${origin}/v1`,
    requests,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Polls until `cond()` is true.
 * @param cond the condition
 * @param what named in the error
 * @param timeoutMs the longest wait
 * @throws Error when the time is up
 */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Waits for a promise, but no longer than `ms`.
 * @param p the promise
 * @param ms the longest wait
 * @param what named in the error
 * @returns what `p` resolves to
 * @throws Error when the time is up first
 */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads a body chunk by chunk, remembering each chunk and whether the stream errored.
 * @param body the stream
 * @returns the chunks, the error if any (undefined for a clean end)
 */
export async function readChunks(
  body: ReadableStream<Uint8Array>,
): Promise<{ chunks: Uint8Array[]; error: unknown }> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  try {
    for (let i = 0; i < 100_000; i++) {
      const r = await reader.read();
      if (r.done) return { chunks, error: undefined };
      chunks.push(r.value);
    }
    throw new Error("readChunks: too many chunks");
  } catch (error) {
    return { chunks, error };
  } finally {
    reader.releaseLock();
  }
}

/** Decodes bytes as UTF-8. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * The per-request log lines of a proxy (`msg: "request"`).
 * @param proxy the running proxy
 */
export function requestLines(proxy: TestProxy): Record<string, unknown>[] {
  return proxy.logRecords().filter((r) => r.msg === "request");
}

/**
 * Posts JSON to the proxy (or any origin).
 * @param url full URL
 * @param body any value, or a string sent as is
 * @param headers extra headers
 */
export function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}

/** A minimal chat completion request body. */
export function chat(
  model = "gpt-4o",
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { model, messages: [{ role: "user", content: "hi" }], ...extra };
}
