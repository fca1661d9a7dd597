/**
 * @module
 * A mock of ModelScope's API-Inference on 127.0.0.1, for end-to-end budget tests: daily call
 * limits per key (the account, all models together) and per model, counted on a "day" of its
 * own that a test rolls (`newDay()`, or by itself from an injected clock); chat completions
 * (plain and streamed, with usage) carrying ModelScope's four rate-limit headers on every answer
 * (limit and remaining after counting the call); a 429 with ModelScope's body and headers
 * showing 0 left once a limit is reached; on request, throttling (429 with calls left), 200s
 * with `"choices": null` and zero usage, and latency; 401 for a token it does not know on real
 * calls, while `GET /v1/models` answers 200 to any token. Every request is recorded.
 */

/** Options of {@linkcode startModelScopeMock}. */
export interface ModelScopeMockOptions {
  /** Tokens chat completions accept; any other gets a 401. @default any token */
  keys?: readonly string[];
  /** Calls a key (account) may make a day, all models together. @default 2000 */
  accountLimit?: number;
  /** `accountLimit` for some keys. @default none */
  accountLimits?: Readonly<Record<string, number>>;
  /** Calls a key may make a day for one model. @default 200 */
  modelLimit?: number;
  /** `modelLimit` for some models. @default none */
  modelLimits?: Readonly<Record<string, number>>;
  /** Whether answers carry the four `modelscope-ratelimit-*` headers. @default true */
  headers?: boolean;
  /** Delay before a chat completion is answered, in ms (also settable later). @default 0 */
  latencyMs?: number;
  /** The time recorded with each request, epoch ms. @default Date.now */
  now?: () => number;
  /**
   * Tells the day a time falls in; when given, the mock starts a new day by itself when the
   * day of `now()` changes (as ModelScope resets at midnight in Beijing). @default none
   */
  dayOf?: (epochMs: number) => number;
}

/** How the mock answered a request. */
export type ModelScopeAnswer =
  | "ok"
  | "empty"
  | "exhausted"
  | "throttled"
  | "unauthorized"
  | "models"
  | "not_found";

/** One request as the mock received it. */
export interface ModelScopeRequest {
  /** 1-based, in arrival order. */
  n: number;
  method: string;
  path: string;
  /** The Bearer token, or "" when none. */
  key: string;
  /** The body's `model`, or "" when none. */
  model: string;
  /** Whether the body asked for a stream. */
  stream: boolean;
  /** The body as text. */
  body: string;
  /** `now()` when it arrived. */
  at: number;
  /** The mock's day when it arrived (0 first, one more per new day). */
  day: number;
  status: number;
  answer: ModelScopeAnswer;
}

/** A running mock. */
export interface ModelScopeMock extends AsyncDisposable {
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  /** `origin + "/v1"`, ModelScope's base URL shape. */
  readonly baseUrl: string;
  /** Every request so far, oldest first. */
  readonly requests: readonly ModelScopeRequest[];
  /** Delay before a chat completion is answered, in ms. */
  latencyMs: number;
  /** The current day (0 first). */
  readonly day: number;
  /**
   * Counts chat completion requests that arrived.
   * @param filter only those of this key and/or model
   */
  arrivals(filter?: { key?: string; model?: string }): number;
  /**
   * Calls counted today.
   * @param key the key
   * @param model one model's count; all models together when left out
   */
  used(key: string, model?: string): number;
  /** The most chat completions of a key ever in flight at once. */
  maxInFlight(key: string): number;
  /** Starts a new day: every count back to 0. */
  newDay(): void;
  /**
   * Uses up a key's calls for today, as other clients of its account would: for one model, or
   * for every model when `model` is left out.
   */
  exhaust(key: string, model?: string): void;
  /** The next `n` chat completions (that a limit does not refuse) get a throttling 429. */
  throttle(n?: number): void;
  /** The next `n` chat completions answer 200 with `"choices": null` and zero usage. */
  emptyChoices(n?: number): void;
  close(): Promise<void>;
}

