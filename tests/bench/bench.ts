/**
 * @module
 * `deno task bench`: drives llm-balance with `wrk` from a second process against a fast mock
 * upstream and, in the same run, the same traffic against the mock directly and against a
 * minimal `Deno.serve` + `fetch` pass-through (tests/bench/passthrough.ts). Prints requests/s,
 * p50/p99 latency, CPU per request and peak RSS of each, then the ratios and the targets.
 *
 * Scenarios: 64 connections non-streaming; 1 connection (latency); streaming time to first byte;
 * peak RSS with 1,000 concurrent open streams; pool scale (3 keys vs 10,000 keys).
 * The system under test is pinned to core 0, wrk, the mock and this process to core 1 (`taskset`);
 * rounds are interleaved and medians reported. Linux only (`/proc`, `taskset`).
 *
 * Usage: `deno task bench [--quick] [--duration S] [--rounds N] [--json FILE] [--help]`
 */

import { parseArgs } from "node:util";

const ROOT = new URL("../../", import.meta.url).pathname;
const MOCK = `${ROOT}src/dev/mock_upstream.ts`;
const PASSTHROUGH = `${ROOT}tests/bench/passthrough.ts`;
const CLIENT_KEY = "bench-client";
const SCENARIOS = ["throughput", "latency", "ttfb", "streams", "pool"] as const;
type Scenario = typeof SCENARIOS[number];
const TARGETS = ["direct", "passthrough", "llm-balance"] as const;
type TargetName = typeof TARGETS[number];

const HELP = `deno task bench [options]

Benchmarks llm-balance against a fast mock upstream, the mock directly and a minimal
Deno.serve + fetch pass-through. Needs Linux and wrk (Debian: apt-get install -y wrk).

  --quick               ~30 s run: --duration 2 --rounds 1 --warmup 1 --ttfb-requests 50
  --duration S          seconds per wrk round (integer)                          [5]
  --rounds N            interleaved rounds per target                            [3]
  --warmup S            wrk warm-up seconds per target, 0 for none               [2]
  --connections N       connections of the throughput scenario                   [64]
  --ttfb-requests N     sequential streamed requests per target and round        [200]
  --streams N           concurrent open streams of the memory scenario           [1000]
  --pool-keys N         keys of the large pool of the pool-scale scenario        [10000]
  --scenarios LIST      comma-separated: ${SCENARIOS.join(",")}   [all]
  --targets LIST        comma-separated: ${TARGETS.join(",")}          [all]
  --log-level LEVEL     llm-balance log level (stderr goes to a file)            [info]
  --main FILE           llm-balance entry point                                  [main.ts]
  --json FILE           also write the results as JSON
  --no-pin              do not pin processes to cores with taskset
  --keep                keep the temp folder (configs, logs of each process)
  --help                this text`;

/** The bench's settings, from the command line. */
interface Settings {
  duration: number;
  rounds: number;
  warmup: number;
  connections: number;
  ttfbRequests: number;
  streams: number;
  poolKeys: number;
  scenarios: Scenario[];
  targets: TargetName[];
  logLevel: string;
  main: string;
  json: string | undefined;
  pin: boolean;
  keep: boolean;
}

/** One measured target in one scenario (medians over rounds). */
interface Row {
  target: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerReq: number;
  peakRssMb: number;
  errors: number;
  requests: number;
  note?: string;
}

/** One measurement of one target. */
type Sample = Omit<Row, "target" | "note">;

/** A ratio checked against a target, for the report. */
interface Check {
  measure: string;
  value: number;
  unit: string;
  target?: string;
  pass?: boolean;
}

/** A process the bench started. */
interface Started {
  name: string;
  pid: number;
  url: string;
  child: Deno.ChildProcess;
  log: string;
}

/** A system the load generator is pointed at. */
interface Target {
  name: string;
  url: string;
  pid: number;
}

function fail(message: string): never {
  throw new BenchError(message);
}

