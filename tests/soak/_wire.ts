/**
 * @module
 * A server-side TCP connection with exact control of how it ends, for the soak's fault
 * upstream: `end()` sends a FIN and keeps reading (to see what the peer still sends),
 * `close()` is a bare close(2) (a FIN, or a reset when received bytes are still unread), and
 * `reset()` sends a reset (SO_LINGER 0). Built on `node:net`, because `Deno.Conn.close()` always shuts the write
 * side down first, so a Deno listener can never answer with a reset alone.
 */

import net from "node:net";

/** One accepted connection: chunks in as they arrive, bytes out as given. */
export class Wire {
  readonly #socket: net.Socket;
  readonly #chunks: Uint8Array[] = [];
  #ended = false;
  #closed = false;
  #wake: (() => void) | undefined;

  /** @param socket the accepted socket (flowing mode: every chunk is queued as it comes) */
  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    const end = () => {
      this.#ended = true;
      this.#notify();
    };
    socket.on("data", (d: Uint8Array) => {
      this.#chunks.push(d);
      this.#notify();
    });
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  /** Whether this side closed or reset the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /**
   * The next chunk received.
   * @returns the bytes, or undefined once the peer ended, the connection failed, or this side
   *   closed it (bytes that came after are never handed out)
   */
  async read(): Promise<Uint8Array | undefined> {
    while (this.#chunks.length === 0 && !this.#ended && !this.#closed) {
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    if (this.#closed) return undefined;
    return this.#chunks.shift();
  }

  /**
   * Writes bytes exactly as given.
   * @throws {Error} when the connection is gone
   */
  write(bytes: Uint8Array): Promise<void> {
    if (this.#closed || this.#socket.destroyed) {
      return Promise.reject(new Error("Cannot write: the connection is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (err) => err ? reject(err) : resolve());
    });
  }

  /** Sends a FIN: nothing more is written, and what the peer still sends can be read. */
  end(): void {
    if (!this.#closed) this.#socket.end();
  }

  /** Closes the connection (close(2): FIN, or a reset if received bytes are unread). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#notify();
  }

  /** Resets the connection (RST; bytes not yet sent are dropped). */
  reset(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.resetAndDestroy();
    this.#notify();
  }
}

/** A listener on 127.0.0.1 handing out {@link Wire}s. */
export class WireListener {
  readonly #server: net.Server;
  readonly port: number;

  private constructor(server: net.Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  /**
   * Listens on a free port of 127.0.0.1.
   * @param onWire called with each accepted connection
   * @returns the listener
   */
  static async listen(onWire: (wire: Wire) => void): Promise<WireListener> {
    const server = net.createServer((socket) => onWire(new Wire(socket)));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const addr = server.address();
    if (addr === null || typeof addr === "string") throw new Error("Cannot listen: no TCP port");
    return new WireListener(server, addr.port);
  }

  /** Stops accepting connections (open ones stay open). */
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
