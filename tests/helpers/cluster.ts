/**
 * @module
 * Helpers for end-to-end tests of several `serve` processes sharing one Redis
 * (tests/e2e/cluster_test.ts): start and stop a group of instances on one config, post chat
 * completions and admin actions, read `/stats` by key, poll for a condition and measure how long
 * it took, and an upstream whose answer per key a test switches (200, or a 429 with Retry-After).
 */

import { type ServeProcess, startServe } from "./cli.ts";
import { type ScriptedUpstream, startScriptedUpstream } from "./e2e.ts";

/** A model every request of these tests asks for. */
export const MODEL = "gpt-cluster";

/** How llm-balance shows a key: its first 4 and last 4 characters. */
export function maskOf(key: string): string {
  return `${key.slice(0, 4)}...${key.slice(-4)}`;
}

/**
 * Starts `serve` processes on one config file, all at once.
 * @param n how many
 * @param configPath the config file
 * @returns the running processes (close them with {@linkcode closeAll})
 */
export async function startInstances(n: number, configPath: string): Promise<ServeProcess[]> {
  const started = await Promise.allSettled(
    Array.from({ length: n }, () => startServe(["serve", "--config", configPath, "--port", "0"])),
  );
  const ok = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed !== undefined) {
    await closeAll(ok);
    throw failed.reason;
  }
  return ok;
}

/** Closes every process (SIGTERM, then waits for its exit). */
export async function closeAll(instances: readonly (ServeProcess | undefined)[]): Promise<void> {
  await Promise.allSettled(instances.map((i) => i?.close()));
}

/** What a request through llm-balance got. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: Record<string, unknown> | undefined;
}

/**
 * Posts one chat completion and reads the whole answer.
 * @param url the instance's base URL
 * @param headers extra request headers (e.g. a client key)
 * @returns status, headers and body
 */
export async function ask(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) json = parsed as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The `error` object of an llm-balance error body (`{error: {message, type, code}}`). */
export function errorOf(a: Answer): Record<string, unknown> | undefined {
  const e = a.json?.error;
  return typeof e === "object" && e !== null ? e as Record<string, unknown> : undefined;
}

/** `/stats` of an instance: every key's entry, by mask. */
export async function keyStats(url: string): Promise<Record<string, Record<string, unknown>>> {
  const res = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`/stats answered ${res.status}: ${await res.text()}`);
  return await res.json() as Record<string, Record<string, unknown>>;
}

/** One key's `/stats` entry on an instance. */
export async function keyEntry(url: string, key: string): Promise<Record<string, unknown>> {
  const all = await keyStats(url);
  const entry = all[maskOf(key)];
  if (entry === undefined) throw new Error(`/stats of ${url} has no ${maskOf(key)}`);
  return entry;
}

/** One key's state (`healthy`, `resting`, `disabled`, `spent`, …) on an instance. */
export async function stateOf(url: string, key: string): Promise<string> {
  return String((await keyEntry(url, key)).state);
}

/**
 * Posts an admin action (`keys/<id or mask>/disable`, `upstreams/<name>/enable`, …).
 * @param url the instance's base URL
 * @param path what follows `/admin/`
 * @returns the status and the body
 */
export async function admin(url: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/admin/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, text: await res.text() };
}

/**
 * Polls until `check()` holds, as fast as it answers (with `intervalMs` between tries).
 * @param check the condition
 * @param what named in the error
 * @param timeoutMs the longest wait
 * @param intervalMs the pause between two tries
 * @returns `performance.now()` of the first try that held
 * @throws {Error} when the time is up
 */
export async function pollUntil(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 3000,
  intervalMs = 2,
): Promise<number> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return performance.now();
    if (performance.now() > end) throw new Error(`Timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Counts the log records of an instance whose `msg` is `msg`. */
export function countLogs(instance: ServeProcess, msg: string): number {
  return instance.logs().filter((r) => r.msg === msg).length;
}

/** How the {@linkcode KeyedUpstream} answers one key. */
export type KeyAnswer = "ok" | "rate_limited" | "quota";

/** One chat completion as the upstream received it. */
export interface KeyedArrival {
  key: string;
  /** `performance.now()` when it was answered. */
  at: number;
  status: number;
}

/** An OpenAI-style upstream whose answer the test picks per key. */
export interface KeyedUpstream extends AsyncDisposable {
  readonly baseUrl: string;
  /** Every chat completion so far (probes and model lists are left out). */
  readonly arrivals: KeyedArrival[];
  /**
   * Answers this key so from now on (`rate_limited`: 429 with `Retry-After: 60`; `quota`:
   * OpenAI's 429 `insufficient_quota`, no Retry-After).
   */
  set(key: string, answer: KeyAnswer): void;
  /** Chat completions of one key (or all). */
  count(key?: string): number;
  close(): Promise<void>;
}

/**
 * Starts an upstream that answers 200 to every key unless told otherwise.
 * @returns the running upstream
 */
export function startKeyedUpstream(): KeyedUpstream {
  const answers = new Map<string, KeyAnswer>();
  const arrivals: KeyedArrival[] = [];
  let n = 0;
  const up: ScriptedUpstream = startScriptedUpstream((req) => {
    const key = (req.headers.get("authorization") ?? "").replace(/^Bearer\s+/i, "");
    if (req.method === "GET") {
      return Response.json({ object: "list", data: [{ id: MODEL, object: "model" }] });
    }
    if (answers.get(key) === "quota") {
      arrivals.push({ key, at: performance.now(), status: 429 });
      return Response.json(
        {
          error: {
            message: "You exceeded your current quota, please check your plan and billing details.",
            type: "insufficient_quota",
            code: "insufficient_quota",
          },
        },
        { status: 429 },
      );
    }
    if (answers.get(key) === "rate_limited") {
      arrivals.push({ key, at: performance.now(), status: 429 });
      return Response.json(
        {
          error: {
            message: "Rate limit reached for requests",
            type: "requests",
            code: "rate_limit_exceeded",
          },
        },
        { status: 429, headers: { "retry-after": "60" } },
      );
    }
    arrivals.push({ key, at: performance.now(), status: 200 });
    return Response.json({
      id: `chatcmpl-${++n}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: MODEL,
      choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
  });
  return {
    baseUrl: up.baseUrl,
    arrivals,
    set: (key, answer) => void answers.set(key, answer),
    count: (key) => arrivals.filter((a) => key === undefined || a.key === key).length,
    close: () => up.close(),
    [Symbol.asyncDispose]: () => up.close(),
  };
}

/** One budget of a key as the whole cluster counts it (read from Redis). */
export interface ClusterBudgetView {
  limit: number;
  used: number;
  remaining: number;
}

/**
 * One budget of a key in `cluster_budgets` of an instance's `/stats`.
 * @param url the instance's base URL
 * @param key the key
 * @param name the budget (`requests_per_day`, `tokens_per_day`, …)
 * @returns it, or undefined when the instance could not read Redis
 */
export async function clusterBudget(
  url: string,
  key: string,
  name = "requests_per_day",
): Promise<ClusterBudgetView | undefined> {
  const cluster = (await keyEntry(url, key)).cluster_budgets;
  if (typeof cluster !== "object" || cluster === null) return undefined;
  const b = (cluster as Record<string, unknown>)[name];
  if (typeof b !== "object" || b === null) return undefined;
  const r = b as Record<string, unknown>;
  return { limit: Number(r.limit), used: Number(r.used), remaining: Number(r.remaining) };
}
