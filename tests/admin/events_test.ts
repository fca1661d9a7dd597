/**
 * @module
 * Tests of {@linkcode EventLog}: the last state changes from the log, newest first, without
 * per-request lines or secrets; and fed by a real application's logger and health board.
 */

import assert from "node:assert/strict";
import { EventLog, EVENTS_KEPT } from "../../src/admin/events.ts";
import { adminAction } from "../../src/admin/actions.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { Logger } from "../../src/logger.ts";
import { builtins } from "../../plugins/mod.ts";

const K1 = "sk-events-upstream-key-000000000000000001";

Deno.test("EventLog.recent() is newest first and keeps the last 50", () => {
  let t = 1_000;
  const log = new EventLog({ now: () => t++ });
  for (let i = 0; i < EVENTS_KEPT + 5; i++) log.add("info", `event ${i}`, { key: "sk-...01" });
  const events = log.recent();
  assert.equal(events.length, EVENTS_KEPT);
  assert.equal(events[0]!.message, `event ${EVENTS_KEPT + 4}`);
  assert.equal(events.at(-1)!.message, "event 5");
  assert.ok(events[0]!.at_ms > events[1]!.at_ms);
  assert.deepEqual(Object.keys(events[0]!).sort(), [
    "at_ms",
    "key",
    "level",
    "message",
    "upstream",
  ]);
  assert.equal(events[0]!.upstream, null);
  // copies: the caller cannot change what is kept
  events[0]!.message = "changed";
  assert.notEqual(log.recent()[0]!.message, "changed");
});

Deno.test("EventLog.add() leaves out per-request lines", () => {
  const log = new EventLog();
  for (const msg of ["request", "upstream attempt failed", "upstream broke mid-response"]) {
    log.add("warn", msg, { key: "k" });
  }
  assert.deepEqual(log.recent(), []);
  log.add("warn", "shared state: Redis is down; serving on the local view", { redis: "r:6379" });
  assert.deepEqual(log.recent().map((e) => [e.level, e.key, e.upstream]), [["warn", null, null]]);
});

Deno.test("EventLog.add() says what the fields add to the message", () => {
  const log = new EventLog();
  const add = (msg: string, fields: Record<string, unknown>) => {
    log.add("warn", msg, fields);
    return log.recent()[0]!.message;
  };
  assert.equal(
    add("candidate ejected", { for_ms: 30_000, last_error: "server" }),
    "candidate ejected for 30 s (last error: server)",
  );
  assert.equal(
    add("candidate unhealthy (probe)", { reason: "probe: HTTP 500" }),
    "candidate unhealthy (probe): probe: HTTP 500",
  );
  // the rest's reason is in its message already
  assert.equal(
    add("key resting: rate limited by the upstream", { reason: "rate_limited" }),
    "key resting: rate limited by the upstream",
  );
  assert.equal(
    add("key out of quota for a model until its reset", { model: "qwen" }),
    "key out of quota for a model until its reset (model qwen)",
  );
  assert.equal(add("probe plugin failed", { error: "boom" }), "probe plugin failed: boom");
});

Deno.test("EventLog.add() redacts every text it keeps", () => {
  const redact = (t: string) => t.replaceAll(K1, "sk-e...0001");
  const log = new EventLog({ redact });
  log.add("error", `probe plugin failed`, { error: `bad key ${K1}`, key: K1, upstream: K1 });
  const text = JSON.stringify(log.recent());
  assert.ok(!text.includes(K1));
  assert.ok(text.includes("sk-e...0001"));
});

Deno.test("EventLog gets an application's state changes from its logger, whatever the level", async () => {
  const config = parseConfigText(
    `upstreams:\n  a: { base_url: "http://127.0.0.1:9/v1", keys: [${K1}] }\n`,
    "events.yaml",
    { env: () => undefined },
  );
  const lines: string[] = [];
  const logger = new Logger({ level: "error", sink: (l) => lines.push(l) });
  const app = await App.create(config, { plugins: builtins, probes: false, logger });
  try {
    const [c] = [...app.rt.candidates.values()];
    adminAction(app, app.rt, "POST", ["keys", c!.id, "disable"]);
    adminAction(app, app.rt, "POST", ["keys", c!.id, "enable"]);
    app.board.end(c!, "rate_limited", { retryAt: app.now() + 5_000, status: 429 });
    // nothing was written at level error, but every change is an event
    assert.deepEqual(lines, []);
    const events = app.events.recent();
    assert.deepEqual(events.map((e) => e.message), [
      "key resting: rate limited by the upstream",
      "candidate enabled by operator",
      "candidate disabled by operator",
    ]);
    assert.ok(events.every((e) => e.key === c!.mask && e.upstream === "a"));
    assert.ok(!JSON.stringify(events).includes(K1));
  } finally {
    await app.close();
  }
  // closed: its log no longer feeds it
  logger.info("candidate disabled by operator", { key: "x" });
  assert.equal(app.events.recent().length, 3);
});
