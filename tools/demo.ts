/**
 * @module
 * `deno task demo`: a guided tour for newcomers. Starts three local mock upstreams (one fast,
 * one flaky, one slow), writes a config for them, starts llm-balance on it and shows a dozen
 * balanced requests (with retries), a streamed completion token by token and `GET /stats`;
 * then keeps running so you can try it with curl or the openai SDK until Ctrl-C.
 * `--once` does the tour and exits 0.
 */

import { type MockUpstream, type RecordedRequest, startMockUpstream } from "./mock_upstream.ts";

const MAIN = new URL("../main.ts", import.meta.url);
const ROOT = new URL("../", import.meta.url);

/** One mock upstream of the tour. */
interface DemoUpstream {
  mock: MockUpstream;
  keys: string[];
  weight: number;
  what: string;
}

/** The running llm-balance. */
interface Balancer {
  url: string;
  child: Deno.ChildProcess;
  logFile: string;
  exited: Promise<Deno.CommandStatus>;
}

const bold = (s: string) => Deno.stdout.isTerminal() ? `\x1b[1m${s}\x1b[22m` : s;
const dim = (s: string) => Deno.stdout.isTerminal() ? `\x1b[2m${s}\x1b[22m` : s;
const print = (line = "") => console.log(line);

/** Writes the native config of the tour. */
function demoConfig(upstreams: DemoUpstream[]): string {
  const lines = [
    "# Written by `deno task demo`: three local mock upstreams behind one weighted pool.",
    "server:",
    "  host: 127.0.0.1",
    "  port: 0",
    "log:",
    "  level: info",
    "  format: json",
    "# the tour's keys are made up: nothing to keep across runs",
    "state: memory",
    "upstreams:",
  ];
  for (const u of upstreams) {
    lines.push(
      `  ${u.mock.name}:`,
      `    base_url: ${u.mock.baseUrl}`,
      `    keys: [${u.keys.join(", ")}]`,
      `    weight: ${u.weight}`,
      "    health_check: { path: /models, interval: 10 }",
    );
  }
  lines.push(
    "pools:",
    "  default:",
    "    strategy: weighted",
    `    upstreams: [${upstreams.map((u) => u.mock.name).join(", ")}]`,
  );
  return lines.join("\n") + "\n";
}

/** Starts llm-balance as a subprocess and waits for its base URL (first stdout line). */
async function startBalancer(configFile: string, logFile: string): Promise<Balancer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN.pathname,
      "serve",
      "--config",
      configFile,
      "--port",
      "0",
      "--host",
      "127.0.0.1",
    ],
    cwd: ROOT.pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = await Deno.open(logFile, { write: true, create: true, truncate: true });
  child.stderr.pipeTo(log.writable).catch(() => {});
  const exited = child.status;
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(resolve, 30_000, "timeout")
  );
  while (!out.includes("\n")) {
    const read = await Promise.race([reader.read(), timeout]);
    if (read === "timeout" || read.done) break;
    out += read.value;
  }
  clearTimeout(timer);
  const url = out.split("\n")[0]?.trim() ?? "";
  const balancer = { url: url.replace(/\/+$/, ""), child, logFile, exited };
  (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) { /* drain stdout */ }
  })();
  if (!/^https?:\/\/\S+$/.test(url)) {
    await stopBalancer(balancer);
    const logs = (await Deno.readTextFile(logFile).catch(() => "")).trim().split("\n").slice(-10);
    throw new Error(
      `Cannot start llm-balance: no base URL on its first stdout line (got ${
        JSON.stringify(out.slice(0, 200))
      })\n${logs.join("\n")}`,
    );
  }
  return balancer;
}

/** SIGTERM, then SIGKILL after 5 s. */
async function stopBalancer(balancer: Balancer): Promise<void> {
  try {
    balancer.child.kill("SIGTERM");
  } catch {
    // already exited
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      try {
        balancer.child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
      resolve();
    }, 5000);
  });
  await Promise.race([balancer.exited, late]);
  clearTimeout(timer);
  await balancer.exited;
}

/** A POST one mock received. */
interface Call {
  upstream: string;
  request: RecordedRequest;
}

/** The POSTs every mock received since `since` (a `performance.now()` time), oldest first. */
function callsSince(upstreams: DemoUpstream[], since: number): Call[] {
  return upstreams.flatMap((u) =>
    u.mock.requests.filter((r) => r.method === "POST" && r.receivedAt >= since)
      .map((request) => ({ upstream: u.mock.name, request }))
  ).sort((a, b) => a.request.receivedAt - b.request.receivedAt);
}

