/**
 * @module
 * The errors of the upstream HTTP/1.1 client. Their messages say what went wrong in our own
 * words: they never quote bytes the upstream sent (a header cut in the middle of a key would
 * slip past masking) and never name the upstream's URL (callers name the upstream by its
 * configured name).
 */

/** The answer broke the protocol, or the connection failed before it was complete. */
export class UpstreamProtocolError extends TypeError {
  /** @param message what went wrong */
  constructor(message: string) {
    super(message);
    this.name = "UpstreamProtocolError";
  }
}

/**
 * A reused keep-alive connection failed (closed, reset, or refused the write) before any byte
 * of the answer arrived: the upstream had most likely closed it while idle. The client never
 * sends the request again by itself; whether to retry (on a fresh connection) is the caller's
 * decision, and a retry is an attempt like any other.
 */
export class StaleConnectionError extends UpstreamProtocolError {
  /** @param message what went wrong */
  constructor(message: string) {
    super(message);
    this.name = "StaleConnectionError";
  }
}

/** No connection to the upstream could be opened (refused, unreachable, TLS refused). */
export class ConnectError extends UpstreamProtocolError {
  /** @param message what went wrong */
  constructor(message: string) {
    super(message);
    this.name = "ConnectError";
  }
}

/** No connection within the connect limit (`connectTimeoutMs`). */
export class ConnectTimeoutError extends ConnectError {
  /** @param message what went wrong */
  constructor(message: string) {
    super(message);
    this.name = "ConnectTimeoutError";
  }
}

/**
 * Describes a transport failure without quoting anything from it that could carry a URL or
 * upstream bytes: the error's name or OS code only.
 * @param err what was thrown by a read, write or connect
 * @returns a short description, e.g. `ConnectionReset`
 */
export function failureName(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string" && /^[A-Z_]{2,24}$/.test(code)) return code;
    if (err.name && err.name !== "Error" && err.name !== "TypeError") return err.name;
  }
  return "connection error";
}
