/**
 * @module
 * Gathers the figures the soak's invariants compare: the proxy's counters from `/stats` and
 * `/metrics` (admin key), its per-request log lines (attempts per request id), what the fault
 * upstreams counted, and what the clients got; with `--redis`, the cluster's budget counts of
 * `/stats`, the link's metrics and log lines, and the whole run's counts.
 */

import { parsePrometheus } from "../helpers/prometheus.ts";
import type { Arrival, FaultyUpstream, Tokens } from "./_faulty_upstream.ts";
import type { Figures, RedisFigures } from "./_invariants.ts";
import { type Outcome, OUTCOMES, type RequestResult } from "./_load.ts";

/** One budget of `cluster_budgets` in `/stats`. */
export interface ClusterBudget {
  limit: number;
  used: number;
  remaining: number;
}

/** One key's row of `/stats`, the fields the soak reads. */
export interface StatsRow {
  upstream: string;
  /** The key, masked. */
  key: string;
  name: string | null;
  requests: number;
  in_flight: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** The cluster's counts of the key's budgets (shared state on Redis; null: Redis is down). */
  cluster_budgets?: Record<string, ClusterBudget> | null;
}

/**
 * Reads an admin endpoint.
 * @param url the proxy's base URL
 * @param path e.g. `/stats`
 * @param adminKey the admin key
 * @returns the body
 * @throws {Error} on a non-2xx status
 */
export async function adminGet(url: string, path: string, adminKey: string): Promise<string> {
  const res = await fetch(`${url}${path}`, {
    headers: { authorization: `Bearer ${adminKey}` },
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`Cannot read ${path}: HTTP ${res.status}: ${text.slice(0, 200)}`);
  return text;
}

/**
 * Reads `/stats`.
 * @returns its rows (one per key)
 */
export async function readStats(url: string, adminKey: string): Promise<StatsRow[]> {
  const body = JSON.parse(await adminGet(url, "/stats", adminKey)) as Record<string, StatsRow>;
  return Object.values(body);
}

/** Extra views for the report: the proxy's per-request log and what the figures came from. */
export interface Gathered {
  figures: Figures;
  /** Error responses by status (`503 no_upstream_available`: 12). */
  errors: Record<string, number>;
  /** Arrivals by fault variant. */
  faults: Record<string, number>;
  /** Client requests with a log line each. */
  logged: number;
}

/** What {@link gather} reads. */
export interface GatherInput {
  url: string;
  adminKey: string;
  upstreams: readonly FaultyUpstream[];
  results: readonly RequestResult[];
  /** The proxy's JSON log records. */
  logs: readonly Record<string, unknown>[];
  process: Figures["process"];
  /** With shared state on Redis (`--redis`). */
  redis?: RedisInput | undefined;
}

/** What the soak saw when it killed Redis: every request sent before had ended. */
export interface KillSnapshot {
  /** Attempts per key name (`/stats` `requests`). */
  attempts: Record<string, number>;
  /** Total tokens the upstreams had sent, per key name. */
  tokens: Record<string, number>;
}

/** What {@link gather} reads of a `--redis` run besides the proxy's counters. */
export interface RedisInput {
  /** The counts when Redis was killed (undefined: it never was). */
  killed: KillSnapshot | undefined;
  /** Markers of the requests sent after the kill. */
  after: ReadonlySet<string>;
  /** Requests answered while the proxy saw Redis down, and the ok ones. */
  whileDown: { answered: number; ok: number };
  /** Key names (`u1-k1`) by the keys the upstreams see. */
  names: ReadonlyMap<string, string>;
}

/** A row's name in the soak's per-key counts: its configured name. */
export function rowName(row: StatsRow): string {
  return row.name ?? `${row.upstream} ${row.key}`;
}

/**
 * Attempts per key, from `/stats`.
 * @param rows the rows
 * @returns per key name
 */
export function attemptsByName(rows: readonly StatsRow[]): Record<string, number> {
  return Object.fromEntries(rows.map((r) => [rowName(r), r.requests]));
}

/**
 * Total tokens the upstreams sent per key.
 * @param upstreams the upstreams
 * @param names key names by the keys
 * @returns per key name
 */
export function tokensByName(
  upstreams: readonly FaultyUpstream[],
  names: ReadonlyMap<string, string>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const u of upstreams) {
    for (const [key, t] of u.tokensByKey) {
      const name = names.get(key) ?? `${u.name} unknown key`;
      out[name] = (out[name] ?? 0) + t.total;
    }
  }
  return out;
}

