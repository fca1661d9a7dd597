/** @module Tests of src/state/path.ts: where a config file's state lives by default. */

import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultStatePath } from "../../src/state/path.ts";

Deno.test("defaultStatePath() follows each platform's convention for application state", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const cfg = "/etc/llm-balance/prod.yaml";
  const hash = defaultStatePath(cfg, env({ HOME: "/h" }), "linux").slice(-15, -7);
  assert.match(hash, /^[0-9a-f]{8}$/);
  const cases: [string | undefined, Record<string, string>, typeof Deno.build.os, string][] = [
    [cfg, { XDG_STATE_HOME: "/x", HOME: "/h" }, "linux", `/x/llm-balance/prod-${hash}.sqlite`],
    [cfg, { HOME: "/h" }, "linux", `/h/.local/state/llm-balance/prod-${hash}.sqlite`],
    [
      cfg,
      { XDG_STATE_HOME: "", HOME: "/h" },
      "freebsd",
      `/h/.local/state/llm-balance/prod-${hash}.sqlite`,
    ],
    [
      cfg,
      { XDG_STATE_HOME: "rel", HOME: "/h" },
      "linux",
      `/h/.local/state/llm-balance/prod-${hash}.sqlite`,
    ],
    [
      cfg,
      { HOME: "/Users/a" },
      "darwin",
      `/Users/a/Library/Application Support/llm-balance/prod-${hash}.sqlite`,
    ],
    [undefined, { HOME: "/h" }, "linux", "/h/.local/state/llm-balance/default.sqlite"],
    [
      undefined,
      { LOCALAPPDATA: "C:\\Users\\a\\AppData\\Local" },
      "windows",
      "C:\\Users\\a\\AppData\\Local\\llm-balance\\default.sqlite",
    ],
    [
      undefined,
      { USERPROFILE: "C:\\Users\\a" },
      "windows",
      "C:\\Users\\a\\AppData\\Local\\llm-balance\\default.sqlite",
    ],
  ];
  for (const [config, vars, os, expected] of cases) {
    assert.equal(
      defaultStatePath(config, env(vars), os),
      expected,
      `${os} ${JSON.stringify(vars)}`,
    );
  }
  const win = defaultStatePath(
    "C:\\cfg\\My Config.v2.yml",
    env({ LOCALAPPDATA: "D:\\L" }),
    "windows",
  );
  assert.match(win, /^D:\\L\\llm-balance\\My_Config_v2-[0-9a-f]{8}\.sqlite$/);
  const odd = defaultStatePath("/c/wéird name!.json", env({ HOME: "/h" }), "linux");
  assert.match(odd, /^\/h\/\.local\/state\/llm-balance\/w_ird_name_-[0-9a-f]{8}\.sqlite$/);
});

Deno.test("defaultStatePath() gives one file per config file", () => {
  const env = (name: string) => ({ HOME: "/h" } as Record<string, string>)[name];
  const at = (config: string) => defaultStatePath(config, env, "linux");
  assert.equal(at("/a/prod.yaml"), at("/a/prod.yaml"));
  assert.equal(at("/a/x/../prod.yaml"), at("/a/prod.yaml"), "the same file by another path");
  assert.equal(
    at("prod.yaml"),
    at(join(Deno.cwd(), "prod.yaml")),
    "relative to the working folder",
  );
  assert.notEqual(at("/a/prod.yaml"), at("/b/prod.yaml"));
  assert.notEqual(at("/a/prod.yaml"), at("/a/prod.yml"));
  // Windows file names ignore case: Prod-<hash>.sqlite and prod-<hash>.sqlite are one file
  const win = (config: string) => defaultStatePath(config, () => "C:\\L", "windows").toLowerCase();
  assert.equal(win("C:\\Cfg\\Prod.yaml"), win("c:\\cfg\\prod.yaml"));
});

Deno.test("defaultStatePath() throws when no variable names a folder", () => {
  assert.throws(
    () => defaultStatePath(undefined, () => undefined, "linux"),
    /^Error: Cannot find a folder for the state file: set XDG_STATE_HOME or HOME$/,
  );
});
