/**
 * @module
 * Helpers for end-to-end tests of several `serve` processes sharing one Redis
 * (tests/e2e/cluster_test.ts, tests/e2e/cluster_faults_test.ts): run a test on a Redis, an
 * upstream and a group of instances on one config, all stopped and removed after it
 * ({@linkcode withCluster}); start and stop instances, post chat completions and admin actions,
 * read `/stats` by key, poll for a condition and measure how long it took, and an upstream whose
 * answer per key a test switches (200, or a 429 with Retry-After).
 */

import assert from "node:assert/strict";
import { type ServeProcess, startServe, tempConfig } from "./cli.ts";
import { type ScriptedUpstream, startScriptedUpstream } from "./e2e.ts";
import { RedisServer } from "./redis.ts";

/** A model every request of these tests asks for. */
export const MODEL = "gpt-cluster";

/** What an instance logs when Redis goes down. */
export const REDIS_DOWN_LOG = "shared state: Redis is down; serving on the local view";
/** What an instance logs when Redis is back. */
export const REDIS_BACK_LOG = "shared state: Redis is back";

/** What a config of {@linkcode clusterConfigs} may add. */
export interface ClusterConfigOptions {
  /** `state.prefix`, instead of the default one. */
  prefix?: string;
  /** Adds `state.redis_required: true`. */
  required?: boolean;
  /** YAML added at the end. */
  extra?: string;
}

/**
 * Makes configs of one upstream and state shared in Redis.
 * @param prefix the default `state.prefix`
 * @returns a function that writes the config text of a Redis URL, an upstream and the YAML of
 * its keys (and quota)
 */
export function clusterConfigs(
  prefix: string,
): (redisUrl: string, up: KeyedUpstream, keys: string, options?: ClusterConfigOptions) => string {
  return (redisUrl, up, keys, options = {}) => {
    const required = options.required === true ? ", redis_required: true" : "";
    return `
upstreams:
  up:
    base_url: "${up.baseUrl}"
    keys: ${keys}
retry: { backoff_base: 0.01, backoff_max: 0.02 }
state: { redis: "${redisUrl}", prefix: "${options.prefix ?? prefix}"${required} }
${options.extra ?? ""}`;
  };
}

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

/** Every instance logged `listening` with Redis up. */
export async function allUp(nodes: readonly ServeProcess[]): Promise<void> {
  for (const n of nodes) {
    const l = await n.waitForLog((r) => r.msg === "listening");
    assert.equal(l.redis_up, true, `listening: ${JSON.stringify(l)}`);
  }
}

/** An honest refusal: a 503 or 429 with a JSON error body of llm-balance. */
export function honest(a: Answer): boolean {
  const e = errorOf(a);
  return (a.status === 503 || a.status === 429) && e !== undefined &&
    typeof e.message === "string" && typeof e.code === "string";
}

/** What {@linkcode withCluster} starts. */
export interface ClusterTestOptions {
  /** How many instances to start on the config before the test (0: the test starts them). */
  instances: number;
  /** The config file's text, given the Redis URL and the upstream. */
  config: (redisUrl: string, up: KeyedUpstream) => string;
  /** A password the Redis requires. */
  redis?: { password?: string };
}

/** What a test run by {@linkcode withCluster} is given. */
export interface ClusterContext {
  redis: RedisServer;
  up: KeyedUpstream;
  /** The config file. */
  path: string;
  /** The instances started before the test, each logged `listening` with Redis up. */
  nodes: ServeProcess[];
  /** Starts `n` more instances on a config file (the cluster's by default), all at once. */
  startInstances(n: number, configPath?: string): Promise<ServeProcess[]>;
  /** Starts one more `serve --port 0` on a config file (the cluster's by default). */
  serve(configPath?: string): Promise<ServeProcess>;
  /** Writes another config file; returns its path. */
  writeConfig(text: string): Promise<string>;
}

/**
 * Starts a Redis, a {@linkcode KeyedUpstream}, a config file and `instances` instances on it
 * (and waits until each logged `listening` with Redis up), runs the test, and whatever happens
 * closes every instance the test started through the context, the upstream and Redis, and
 * removes every config file.
 * @param options what to start
 * @param fn the test
 */
export async function withCluster(
  options: ClusterTestOptions,
  fn: (ctx: ClusterContext) => Promise<void>,
): Promise<void> {
  const redis = await RedisServer.start(options.redis ?? {});
  let up: KeyedUpstream | undefined;
  const configs: { path: string; remove: () => Promise<void> }[] = [];
  const started: ServeProcess[] = [];
  try {
    up = startKeyedUpstream();
    const cfg = await tempConfig(options.config(redis.url, up));
    configs.push(cfg);
    const path = cfg.path;
    const ctx: ClusterContext = {
      redis,
      up,
      path,
      nodes: [],
      startInstances: async (n, configPath = path) => {
        const more = await startInstances(n, configPath);
        started.push(...more);
        return more;
      },
      serve: async (configPath = path) => {
        const p = await startServe(["serve", "--config", configPath, "--port", "0"]);
        started.push(p);
        return p;
      },
      writeConfig: async (text) => {
        const cfg = await tempConfig(text);
        configs.push(cfg);
        return cfg.path;
      },
    };
    if (options.instances > 0) {
      ctx.nodes = await ctx.startInstances(options.instances);
      await allUp(ctx.nodes);
    }
    await fn(ctx);
  } finally {
    await closeAll(started);
    await up?.close();
    await redis.stop();
    for (const c of configs) await c.remove();
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
