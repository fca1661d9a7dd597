/**
 * @module
 * The soak's invariants, as pure functions of the figures gathered at the end of a run: no
 * lost requests (and no hangs, no crossings), upstream arrivals equal to the attempts the proxy
 * counted, tokens sent equal to tokens counted, and the proxy's memory and open files flat. With
 * shared state on Redis (`--redis`), killed and restarted midway: the outage logged once each
 * way, no answer touched by it, the metrics of the link, and the cluster's budget counts exact.
 */

import type { Tokens } from "./_faulty_upstream.ts";
import type { Outcome } from "./_load.ts";

/** The figures of one run that the invariants compare. */
export interface Figures {
  /** Client requests by outcome. */
  outcomes: Record<Outcome, number>;
  /** Client requests sent. */
  clientRequests: number;
  /** Requests the proxy counted (`llm_balance_requests_total`). */
  proxyRequests: number;
  /** A few lost, hung and crossed requests, described. */
  examples: { lost: string[]; hang: string[]; crossing: string[] };
  /** Requests whose body carried another marker than their header (the upstreams saw). */
  mixedRequests: string[];
  /**
   * Request heads the fault upstreams received and answered (or failed on purpose), in all and
   * by upstream; and requests that came after an upstream had closed the idle connection
   * (received, never processed: the proxy may count them as failed attempts or send them again).
   */
  arrivals: {
    total: number;
    byUpstream: Record<string, number>;
    late: number;
    lateByUpstream: Record<string, number>;
  };
  /** Attempts the proxy counted. */
  attempts: {
    /** Sum of per-key `requests` in `/stats`. */
    stats: number;
    /** The same by upstream. */
    statsByUpstream: Record<string, number>;
    /** Sum of `llm_balance_attempts_total` in `/metrics`. */
    metrics: number;
    /** Sum of `llm_balance_key_attempts_total` in `/metrics`. */
    metricsByKey: number;
  };
  /** Requests whose marker reached the upstreams more often than their log line says. */
  resent: { count: number; extra: number; examples: string[] };
  /**
   * Requests whose log line counts more attempts than the upstreams received (late requests
   * included).
   */
  unseen: { count: number; extra: number; examples: string[] };
  /** Tokens: sent by the upstreams, counted by the proxy, seen by the clients. */
  tokens: {
    upstream: Tokens;
    stats: Tokens;
    /** `llm_balance_tokens_total` (prompt, completion; total is their sum). */
    metrics: Tokens;
    /** `llm_balance_key_tokens_total`. */
    metricsByKey: Tokens;
    client: Tokens;
  };
  /** The proxy process: RSS in MB and open files, after warm-up, at the end, and at peak. */
  process: {
    warmRssMb: number;
    endRssMb: number;
    peakRssMb: number;
    warmFds: number;
    endFds: number;
    peakFds: number;
  };
  /** Shared state on Redis, killed and restarted midway (`--redis`); absent without. */
  redis?: RedisFigures | undefined;
}

/**
 * What a `--redis` run measured of the shared state. "Since the kill" covers the requests sent
 * after Redis was killed: the soak held its clients until every earlier request had ended and
 * the proxy had added their tokens to Redis, killed Redis, and let them go once the proxy had
 * seen it down.
 */
export interface RedisFigures {
  /** Whether Redis was killed (false: the load ended first). */
  killed: boolean;
  /** The proxy's log lines `shared state: Redis is down; ...`, `... is back`, `... cannot be reached`. */
  lines: { down: number; back: number; unreachable: number };
  /** `llm_balance_redis_up` and `llm_balance_redis_down_total` at the end (NaN when missing). */
  up: number;
  downTotal: number;
  /** Client answers and proxy log lines that mention Redis or the shared state. */
  mentions: string[];
  /** Requests answered while the proxy saw Redis down, and how many were ok. */
  whileDown: { answered: number; ok: number };
  /** Since the kill, summed over keys. */
  whole: {
    /** Request heads the upstreams received, and late ones (see `Figures.arrivals`). */
    arrivals: number;
    late: number;
    /** Attempts the proxy counted (`/stats` `requests`). */
    attempts: number;
    /**
     * Attempts whose request the proxy gave back to the key's budget: those of class `connect`,
     * `stale` or `auth` (the provider's quota was not used), by the proxy's log.
     */
    givenBack: number;
    /** ... of them, while the proxy saw Redis down. */
    givenBackWhileDown: number;
    /** Tokens the upstreams sent in usage blocks. */
    tokens: number;
  };
  /** The cluster's counts at the end (`cluster_budgets` of `/stats`, summed over keys). */
  cluster: { requests: number; tokens: number };
  /** Keys whose `cluster_budgets` were missing at the end. */
  keysWithout: string[];
  /** Keys whose cluster counts differ from their own expectation, described. */
  perKey: { requests: string[]; tokens: string[] };
}

