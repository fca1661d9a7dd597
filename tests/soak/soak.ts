/**
 * @module
 * `deno task soak`: a bounded soak of llm-balance. Starts the proxy (`deno run main.ts serve`
 * on a temp config, 127.0.0.1, free port) in front of three fault-injecting raw HTTP/1.1
 * upstreams (tests/soak/_faulty_upstream.ts), drives it with concurrent `fetch` clients whose
 * requests carry unique markers (tests/soak/_load.ts), then reads `/stats`, `/metrics` and the
 * proxy's log and checks the invariants (tests/soak/_invariants.ts): no lost, hung or crossed
 * requests; upstream arrivals == attempts the proxy counted; tokens sent == tokens counted;
 * RSS and open files flat. Prints each check with PASS/FAIL and exits 1 on any failure.
 *
 * With `--redis` the proxy keeps shared state on a `redis-server` of the soak's own (free
 * 127.0.0.1 port, nothing saved, killed at the end), with budgets on every upstream too large
 * ever to be spent, so that every request takes its budget through Redis. Midway the soak holds
 * its clients until every request has ended, kills Redis (SIGKILL), lets the clients go on once
 * the proxy has seen it down, and starts Redis again, empty, on the same port 2 s after the
 * kill. Further checks: the outage is logged once each way, requests are served meanwhile and
 * no answer mentions it, `llm_balance_redis_down_total` is 1 and `llm_balance_redis_up` 1 at the
 * end, and the cluster's budget counts are exact for the whole run: the restarted Redis gets
 * the proxy's last view back, then what it spent while Redis was down (see `redisChecks` in
 * tests/soak/_invariants.ts). Exits 2 when `redis-server` is not installed.
 *
 * Usage: `deno task soak [--seconds N] [--concurrency N] [--requests N] [--seed N] [--redis]
 * [--json]` (Linux: RSS and open files are read from /proc).
 */

import { parseArgs } from "node:util";

import { seededRandom } from "../helpers/candidates.ts";
import { MAIN, type ServeProcess, startServe } from "../helpers/cli.ts";
import { hasRedis, RedisServer } from "../helpers/redis.ts";
import { FaultyUpstream } from "./_faulty_upstream.ts";
import {
  attemptsByName,
  BACK_LINE,
  DOWN_LINE,
  gather,
  type KillSnapshot,
  readStats,
  type RedisInput,
  tokensByName,
} from "./_figures.ts";
import {
  type Check,
  checkInvariants,
  DEFAULT_LIMITS,
  formatChecks,
  type RedisFigures,
} from "./_invariants.ts";
import { Gate, OUTCOMES, type RequestResult, runLoad, sleep } from "./_load.ts";
import { type ProcessSample, Sampler } from "./_process.ts";

const HELP = `deno task soak [options]

Soaks llm-balance behind three fault-injecting upstreams and checks its invariants.

  --seconds N       seconds of load (no new request after)                 [60]
  --concurrency N   concurrent client loops                                [16]
  --requests N      most requests in all                                   [1000000]
  --seed N          seed of every random choice                            [1]
  --bound S         seconds after which a request counts as hung           [15]
  --redis           shared state on a redis-server of its own, killed midway for 2 s and
                    started again; checks the outage and the cluster's budget counts
                    (needs redis-server; --seconds 6 at least)
  --json            print the summary to stderr and one JSON line to stdout
  --main FILE       llm-balance entry point                                [main.ts]
  --keep            keep the temp folder (config, proxy log)
  --help            this text`;

/** The soak's settings, from the command line. */
export interface Settings {
  seconds: number;
  concurrency: number;
  requests: number;
  seed: number;
  boundSeconds: number;
  /** Shared state on Redis, killed and restarted midway. */
  redis: boolean;
  json: boolean;
  keep: boolean;
  /** llm-balance's entry point. */
  main: string;
}

class UsageError extends Error {}