/** An error whose message is shown as is. */
class BenchError extends Error {}

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
      streams: { type: "string", default: "1000" },
      "pool-keys": { type: "string", default: "10000" },
      scenarios: { type: "string", default: SCENARIOS.join(",") },
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
    streams: int("streams", values.streams, 1000, 1),
    poolKeys: int("pool-keys", values["pool-keys"], 10_000, 4),
    scenarios: list("scenarios", values.scenarios, SCENARIOS),
    targets: list("targets", values.targets, TARGETS),
    logLevel: values["log-level"],
    main: values.main,
    json: values.json,
    pin: !values["no-pin"],
    keep: values.keep,
  };
}

// ---------------------------------------------------------------------------------------------
// /proc readings

const CLK_TCK = 100;

/** CPU time (user + system) of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** A `Vm*` line of /proc/<pid>/status, in MB. */
function vmMb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return match ? Number(match[1]) / 1024 : NaN;
}

/** Resets the peak RSS (VmHWM) of a process so the next reading covers what follows. */
function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // Older kernels or no permission: VmHWM then covers the whole life of the process.
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Starts and, whatever happens, stops the processes of the bench. */
class Processes {
  readonly #started = new Set<Started>();
  readonly #dir: string;
  readonly #pin: boolean;

  constructor(dir: string, pin: boolean) {
    this.#dir = dir;
    this.#pin = pin;
  }

  /** `taskset -c CORE` prefix, or nothing when not pinning. */
  pinned(core: number, cmd: string[]): string[] {
    return this.#pin ? ["taskset", "-c", String(core), ...cmd] : cmd;
  }

  /**
   * Starts `cmd` on `core` with stderr to a log file and waits for its base URL, the first line
   * of its stdout.
   */
  async start(name: string, core: number, cmd: string[]): Promise<Started> {
    const log = `${this.#dir}/${name}.log`;
    const child = new Deno.Command("sh", {
      args: ["-c", 'log="$1"; shift; exec "$@" 2>"$log"', "sh", log, ...this.pinned(core, cmd)],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const started: Started = { name, pid: child.pid, url: "", child, log };
    this.#started.add(started);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    const deadline = Date.now() + 60_000;
    while (!out.includes("\n") && Date.now() < deadline) {
      const timeout = new Promise<"timeout">((r) =>
        setTimeout(r, deadline - Date.now(), "timeout")
      );
      const read = await Promise.race([reader.read(), timeout]);
      if (read === "timeout" || read.done) break;
      out += read.value;
    }
    const url = out.split("\n")[0]?.trim() ?? "";
    if (!/^https?:\/\/\S+$/.test(url)) {
      await this.stop(started);
      const tail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n").slice(-15);
      fail(
        `Cannot start ${name}: no base URL on its first stdout line (got ${
          JSON.stringify(out.slice(0, 200))
        })\n  command: ${cmd.join(" ")}\n  stderr tail:\n    ${tail.join("\n    ")}`,
      );
    }
    started.url = url.replace(/\/+$/, "");
    (async () => {
      while (!(await reader.read().catch(() => ({ done: true }))).done) { /* drain stdout */ }
    })();
    return started;
  }

  /** Stops one process: SIGTERM, then SIGKILL after 3 s. */
  async stop(started: Started): Promise<void> {
    if (!this.#started.delete(started)) return;
    const exited = started.child.status;
    try {
      started.child.kill("SIGTERM");
    } catch {
      return void await exited; // already gone
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          started.child.kill("SIGKILL");
        } catch { /* gone meanwhile */ }
        resolve();
      }, 3000);
    });
    await Promise.race([exited, killed]);
    clearTimeout(timer);
    await exited;
  }

  /** Stops every process still running. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#started].map((s) => this.stop(s)));
  }
}

// ---------------------------------------------------------------------------------------------
// Load

const CHAT_BODY = JSON.stringify({
  model: "bench-model",
  messages: [{ role: "user", content: "Say hello to the benchmark." }],
  max_tokens: 16,
});
const STREAM_BODY = JSON.stringify({ ...JSON.parse(CHAT_BODY), stream: true });
const REQUEST_HEADERS = {
  "content-type": "application/json",
  authorization: `Bearer ${CLIENT_KEY}`,
};

const WRK_SCRIPT = `-- Written by tests/bench/bench.ts
wrk.method = "POST"
wrk.body = [[${CHAT_BODY}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${CLIENT_KEY}"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
`;

interface WrkResult {
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
}

/** The context every scenario runs in. */
interface Bench {
  settings: Settings;
  processes: Processes;
  dir: string;
  script: string;
  abort: AbortSignal;
}