/** Limits of the flatness checks. */
export interface Limits {
  /** End RSS may be up to warm-up RSS times this. @default 1.5 */
  rssFactor: number;
  /** Plus this many MB. @default 24 */
  rssSlackMb: number;
  /** End open files may exceed warm-up open files by this many. @default 20 */
  fdSlack: number;
}

/** The default limits. */
export const DEFAULT_LIMITS: Readonly<Limits> = { rssFactor: 1.5, rssSlackMb: 24, fdSlack: 20 };

/** One checked invariant. */
export interface Check {
  /** `1a`, `2b`, ...: the invariant's number and a letter. */
  id: string;
  title: string;
  pass: boolean;
  /** What was measured, for people. */
  measured: string;
  /** Examples that explain a failure. */
  details?: string[];
}

function tokensText(t: Tokens): string {
  return `${t.prompt}/${t.completion}/${t.total}`;
}

function sameTokens(a: Tokens, b: Tokens): boolean {
  return a.prompt === b.prompt && a.completion === b.completion && a.total === b.total;
}

function byUpstreamText(r: Record<string, number>): string {
  return Object.keys(r).sort().map((k) => `${k} ${r[k]}`).join(", ");
}

/**
 * Checks every invariant.
 * @param f the run's figures
 * @param limits the flatness limits
 * @returns one check per measured property, in invariant order
 */
