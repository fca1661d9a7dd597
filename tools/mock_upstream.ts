/**
 * @module
 * A configurable OpenAI-compatible mock provider for the test suite, `deno task demo` and
 * `deno task bench`: chat completions (plain and SSE), completions, embeddings, models,
 * responses (plain and SSE) and Anthropic-style messages, with switchable failure modes (errors, rate limits, hangs, broken
 * streams, refused connections). Also runnable:
 * `deno run -A tools/mock_upstream.ts --port N [--mode M] [--latency MS]` prints its origin as
 * the first line of stdout and stops on SIGTERM/SIGINT; more flags: `--name`, `--chunks N`,
 * `--chunk-delay MS`, `--fail-every N`, `--keys a,b` and `--record` (off by default there).
 */

import { parseArgs } from "node:util";

/**
 * How the mock answers every request:
 * - `ok`: normal answers.
 * - `error500`: 500 with an OpenAI-style error body.
 * - `rate_limit`: 429 with `retry-after: 2`.
 * - `quota`: 429 whose body says the quota is exhausted (`insufficient_quota`).
 * - `unauthorized`: 401. `bad_request`: 400.
 * - `hang`: never answers; the client can abort, and `close()`
 *   releases the pending handlers so the mock still closes cleanly.
 * - `die_mid_stream`: sends 2 chunks, then breaks the connection (no `[DONE]`).
 * - `refuse`: the listener is closed, so connections are refused.
 */
export type MockMode =
  | "ok"
  | "error500"
  | "rate_limit"
  | "quota"
  | "unauthorized"
  | "bad_request"
  | "hang"
  | "die_mid_stream"
  | "refuse";

/** Every {@link MockMode}, for argument checking. */
export const MOCK_MODES: readonly MockMode[] = [
  "ok",
  "error500",
  "rate_limit",
  "quota",
  "unauthorized",
  "bad_request",
  "hang",
  "die_mid_stream",
  "refuse",
];

/** Options of {@link startMockUpstream}. */
export interface MockOptions {
  /** Echoed in the `x-mock-name` header and in completion ids. @default "mock" */
  name?: string;
  /** Keys accepted; when set, any other key (or none) gets a 401. @default undefined (any) */
  keys?: string[];
  /** Initial mode. @default "ok" */
  mode?: MockMode;
  /** Delay before the response headers, in ms. @default 0 */
  latencyMs?: number;
  /** Delay between two stream chunks, in ms. @default 0 */
  chunkDelayMs?: number;
  /** Content chunks of an answer. @default 5 */
  chunks?: number;
  /** Flaky mode: every Nth POST request gets a 500 (0 = never). @default 0 */
  failEvery?: number;
  /** Record requests in `requests` (turn off for load tests). @default true */
  record?: boolean;
  /** Port to bind on 127.0.0.1 (0 = any free port). @default 0 */
  port?: number;
}

/** A request as the mock received it. */
export interface RecordedRequest {
  /** 1-based sequence number, also in the `x-request-id: mock-<n>` header. */
  n: number;
  method: string;
  /** Path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** Query string with its `?`, or `""`. */
  search: string;
  /** Header names lowercased. */
  headers: Record<string, string>;
  body: Uint8Array;
  text: string;
  /** The credential from `authorization: Bearer`, `x-api-key` or `api-key`. */
  key: string | undefined;
  /** Status answered; 0 while pending (e.g. `hang`). */
  status: number;
  /** `performance.now()` when the request arrived: orders requests across mocks of one process. */
  receivedAt: number;
}

