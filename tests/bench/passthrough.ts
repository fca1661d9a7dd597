/**
 * @module
 * The yardstick of `deno task bench`: the least a Deno proxy can do, `Deno.serve` + `fetch`,
 * forwarding every request to one upstream with one key and relaying the answer as it comes.
 * Run as `deno run -A tests/bench/passthrough.ts --upstream http://127.0.0.1:PORT [--port N]`;
 * it prints its base URL alone as the first line of stdout and stops on SIGTERM.
 */

import { parseArgs } from "node:util";

/** Options of {@link startPassthrough}. */
export interface PassthroughOptions {
  /** Origin the requests are forwarded to, e.g. `http://127.0.0.1:41234`; the path is kept. */
  upstream: string;
  /** Sent as `authorization: Bearer <key>` in place of the client's. @default "passthrough-key" */
  key?: string;
  /** Port on 127.0.0.1 (0 = any free port). @default 0 */
  port?: number;
}

/**
 * Starts the pass-through. The request body is buffered (as a proxy that may retry must do),
 * the response body is streamed.
 * @param options see {@link PassthroughOptions}
 * @returns the running server; stop it with `shutdown()`
 */
export function startPassthrough(options: PassthroughOptions): Deno.HttpServer<Deno.NetAddr> {
  const upstream = options.upstream.replace(/\/+$/, "");
  const authorization = `Bearer ${options.key ?? "passthrough-key"}`;
  return Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    onListen: () => {},
  }, async (req) => {
    const url = req.url;
    const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
    const headers = new Headers(req.headers);
    headers.delete("host");
    headers.set("authorization", authorization);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const body = hasBody ? await req.arrayBuffer() : null;
    try {
      return await fetch(upstream + path, { method: req.method, headers, body });
    } catch {
      return new Response('{"error":{"message":"Upstream unreachable","type":"server_error"}}', {
        status: 502,
        headers: { "content-type": "application/json" },
      });
    }
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      upstream: { type: "string" },
      port: { type: "string", default: "0" },
      key: { type: "string", default: "passthrough-key" },
    },
  });
  if (!values.upstream) {
    console.error("Cannot start passthrough: --upstream URL is required");
    Deno.exit(2);
  }
  const server = startPassthrough({
    upstream: values.upstream,
    key: values.key,
    port: Number(values.port),
  });
  console.log(`http://127.0.0.1:${server.addr.port}`);
  const stop = () => {
    server.shutdown().finally(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
}
