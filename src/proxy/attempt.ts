/**
 * @module
 * One upstream attempt: send the request, wait for the headers and the first body bytes under
 * the time limits, and classify what came back. Nothing reaches the client here, so the caller
 * may still retry elsewhere; a committed response is handed over with its reader still open.
 */

import type { Clock } from "../clock.ts";
import type { Timeouts } from "../config/types.ts";
import { type AttemptClass, classifyFailure, classifyStatus } from "../health/classify.ts";
import { AttemptControl, type ClientSignal } from "./attempt_control.ts";
import type { HeaderRecord } from "./headers.ts";
import { type BodyReader, bodyReader } from "./body_reader.ts";
import {
  ConnectError,
  type Http1Init,
  StaleConnectionError,
  UpstreamProtocolError,
} from "./http1/mod.ts";
import { concat } from "./bytes.ts";
import type { Watchdog } from "./watchdog.ts";

/** What one attempt sends. */
export interface AttemptRequest {
  url: string;
  method: string;
  headers: HeaderRecord | Headers;
  body: Uint8Array<ArrayBuffer> | null;
  timeouts: Timeouts;
  /** Epoch ms (by `clock.now()`) by which the whole request must be done; Infinity for none. */
  deadline: number;
  /** Aborts when the client disconnects (a function: read only if the attempt lasts). */
  clientSignal: ClientSignal;
  fetch: typeof fetch;
  client: Deno.HttpClient | undefined;
  /** The app's clock: `now()` for the deadline, `mono()` for the attempt's own limits. */
  clock: Clock;
  /** Checks the attempt's limits (the app's; it should read the same clock). */
  watchdog: Watchdog;
  /** Sees the attempt's control as soon as it exists (so shutdown can cut the attempt). */
  onControl?: ((control: AttemptControl) => void) | undefined;
  /** `clock.mono()` when the attempt starts, when the caller has it. */
  startedAt?: number | undefined;
  /** Use a new upstream connection (the previous attempt found a kept-alive one closed). */
  fresh?: boolean | undefined;
}

/**
 * The upstream answered with a status below 400 and sent its first bytes. A JSON body is read
 * whole (`body`), so it goes out in one piece and a break mid-body can still be retried; any
 * other body (event streams, downloads) is left to stream (`reader`, with what was read so far
 * in `first`).
 */
export interface Committable {
  kind: "response";
  cls: "ok";
  response: Response;
  /** The whole body, when it was read (JSON up to the buffering limit). */
  body: Uint8Array<ArrayBuffer> | undefined;
  reader: BodyReader | undefined;
  first: Uint8Array | undefined;
  control: AttemptControl;
  /** `clock.mono()` when the attempt started. */
  startedAt: number;
  /** The response's content type (read once here). */
  contentType: string | null;
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
  /** llm-balance cut the attempt because it is shutting down. */
  shutdown?: boolean;
}

/** The result of {@linkcode attempt}. */
export type AttemptResult = Committable | ErrorAnswer | Failure;

const MAX_ERROR_BODY = 1024 * 1024;
/** JSON bodies up to this size are read whole before the response is committed. */
const BUFFER_LIMIT = 4 * 1024 * 1024;

/**
 * Runs one attempt.
 * @param r the request, limits and injected fetch
 * @returns the classified result; never throws
 */