function parseSettings(args: string[]): Settings | undefined {
  const { values } = parseArgs({
    args,
    options: {
      seconds: { type: "string", default: "60" },
      concurrency: { type: "string", default: "16" },
      requests: { type: "string", default: "1000000" },
      seed: { type: "string", default: "1" },
      bound: { type: "string", default: "15" },
      redis: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      main: { type: "string", default: MAIN },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return undefined;
  const num = (name: string, text: string, min: number, int = true) => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) {
      throw new UsageError(
        `Cannot run soak: --${name} must be ${int ? "an integer" : "a number"} >= ${min}`,
      );
    }
    return n;
  };
  const seconds = num("seconds", values.seconds, 1, false);
  if (values.redis && seconds < MIN_REDIS_SECONDS) {
    throw new UsageError(
      `Cannot run soak: --redis needs --seconds ${MIN_REDIS_SECONDS} at least (Redis is down ` +
        `for ${DOWN_MS / 1000} s midway, and the load goes on after)`,
    );
  }
  if (values.redis && !hasRedis) {
    throw new UsageError(
      "Cannot run soak --redis: redis-server is not installed (on Debian or Ubuntu: " +
        "apt-get install redis-server), or it does not run",
    );
  }
  return {
    seconds,
    concurrency: num("concurrency", values.concurrency, 1),
    requests: num("requests", values.requests, 1),
    seed: num("seed", values.seed, 0),
    boundSeconds: num("bound", values.bound, 1, false),
    redis: values.redis,
    json: values.json,
    keep: values.keep,
    main: values.main,
  };
}

/** Idle keep-alive time of the upstreams, in ms (`Keep-Alive: timeout=1` answers: 1000). */
const IDLE_MS: readonly [number, number] = [200, 800];
/** Keys per upstream. */
const KEYS = [4, 3, 3];
/** How long Redis stays down (`--redis`), in ms. */
const DOWN_MS = 2000;
/** The shortest run with `--redis`, in seconds. */
const MIN_REDIS_SECONDS = 6;
/**
 * Budgets of every upstream's keys with `--redis`: far more than a run can spend, so that no key
 * is ever out, yet every request takes its budget through Redis (grants of 20 requests).
 */
const GENEROUS_QUOTA = {
  requests_per_day: 100_000_000,
  tokens_per_day: 10_000_000_000,
  requests_per_minute: 10_000_000,
};

/** One key of the proxy's config. */
interface SoakKey {
  upstream: FaultyUpstream;
  key: string;
  /** `u1-k1`. */
  name: string;
}

/** The keys of every upstream. */
function soakKeys(upstreams: readonly FaultyUpstream[], seed: number): SoakKey[] {
  const random = seededRandom(seed + 7);
  const hex = () => Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, "0");
  return upstreams.flatMap((u, i) =>
    Array.from({ length: KEYS[i] ?? 2 }, (_, k) => ({
      upstream: u,
      key: `soak-${u.name}-k${k + 1}-${hex()}${hex()}`,
      name: `${u.name}-k${k + 1}`,
    }))
  );
}

/**
 * The proxy's config: three upstreams, small timeouts, 3 attempts, short rests; with a Redis URL,
 * shared state on it and generous budgets on every upstream.
 */
function proxyConfig(
  upstreams: readonly FaultyUpstream[],
  keys: readonly SoakKey[],
  adminKey: string,
  redisUrl: string | undefined,
): string {
  return JSON.stringify(
    {
      server: { host: "127.0.0.1", port: 0, drain_timeout: 2 },
      log: { level: "info", format: "json" },
      auth: { admin_key: adminKey },
      ...(redisUrl === undefined ? {} : { state: { redis: redisUrl, prefix: "soak:" } }),
      upstreams: Object.fromEntries(upstreams.map((u) => [u.name, {
        base_url: `${u.origin}/v1`,
        keys: keys.filter((k) => k.upstream === u).map((k) => ({ key: k.key, name: k.name })),
        timeout: { connect: 2, first_byte: 1, idle: 1, total: 10 },
        ...(redisUrl === undefined ? {} : { quota: GENEROUS_QUOTA }),
      }])),
      pools: {
        default: {
          strategy: "round_robin",
          upstreams: upstreams.map((u) => u.name),
          // requests carry a `user`: affinity pins them (and moves pins as faults rest keys)
          affinity: { by: ["user"] },
        },
      },
      retry: { max_attempts: 3, backoff_base: 0.05, backoff_max: 0.2, deadline: 10 },
      health: { max_failures: 4, ejection_base: 1, ejection_max: 2, rate_limit_rest: 1 },
    },
    null,
    1,
  );
}

function progress(message: string): void {
  console.error(`soak: ${message}`);
}

