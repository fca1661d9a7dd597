/**
 * @module
 * Load of `deno task bench`: wrk rounds (a Lua script POSTs a chat completion and prints its
 * summary as JSON), interleaved over targets, and the Deno clients of the streaming scenarios
 * (time to first byte, many concurrent open streams held and read).
 */

import { cpuSeconds, fail, type Processes, resetPeak, type Target, vmMb } from "./_proc.ts";
import { median, medianRow, percentile, type Row, type Sample, slope } from "./_report.ts";

/** The client key the bench sends (`auth.client_keys` of the llm-balance configs). */
export const CLIENT_KEY = "bench-client";

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

/** The wrk Lua script: POSTs a chat completion, prints its summary as a `BENCH_JSON` line. */
export const WRK_SCRIPT = `-- Written by tests/bench/bench.ts
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

/** What the wrk script prints; times in µs. */
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

/** What the load needs from the bench's settings. */
export interface LoadSettings {
  /** Seconds per wrk round. */
  duration: number;
  /** Interleaved rounds per target. */
  rounds: number;
  /** wrk warm-up seconds per target (0: none). */
  warmup: number;
  /** Sequential streamed requests per target and round. */
  ttfbRequests: number;
  /** Concurrent open streams, one round per number. */
  streams: number[];
  /** Seconds the open streams are held (read as their events come) once all are open. */
  hold: number;
  /** Milliseconds between two events of one open stream (the slow mock's chunk delay). */
  streamGapMs: number;
}

/** The context every scenario runs in. */
export interface Bench {
  settings: LoadSettings;
  processes: Processes;
  /** Temp folder: configs, logs. */
  dir: string;
  /** Path of the wrk Lua script. */
  script: string;
  /** Aborted on Ctrl-C. */
  abort: AbortSignal;
}

/**
 * Runs wrk (pinned to core 1) against a target's `/v1/chat/completions`.
 * @param bench the run
 * @param url the target's base URL
 * @param connections open connections, one wrk thread
 * @param seconds duration
 * @throws BenchError when wrk fails or prints no summary
 */
export async function runWrk(
  bench: Bench,
  url: string,
  connections: number,
  seconds: number,
): Promise<WrkResult> {
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
export async function wrkRound(bench: Bench, target: Target, connections: number): Promise<Sample> {
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
export async function checkTarget(target: Target): Promise<void> {
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

/**
 * Prints a progress line on stderr (the report goes to stdout).
 * @param message what is happening
 */
export function progress(message: string): void {
  console.error(`[bench] ${message}`);
}

/** What {@linkcode interleavedWrk} measured. */
export interface Interleaved {
  /** Medians over rounds, one row per target. */
  rows: Row[];
  /** Each target's samples, one per round. */
  samples: Map<string, Sample[]>;
}

/** Runs wrk rounds interleaved over the targets (rotating the order each round); medians. */
export async function interleavedWrk(
  bench: Bench,
  targets: Target[],
  connections: number,
  label: string,
): Promise<Interleaved> {
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
  return { rows: targets.map((t) => medianRow(t.name, samples.get(t.name)!)), samples };
}

/** What {@linkcode pairedWrk} measured. */
export interface Paired {
  rows: Row[];
  /** Median over rounds of (second target's requests / first target's requests). */
  ratio: number;
}

/**
 * Two targets under load at the same time, each with its own wrk and `connections`
 * connections. Both servers share core 0, so whatever slows the machine during a round slows
 * both alike, and the ratio of requests they served tracks the ratio of their CPU cost per
 * request far more steadily than rounds taken one after the other on a noisy machine.
 */
export async function pairedWrk(
  bench: Bench,
  targets: [Target, Target],
  connections: number,
  label: string,
): Promise<Paired> {
  const { rounds, duration, warmup } = bench.settings;
  if (warmup > 0) {
    progress(`${label}: warm-up, both at once (${warmup} s)`);
    await Promise.all(targets.map((t) => runWrk(bench, t.url, connections, warmup)));
  }
  const samples: [Sample[], Sample[]] = [[], []];
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    progress(`${label}: round ${round + 1}/${rounds}, both at once (${duration} s)`);
    const [a, b] = await Promise.all(targets.map((t) => wrkRound(bench, t, connections)));
    samples[0].push(a!);
    samples[1].push(b!);
    ratios.push(b!.requests / Math.max(1, a!.requests));
  }
  return {
    rows: targets.map((t, i) => medianRow(`${t.name} (paired)`, samples[i]!)),
    ratio: median(ratios),
  };
}

/** Time to the first body byte of N sequential streamed completions per target, interleaved. */
export async function ttfbScenario(bench: Bench, targets: Target[]): Promise<Row[]> {
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

/** How long all the streams of a round may take to open. */
export const STREAMS_OPEN_TIMEOUT_MS = 90_000;
/** How often RSS is read during the hold. */
const HOLD_SAMPLE_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Opens `n` streams at once through a target (the slow mock sends an event on each every
 * `streamGapMs`), then holds them all open for `hold` seconds, reading every event as a client
 * does, while RSS is read every half second. Every reader is kept until the end: a response
 * whose reader is dropped would be collected and its stream cancelled mid-hold. Measures the
 * time to first byte, CPU per relayed event during the hold, peak RSS (opening and hold), RSS
 * per stream and RSS growth during the hold (after its first quarter); then cancels every
 * stream.
 * @param bench the run
 * @param target the server under test
 * @param n streams to open at once
 * @returns the row (`rps`: streams opened per second; `cpuUsPerReq`: CPU per event of the hold)
 */
export async function streamsRound(bench: Bench, target: Target, n: number): Promise<Row> {
  const { hold } = bench.settings;
  const client = Deno.createHttpClient({});
  const abort = new AbortController();
  const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  const firstBytes: number[] = [];
  let errors = 0;
  /** Streams that ended or failed before the end of the hold. */
  let ended = 0;
  let events = 0;
  const drain = async (reader: ReadableStreamDefaultReader<Uint8Array>) => {
    try {
      while (!(await reader.read()).done) events++;
      ended++;
    } catch {
      if (!abort.signal.aborted) ended++;
    }
  };
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
      const reader = res.body!.getReader();
      readers.push(reader);
      const first = await reader.read();
      if (res.status !== 200 || first.done) {
        errors++;
        return;
      }
      firstBytes.push(performance.now() - t0);
      drain(reader);
    } catch {
      if (!abort.signal.aborted) errors++;
    }
  };
  const rssBefore = vmMb(target.pid, "VmRSS");
  resetPeak(target.pid);
  const started = performance.now();
  try {
    const all = Promise.all(Array.from({ length: n }, open));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(r, STREAMS_OPEN_TIMEOUT_MS, "timeout");
    });
    if (await Promise.race([all, timeout]) === "timeout") {
      errors = n - firstBytes.length;
    }
    clearTimeout(timer);
    const openSeconds = (performance.now() - started) / 1000;
    const opened = firstBytes.length;
    // the hold: every stream open and read; nothing opens or closes
    const cpu0 = cpuSeconds(target.pid);
    const events0 = events;
    const holdStart = performance.now();
    const samples: [number, number][] = [];
    for (;;) {
      const t = (performance.now() - holdStart) / 1000;
      samples.push([t, vmMb(target.pid, "VmRSS")]);
      if (t >= hold) break;
      await sleep(Math.min(HOLD_SAMPLE_MS, (hold - t) * 1000));
    }
    const cpu = cpuSeconds(target.pid) - cpu0;
    const relayed = events - events0;
    const peak = vmMb(target.pid, "VmHWM");
    const kbPerStream = (peak - rssBefore) * 1024 / Math.max(opened, 1);
    // the first quarter lets the process settle from the opening (code warming up, the young
    // generation growing to its working size)
    const growth = slope(samples.filter(([t]) => t >= hold / 4));
    return {
      target: target.name,
      rps: opened / openSeconds,
      p50Ms: percentile(firstBytes, 50),
      p99Ms: percentile(firstBytes, 99),
      cpuUsPerReq: relayed > 0 ? (cpu * 1e6) / relayed : NaN,
      peakRssMb: peak,
      errors: errors + ended,
      requests: n,
      streams: n,
      rssBeforeMb: rssBefore,
      heldRssMb: samples.at(-1)![1],
      kbPerStream,
      growthMbPerS: growth,
      note: `${opened} open in ${openSeconds.toFixed(1)} s, held ${hold} s: ${relayed} events`,
    };
  } finally {
    abort.abort();
    for (const reader of readers) reader.cancel().catch(() => {});
    client.close();
    await sleep(300);
  }
}
