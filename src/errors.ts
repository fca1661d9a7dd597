/**
 * @module
 * Typed errors and the one place that turns them into OpenAI-style error responses:
 * `{"error": {"message", "type", "code"}}`.
 */

/** OpenAI-style error `type` values used by llm-balance. */
export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "rate_limit_error"
  | "server_error"
  | "upstream_error"
  | "service_unavailable"
  | "timeout_error"
  | "not_found_error";

/** Options of a {@linkcode ProxyError}. */
export interface ProxyErrorOptions {
  /** HTTP status. @default 500 */
  status?: number;
  /** @default "server_error" */
  type?: ErrorType;
  /** Machine-readable code. @default null */
  code?: string;
  /** Extra response headers (e.g. `retry-after`). */
  headers?: Record<string, string>;
  cause?: unknown;
}

/** An error meant for the client: it renders itself as an OpenAI-style error response. */
export class ProxyError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  /**
   * @param message what went wrong, for the client; never holds a secret
   * @param options status, type, code and headers
   */
  constructor(message: string, options: ProxyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ProxyError";
    this.status = options.status ?? 500;
    this.type = options.type ?? "server_error";
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }
}

/**
 * Builds the OpenAI-style error body.
 * @returns `{"error": {"message", "type", "code", "param": null}}` as a JSON string
 */
export function errorBody(message: string, type: ErrorType, code: string | null): string {
  return JSON.stringify({ error: { message, type, code, param: null } });
}

/**
 * Turns any thrown value into a response; unknown errors become a generic 500 whose message
 * reveals nothing internal.
 * @param err what was thrown
 * @param requestId echoed in `x-request-id`
 * @returns the error response
 */
export function errorResponse(err: unknown, requestId?: string): Response {
  const e = err instanceof ProxyError
    ? err
    : new ProxyError("Internal error in llm-balance", { code: "internal_error" });
  const headers = new Headers(e.headers);
  headers.set("content-type", "application/json");
  if (requestId) headers.set("x-request-id", requestId);
  return new Response(errorBody(e.message, e.type, e.code), { status: e.status, headers });
}
