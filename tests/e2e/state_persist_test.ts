/**
 * @module
 * End-to-end persisted key state: a proxy restarted on the same SQLite file still knows which
 * keys spent their budget, which an operator disabled and which the upstream refused; `serve`
 * killed with SIGKILL after its flush still knows on its next start; a corrupt state file is
 * set aside (and the log says where) instead of stopping `serve`; `check` prints the state path.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";
import { ManualClock } from "../helpers/clock.ts";
import { type ModelScopeMock, startModelScopeMock } from "../helpers/modelscope_mock.ts";
import { runCli, startServe, tempConfig, TEST_STATE_HOME } from "../helpers/cli.ts";
import { SqliteStateStore, type StateLogger } from "../../src/state/sqlite_store.ts";

const SPENDS = "ms-s-key-0000000000000001";
const DISABLED = "ms-d-key-0000000000000002";
const REFUSED = "ms-r-key-0000000000000003";
const SPARE = "ms-p-key-0000000000000004";
const MODEL = "Qwen/Qwen3-8B";

/** A state logger that keeps what it is told. */
function quietLogger(): StateLogger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    warn: (msg) => lines.push(msg),
    info: (msg) => lines.push(msg),
  };
}

/** Posts one chat completion; resolves with its status. */
async function ask(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.body?.cancel();
  return res.status;
}

/** `/stats`, by key as the mock knows it (found through the masks). */
async function statsByKey(url: string): Promise<Map<string, Record<string, unknown>>> {
  const res = await fetch(`${url}/stats`);
  assert.equal(res.status, 200);
  const all = await res.json() as Record<string, Record<string, unknown>>;
  const out = new Map<string, Record<string, unknown>>();
  for (const key of [SPENDS, DISABLED, REFUSED, SPARE]) {
    const mask = `${key.slice(0, 4)}...${key.slice(-4)}`;
    if (all[mask] !== undefined) out.set(key, all[mask]);
  }
  return out;
}

/** K1 spends its one request a day; the others are tried in priority order. */
function fourKeys(ms: ModelScopeMock, extra = ""): string {
  return `
upstreams:
  modelscope:
    base_url: "${ms.baseUrl}"
    keys:
      - { key: ${SPENDS}, priority: 0, quota: { requests_per_day: 1 } }
      - { key: ${DISABLED}, priority: 0 }
      - { key: ${REFUSED}, priority: 1 }
      - { key: ${SPARE}, priority: 2 }
${extra}`;
}

async function disable(proxy: TestProxy, key: string): Promise<void> {
  const c = [...proxy.app.rt.candidates.values()].find((c) => c.key?.reveal() === key)!;
  const res = await fetch(`${proxy.url}/admin/keys/${c.id}/disable`, {
    method: "POST",
    headers: { "content-type": "application/json" },
  });
  assert.equal(res.status, 200, await res.text());
}

