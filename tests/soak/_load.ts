/**
 * @module
 * The soak's clients: concurrent loops that send chat completions (plain and streamed) with
 * `fetch` to the proxy, each request carrying a unique marker in its user message (and as its
 * `x-request-id`), and classify how each one ended: a success carrying its own marker, an
 * honest error (a status with an OpenAI-style error body, or a stream the client saw break),
 * or a lost request (anything else), a hang past the bound, or a crossing (someone else's
 * marker). Bounded by time and by count; pauses now and then longer than the upstreams' idle
 * keep-alive time, alone and all clients together.
 */

import type { Tokens } from "./_faulty_upstream.ts";

/** How one request ended. */
export type Outcome =
  | "ok_json"
  | "ok_stream"
  | "error_status"
  | "stream_error"
  | "lost"
  | "hang"
  | "crossing";

/** Every {@link Outcome}. */
export const OUTCOMES: readonly Outcome[] = [
  "ok_json",
  "ok_stream",
  "error_status",
  "stream_error",
  "lost",
  "hang",
  "crossing",
];

/** What one request got. */
export interface RequestResult {
  marker: string;
  stream: boolean;
  outcome: Outcome;
  /** HTTP status (0 when none came). */
  status: number;
  /** Why a request is lost or crossed, or the error code of an honest error. */
  detail: string;
  /** Milliseconds from sending to the end of the body. */
  ms: number;
  /** Usage the client received (JSON answer or the stream's usage chunk). */
  tokens: Tokens | undefined;
  /** The upstream that answered (`x-llm-balance-upstream`), if said. */
  upstream: string;
  /** The message of an honest error (the error body's, or the stream's error event's), or "". */
  message: string;
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** The proxy's base URL. */
  url: string;
  /** Concurrent client loops. */
  concurrency: number;
  /** Seconds after which no new request starts. */
  seconds: number;
  /** Requests after which no new request starts. */
  maxRequests: number;
  /** Seeded random source. */
  random: () => number;
  /** A request not finished after this many ms is a hang (and is aborted). */
  boundMs: number;
  /** Longest idle keep-alive time of the upstreams, in ms: pauses last longer. */
  idleMs: number;
  /** Share of streamed requests. @default 0.4 */
  streamShare?: number;
  /** Chance of a pause before a request, per request. @default 0.03 */
  pauseChance?: number;
  /** Seconds between two pauses of every client at once (0: none). @default 10 */
  lullEvery?: number;
  /** Stops the load early. */
  signal?: AbortSignal | undefined;
  /** Called after each request. */
  onResult?: (r: RequestResult) => void;
  /** Holds the clients between two requests while it is closed. */
  gate?: Gate | undefined;
}

/**
 * Holds the clients between two requests: closed, no client starts a request until it opens,
 * and {@link Gate.idle} tells when none is in one (every request sent has its answer).
 */
export class Gate {
  #opened: PromiseWithResolvers<void> | undefined;
  #busy = 0;
  #idle: (() => void)[] = [];

  /** Clients in a request now. */
  get busy(): number {
    return this.#busy;
  }

  /** Whether clients are held. */
  get closed(): boolean {
    return this.#opened !== undefined;
  }

  /** Holds every client before its next request. */
  close(): void {
    this.#opened ??= Promise.withResolvers<void>();
  }

  /** Lets the clients go on. */
  open(): void {
    this.#opened?.resolve();
    this.#opened = undefined;
  }

  /**
   * Waits until no client is in a request (after {@link Gate.close}: until every one is held).
   * @param ms the longest wait
   * @returns whether none is
   */
  async idle(ms: number): Promise<boolean> {
    if (this.#busy === 0) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.#idle.push(() => resolve(true))),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms)),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** A client waits here before each request (not past `signal`). */
  async pass(signal?: AbortSignal): Promise<void> {
    while (this.#opened !== undefined && !(signal?.aborted ?? false)) {
      const opened = this.#opened.promise;
      if (signal === undefined) await opened;
      else {
        await new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => resolve(), { once: true });
          void opened.then(resolve);
        });
      }
    }
  }

  /** A client starts a request. */
  enter(): void {
    this.#busy++;
  }

  /** A client has its answer. */
  leave(): void {
    if (--this.#busy > 0) return;
    const waiting = this.#idle;
    this.#idle = [];
    for (const wake of waiting) wake();
  }
}