async function runWrk(bench: Bench, url: string, connections: number, seconds: number) {
  const cmd = bench.processes.pinned(1, [
    "wrk",
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--timeout",
    "10s",
    "-s",
    bench.script,
    `${url}/v1/chat/completions`,
  ]);
  const signal = AbortSignal.any([bench.abort, AbortSignal.timeout((seconds + 30) * 1000)]);
  const out = await new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
    signal,
  })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  const line = text.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (!out.success || !line) {
    fail(
      `Cannot run wrk against ${url}: ${
        new TextDecoder().decode(out.stderr).trim() || text.trim()
      }`,
    );
  }
  return JSON.parse(line.slice("BENCH_JSON ".length)) as WrkResult;
}

/** One wrk round against a target, with the CPU and peak RSS of its server process. */
async function wrkRound(bench: Bench, target: Target, connections: number): Promise<Sample> {
  resetPeak(target.pid);
  const cpu0 = cpuSeconds(target.pid);
  const r = await runWrk(bench, target.url, connections, bench.settings.duration);
  const cpu1 = cpuSeconds(target.pid);
  const requests = Math.max(r.requests, 1);
  return {
    requests: r.requests,
    rps: r.requests / (r.duration_us / 1e6),
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
    cpuUsPerReq: ((cpu1 - cpu0) * 1e6) / requests,
    peakRssMb: vmMb(target.pid, "VmHWM"),
    errors: r.connect + r.read + r.write + r.status + r.timeout,
  };
}

/** Checks that a target answers a chat completion and a stream before load goes to it. */
async function checkTarget(target: Target): Promise<void> {
  const url = `${target.url}/v1/chat/completions`;
  const signal = AbortSignal.timeout(15_000);
  const res = await fetch(url, {
    method: "POST",
    headers: REQUEST_HEADERS,
    body: CHAT_BODY,
    signal,
  });
  const text = await res.text();
  if (res.status !== 200 || !text.includes('"choices"')) {
    fail(
      `Cannot bench ${target.name}: POST /v1/chat/completions answered ${res.status}: ${
        text.slice(0, 300)
      }`,
    );
  }
  const stream = await fetch(url, {
    method: "POST",
    headers: REQUEST_HEADERS,
    body: STREAM_BODY,
    signal,
  });
  const events = await stream.text();
  if (stream.status !== 200 || !events.includes("data: [DONE]")) {
    fail(
      `Cannot bench ${target.name}: a streamed completion answered ${stream.status}: ${
        events.slice(0, 300)
      }`,
    );
  }
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function medianRow(target: string, samples: Sample[]): Row {
  return {
    target,
    rps: median(samples.map((s) => s.rps)),
    p50Ms: median(samples.map((s) => s.p50Ms)),
    p99Ms: median(samples.map((s) => s.p99Ms)),
    cpuUsPerReq: median(samples.map((s) => s.cpuUsPerReq)),
    peakRssMb: Math.max(...samples.map((s) => s.peakRssMb)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
    requests: samples.reduce((sum, s) => sum + s.requests, 0),
  };
}

function progress(message: string): void {
  console.error(`[bench] ${message}`);
}

/** Runs wrk rounds interleaved over the targets (rotating the order each round); medians. */
async function interleavedWrk(bench: Bench, targets: Target[], connections: number, label: string) {
  const { rounds, duration, warmup } = bench.settings;
  if (warmup > 0) {
    for (const target of targets) {
      progress(`${label}: warm-up ${target.name} (${warmup} s)`);
      await runWrk(bench, target.url, connections, warmup);
    }
  }
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + round) % targets.length]!;
      progress(`${label}: round ${round + 1}/${rounds} ${target.name} (${duration} s)`);
      const sample = await wrkRound(bench, target, connections);
      samples.get(target.name)!.push(sample);
    }
  }
  return targets.map((t) => medianRow(t.name, samples.get(t.name)!));
}