export function checkInvariants(f: Figures, limits: Limits = DEFAULT_LIMITS): Check[] {
  const o = f.outcomes;
  const honest = o.error_status + o.stream_error;
  const ok = o.ok_json + o.ok_stream;
  const checks: Check[] = [
    {
      id: "1a",
      title: "no lost requests",
      pass: o.lost === 0 && ok + honest + o.lost + o.hang + o.crossing === f.clientRequests,
      measured: `${f.clientRequests} requests: ${ok} ok, ${honest} honest errors, ${o.lost} lost`,
      details: f.examples.lost,
    },
    {
      id: "1b",
      title: "no hangs past the bound",
      pass: o.hang === 0,
      measured: `${o.hang} hung`,
      details: f.examples.hang,
    },
    {
      id: "1c",
      title: "no crossed answers",
      pass: o.crossing === 0,
      measured: `${o.crossing} requests got another request's marker`,
      details: f.examples.crossing,
    },
    {
      id: "1d",
      title: "requests reached the upstreams intact (body marker == header marker)",
      pass: f.mixedRequests.length === 0,
      measured: `${f.mixedRequests.length} mixed`,
      details: f.mixedRequests,
    },
    {
      id: "1e",
      title: "proxy counted every client request once",
      pass: f.proxyRequests === f.clientRequests,
      measured: `client ${f.clientRequests}, llm_balance_requests_total ${f.proxyRequests}`,
    },
  ];
  const a = f.arrivals.total;
  const late = f.arrivals.late;
  const at = f.attempts;
  // attempts == arrivals, except that an attempt the upstream received only after closing the
  // idle connection may count (the proxy cannot know it was never processed) or not (re-sent)
  const within = (n: number, arrived: number, lateOnes: number) =>
    arrived <= n && n <= arrived + lateOnes;
  const upstreams = [
    ...new Set([...Object.keys(f.arrivals.byUpstream), ...Object.keys(at.statsByUpstream)]),
  ];
  const perUpstream = upstreams.every((u) =>
    within(
      at.statsByUpstream[u] ?? 0,
      f.arrivals.byUpstream[u] ?? 0,
      f.arrivals.lateByUpstream[u] ?? 0,
    )
  );
  const lateText = `${late} late (came after the upstream's idle close)`;
  checks.push(
    {
      id: "2a",
      title: "upstream arrivals == attempts in /stats",
      pass: within(at.stats, a, late) && perUpstream,
      measured: `arrivals ${a} (${byUpstreamText(f.arrivals.byUpstream)}) + ${lateText}, ` +
        `/stats requests ${at.stats} (${byUpstreamText(at.statsByUpstream)}), difference ${
          a - at.stats
        }`,
    },
    {
      id: "2b",
      title: "upstream arrivals == attempts in /metrics",
      pass: within(at.metrics, a, late) && within(at.metricsByKey, a, late),
      measured:
        `arrivals ${a} + ${late} late, llm_balance_attempts_total ${at.metrics}, llm_balance_key_attempts_total ${at.metricsByKey}`,
    },
    {
      id: "2c",
      title: "no request re-sent unseen (per request: marker arrivals <= logged attempts)",
      pass: f.resent.count === 0,
      measured: `${f.resent.count} requests reached the upstreams ${f.resent.extra} more times ` +
        "than the proxy's log counts attempts",
      details: f.resent.examples,
    },
    {
      id: "2d",
      title:
        "no attempt counted that reached no upstream (per request: attempts <= arrivals + late)",
      pass: f.unseen.count === 0,
      measured:
        `${f.unseen.count} requests had ${f.unseen.extra} logged attempts no upstream received`,
      details: f.unseen.examples,
    },
  );
  const t = f.tokens;
  checks.push(
    {
      id: "3a",
      title: "tokens sent == tokens in /stats (prompt/completion/total)",
      pass: sameTokens(t.upstream, t.stats),
      measured: `upstreams ${tokensText(t.upstream)}, /stats ${tokensText(t.stats)}`,
    },
    {
      id: "3b",
      title: "tokens sent == tokens in /metrics",
      pass: sameTokens(t.upstream, t.metrics) && sameTokens(t.upstream, t.metricsByKey),
      measured: `llm_balance_tokens_total ${tokensText(t.metrics)}, llm_balance_key_tokens_total ${
        tokensText(t.metricsByKey)
      }`,
    },
    {
      id: "3c",
      title: "tokens sent == tokens the clients received",
      pass: sameTokens(t.upstream, t.client),
      measured: `clients ${tokensText(t.client)}`,
    },
  );
  const p = f.process;
  const rssLimit = p.warmRssMb * limits.rssFactor + limits.rssSlackMb;
  const fdLimit = p.warmFds + limits.fdSlack;
  checks.push(
    {
      id: "4a",
      title: "RSS flat",
      pass: Number.isFinite(p.endRssMb) && p.endRssMb <= rssLimit,
      measured: `warm-up ${p.warmRssMb.toFixed(1)} MB, end ${p.endRssMb.toFixed(1)} MB, peak ${
        p.peakRssMb.toFixed(1)
      } MB (limit ${
        rssLimit.toFixed(1)
      } MB = warm-up x ${limits.rssFactor} + ${limits.rssSlackMb})`,
    },
    {
      id: "4b",
      title: "open files flat",
      pass: Number.isFinite(p.endFds) && p.endFds <= fdLimit,
      measured:
        `warm-up ${p.warmFds}, end ${p.endFds}, peak ${p.peakFds} (limit ${fdLimit} = warm-up + ${limits.fdSlack})`,
    },
  );
  if (f.redis !== undefined) checks.push(...redisChecks(f.redis));
  return checks;
}