/** Sends 12 chat completions one by one and shows which upstream (and key) answered each. */
async function tourRequests(url: string, upstreams: DemoUpstream[]): Promise<void> {
  print(bold("1. Twelve chat completions, one after the other"));
  print(dim("   weighted 3:2:1; beta fails every 3rd call it gets, llm-balance retries elsewhere"));
  const answered = new Map(upstreams.map((u) => [u.mock.name, 0]));
  for (let i = 1; i <= 12; i++) {
    const started = performance.now();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer demo" },
      body: JSON.stringify({
        model: "demo-model",
        messages: [{ role: "user", content: `Request ${i}` }],
      }),
      signal: AbortSignal.timeout(15_000),
    });
    const ms = performance.now() - started;
    const text = await res.text();
    let id = "";
    try {
      id = String(JSON.parse(text).id ?? "");
    } catch {
      // not JSON: shown below
    }
    const attempts: string[] = [];
    let key: string | undefined;
    for (const { upstream, request } of callsSince(upstreams, started)) {
      attempts.push(`${upstream} ${request.status === 200 ? "ok" : request.status}`);
      if (request.status === 200) key = request.key;
    }
    const fromId = upstreams.find((u) => id.startsWith(`chatcmpl-${u.mock.name}-`))?.mock.name;
    const who = res.headers.get("x-llm-balance-upstream") ?? res.headers.get("x-mock-name") ??
      fromId;
    if (who && answered.has(who)) answered.set(who, answered.get(who)! + 1);
    const line =
      `   #${String(i).padStart(2)}  ${res.status}  ${(who ?? "?").padEnd(6)} ${
        key ? `key ${key}` : ""
      }`.padEnd(36) + `${ms.toFixed(0).padStart(4)} ms`;
    const retried = attempts.length > 1 ? dim(`   tried: ${attempts.join(" -> ")}`) : "";
    print(line + retried);
    if (res.status !== 200) print(dim(`        ${text.slice(0, 200)}`));
  }
  print(`   answered by: ${[...answered].map(([name, n]) => `${name} ${n}`).join(", ")}`);
  print();
}

/** Streams one completion and prints it token by token as the chunks arrive. */
async function tourStream(url: string): Promise<void> {
  print(bold("2. One streamed completion, token by token"));
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer demo" },
    body: JSON.stringify({
      model: "demo-model",
      stream: true,
      messages: [{ role: "user", content: "Hi" }],
    }),
    signal: AbortSignal.timeout(30_000),
  });
  const who = res.headers.get("x-llm-balance-upstream") ?? res.headers.get("x-mock-name") ?? "?";
  const encoder = new TextEncoder();
  await Deno.stdout.write(encoder.encode(`   ${res.status} from ${who}: `));
  let buffer = "";
  let tokens = 0;
  for await (const text of res.body!.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) =>
        l.slice(5).trim()
      ).join("\n");
      if (data === "" || data === "[DONE]") continue;
      try {
        const content = JSON.parse(data).choices?.[0]?.delta?.content;
        if (typeof content === "string" && content !== "") {
          tokens++;
          await Deno.stdout.write(encoder.encode(tokens > 1 ? dim("|") + content : content));
        }
      } catch {
        // not a JSON chunk: skip
      }
    }
  }
  print();
  print(dim(`   ${tokens} tokens, each sent as its own SSE chunk`));
  print();
}

/** Shows `GET /stats`, pretty printed. */
async function tourStats(url: string): Promise<void> {
  print(bold("3. GET /stats"));
  const res = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  let pretty = text;
  try {
    pretty = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // not JSON: print as is
  }
  if (res.status !== 200) print(`   ${res.status}`);
  print(pretty.split("\n").map((l) => `   ${l}`).join("\n"));
  print();
}

function tryItYourself(url: string): void {
  print(bold("Try it yourself"));
  print(`   curl ${url}/v1/chat/completions -H 'content-type: application/json' \\`);
  print(`     -d '{"model":"demo-model","messages":[{"role":"user","content":"Hello"}]}'`);
  print(`   curl -N ${url}/v1/chat/completions -H 'content-type: application/json' \\`);
  print(
    `     -d '{"model":"demo-model","stream":true,"messages":[{"role":"user","content":"Hello"}]}'`,
  );
  print(`   curl ${url}/stats`);
  print(`   openai SDK (TypeScript): new OpenAI({ baseURL: "${url}/v1", apiKey: "unused" })`);
  print(`   openai SDK (Python):     OpenAI(base_url="${url}/v1", api_key="unused")`);
  print();
}