/** Time to the first body byte of N sequential streamed completions per target, interleaved. */
async function ttfbScenario(bench: Bench, targets: Target[]): Promise<Row[]> {
  const { rounds, ttfbRequests } = bench.settings;
  const client = Deno.createHttpClient({});
  try {
    const one = async (url: string) => {
      const started = performance.now();
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: REQUEST_HEADERS,
        body: STREAM_BODY,
        client,
        signal: AbortSignal.timeout(30_000),
      });
      const reader = res.body!.getReader();
      const first = await reader.read();
      const ttfb = performance.now() - started;
      while (!(await reader.read()).done) { /* read to the end so the connection is reused */ }
      if (res.status !== 200 || first.done) return NaN;
      return ttfb;
    };
    for (const target of targets) {
      for (let i = 0; i < Math.min(50, ttfbRequests); i++) await one(target.url);
    }
    const all = new Map<string, { ttfb: number[]; cpu: number; seconds: number; peak: number }>(
      targets.map((t) => [t.name, { ttfb: [], cpu: 0, seconds: 0, peak: 0 }]),
    );
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < targets.length; i++) {
        const target = targets[(i + round) % targets.length]!;
        progress(`ttfb: round ${round + 1}/${rounds} ${target.name} (${ttfbRequests} requests)`);
        const acc = all.get(target.name)!;
        resetPeak(target.pid);
        const cpu0 = cpuSeconds(target.pid);
        const started = performance.now();
        for (let n = 0; n < ttfbRequests; n++) acc.ttfb.push(await one(target.url));
        acc.seconds += (performance.now() - started) / 1000;
        acc.cpu += cpuSeconds(target.pid) - cpu0;
        acc.peak = Math.max(acc.peak, vmMb(target.pid, "VmHWM"));
      }
    }
    return targets.map((t) => {
      const acc = all.get(t.name)!;
      const ok = acc.ttfb.filter((v) => !Number.isNaN(v));
      return {
        target: t.name,
        rps: ok.length / acc.seconds,
        p50Ms: percentile(ok, 50),
        p99Ms: percentile(ok, 99),
        cpuUsPerReq: (acc.cpu * 1e6) / Math.max(ok.length, 1),
        peakRssMb: acc.peak,
        errors: acc.ttfb.length - ok.length,
        requests: acc.ttfb.length,
        note: "p50/p99 = time to first byte",
      };
    });
  } finally {
    client.close();
  }
}

/**
 * Opens N streams at once through a target (the mock holds each one open after its first
 * chunk), reads the server's peak RSS, then cancels them all.
 */
