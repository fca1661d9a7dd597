/**
 * @module
 * The HTTP server: `Deno.serve` hands each request, with a fresh context, to the request chain
 * of the runtime in force. Tracks open responses so shutdown can drain them.
 */

import type { App } from "./app.ts";
import type { RequestContext } from "./context.ts";
import { errorResponse } from "./errors.ts";

/** Options of {@linkcode startServer}. */
export interface ServerOptions {
  /** @default "127.0.0.1" */
  hostname?: string;
  /** @default 8080; 0 takes a free port */
  port?: number;
}

/** A running server. */
export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly port: number;
  /** Requests whose response has not finished yet (streams included). */
  inFlight(): number;
  /**
   * Stops accepting, waits for in-flight responses up to `drainMs`, then cuts the rest.
   * @param drainMs the longest wait
   */
  shutdown(drainMs: number): Promise<void>;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
}

/**
 * Builds the request handler (also usable without a socket, in tests).
 * @param app the application
 * @param track called with each request's completion promise
 * @returns a `Deno.serve` handler
 */
export function createHandler(
  app: App,
  track?: (done: Promise<void>, ctx: RequestContext) => void,
): Deno.ServeHandler {
  return function handle(req, info): Promise<Response> {
    const rt = app.rt;
    const ctx: RequestContext = {
      req,
      url: new URL(req.url),
      app,
      rt,
      startedAt: performance.now(),
      remoteAddr: (info.remoteAddr as Deno.NetAddr).hostname ?? "",
      requestId: crypto.randomUUID(),
      client: undefined,
      res: undefined,
      log: { status: 0, attempts: 0, stream: false, bytes: 0, upstreamMs: 0 },
      done: undefined,
    };
    return rt.chain(ctx).then(
      () => {
        if (track !== undefined) track(ctx.done ?? Promise.resolve(), ctx);
        return ctx.res ?? errorResponse(new Error("no response"), ctx.requestId);
      },
      (err) => errorResponse(err, ctx.requestId),
    );
  };
}

/**
 * Starts serving.
 * @param app the application
 * @param options address and port
 * @returns the running server, once it accepts connections
 */
export function startServer(app: App, options: ServerOptions = {}): Promise<RunningServer> {
  const open = new Set<Promise<void>>();
  const handler = createHandler(app, (done) => {
    open.add(done);
    done.finally(() => open.delete(done));
  });
  const abort = new AbortController();
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: options.hostname ?? "127.0.0.1",
        port: options.port ?? 8080,
        signal: abort.signal,
        onListen() {},
        onError(err) {
          app.logger.error("unhandled error in request handler", {
            error: app.logger.redact(err instanceof Error ? err.message : String(err)),
          });
          return errorResponse(err);
        },
      }, handler);
    } catch (err) {
      reject(err);
      return;
    }
    const addr = server.addr;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    resolve({
      url: `http://${host}:${addr.port}`,
      port: addr.port,
      inFlight: () => open.size,
      async shutdown(drainMs: number) {
        const graceful = server.shutdown();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = await Promise.race([
          graceful.then(() => false),
          new Promise<boolean>((r) => timer = setTimeout(() => r(true), drainMs)),
        ]);
        clearTimeout(timer);
        if (timedOut) {
          app.logger.warn("drain timeout: cutting open responses", { open: open.size });
          app.cutAll();
          abort.abort();
          await server.finished.catch(() => {});
        }
      },
      finished: server.finished,
    });
  });
}
