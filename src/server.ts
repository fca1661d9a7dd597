/**
 * @module
 * The HTTP server: `Deno.serve` hands each request, with a fresh context, to the request chain
 * of the runtime in force when it arrived. Tracks requests until their response is fully sent,
 * so shutdown can drain them, then cut what is left with an honest error. During the drain every
 * answer says it is its connection's last (`Connection: close`), so keep-alive clients never
 * send a request on a connection the server is about to close.
 */

import type { App } from "./app.ts";
import type { RequestContext, RequestLog } from "./plugin.ts";
import type { ClientKeyConfig } from "./config/types.ts";
import type { Runtime } from "./runtime.ts";
import { StreamInterruptedError } from "./proxy/relay.ts";
import { errorResponse, shuttingDown } from "./errors.ts";

/** Options of {@linkcode startServer}. */
export interface ServerOptions {
  /** @default "127.0.0.1" */
  hostname?: string;
  /** @default 8080; 0 takes a free port */
  port?: number;
  /**
   * After the drain time, how long cut responses get to deliver their error and close.
   * @default 1000
   */
  cutGraceMs?: number;
}

/** How a shutdown went. */
export interface ShutdownReport {
  /** Every request finished within the drain time. */
  drained: boolean;
  /** Requests still open when the drain time ran out (they got an error). */
  cut: number;
}

/** A running server. */
export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** The port listened on (the one taken when 0 was asked for). */
  readonly port: number;
  /** Requests whose response has not been fully sent yet (streams included). */
  inFlight(): number;
  /**
   * Stops accepting connections, lets requests in flight finish for up to `drainMs`, then cuts
   * the rest: streams get an error event, requests still waiting for an upstream get a 503.
   * From the start, every answer carries `Connection: close` and each connection closes after
   * its answer in flight (idle keep-alive connections close at once).
   * Calling it again returns the same promise.
   * @param drainMs the longest wait for requests in flight
   * @returns when every request has ended, or the cut responses had `cutGraceMs` to end
   */
  shutdown(drainMs: number): Promise<ShutdownReport>;
  /** Ends the drain now (e.g. on a second Ctrl-C): cuts whatever is still open. */
  cutNow(): void;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/** Callbacks of {@linkcode HandlerOptions.track}. */
export interface RequestTracker {
  start(ctx: RequestContext): void;
  end(ctx: RequestContext): void;
}

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  /**
   * Sees every request start, and end once its response is ready (a stream: once it has been
   * fully sent, cancelled or has failed). Plain callbacks: no promise per request.
   */
  track?: RequestTracker;
  /**
   * Aborted when the drain time is over: requests still waiting for an upstream get a 503
   * (`shutting_down`) at once, and so does every request that arrives later. Implies `drain`.
   */
  cut?: AbortSignal;
  /**
   * Aborted when the drain begins: from then on every answer carries `Connection: close`, so a
   * keep-alive client opens a new connection for its next request rather than send it on one
   * the server closes after this answer. Until then no header is added.
   */
  drain?: AbortSignal;
}

/**
 * Marks an answer as the last on its connection. `Deno.serve` does not close a connection for
 * this header (it sends it and keeps serving): the server's graceful shutdown does the closing,
 * the header tells the client not to send anything more on it.
 * @param res the answer
 * @returns the same answer, or a copy when its headers are immutable (a fetched response)
 */
export function lastOnConnection(res: Response): Response {
  try {
    res.headers.set("connection", "close");
    return res;
  } catch {
    const headers = new Headers(res.headers);
    headers.set("connection", "close");
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  }
}

/** A path `new URL` would leave as it is: segments of letters, digits, `_` and `-`, no query. */
const PLAIN_PATH = /^(?:\/[\w-]+)*\/?$/;

/**
 * The context of a request that came through `Deno.serve`. The client's address is read from
 * the connection only when a step asks for it (most requests never do, and reading it is an
 * op call).
 */
class ServeContext implements RequestContext {
  readonly req: Request;
  readonly path: string;
  readonly search: string;
  /** The runtime in force when the request arrived (its chain serves the request). */
  readonly rt: Runtime;
  readonly startedAt: number;
  requestId: string;
  client: ClientKeyConfig | undefined = undefined;
  res: Response | undefined = undefined;
  log: RequestLog = { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 };
  done: Promise<void> | undefined = undefined;
  #info: Deno.ServeHandlerInfo | undefined;
  #remoteAddr = "";
  #url: URL | undefined;

  constructor(req: Request, info: Deno.ServeHandlerInfo, app: App) {
    this.req = req;
    // a plain path without a query (most API calls) is read as it is; anything else (dots,
    // escapes, a query) goes through the URL parser, which normalizes it
    const raw = req.url;
    const at = raw.indexOf("/", raw.indexOf("//") + 2);
    const path = raw.slice(at);
    if (at >= 0 && PLAIN_PATH.test(path)) {
      this.path = path;
      this.search = "";
    } else {
      this.path = this.url.pathname;
      this.search = this.url.search;
    }
    this.rt = app.rt;
    this.startedAt = app.clock.mono();
    this.requestId = crypto.randomUUID();
    this.#info = info;
  }