async function streamsRound(bench: Bench, target: Target): Promise<Row> {
  const n = bench.settings.streams;
  const client = Deno.createHttpClient({});
  const abort = new AbortController();
  const rssBefore = vmMb(target.pid, "VmRSS");
  resetPeak(target.pid);
  const cpu0 = cpuSeconds(target.pid);
  const started = performance.now();
  const firstBytes: number[] = [];
  let errors = 0;
  try {
    const open = async () => {
      const t0 = performance.now();
      try {
        const res = await fetch(`${target.url}/v1/chat/completions`, {
          method: "POST",
          headers: REQUEST_HEADERS,
          body: STREAM_BODY,
          client,
          signal: abort.signal,
        });
        const first = await res.body!.getReader().read();
        if (res.status !== 200 || first.done) errors++;
        else firstBytes.push(performance.now() - t0);
      } catch {
        if (!abort.signal.aborted) errors++;
      }
    };
    const all = Promise.all(Array.from({ length: n }, open));
    const timeout = new Promise<"timeout">((r) => {
      const timer = setTimeout(r, 60_000, "timeout");
      all.finally(() => clearTimeout(timer));
    });
    if (await Promise.race([all, timeout]) === "timeout") {
      errors += n - firstBytes.length - errors;
    }
    const seconds = (performance.now() - started) / 1000;
    const peak = vmMb(target.pid, "VmHWM");
    const cpu = cpuSeconds(target.pid) - cpu0;
    return {
      target: target.name,
      rps: firstBytes.length / seconds,
      p50Ms: percentile(firstBytes, 50),
      p99Ms: percentile(firstBytes, 99),
      cpuUsPerReq: (cpu * 1e6) / Math.max(firstBytes.length, 1),
      peakRssMb: peak,
      errors,
      requests: n,
      note: `${firstBytes.length} open at once; RSS before ${rssBefore.toFixed(1)} MB, +${
        ((peak - rssBefore) * 1024 / Math.max(firstBytes.length, 1)).toFixed(1)
      } KB per stream`,
    };
  } finally {
    abort.abort();
    client.close();
    await new Promise((r) => setTimeout(r, 300));
  }
}

// ---------------------------------------------------------------------------------------------
// llm-balance configs

interface UpstreamSpec {
  name: string;
  baseUrl: string;
  keys: string[];
  weight: number;
}

