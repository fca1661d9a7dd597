/**
 * @module
 * Reads an upstream body into buffers sized to what it sends. A default reader of a `fetch`
 * body allocates 64 KiB for every read, and a stream waiting for its next event holds that
 * buffer the whole time: a thousand open streams held 64 MB of empty buffers. Reads here start
 * at 4 KiB (an SSE event is usually far smaller), double while the upstream fills them, and
 * shrink back when it stops. A chunk that fills less than half its buffer is copied out and the
 * buffer read into again, so a stream of small events allocates the size of its events, not a
 * fresh buffer per event.
 */

/** Reads a body chunk by chunk (a default stream reader is one). */
export interface BodyReader {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
}

/** The first and smallest read. */
export const MIN_READ_BYTES = 4 * 1024;
/** The largest read (what a default reader of a `fetch` body always takes). */
export const MAX_READ_BYTES = 64 * 1024;

/**
 * Opens a reader whose buffers follow the body's pace.
 * @param body a byte stream (a `fetch` body); any other stream is read with a default reader
 * @returns the reader; it owns the stream's lock
 */
export function bodyReader(body: ReadableStream<Uint8Array>): BodyReader {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // not a byte stream
    return body.getReader();
  }
  let size = MIN_READ_BYTES;
  /** The last read's buffer, when its bytes were copied out: the next read of its size uses it. */
  let spare: ArrayBuffer | undefined;
  return {
    async read(): Promise<ReadableStreamReadResult<Uint8Array>> {
      const into = spare?.byteLength === size ? new Uint8Array(spare) : new Uint8Array(size);
      spare = undefined;
      const r = await byob.read(into);
      const v = r.value;
      if (r.done || v === undefined) {
        return { done: true } as ReadableStreamReadDoneResult<Uint8Array>;
      }
      const n = v.length;
      const room = v.buffer.byteLength;
      if (n === size) size = Math.min(size * 2, MAX_READ_BYTES);
      else if (n < size / 4) size = Math.max(size / 2, MIN_READ_BYTES);
      if (n > room / 2) return { done: false, value: v };
      spare = v.buffer as ArrayBuffer;
      return { done: false, value: v.slice() };
    },
    cancel(reason?: unknown): Promise<void> {
      return byob.cancel(reason);
    },
  };
}