/** Runs the tour; with `once` false, waits for Ctrl-C before stopping everything. */
async function tour(once: boolean): Promise<number> {
  const specs = [
    { name: "alpha", weight: 3, what: "fast", options: {} },
    {
      name: "beta",
      weight: 2,
      what: "flaky: every 3rd call fails with 500",
      options: { failEvery: 3 },
    },
    { name: "gamma", weight: 1, what: "slow: answers after 150 ms", options: { latencyMs: 150 } },
  ];
  const upstreams: DemoUpstream[] = [];
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-demo-" });
  let balancer: Balancer | undefined;
  try {
    for (const spec of specs) {
      const keys = [`${spec.name}-key-1`, `${spec.name}-key-2`];
      const mock = await startMockUpstream({
        name: spec.name,
        keys,
        chunks: 10,
        chunkDelayMs: 80,
        ...spec.options,
      });
      upstreams.push({ mock, keys, weight: spec.weight, what: spec.what });
    }
    const configFile = `${dir}/config.yaml`;
    await Deno.writeTextFile(configFile, demoConfig(upstreams));
    balancer = await startBalancer(configFile, `${dir}/llm-balance.log`);

    print(bold("llm-balance demo"));
    print();
    print("Three mock OpenAI-compatible upstreams on this machine, 2 keys each:");
    for (const u of upstreams) {
      print(
        `   ${u.mock.name.padEnd(6)} ${u.mock.baseUrl.padEnd(28)} weight ${u.weight}  ${
          dim(u.what)
        }`,
      );
    }
    print(`llm-balance listens on ${bold(balancer.url)}`);
    print(dim(`   config ${configFile}`));
    print(dim(`   logs   ${balancer.logFile}`));
    print();
    await tourRequests(balancer.url, upstreams);
    await tourStream(balancer.url);
    await tourStats(balancer.url);
    tryItYourself(balancer.url);
    if (once) {
      print(dim("--once: stopping now"));
      return 0;
    }
    print(bold("Running until Ctrl-C."));
    const stopped = Promise.withResolvers<string>();
    const onSignal = () => stopped.resolve("signal");
    Deno.addSignalListener("SIGINT", onSignal);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", onSignal);
    // The listeners stay until the process exits: a second Ctrl-C must not cut the cleanup short.
    let why = await Promise.race([stopped.promise, balancer.exited.then(() => "exited")]);
    if (why === "exited") {
      // Ctrl-C reaches llm-balance too, and it may exit before our own listener runs.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<string>((resolve) => timer = setTimeout(resolve, 500, "exited"));
      why = await Promise.race([stopped.promise, late]);
      clearTimeout(timer);
    }
    if (why === "exited") {
      print(`llm-balance exited on its own; its last log lines:`);
      print(
        (await Deno.readTextFile(balancer.logFile).catch(() => "")).trim().split("\n").slice(-10)
          .join("\n"),
      );
      return 1;
    }
    print();
    print("Stopping.");
    return 0;
  } finally {
    if (balancer) await stopBalancer(balancer);
    for (const u of upstreams) await u.mock.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The demo writes a temporary config, which needs write permission. `deno task demo` grants
 * net, read, env and run: without write, the demo runs itself again with `-A` and waits for it.
 */
async function rerunWithAllPermissions(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, ...Deno.args],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // Ctrl-C reaches the child through the terminal; relay signals sent to this process only.
  const relay = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  };
  const onInt = relay("SIGINT");
  Deno.addSignalListener("SIGINT", onInt);
  const onTerm = relay("SIGTERM");
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", onTerm);
  const { code } = await child.status;
  Deno.removeSignalListener("SIGINT", onInt);
  if (Deno.build.os !== "windows") Deno.removeSignalListener("SIGTERM", onTerm);
  return code;
}

if (import.meta.main) {
  let code = 1;
  try {
    const canWrite = (await Deno.permissions.query({ name: "write" })).state === "granted";
    code = canWrite ? await tour(Deno.args.includes("--once")) : await rerunWithAllPermissions();
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
  }
  Deno.exit(code);
}