/** The proxy's log line when it loses Redis (src/shared/link.ts). */
export const DOWN_LINE = "shared state: Redis is down; serving on the local view";
/** ... when Redis is back. */
export const BACK_LINE = "shared state: Redis is back";
const UNREACHABLE_LINE = "shared state: Redis cannot be reached; serving on the local view";
/** Attempt classes whose request goes back to the key's budget (src/proxy/lease.ts). */
const GIVEN_BACK = new Set(["connect", "stale", "auth"]);
const MENTIONS_REDIS = /redis|shared[ _]state/i;

function redisFigures(
  i: GatherInput,
  r: RedisInput,
  rows: readonly StatsRow[],
  metrics: ReturnType<typeof parsePrometheus>,
): RedisFigures {
  const lines = { down: 0, back: 0, unreachable: 0 };
  const mentions: string[] = [];
  const byMask = new Map(rows.map((row) => [`${row.upstream} ${row.key}`, rowName(row)]));
  const givenBack: Record<string, number> = {};
  let givenBackWhileDown = 0;
  let down = false;
  for (const rec of i.logs) {
    if (rec.msg === DOWN_LINE) {
      lines.down++;
      down = true;
    } else if (rec.msg === BACK_LINE) {
      lines.back++;
      down = false;
    } else if (rec.msg === UNREACHABLE_LINE) lines.unreachable++;
    else if (rec.msg === "request" && MENTIONS_REDIS.test(String(rec.error ?? ""))) {
      mentions.push(`log: ${rec.request_id} HTTP ${rec.status}: ${rec.error}`);
    } else if (
      rec.msg === "upstream attempt failed" && GIVEN_BACK.has(String(rec.class))
    ) {
      const name = byMask.get(`${rec.upstream} ${rec.key}`) ?? `${rec.upstream} ${rec.key}`;
      givenBack[name] = (givenBack[name] ?? 0) + 1;
      if (down) givenBackWhileDown++;
    }
  }
  for (const res of i.results) {
    if (MENTIONS_REDIS.test(res.message) || MENTIONS_REDIS.test(res.detail)) {
      mentions.push(`answer: ${res.marker} HTTP ${res.status} ${res.detail}: ${res.message}`);
    }
  }
  let arrivals = 0;
  let late = 0;
  for (const u of i.upstreams) {
    arrivals += u.arrivals.length;
    late += u.lateRequests.length;
  }
  const one = (name: string) => {
    const found = metrics.find(name);
    return found.length === 1 ? found[0]!.value : NaN;
  };
  const attemptsNow = attemptsByName(rows);
  const tokensNow = tokensByName(i.upstreams, r.names);
  const perKey = { requests: [] as string[], tokens: [] as string[] };
  const keysWithout: string[] = [];
  const sum = (m: Record<string, number>) => Object.values(m).reduce((n, v) => n + v, 0);
  const cluster = { requests: 0, tokens: 0 };
  let tokensSince = 0;
  for (const row of rows) {
    const name = rowName(row);
    const attempts = attemptsNow[name] ?? 0;
    const back = givenBack[name] ?? 0;
    const tokens = tokensNow[name] ?? 0;
    tokensSince += tokens;
    const cb = row.cluster_budgets;
    const requests = cb?.requests_per_day?.used;
    const clusterTokens = cb?.tokens_per_day?.used;
    if (requests === undefined || clusterTokens === undefined) {
      keysWithout.push(name);
      continue;
    }
    cluster.requests += requests;
    cluster.tokens += clusterTokens;
    if (requests !== attempts - back) {
      perKey.requests.push(
        `${name}: cluster ${requests}, expected ${attempts - back} = ${attempts} attempts - ` +
          `${back} given back, difference ${requests - (attempts - back)}`,
      );
    }
    if (clusterTokens !== tokens) {
      perKey.tokens.push(
        `${name}: cluster ${clusterTokens}, sent ${tokens}, difference ${clusterTokens - tokens}`,
      );
    }
  }
  return {
    killed: r.killed !== undefined,
    lines,
    up: one("llm_balance_redis_up"),
    downTotal: one("llm_balance_redis_down_total"),
    mentions,
    whileDown: { ...r.whileDown },
    whole: {
      arrivals,
      late,
      attempts: sum(attemptsNow),
      givenBack: sum(givenBack),
      givenBackWhileDown,
      tokens: tokensSince,
    },
    cluster,
    keysWithout,
    perKey,
  };
}

