/**
 * @module
 * One upstream attempt: send the request, wait for the headers and the first body bytes under
 * the time limits, and classify what came back. Nothing reaches the client here, so the caller
 * may still retry elsewhere; a committed response is handed over with its reader still open.
 */

import type { Timeouts } from "../config/types.ts";
import { type AttemptClass, classifyFailure, classifyStatus } from "../health/classify.ts";
import { AttemptControl } from "./attempt_control.ts";

/** What one attempt sends. */
export interface AttemptRequest {
  url: string;
  method: string;
  headers: Headers;
  body: Uint8Array<ArrayBuffer> | null;
  timeouts: Timeouts;
  /** Epoch ms by which the whole request must be done; Infinity for none. */
  deadline: number;
  /** Aborts when the client disconnects. */
  clientSignal: AbortSignal;
  fetch: typeof fetch;
  client: Deno.HttpClient | undefined;
  now: () => number;
}

/** The upstream answered with a status below 400 and sent its first bytes. */
export interface Committable {
  kind: "response";
  cls: "ok";
  response: Response;
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  first: Uint8Array | undefined;
  control: AttemptControl;
  /** performance.now() when the attempt started. */
  startedAt: number;
}

/** The upstream answered with an error status; its body was read (up to a limit). */
export interface ErrorAnswer {
  kind: "error_response";
  cls: AttemptClass;
  response: Response;
  body: Uint8Array<ArrayBuffer>;
}

/** No usable answer: connection failed, timed out, or the client left. */
export interface Failure {
  kind: "failure";
  cls: AttemptClass;
  error: unknown;
  /** Which limit fired, for timeouts. */
  timeout?: string | undefined;
}

/** The result of {@linkcode attempt}. */
export type AttemptResult = Committable | ErrorAnswer | Failure;

const MAX_ERROR_BODY = 1024 * 1024;

/**
 * Runs one attempt.
 * @param r the request, limits and injected fetch
 * @returns the classified result; never throws
 */
export async function attempt(r: AttemptRequest): Promise<AttemptResult> {
  const control = new AttemptControl(r.clientSignal);
  const startedAt = performance.now();
  const left = r.deadline - r.now();
  control.armTotal(Math.min(r.timeouts.totalMs || Infinity, left));
  control.armFirstByte(Math.min(r.timeouts.firstByteMs || Infinity, left));
  let response: Response;
  try {
    const init: RequestInit & { client?: Deno.HttpClient } = {
      method: r.method,
      headers: r.headers,
      body: r.body,
      signal: control.signal,
      redirect: "manual",
    };
    if (r.client !== undefined) init.client = r.client;
    response = await r.fetch(r.url, init);
  } catch (error) {
    control.dispose();
    return failure(control, error, false);
  }
  if (response.status >= 400) {
    try {
      const body = await readLimited(response, MAX_ERROR_BODY);
      control.dispose();
      const text = response.status === 429 ? new TextDecoder().decode(body) : "";
      return { kind: "error_response", cls: classifyStatus(response.status, text), response, body };
    } catch (error) {
      control.dispose();
      return failure(control, error, true);
    }
  }
  if (response.body === null) {
    control.firstByteArrived();
    return {
      kind: "response",
      cls: "ok",
      response,
      reader: undefined,
      first: undefined,
      control,
      startedAt,
    };
  }
  const reader = response.body.getReader();
  try {
    const r1 = await reader.read();
    control.firstByteArrived();
    return {
      kind: "response",
      cls: "ok",
      response,
      reader,
      first: r1.done ? undefined : r1.value,
      control,
      startedAt,
    };
  } catch (error) {
    control.dispose();
    reader.cancel().catch(() => {});
    return failure(control, error, false);
  }
}

function failure(control: AttemptControl, error: unknown, midBody: boolean): Failure {
  const cls = classifyFailure({
    clientAborted: control.clientAborted,
    timedOut: control.timedOut !== undefined,
    midBody,
  });
  return { kind: "failure", cls, error, timeout: control.timedOut };
}

async function readLimited(res: Response, limit: number): Promise<Uint8Array<ArrayBuffer>> {
  if (res.body === null) return new Uint8Array(0);
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      break;
    }
    parts.push(value);
  }
  const out = new Uint8Array(Math.min(size, limit));
  let off = 0;
  for (const p of parts) {
    out.set(p.subarray(0, out.length - off), off);
    off += p.length;
    if (off >= out.length) break;
  }
  return out;
}