Deno.test("state: a proxy restarted on the same file knows spent, disabled and refused keys", async () => {
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-persist-" });
  try {
    const path = join(dir, "state.sqlite");
    const clock = new ManualClock(Date.UTC(2026, 11, 7, 3, 0, 0));
    await using ms = startModelScopeMock({ keys: [SPENDS, DISABLED, SPARE], now: clock.now });
    const text = fourKeys(ms);

    const logA = quietLogger();
    const storeA = SqliteStateStore.open(path, { logger: logA, clock });
    const a = await startProxy(text, { clock, store: storeA });
    assert.equal(await ask(a.url), 200); // SPENDS: its one request today
    await disable(a, DISABLED);
    assert.equal(await ask(a.url), 200); // REFUSED answers 401, SPARE serves
    assert.deepEqual(ms.requests.map((r) => [r.key, r.status]), [
      [SPENDS, 200],
      [REFUSED, 401],
      [SPARE, 200],
    ]);
    const before = await statsByKey(a.url);
    await a.close();
    await storeA.close();

    const logB = quietLogger();
    const storeB = SqliteStateStore.open(path, { logger: logB, clock });
    await using b = await startProxy(text, { clock, store: storeB });
    assert.ok(logB.lines.includes("state file opened"));
    const after = await statsByKey(b.url);
    assert.equal(after.get(SPENDS)?.state, "spent");
    assert.equal(after.get(SPENDS)?.reason, "spent its daily requests");
    assert.equal(after.get(SPENDS)?.until, "2026-12-08T00:00:00.000Z");
    assert.equal(after.get(DISABLED)?.state, "disabled");
    assert.equal(after.get(REFUSED)?.state, "resting");
    assert.equal(after.get(REFUSED)?.reason, "auth");
    for (const key of [SPENDS, DISABLED, REFUSED, SPARE]) {
      const was = before.get(key)!;
      const is = after.get(key)!;
      for (const field of ["state", "until", "requests", "failures", "total_tokens", "budgets"]) {
        assert.deepEqual(is[field], was[field], `${key}: ${field} kept`);
      }
    }
    assert.equal(await ask(b.url), 200);
    assert.equal(ms.requests.at(-1)?.key, SPARE, "only the spare key serves after the restart");
    assert.equal(ms.arrivals(), 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state: serve killed with SIGKILL after its flush keeps a spent key spent", async () => {
  await using ms = startModelScopeMock();
  const cfg = await tempConfig("");
  try {
    const path = join(cfg.dir, "state.sqlite");
    // a reset 12 hours away: the key stays spent whatever the time of day the test runs at
    const at = new Date(Date.now() + 12 * 3_600_000);
    const reset = `${String(at.getUTCHours()).padStart(2, "0")}:00`;
    await Deno.writeTextFile(
      cfg.path,
      `
upstreams:
  modelscope:
    base_url: "${ms.baseUrl}"
    keys:
      - { key: ${SPENDS}, priority: 0 }
      - { key: ${SPARE}, priority: 1 }
    quota: { requests_per_day: 1, reset: "${reset}" }
state: { path: "${path}" }
`,
    );
    const args = ["serve", "--config", cfg.path, "--port", "0"];
    const first = await startServe(args);
    const listening = await first.waitForLog((r) => r.msg === "listening");
    assert.equal(listening.state, path);
    assert.equal(await ask(first.url), 200);
    assert.equal(ms.requests.at(-1)?.key, SPENDS);
    await new Promise((r) => setTimeout(r, 1500)); // the store writes once a second
    first.child.kill("SIGKILL");
    const status = await first.exited;
    assert.equal(status.signal, "SIGKILL");

    await using second = await startServe(args);
    const s = await statsByKey(second.url);
    assert.equal(s.get(SPENDS)?.state, "spent");
    assert.equal(s.get(SPENDS)?.reason, "spent its daily requests");
    assert.equal(await ask(second.url), 200);
    assert.deepEqual(ms.requests.map((r) => r.key), [SPENDS, SPARE]);
  } finally {
    await cfg.remove();
  }
});

Deno.test("state: a corrupt state file is set aside and serve starts anyway", async () => {
  await using ms = startModelScopeMock();
  const cfg = await tempConfig("");
  try {
    const path = join(cfg.dir, "state.sqlite");
    const garbage = "this is not a SQLite database\n".repeat(200);
    await Deno.writeTextFile(path, garbage);
    await Deno.writeTextFile(
      cfg.path,
      `
upstreams:
  modelscope: { base_url: "${ms.baseUrl}", keys: [${SPARE}] }
state: { path: "${path}" }
`,
    );
    await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"]);
    const line = await served.waitForLog((r) =>
      r.msg === "state file set aside, starting with fresh state"
    );
    assert.equal(line.level, "warn");
    assert.equal(line.path, path);
    const aside = String(line.aside);
    assert.ok(aside.startsWith(`${path}.corrupt-`), aside);
    assert.equal(await Deno.readTextFile(aside), garbage, "the old file is kept aside");
    assert.equal(await ask(served.url), 200);
    assert.equal(ms.arrivals(), 1);
  } finally {
    await cfg.remove();
  }
});

Deno.test("state: check prints where serve keeps its state, without creating it", async () => {
  const cfg = await tempConfig("");
  try {
    const upstream = `upstreams:\n  m: { base_url: "http://127.0.0.1:9/v1", keys: [${SPARE}] }\n`;
    const path = join(cfg.dir, "kept", "state.sqlite");
    await Deno.writeTextFile(cfg.path, `${upstream}state: { path: "${path}" }\n`);
    const file = await runCli(["check", "--config", cfg.path]);
    assert.equal(file.code, 0, file.stderr);
    assert.match(file.stdout, new RegExp(`^  state: ${path.replaceAll(".", "\\.")}$`, "m"));
    assert.equal(await Deno.stat(path).then(() => true, () => false), false);

    await Deno.writeTextFile(cfg.path, `${upstream}state: memory\n`);
    const memory = await runCli(["check", "--config", cfg.path]);
    assert.match(memory.stdout, /^ {2}state: memory$/m);

    await Deno.writeTextFile(cfg.path, upstream);
    const standard = await runCli(["check", "--config", cfg.path, "--json"]);
    assert.equal(standard.code, 0, standard.stderr);
    const summary = JSON.parse(standard.stdout) as { state: string };
    const folder = join(TEST_STATE_HOME, "llm-balance");
    assert.match(summary.state, new RegExp(`^${folder}/config-[0-9a-f]{8}\\.sqlite$`));
  } finally {
    await cfg.remove();
  }
});