/** A native llm-balance config (JSON is valid YAML): client auth on, weighted, default retries. */
function llmBalanceConfig(upstreams: UpstreamSpec[], logLevel: string): string {
  return JSON.stringify(
    {
      server: { host: "127.0.0.1", port: 0 },
      log: { level: logLevel, format: "json" },
      auth: { client_keys: [CLIENT_KEY] },
      upstreams: Object.fromEntries(
        upstreams.map((u) => [u.name, { base_url: u.baseUrl, keys: u.keys, weight: u.weight }]),
      ),
      pools: { default: { strategy: "weighted", upstreams: upstreams.map((u) => u.name) } },
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

/** One upstream with `keys` keys. */
function poolConfig(mockOrigin: string, keys: number, logLevel: string): string {
  const list = Array.from({ length: keys }, (_, k) => `pool-key-${String(k + 1).padStart(6, "0")}`);
  return llmBalanceConfig(
    [{ name: "mock", baseUrl: `${mockOrigin}/v1`, keys: list, weight: 1 }],
    logLevel,
  );
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function table(title: string, rows: Row[]): string {
  const lines = [
    `### ${title}`,
    "",
    "| target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | errors | notes |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map((r) =>
      `| ${r.target} | ${fmt(r.rps, 0)} | ${fmt(r.p50Ms, 3)} | ${fmt(r.p99Ms, 3)} | ${
        fmt(r.cpuUsPerReq, 1)
      } | ${fmt(r.peakRssMb, 1)} | ${r.errors} | ${r.note ?? ""} |`
    ),
    "",
  ];
  return lines.join("\n");
}

function checksTable(checks: Check[]): string {
  return [
    "### Ratios and targets",
    "",
    "| measure | value | target | result |",
    "|---|---:|---|---|",
    ...checks.map((c) =>
      `| ${c.measure} | ${fmt(c.value, c.unit === "x" ? 2 : 3)}${
        c.unit === "x" ? "x" : ` ${c.unit}`
      } | ${c.target ?? ""} | ${c.pass === undefined ? "" : c.pass ? "PASS" : "FAIL"} |`
    ),
    "",
  ].join("\n");
}

function ratioChecks(results: Partial<Record<Scenario, Row[]>>, extra: Check[]): Check[] {
  const checks: Check[] = [];
  const get = (scenario: Scenario, target: string) =>
    results[scenario]?.find((r) => r.target === target);
  const proxy = get("throughput", "llm-balance");
  const pass = get("throughput", "passthrough");
  const direct = get("throughput", "direct");
  if (proxy && pass) {
    const v = proxy.rps / pass.rps;
    checks.push({
      measure: "throughput llm-balance / passthrough",
      value: v,
      unit: "x",
      target: ">= 0.8x",
      pass: v >= 0.8,
    });
    checks.push({
      measure: "CPU per request llm-balance / passthrough",
      value: proxy.cpuUsPerReq / pass.cpuUsPerReq,
      unit: "x",
    });
  }
  if (proxy && direct) {
    checks.push({
      measure: "throughput llm-balance / direct",
      value: proxy.rps / direct.rps,
      unit: "x",
    });
  }
  const latProxy = get("latency", "llm-balance");
  const latDirect = get("latency", "direct");
  if (latProxy && latDirect) {
    const p50 = latProxy.p50Ms - latDirect.p50Ms;
    const p99 = latProxy.p99Ms - latDirect.p99Ms;
    checks.push({
      measure: "1 connection: p50 added vs direct",
      value: p50,
      unit: "ms",
      target: "<= 0.3 ms (later)",
      pass: p50 <= 0.3,
    });
    checks.push({
      measure: "1 connection: p99 added vs direct",
      value: p99,
      unit: "ms",
      target: "<= 1.5 ms (later)",
      pass: p99 <= 1.5,
    });
  }
  const latPass = get("latency", "passthrough");
  if (latProxy && latPass) {
    checks.push({
      measure: "1 connection: p50 added vs passthrough",
      value: latProxy.p50Ms - latPass.p50Ms,
      unit: "ms",
    });
  }
  const ttfbProxy = get("ttfb", "llm-balance");
  const ttfbDirect = get("ttfb", "direct");
  const ttfbPass = get("ttfb", "passthrough");
  if (ttfbProxy && ttfbDirect) {
    const added = ttfbProxy.p50Ms - ttfbDirect.p50Ms;
    checks.push({
      measure: "streaming TTFB added vs direct (p50)",
      value: added,
      unit: "ms",
      target: "< 1 ms",
      pass: added < 1,
    });
  }
  if (ttfbProxy && ttfbPass) {
    checks.push({
      measure: "streaming TTFB added vs passthrough (p50)",
      value: ttfbProxy.p50Ms - ttfbPass.p50Ms,
      unit: "ms",
    });
  }
  const streamsProxy = get("streams", "llm-balance");
  const streamsPass = get("streams", "passthrough");
  if (streamsProxy) {
    checks.push({
      measure: "peak RSS with open streams, llm-balance",
      value: streamsProxy.peakRssMb,
      unit: "MB",
      target: "(later target)",
    });
  }
  if (streamsProxy && streamsPass) {
    checks.push({
      measure: "peak RSS with open streams, llm-balance / passthrough",
      value: streamsProxy.peakRssMb / streamsPass.peakRssMb,
      unit: "x",
    });
  }
  const small = results.pool?.[0];
  const large = results.pool?.[1];
  if (small && large) {
    checks.push({
      measure: `throughput ${large.target} / ${small.target}`,
      value: large.rps / small.rps,
      unit: "x",
      target: "(later target)",
    });
    checks.push({
      measure: `CPU per request ${large.target} / ${small.target}`,
      value: large.cpuUsPerReq / small.cpuUsPerReq,
      unit: "x",
    });
  }
  return [...checks, ...extra];
}

// ---------------------------------------------------------------------------------------------
// Main

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

async function run(settings: Settings, abort: AbortSignal, onProcesses: (p: Processes) => void) {
  const wrk = await wrkVersion();
  if (!wrk) {
    console.error("Cannot run bench: wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)");
    return 1;
  }
  if (Deno.build.os !== "linux") fail("Cannot run bench: it needs Linux (/proc, taskset)");
  const pin = settings.pin && await canPin();
  if (settings.pin && !pin) progress("taskset unavailable or fewer than 2 cores: running unpinned");
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-bench-" });
  const processes = new Processes(dir, pin);
  onProcesses(processes);
  const script = `${dir}/post.lua`;
  await Deno.writeTextFile(script, WRK_SCRIPT);
  const bench: Bench = { settings, processes, dir, script, abort };
  const deno = Deno.execPath();
  const { scenarios, targets: wanted, logLevel } = settings;
  const results: Partial<Record<Scenario, Row[]>> = {};
  const extra: Check[] = [];
  const startedAt = new Date();
  try {
    const mock = await processes.start("mock", 1, [deno, "run", "-A", MOCK, "--name", "bench"]);
    const wantProxy = wanted.includes("llm-balance");
    if (wantProxy) {
      try {
        await Deno.stat(settings.main);
      } catch {
        fail(
          `Cannot bench llm-balance: "${settings.main}" not found (use --targets direct,passthrough)`,
        );
      }
    }
    const startProxy = async (name: string, config: string) => {
      const file = `${dir}/${name}.json`;
      await Deno.writeTextFile(file, config);
      return processes.start(name, 0, [
        deno,
        "run",
        "-A",
        settings.main,
        "serve",
        "--config",
        file,
        "--port",
        "0",
        "--host",
        "127.0.0.1",
      ]);
    };
    const asTarget = (name: string, s: Started): Target => ({ name, url: s.url, pid: s.pid });

    const mainScenarios = scenarios.filter((s) =>
      s === "throughput" || s === "latency" || s === "ttfb"
    );
    if (mainScenarios.length > 0) {
      const targets: Target[] = [];
      const servers: Started[] = [];
      let proxy: Started | undefined;
      if (wanted.includes("direct")) targets.push(asTarget("direct", mock));
      if (wanted.includes("passthrough")) {
        const p = await processes.start("passthrough", 0, [
          deno,
          "run",
          "-A",
          PASSTHROUGH,
          "--upstream",
          mock.url,
        ]);
        servers.push(p);
        targets.push(asTarget("passthrough", p));
      }
      if (wantProxy) {
        proxy = await startProxy("llm-balance", mainConfig(mock.url, logLevel));
        servers.push(proxy);
        targets.push(asTarget("llm-balance", proxy));
      }
      for (const target of targets) await checkTarget(target);
      let rssAfterWarmup = NaN;
      if (scenarios.includes("throughput")) {
        results.throughput = await interleavedWrk(
          bench,
          targets,
          settings.connections,
          "throughput",
        );
        if (proxy) rssAfterWarmup = vmMb(proxy.pid, "VmRSS");
      }
      if (scenarios.includes("latency")) {
        results.latency = await interleavedWrk(bench, targets, 1, "latency");
      }
      if (scenarios.includes("ttfb")) results.ttfb = await ttfbScenario(bench, targets);
      if (proxy && Number.isFinite(rssAfterWarmup)) {
        const served = [results.latency, results.ttfb].flat().filter((r) =>
          r?.target === "llm-balance"
        )
          .reduce((sum, r) => sum + (r?.requests ?? 0), 0);
        extra.push({
          measure:
            `llm-balance RSS growth over the ${served} requests after the throughput scenario`,
          value: vmMb(proxy.pid, "VmRSS") - rssAfterWarmup,
          unit: "MB",
          target: "(later target)",
        });
      }
      for (const server of servers) await processes.stop(server);
    }

    if (scenarios.includes("pool") && wantProxy) {
      const small = await startProxy("llm-balance-3-keys", poolConfig(mock.url, 3, logLevel));
      const large = await startProxy(
        `llm-balance-${settings.poolKeys}-keys`,
        poolConfig(mock.url, settings.poolKeys, logLevel),
      );
      const targets = [
        asTarget("llm-balance 3 keys", small),
        asTarget(`llm-balance ${settings.poolKeys} keys`, large),
      ];
      for (const target of targets) await checkTarget(target);
      results.pool = await interleavedWrk(bench, targets, settings.connections, "pool");
      await processes.stop(small);
      await processes.stop(large);
    }

    if (scenarios.includes("streams")) {
      const slow = await processes.start("mock-slow", 1, [
        deno,
        "run",
        "-A",
        MOCK,
        "--name",
        "slow",
        "--chunk-delay",
        "60000",
        "--chunks",
        "3",
      ]);
      const rows: Row[] = [];
      const measure = async (name: string, s: Started, stopAfter: boolean) => {
        progress(`streams: ${name} (${settings.streams} streams)`);
        rows.push(await streamsRound(bench, asTarget(name, s)));
        if (stopAfter) await processes.stop(s);
      };
      if (wanted.includes("direct")) await measure("direct", slow, false);
      if (wanted.includes("passthrough")) {
        const p = await processes.start("passthrough-streams", 0, [
          deno,
          "run",
          "-A",
          PASSTHROUGH,
          "--upstream",
          slow.url,
        ]);
        await measure("passthrough", p, true);
      }
      if (wantProxy) {
        const p = await startProxy("llm-balance-streams", mainConfig(slow.url, logLevel));
        await measure("llm-balance", p, true);
      }
      results.streams = rows;
    }
  } finally {
    await processes.stopAll();
    if (!settings.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  const { duration, rounds, connections, ttfbRequests, streams, poolKeys } = settings;
  const titles: Record<Scenario, string> = {
    throughput:
      `${connections} connections, non-streaming (wrk, ${rounds} x ${duration} s, medians)`,
    latency: `1 connection, non-streaming (wrk, ${rounds} x ${duration} s, medians)`,
    ttfb:
      `Streaming time to first byte (${ttfbRequests} sequential requests x ${rounds} rounds, 5 chunks)`,
    streams: `${streams} concurrent open streams (peak RSS; p50/p99 = time to first byte)`,
    pool: `Pool scale: 3 keys vs ${poolKeys} keys, ${connections} connections`,
  };
  const checks = ratioChecks(results, extra);
  const out = [
    `## llm-balance bench, ${startedAt.toISOString()}`,
    "",
    `deno ${Deno.version.deno}, ${wrk}, ${navigator.hardwareConcurrency} cores, ${
      pin ? "pinned: server core 0, wrk + mock + client core 1" : "not pinned"
    }; CPU = user+system time of the server process (the mock for direct) / requests`,
    "",
    ...SCENARIOS.filter((s) => results[s]).map((s) => table(titles[s], results[s]!)),
    checksTable(checks),
  ].join("\n");
  console.log(out);
  if (settings.json) {
    const json = {
      startedAt: startedAt.toISOString(),
      settings,
      wrk,
      pinned: pin,
      results,
      checks,
    };
    await Deno.writeTextFile(settings.json, JSON.stringify(json, null, 2) + "\n");
  }
  return 0;
}

if (import.meta.main) {
  let processes: Processes | undefined;
  const abort = new AbortController();
  const onSignal = () => {
    progress("interrupted: stopping every process");
    abort.abort();
    (processes?.stopAll() ?? Promise.resolve()).finally(() => Deno.exit(130));
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
      code = await run(settings, abort.signal, (p) => processes = p);
    }
  } catch (error) {
    const plain = error instanceof BenchError || (error instanceof TypeError && "code" in error);
    console.error(plain ? error.message : error);
    await processes?.stopAll();
  }
  Deno.exit(code);
}