/** ModelScope's body when a daily limit is reached. */
export const EXHAUSTED_MESSAGE = "Request limit exceeded.";

const HEADER = "modelscope-ratelimit-";
const encoder = new TextEncoder();

/**
 * Starts a mock ModelScope on a free port of 127.0.0.1.
 * @param options limits, accepted keys, headers, latency and clock
 * @returns the running mock; close it (or `await using`)
 */
export function startModelScopeMock(options: ModelScopeMockOptions = {}): ModelScopeMock {
  const now = options.now ?? Date.now;
  const accepted = options.keys === undefined ? undefined : new Set(options.keys);
  const sendHeaders = options.headers ?? true;
  const requests: ModelScopeRequest[] = [];
  const account = new Map<string, number>();
  const perModel = new Map<string, Map<string, number>>();
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  const timers = new Set<() => void>();
  let day = 0;
  let dayMark = options.dayOf?.(now());
  let throttles = 0;
  let empties = 0;
  let n = 0;
  let closed = false;

  const accountLimit = (key: string) =>
    options.accountLimits?.[key] ?? options.accountLimit ?? 2000;
  const modelLimit = (model: string) => options.modelLimits?.[model] ?? options.modelLimit ?? 200;
  const usedOf = (key: string, model?: string) =>
    model === undefined ? account.get(key) ?? 0 : perModel.get(key)?.get(model) ?? 0;
  const count = (key: string, model: string) => {
    account.set(key, usedOf(key) + 1);
    let m = perModel.get(key);
    if (m === undefined) perModel.set(key, m = new Map());
    m.set(model, (m.get(model) ?? 0) + 1);
  };
  const newDay = () => {
    day++;
    account.clear();
    perModel.clear();
  };
  const rollIfDue = () => {
    if (options.dayOf === undefined) return;
    const d = options.dayOf(now());
    if (d !== dayMark) {
      dayMark = d;
      newDay();
    }
  };
  const limitHeaders = (key: string, model: string): Record<string, string> => {
    if (!sendHeaders) return {};
    const al = accountLimit(key);
    const ml = modelLimit(model);
    return {
      [`${HEADER}requests-limit`]: String(al),
      [`${HEADER}requests-remaining`]: String(Math.max(0, al - usedOf(key))),
      [`${HEADER}model-requests-limit`]: String(ml),
      [`${HEADER}model-requests-remaining`]: String(Math.max(0, ml - usedOf(key, model))),
    };
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        timers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      timers.add(done);
    });
  const enter = (key: string) => {
    const k = (inFlight.get(key) ?? 0) + 1;
    inFlight.set(key, k);
    if (k > (maxInFlight.get(key) ?? 0)) maxInFlight.set(key, k);
  };
  const leave = (key: string) => inFlight.set(key, (inFlight.get(key) ?? 1) - 1);

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const key = (req.headers.get("authorization") ?? "").replace(/^Bearer\s+/i, "");
    const text = req.method === "GET" || req.method === "HEAD" ? "" : await req.text();
    let body: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null) body = parsed as Record<string, unknown>;
    } catch {
      // not JSON: no model, no stream
    }
    const rec: ModelScopeRequest = {
      n: ++n,
      method: req.method,
      path: url.pathname,
      key,
      model: typeof body.model === "string" ? body.model : "",
      stream: body.stream === true,
      body: text,
      at: now(),
      day,
      status: 0,
      answer: "not_found",
    };
    requests.push(rec);
    const answer = (a: ModelScopeAnswer, res: Response) => {
      rec.answer = a;
      rec.status = res.status;
      return res;
    };
    const id = `ms-req-${rec.n}`;
    if (req.method === "GET" && url.pathname === "/v1/models") {
      // ModelScope lists models for any token, valid or not
      const ids = ["Qwen/Qwen3-8B", ...Object.keys(options.modelLimits ?? {})];
      const data = ids.map((m) => ({ id: m, object: "model", created: 0, owned_by: "system" }));
      return answer("models", Response.json({ object: "list", data }));
    }
    if (req.method !== "POST" || url.pathname !== "/v1/chat/completions") {
      return answer(
        "not_found",
        Response.json({ errors: { message: "Not found", request_id: id } }, { status: 404 }),
      );
    }
    if (accepted !== undefined && !accepted.has(key)) {
      return answer(
        "unauthorized",
        Response.json({
          errors: { message: "Authentication failed: invalid token", request_id: id },
        }, { status: 401 }),
      );
    }
    enter(key);
    let streaming = false;
    try {
      const latency = mock.latencyMs;
      if (latency > 0) await sleep(latency);
      rollIfDue();
      rec.day = day;
      const model = rec.model;
      if (usedOf(key) >= accountLimit(key) || usedOf(key, model) >= modelLimit(model)) {
        return answer(
          "exhausted",
          Response.json({ errors: { message: EXHAUSTED_MESSAGE, request_id: id } }, {
            status: 429,
            headers: limitHeaders(key, model),
          }),
        );
      }
      if (throttles > 0) {
        throttles--;
        return answer(
          "throttled",
          Response.json({ errors: { message: "Too many requests, slow down", request_id: id } }, {
            status: 429,
            headers: limitHeaders(key, model),
          }),
        );
      }
      count(key, model);
      const headers = limitHeaders(key, model);
      const created = Math.floor(now() / 1000);
      if (empties > 0) {
        empties--;
        const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
        return answer(
          "empty",
          Response.json({ id, object: "chat.completion", created, model, choices: null, usage }, {
            headers,
          }),
        );
      }
      const words = ["Hello", " from", " ModelScope"];
      const usage = { prompt_tokens: 5, completion_tokens: words.length, total_tokens: 8 };
      if (!rec.stream) {
        const message = { role: "assistant", content: words.join("") };
        const choices = [{ index: 0, message, finish_reason: "stop" }];
        return answer(
          "ok",
          Response.json({ id, object: "chat.completion", created, model, choices, usage }, {
            headers,
          }),
        );
      }
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        `data: ${
          JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices, ...extra })
        }\n\n`;
      const events = words.map((content, i) =>
        chunk([{
          index: 0,
          delta: i === 0 ? { role: "assistant", content } : { content },
          finish_reason: null,
        }])
      );
      events.push(chunk([{ index: 0, delta: {}, finish_reason: "stop" }]));
      const opts = body.stream_options as Record<string, unknown> | undefined;
      if (opts?.include_usage === true) events.push(chunk([], { usage }));
      events.push("data: [DONE]\n\n");
      streaming = true;
      let i = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          const e = events[i++];
          if (e === undefined) {
            controller.close();
            leave(key);
          } else controller.enqueue(encoder.encode(e));
        },
        cancel() {
          leave(key);
        },
      });
      return answer(
        "ok",
        new Response(stream, {
          headers: { ...headers, "content-type": "text/event-stream", "cache-control": "no-cache" },
        }),
      );
    } finally {
      if (!streaming) leave(key);
    }
  };

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => handle(req),
  );
  const origin = `http://127.0.0.1:${server.addr.port}`;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const t of [...timers]) t();
    await server.shutdown();
  };
  const mock: ModelScopeMock = {
    origin,
    baseUrl: `${origin}/v1`,
    requests,
    latencyMs: options.latencyMs ?? 0,
    get day() {
      return day;
    },
    arrivals: (filter = {}) =>
      requests.filter((r) =>
        r.method === "POST" && r.path === "/v1/chat/completions" &&
        (filter.key === undefined || r.key === filter.key) &&
        (filter.model === undefined || r.model === filter.model)
      ).length,
    used: usedOf,
    maxInFlight: (key) => maxInFlight.get(key) ?? 0,
    newDay,
    exhaust(key, model) {
      if (model === undefined) account.set(key, accountLimit(key));
      else {
        let m = perModel.get(key);
        if (m === undefined) perModel.set(key, m = new Map());
        m.set(model, modelLimit(model));
      }
    },
    throttle(count = 1) {
      throttles += count;
    },
    emptyChoices(count = 1) {
      empties += count;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
  return mock;
}
