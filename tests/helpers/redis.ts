/**
 * @module
 * A real `redis-server` for tests: started on a free loopback port in a temporary folder (never
 * a system service), with nothing saved to disk; it can be killed and started again on the
 * same port. Tests that need it are skipped when `redis-server` is not installed (`.ci/run`
 * installs it).
 */

/** Whether `redis-server` and `redis-cli` can be run here. */
export const hasRedis: boolean = ["redis-server", "redis-cli"].every((tool) => {
  try {
    return new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
});

/** A free TCP port on 127.0.0.1 (free when asked; the server started on it binds it soon after). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * The arguments of a `redis-server` for tests: on 127.0.0.1 only, in the foreground, nothing
 * saved to disk, warnings only.
 * @param port its port
 * @param dir its working folder
 * @returns the arguments (add `--requirepass`, `--logfile`, … after them)
 */
export function redisServerArgs(port: number, dir: string): string[] {
  return [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
  ];
}

/** A random key prefix (`t` and 8 hex digits, then `:`): tests sharing a Redis do not meet. */
export function randomPrefix(): string {
  return `t${crypto.randomUUID().slice(0, 8)}:`;
}

async function answers(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buf = new Uint8Array(64);
      const n = await conn.read(buf);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG");
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

/** A redis-server child process on 127.0.0.1. */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly password: string | undefined;
  #child: Deno.ChildProcess | undefined;

  private constructor(port: number, dir: string, password: string | undefined) {
    this.port = port;
    this.dir = dir;
    this.password = password;
  }

  /**
   * Starts a server on a free port.
   * @param options a password to require
   */
  static async start(options: { password?: string } = {}): Promise<RedisServer> {
    const s = new RedisServer(
      freePort(),
      await Deno.makeTempDir({ prefix: "lb-redis-" }),
      options.password,
    );
    await s.restart();
    return s;
  }

  /** `redis://127.0.0.1:<port>/0`, with the password when there is one. */
  get url(): string {
    const auth = this.password === undefined ? "" : `:${encodeURIComponent(this.password)}@`;
    return `redis://${auth}127.0.0.1:${this.port}/0`;
  }

  /** Whether it runs. */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts it (again) on its port, and waits until it answers. */
  async restart(): Promise<void> {
    if (this.#child !== undefined) return;
    const args = redisServerArgs(this.port, this.dir);
    if (this.password !== undefined) args.push("--requirepass", this.password);
    this.#child = new Deno.Command("redis-server", { args, stdout: "null", stderr: "null" })
      .spawn();
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      if (this.password !== undefined ? await this.#open() : await answers(this.port)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }

  async #open(): Promise<boolean> {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
      conn.close();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Sends a signal to the running server: SIGSTOP freezes it (connections stay open, nothing is
   * answered), SIGCONT thaws it.
   * @param signal the signal
   * @throws {Error} when it does not run
   */
  signal(signal: Deno.Signal): void {
    if (this.#child === undefined) throw new Error("redis-server does not run");
    this.#child.kill(signal);
  }

  /** Kills it at once (SIGKILL): its data is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    this.#child = undefined;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  }

  /**
   * Runs a command with redis-cli against it.
   * @param args the command
   * @returns its output, trimmed
   */
  async cli(...args: string[]): Promise<string> {
    const auth = this.password === undefined ? [] : ["-a", this.password, "--no-auth-warning"];
    const out = await new Deno.Command("redis-cli", {
      args: ["-p", String(this.port), ...auth, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  }

  /** Kills it and removes its folder. */
  async stop(): Promise<void> {
    await this.kill();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Starts a redis-server, runs `fn` with it, and stops it (and removes its folder) whatever
 * happens.
 * @param options a password to require
 * @param fn what to do with it
 * @returns what `fn` returned
 */
export function withRedis<T>(fn: (redis: RedisServer) => Promise<T>): Promise<T>;
export function withRedis<T>(
  options: { password?: string },
  fn: (redis: RedisServer) => Promise<T>,
): Promise<T>;
export async function withRedis<T>(
  a: { password?: string } | ((redis: RedisServer) => Promise<T>),
  b?: (redis: RedisServer) => Promise<T>,
): Promise<T> {
  const [options, fn] = typeof a === "function" ? [{}, a] : [a, b!];
  const redis = await RedisServer.start(options);
  try {
    return await fn(redis);
  } finally {
    await redis.stop();
  }
}
