/**
 * @module
 * The upstream HTTP/1.1 client: {@linkcode Http1Client} (`fetch`'s signature over pooled
 * keep-alive connections), its errors, and the policy that leaves some requests to `fetch`.
 * One concern per file: `pool.ts` (idle connections and their lifetimes), `connection.ts`
 * (a socket, its buffer and idle watch), `request_head.ts`, `response_head.ts`, `body.ts`
 * (framing), `dial.ts`, `fallback.ts`, `client.ts`.
 */

export { Http1Client, type Http1Init, type Http1Options } from "./client.ts";
export {
  ConnectError,
  ConnectTimeoutError,
  StaleConnectionError,
  UpstreamProtocolError,
} from "./errors.ts";
export { FetchFallback, fetchPreferred } from "./fallback.ts";
