/**
 * @module
 * The soak's invariants, as pure functions of the figures gathered at the end of a run: no
 * lost requests (and no hangs, no crossings), upstream arrivals equal to the attempts the proxy
 * counted, tokens sent equal to tokens counted, and the proxy's memory and open files flat.
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
  return checks;
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