/**
 * The checks of a `--redis` run.
 *
 * What Redis must count at the end, exactly: Redis restarts empty, and the proxy gives it back
 * each key's day counts as it last saw them (its last grant's reply, less what it gave back
 * since; tokens as its last flush found them), then adds what it counted while Redis was down.
 * The soak's clients had all stopped, every earlier attempt had ended, and the tokens were in,
 * before the kill; so what Redis holds at the end is the whole run's: every attempt took its
 * request from a grant (of the first Redis or the second) or while Redis was down (counted
 * locally, owed, added when it is back). An attempt whose request the proxy gives back (classes
 * `connect`, `stale`, `auth`: the upstream never answered) does not count, whenever it ended.
 * After the load, with grants given back (a second idle) and tokens added (every 100 ms):
 * cluster `requests_per_day.used` == attempts - given back, per key and in all, and the
 * attempts are the upstreams' arrivals (give or take late ones, as 2a); cluster
 * `tokens_per_day.used` == tokens the upstreams sent, exactly. (One instance: with several, the
 * restarted Redis gets the highest of their views, a bound rather than an exact count. A run
 * that crosses the keys' daily reset, 00:00 UTC, splits the counts between two days.)
 */
function redisChecks(r: RedisFigures): Check[] {
  const k = r.whole;
  const expected = k.attempts - k.givenBack;
  const attemptsMatch = k.arrivals <= k.attempts && k.attempts <= k.arrivals + k.late;
  const without = r.keysWithout.length > 0
    ? `; no cluster_budgets: ${r.keysWithout.join(", ")}`
    : "";
  return [
    {
      id: "5a",
      title: "Redis down and back logged exactly once each",
      pass: r.killed && r.lines.down === 1 && r.lines.back === 1 && r.lines.unreachable === 0,
      measured: `${r.killed ? "killed once" : "never killed (the load ended first)"}; ` +
        `"Redis is down" ${r.lines.down}, "Redis is back" ${r.lines.back}, ` +
        `"cannot be reached" ${r.lines.unreachable}`,
    },
    {
      id: "5b",
      title: "llm_balance_redis_down_total == 1 and llm_balance_redis_up == 1 at the end",
      pass: r.downTotal === 1 && r.up === 1,
      measured: `llm_balance_redis_down_total ${r.downTotal}, llm_balance_redis_up ${r.up}`,
    },
    {
      id: "5c",
      title: "served while Redis was down; no answer or request log mentions Redis",
      pass: r.whileDown.ok > 0 && r.mentions.length === 0,
      measured: `${r.whileDown.answered} requests answered while Redis was down, ` +
        `${r.whileDown.ok} ok; ${r.mentions.length} mention Redis or the shared state`,
      details: r.mentions,
    },
    {
      id: "5d",
      title:
        "cluster requests_per_day == attempts - given back, Redis restarted empty midway (per key and in all)",
      pass: r.killed && attemptsMatch && r.cluster.requests === expected &&
        r.perKey.requests.length === 0 && r.keysWithout.length === 0,
      measured: `cluster ${r.cluster.requests}, expected ${expected} = ${k.attempts} attempts ` +
        `(arrivals ${k.arrivals} + ${k.late} late) - ${k.givenBack} given back ` +
        `(${k.givenBackWhileDown} while Redis was down), difference ${
          r.cluster.requests - expected
        }${without}`,
      details: r.perKey.requests,
    },
    {
      id: "5e",
      title: "cluster tokens_per_day == tokens the upstreams sent, Redis restarted empty midway",
      pass: r.killed && r.cluster.tokens === k.tokens && r.perKey.tokens.length === 0 &&
        r.keysWithout.length === 0,
      measured: `cluster ${r.cluster.tokens}, upstreams ${k.tokens}, difference ${
        r.cluster.tokens - k.tokens
      }${without}`,
      details: r.perKey.tokens,
    },
  ];
}

/**
 * Renders checks as lines `PASS 1a title: measured`, with details indented under failures.
 * @param checks the checks
 * @param detailLines how many detail lines to show per failed check @default 8
 */
export function formatChecks(checks: readonly Check[], detailLines = 8): string {
  const out: string[] = [];
  for (const c of checks) {
    out.push(`${c.pass ? "PASS" : "FAIL"} ${c.id} ${c.title}: ${c.measured}`);
    if (!c.pass && c.details !== undefined) {
      for (const d of c.details.slice(0, detailLines)) out.push(`       ${d}`);
      if (c.details.length > detailLines) {
        out.push(`       ... ${c.details.length - detailLines} more`);
      }
    }
  }
  return out.join("\n");
}
