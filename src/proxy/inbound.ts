/**
 * @module
 * What a client's request says about itself, read once before any attempt: its method (only
 * API methods are forwarded), its body (bounded), the model it names, whether a model-limited
 * client key may use it, the `stream_options.include_usage` the proxy adds, and its affinity
 * key. Everything here can refuse the request with a {@linkcode ProxyError}; nothing here
 * reaches an upstream.
 */

import { type AffinitySource, DEFAULT_AFFINITY_ROUTING } from "../config/types.ts";
import { PROMPT_FIELDS, promptPrefix } from "./prompt_prefix.ts";
import { hash53 } from "../routing/hash.ts";
import { ProxyError } from "../errors.ts";
import type { RequestContext } from "../plugin.ts";
import {
  type FieldSpan,
  findTopLevel,
  findTopLevelFields,
  replaceValue,
  stringOf,
} from "./json_scan.ts";
import { limitedModel } from "./model_limit.ts";
import { isJson, readBody } from "./request_body.ts";
import { acceptsStreamOptions, injectIncludeUsage } from "./stream_usage.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** The fields read from a JSON body, in one scan: the prompt's last (the `prefix` source's). */
const BODY_FIELDS = [
  "model",
  "stream",
  "stream_options",
  "prompt_cache_key",
  "user",
  ...PROMPT_FIELDS,
];
const PROMPT_AT = 5;
/** The methods an API uses; OPTIONS is answered here, never forwarded. */
export const ALLOW = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";
/** Longest affinity key kept (longer values are cut: they identify, they are not read). */
const MAX_AFFINITY = 256;

/** A request ready to forward. */
export interface Inbound {
  /** The body as it goes upstream (with `include_usage` when the proxy added it). */
  body: Uint8Array<ArrayBuffer> | null;
  /** The body as text, when it is JSON. */
  text: string | undefined;
  /** The model the body names. */
  model: string | undefined;
  /** Whether the proxy added `stream_options.include_usage` (its usage chunk is stripped). */
  injected: boolean;
  /** The body's `prompt_cache_key` and `user` fields, when they are strings. */
  promptCacheKey: string | undefined;
  user: string | undefined;
  /**
   * The body as the client sent it (before `include_usage`), and where its prompt fields sit in
   * it: what the `prefix` affinity source reads, without scanning the body again.
   */
  prompt?: { text: string; spans: readonly (FieldSpan | undefined)[] } | undefined;
}

/** Options of {@linkcode readInbound}. */
export interface InboundOptions {
  /** Largest body accepted, in bytes. */
  maxBodyBytes: number;
  /** Whether streamed chat completions get `stream_options.include_usage`. */
  injectStreamUsage: boolean;
}

/**
 * Whether a method is forwarded upstream (methods are case-sensitive: `get` is not `GET`).
 * @param method the request's method
 */
export function isForwarded(method: string): boolean {
  return method === "POST" || method === "GET" || method === "DELETE" || method === "PUT" ||
    method === "PATCH" || method === "HEAD";
}

/**
 * The error for a method the proxy does not forward.
 * @param method the request's method
 * @returns a 405 with `Allow`
 */
export function notAllowed(method: string): ProxyError {
  return new ProxyError(
    `Method ${JSON.stringify(method.slice(0, 20))} is not allowed: ${ALLOW} are`,
    {
      status: 405,
      type: "invalid_request_error",
      code: "method_not_allowed",
      headers: { allow: ALLOW },
    },
  );
}

/**
 * The error for a request whose model no pool serves.
 * @param model the model it named, if any
 * @returns 400 `model_required` when it named none, else 404 `model_not_found`
 */
export function unserved(model: string | undefined): ProxyError {
  return model === undefined
    ? new ProxyError("Request names no model and no default pool is configured", {
      status: 400,
      type: "invalid_request_error",
      code: "model_required",
    })
    : new ProxyError(`The model "${model}" does not exist or is not served here`, {
      status: 404,
      type: "invalid_request_error",
      code: "model_not_found",
    });
}

/**
 * The error for a path outside `/v1` when every upstream of the pool takes only `/v1` paths.
 * @param path the request's path
 */