function zeroTokens(): Tokens {
  return { prompt: 0, completion: 0, total: 0 };
}

function add(t: Tokens, u: Tokens): void {
  t.prompt += u.prompt;
  t.completion += u.completion;
  t.total += u.total;
}

function count<K extends string>(map: Record<K, number>, key: K): void {
  map[key] = (map[key] ?? 0) + 1;
}

function push(map: Map<string, Arrival[]>, a: Arrival): void {
  const list = map.get(a.marker);
  if (list === undefined) map.set(a.marker, [a]);
  else list.push(a);
}

function trail(arrivals: readonly Arrival[]): string {
  return arrivals.map((a) =>
    `${a.upstream} conn#${a.conn} req#${a.onConn}${a.onConn > 1 ? " (reused)" : ""} ${a.fault}`
  ).join(" -> ");
}

/**
 * Reads the proxy's counters and puts every figure together.
 * @param i the proxy, the upstreams, the clients' results, the logs and the process samples
 * @returns the figures and the report's extra views
 */
export async function gather(i: GatherInput): Promise<Gathered> {
  const stats = await readStats(i.url, i.adminKey);
  const metrics = parsePrometheus(await adminGet(i.url, "/metrics", i.adminKey));

  const outcomes = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  const errors: Record<string, number> = {};
  const examples: Figures["examples"] = { lost: [], hang: [], crossing: [] };
  const client = zeroTokens();
  for (const r of i.results) {
    outcomes[r.outcome]++;
    if (r.outcome === "error_status") count(errors, r.detail);
    if (r.outcome === "lost" || r.outcome === "hang" || r.outcome === "crossing") {
      const how = `${r.marker} (${r.stream ? "stream" : "json"}, HTTP ${r.status}, ${r.ms} ms, ` +
        `upstream ${r.upstream || "-"}): ${r.detail}`;
      examples[r.outcome].push(how);
    }
    if (r.tokens !== undefined) add(client, r.tokens);
  }

  const byMarker = new Map<string, Arrival[]>();
  const lateByMarker = new Map<string, Arrival[]>();
  const arrivalsByUpstream: Record<string, number> = {};
  const lateByUpstream: Record<string, number> = {};
  const faults: Record<string, number> = {};
  const upstreamTokens = zeroTokens();
  const mixedRequests: string[] = [];
  for (const u of i.upstreams) {
    arrivalsByUpstream[u.name] = u.arrivals.length;
    add(upstreamTokens, u.tokens());
    mixedRequests.push(...u.mixedRequests.map((m) => `${u.name}: ${m}`));
    for (const a of u.arrivals) {
      count(faults, a.fault);
      push(byMarker, a);
    }
    lateByUpstream[u.name] = u.lateRequests.length;
    for (const a of u.lateRequests) push(lateByMarker, a);
  }

  const attemptsById = new Map<string, number>();
  const linesById = new Map<string, number>();
  for (const rec of i.logs) {
    if (rec.msg !== "request" || rec.path !== "/v1/chat/completions") continue;
    const id = String(rec.request_id);
    attemptsById.set(id, (attemptsById.get(id) ?? 0) + (Number(rec.attempts) || 0));
    linesById.set(id, (linesById.get(id) ?? 0) + 1);
  }
  const resent: Figures["resent"] = { count: 0, extra: 0, examples: [] };
  const unseen: Figures["unseen"] = { count: 0, extra: 0, examples: [] };
  const sent = new Set<string>();
  let logged = 0;
  for (const r of i.results) {
    sent.add(r.marker);
    const lines = linesById.get(r.marker) ?? 0;
    if (lines > 0) logged++;
    const arrivals = byMarker.get(r.marker) ?? [];
    const late = lateByMarker.get(r.marker) ?? [];
    const attempts = attemptsById.get(r.marker) ?? 0;
    if (lines === 0) continue;
    const resends = arrivals.length - attempts;
    const missing = attempts - arrivals.length - late.length;
    if (resends <= 0 && missing <= 0) continue;
    const all = [...arrivals, ...late].sort((a, b) => a.at - b.at);
    const seen = `${arrivals.length}${late.length > 0 ? ` (+${late.length} late)` : ""}`;
    const line =
      `${r.marker}: the proxy logged ${attempts} attempt(s), the upstreams saw ${seen}: ${
        trail(all)
      }; client got ${r.outcome} (HTTP ${r.status}${r.detail ? `, ${r.detail}` : ""})`;
    if (resends > 0) {
      resent.count++;
      resent.extra += resends;
      resent.examples.push(line);
    } else {
      unseen.count++;
      unseen.extra += missing;
      unseen.examples.push(line);
    }
  }
  for (const list of byMarker.values()) list.sort((a, b) => a.at - b.at);
  for (const [marker, arrivals] of byMarker) {
    if (!sent.has(marker)) {
      resent.examples.push(`${marker || "(no marker)"}: no client sent it: ${trail(arrivals)}`);
      resent.count++;
      resent.extra += arrivals.length;
    }
  }

  const statsByUpstream: Record<string, number> = Object.fromEntries(
    i.upstreams.map((u) => [u.name, 0]),
  );
  const statsTokens = zeroTokens();
  let statsAttempts = 0;
  for (const row of stats) {
    statsAttempts += row.requests;
    statsByUpstream[row.upstream] = (statsByUpstream[row.upstream] ?? 0) + row.requests;
    add(statsTokens, {
      prompt: row.prompt_tokens,
      completion: row.completion_tokens,
      total: row.total_tokens,
    });
  }
  const tokensOf = (name: string): Tokens => {
    const prompt = metrics.sum(name, { type: "prompt" });
    const completion = metrics.sum(name, { type: "completion" });
    return { prompt, completion, total: prompt + completion };
  };
  const arrivalsTotal = i.upstreams.reduce((n, u) => n + u.arrivals.length, 0);
  const figures: Figures = {
    outcomes,
    clientRequests: i.results.length,
    proxyRequests: metrics.sum("llm_balance_requests_total"),
    examples,
    mixedRequests,
    arrivals: {
      total: arrivalsTotal,
      byUpstream: arrivalsByUpstream,
      late: i.upstreams.reduce((n, u) => n + u.lateRequests.length, 0),
      lateByUpstream,
    },
    attempts: {
      stats: statsAttempts,
      statsByUpstream,
      metrics: metrics.sum("llm_balance_attempts_total"),
      metricsByKey: metrics.sum("llm_balance_key_attempts_total"),
    },
    resent,
    unseen,
    tokens: {
      upstream: upstreamTokens,
      stats: statsTokens,
      metrics: tokensOf("llm_balance_tokens_total"),
      metricsByKey: tokensOf("llm_balance_key_tokens_total"),
      client,
    },
    process: i.process,
    redis: i.redis === undefined ? undefined : redisFigures(i, i.redis, stats, metrics),
  };
  return { figures, errors, faults, logged };
}
