/**
 * @module
 * Connections for the HTTP/1.1 client's unit tests: {@linkcode FakeConn}, a scripted stand-in
 * for `Deno.Conn` (reads served from pieces the test feeds, writes recorded), and
 * {@linkcode loopbackPair}, two ends of a real TCP connection on 127.0.0.1.
 */

const encoder = new TextEncoder();

/** What one read gets: bytes (a string is UTF-8), the end of the connection, or an error. */
export type Piece = Uint8Array | string | null | Error;

interface PendingRead {
  into: Uint8Array;
  resolve: (n: number | null) => void;
  reject: (err: unknown) => void;
}

/**
 * A scripted `Deno.Conn`. Each read takes (part of) the first fed piece; a read with nothing fed
 * waits for {@linkcode FakeConn.feed}. The end (`null`) is sticky; an error is thrown once. Two
 * reads at once are refused (as a socket's reads must not overlap); `close` makes a waiting read
 * fail as Deno's does (`Interrupted`).
 */
export class FakeConn {
  /** Every write, copied. */
  readonly written: Uint8Array[] = [];
  /** Bytes handed out by reads. */
  delivered = 0;
  /** Calls of read, ref, unref and close. */
  reads = 0;
  refs = 0;
  unrefs = 0;
  closes = 0;
  closed = false;
  readonly #queue: Piece[];
  #pending: PendingRead | undefined;

  /** @param pieces what the first reads get */
  constructor(pieces: Piece[] = []) {
    this.#queue = [...pieces];
  }

  /** This fake, typed as the socket it stands for. */
  get conn(): Deno.Conn {
    return this as unknown as Deno.Conn;
  }

  /** Whether a read is waiting for a piece. */
  get waiting(): boolean {
    return this.#pending !== undefined;
  }

  /**
   * Queues pieces for the next reads (a waiting read gets the first at once).
   * @param pieces bytes, text, `null` for the end, or an error
   */
  feed(...pieces: Piece[]): void {
    this.#queue.push(...pieces);
    this.#serve();
  }

  /** `Deno.Conn.read`. */
  read(into: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("Bad resource ID"));
    if (this.#pending !== undefined) return Promise.reject(new Error("two reads at once"));
    this.reads++;
    return new Promise((resolve, reject) => {
      this.#pending = { into, resolve, reject };
      this.#serve();
    });
  }

  /** `Deno.Conn.write`: records the bytes. */
  write(bytes: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("Bad resource ID"));
    this.written.push(bytes.slice());
    return Promise.resolve(bytes.length);
  }

  /** `Deno.Conn.close`: throws when already closed, as Deno's does. */
  close(): void {
    this.closes++;
    if (this.closed) throw new Deno.errors.BadResource("Bad resource ID");
    this.closed = true;
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.reject(new Deno.errors.Interrupted("operation canceled"));
  }

  ref(): void {
    this.refs++;
  }

  unref(): void {
    this.unrefs++;
  }

  #serve(): void {
    const pending = this.#pending;
    if (pending === undefined || this.#queue.length === 0) return;
    const piece = this.#queue[0] as Piece;
    this.#pending = undefined;
    if (piece === null) {
      pending.resolve(null);
      return;
    }
    this.#queue.shift();
    if (piece instanceof Error) {
      pending.reject(piece);
      return;
    }
    const bytes = typeof piece === "string" ? encoder.encode(piece) : piece;
    const n = Math.min(bytes.length, pending.into.length);
    pending.into.set(bytes.subarray(0, n));
    if (n < bytes.length) this.#queue.unshift(bytes.subarray(n));
    this.delivered += n;
    pending.resolve(n);
  }
}

/** Two ends of one TCP connection on 127.0.0.1. */
export interface LoopbackPair {
  client: Deno.TcpConn;
  server: Deno.TcpConn;
}

/**
 * Opens a TCP connection to a listener on 127.0.0.1 (port 0), then closes the listener.
 * @returns both ends (the caller closes them)
 */
export async function loopbackPair(): Promise<LoopbackPair> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    return { client, server };
  } finally {
    listener.close();
  }
}

/**
 * Closes a socket that may be closed already.
 * @param conn the socket
 */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Lets pending promise reactions and I/O callbacks run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
