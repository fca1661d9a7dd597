/**
 * @module
 * Opening upstream connections for the HTTP/1.1 client: TCP with Nagle off, or TLS with ALPN
 * `http/1.1` and the handshake completed inside the dial (so a certificate or protocol refusal
 * is a connect failure, not a failure of the first write), cut by the caller's signal or a
 * connect limit.
 */

import { ConnectTimeoutError } from "./errors.ts";

/** Where to connect. */
export interface DialTarget {
  hostname: string;
  port: number;
  tls: boolean;
}

/** Opens a connection (TLS already negotiated for `tls`). */
export type Dial = (to: DialTarget) => Promise<Deno.Conn>;

/**
 * The default dialer.
 * @param caCerts extra root certificates (PEM) for TLS upstreams
 * @returns a dialer using `Deno.connect` / `Deno.connectTls`
 */
export function defaultDial(caCerts?: string[]): Dial {
  return async (to) => {
    if (!to.tls) {
      const conn = await Deno.connect({ hostname: to.hostname, port: to.port });
      conn.setNoDelay(true);
      return conn;
    }
    const tls = await Deno.connectTls({
      hostname: to.hostname,
      port: to.port,
      alpnProtocols: ["http/1.1"],
      ...(caCerts ? { caCerts } : {}),
    });
    try {
      await tls.handshake();
    } catch (err) {
      try {
        tls.close();
      } catch {
        // already closed
      }
      throw err;
    }
    return tls;
  };
}

/**
 * Dials with a limit and the caller's signal; a connection that opens after either fired is
 * closed.
 * @param dial the dialer
 * @param to where
 * @param limits `signal` (its reason is thrown) and `timeoutMs` (0: none)
 * @returns the connection
 * @throws {ConnectTimeoutError} when the limit fires first
 */
export async function dialWithin(
  dial: Dial,
  to: DialTarget,
  limits: { signal: AbortSignal | undefined; timeoutMs: number },
): Promise<Deno.Conn> {
  const { signal, timeoutMs } = limits;
  signal?.throwIfAborted();
  const connect = dial(to);
  if (signal === undefined && !(timeoutMs > 0)) return await connect;
  let onAbort: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cut = new Promise<never>((_, reject) => {
    if (signal !== undefined) {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    }
    if (timeoutMs > 0) {
      timer = setTimeout(
        () =>
          reject(new ConnectTimeoutError(`connect timeout: no connection within ${timeoutMs} ms`)),
        timeoutMs,
      );
    }
  });
  try {
    return await Promise.race([connect, cut]);
  } catch (err) {
    connect.then((late) => {
      try {
        late.close();
      } catch {
        // already closed
      }
    }, () => {});
    throw err;
  } finally {
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
    clearTimeout(timer);
  }
}
