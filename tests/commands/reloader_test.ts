/**
 * @module
 * Tests of the `Reloader`: swapping configs in, keeping out broken ones, never overlapping,
 * and watching the config file.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../../src/config/mod.ts";
import type { Config } from "../../src/config/types.ts";
import { Reloader } from "../../src/commands/reloader.ts";
import { startProxy } from "../helpers/proxy.ts";
import { tempConfig } from "../helpers/cli.ts";

const ONE = `upstreams:\n  a: { base_url: http://127.0.0.1:9/v1, keys: [sk-reloader-aaaa-01] }\n`;
const TWO = `upstreams:
  a: { base_url: http://127.0.0.1:9/v1, keys: [sk-reloader-aaaa-01] }
  b: { base_url: http://127.0.0.1:8/v1, keys: [sk-reloader-bbbb-02] }
`;

function loader(path: string): () => Promise<Config> {
  return async () => parseConfigText(await Deno.readTextFile(path), path, { env: () => undefined });
}

async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  for (let t = 0; t < ms && !check(); t += 20) await new Promise((r) => setTimeout(r, 20));
  assert.ok(check(), "condition not met in time");
}

Deno.test("Reloader.reload() swaps the config in and keeps the state of surviving keys", async () => {
  const cfg = await tempConfig(ONE);
  try {
    await using proxy = await startProxy(ONE, { source: cfg.path });
    const reloader = new Reloader(proxy.app, { load: loader(cfg.path) });
    const before = [...proxy.app.rt.candidates.values()][0]!;
    proxy.app.store.record(before.id).requests = 7;
    await Deno.writeTextFile(cfg.path, TWO);
    assert.equal(await reloader.reload("test"), true);
    assert.deepEqual([...proxy.app.rt.upstreams.keys()], ["a", "b"]);
    const after = proxy.app.rt.candidates.get(before.id)!;
    assert.equal(after.state.requests, 7);
    const log = proxy.logRecords().find((r) => r.msg === "config reloaded");
    assert.deepEqual([log?.trigger, log?.upstreams, log?.keys], ["test", 2, 2]);
    await reloader.close();
    assert.equal(await reloader.reload("after close"), false);
  } finally {
    await cfg.remove();
  }
});

Deno.test("Reloader.reload() keeps a broken config out and logs why", async () => {
  const cfg = await tempConfig(ONE);
  try {
    await using proxy = await startProxy(ONE, { source: cfg.path });
    const reloader = new Reloader(proxy.app, { load: loader(cfg.path) });
    const rt = proxy.app.rt;
    await Deno.writeTextFile(cfg.path, "upstreams:\n  a: { base_url: 12 }\n");
    assert.equal(await reloader.reload("SIGHUP"), false);
    assert.equal(proxy.app.rt, rt);
    const log = proxy.logRecords().find((r) =>
      r.msg === "reload rejected: the old config keeps serving"
    );
    assert.equal(log?.level, "error");
    assert.match(String(log?.error), /upstreams\.a\.base_url \(line 2\)/);
    await reloader.close();
  } finally {
    await cfg.remove();
  }
});

Deno.test("Reloader.reload() runs reloads one after another", async () => {
  await using proxy = await startProxy(ONE);
  let running = 0;
  let most = 0;
  const reloader = new Reloader(proxy.app, {
    load: async () => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      return parseConfigText(TWO, "two.yaml", { env: () => undefined });
    },
  });
  const results = await Promise.all([
    reloader.reload("1"),
    reloader.reload("2"),
    reloader.reload("3"),
  ]);
  assert.deepEqual(results, [true, true, true]);
  assert.equal(most, 1);
  await reloader.close();
});

Deno.test("Reloader.watch() reloads when the file is rewritten or replaced", async () => {
  const watch = "server: { watch_config: true }\n";
  const cfg = await tempConfig(watch + ONE);
  try {
    await using proxy = await startProxy(watch + ONE, { source: cfg.path });
    const reloader = new Reloader(proxy.app, { load: loader(cfg.path), debounceMs: 20 });
    reloader.watch(cfg.path);
    assert.equal(reloader.watching, true);
    await Deno.writeTextFile(cfg.path, watch + TWO);
    await waitFor(() => proxy.app.rt.upstreams.size === 2);
    await Deno.writeTextFile(`${cfg.path}.new`, watch + ONE);
    await Deno.rename(`${cfg.path}.new`, cfg.path);
    await waitFor(() => proxy.app.rt.upstreams.size === 1);
    const triggers = proxy.logRecords().filter((r) => r.msg === "config reloaded").map((r) =>
      r.trigger
    );
    assert.ok(triggers.length >= 2 && triggers.every((t) => t === "file change"), String(triggers));
    await reloader.close();
    assert.equal(reloader.watching, false);
  } finally {
    await cfg.remove();
  }
});

Deno.test("Reloader follows server.watch_config across reloads", async () => {
  const cfg = await tempConfig(ONE);
  try {
    await using proxy = await startProxy(ONE, { source: cfg.path });
    const reloader = new Reloader(proxy.app, { load: loader(cfg.path), debounceMs: 20 });
    await Deno.writeTextFile(cfg.path, `server: { watch_config: true }\n${ONE}`);
    await reloader.reload("SIGHUP");
    assert.equal(reloader.watching, true);
    await Deno.writeTextFile(cfg.path, ONE);
    await waitFor(() => !reloader.watching);
    await reloader.close();
  } finally {
    await cfg.remove();
  }
});