/** A running mock upstream. */
export interface MockUpstream extends AsyncDisposable {
  readonly name: string;
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  /** `origin + "/v1"` */
  readonly baseUrl: string;
  readonly port: number;
  /** Requests received so far, oldest first (empty when `record` is false). */
  readonly requests: RecordedRequest[];
  /** Requests received so far, recorded or not. */
  readonly requestCount: number;
  /**
   * TCP connections accepted so far (counted by distinct client ports: a port reused by a later
   * connection is not counted twice).
   */
  readonly connections: number;
  /** The current mode; setting it is `setMode` without waiting. */
  mode: MockMode;
  /**
   * Switches the mode; resolves once it applies (`refuse` closes the listener, leaving it
   * reopens on the same port).
   * @throws Error when the port cannot be bound again after `refuse`
   */
  setMode(mode: MockMode): Promise<void>;
  /** Aborts pending answers and streams, closes the listener; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts a mock upstream on 127.0.0.1.
 * @param options see {@link MockOptions}
 * @returns the running mock; close it with `close()` or `await using`
 */
export async function startMockUpstream(options: MockOptions = {}): Promise<MockUpstream> {
  const mock = new Mock(options);
  await mock.setMode(options.mode ?? "ok");
  return mock;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const WORDS = ["Hello", " from", " the", " mock", " upstream", "!", " Have", " a", " nice", " day"];

/** Raised inside a response stream to break the connection; never logged. */
class MockStreamBreak extends Error {}

function json(value: unknown, status: number, headers: Record<string, string>): Response {
  headers["content-type"] = "application/json";
  return new Response(JSON.stringify(value), { status, headers });
}

function openAiError(status: number, message: string, type: string, code: string | null) {
  return { status, body: { error: { message, type, param: null, code } } };
}

const MODE_ERRORS = {
  error500: openAiError(500, "The mock upstream failed", "server_error", null),
  rate_limit: openAiError(
    429,
    "Rate limit reached for requests",
    "requests",
    "rate_limit_exceeded",
  ),
  quota: openAiError(
    429,
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
  ),
  unauthorized: openAiError(
    401,
    "Incorrect API key provided",
    "invalid_request_error",
    "invalid_api_key",
  ),
  bad_request: openAiError(400, "The mock rejects this request", "invalid_request_error", null),
};

type Body = Record<string, unknown>;

/** What the handler learnt about one request. */
interface Call {
  n: number;
  method: string;
  path: string;
  search: string;
  text: string;
  key: string | undefined;
  headers: Record<string, string>;
}

function parseObject(text: string): Body | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? parsed as Body
      : undefined;
  } catch {
    return undefined;
  }
}

function estimateTokens(body: Body): number {
  let chars = 0;
  const messages = body.messages;
  if (Array.isArray(messages)) {
    for (const m of messages) {
      const content = (m as Body | null)?.content;
      chars += typeof content === "string" ? content.length : JSON.stringify(content ?? "").length;
    }
  } else {
    chars = JSON.stringify(body.prompt ?? body.input ?? "").length;
  }
  return Math.max(1, Math.ceil(chars / 4));
}

class Mock implements MockUpstream {
  readonly name: string;
  readonly requests: RecordedRequest[] = [];
  #port: number;
  #mode: MockMode = "ok";
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #transition: Promise<void> = Promise.resolve();
  #closed = false;
  #count = 0;
  #posts = 0;
  #clientPorts = new Set<number>();
  #aborts = new Set<() => void>();
  readonly #keys: Set<string> | undefined;
  readonly #latencyMs: number;
  readonly #chunkDelayMs: number;
  readonly #chunks: number;
  readonly #failEvery: number;
  readonly #record: boolean;

  constructor(options: MockOptions) {
    this.name = options.name ?? "mock";
    this.#port = options.port ?? 0;
    this.#keys = options.keys ? new Set(options.keys) : undefined;
    this.#latencyMs = options.latencyMs ?? 0;
    this.#chunkDelayMs = options.chunkDelayMs ?? 0;
    this.#chunks = options.chunks ?? 5;
    this.#failEvery = options.failEvery ?? 0;
    this.#record = options.record ?? true;
  }

  get port(): number {
    return this.#port;
  }
  get origin(): string {
    return `http://127.0.0.1:${this.#port}`;
  }
  get baseUrl(): string {
    return `${this.origin}/v1`;
  }
  get connections(): number {
    return this.#clientPorts.size;
  }
  get requestCount(): number {
    return this.#count;
  }
  get mode(): MockMode {
    return this.#mode;
  }
  set mode(mode: MockMode) {
    this.setMode(mode).catch(() => {});
  }