  get url(): URL {
    return this.#url ??= new URL(this.req.url);
  }

  get remoteAddr(): string {
    if (this.#info !== undefined) {
      this.#remoteAddr = (this.#info.remoteAddr as Deno.NetAddr).hostname ?? "";
      this.#info = undefined;
    }
    return this.#remoteAddr;
  }
}

/**
 * Builds the request handler (also usable without a socket, in tests).
 * @param app the application
 * @param options the request tracker and the cut signal
 * @returns a `Deno.serve` handler
 */
export function createHandler(app: App, options: HandlerOptions = {}): Deno.ServeHandler {
  const { track, cut, drain } = options;
  // plain booleans set by the signals: each request reads one, no getter and no allocation
  let cutting = cut?.aborted === true;
  let draining = cutting || drain?.aborted === true;
  drain?.addEventListener("abort", () => draining = true, { once: true });
  cut?.addEventListener("abort", () => {
    cutting = draining = true;
    // attempts still waiting for an upstream are cut by the app (their clients get a 503)
    app.cutAll();
  }, { once: true });
  return function handle(req, info): Promise<Response> {
    if (cutting) {
      return Promise.resolve(lastOnConnection(errorResponse(shuttingDown(), crypto.randomUUID())));
    }
    const ctx = new ServeContext(req, info, app);
    track?.start(ctx);
    return run(ctx);
  };
  /** Runs the chain; a plain async function, no closures per request. */
  async function run(ctx: ServeContext): Promise<Response> {
    let res: Response;
    try {
      await ctx.rt.chain(ctx);
      res = ctx.res ?? errorResponse(new Error("no response"), ctx.requestId);
    } catch (err) {
      res = errorResponse(err, ctx.requestId);
    }
    if (track !== undefined) {
      if (ctx.done === undefined) track.end(ctx);
      else ctx.done.then(() => track.end(ctx), () => track.end(ctx));
    }
    // read when the answer is handed over: a stream that starts during the drain is marked too
    return draining ? lastOnConnection(res) : res;
  }
}

/**
 * Starts serving.
 * @param app the application
 * @param options address, port and the grace given to cut responses
 * @returns the running server, once it accepts connections
 * @throws {Error} when the address cannot be bound (e.g. `AddrInUse`)
 */
export function startServer(app: App, options: ServerOptions = {}): Promise<RunningServer> {
  // a count, not a set of contexts: holding every context in a Set measurably slows each
  // request (about 10 µs in the benchmark, from the garbage collector), and drain needs only
  // the number
  let open = 0;
  const cut = new AbortController();
  const draining = new AbortController();
  const handler = createHandler(app, {
    cut: cut.signal,
    drain: draining.signal,
    track: { start: () => open++, end: () => open-- },
  });
  const cutGraceMs = options.cutGraceMs ?? 1000;
  let forceCut: (() => void) | undefined;
  let stopping: Promise<ShutdownReport> | undefined;
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: options.hostname ?? "127.0.0.1",
        port: options.port ?? 8080,
        onListen() {},
        onError(err) {
          // a relayed stream we ended on purpose is not logged again: the client got an error
          // event, the log a line
          if (!(err instanceof StreamInterruptedError)) {
            app.logger.error("unhandled error in request handler", {
              error: app.logger.redact(err instanceof Error ? err.message : String(err)),
            });
          }
          const res = errorResponse(err);
          return draining.signal.aborted ? lastOnConnection(res) : res;
        },
      }, handler);
    } catch (err) {
      reject(err);
      return;
    }
    const finished = server.finished.catch(() => {});
    const addr = server.addr;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    async function drain(drainMs: number): Promise<ShutdownReport> {
      // first the header, then the closing, in the same tick: Deno.serve's graceful shutdown
      // closes idle connections now and each busy one after its answer, but says so in no header
      draining.abort();
      const graceful = server.shutdown().catch(() => {});
      let forced = false;
      const over = await raceTimer(graceful, drainMs, (force) =>
        forceCut = () => {
          forced = true;
          force();
        });
      if (!over) return { drained: true, cut: 0 };
      const left = open;
      app.logger.warn(
        forced
          ? "drain ended early (second stop signal): cutting the requests still open"
          : "drain time over: cutting the requests still open",
        { open: left },
      );
      cut.abort();
      app.cutAll();
      await raceTimer(finished, cutGraceMs);
      return { drained: false, cut: left };
    }
    resolve({
      url: `http://${host}:${addr.port}`,
      port: addr.port,
      inFlight: () => open,
      shutdown(drainMs: number) {
        stopping ??= drain(drainMs);
        return stopping;
      },
      cutNow() {
        forceCut?.();
      },
      finished,
    });
  });
}

/**
 * Waits for a promise or a timer, whichever comes first.
 * @param p the promise
 * @param ms the timer
 * @param expose receives a function that ends the wait early, as if the timer fired
 * @returns true when the timer fired (or the wait was ended early), false when `p` settled first
 */
function raceTimer(
  p: Promise<unknown>,
  ms: number,
  expose?: (force: () => void) => void,
): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(true), Math.max(0, ms));
    expose?.(() => {
      clearTimeout(timer);
      resolve(true);
    });
    p.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
