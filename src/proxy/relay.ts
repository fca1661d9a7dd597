/**
 * @module
 * Relays an upstream body to the client chunk by chunk as it arrives: no buffering, no
 * re-framing. A client that goes away cancels the upstream at once. An upstream that breaks
 * mid-body is reported, never disguised as a clean end: an event stream gets an OpenAI-style
 * error event and then an aborted connection; any other body an aborted connection.
 */

import { errorBody } from "../errors.ts";
import { type AttemptClass, classifyFailure } from "../health/classify.ts";
import type { AttemptControl } from "./attempt_control.ts";
import type { BodyReader } from "./body_reader.ts";

/**
 * The error a relayed body ends with when the upstream broke or llm-balance cut it: already
 * reported to the client (error event) and logged, so the server need not report it again.
 */
export class StreamInterruptedError extends Error {
  /** @param message what happened */
  constructor(message: string) {
    super(message);
    this.name = "StreamInterruptedError";
  }
}

/** How a relayed body ended. */
export interface RelayEnd {
  outcome: "complete" | "client_abort" | "failed";
  /** The class of the failure (`client_abort` when the client left). */
  cls: AttemptClass;
  /** Body bytes sent to the client. */
  bytes: number;
  /** llm-balance cut the stream because it is shutting down (the upstream is not to blame). */
  shutdown?: boolean;
  error?: unknown;
}

/** Options of {@linkcode relay}. */
export interface RelayOptions {
  reader: BodyReader;
  /** A chunk already read from `reader` (to know the upstream answered), sent first. */
  first: Uint8Array | undefined;
  control: AttemptControl;
  /** Longest wait for the next chunk; 0 disables. */
  idleMs: number;
  /** Whether the body is an event stream (gets an error event on failure). */
  sse: boolean;
  /** Sees each chunk as the upstream sent it (before `transform`). */
  onChunk?: ((chunk: Uint8Array) => void) | undefined;
  /**
   * Rewrites each chunk before it goes to the client (e.g. `UsageChunkStripper.push`); may
   * return no bytes, and the relay then reads on. @default sends chunks as they are
   */
  transform?: ((chunk: Uint8Array) => Uint8Array) | undefined;
  /** Bytes `transform` still holds, sent before the end or the error event. @default none */
  flush?: (() => Uint8Array) | undefined;
  /** Called exactly once when the body ends, fails or is cancelled. */
  onEnd: (end: RelayEnd) => void;
}

const encoder = new TextEncoder();

/**
 * Builds the client's response body.
 * @param o the upstream reader, first chunk, attempt control and callbacks
 * @returns a pull-based stream (high-water mark 0: one upstream read per client read)
 */
export function relay(o: RelayOptions): ReadableStream<Uint8Array> {
  let first = o.first;
  let bytes = 0;
  let ended = false;
  let pendingError: unknown;
  const finish = (end: Omit<RelayEnd, "bytes">) => {
    if (ended) return;
    ended = true;
    o.control.dispose();
    o.onEnd({ ...end, bytes });
  };
  const send = (controller: ReadableStreamDefaultController<Uint8Array>, c: Uint8Array) => {
    if (c.length === 0) return false;
    bytes += c.length;
    controller.enqueue(c);
    return true;
  };
  /** Sends an upstream chunk; false when nothing went out (the caller reads on). */
  const deliver = (controller: ReadableStreamDefaultController<Uint8Array>, c: Uint8Array) => {
    if (c.length === 0) return false;
    o.onChunk?.(c);
    return send(controller, o.transform ? o.transform(c) : c);
  };
  const flush = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    if (o.flush) send(controller, o.flush());
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pendingError !== undefined) {
        controller.error(pendingError);
        return;
      }
      if (first !== undefined) {
        const c = first;
        first = undefined;
        if (deliver(controller, c)) return;
      }
      for (;;) {
        o.control.armIdle(o.idleMs);
        try {
          const r = await o.reader.read();
          if (r.done) {
            flush(controller);
            finish({ outcome: "complete", cls: "ok" });
            controller.close();
            return;
          }
          if (deliver(controller, r.value)) return;
        } catch (err) {
          const cls = classifyFailure({
            clientAborted: o.control.clientAborted || o.control.shutDown,
            timedOut: o.control.timedOut !== undefined,
            midBody: true,
          });
          if (cls === "client_abort" && !o.control.shutDown) {
            finish({ outcome: "client_abort", cls, error: err });
            safeError(controller, err);
            return;
          }
          finish({ outcome: "failed", cls, error: err, shutdown: o.control.shutDown });
          const why = o.control.shutDown
            ? "llm-balance shut down before the upstream finished"
            : o.control.timedOut
            ? `upstream ${o.control.timedOut.replace("_", " ")} timeout`
            : "upstream connection broke";
          const error = new StreamInterruptedError(`Stream interrupted: ${why}`);
          flush(controller);
          if (o.sse) {
            // blank lines end whatever partial event came before; extra ones are ignored
            const event = `\n\nevent: error\ndata: ${
              errorBody(`Stream interrupted: ${why}`, "upstream_error", "stream_interrupted")
            }\n\n`;
            controller.enqueue(encoder.encode(event));
            pendingError = error;
          } else {
            controller.error(error);
          }
          return;
        } finally {
          o.control.idleOver();
        }
      }
    },
    cancel(reason) {
      o.control.clientGone();
      finish({ outcome: "client_abort", cls: "client_abort", error: reason });
      o.reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

function safeError(c: ReadableStreamDefaultController<Uint8Array>, err: unknown): void {
  try {
    c.error(err);
  } catch {
    // already cancelled by the client
  }
}
