/**
 * @module
 * The one policy deciding which upstream requests the HTTP/1.1 client leaves to Deno's `fetch`,
 * and the guard around `fetch` that holds its answers to the client's own promises: every
 * request while a proxy is configured (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, any case) or
 * `LLM_BALANCE_HTTP_CLIENT=fetch` asks for it; requests that follow redirects (health probes);
 * bodies that are not bytes or text; URLs with another scheme or credentials; and an origin for
 * a while after a connection to it could not be opened (`Deno.connect` tries only the first
 * address a name resolves to, `fetch` tries them all and speaks HTTP/2). Each switch of an
 * origin is reported once. Through the guard, a 101 or a status outside 100-599 is a clean
 * {@linkcode UpstreamProtocolError}, and no error message carries the request's URL.
 */

import { type Clock, systemClock } from "../../clock.ts";
import { ConnectError, UpstreamProtocolError } from "./errors.ts";

/** Options of {@linkcode FetchFallback}. */
export interface FallbackOptions {
  /** What takes the requests. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Whether every request goes to `fetch`. @default {@linkcode fetchPreferred} */
  always?: boolean;
  /** How long an origin stays with `fetch` after a failed connect. @default 60000 */
  holdMs?: number;
  /** Told when an origin is switched to `fetch` (not again while it stays switched). */
  onSwitch?: (origin: string, reason: string, forMs: number) => void;
  /** The hold is measured on its `mono()`. @default {@linkcode systemClock} */
  clock?: Clock;
}

/**
 * Whether `fetch` should take every request: a proxy is configured in the environment, or
 * `LLM_BALANCE_HTTP_CLIENT=fetch` asks for it.
 * @returns true when `fetch` should take everything
 */
export function fetchPreferred(): boolean {
  try {
    if (Deno.env.get("LLM_BALANCE_HTTP_CLIENT") === "fetch") return true;
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]) {
      if (Deno.env.get(name) || Deno.env.get(name.toLowerCase())) return true;
    }
    return false;
  } catch {
    // no permission to read the environment: a proxy could be set, so let fetch decide
    return true;
  }
}

/** Decides what goes to `fetch`, and sends it there. */
export class FetchFallback {
  /** Whether every request goes to `fetch`. */
  readonly always: boolean;
  readonly #fetch: typeof fetch;
  readonly #holdMs: number;
  readonly #onSwitch: FallbackOptions["onSwitch"];
  readonly #clock: Clock;
  /** Origins switched to `fetch`, and until when (by the clock's `mono()`). */
  readonly #until = new Map<string, number>();

  /** @param options the fetch, the hold time and the switch report */
  constructor(options: FallbackOptions = {}) {
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.always = options.always ?? fetchPreferred();
    this.#holdMs = options.holdMs ?? 60_000;
    this.#onSwitch = options.onSwitch;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Whether a request is `fetch`'s because of what it asks (not where it goes).
   * @param input the request's URL (anything but a string is `fetch`'s)
   * @param init its init
   * @returns true for `fetch`
   */
  takesRequest(input: unknown, init: RequestInit): boolean {
    if (this.always || typeof input !== "string" || init.redirect !== "manual") return true;
    const body = init.body ?? null;
    return body !== null && typeof body !== "string" && !(body instanceof Uint8Array);
  }

  /**
   * Whether an origin is `fetch`'s for now.
   * @param origin the origin's key
   * @returns true while it is switched
   */
  takesOrigin(origin: string): boolean {
    if (this.#until.size === 0) return false;
    const until = this.#until.get(origin);
    if (until === undefined) return false;
    if (until > this.#clock.mono()) return true;
    this.#until.delete(origin);
    return false;
  }

  /**
   * Hands an origin to `fetch` for the hold time, reporting the switch.
   * @param origin the origin's key
   * @param reason why (no upstream bytes in it)
   */
  switchOrigin(origin: string, reason: string): void {
    if (this.takesOrigin(origin)) return;
    this.#until.set(origin, this.#clock.mono() + this.#holdMs);
    this.#onSwitch?.(origin, reason, this.#holdMs);
  }

  /**
   * Sends a request through `fetch`, under the client's rules.
   * @param input the request
   * @param init its init
   * @returns the answer
   * @throws {UpstreamProtocolError} for a 101 or a status outside 100-599
   * @throws {ConnectError} when `fetch` fails (its message without the URL)
   * @throws the signal's reason when it aborted
   */
  async fetch(input: string | URL | Request, init: RequestInit): Promise<Response> {
    let res: Response;
    try {
      res = await this.#fetch(input, init);
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason;
      // Deno's Response refuses statuses outside 200-599 with a RangeError
      if (err instanceof RangeError) {
        throw new UpstreamProtocolError("upstream answered with an invalid status");
      }
      throw new ConnectError(withoutUrl(err));
    }
    if (res.status === 101 || res.status < 100 || res.status > 599) {
      res.body?.cancel().catch(() => {});
      throw new UpstreamProtocolError(`upstream answered with an invalid status (${res.status})`);
    }
    return res;
  }
}

/** A fetch error's message with any URL taken out. */
function withoutUrl(err: unknown): string {
  // Deno's fetch says "fetch failed" and keeps the reason (with the URL) in its cause
  let inner = err;
  for (let i = 0; i < 4 && inner instanceof Error && inner.cause instanceof Error; i++) {
    inner = inner.cause;
  }
  const text = inner instanceof Error ? inner.message : String(inner);
  const cleaned = text
    .replace(/ for url \(.*?\)(?=: |$)/gi, "")
    .replace(/[a-z][a-z0-9+.-]*:\/\/[^\s)"']+/gi, "(upstream)")
    .replace(/\s+/g, " ")
    .trim();
  return cleaned === "" ? "upstream request failed" : cleaned.slice(0, 200);
}
