/**
 * @module
 * The link to the Redis that instances share (`state.redis`), through node-redis (the client
 * Redis itself recommends): one connection for commands and scripts, one subscribed to the
 * prefix's event channel. It is up or down, and says so once each way: a refused or lost
 * connection, or a command slower than the command timeout, takes it down; a connection that
 * answers again brings it back (node-redis reconnects with backoff and resubscribes). Commands
 * never queue while it is down: they fail at once, and callers fall back on the local view.
 * The URL's password never leaves this module (see {@linkcode redisDisplay}).
 */

import { createClient, type RedisClientType } from "redis";
import { createHash } from "node:crypto";

/** Where the link reports going down and coming back. */
export interface LinkLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** A Lua script, sent by its SHA1 (and in full once when Redis does not know it). */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

/**
 * Makes a {@linkcode Script} from its source.
 * @param source the Lua source
 */
export function script(source: string): Script {
  const s = { source, sha: createHash("sha1").update(source).digest("hex") };
  SCRIPTS.push(s);
  return s;
}

/**
 * Every script made: loaded into Redis each time a connection is ready, before the link counts
 * as up. (A script Redis does not know is sent again in full one round trip later, and scripts
 * sent meanwhile on the same connection would run before it.)
 */
const SCRIPTS: Script[] = [];

/** The channel (after the prefix) on which instances push changes to each other. */
export const EVENTS = "events";

/**
 * A hash's fields from an HGETALL reply (an array of names and values, or an object).
 * @param reply the reply
 */
export function hashReply(reply: unknown): [string, string][] {
  const out: [string, string][] = [];
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) {
      out.push([String(reply[i]), String(reply[i + 1])]);
    }
  } else if (reply !== null && typeof reply === "object") {
    for (const [k, v] of Object.entries(reply)) out.push([k, String(v)]);
  }
  return out;
}

/** Options of {@linkcode RedisLink}. */
export interface RedisLinkOptions {
  /** `redis://[user:password@]host:port/db` or `rediss://…` for TLS. */
  url: string;
  /** Prepended to every Redis key and channel. */
  prefix: string;
  logger: LinkLogger;
  /** Longest wait for a command before the link counts as down. @default 500 */
  commandTimeoutMs?: number;
  /** Longest wait for a connection. @default 2000 */
  connectTimeoutMs?: number;
}

/**
 * A Redis URL as it may be shown: the password (and a user name) replaced by `***`.
 * @param url the configured URL
 */
export function redisDisplay(url: string): string {
  try {
    const u = new URL(url);
    if (u.username !== "") u.username = "***";
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable Redis URL)";
  }
}

/** Thrown by {@linkcode RedisLink} when a command cannot be run now. */
export class RedisDown extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisDown";
  }
}

/** Listens to the link going down and coming back. */
export type LinkListener = (up: boolean) => void;

/** The link to the shared Redis. */
export class RedisLink {
  /** Prepended to every key and channel. */
  readonly prefix: string;
  /** The URL without its password. */
  readonly display: string;
  readonly #client: RedisClientType;
  readonly #sub: RedisClientType;
  readonly #logger: LinkLogger;
  readonly #timeoutMs: number;
  readonly #secrets: string[];
  readonly #listeners: LinkListener[] = [];
  readonly #resubscribed: (() => void)[] = [];
  #subReadyOnce = false;
  readonly #channels = new Map<string, (message: string) => void>();
  readonly #subscribed = new Set<string>();
  #up = false;
  /** The link went down because a command was too slow, with the connection still open. */
  #slow = false;
  #checking = false;
  /** Scripts are being loaded into a connection just ready. */
  #loading = false;
  #checkTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #downs = 0;
  /** The connection's last error (a refused connection, a wrong password), redacted. */
  #lastError: string | undefined;