/** Waits until the proxy has no request in flight (at most `ms`). */
async function settle(url: string, adminKey: string, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let inFlight = NaN;
  while (Date.now() < until) {
    inFlight = (await readStats(url, adminKey)).reduce((n, r) => n + r.in_flight, 0);
    if (inFlight === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return inFlight;
}

function requestLines(logs: readonly Record<string, unknown>[]): number {
  return logs.filter((r) => r.msg === "request" && r.path === "/v1/chat/completions").length;
}

/** Waits until `ok()` (polled every 20 ms), at most `ms`; returns whether it came. */
async function until(ok: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() >= end) return false;
    await sleep(20);
  }
  return true;
}

function logged(server: ServeProcess, msg: string): boolean {
  return server.logs().some((r) => r.msg === msg);
}

/** Redis's outage in a `--redis` run, as the soak drove it. */
interface Outage {
  /** The counts at the kill; undefined until Redis is killed (or when it never was). */
  killed: KillSnapshot | undefined;
  /** Requests that had ended when the clients went on after the kill. */
  before: number;
  /** Where the outage is: answers in `down` count as answered while Redis was down. */
  phase: "before" | "down" | "back";
  whileDown: { answered: number; ok: number };
  /** Seconds into the load of the kill. */
  killedAtS: number;
  /** How long the clients were held before the kill, in ms. */
  heldMs: number;
  /** From the kill to the proxy's "down" line, to the restart, and to its "back" line, in ms. */
  seenDownMs: number;
  restartMs: number;
  seenBackMs: number;
}

/** What {@link breakRedis} works on. */
interface OutagePlan {
  redis: RedisServer;
  server: ServeProcess;
  url: string;
  adminKey: string;
  upstreams: readonly FaultyUpstream[];
  names: ReadonlyMap<string, string>;
  gate: Gate;
  results: readonly RequestResult[];
  /** `performance.now()` when the load started. */
  startedAt: number;
  settings: Settings;
  outage: Outage;
  /** Aborted when the load is over. */
  signal: AbortSignal;
}

/**
 * Kills Redis midway and starts it again: holds the clients until no request is in flight and
 * the proxy has added its last tokens to Redis, takes the counts, kills Redis (SIGKILL), lets
 * the clients go on once the proxy has seen it down (so that no request takes from a grant of
 * the dead Redis), and starts Redis again on its port {@link DOWN_MS} after the kill.
 * @throws {Error} when the clients or the proxy do not come to rest, or the proxy never sees
 *   Redis down
 */
async function breakRedis(p: OutagePlan): Promise<void> {
  const { redis, server, gate, outage } = p;
  await sleep(p.startedAt + p.settings.seconds * 500 - performance.now(), p.signal);
  if (p.signal.aborted) return;
  const heldFrom = performance.now();
  gate.close();
  try {
    progress("holding the clients to kill Redis");
    if (!(await gate.idle(p.settings.boundSeconds * 1000 + 5000))) {
      throw new Error(`${gate.busy} clients still in a request: Redis not killed`);
    }
    const inFlight = await settle(p.url, p.adminKey, 5000);
    if (inFlight !== 0) throw new Error(`${inFlight} attempts in flight: Redis not killed`);
    // the proxy adds tokens to Redis every 100 ms: let the last ones in
    await sleep(300);
    const killed: KillSnapshot = {
      attempts: attemptsByName(await readStats(p.url, p.adminKey)),
      tokens: tokensByName(p.upstreams, p.names),
    };
    await redis.kill();
    const killedAt = performance.now();
    outage.killed = killed;
    outage.killedAtS = (killedAt - p.startedAt) / 1000;
    outage.heldMs = killedAt - heldFrom;
    if (!(await until(() => logged(server, DOWN_LINE), 5000))) {
      throw new Error("the proxy did not log Redis down within 5 s of the kill");
    }
    outage.seenDownMs = performance.now() - killedAt;
    outage.before = p.results.length;
    outage.phase = "down";
    gate.open();
    progress(`Redis killed at ${outage.killedAtS.toFixed(1)} s, down for ${DOWN_MS / 1000} s`);
    await sleep(killedAt + DOWN_MS - performance.now());
    await redis.restart();
    outage.restartMs = performance.now() - killedAt;
    const back = await until(() => logged(server, BACK_LINE), 10_000);
    outage.phase = "back";
    outage.seenBackMs = performance.now() - killedAt;
    progress(
      back
        ? `Redis started again; the proxy saw it back ${
          ((outage.seenBackMs - outage.restartMs) / 1000).toFixed(1)
        } s later`
        : "Redis started again; the proxy did not see it back within 10 s",
    );
  } finally {
    outage.phase = outage.phase === "down" ? "back" : outage.phase;
    gate.open();
    await redis.restart();
  }
}

