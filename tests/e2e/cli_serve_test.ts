/**
 * @module
 * `deno run -A main.ts serve` as a subprocess: the first stdout line is the base URL, flags
 * win over the file, SIGTERM drains and exits 0, config errors exit 2 naming the problem.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { chat, postJson } from "../helpers/e2e.ts";
import { TEST_STATE_HOME } from "../helpers/cli.ts";

const ROOT = new URL("../../", import.meta.url);
const MAIN = new URL("main.ts", ROOT).pathname;

interface Served extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** The first line of stdout ("" when stdout closed first). */
  firstLine: Promise<string>;
  stderr: Promise<string>;
  status: Promise<Deno.CommandStatus>;
}

/** Runs `main.ts` with arguments; killed on dispose (and after 30 s in any case). */
function run(args: string[], env: Record<string, string> = {}): Served {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1", XDG_STATE_HOME: TEST_STATE_HOME, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const firstLine = (async () => {
    while (!out.includes("\n")) {
      const r = await lines.read();
      if (r.done) break;
      out += r.value;
    }
    const line = out.split("\n")[0] ?? "";
    // keep draining so the child never blocks on a full pipe
    (async () => {
      while (!(await lines.read()).done) { /* drain */ }
    })().catch(() => {});
    return line;
  })();
  const status = child.status;
  return {
    child,
    firstLine,
    stderr,
    status,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await status;
      await stderr;
      await firstLine;
    },
  };
}

async function tempConfig(
  name: string,
  content: string,
): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-cli-" });
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, content);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

function nativeConfig(baseUrl: string, server = ""): string {
  return `${server}upstreams:\n  m:\n    base_url: "${baseUrl}"\n    keys: [sk-cli-upstream-key-0000001]\n`;
}

Deno.test("serve prints its base URL as the first stdout line, answers, and exits 0 on SIGTERM", async () => {
  await using mock = await startMockUpstream();
  await using cfg = await tempConfig("config.yaml", nativeConfig(mock.baseUrl));
  await using served = run(["serve", "--config", cfg.path, "--port", "0"]);
  const url = await served.firstLine;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5000) });
  assert.equal(health.status, 200);
  await health.body?.cancel();
  const res = await postJson(`${url}/v1/chat/completions`, chat());
  assert.equal(res.status, 200);
  assert.equal((await res.json()).object, "chat.completion");
  assert.equal(mock.requests[0]!.key, "sk-cli-upstream-key-0000001");
  served.child.kill("SIGTERM");
  const status = await served.status;
  assert.equal(status.code, 0, await served.stderr);
  const stderr = await served.stderr;
  assert.ok(!stderr.includes("sk-cli-upstream-key-0000001"), "a log line holds the upstream key");
});

Deno.test("serve drains a stream in flight on SIGTERM before exiting 0", async () => {
  await using mock = await startMockUpstream({ chunkDelayMs: 60, chunks: 5 });
  await using cfg = await tempConfig("config.yaml", nativeConfig(mock.baseUrl));
  await using served = run(["serve", "--config", cfg.path, "--port", "0"]);
  const url = await served.firstLine;
  const res = await postJson(`${url}/v1/chat/completions`, chat("gpt-4o", { stream: true }));
  const reader = res.body!.getReader();
  await reader.read();
  served.child.kill("SIGTERM");
  let body = "";
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    body += new TextDecoder().decode(r.value);
  }
  assert.ok(body.endsWith("data: [DONE]\n\n"), body);
  assert.equal((await served.status).code, 0);
});

Deno.test("serve --host and --port win over the config file", async () => {
  await using mock = await startMockUpstream();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const free = probe.addr.port;
  probe.close();
  // the file asks for a non-loopback host without client keys (refused) and a busy port
  const server = `server:\n  host: 0.0.0.0\n  port: ${taken.addr.port}\n`;
  await using cfg = await tempConfig("config.yaml", nativeConfig(mock.baseUrl, server));
  await using served = run([
    "serve",
    "--config",
    cfg.path,
    "--host",
    "127.0.0.1",
    "--port",
    String(free),
  ]);
  assert.equal(await served.firstLine, `http://127.0.0.1:${free}`);
  const res = await fetch(`http://127.0.0.1:${free}/health`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  served.child.kill("SIGTERM");
  assert.equal((await served.status).code, 0);
});

Deno.test("serve refuses a non-loopback host without client keys (exit 2)", async () => {
  await using cfg = await tempConfig(
    "config.yaml",
    nativeConfig("http://127.0.0.1:9/v1", "server:\n  host: 0.0.0.0\n  port: 0\n"),
  );
  await using served = run(["serve", "--config", cfg.path]);
  assert.equal((await served.status).code, 2);
  assert.equal(await served.firstLine, "");
  const stderr = await served.stderr;
  assert.match(stderr, /"0\.0\.0\.0"/);
  assert.match(stderr, /client keys/);
});

Deno.test("serve exits 2 naming a missing environment variable of the config", async () => {
  await using cfg = await tempConfig(
    "config.yaml",
    'upstreams:\n  m:\n    base_url: http://127.0.0.1:9/v1\n    keys: ["${LLM_BALANCE_TEST_UNSET_KEY_93}"]\n',
  );
  await using served = run(["serve", "--config", cfg.path, "--port", "0"]);
  const status = await served.status;
  const stderr = await served.stderr;
  assert.equal(status.code, 2, stderr);
  assert.equal(await served.firstLine, "");
  assert.match(stderr, /LLM_BALANCE_TEST_UNSET_KEY_93/);
  assert.match(stderr, /is not set/);
});

Deno.test("serve exits 2 when the config file does not exist", async () => {
  const missing = `${await Deno.makeTempDir({ prefix: "llm-balance-cli-" })}/nope.yaml`;
  try {
    await using served = run(["serve", "--config", missing, "--port", "0"]);
    const status = await served.status;
    const stderr = await served.stderr;
    assert.equal(status.code, 2, stderr);
    assert.equal(await served.firstLine, "");
    assert.ok(stderr.includes(missing), stderr);
    assert.match(stderr, /file not found/);
  } finally {
    await Deno.remove(missing.slice(0, missing.lastIndexOf("/")), { recursive: true });
  }
});
