/**
 * @module
 * Response body framing of the upstream HTTP/1.1 client (RFC 9112 §6, §7.1): a body of a
 * known length, chunks (decoded, with extensions and trailers read and dropped), or everything
 * until the upstream closes, as a plain pull stream that reads nothing ahead of its consumer.
 * Malformed chunk lines fail at once (a bare LF included); a body cut short fails, never ends
 * quietly short.
 */

import type { Connection } from "./connection.ts";
import { failureName, UpstreamProtocolError } from "./errors.ts";
import type { Framing } from "./response_head.ts";

const decoder = new TextDecoder();
/** Longest chunk-size line (with extensions) and trailer section accepted. */
const MAX_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;
const CHUNK_SIZE = /^[0-9a-fA-F]{1,12}[\t ]*(?:;.*)?$/;

/**
 * Streams a body from the connection. `done(complete)` is called exactly once: with true when
 * the body ended as framed (the connection may then be reused if nothing is left unread), with
 * false on a failure, a cancel, or a body delimited by the close.
 * @param c the connection, positioned after the head
 * @param framing how the body is delimited (not `none`)
 * @param done called once at the end
 * @returns the body stream; its reads reject with {@linkcode UpstreamProtocolError}
 */
export function bodyStream(
  c: Connection,
  framing: Exclude<Framing, { kind: "none" }>,
  done: (complete: boolean) => void,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let finished = false;
  const finish = (complete: boolean) => {
    if (finished) return;
    finished = true;
    done(complete);
  };
  const next = framing.kind === "chunked"
    ? chunkedDecoder(c)
    : framing.kind === "length"
    ? lengthReader(c, framing.length)
    : closeReader(c);
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      try {
        for (;;) {
          const out = next();
          if (out === END) {
            // close-delimited: the connection ended it, and cannot be reused
            finish(framing.kind !== "close");
            controller.close();
            return;
          }
          if (out !== null) {
            controller.enqueue(out);
            return;
          }
          let more: boolean;
          try {
            more = await c.fill();
          } catch (err) {
            throw new UpstreamProtocolError(
              `upstream connection failed in the middle of the body (${failureName(err)})`,
            );
          }
          if (!more) {
            if (framing.kind === "close") {
              finish(false);
              controller.close();
              return;
            }
            throw new UpstreamProtocolError("upstream closed the connection before the body ended");
          }
        }
      } catch (err) {
        finish(false);
        throw err instanceof UpstreamProtocolError
          ? err
          : new UpstreamProtocolError(`upstream body could not be read (${failureName(err)})`);
      }
    },
    cancel() {
      finish(false);
    },
  }, { highWaterMark: 0 });
}

/** The end of a body. */
const END = Symbol("end");

/** Gives the next piece of body from what is buffered: bytes, null (read more), or END. */
type Next = () => Uint8Array<ArrayBuffer> | null | typeof END;

function lengthReader(c: Connection, length: number): Next {
  let left = length;
  return () => {
    if (left === 0) return END;
    const n = Math.min(left, c.end - c.start);
    if (n === 0) return null;
    left -= n;
    return c.take(n);
  };
}

function closeReader(c: Connection): Next {
  return () => c.end > c.start ? c.take(c.end - c.start) : null;
}

/**
 * Decodes chunks from what the connection has buffered.
 * @param c the connection
 * @returns the decoder
 */
export function chunkedDecoder(c: Connection): Next {
  /** Bytes left in the current chunk. */
  let left = 0;
  let state: "size" | "data" | "crlf" | "trailer" | "end" = "size";
  let trailerBytes = 0;
  return () => {
    for (;;) {
      if (state === "end") return END;
      if (state === "data") {
        const n = Math.min(left, c.end - c.start);
        if (n === 0) return null;
        left -= n;
        if (left === 0) state = "crlf";
        return c.take(n);
      }
      const line = readLine(c, state === "trailer" ? MAX_TRAILERS - trailerBytes : MAX_LINE);
      if (line === null) return null;
      if (state === "crlf") {
        if (line !== "") throw new UpstreamProtocolError("upstream sent a malformed chunk");
        state = "size";
      } else if (state === "size") {
        if (!CHUNK_SIZE.test(line)) {
          throw new UpstreamProtocolError("upstream sent a malformed chunk size");
        }
        left = parseInt(line, 16);
        state = left === 0 ? "trailer" : "data";
      } else if (line === "") {
        state = "end";
      } else {
        // a trailer field: read and dropped
        trailerBytes += line.length + 2;
      }
    }
  };
}

/**
 * Takes one CRLF-terminated line from the buffer.
 * @returns the line without its end, or null when it is not complete yet
 * @throws {UpstreamProtocolError} for a bare LF, a CR inside the line, or a line over `max`
 */
function readLine(c: Connection, max: number): string | null {
  const lf = c.buf.indexOf(10, c.start);
  if (lf < 0 || lf >= c.end) {
    if (c.end - c.start > max) {
      throw new UpstreamProtocolError("upstream sent a chunk line too long");
    }
    return null;
  }
  if (lf === c.start || c.buf[lf - 1] !== 13) {
    throw new UpstreamProtocolError("upstream sent a chunk line without CRLF");
  }
  if (lf - c.start > max) throw new UpstreamProtocolError("upstream sent a chunk line too long");
  const bytes = c.buf.subarray(c.start, lf - 1);
  if (bytes.indexOf(13) >= 0) {
    throw new UpstreamProtocolError("upstream sent a malformed chunk line");
  }
  c.start = lf + 1;
  return decoder.decode(bytes);
}