/** The result of a run: the checks and everything the report shows. */
export interface SoakReport {
  pass: boolean;
  settings: Settings;
  deno: string;
  httpClient: string;
  durationS: number;
  requests: number;
  outcomes: Record<string, number>;
  errors: Record<string, number>;
  faults: Record<string, number>;
  connections: number;
  idleCloses: number;
  /** Requests that came after an idle close (received, never processed). */
  late: number;
  unexpectedBytes: number;
  logged: number;
  arrivals: number;
  attempts: { stats: number; metrics: number; metricsByKey: number };
  tokens: Record<string, { prompt: number; completion: number; total: number }>;
  process: Record<string, number>;
  /** Samples of the proxy about every 10 s: seconds, RSS in MB, open files. */
  series: [number, number, number][];
  /** With `--redis`: the outage's timing (ms after the kill) and the whole run's counts. */
  redis?: {
    killedAtS: number;
    heldMs: number;
    seenDownMs: number;
    restartMs: number;
    seenBackMs: number;
    whileDown: RedisFigures["whileDown"];
    whole: RedisFigures["whole"];
    cluster: RedisFigures["cluster"];
  };
  checks: Check[];
}

function everyTenSeconds(series: readonly [number, number, number][]): [number, number, number][] {
  let next = 0;
  const out: [number, number, number][] = [];
  for (const s of series) {
    if (s[0] < next && s !== series.at(-1)) continue;
    out.push(s);
    next = s[0] + 10;
  }
  return out;
}

function sorted(r: Record<string, number>): string {
  return Object.entries(r).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ");
}

function summary(r: SoakReport): string {
  const t = (k: string) => {
    const v = r.tokens[k]!;
    return `${v.prompt}/${v.completion}/${v.total}`;
  };
  const p = r.process;
  return [
    `llm-balance soak: ${r.settings.seconds} s, ${r.settings.concurrency} clients, seed ${r.settings.seed}, ` +
    `deno ${r.deno}, upstream client ${r.httpClient}`,
    `requests   ${r.requests} in ${r.durationS.toFixed(1)} s (${
      (r.requests / r.durationS).toFixed(0)
    }/s): ${OUTCOMES.map((o) => `${o} ${r.outcomes[o] ?? 0}`).join(", ")}`,
    `errors     ${sorted(r.errors) || "none"}`,
    `upstreams  ${r.arrivals} arrivals on ${r.connections} connections, ${r.idleCloses} idle closes, ` +
    `${r.late} requests after an idle close` +
    (r.unexpectedBytes ? `, ${r.unexpectedBytes} bytes on hung connections` : ""),
    `faults     ${sorted(r.faults)}`,
    `attempts   arrivals ${r.arrivals}, /stats ${r.attempts.stats}, llm_balance_attempts_total ${r.attempts.metrics}, ` +
    `llm_balance_key_attempts_total ${r.attempts.metricsByKey}; ${r.logged}/${r.requests} requests logged`,
    `tokens     (prompt/completion/total) upstreams ${t("upstream")}, /stats ${t("stats")}, ` +
    `metrics ${t("metrics")}, clients ${t("client")}`,
    `process    RSS ${p.warmRssMb?.toFixed(1)} MB after warm-up, ${
      p.endRssMb?.toFixed(1)
    } MB at the end, ` +
    `${p.peakRssMb?.toFixed(1)} MB peak; open files ${p.warmFds}, ${p.endFds}, ${p.peakFds} peak`,
    `samples    ${
      r.series.map(([t, rss, fds]) => `${t.toFixed(0)} s ${rss.toFixed(0)} MB ${fds} fds`).join(
        ", ",
      )
    }`,
    ...(r.redis === undefined ? [] : redisSummary(r.redis)),
    "",
    formatChecks(r.checks),
    "",
    r.pass ? "soak PASSED" : "soak FAILED",
  ].join("\n");
}