export async function attempt(r: AttemptRequest): Promise<AttemptResult> {
  const startedAt = r.startedAt ?? r.clock.mono();
  const control = new AttemptControl(r.clientSignal, r.watchdog, startedAt);
  r.onControl?.(control);
  const left = r.deadline === Infinity ? Infinity : r.deadline - r.clock.now();
  control.armTotal(Math.min(r.timeouts.totalMs || Infinity, left), startedAt);
  control.armFirstByte(Math.min(r.timeouts.firstByteMs || Infinity, left), startedAt);
  let response: Response;
  try {
    // connectTimeoutMs: for the HTTP/1.1 client (fetch has no connect phase of its own)
    const init: Http1Init & { client?: Deno.HttpClient } = {
      method: r.method,
      headers: r.headers,
      body: r.body,
      signal: control.signal,
      redirect: "manual",
      connectTimeoutMs: r.timeouts.connectMs,
    };
    if (r.fresh === true) init.fresh = true;
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
  const contentType = response.headers.get("content-type");
  const plan = bodyPlan(contentType, response.headers);
  // `response.body` is not read before it is needed: for a body held as bytes the getter builds
  // a stream, which a whole read never uses (a null body reads as no bytes).
  // Bytes that come once the attempt was aborted (a limit fired, the client left, shutdown) lose
  // the race: whatever arrived, the attempt is never committed, so the caller retries or answers
  // 504 instead of sending a 200 the relay would then cut. Checked after every wait, before
  // anything clears the limits (one JS turn: no limit can fire between the check and the commit).
  if (plan === "whole") {
    // known small JSON body: one native read, sent on in one piece
    let body: Uint8Array<ArrayBuffer>;
    try {
      body = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      control.dispose();
      return failure(control, error, true);
    }
    if (control.signal.aborted) return late(control, undefined);
    control.dispose();
    return committed(response, control, startedAt, contentType, body);
  }
  if (response.body === null) {
    if (control.signal.aborted) return late(control, undefined);
    control.firstByteArrived();
    return committed(response, control, startedAt, contentType, new Uint8Array(0));
  }
  const reader = bodyReader(response.body);
  let got = false;
  try {
    const r1 = await reader.read();
    if (control.signal.aborted) return late(control, reader);
    control.firstByteArrived();
    got = true;
    if (r1.done) {
      control.dispose();
      return committed(response, control, startedAt, contentType, new Uint8Array(0));
    }
    if (plan === "stream") {
      return committed(response, control, startedAt, contentType, undefined, {
        reader,
        first: r1.value,
      });
    }
    const parts: Uint8Array[] = [r1.value];
    let size = r1.value.length;
    while (size <= BUFFER_LIMIT) {
      const r = await reader.read();
      if (control.signal.aborted) return late(control, reader);
      if (r.done) {
        control.dispose();
        return committed(response, control, startedAt, contentType, concat(parts, size));
      }
      parts.push(r.value);
      size += r.value.length;
    }
    return committed(response, control, startedAt, contentType, undefined, {
      reader,
      first: concat(parts, size),
    });
  } catch (error) {
    control.dispose();
    reader.cancel().catch(() => {});
    return failure(control, error, got);
  }
}

/**
 * The result of an attempt aborted just as its bytes came: not committed, its reader cancelled.
 * @param control the aborted attempt's control
 * @param reader the body's reader, if one was opened
 * @returns the failure (`timeout` with the limit that fired, `client_abort` or shutdown)
 */
function late(control: AttemptControl, reader: BodyReader | undefined): Failure {
  control.dispose();
  reader?.cancel(control.signal.reason).catch(() => {});
  return failure(control, control.signal.reason, true);
}

/** A committable result: a whole body, or a reader (with what was read so far) to relay. */
function committed(
  response: Response,
  control: AttemptControl,
  startedAt: number,
  contentType: string | null,
  body: Uint8Array<ArrayBuffer> | undefined,
  stream?: { reader: BodyReader; first: Uint8Array },
): Committable {
  return {
    kind: "response",
    cls: "ok",
    response,
    body,
    reader: stream?.reader,
    first: stream?.first,
    control,
    startedAt,
    contentType,
  };
}

/**
 * How to take a response body: a small JSON body of known length in one native read
 * (`whole`), a JSON body of unknown length read up to the buffering limit (`buffer`), anything
 * else (event streams, downloads, large JSON) relayed as it comes (`stream`).
 */
function bodyPlan(ct: string | null, h: Headers): "whole" | "buffer" | "stream" {
  if (ct === null || !ct.includes("json")) return "stream";
  const len = h.get("content-length");
  if (len === null) return "buffer";
  return Number(len) <= BUFFER_LIMIT ? "whole" : "stream";
}

function failure(control: AttemptControl, error: unknown, midBody: boolean): Failure {
  if (control.shutDown) return { kind: "failure", cls: "client_abort", error, shutdown: true };
  const cls = classifyFailure({
    clientAborted: control.clientAborted,
    timedOut: control.timedOut !== undefined,
    // an answer that broke the protocol came from a reachable upstream: a server failure
    midBody: midBody || answeredBadly(error),
    stale: error instanceof StaleConnectionError,
  });
  return { kind: "failure", cls, error, timeout: control.timedOut };
}

/** Whether the transport reached the upstream and got an answer it could not take. */
function answeredBadly(error: unknown): boolean {
  return error instanceof UpstreamProtocolError && !(error instanceof ConnectError) &&
    !(error instanceof StaleConnectionError);
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
