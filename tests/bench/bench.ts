/**
 * @module
 * `deno task bench`: drives llm-balance with `wrk` from a second process against a fast mock
 * upstream and, in the same run, the same traffic against the mock directly and against a
 * minimal `Deno.serve` + `fetch` pass-through (tests/bench/passthrough.ts). Prints requests/s,
 * p50/p99 latency, CPU per request and peak RSS of each, then the ratios and the targets.
 *
 * Scenarios: 64 connections non-streaming; the same with the pass-through and llm-balance under
 * load at the same time ("paired": both share core 0, so a slow spell of the machine slows both
 * alike and the ratio of requests served is steadier than between rounds run one after the
 * other); 1 connection (latency); streaming time to first byte; 1,000 and 5,000 concurrent open
 * streams, each held open and read while the mock sends it an event a second (RSS per stream,
 * RSS growth during the hold); pool scale (3 keys vs 10,000 keys, paired); budgets (off vs every
 * budget on and state in a file, paired); redis (every budget on, state in a file vs the same
 * budgets with state shared in a `redis-server` the bench starts, paired; Redis commands and
 * Redis CPU per request; skipped when `redis-server` is not installed); affinity (a pool routing
 * by `prompt_cache_key` vs the same pool without affinity, requests cycling through 1,000 values
 * and every 10th a new one, paired); p2c (the `p2c` strategy vs `round_robin`, paired).
 * The system under test is pinned to core 0, wrk, the mock, redis-server and this process to
 * core 1 (`taskset`); rounds are interleaved and medians reported. Linux only (`/proc`,
 * `taskset`).
 *
 * Usage: `deno task bench [--quick] [--duration S] [--rounds N] [--json FILE] [--help]`
 */

import { parseArgs } from "node:util";

import {
  type Bench,
  checkTarget,
  CLIENT_KEY,
  interleavedWrk,
  type LoadSettings,
  pairedWrk,
  progress,
  runWrk,
  STREAMS_OPEN_TIMEOUT_MS,
  streamsRound,
  ttfbScenario,
  WRK_SCRIPT,
} from "./_load.ts";
import {
  BenchError,
  cpuSeconds,
  fail,
  openFilesLimit,
  Processes,
  type Started,
  type Target,
  vmMb,
} from "./_proc.ts";
import { V8_FLAGS } from "../../tools/compile_all.ts";
import { freePort, hasRedis, redisServerArgs } from "../helpers/redis.ts";
import {
  type Check,
  checksTable,
  type PairedRatios,
  ratioChecks,
  roundRatio,
  type Row,
  type Scenario,
  SCENARIOS,
  streamsTable,
  table,
} from "./_report.ts";
import {
  affinityNote,
  affinityWrkScript,
  ROUTING_SCENARIOS,
  ROUTING_SIDES,
  type RoutingScenario,
} from "./_routing.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MOCK = `${ROOT}tools/mock_upstream.ts`;
const PASSTHROUGH = `${ROOT}tests/bench/passthrough.ts`;
const TARGETS = ["direct", "passthrough", "llm-balance"] as const;
type TargetName = typeof TARGETS[number];
/** Every scenario the bench runs: the report's, then the routing ones. */
const ALL_SCENARIOS = [...SCENARIOS, ...ROUTING_SCENARIOS] as const;
type AnyScenario = typeof ALL_SCENARIOS[number];

const HELP = `deno task bench [options]

Benchmarks llm-balance against a fast mock upstream, the mock directly and a minimal
Deno.serve + fetch pass-through. Needs Linux and wrk (Debian: apt-get install -y wrk); the
redis scenario needs redis-server and redis-cli (apt-get install -y redis-server), else it is
skipped.

Scenarios: throughput (64 connections, in turn), paired (passthrough and llm-balance at once),
latency (1 connection), ttfb (streaming), streams (many open streams held), pool (3 keys vs
--pool-keys keys, paired), budgets (off vs every budget on + state in a file, paired), redis
(every budget on + state in a file vs the same budgets with state in Redis, paired), affinity
(affinity by prompt_cache_key on vs off, 1,000 values and every 10th request a new one, paired),
p2c (the p2c strategy vs round_robin, paired).

  --quick               ~1 min run: --duration 2 --rounds 1 --warmup 1 --ttfb-requests 50
                        --streams 1000 --hold 5
  --duration S          seconds per wrk round (integer)                          [5]
  --rounds N            interleaved rounds per target                            [3]
  --warmup S            wrk warm-up seconds per target, 0 for none               [2]
  --connections N       connections of the throughput scenario                   [64]
  --ttfb-requests N     sequential streamed requests per target and round        [200]
  --streams LIST        concurrent open streams, comma-separated (one round each)  [1000,5000]
  --hold S              seconds the open streams are held and read, all open     [20]
  --stream-gap MS       milliseconds between two events of one open stream       [1000]
  --pool-keys N         keys of the large pool of the pool-scale scenario        [10000]
  --scenarios LIST      comma-separated: ${ALL_SCENARIOS.join(",")}
                                                                                 [all]
  --targets LIST        comma-separated: ${TARGETS.join(",")}          [all]
  --log-level LEVEL     llm-balance log level (stderr goes to a file)            [info]
  --main FILE           llm-balance entry point                                  [main.ts]
  --json FILE           also write the results as JSON
  --no-pin              do not pin processes to cores with taskset
  --keep                keep the temp folder (configs, logs of each process)
  --help                this text`;