function redisSummary(r: NonNullable<SoakReport["redis"]>): string[] {
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const k = r.whole;
  return [
    `redis      killed at ${r.killedAtS.toFixed(1)} s (clients held ${
      s(r.heldMs)
    } s before it), seen down after ${r.seenDownMs.toFixed(0)} ms, started again after ${
      s(r.restartMs)
    } s, seen back after ${s(r.seenBackMs)} s; ${r.whileDown.answered} requests answered ` +
    `while down (${r.whileDown.ok} ok)`,
    `cluster    whole run: requests_per_day ${r.cluster.requests} (attempts ${k.attempts} - ` +
    `${k.givenBack} given back, ${k.givenBackWhileDown} of them while down; arrivals ` +
    `${k.arrivals} + ${k.late} late), tokens_per_day ${r.cluster.tokens} (sent ${k.tokens})`,
  ];
}

/**
 * Runs the soak.
 * @param settings the run's settings
 * @param signal stops the load early
 * @returns the report
 */
export async function soak(settings: Settings, signal?: AbortSignal): Promise<SoakReport> {
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-soak-" });
  const upstreams = await Promise.all(["u1", "u2", "u3"].map((name, i) =>
    FaultyUpstream.start({
      name,
      random: seededRandom(settings.seed * 1000 + i + 1),
      idleMs: IDLE_MS,
    })
  ));
  const adminKey = `soak-admin-${crypto.randomUUID()}`;
  const keys = soakKeys(upstreams, settings.seed);
  let server: ServeProcess | undefined;
  let sampler: Sampler | undefined;
  let redis: RedisServer | undefined;
  try {
    if (settings.redis) {
      redis = await RedisServer.start();
      progress(`redis-server on port ${redis.port}`);
    }
    const config = `${dir}/config.json`;
    await Deno.writeTextFile(config, proxyConfig(upstreams, keys, adminKey, redis?.url));
    server = await startServe(["run", "-A", settings.main, "serve", "--config", config], {
      binary: Deno.execPath(),
      timeoutMs: 60_000,
    });
    const url = server.url.replace(/\/+$/, "");
    const pid = server.child.pid;
    progress(
      `${settings.main} (pid ${pid}) at ${url}; upstreams ${upstreams.map((u) => u.origin)}`,
    );
    sampler = new Sampler(pid);
    const warmAfterMs = Math.min(10, Math.max(2, settings.seconds * 0.2)) * 1000;
    let warm: ProcessSample | undefined;
    const warmTimer = setTimeout(() => warm = sampler?.sample(), warmAfterMs);
    const results: RequestResult[] = [];
    let last = 0;
    const names = new Map(keys.map((k) => [k.key, k.name]));
    const gate = new Gate();
    const outage: Outage = {
      killed: undefined,
      before: 0,
      phase: "before",
      whileDown: { answered: 0, ok: 0 },
      killedAtS: NaN,
      heldMs: NaN,
      seenDownMs: NaN,
      restartMs: NaN,
      seenBackMs: NaN,
    };
    const loadOver = new AbortController();
    const startedAt = performance.now();
    // its error, if any, once the load is over (an unhandled rejection would end the soak now)
    const broken = redis === undefined ? Promise.resolve(undefined) : breakRedis({
      redis,
      server,
      url,
      adminKey,
      upstreams,
      names,
      gate,
      results,
      startedAt,
      settings,
      outage,
      signal: signal === undefined ? loadOver.signal : AbortSignal.any([signal, loadOver.signal]),
    }).then(() => undefined, (error: unknown) => error);
    const ticker = setInterval(() => {
      const s = (performance.now() - startedAt) / 1000;
      const ok = results.filter((r) => r.outcome.startsWith("ok")).length;
      progress(
        `${s.toFixed(0)} s: ${results.length} requests (+${results.length - last}), ${ok} ok`,
      );
      last = results.length;
    }, 10_000);
    try {
      await runLoad({
        url,
        concurrency: settings.concurrency,
        seconds: settings.seconds,
        maxRequests: settings.requests,
        random: seededRandom(settings.seed),
        boundMs: settings.boundSeconds * 1000,
        idleMs: IDLE_MS[1],
        lullEvery: Math.min(10, settings.seconds / 2),
        signal,
        gate,
        onResult: (r) => {
          results.push(r);
          if (outage.phase !== "down") return;
          outage.whileDown.answered++;
          if (r.outcome === "ok_json" || r.outcome === "ok_stream") outage.whileDown.ok++;
        },
      });
    } finally {
      clearInterval(ticker);
      clearTimeout(warmTimer);
      loadOver.abort();
    }
    const outageError = await broken;
    if (outageError !== undefined) throw outageError;
    const durationS = (performance.now() - startedAt) / 1000;
    warm ??= sampler.sample();
    const inFlight = await settle(url, adminKey, 5000);
    if (inFlight !== 0) progress(`${inFlight} requests still in flight in the proxy after 5 s`);
    // the proxy writes a request's log line once its response has ended: let the last ones come
    const until = Date.now() + 3000;
    while (Date.now() < until && requestLines(server.logs()) < results.length) {
      await new Promise((r) => setTimeout(r, 100));
    }
    if (redis !== undefined) {
      // grants unused for a second go back to Redis, tokens are added every 100 ms
      await sleep(durationS * 1000 + 1500 - (performance.now() - startedAt));
    }
    const end = sampler.sample();
    sampler.stop();
    const redisInput: RedisInput | undefined = redis === undefined ? undefined : {
      killed: outage.killed,
      after: new Set(results.slice(outage.before).map((r) => r.marker)),
      whileDown: outage.whileDown,
      names,
    };
    const g = await gather({
      url,
      adminKey,
      upstreams,
      results,
      logs: server.logs(),
      process: {
        warmRssMb: warm.rssMb,
        endRssMb: end.rssMb,
        peakRssMb: sampler.peakRssMb,
        warmFds: warm.fds,
        endFds: end.fds,
        peakFds: sampler.peakFds,
      },
      redis: redisInput,
    });
    const checks = checkInvariants(g.figures, DEFAULT_LIMITS);
    const f = g.figures;
    return {
      pass: checks.every((c) => c.pass),
      settings,
      deno: Deno.version.deno,
      httpClient: Deno.env.get("LLM_BALANCE_HTTP_CLIENT") === "fetch" ? "fetch" : "http1",
      durationS,
      requests: results.length,
      outcomes: f.outcomes,
      errors: g.errors,
      faults: g.faults,
      connections: upstreams.reduce((n, u) => n + u.connections, 0),
      idleCloses: upstreams.reduce((n, u) => n + u.idleCloses, 0),
      late: f.arrivals.late,
      unexpectedBytes: upstreams.reduce((n, u) => n + u.unexpectedBytes, 0),
      logged: g.logged,
      arrivals: f.arrivals.total,
      attempts: {
        stats: f.attempts.stats,
        metrics: f.attempts.metrics,
        metricsByKey: f.attempts.metricsByKey,
      },
      tokens: { ...f.tokens },
      process: { ...f.process },
      series: everyTenSeconds(sampler.series),
      ...(f.redis === undefined ? {} : {
        redis: {
          killedAtS: outage.killedAtS,
          heldMs: outage.heldMs,
          seenDownMs: outage.seenDownMs,
          restartMs: outage.restartMs,
          seenBackMs: outage.seenBackMs,
          whileDown: { ...f.redis.whileDown },
          whole: { ...f.redis.whole },
          cluster: { ...f.redis.cluster },
        },
      }),
      checks,
    };
  } finally {
    sampler?.stop();
    if (server !== undefined) {
      if (settings.keep) {
        await Deno.writeTextFile(`${dir}/llm-balance.log`, server.lines.join("\n") + "\n");
      }
      await server.close();
    }
    await Promise.all(upstreams.map((u) => u.close()));
    await redis?.stop();
    if (settings.keep) progress(`config and proxy log kept in ${dir}`);
    else await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  let code = 1;
  const abort = new AbortController();
  const onSignal = () => {
    if (abort.signal.aborted) Deno.exit(130);
    progress("interrupted: finishing the requests in flight, then stopping (again to quit now)");
    abort.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const settings = parseSettings(Deno.args);
    if (settings === undefined) {
      console.log(HELP);
      code = 0;
    } else {
      if (Deno.build.os !== "linux") progress("not Linux: RSS and open files cannot be read");
      const report = await soak(settings, abort.signal);
      if (settings.json) {
        console.error(summary(report));
        console.log(JSON.stringify(report));
      } else {
        console.log(summary(report));
      }
      code = report.pass ? 0 : 1;
    }
  } catch (error) {
    if (abort.signal.aborted) {
      // Ctrl-C reaches the proxy too (same process group): it may be gone before the report
      progress(`interrupted: no report (${error instanceof Error ? error.message : error})`);
      code = 130;
    } else {
      console.error(error instanceof UsageError ? error.message : error);
      code = error instanceof UsageError ? 2 : 1;
    }
  }
  Deno.exit(code);
}