  setMode(mode: MockMode): Promise<void> {
    if (!MOCK_MODES.includes(mode)) {
      return Promise.reject(new TypeError(`Cannot set mock mode: unknown mode "${mode}"`));
    }
    this.#mode = mode;
    this.#transition = this.#transition.then(
      () => this.#applyListener(),
      () => this.#applyListener(),
    );
    return this.#transition;
  }

  async #applyListener(): Promise<void> {
    const listen = !this.#closed && this.#mode !== "refuse";
    if (listen && !this.#server) {
      this.#server = Deno.serve({
        hostname: "127.0.0.1",
        port: this.#port,
        onListen: () => {},
        onError: (error) => {
          if (!(error instanceof MockStreamBreak)) console.error(error);
          return new Response(null, { status: 500 });
        },
      }, (req, info) => this.#handle(req, info));
      this.#port = this.#server.addr.port;
    } else if (!listen && this.#server) {
      const server = this.#server;
      this.#server = undefined;
      for (const abort of [...this.#aborts]) abort();
      await server.shutdown();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#transition = this.#transition.then(
      () => this.#applyListener(),
      () => this.#applyListener(),
    );
    await this.#transition;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Waits `ms` (or until the mock closes or `signal` aborts); resolves false when cut short. */
  #sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#aborts.delete(abort);
        signal?.removeEventListener("abort", abort);
        resolve(ok);
      };
      const abort = () => done(false);
      const timer = setTimeout(() => done(true), ms);
      this.#aborts.add(abort);
      if (signal?.aborted) abort();
      else signal?.addEventListener("abort", abort, { once: true });
    });
  }

  async #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    this.#clientPorts.add(info.remoteAddr.port);
    const n = ++this.#count;
    const url = req.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    const queryStart = url.indexOf("?", pathStart);
    const path = queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
    const search = queryStart < 0 ? "" : url.slice(queryStart);
    const method = req.method;
    const key = req.headers.get("authorization")?.replace(/^Bearer\s+/i, "") ??
      req.headers.get("x-api-key") ?? req.headers.get("api-key") ?? undefined;
    let text = "";
    let rec: RecordedRequest | undefined;
    if (this.#record) {
      const body = new Uint8Array(await req.arrayBuffer());
      text = decoder.decode(body);
      rec = {
        n,
        method,
        path,
        search,
        headers: Object.fromEntries(req.headers),
        body,
        text,
        key,
        status: 0,
        receivedAt: performance.now(),
      };
      this.requests.push(rec);
    } else if (method !== "GET" && method !== "HEAD") {
      text = await req.text();
    }
    const headers: Record<string, string> = {
      "x-request-id": `mock-${n}`,
      "x-mock-name": this.name,
      "x-ratelimit-remaining-requests": String(Math.max(0, 1_000_000 - n)),
    };
    const res = await this.#answer(req, { n, method, path, search, text, key, headers });
    if (rec) rec.status = res.status;
    return res;
  }

  async #answer(req: Request, call: Call): Promise<Response> {
    const { method, path, search, text, key, headers } = call;
    const mode = this.#mode;
    if (mode === "hang") {
      // Waits for close(): reading req.signal would make Deno print a warning about its legacy
      // abort behaviour, and the client's abort already frees the client side.
      await this.#sleep(2 ** 31 - 1);
      return this.#stream([""], headers, 0, "application/json", 503);
    }
    if (this.#latencyMs > 0 && !(await this.#sleep(this.#latencyMs))) {
      return this.#stream([""], headers, 0, "application/json", 503);
    }
    if (this.#keys && (key === undefined || !this.#keys.has(key))) {
      return json(MODE_ERRORS.unauthorized.body, 401, headers);
    }
    if (mode !== "ok" && mode !== "die_mid_stream" && mode !== "refuse") {
      const err = MODE_ERRORS[mode];
      if (mode === "rate_limit") headers["retry-after"] = "2";
      return json(err.body, err.status, headers);
    }
    if (method === "POST" && this.#failEvery > 0 && ++this.#posts % this.#failEvery === 0) {
      return json(MODE_ERRORS.error500.body, 500, headers);
    }
    if (method === "GET" && path === "/v1/models") {
      const data = ["mock-model", "gpt-4o-mini", "text-embedding-3-small"].map((id) => ({
        id,
        object: "model",
        created: 0,
        owned_by: this.name,
      }));
      return json({ object: "list", data }, 200, headers);
    }
    const known = method === "POST" &&
      (path === "/v1/chat/completions" || path === "/v1/completions" ||
        path === "/v1/embeddings" || path === "/v1/messages" || path === "/v1/responses");
    if (!known) {
      const echoed = { method, path, search, headers: Object.fromEntries(req.headers), body: text };
      return json(echoed, 200, headers);
    }
    const body = parseObject(text);
    if (!body) {
      const err = openAiError(400, "Body must be a JSON object", "invalid_request_error", null);
      return json(err.body, 400, headers);
    }
    if (path === "/v1/embeddings") return this.#embeddings(body, headers);
    const die = mode === "die_mid_stream";
    if (path === "/v1/messages") return this.#messages(body, call, die);
    if (path === "/v1/responses") return this.#responses(body, call, die);
    return this.#completion(body, call, die, path === "/v1/chat/completions");
  }

  #contents(body: Body): string[] {
    const contents: string[] = [];
    const long = body.mock_long_line;
    if (typeof long === "number" && long > 0) contents.push("x".repeat(long));
    for (let i = 0; i < this.#chunks; i++) contents.push(WORDS[i % WORDS.length]!);
    return contents;
  }

  #completion(body: Body, call: Call, die: boolean, chat: boolean): Response {
    const headers = call.headers;
    const model = typeof body.model === "string" ? body.model : "mock-model";
    const id = `${chat ? "chatcmpl" : "cmpl"}-${this.name}-${call.n}`;
    const created = Math.floor(Date.now() / 1000);
    const contents = this.#contents(body);
    const usage = {
      prompt_tokens: estimateTokens(body),
      completion_tokens: contents.length,
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    if (body.stream !== true) {
      const content = contents.join("");
      const choice = chat
        ? {
          index: 0,
          message: { role: "assistant", content },
          finish_reason: "stop",
          logprobs: null,
        }
        : { index: 0, text: content, finish_reason: "stop", logprobs: null };
      const object = chat ? "chat.completion" : "text_completion";
      if (die) return this.#stream([`{"id":"${id}",`], headers, 1, "application/json");
      return json({ id, object, created, model, choices: [choice], usage }, 200, headers);
    }
    const object = chat ? "chat.completion.chunk" : "text_completion";
    const chunk = (choices: unknown[], extra?: Body) =>
      `data: ${JSON.stringify({ id, object, created, model, choices, ...extra })}\n\n`;
    const events = contents.map((content, i) =>
      chunk([
        chat
          ? {
            index: 0,
            delta: i === 0 ? { role: "assistant", content } : { content },
            finish_reason: null,
          }
          : { index: 0, text: content, finish_reason: null },
      ])
    );
    if (body.mock_multiline === true && events[0]) {
      const line = events[0].slice(6, -2);
      const cut = line.indexOf(",") + 1;
      events[0] = `: mock comment\ndata: ${line.slice(0, cut)}\ndata: ${line.slice(cut)}\n\n`;
    }
    events.push(
      chunk([
        chat
          ? { index: 0, delta: {}, finish_reason: "stop" }
          : { index: 0, text: "", finish_reason: "stop" },
      ]),
    );
    const options = body.stream_options as Body | undefined;
    if (options?.include_usage === true) events.push(chunk([], { usage }));
    events.push("data: [DONE]\n\n");
    return this.#stream(events, headers, die ? 2 : -1);
  }

  #messages(body: Body, call: Call, die: boolean): Response {
    const headers = call.headers;
    const model = typeof body.model === "string" ? body.model : "mock-model";
    const id = `msg_${this.name}_${call.n}`;
    const contents = this.#contents(body);
    const usage = { input_tokens: estimateTokens(body), output_tokens: contents.length };
    const message = { id, type: "message", role: "assistant", model, stop_sequence: null };
    if (body.stream !== true) {
      const content = [{ type: "text", text: contents.join("") }];
      return json({ ...message, content, stop_reason: "end_turn", usage }, 200, headers);
    }
    const event = (name: string, data: unknown) =>
      `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
    const events = [
      event("message_start", {
        type: "message_start",
        message: {
          ...message,
          content: [],
          stop_reason: null,
          usage: { ...usage, output_tokens: 0 },
        },
      }),
      event("content_block_start", {
        type: "content_block_start",
        index: 0,
        content_block: { type: "text", text: "" },
      }),
      event("ping", { type: "ping" }),
      ...contents.map((text) =>
        event("content_block_delta", {
          type: "content_block_delta",
          index: 0,
          delta: { type: "text_delta", text },
        })
      ),
      event("content_block_stop", { type: "content_block_stop", index: 0 }),
      event("message_delta", {
        type: "message_delta",
        delta: { stop_reason: "end_turn", stop_sequence: null },
        usage: { output_tokens: usage.output_tokens },
      }),
      event("message_stop", { type: "message_stop" }),
    ];
    return this.#stream(events, headers, die ? 5 : -1);
  }

  /** OpenAI's Responses API: usage in the body, or in `response.completed` when streamed. */
  #responses(body: Body, call: Call, die: boolean): Response {
    const headers = call.headers;
    const model = typeof body.model === "string" ? body.model : "mock-model";
    const id = `resp_${this.name}_${call.n}`;
    const contents = this.#contents(body);
    const text = contents.join("");
    const inputTokens = estimateTokens(body);
    const usage = {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: contents.length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + contents.length,
    };
    const created_at = Math.floor(Date.now() / 1000);
    const item = (content: unknown[]) => ({
      id: `msg_${this.name}_${call.n}`,
      type: "message",
      role: "assistant",
      status: content.length > 0 ? "completed" : "in_progress",
      content,
    });
    const part = { type: "output_text", text, annotations: [] };
    const response = (status: string, output: unknown[], u: unknown) => ({
      id,
      object: "response",
      created_at,
      status,
      model,
      output,
      usage: u,
    });
    if (body.stream !== true) {
      return json(response("completed", [item([part])], usage), 200, headers);
    }
    let seq = 0;
    const event = (type: string, data: Body) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
    const at = { output_index: 0, content_index: 0, item_id: `msg_${this.name}_${call.n}` };
    const events = [
      event("response.created", { response: response("in_progress", [], null) }),
      event("response.in_progress", { response: response("in_progress", [], null) }),
      event("response.output_item.added", { output_index: 0, item: item([]) }),
      ...contents.map((delta) => event("response.output_text.delta", { ...at, delta })),
      event("response.output_text.done", { ...at, text }),
      event("response.output_item.done", { output_index: 0, item: item([part]) }),
      event("response.completed", { response: response("completed", [item([part])], usage) }),
    ];
    return this.#stream(events, headers, die ? 3 : -1);
  }

  #embeddings(body: Body, headers: Record<string, string>): Response {
    const input = body.input;
    const inputs = Array.isArray(input) ? input : [input ?? ""];
    const data = inputs.map((item, index) => {
      const seed = JSON.stringify(item).length + index;
      const embedding = Array.from(
        { length: 8 },
        (_, i) => Math.round(Math.sin(seed + i) * 1e6) / 1e6,
      );
      return { object: "embedding", index, embedding };
    });
    const tokens = estimateTokens(body);
    const model = typeof body.model === "string" ? body.model : "mock-embedding";
    return json(
      { object: "list", data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } },
      200,
      headers,
    );
  }

  /**
   * A streamed response (SSE by default) sending one event per pull, `chunkDelayMs` apart; when
   * `breakAfter` >= 0 the stream breaks the connection after that many events.
   */
  #stream(
    events: string[],
    headers: Record<string, string>,
    breakAfter: number,
    contentType = "text/event-stream",
    status = 200,
  ): Response {
    let i = 0;
    let cancel: AbortController | undefined;
    const stream = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (i === breakAfter) {
          return controller.error(new MockStreamBreak("Mock stream broken on purpose"));
        }
        if (i > 0 && this.#chunkDelayMs > 0) {
          cancel = new AbortController();
          if (!(await this.#sleep(this.#chunkDelayMs, cancel.signal))) {
            if (!cancel.signal.aborted) controller.error(new MockStreamBreak("Mock closed"));
            return;
          }
        }
        controller.enqueue(encoder.encode(events[i]!));
        if (++i === events.length && breakAfter < 0) controller.close();
      },
      cancel: () => cancel?.abort(),
    }, { highWaterMark: 0 });
    headers["content-type"] = contentType;
    headers["cache-control"] = "no-cache";
    return new Response(stream, { status, headers });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "0" },
      mode: { type: "string", default: "ok" },
      latency: { type: "string", default: "0" },
      "chunk-delay": { type: "string", default: "0" },
      chunks: { type: "string", default: "5" },
      "fail-every": { type: "string", default: "0" },
      name: { type: "string", default: "mock" },
      keys: { type: "string" },
      record: { type: "boolean", default: false },
    },
  });
  const mode = values.mode as MockMode;
  if (!MOCK_MODES.includes(mode)) {
    console.error(`Cannot start mock upstream: unknown mode "${values.mode}"`);
    Deno.exit(2);
  }
  const mock = await startMockUpstream({
    name: values.name,
    port: Number(values.port),
    mode,
    latencyMs: Number(values.latency),
    chunkDelayMs: Number(values["chunk-delay"]),
    chunks: Number(values.chunks),
    failEvery: Number(values["fail-every"]),
    record: values.record,
    ...(values.keys ? { keys: values.keys.split(",") } : {}),
  });
  console.log(mock.origin);
  const stop = () => {
    mock.close().finally(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);
}
