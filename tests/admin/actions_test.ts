import { builtins } from "../../plugins/mod.ts";
import assert from "node:assert/strict";
import { adminAction } from "../../src/admin/actions.ts";
import { App } from "../../src/app.ts";
import { parseConfigText } from "../../src/config/mod.ts";
import { ProxyError } from "../../src/errors.ts";
import { Logger } from "../../src/logger.ts";

const K1 = "sk-actions-key-000000000000000000000001";
const K2 = "sk-actions-key-000000000000000000000002";
const K3 = "sk-actions-other-0000000000000000000003";

async function makeApp(): Promise<App & AsyncDisposable> {
  const config = parseConfigText(
    `
upstreams:
  a: { base_url: "http://127.0.0.1:9/v1", keys: [${K1}, ${K2}] }
  b: { base_url: "http://127.0.0.1:9/v1", keys: [${K3}] }
`,
    "actions.yaml",
    { env: () => undefined },
  );
  const app = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
  return Object.assign(app, { [Symbol.asyncDispose]: () => app.close() });
}

function fails(fn: () => unknown, status: number, code: string): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof ProxyError && e.status === status && e.code === code,
  );
}

Deno.test("adminAction() lists every key by id and mask", async () => {
  await using app = await makeApp();
  const r = adminAction(app, app.rt, "GET", ["keys"]);
  assert.ok(!("action" in r));
  assert.deepEqual(r.keys.map((k) => k.upstream), ["a", "b", "a"]);
  assert.ok(!JSON.stringify(r).includes(K1.slice(4, -4)));
});

Deno.test("adminAction() disables and enables one key by id or mask", async () => {
  await using app = await makeApp();
  const [c1, c2] = [...app.rt.candidates.values()];
  const off = adminAction(app, app.rt, "POST", ["keys", c1!.id, "disable"]);
  assert.ok("action" in off && off.action === "disable");
  assert.equal(off.keys.length, 1);
  assert.equal(c1!.state.disabled, true);
  assert.equal(c2!.state.disabled, false);
  adminAction(app, app.rt, "POST", ["keys", c1!.mask, "enable"]);
  assert.equal(c1!.state.disabled, false);
});

Deno.test("adminAction() resets a key's health, not its counters", async () => {
  await using app = await makeApp();
  const [c] = [...app.rt.candidates.values()];
  app.board.begin(c!);
  app.board.end(c!, "rate_limited", { status: 429 });
  assert.ok(c!.state.restUntil > 0);
  const r = adminAction(app, app.rt, "POST", ["keys", c!.id, "reset"]);
  assert.equal(r.keys[0]!.state, "healthy");
  assert.equal(c!.state.restUntil, 0);
  assert.equal(c!.state.requests, 1);
});

Deno.test("adminAction() acts on every key of an upstream", async () => {
  await using app = await makeApp();
  const r = adminAction(app, app.rt, "POST", ["upstreams", "a", "disable"]);
  assert.equal(r.keys.length, 2);
  const states = [...app.rt.candidates.values()].map((c) => [c.upstream.name, c.state.disabled]);
  assert.deepEqual(states, [["a", true], ["b", false], ["a", true]]);
});

Deno.test("adminAction() refuses what it does not know, before acting", async () => {
  await using app = await makeApp();
  const [c] = [...app.rt.candidates.values()];
  fails(() => adminAction(app, app.rt, "POST", ["keys", "nope", "disable"]), 404, "not_found");
  fails(() => adminAction(app, app.rt, "POST", ["upstreams", "z", "reset"]), 404, "not_found");
  fails(() => adminAction(app, app.rt, "POST", ["keys", c!.id, "drop"]), 400, "unknown_action");
  fails(() => adminAction(app, app.rt, "GET", ["keys", c!.id, "disable"]), 404, "not_found");
  fails(() => adminAction(app, app.rt, "POST", ["keys", c!.id]), 404, "not_found");
  fails(() => adminAction(app, app.rt, "POST", []), 404, "not_found");
  fails(() => adminAction(app, app.rt, "POST", ["keys", K1, "disable"]), 404, "not_found");
  assert.equal(c!.state.disabled, false);
});