  /** @param options URL, prefix, logger and timeouts */
  constructor(options: RedisLinkOptions) {
    this.prefix = options.prefix;
    this.display = redisDisplay(options.url);
    this.#logger = options.logger;
    this.#timeoutMs = options.commandTimeoutMs ?? 500;
    const secrets: string[] = [];
    try {
      const u = new URL(options.url);
      for (const s of [u.password, decodeURIComponent(u.password)]) {
        if (s.length >= 3) secrets.push(s);
      }
    } catch { /* the config's validation reports it */ }
    this.#secrets = secrets;
    const connectTimeout = options.connectTimeoutMs ?? 2000;
    const client = createClient({
      url: options.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout,
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 5), 1000),
      },
    }) as RedisClientType;
    this.#client = client;
    this.#sub = client.duplicate() as RedisClientType;
    // node-redis reports every failed reconnection: the link logs the change of state once
    client.on("error", (err: unknown) => {
      this.#lastError = this.redact(err instanceof Error ? err.message : String(err));
      this.#down(err);
    });
    client.on("end", () => this.#down(new Error("connection closed")));
    client.on("ready", () => this.#ready());
    this.#sub.on("error", () => {});
    // node-redis subscribes again by itself after a reconnection; the first time is ours. What
    // was published while the subscriber was away is lost: listeners read the state again
    this.#sub.on("ready", () => {
      void this.#subscribeAll();
      if (this.#subReadyOnce) { for (const l of this.#resubscribed) l(); }
      this.#subReadyOnce = true;
    });
  }

  /** Whether commands can be run now. */
  get up(): boolean {
    return this.#up;
  }

  /** How long a command may take before the link counts as down, in ms. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** The connection's last error (redacted), if any. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** How many times the link went down since it started. */
  get downs(): number {
    return this.#downs;
  }

  /**
   * Listens to the link going down (false) and coming back (true).
   * @param listener told on each change
   */
  onChange(listener: LinkListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Listens to the subscriber coming back after it lost its connection: messages published
   * meanwhile were lost.
   * @param listener told each time
   */
  onResubscribed(listener: () => void): void {
    this.#resubscribed.push(listener);
  }

  /**
   * Connects. A Redis that cannot be reached now is not an error: the link keeps trying and
   * comes up when it answers.
   * @param waitMs how long to wait for the first connection @default 2000
   * @returns whether it is up
   */
  async start(waitMs = 2000): Promise<boolean> {
    const up = new Promise<void>((resolve) => this.onChange((u) => u && resolve()));
    const subscribed = new Promise<void>((resolve) => this.#sub.once("ready", () => resolve()));
    void Promise.allSettled([this.#client.connect(), this.#sub.connect()]);
    // up (its scripts loaded) and subscribed, or the wait is over
    await Promise.race([Promise.all([up, subscribed]), delay(waitMs)]);
    if (!this.#up && !this.#closed) {
      this.#logger.warn("shared state: Redis cannot be reached; serving on the local view", {
        redis: this.display,
        error: this.#lastError,
      });
      this.#downs++;
    }
    return this.#up;
  }

  /**
   * Runs a Lua script. A call that timed out may still run in Redis later (node-redis keeps it
   * queued on the connection): scripts that consume must tolerate being counted once more.
   * @param s the script
   * @param keys its KEYS
   * @param args its ARGV
   * @returns its reply
   * @throws {RedisDown} when the link is down, the command fails, or it is too slow
   */
  async run(s: Script, keys: string[], args: string[]): Promise<unknown> {
    // nothing is sent while down (a connection still open after a slow command included)
    if (!this.#up) throw new RedisDown("Redis is down");
    try {
      return await this.#timed(this.#client.evalSha(s.sha, { keys, arguments: args }));
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw this.#failed(err);
    }
    try {
      return await this.#timed(this.#client.eval(s.source, { keys, arguments: args }));
    } catch (err) {
      throw this.#failed(err);
    }
  }

  /**
   * Runs a plain command (`["HGETALL", key]`).
   * @param args the command and its arguments
   * @throws {RedisDown} when the link is down, the command fails, or it is too slow
   */
  async command(args: string[]): Promise<unknown> {
    if (!this.#up) throw new RedisDown("Redis is down");
    try {
      return await this.#timed(this.#client.sendCommand(args));
    } catch (err) {
      throw this.#failed(err);
    }
  }

  /**
   * Subscribes to a channel (kept across reconnections).
   * @param channel the channel's name (without the prefix)
   * @param listener told each message
   */
  async subscribe(channel: string, listener: (message: string) => void): Promise<void> {
    const name = this.prefix + channel;
    this.#channels.set(name, listener);
    await this.#subscribeAll();
  }

  async #subscribeAll(): Promise<void> {
    if (!this.#sub.isReady) return;
    for (const [name, listener] of this.#channels) {
      if (this.#subscribed.has(name)) continue;
      this.#subscribed.add(name);
      await this.#sub.subscribe(name, listener).catch(() => this.#subscribed.delete(name));
    }
  }

  /**
   * Disconnects both connections: politely for up to a second (a Redis that does not answer,
   * frozen or paused, must not hold a shutdown), then at once.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#up = false;
    clearTimeout(this.#checkTimer);
    const polite = Promise.allSettled([close(this.#client), close(this.#sub)]);
    await Promise.race([polite, delay(1000)]);
    for (const c of [this.#client, this.#sub]) {
      if (c.isOpen) {
        try {
          c.destroy();
        } catch { /* gone */ }
      }
    }
  }

  /** Removes the URL's password from a text (an error's message). */
  redact(text: string): string {
    let out = text;
    for (const s of this.#secrets) out = out.split(s).join("***");
    return out;
  }

  #timed<T>(p: Promise<T>): Promise<T> {
    if (!this.#up) {
      p.catch(() => {});
      return Promise.reject(new RedisDown("Redis is down"));
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new RedisDown(`Redis did not answer in ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  #failed(err: unknown): Error {
    if (err instanceof RedisDown) {
      if (this.#up && err.message.startsWith("Redis did not answer")) {
        this.#slow = true;
        this.#down(err);
        this.#check();
      }
      return err;
    }
    const message = this.redact(err instanceof Error ? err.message : String(err));
    // a script's own error (a bug, a wrong type) says nothing about the link
    if (!this.#client.isReady) this.#down(err);
    return new RedisDown(message);
  }

  /** After a too slow command: PINGs until one answers in time. */
  #check(): void {
    if (this.#checking || this.#closed) return;
    this.#checking = true;
    const tick = async () => {
      if (this.#closed) return;
      if (this.#client.isReady) {
        try {
          await Promise.race([
            this.#client.ping(),
            delay(this.#timeoutMs).then(() => Promise.reject(new Error("slow"))),
          ]);
          this.#checking = false;
          this.#slow = false;
          this.#ready();
          return;
        } catch { /* still slow or gone */ }
      }
      this.#checkTimer = setTimeout(tick, 200);
    };
    this.#checkTimer = setTimeout(tick, 100);
  }

  #ready(): void {
    if (this.#closed || this.#slow || this.#up || this.#loading) return;
    // a Redis that restarted knows no script: load them all first
    this.#loading = true;
    const loaded = Promise.all(SCRIPTS.map((s) => this.#client.scriptLoad(s.source)));
    Promise.race([
      loaded,
      delay(this.#timeoutMs).then(() => Promise.reject(new Error("slow"))),
    ]).then(() => {
      this.#loading = false;
      this.#upNow();
    }, () => {
      this.#loading = false;
      // slow or gone again: the PING loop or the next reconnection tries again
      if (!this.#closed && this.#client.isReady) {
        this.#slow = true;
        this.#check();
      }
    });
  }

  #upNow(): void {
    if (this.#closed || this.#slow || this.#up) return;
    const first = this.#downs === 0;
    this.#up = true;
    if (!first) this.#logger.info("shared state: Redis is back", { redis: this.display });
    for (const l of this.#listeners) l(true);
  }

  #down(err: unknown): void {
    if (!this.#up || this.#closed) return;
    this.#up = false;
    this.#downs++;
    this.#logger.warn("shared state: Redis is down; serving on the local view", {
      redis: this.display,
      error: this.redact(err instanceof Error ? err.message : String(err)),
    });
    for (const l of this.#listeners) l(false);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    Deno.unrefTimer(t);
  });
}

async function close(client: RedisClientType): Promise<void> {
  try {
    if (client.isOpen) await client.close();
  } catch {
    client.destroy();
  }
}