/** Matches every soak marker in a text. */
const MARKERS = /SOAK-c\d+-\d+-[0-9a-f]{8}/g;

function hex8(random: () => number): string {
  return Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, "0");
}

/**
 * Waits `ms`, or less when the signal aborts.
 * @param ms milliseconds
 * @param signal ends the wait early
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** The markers in `text` other than `own`. */
function foreignMarkers(text: string, own: string): string[] {
  const found = new Set(text.match(MARKERS) ?? []);
  found.delete(own);
  return [...found];
}

function readTokens(u: unknown): Tokens | undefined {
  if (typeof u !== "object" || u === null) return undefined;
  const o = u as Record<string, unknown>;
  const n = (v: unknown) => typeof v === "number" ? v : 0;
  return {
    prompt: n(o.prompt_tokens),
    completion: n(o.completion_tokens),
    total: n(o.total_tokens),
  };
}

/** Whether a body is an OpenAI-style error: `{"error": {"message": ...}}`. */
function isErrorBody(text: string): { code: string; message: string } | undefined {
  try {
    const v = JSON.parse(text) as { error?: { message?: unknown; code?: unknown } };
    if (typeof v.error === "object" && v.error !== null && typeof v.error.message === "string") {
      return { code: String(v.error.code ?? ""), message: v.error.message };
    }
  } catch {
    // not JSON
  }
  return undefined;
}

/** What the SSE parser found in a stream. */
interface StreamView {
  content: string;
  done: boolean;
  errorEvent: boolean;
  /** The error event's data, when there was one. */
  error: string;
  tokens: Tokens | undefined;
}

function parseStream(text: string): StreamView {
  const view: StreamView = {
    content: "",
    done: false,
    errorEvent: false,
    error: "",
    tokens: undefined,
  };
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event = "";
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        view.done = true;
        continue;
      }
      try {
        const ev = JSON.parse(data) as {
          error?: unknown;
          usage?: unknown;
          choices?: { delta?: { content?: unknown } }[];
        };
        if (event === "error" || ev.error !== undefined) {
          view.errorEvent = true;
          view.error ||= data.slice(0, 500);
        }
        for (const c of ev.choices ?? []) {
          if (typeof c.delta?.content === "string") view.content += c.delta.content;
        }
        view.tokens = readTokens(ev.usage) ?? view.tokens;
      } catch {
        // a partial line cut by a broken stream
      }
    }
  }
  return view;
}

/**
 * Sends one request and classifies how it ended.
 * @param url the proxy's base URL
 * @param r the marker, whether to stream, the padding, the hang bound, the `user` (an affinity
 *   value) if any
 * @returns the result; never throws
 */
