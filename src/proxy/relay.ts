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
  return new ReadableStream<Uint8Array>(new RelaySource(o), { highWaterMark: 0 });
}

/**
 * The relay's underlying source: one object per stream, its two read callbacks made once, so a
 * chunk costs one `then` on the upstream read and no closure, async frame or await of its own.
 * What a stream leaves pending while it waits for its next chunk outlives young-generation
 * collections when thousands of streams are open, and is promoted to the old generation, where
 * it stays until the next full collection: the less each chunk leaves, the flatter the memory.
 */
class RelaySource implements UnderlyingDefaultSource<Uint8Array> {
  readonly #o: RelayOptions;
  #first: Uint8Array | undefined;
  #bytes = 0;
  #ended = false;
  #pendingError: unknown;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly #onRead = (r: ReadableStreamReadResult<Uint8Array>): Promise<void> | undefined =>
    this.#read(r);
  readonly #onError = (err: unknown): void => this.#fail(err);

  constructor(o: RelayOptions) {
    this.#o = o;
    this.#first = o.first;
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#controller = controller;
  }

  pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> | undefined {
    if (this.#pendingError !== undefined) {
      controller.error(this.#pendingError);
      return;
    }
    const first = this.#first;
    if (first !== undefined) {
      this.#first = undefined;
      try {
        if (this.#deliver(first)) return;
      } catch (err) {
        this.#fail(err);
        return;
      }
    }
    return this.#next();
  }

  cancel(reason: unknown): void {
    const o = this.#o;
    o.control.clientGone();
    this.#finish({ outcome: "client_abort", cls: "client_abort", error: reason });
    o.reader.cancel(reason).catch(() => {});
  }

  /** Reads the next upstream chunk under the idle limit. */
  #next(): Promise<void> {
    const o = this.#o;
    o.control.armIdle(o.idleMs);
    return o.reader.read().then(this.#onRead, this.#onError);
  }

  #read(r: ReadableStreamReadResult<Uint8Array>): Promise<void> | undefined {
    this.#o.control.idleOver();
    try {
      if (r.done) {
        this.#flush();
        this.#finish({ outcome: "complete", cls: "ok" });
        this.#controller.close();
        return;
      }
      if (this.#deliver(r.value)) return;
    } catch (err) {
      this.#fail(err);
      return;
    }
    // nothing went out (an empty chunk, or `transform` held it all): read on
    return this.#next();
  }

  #fail(err: unknown): void {
    const o = this.#o;
    const control = o.control;
    control.idleOver();
    const controller = this.#controller;
    const cls = classifyFailure({
      clientAborted: control.clientAborted || control.shutDown,
      timedOut: control.timedOut !== undefined,
      midBody: true,
    });
    if (cls === "client_abort" && !control.shutDown) {
      this.#finish({ outcome: "client_abort", cls, error: err });
      safeError(controller, err);
      return;
    }
    this.#finish({ outcome: "failed", cls, error: err, shutdown: control.shutDown });
    const why = control.shutDown
      ? "llm-balance shut down before the upstream finished"
      : control.timedOut
      ? `upstream ${control.timedOut.replace("_", " ")} timeout`
      : "upstream connection broke";
    const error = new StreamInterruptedError(`Stream interrupted: ${why}`);
    try {
      this.#flush();
      if (o.sse) {
        // blank lines end whatever partial event came before; extra ones are ignored
        const event = `\n\nevent: error\ndata: ${
          errorBody(`Stream interrupted: ${why}`, "upstream_error", "stream_interrupted")
        }\n\n`;
        controller.enqueue(encoder.encode(event));
        this.#pendingError = error;
      } else {
        controller.error(error);
      }
    } catch {
      // the client cancelled meanwhile
    }
  }

  #finish(end: Omit<RelayEnd, "bytes">): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#o.control.dispose();
    this.#o.onEnd({ ...end, bytes: this.#bytes });
  }

  #send(c: Uint8Array): boolean {
    if (c.length === 0) return false;
    this.#bytes += c.length;
    this.#controller.enqueue(c);
    return true;
  }

  /** Sends an upstream chunk; false when nothing went out (the caller reads on). */
  #deliver(c: Uint8Array): boolean {
    if (c.length === 0) return false;
    const o = this.#o;
    o.onChunk?.(c);
    return this.#send(o.transform ? o.transform(c) : c);
  }

  #flush(): void {
    const flush = this.#o.flush;
    if (flush) this.#send(flush());
  }
}

function safeError(c: ReadableStreamDefaultController<Uint8Array>, err: unknown): void {
  try {
    c.error(err);
  } catch {
    // already cancelled by the client
  }
}