/** The bench's settings, from the command line. */
interface Settings extends LoadSettings {
  /** Connections of the throughput and pool scenarios. */
  connections: number;
  /** Keys of the large pool. */
  poolKeys: number;
  scenarios: AnyScenario[];
  targets: TargetName[];
  logLevel: string;
  main: string;
  json: string | undefined;
  pin: boolean;
  keep: boolean;
}

function parseSettings(args: string[]): Settings | undefined {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      rounds: { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string", default: "64" },
      "ttfb-requests": { type: "string" },
      streams: { type: "string" },
      hold: { type: "string" },
      "stream-gap": { type: "string", default: "1000" },
      "pool-keys": { type: "string", default: "10000" },
      scenarios: { type: "string", default: ALL_SCENARIOS.join(",") },
      targets: { type: "string", default: TARGETS.join(",") },
      "log-level": { type: "string", default: "info" },
      main: { type: "string", default: `${ROOT}main.ts` },
      json: { type: "string" },
      "no-pin": { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return undefined;
  const int = (name: string, text: string | undefined, fallback: number, min: number) => {
    const n = text === undefined ? fallback : Number(text);
    if (!Number.isInteger(n) || n < min) {
      fail(`Cannot run bench: --${name} must be an integer >= ${min}`);
    }
    return n;
  };
  const list = <T extends string>(name: string, text: string, allowed: readonly T[]): T[] => {
    const items = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const item of items) {
      if (!allowed.includes(item as T)) fail(`Cannot run bench: --${name} has unknown "${item}"`);
    }
    return items as T[];
  };
  const quick = values.quick;
  return {
    duration: int("duration", values.duration, quick ? 2 : 5, 1),
    rounds: int("rounds", values.rounds, quick ? 1 : 3, 1),
    warmup: int("warmup", values.warmup, quick ? 1 : 2, 0),
    connections: int("connections", values.connections, 64, 1),
    ttfbRequests: int("ttfb-requests", values["ttfb-requests"], quick ? 50 : 200, 1),
    streams: (values.streams ?? (quick ? "1000" : "1000,5000")).split(",").map((n) =>
      int("streams", n.trim(), 0, 1)
    ),
    hold: int("hold", values.hold, quick ? 5 : 20, 1),
    streamGapMs: int("stream-gap", values["stream-gap"], 1000, 10),
    poolKeys: int("pool-keys", values["pool-keys"], 10_000, 4),
    scenarios: list("scenarios", values.scenarios, ALL_SCENARIOS),
    targets: list("targets", values.targets, TARGETS),
    logLevel: values["log-level"],
    main: values.main,
    json: values.json,
    pin: !values["no-pin"],
    keep: values.keep,
  };
}

// ---------------------------------------------------------------------------------------------
// llm-balance configs

/** Where llm-balance keeps budget state: a file (the embedded store) or a shared Redis. */
type StateSpec = { path: string } | { redis: string; prefix: string };

interface UpstreamSpec {
  name: string;
  baseUrl: string;
  keys: string[];
  weight: number;
}

/**
 * A native llm-balance config (JSON is valid YAML): client auth on, weighted, default retries,
 * state in memory, no budgets (unless given).
 */
function llmBalanceConfig(
  upstreams: UpstreamSpec[],
  logLevel: string,
  budgets?: { quota: Record<string, number>; state: StateSpec },
): string {
  return JSON.stringify(
    {
      server: { host: "127.0.0.1", port: 0 },
      log: { level: logLevel, format: "json" },
      auth: { client_keys: [CLIENT_KEY] },
      upstreams: Object.fromEntries(
        upstreams.map((u) => [u.name, {
          base_url: u.baseUrl,
          keys: u.keys,
          weight: u.weight,
          ...(budgets === undefined ? {} : { quota: budgets.quota }),
        }]),
      ),
      pools: { default: { strategy: "weighted", upstreams: upstreams.map((u) => u.name) } },
      state: budgets === undefined ? "memory" : budgets.state,
    },
    null,
    1,
  );
}

/** 3 upstream entries reaching one mock, each with 10 keys, weights 3:2:1. */
function mainConfig(mockOrigin: string, logLevel: string): string {
  const upstreams = [1, 2, 3].map((i) => ({
    name: `mock${i}`,
    baseUrl: `${mockOrigin}/v1`,
    keys: Array.from({ length: 10 }, (_, k) => `mock${i}-key-${k + 1}`),
    weight: 4 - i,
  }));
  return llmBalanceConfig(upstreams, logLevel);
}

/**
 * The main config with every budget on (limits no run reaches: each request is counted against
 * the day, the model, the minute, tokens and concurrency, and none is ever refused) and state
 * persisted to a file (the embedded store) or shared in Redis.
 */
function budgetsConfig(mockOrigin: string, logLevel: string, state: StateSpec): string {
  const upstreams = [1, 2, 3].map((i) => ({
    name: `mock${i}`,
    baseUrl: `${mockOrigin}/v1`,
    keys: Array.from({ length: 10 }, (_, k) => `mock${i}-key-${k + 1}`),
    weight: 4 - i,
  }));
  const quota = {
    requests_per_day: 1_000_000_000,
    model_requests_per_day: 1_000_000_000,
    tokens_per_day: 1_000_000_000_000,
    requests_per_minute: 1_000_000_000,
    tokens_per_minute: 1_000_000_000_000,
    max_concurrency: 10_000,
  };
  return llmBalanceConfig(upstreams, logLevel, { quota, state });
}

/** One upstream with `keys` keys. */
function poolConfig(mockOrigin: string, keys: number, logLevel: string): string {
  const list = Array.from({ length: keys }, (_, k) => `pool-key-${String(k + 1).padStart(6, "0")}`);
  return llmBalanceConfig(
    [{ name: "mock", baseUrl: `${mockOrigin}/v1`, keys: list, weight: 1 }],
    logLevel,
  );
}

async function wrkVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("wrk", { args: ["-v"], stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n")[0]?.trim() || "wrk";
  } catch {
    return undefined;
  }
}

async function canPin(): Promise<boolean> {
  if (navigator.hardwareConcurrency < 2) return false;
  try {
    const out = await new Deno.Command("taskset", {
      args: ["-a", "-p", "-c", "1", String(Deno.pid)],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** What the scenarios share during one run. */
interface Run {
  bench: Bench;
  settings: Settings;
  processes: Processes;
  /** The fast mock upstream (record off). */
  mock: Started;
  results: Partial<Record<Scenario, Row[]>>;
  /** Rows of the routing scenarios (their checks go to `extra`). */
  routing: Partial<Record<RoutingScenario, Row[]>>;
  /** Checks beyond the ratios of the tables. */
  extra: Check[];
  /** Ratios of targets measured side by side. */
  paired: PairedRatios;
}

/** `deno run -A FILE ARGS...` with this Deno. */
function denoRun(file: string, ...args: string[]): string[] {
  return [Deno.execPath(), "run", "-A", file, ...args];
}

/** llm-balance as `deno task start` runs it (with its V8 settings). */
function denoRunProxy(file: string, ...args: string[]): string[] {
  return [Deno.execPath(), "run", "-A", V8_FLAGS, file, ...args];
}

function asTarget(name: string, started: Started): Target {
  return { name, url: started.url, pid: started.pid };
}

/** Writes a config to the temp folder and starts llm-balance on it, on core 0. */
async function startProxy(run: Run, name: string, config: string): Promise<Started> {
  const file = `${run.bench.dir}/${name}.json`;
  await Deno.writeTextFile(file, config);
  const args = ["serve", "--config", file, "--port", "0", "--host", "127.0.0.1"];
  return await run.processes.start(name, 0, denoRunProxy(run.settings.main, ...args));
}

/** Throughput, latency and TTFB against direct, passthrough and llm-balance. */
async function mainScenarios(run: Run): Promise<void> {
  const { settings, processes, mock, results } = run;
  const targets: Target[] = [];
  const servers: Started[] = [];
  let proxy: Started | undefined;
  if (settings.targets.includes("direct")) targets.push(asTarget("direct", mock));
  if (settings.targets.includes("passthrough")) {
    const started = await processes.start(
      "passthrough",
      0,
      denoRun(PASSTHROUGH, "--upstream", mock.url),
    );
    servers.push(started);
    targets.push(asTarget("passthrough", started));
  }
  if (settings.targets.includes("llm-balance")) {
    proxy = await startProxy(run, "llm-balance", mainConfig(mock.url, settings.logLevel));
    servers.push(proxy);
    targets.push(asTarget("llm-balance", proxy));
  }
  for (const target of targets) await checkTarget(target);
  let rssAfterThroughput = NaN;
  if (settings.scenarios.includes("throughput")) {
    const t = await interleavedWrk(run.bench, targets, settings.connections, "throughput");
    results.throughput = t.rows;
    const [ptRounds, lbRounds] = [t.samples.get("passthrough"), t.samples.get("llm-balance")];
    if (ptRounds && lbRounds) run.paired.inTurn = roundRatio(ptRounds, lbRounds);
    if (proxy) rssAfterThroughput = vmMb(proxy.pid, "VmRSS");
  }
  const pt = targets.find((t) => t.name === "passthrough");
  const lb = targets.find((t) => t.name === "llm-balance");
  if (settings.scenarios.includes("paired") && pt && lb) {
    const p = await pairedWrk(run.bench, [pt, lb], settings.connections, "paired");
    results.paired = p.rows;
    run.paired.throughput = p.ratio;
  }
  if (settings.scenarios.includes("latency")) {
    results.latency = (await interleavedWrk(run.bench, targets, 1, "latency")).rows;
  }
  if (settings.scenarios.includes("ttfb")) results.ttfb = await ttfbScenario(run.bench, targets);
  const later = [results.latency ?? [], results.ttfb ?? []].flat()
    .filter((r) => r.target === "llm-balance");
  if (proxy && Number.isFinite(rssAfterThroughput) && later.length > 0) {
    const served = later.reduce((sum, r) => sum + r.requests, 0);
    const change = (vmMb(proxy.pid, "VmRSS") - rssAfterThroughput) / rssAfterThroughput * 100;
    run.extra.push({
      measure: `llm-balance RSS change over ${served} requests after the throughput scenario`,
      value: change,
      unit: "%",
      target: "no growth: <= +10% (issue 7)",
      pass: change <= 10,
    });
  }
  for (const server of servers) await processes.stop(server);
}

/** llm-balance with a 3-key pool vs a large pool, same traffic. */
async function poolScenario(run: Run): Promise<void> {
  const { settings, mock } = run;
  const small = await startProxy(
    run,
    "llm-balance-3-keys",
    poolConfig(mock.url, 3, settings.logLevel),
  );
  const large = await startProxy(
    run,
    `llm-balance-${settings.poolKeys}-keys`,
    poolConfig(mock.url, settings.poolKeys, settings.logLevel),
  );
  const targets = [
    asTarget("llm-balance 3 keys", small),
    asTarget(`llm-balance ${settings.poolKeys} keys`, large),
  ];
  for (const target of targets) await checkTarget(target);
  // side by side: the two pools differ by a few percent at most, less than the machine's noise
  // between rounds taken one after the other
  const p = await pairedWrk(run.bench, [targets[0]!, targets[1]!], settings.connections, "pool");
  run.results.pool = p.rows;
  run.paired.pool = p.ratio;
  await run.processes.stop(small);
  await run.processes.stop(large);
}

/** llm-balance with budgets off (state in memory) vs every budget on and state in a file. */
async function budgetsScenario(run: Run): Promise<void> {
  const { settings, mock } = run;
  const off = await startProxy(
    run,
    "llm-balance-budgets-off",
    mainConfig(mock.url, settings.logLevel),
  );
  const on = await startProxy(
    run,
    "llm-balance-budgets-on",
    budgetsConfig(mock.url, settings.logLevel, { path: `${run.bench.dir}/state.sqlite` }),
  );
  const targets = [
    asTarget("llm-balance budgets off", off),
    asTarget("llm-balance budgets on", on),
  ];
  for (const target of targets) await checkTarget(target);
  const p = await pairedWrk(run.bench, [targets[0]!, targets[1]!], settings.connections, "budgets");
  run.results.budgets = p.rows;
  run.paired.budgets = p.ratio;
  await run.processes.stop(off);
  await run.processes.stop(on);
}

/** A redis-server the bench started. */
interface Redis {
  started: Started;
  port: number;
  /** `redis://127.0.0.1:<port>/0`. */
  url: string;
}

/**
 * Runs `redis-cli -p PORT ARGS...`.
 * @returns its stdout, or undefined when it failed
 */
async function redisCli(port: number, ...args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("redis-cli", {
      args: ["-h", "127.0.0.1", "-p", String(port), ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(5_000),
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts `redis-server` on a free loopback port, pinned to core 1 with wrk and the mock, nothing
 * saved to disk, its log in the temp folder; waits until it answers PING. It is one of the
 * bench's processes, so it is stopped on failure and on Ctrl-C too.
 */
async function startRedis(run: Run): Promise<Redis> {
  const port = freePort();
  const dir = `${run.bench.dir}/redis`;
  await Deno.mkdir(dir, { recursive: true });
  // Processes.start waits for a base URL on the first stdout line, which redis-server does not
  // print: a shell prints the address (only a name here, never fetched) and becomes the server.
  const started = await run.processes.start("redis-server", 1, [
    "sh",
    "-c",
    'echo "http://127.0.0.1:$1"; shift; exec redis-server "$@"',
    "sh",
    String(port),
    ...redisServerArgs(port, dir),
    "--logfile",
    `${dir}/redis-server.log`,
  ]);
  const until = Date.now() + 10_000;
  while ((await redisCli(port, "PING"))?.trim() !== "PONG") {
    if (Date.now() > until) {
      await run.processes.stop(started);
      const log = await Deno.readTextFile(`${dir}/redis-server.log`).catch(() => "");
      fail(`Cannot start redis-server on port ${port}: ${log.trim().split("\n").slice(-10)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { started, port, url: `redis://127.0.0.1:${port}/0` };
}

/** Counts of `INFO commandstats`: calls of every command (those scripts make included). */
interface CommandStats {
  calls: number;
  /** Time spent in commands, in µs. */
  usec: number;
  /** Calls by command name. */
  byCommand: Map<string, number>;
}

/** Reads `INFO commandstats` of a redis-server. */
async function commandStats(port: number): Promise<CommandStats> {
  const text = await redisCli(port, "INFO", "commandstats");
  if (text === undefined) fail(`Cannot read INFO commandstats of redis-server on port ${port}`);
  const stats: CommandStats = { calls: 0, usec: 0, byCommand: new Map() };
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    const calls = Number(m[2]);
    stats.calls += calls;
    stats.usec += Number(m[3]);
    stats.byCommand.set(m[1]!, calls);
  }
  return stats;
}

/**
 * A routing scenario: llm-balance with the main config, its default pool as each side of the
 * scenario sets it, both under load at the same time (the affinity scenario with requests that
 * carry affinity values); the ratio of the second to the first, and their CPU per request.
 */
async function routingScenario(run: Run, scenario: RoutingScenario): Promise<void> {
  const { settings, mock, processes } = run;
  const sides = ROUTING_SIDES[scenario];
  const started: Started[] = [];
  try {
    for (const side of sides) {
      const config = JSON.parse(mainConfig(mock.url, settings.logLevel));
      Object.assign(config.pools.default, side.pool);
      const name = side.name.replaceAll(" ", "-");
      started.push(await startProxy(run, name, JSON.stringify(config, null, 1)));
    }
    const targets: [Target, Target] = [
      asTarget(sides[0].name, started[0]!),
      asTarget(sides[1].name, started[1]!),
    ];
    for (const target of targets) await checkTarget(target);
    let bench = run.bench;
    if (scenario === "affinity") {
      const script = `${run.bench.dir}/affinity.lua`;
      await Deno.writeTextFile(script, affinityWrkScript());
      bench = { ...run.bench, script };
    }
    const p = await pairedWrk(bench, targets, settings.connections, scenario);
    const [base, other] = p.rows as [Row, Row];
    if (scenario === "affinity") {
      const res = await fetch(`${started[1]!.url}/v1/stats/load_balancers`, {
        headers: { authorization: `Bearer ${CLIENT_KEY}` },
        signal: AbortSignal.timeout(10_000),
      });
      const note = res.ok ? affinityNote(await res.json()) : `stats answered ${res.status}`;
      if (note !== undefined) other.note = note;
    }
    run.routing[scenario] = p.rows;
    const names = `${sides[1].name} / ${sides[0].name}`;
    const target = scenario === "affinity" ? ">= 0.97x (issue 19: under 3%)" : undefined;
    run.extra.push(
      {
        measure: `throughput ${names} (paired)`,
        value: p.ratio,
        unit: "x",
        ...(target === undefined ? {} : { target, pass: p.ratio >= 0.97 }),
      },
      {
        measure: `CPU per request ${names}`,
        value: other.cpuUsPerReq / base.cpuUsPerReq,
        unit: "x",
      },
    );
  } finally {
    for (const s of started) await processes.stop(s);
  }
}

/**
 * llm-balance with every budget on and state in a file (the embedded store, the budgets
 * scenario's "on" config) vs the same budgets with state shared in a redis-server the bench
 * starts, paired. Also counts the Redis commands (`INFO commandstats`, those run by scripts
 * included) and the redis-server CPU the paired rounds cost per request of the Redis instance.
 */
async function redisScenario(run: Run): Promise<void> {
  const { settings, mock, processes } = run;
  if (!hasRedis) {
    const why = "redis-server or redis-cli is not installed (apt-get install -y redis-server)";
    progress(`redis: skipped: ${why}`);
    run.extra.push({ measure: `redis scenario skipped: ${why}`, value: NaN, unit: "" });
    return;
  }
  const started: Started[] = [];
  try {
    const redis = await startRedis(run);
    started.push(redis.started);
    const embedded = await startProxy(
      run,
      "llm-balance-embedded-store",
      budgetsConfig(mock.url, settings.logLevel, {
        path: `${run.bench.dir}/state-embedded.sqlite`,
      }),
    );
    started.push(embedded);
    const shared = await startProxy(
      run,
      "llm-balance-redis",
      budgetsConfig(mock.url, settings.logLevel, { redis: redis.url, prefix: "bench:" }),
    );
    started.push(shared);
    const targets: [Target, Target] = [
      asTarget("llm-balance embedded store", embedded),
      asTarget("llm-balance redis", shared),
    ];
    for (const target of targets) await checkTarget(target);
    // the warm-up here, so that the counts below cover the measured rounds only
    if (settings.warmup > 0) {
      progress(`redis: warm-up, both at once (${settings.warmup} s)`);
      await Promise.all(
        targets.map((t) => runWrk(run.bench, t.url, settings.connections, settings.warmup)),
      );
    }
    const before = await commandStats(redis.port);
    const cpu0 = cpuSeconds(redis.started.pid);
    const bench = { ...run.bench, settings: { ...run.bench.settings, warmup: 0 } };
    const p = await pairedWrk(bench, targets, settings.connections, "redis");
    const cpu1 = cpuSeconds(redis.started.pid);
    const after = await commandStats(redis.port);
    const row = p.rows[1]!;
    const served = Math.max(row.requests, 1);
    // less the INFO of `before`, counted in `after`
    const calls = after.calls - before.calls - 1;
    const perRequest = calls / served;
    const scripts = ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"]
      .reduce((sum, c) => sum + (after.byCommand.get(c) ?? 0) - (before.byCommand.get(c) ?? 0), 0);
    const top = [...after.byCommand]
      .map(([c, n]) => [c, n - (before.byCommand.get(c) ?? 0)] as const)
      .filter(([c, n]) => n > 0 && c !== "info")
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([c, n]) => `${c} ${(n / served).toFixed(3)}`)
      .join(", ");
    const redisCpuUs = (cpu1 - cpu0) * 1e6 / served;
    row.note = `Redis: ${perRequest.toFixed(3)} commands/req (${top}), ` +
      `redis-server CPU ${redisCpuUs.toFixed(1)} µs/req`;
    run.results.redis = p.rows;
    run.paired.redis = p.ratio;
    run.extra.push(
      {
        measure: `Redis commands per request (${calls} commands, ${row.requests} requests of ` +
          "llm-balance redis; commands run by scripts included)",
        value: perRequest,
        unit: "commands",
      },
      {
        measure: "Redis script calls (EVAL/EVALSHA) per request",
        value: scripts / served,
        unit: "calls",
      },
      {
        measure: "redis-server CPU per request of llm-balance redis",
        value: redisCpuUs,
        unit: "µs",
      },
    );
  } finally {
    // llm-balance first, so that it does not see Redis go away
    for (const s of started.reverse()) await processes.stop(s);
  }
}

/** Open files a process needs beyond its streams' sockets (listeners, pipes, runtime). */
const SPARE_FILES = 200;

/**
 * Many open streams held and read, for each number of streams: each target a fresh process
 * (the mock too) so every round starts from the same RSS. The mock sends an event on every
 * stream each `--stream-gap` ms, enough of them to outlast the opening and the hold.
 */
async function streamsScenario(run: Run): Promise<void> {
  const { settings, processes } = run;
  const rows: Row[] = [];
  const limit = openFilesLimit();
  for (const n of settings.streams) {
    // llm-balance and the pass-through hold two sockets per stream, the mock and the client one
    const needed = 2 * n + SPARE_FILES;
    if (needed > limit) {
      const why = `${n} streams need ${needed} open files in llm-balance; ` +
        `the hard limit (RLIMIT_NOFILE) here is ${limit}`;
      progress(`streams: skipped ${n}: ${why} (raise it: ulimit -Hn, LimitNOFILE, --ulimit)`);
      run.extra.push({ measure: `open streams: ${n} skipped (${why})`, value: NaN, unit: "" });
      continue;
    }
    const chunks =
      Math.ceil((STREAMS_OPEN_TIMEOUT_MS + settings.hold * 1000) / settings.streamGapMs) +
      5;
    const slowArgs = [
      "--name",
      "slow",
      "--chunk-delay",
      String(settings.streamGapMs),
      "--chunks",
      String(chunks),
    ];
    const slow = await processes.start("mock-slow", 1, denoRun(MOCK, ...slowArgs));
    const measure = async (name: string, started: Started) => {
      progress(`streams: ${name} (${n} streams, held ${settings.hold} s)`);
      rows.push(await streamsRound(run.bench, asTarget(name, started), n));
      await processes.stop(started);
    };
    if (settings.targets.includes("direct")) {
      progress(`streams: direct (${n} streams, held ${settings.hold} s)`);
      rows.push(await streamsRound(run.bench, asTarget("direct", slow), n));
    }
    if (settings.targets.includes("passthrough")) {
      const args = ["--upstream", slow.url];
      await measure(
        "passthrough",
        await processes.start("passthrough-streams", 0, denoRun(PASSTHROUGH, ...args)),
      );
    }
    if (settings.targets.includes("llm-balance")) {
      await measure(
        "llm-balance",
        await startProxy(run, "llm-balance-streams", mainConfig(slow.url, settings.logLevel)),
      );
    }
    await processes.stop(slow);
  }
  run.results.streams = rows;
}

/** The markdown report. */
function report(
  settings: Settings,
  run: {
    startedAt: Date;
    wrk: string;
    pinned: boolean;
    results: Run["results"];
    routing: Run["routing"];
    checks: Check[];
  },
): string {
  const { duration, rounds, connections, ttfbRequests, streams, poolKeys, hold, streamGapMs } =
    settings;
  const titles: Record<Scenario, string> = {
    throughput:
      `${connections} connections, non-streaming (wrk, ${rounds} x ${duration} s, medians)`,
    latency: `1 connection, non-streaming (wrk, ${rounds} x ${duration} s, medians)`,
    ttfb:
      `Streaming time to first byte (${ttfbRequests} sequential requests x ${rounds} rounds, 5 chunks)`,
    streams: `${
      streams.map((n) => n.toLocaleString("en-US")).join(" and ")
    } concurrent open streams, held ${hold} s once all are open, an event every ${streamGapMs} ms on each, every event read (peak RSS of opening and hold; KB/stream = (peak - before) / streams; growth = least-squares slope of RSS over the last three quarters of the hold; CPU per event relayed during the hold)`,
    paired:
      `passthrough and llm-balance under load at the same time, both on core 0, ${connections} connections each (${rounds} x ${duration} s, medians)`,
    pool:
      `Pool scale: 3 keys vs ${poolKeys} keys at the same time, both on core 0, ${connections} connections each`,
    budgets:
      `Budgets: off (state in memory) vs every budget on and state in a file, at the same time, both on core 0, ${connections} connections each`,
    redis:
      `Shared state: every budget on, state in a file (embedded store) vs the same budgets with state in Redis (redis-server on core 1), at the same time, both on core 0, ${connections} connections each`,
  };
  const routingTitles: Record<RoutingScenario, string> = {
    affinity:
      `Affinity: off vs on (by prompt_cache_key; requests cycle through 1,000 values, every 10th a new one), weighted over 30 keys, at the same time, both on core 0, ${connections} connections each`,
    p2c:
      `Strategy: round_robin vs p2c over 30 keys, at the same time, both on core 0, ${connections} connections each`,
  };
  const placement = run.pinned
    ? "pinned: server core 0, wrk + mock + redis-server + client core 1"
    : "not pinned";
  return [
    `## llm-balance bench, ${run.startedAt.toISOString()}`,
    "",
    `deno ${Deno.version.deno}, ${run.wrk}, ${navigator.hardwareConcurrency} cores, ${placement}, ` +
    `open files limit ${openFilesLimit()}; ` +
    "CPU = user+system time of the server process (the mock for direct) / requests",
    "",
    ...SCENARIOS.filter((s) => run.results[s]).map((s) =>
      (s === "streams" ? streamsTable : table)(titles[s], run.results[s]!)
    ),
    ...ROUTING_SCENARIOS.filter((s) => run.routing[s]).map((s) =>
      table(routingTitles[s], run.routing[s]!)
    ),
    checksTable(run.checks),
  ].join("\n");
}

/**
 * Runs the bench.
 * @returns the exit code
 */
async function main(
  settings: Settings,
  abort: AbortSignal,
  onCleanup: (cleanup: () => Promise<void>) => void,
): Promise<number> {
  const wrk = await wrkVersion();
  if (!wrk) {
    console.error("Cannot run bench: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)");
    return 1;
  }
  if (Deno.build.os !== "linux") fail("Cannot run bench: it needs Linux (/proc, taskset)");
  if (settings.targets.includes("llm-balance")) {
    try {
      await Deno.stat(settings.main);
    } catch {
      fail(
        `Cannot bench llm-balance: "${settings.main}" not found (use --targets direct,passthrough)`,
      );
    }
  }
  const pinned = settings.pin && await canPin();
  if (settings.pin && !pinned) {
    progress("taskset unavailable or fewer than 2 cores: running unpinned");
  }
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-bench-" });
  const processes = new Processes({ dir, pin: pinned, cwd: ROOT });
  const cleanup = async () => {
    await processes.stopAll();
    if (!settings.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  onCleanup(cleanup);
  const script = `${dir}/post.lua`;
  const startedAt = new Date();
  const results: Run["results"] = {};
  const routing: Run["routing"] = {};
  const extra: Check[] = [];
  const paired: PairedRatios = {};
  try {
    await Deno.writeTextFile(script, WRK_SCRIPT);
    const bench: Bench = { settings, processes, dir, script, abort };
    const mock = await processes.start("mock", 1, denoRun(MOCK, "--name", "bench"));
    const run: Run = { bench, settings, processes, mock, results, routing, extra, paired };
    const { scenarios } = settings;
    const own: AnyScenario[] = ["pool", "streams", "budgets", "redis", ...ROUTING_SCENARIOS];
    if (scenarios.some((s) => !own.includes(s))) {
      await mainScenarios(run);
    }
    if (scenarios.includes("pool") && settings.targets.includes("llm-balance")) {
      await poolScenario(run);
    }
    if (scenarios.includes("budgets") && settings.targets.includes("llm-balance")) {
      await budgetsScenario(run);
    }
    if (scenarios.includes("redis") && settings.targets.includes("llm-balance")) {
      await redisScenario(run);
    }
    for (const scenario of ROUTING_SCENARIOS) {
      if (scenarios.includes(scenario) && settings.targets.includes("llm-balance")) {
        await routingScenario(run, scenario);
      }
    }
    if (scenarios.includes("streams")) await streamsScenario(run);
  } finally {
    await cleanup();
  }
  const checks = ratioChecks(results, extra, paired);
  console.log(report(settings, { startedAt, wrk, pinned, results, routing, checks }));
  if (settings.keep) progress(`configs and logs kept in ${dir}`);
  if (settings.json) {
    const json = {
      startedAt: startedAt.toISOString(),
      settings,
      wrk,
      pinned,
      results: { ...results, ...routing },
      checks,
    };
    await Deno.writeTextFile(settings.json, JSON.stringify(json, null, 2) + "\n");
  }
  return 0;
}

if (import.meta.main) {
  let cleanup = () => Promise.resolve();
  const abort = new AbortController();
  const onSignal = () => {
    progress("interrupted: stopping every process");
    abort.abort();
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 1;
  try {
    const settings = parseSettings(Deno.args);
    if (!settings) {
      console.log(HELP);
      code = 0;
    } else {
      code = await main(settings, abort.signal, (c) => cleanup = c);
    }
  } catch (error) {
    if (!abort.signal.aborted) {
      const plain = error instanceof BenchError || (error instanceof TypeError && "code" in error);
      console.error(plain ? error.message : error);
    }
    await cleanup();
  }
  Deno.exit(code);
}
