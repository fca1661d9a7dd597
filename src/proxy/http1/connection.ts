/**
 * @module
 * One upstream connection of the HTTP/1.1 client: its socket, the bytes read from it but not
 * yet used, and its one read in progress. While a connection sits idle in the pool a read is
 * kept waiting on it, so anything the upstream does meanwhile (late bytes, a close, a reset)
 * is seen at once and the connection is dropped, never handed to the next request; when the
 * connection is reused, that same read receives the next answer.
 */

/** A connection and its read buffer. */
export class Connection {
  readonly conn: Deno.Conn;
  /** Bytes read; `[start, end)` not yet used. */
  buf: Uint8Array<ArrayBuffer>;
  start = 0;
  end = 0;
  /** The pool's key of its origin. */
  origin = "";
  /** The connection was used for an answer before (it came from the pool). */
  reused = false;
  /** When it went idle (by the pool clock's `mono()`), and how long it may stay so. */
  idleSince = 0;
  lifetimeMs = 0;
  /** Whether it is in the pool. */
  idle = false;
  /** Whether it was closed. */
  closed = false;
  /** Bytes of the current answer have arrived. */
  answered = false;
  /** The idle watch's read completed (something arrived, or the socket ended). */
  #watchEnded = false;
  /** The read in progress, started by {@linkcode Connection.watchIdle} or {@linkcode fill}. */
  #reading: Promise<number | null> | undefined;
  /** The last read filled all the room it had (the next one gets a bigger buffer). */
  #full = false;
  readonly #maxBuffer: number;

  /**
   * @param conn the socket
   * @param bufferBytes the first read buffer's size; it doubles while reads fill it
   * @param maxBuffer how far it may grow for fast bodies (a head or chunk line may grow it
   *   further, up to the caller's limits)
   */
  constructor(conn: Deno.Conn, bufferBytes = 4096, maxBuffer = 64 * 1024) {
    this.conn = conn;
    this.buf = new Uint8Array(bufferBytes);
    this.#maxBuffer = maxBuffer;
  }

  /**
   * Starts the idle watch: a read that, should it complete while the connection is still idle,
   * calls `onEvent` (the pool then drops the connection). Called with nothing left unread.
   * @param onEvent called once if the upstream sends, closes or resets while idle
   */
  watchIdle(onEvent: (c: Connection) => void): void {
    this.start = this.end = 0;
    this.#watchEnded = false;
    const reading = this.conn.read(this.buf);
    this.#reading = reading;
    const ended = () => {
      this.#watchEnded = true;
      if (this.idle) onEvent(this);
    };
    reading.then(ended, ended);
  }

  /**
   * Whether the idle watch is still waiting after the event loop has had a turn: bytes, a close
   * or a reset that reached the socket while this process was busy are only seen once the loop
   * polls the socket, and a request taking the connection before that would read them as its
   * answer. Called on a connection just taken from the pool that sat idle a while.
   * @returns true when nothing arrived (the connection may be used)
   */
  async settled(): Promise<boolean> {
    if (this.#watchEnded) return false;
    // a timer fires after the loop has polled its sockets once more
    await new Promise((resolve) => setTimeout(resolve, 0));
    return !this.#watchEnded && !this.closed;
  }

  /**
   * Reads more bytes into the buffer (first the read already waiting, if any).
   * @returns false at the end of the connection
   * @throws what the socket throws (a reset, a closed resource)
   */
  async fill(): Promise<boolean> {
    let n: number | null;
    const waiting = this.#reading;
    if (waiting !== undefined) {
      this.#reading = undefined;
      n = await waiting;
      if (n === null) return false;
      this.end += n;
      this.#full = this.end === this.buf.length;
    } else {
      const live = this.end - this.start;
      if (live === 0) this.start = this.end = 0;
      if (this.end === this.buf.length && live <= this.buf.length / 2) {
        // no room at the end, and what is unread is short: it moves to the front
        this.buf.copyWithin(0, this.start, this.end);
        this.start = 0;
        this.end = live;
      } else if (
        this.end === this.buf.length || (this.#full && this.buf.length < this.#maxBuffer)
      ) {
        // a head or line longer than half the buffer, or a fast body: the buffer grows
        const next = new Uint8Array(this.buf.length * 2);
        next.set(this.buf.subarray(this.start, this.end), 0);
        this.buf = next;
        this.start = 0;
        this.end = live;
      }
      const room = this.buf.length - this.end;
      n = await this.conn.read(this.buf.subarray(this.end));
      if (n === null) return false;
      this.end += n;
      this.#full = n === room;
    }
    if (n > 0) this.answered = true;
    return true;
  }

  /**
   * Takes `n` unread bytes as a fresh copy.
   * @param n how many (at most what is unread)
   * @returns the bytes
   */
  take(n: number): Uint8Array<ArrayBuffer> {
    const out = this.buf.slice(this.start, this.start + n);
    this.start += n;
    return out;
  }

  /** Closes the socket (a read or write in progress then fails); idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.idle = false;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}