export function notProxied(path: string): ProxyError {
  return new ProxyError(`Path "${path}" is not proxied: only /v1/* requests are forwarded`, {
    status: 404,
    type: "not_found_error",
    code: "not_found",
  });
}

/**
 * A JSON body naming another model (a fallback's): only the `model` value changes.
 * @param text the body
 * @param model the model to name
 * @returns the new text, or undefined when the body has no top-level `model`
 */
export function withModel(text: string, model: string | undefined): string | undefined {
  if (model === undefined) return undefined;
  const span = findTopLevel(text, "model");
  return span === undefined ? undefined : replaceValue(text, span, model);
}

/**
 * Reads a request's body and what it says (one pass over a JSON body finds every field).
 * @param ctx the request
 * @param options the body limit and whether to add `include_usage`
 * @returns the request, ready to forward
 * @throws {ProxyError} 413 for a body over the limit, 400 for a broken one, 403 when a
 *   model-limited client key names another model (or none the proxy can read)
 */
export async function readInbound(ctx: RequestContext, options: InboundOptions): Promise<Inbound> {
  const req = ctx.req;
  let body = await readBody(req, options.maxBodyBytes);
  const contentType = body === null ? null : req.headers.get("content-type");
  let text: string | undefined;
  let fields: (FieldSpan | undefined)[] | undefined;
  if (body !== null && body.length > 0 && isJson(contentType, body)) {
    text = decoder.decode(body);
    fields = findTopLevelFields(text, BODY_FIELDS);
  }
  const model = stringOf(fields?.[0]);
  ctx.log.model = model;
  const client = ctx.client;
  if (client?.models !== undefined) {
    // a limited key's request must name its model so that every upstream reads the same one
    const named = limitedModel(contentType, body, text);
    if (named !== undefined && !client.models.includes(named)) {
      throw new ProxyError(`Client key "${client.name}" may not use model "${named}"`, {
        status: 403,
        type: "permission_error",
        code: "model_not_allowed",
      });
    }
  }
  const prompt = text === undefined || fields === undefined
    ? undefined
    : { text, spans: fields.slice(PROMPT_AT) };
  let injected = false;
  if (
    text !== undefined && fields !== undefined && options.injectStreamUsage &&
    acceptsStreamOptions(ctx.path)
  ) {
    const withUsage = injectIncludeUsage(text, { stream: fields[1], streamOptions: fields[2] });
    if (withUsage !== undefined) {
      text = withUsage;
      body = encoder.encode(withUsage);
      injected = true;
    }
  }
  return {
    body,
    text,
    model,
    injected,
    promptCacheKey: fields?.[3] === undefined ? undefined : stringOf(fields[3]),
    user: fields?.[4] === undefined ? undefined : stringOf(fields[4]),
    prompt,
  };
}

/**
 * A request's affinity key: the first of the sources it carries.
 * @param inbound the request's body fields
 * @param headers its headers
 * @param sources where to look, in order
 * @param prefixChars how many characters of the prompt the `prefix` source hashes
 *   @default 2048
 * @returns the key (at most 256 characters; for `prefix`, `prefix:` and the hash of the
 *   prompt's beginning), or undefined when no source is present
 */
export function affinityKey(
  inbound: Inbound,
  headers: Headers,
  sources: readonly AffinitySource[],
  prefixChars = DEFAULT_AFFINITY_ROUTING.prefixChars,
): string | undefined {
  for (const source of sources) {
    let value: string | null | undefined;
    if (source === "prompt_cache_key") value = inbound.promptCacheKey;
    else if (source === "user") value = inbound.user;
    else if (source === "prefix") {
      const p = inbound.prompt;
      const prefix = p !== undefined
        ? promptPrefix(p.text, prefixChars, p.spans)
        : inbound.text === undefined
        ? undefined
        : promptPrefix(inbound.text, prefixChars);
      if (prefix !== undefined) return `prefix:${hash53(prefix).toString(36)}`;
    } else value = headers.get(source.slice("header:".length));
    if (value !== undefined && value !== null && value !== "") {
      return value.length > MAX_AFFINITY ? value.slice(0, MAX_AFFINITY) : value;
    }
  }
  return undefined;
}
