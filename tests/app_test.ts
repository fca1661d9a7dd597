import { builtins } from "../plugins/mod.ts";
import assert from "node:assert/strict";
import { App } from "../src/app.ts";
import { parseConfigText } from "../src/config/mod.ts";
import { Logger } from "../src/logger.ts";

async function app(text: string): Promise<App> {
  const config = parseConfigText(text, "app_test.yaml", { env: () => undefined });
  return await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: () => {} }),
  });
}

Deno.test("App.create() interleaves candidates of several upstreams", async () => {
  const a = await app(`
upstreams:
  u1: { base_url: "http://127.0.0.1:9/v1", keys: [a1-aaaaaaaaaaaaaaaaaaaa, a2-aaaaaaaaaaaaaaaaaaaa, a3-aaaaaaaaaaaaaaaaaaaa] }
  u2: { base_url: "http://127.0.0.1:9/v1", keys: [b1-bbbbbbbbbbbbbbbbbbbb] }
`);
  try {
    const pool = a.rt.defaultPool!;
    assert.deepEqual(
      pool.candidates.map((c) => `${c.upstream.name}:${c.mask}`),
      ["u1:a1-a...aaaa", "u2:b1-b...bbbb", "u1:a2-a...aaaa", "u1:a3-a...aaaa"],
    );
    assert.deepEqual(pool.candidates.map((c) => c.index), [0, 1, 2, 3]);
  } finally {
    await a.close();
  }
});

Deno.test("App.create() shares one state record for a key in several pools", async () => {
  const a = await app(`
upstreams:
  u1: { base_url: "http://127.0.0.1:9/v1", keys: [only-key-000000000000000] }
pools:
  gpt-4o: { upstreams: [u1] }
  default: { upstreams: [u1] }
`);
  try {
    const x = a.rt.pools.get("gpt-4o")!.candidates[0]!;
    const y = a.rt.defaultPool!.candidates[0]!;
    assert.notEqual(x, y);
    assert.equal(x.id, y.id);
    assert.equal(x.state, y.state);
    assert.equal(a.rt.candidates.size, 1);
    assert.equal(a.rt.poolFor("gpt-4o"), a.rt.pools.get("gpt-4o"));
    assert.equal(a.rt.poolFor("other"), a.rt.defaultPool);
    assert.equal(a.rt.poolFor(undefined), a.rt.defaultPool);
  } finally {
    await a.close();
  }
});

Deno.test("App.create() rejects an unknown strategy naming the field", async () => {
  await assert.rejects(
    () =>
      app(`
upstreams:
  u1: { base_url: "http://127.0.0.1:9/v1", keys: [k] }
pools:
  default: { strategy: fastest, upstreams: [u1] }
`),
    /pools\.default\.strategy: unknown strategy "fastest" \(known: least_connections, p2c, quota_aware, random, round_robin, weighted\)/,
  );
});

Deno.test("App.reload() keeps the state of keys that still exist", async () => {
  const a = await app(`
upstreams:
  u1: { base_url: "http://127.0.0.1:9/v1", keys: [keep-key-00000000000000, drop-key-00000000000000] }
`);
  try {
    const keep = a.rt.defaultPool!.candidates[0]!;
    a.store.record(keep.id).requests = 42;
    await a.reload(parseConfigText(
      `upstreams:\n  u1: { base_url: "http://127.0.0.1:9/v1", keys: [keep-key-00000000000000, new-key-000000000000000] }\n`,
      "app_test.yaml",
      { env: () => undefined },
    ));
    const after = a.rt.defaultPool!.candidates.find((c) => c.id === keep.id)!;
    assert.equal(after.state.requests, 42);
    assert.equal(a.rt.candidates.size, 2);
  } finally {
    await a.close();
  }
});

Deno.test("App.create() masks a key the same way in stats and in scrubbed text", async () => {
  // an upstream key and a client key sharing a mask get told apart once, for everything
  const lines: string[] = [];
  const config = parseConfigText(
    `
auth: { client_keys: [sk-shared-aaaa-1111-zzzz] }
upstreams:
  u1: { base_url: "http://127.0.0.1:9/v1", keys: [sk-shared-bbbb-2222-zzzz] }
`,
    "app_test.yaml",
    { env: () => undefined },
  );
  const a = await App.create(config, {
    plugins: builtins,
    probes: false,
    logger: new Logger({ sink: (l) => lines.push(l) }),
  });
  try {
    const mask = a.rt.defaultPool!.candidates[0]!.mask;
    assert.equal(a.rt.masks.get("sk-shared-bbbb-2222-zzzz"), mask);
    assert.equal(a.logger.redact("key sk-shared-bbbb-2222-zzzz"), `key ${mask}`);
    assert.notEqual(a.rt.masks.get("sk-shared-aaaa-1111-zzzz"), mask);
  } finally {
    await a.close();
  }
});
