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
 * Usage: `deno task soak [--seconds N] [--concurrency N] [--requests N] [--seed N] [--json]`
 * (Linux: RSS and open files are read from /proc).
 */

import { parseArgs } from "node:util";

import { seededRandom } from "../helpers/candidates.ts";
import { MAIN, type ServeProcess, startServe } from "../helpers/cli.ts";
import { FaultyUpstream } from "./_faulty_upstream.ts";
import { gather, readStats } from "./_figures.ts";
import { type Check, checkInvariants, DEFAULT_LIMITS, formatChecks } from "./_invariants.ts";
import { OUTCOMES, type RequestResult, runLoad } from "./_load.ts";
import { type ProcessSample, Sampler } from "./_process.ts";

const HELP = `deno task soak [options]

Soaks llm-balance behind three fault-injecting upstreams and checks its invariants.

  --seconds N       seconds of load (no new request after)                 [60]
  --concurrency N   concurrent client loops                                [16]
  --requests N      most requests in all                                   [1000000]
  --seed N          seed of every random choice                            [1]
  --bound S         seconds after which a request counts as hung           [15]
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
  return {
    seconds: num("seconds", values.seconds, 1, false),
    concurrency: num("concurrency", values.concurrency, 1),
    requests: num("requests", values.requests, 1),
    seed: num("seed", values.seed, 0),
    boundSeconds: num("bound", values.bound, 1, false),
    json: values.json,
    keep: values.keep,
    main: values.main,
  };
}

/** Idle keep-alive time of the upstreams, in ms (`Keep-Alive: timeout=1` answers: 1000). */
const IDLE_MS: readonly [number, number] = [200, 800];
/** Keys per upstream. */
const KEYS = [4, 3, 3];

/** The proxy's config: three upstreams, small timeouts, 3 attempts, short rests. */
function proxyConfig(upstreams: readonly FaultyUpstream[], adminKey: string, seed: number): string {
  const random = seededRandom(seed + 7);
  const hex = () => Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, "0");
  return JSON.stringify(
    {
      server: { host: "127.0.0.1", port: 0, drain_timeout: 2 },
      log: { level: "info", format: "json" },
      auth: { admin_key: adminKey },
      upstreams: Object.fromEntries(upstreams.map((u, i) => [u.name, {
        base_url: `${u.origin}/v1`,
        keys: Array.from({ length: KEYS[i] ?? 2 }, (_, k) => ({
          key: `soak-${u.name}-k${k + 1}-${hex()}${hex()}`,
          name: `${u.name}-k${k + 1}`,
        })),
        timeout: { connect: 2, first_byte: 1, idle: 1, total: 10 },
      }])),
      pools: { default: { strategy: "round_robin", upstreams: upstreams.map((u) => u.name) } },
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
    "",
    formatChecks(r.checks),
    "",
    r.pass ? "soak PASSED" : "soak FAILED",
  ].join("\n");
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
  let server: ServeProcess | undefined;
  let sampler: Sampler | undefined;
  try {
    const config = `${dir}/config.json`;
    await Deno.writeTextFile(config, proxyConfig(upstreams, adminKey, settings.seed));
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
    const startedAt = performance.now();
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
        onResult: (r) => results.push(r),
      });
    } finally {
      clearInterval(ticker);
      clearTimeout(warmTimer);
    }
    const durationS = (performance.now() - startedAt) / 1000;
    warm ??= sampler.sample();
    const inFlight = await settle(url, adminKey, 5000);
    if (inFlight !== 0) progress(`${inFlight} requests still in flight in the proxy after 5 s`);
    // the proxy writes a request's log line once its response has ended: let the last ones come
    const until = Date.now() + 3000;
    while (Date.now() < until && requestLines(server.logs()) < results.length) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const end = sampler.sample();
    sampler.stop();
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
