/**
 * @module
 * The idle connections of the HTTP/1.1 client, per origin. A connection is reused only while
 * the upstream will still take it: for the lifetime the upstream announced
 * (`Keep-Alive: timeout=N`, less a second's margin) or, when it said nothing, a default below
 * the 5 s after which common servers (Node's, uvicorn) close idle connections. Each idle
 * connection is watched (see {@linkcode Connection.watchIdle}): one that receives anything
 * (bytes, a close, a reset) is dropped at once. The most recently used is handed out first.
 */

import { type Clock, systemClock } from "../../clock.ts";
import type { Connection } from "./connection.ts";

/** Options of {@linkcode ConnectionPool}. */
export interface PoolOptions {
  /** Idle lifetime when the upstream announces none. @default 4000 */
  idleTimeoutMs?: number;
  /** The longest idle lifetime, whatever the upstream announces. @default 600000 */
  maxIdleTimeoutMs?: number;
  /** Taken off an announced `Keep-Alive: timeout`. @default 1000 */
  marginMs?: number;
  /** Idle connections kept per origin. @default 256 */
  maxIdlePerOrigin?: number;
  /** Idle lifetimes are measured on its `mono()`. @default {@linkcode systemClock} */
  clock?: Clock;
}

/** Idle keep-alive connections per origin. */
export class ConnectionPool {
  readonly #idle = new Map<string, Connection[]>();
  readonly #idleTimeoutMs: number;
  readonly #maxIdleTimeoutMs: number;
  readonly #marginMs: number;
  readonly #maxIdle: number;
  readonly #clock: Clock;
  readonly #drop = (c: Connection) => this.#remove(c);
  #lastSweep = 0;
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** @param options lifetimes and limits */
  constructor(options: PoolOptions = {}) {
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 4000;
    this.#maxIdleTimeoutMs = options.maxIdleTimeoutMs ?? 600_000;
    this.#marginMs = options.marginMs ?? 1000;
    this.#maxIdle = options.maxIdlePerOrigin ?? 256;
    this.#clock = options.clock ?? systemClock;
  }

  /** Idle connections held, over all origins. */
  get size(): number {
    let n = 0;
    for (const list of this.#idle.values()) n += list.length;
    return n;
  }

  /**
   * How long a connection may stay idle, from what the upstream announced.
   * @param keepAliveSeconds `Keep-Alive: timeout=N`, if sent
   * @returns milliseconds; 0 or less means it is not to be reused
   */
  lifetime(keepAliveSeconds: number | undefined): number {
    if (keepAliveSeconds === undefined) return this.#idleTimeoutMs;
    return Math.min(keepAliveSeconds * 1000 - this.#marginMs, this.#maxIdleTimeoutMs);
  }

  /**
   * Takes the most recently used idle connection of an origin that is still good.
   * @param origin the origin's key
   * @returns the connection (marked reused and no longer idle), or undefined
   */
  take(origin: string): Connection | undefined {
    const list = this.#idle.get(origin);
    if (list === undefined) return undefined;
    const now = this.#clock.mono();
    for (let c = list.pop(); c !== undefined; c = list.pop()) {
      c.idle = false;
      if (!c.closed && now - c.idleSince < c.lifetimeMs) {
        c.reused = true;
        c.answered = false;
        c.conn.ref();
        return c;
      }
      c.close();
    }
    return undefined;
  }

  /**
   * Puts a connection whose answer is complete, with nothing left unread, back in the pool.
   * @param origin the origin's key
   * @param c the connection
   * @param lifetimeMs how long it may stay idle (from {@linkcode ConnectionPool.lifetime})
   */
  put(origin: string, c: Connection, lifetimeMs: number): void {
    if (this.#closed || c.closed || lifetimeMs <= 0 || c.start !== c.end) {
      c.close();
      return;
    }
    let list = this.#idle.get(origin);
    if (list === undefined) this.#idle.set(origin, list = []);
    if (list.length >= this.#maxIdle) {
      c.close();
      return;
    }
    const now = this.#clock.mono();
    c.origin = origin;
    c.idleSince = now;
    c.lifetimeMs = lifetimeMs;
    c.idle = true;
    // an idle connection does not keep the process alive
    c.conn.unref();
    c.watchIdle(this.#drop);
    list.push(c);
    if (now - this.#lastSweep > this.#idleTimeoutMs) this.#sweep(now);
    this.#sweepLater();
  }

  /**
   * While connections are idle, sweeps every idle timeout, so expired ones are closed when
   * traffic stops too (the timer does not keep the process alive).
   */
  #sweepLater(): void {
    if (this.#sweepTimer !== undefined) return;
    this.#sweepTimer = setTimeout(() => {
      this.#sweepTimer = undefined;
      this.#sweep(this.#clock.mono());
      if (this.size > 0 && !this.#closed) this.#sweepLater();
    }, this.#idleTimeoutMs);
    // Deno's timer ids are numbers (Node's types, also in scope, say otherwise)
    Deno.unrefTimer(Number(this.#sweepTimer));
  }

  /**
   * Drops every idle connection of an origin that went idle no later than `since` (they are
   * likely as dead as one just found stale).
   * @param origin the origin's key
   * @param since by the clock's `mono()` (as {@linkcode Connection.idleSince})
   */
  dropOlder(origin: string, since: number): void {
    const list = this.#idle.get(origin);
    if (list === undefined) return;
    let kept = 0;
    for (const c of list) {
      if (c.idleSince > since) list[kept++] = c;
      else c.close();
    }
    list.length = kept;
  }

  /** Closes every idle connection; connections in use close when their answer ends. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    for (const list of this.#idle.values()) for (const c of list) c.close();
    this.#idle.clear();
  }

  /** A connection that saw something while idle: out of the pool and closed. */
  #remove(c: Connection): void {
    c.close();
    const list = this.#idle.get(c.origin);
    const i = list?.indexOf(c) ?? -1;
    if (i >= 0) list!.splice(i, 1);
  }

  /** Closes connections idle past their lifetime. */
  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const list of this.#idle.values()) {
      let kept = 0;
      for (const c of list) {
        if (now - c.idleSince < c.lifetimeMs) list[kept++] = c;
        else c.close();
      }
      list.length = kept;
    }
  }
}