export async function sendOne(
  url: string,
  r: { marker: string; stream: boolean; pad: string; boundMs: number; user?: string },
): Promise<RequestResult> {
  const started = performance.now();
  const result: RequestResult = {
    marker: r.marker,
    stream: r.stream,
    outcome: "lost",
    status: 0,
    detail: "",
    ms: 0,
    tokens: undefined,
    upstream: "",
    message: "",
  };
  const end = (outcome: Outcome, detail: string) => {
    result.outcome = outcome;
    result.detail = detail;
    result.ms = Math.round(performance.now() - started);
    return result;
  };
  const body = JSON.stringify({
    model: "soak-model",
    stream: r.stream,
    ...(r.user === undefined ? {} : { user: r.user }),
    messages: [
      { role: "system", content: r.pad },
      { role: "user", content: `Echo ${r.marker}` },
    ],
  });
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error("hang")), r.boundMs);
  let res: Response;
  try {
    res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-request-id": r.marker,
        "x-soak-marker": r.marker,
      },
      body,
      signal: abort.signal,
    });
  } catch (err) {
    clearTimeout(timer);
    if (abort.signal.aborted) return end("hang", `no response head within ${r.boundMs} ms`);
    return end("lost", `fetch failed before a response: ${String(err)}`);
  }
  result.status = res.status;
  result.upstream = res.headers.get("x-llm-balance-upstream") ?? "";
  let text = "";
  let broken: unknown;
  try {
    if (res.body !== null) {
      const decoder = new TextDecoder();
      for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true });
    }
  } catch (err) {
    broken = err;
  } finally {
    clearTimeout(timer);
  }
  const foreign = foreignMarkers(text, r.marker);
  if (foreign.length > 0) {
    return end("crossing", `got ${foreign.join(", ")} (HTTP ${res.status}, ${text.length} bytes)`);
  }
  if (abort.signal.aborted) return end("hang", `body not finished within ${r.boundMs} ms`);
  if (res.status < 200 || res.status >= 300) {
    if (broken !== undefined) return end("lost", `HTTP ${res.status} body broke: ${broken}`);
    const err = isErrorBody(text);
    if (err === undefined) {
      return end(
        "lost",
        `HTTP ${res.status} without an OpenAI-style error body: ${text.slice(0, 120)}`,
      );
    }
    result.message = err.message.slice(0, 500);
    return end("error_status", `${res.status} ${err.code}`);
  }
  if (!r.stream) {
    if (broken !== undefined) return end("lost", `JSON body broke: ${broken}`);
    try {
      const v = JSON.parse(text) as {
        choices?: { message?: { content?: unknown } }[];
        usage?: unknown;
      };
      result.tokens = readTokens(v.usage);
      const content = v.choices?.[0]?.message?.content;
      if (typeof content === "string" && content.includes(r.marker)) return end("ok_json", "");
      return end("lost", `2xx without its marker: ${text.slice(0, 120)}`);
    } catch {
      return end("lost", `2xx body is not JSON: ${text.slice(0, 120)}`);
    }
  }
  const view = parseStream(text);
  result.tokens = view.tokens;
  if (view.errorEvent || broken !== undefined) {
    result.message = view.error;
    const how = [view.errorEvent ? "error event" : "", broken !== undefined ? "broken" : ""];
    return end("stream_error", how.filter((s) => s !== "").join(" + "));
  }
  if (!view.done) return end("lost", "stream ended cleanly without [DONE] or an error event");
  if (!view.content.includes(r.marker)) {
    return end("lost", `stream without its marker: ${view.content.slice(0, 120)}`);
  }
  return end("ok_stream", "");
}

/**
 * Runs the client loops to the end of their time or count.
 * @param o the proxy, concurrency, bounds and pacing
 * @returns every request's result, in completion order
 */
export async function runLoad(o: LoadOptions): Promise<RequestResult[]> {
  const results: RequestResult[] = [];
  const startedAt = performance.now();
  const endAt = startedAt + o.seconds * 1000;
  const streamShare = o.streamShare ?? 0.4;
  const pauseChance = o.pauseChance ?? 0.03;
  const lullMs = o.idleMs + 600;
  const lullEvery = (o.lullEvery ?? 10) * 1000;
  let issued = 0;
  const more = () =>
    issued < o.maxRequests && performance.now() < endAt && !(o.signal?.aborted ?? false);
  // every client pauses at once now and then: every pooled upstream connection goes idle
  const lullAt = (t: number) => {
    if (lullEvery <= 0) return 0;
    const phase = (t - startedAt) % lullEvery;
    return t - startedAt > lullMs && phase < lullMs ? lullMs - phase : 0;
  };
  const loop = async (client: number) => {
    for (let seq = 1; more(); seq++) {
      await sleep(lullAt(performance.now()), o.signal);
      if (o.random() < pauseChance) {
        await sleep(o.idleMs + 200 + o.random() * 1000, o.signal);
      }
      await o.gate?.pass(o.signal);
      if (!more()) break;
      issued++;
      const marker = `SOAK-c${client}-${seq}-${hex8(o.random)}`;
      const pad = "x".repeat(2048 + Math.floor(o.random() * 2048));
      const stream = o.random() < streamShare;
      o.gate?.enter();
      let r: RequestResult;
      try {
        // a few conversations per client, each pinned to a key by the pool's affinity
        const user = `soak-user-c${client}-${seq % 4}`;
        r = await sendOne(o.url, { marker, stream, pad, boundMs: o.boundMs, user });
      } finally {
        o.gate?.leave();
      }
      results.push(r);
      o.onResult?.(r);
      // a polite client waits a little after "slow down" or "nothing can serve"
      if (r.status === 429 || r.status === 503) await sleep(100 + o.random() * 200, o.signal);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, i) => loop(i + 1)));
  return results;
}
