/**
 * @module
 * Tests of opening the state store a configuration asks for (`src/state/open.ts`): where the
 * state file is (none for `state: memory`, the configured path, or the platform's place derived
 * from the config file) and which store opens.
 */

import assert from "node:assert/strict";
import { basename, dirname, join, resolve } from "node:path";
import { parseConfigText } from "../../src/config/mod.ts";
import type { Config } from "../../src/config/types.ts";
import { Logger } from "../../src/logger.ts";
import { openStateStore, statePath } from "../../src/state/open.ts";
import { defaultStatePath } from "../../src/state/path.ts";
import { SqliteStateStore } from "../../src/state/sqlite_store.ts";
import { MemoryStateStore } from "../../src/state_store.ts";

const UPSTREAMS =
  `upstreams:\n  up: { base_url: "http://up.test/v1", keys: [sk-open-aaaa-0000000001] }\n`;

/** A configuration read from `source`, with `extra` lines after its upstreams. */
function config(source: string, extra = ""): Config {
  return parseConfigText(UPSTREAMS + extra, source, { env: () => undefined });
}

/** An environment holding only these variables. */
function env(vars: Record<string, string>): (name: string) => string | undefined {
  return (name) => vars[name];
}

const STATE_HOME = Deno.build.os === "windows" ? "C:\\state" : "/var/lib/state-home";
const ENV = env({ XDG_STATE_HOME: STATE_HOME, HOME: "/home/u", LOCALAPPDATA: STATE_HOME });

Deno.test("statePath() is undefined for state: memory", () => {
  assert.equal(statePath(config("/etc/llm/a.yaml", "state: memory\n"), ENV), undefined);
});

Deno.test("statePath() is the configured path, resolved against the config's folder", () => {
  const dir = resolve("/srv/llm");
  const c = config(join(dir, "a.yaml"), "state: { path: data/keys.sqlite }\n");
  assert.equal(statePath(c, ENV), join(dir, "data", "keys.sqlite"));
  const absolute = resolve("/var/keys.sqlite");
  const d = config(join(dir, "a.yaml"), `state: { path: ${JSON.stringify(absolute)} }\n`);
  assert.equal(statePath(d, ENV), absolute);
});

Deno.test("statePath() derives a file per config file under the platform's state folder", () => {
  const source = resolve("/etc/llm-balance/prod.yaml");
  const path = statePath(config(source), ENV);
  assert.ok(path !== undefined);
  assert.equal(path, defaultStatePath(source, ENV, Deno.build.os));
  if (Deno.build.os === "linux") {
    assert.equal(dirname(path), join(STATE_HOME, "llm-balance"));
  }
  assert.match(basename(path), /^prod-[0-9a-f]{8}\.sqlite$/);
  const other = statePath(config(resolve("/etc/llm-balance/staging.yaml")), ENV);
  assert.notEqual(other, path, "another config file keeps its own state");
  const same = resolve("/other/place/prod.yaml");
  assert.notEqual(statePath(config(same), ENV), path, "same name, another folder: another file");
});

Deno.test("statePath() reads a relative config path from the working folder", () => {
  const relative = "relative-dir/cfg.yaml";
  assert.equal(
    statePath(config(relative), ENV),
    statePath(config(resolve(relative)), ENV),
  );
});

Deno.test("statePath() uses default.sqlite when the config came from no file", () => {
  for (const source of ["", "<inline>", "<stdin>"]) {
    const path = statePath(config(source), ENV);
    assert.ok(path !== undefined);
    assert.equal(basename(path), "default.sqlite", JSON.stringify(source));
  }
});

Deno.test("statePath() throws when no folder for application state can be found", () => {
  assert.throws(() => statePath(config("/etc/a.yaml"), env({})), /Cannot find a folder/);
  assert.throws(
    () => statePath(config("/etc/a.yaml"), env({ HOME: "relative/home", XDG_STATE_HOME: "x" })),
    /Cannot find a folder/,
    "only absolute folders count",
  );
});

Deno.test("openStateStore() opens a memory store for state: memory", async () => {
  const { store, path } = openStateStore(config("/etc/a.yaml", "state: memory\n"));
  assert.ok(store instanceof MemoryStateStore);
  assert.equal(path, undefined);
  await store.close();
});

Deno.test("openStateStore() opens a working SQLite store at the configured path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "open_test_" });
  try {
    const file = join(dir, "nested", "state.sqlite");
    const lines: string[] = [];
    const logger = new Logger({ format: "json", sink: (line) => lines.push(line) });
    const c = config(join(dir, "a.yaml"), `state: { path: ${JSON.stringify(file)} }\n`);
    const opened = openStateStore(c, logger);
    assert.equal(opened.path, file);
    assert.ok(opened.store instanceof SqliteStateStore);
    opened.store.record("up#k0").requests = 7;
    opened.store.changed("up#k0");
    await opened.store.close();
    assert.ok((await Deno.stat(file)).isFile, "the folder and the file were created");
    assert.ok(lines.some((l) => /state file opened/i.test(l)), "the logger was told");

    const again = openStateStore(c, new Logger({ sink: () => {} }));
    assert.equal(again.store.record("up#k0").requests, 7, "what was saved is read back");
    await again.store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openStateStore() names the path when the file cannot be opened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "open_test_" });
  try {
    // a folder where the file should be
    const file = join(dir, "taken");
    await Deno.mkdir(join(file, "inside"), { recursive: true });
    const c = config(join(dir, "a.yaml"), `state: { path: ${JSON.stringify(file)} }\n`);
    assert.throws(() => openStateStore(c, new Logger({ sink: () => {} })), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.includes(file), err.message);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
