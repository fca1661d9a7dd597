/**
 * @module
 * The context one request carries through the middleware chain, and the middleware type.
 */

import type { Middleware as GenericMiddleware } from "./compose.ts";
import type { ClientKeyConfig, Config } from "./config/types.ts";
import type { App, Runtime } from "./app.ts";
import type { Usage } from "./proxy/usage.ts";

/** What the request log line says; filled in as the request goes. */
export interface RequestLog {
  model?: string | undefined;
  upstream?: string | undefined;
  /** The masked key that served (or last failed). */
  key?: string | undefined;
  status: number;
  attempts: number;
  stream: boolean;
  /** Response body bytes sent. */
  bytes: number;
  /** How the response ended: `complete`, `client_abort` or the failure class. */
  outcome?: string | undefined;
  error?: string | undefined;
  /** Milliseconds until the first body bytes were ready for the client. */
  ttfbMs?: number | undefined;
  /** Milliseconds spent waiting on upstreams before the response was ready. */
  upstreamMs: number;
  usage?: Usage | undefined;
}

/** One request in flight. */
export interface RequestContext {
  readonly req: Request;
  /** The request's URL (parsed when first read). */
  readonly url: URL;
  /** The URL's path, as `url.pathname` has it (routing reads this, not `url`). */
  readonly path: string;
  /** The URL's query with its `?`, as `url.search` has it ("" when none). */
  readonly search: string;
  readonly app: App;
  /** The configuration in force when the request arrived (stays the same for its life). */
  readonly rt: Runtime;
  /** performance.now() at arrival. */
  readonly startedAt: number;
  readonly remoteAddr: string;
  requestId: string;
  /** The authenticated client key, if client keys are configured. */
  client: ClientKeyConfig | undefined;
  /** The response, once a middleware produced it. */
  res: Response | undefined;
  log: RequestLog;
  /** Resolves when the response body has been sent, cancelled or has failed. */
  done: Promise<void> | undefined;
}

/** A step of the request chain. */
export type Middleware = GenericMiddleware<RequestContext>;

/** A middleware plugin: builds its middleware once per configuration. */
export interface MiddlewarePlugin {
  readonly kind: "middleware";
  readonly name: string;
  readonly description?: string;
  /**
   * Builds the middleware for one configuration (again on every reload).
   * @param config the configuration in force
   * @param app the application (logger, board, metrics, clock)
   * @returns the middleware, or undefined when it has nothing to do under this configuration
   *   (it then stays out of the chain, and requests skip it entirely)
   */
  create(config: Config, app: App): Middleware | undefined;
}
