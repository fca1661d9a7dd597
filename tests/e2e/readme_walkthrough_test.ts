/**
 * @module
 * The README's "Write a strategy plugin" walkthrough, as written: its plugin and its test are
 * taken from README.md into a scratch copy of the layout they expect (`plugins/`, `tests/plugins/`
 * next to this repository's `src/` and `tests/helpers/`), type-checked with this repository's
 * compiler settings, run, and the plugin loaded by `check` from the walkthrough's config.
 */

import assert from "node:assert/strict";
import { runCli, tempConfig } from "../helpers/cli.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const README = await Deno.readTextFile(`${ROOT}README.md`);

/**
 * The first fenced block of a language after a marker in the README.
 * @param marker text just before the block (e.g. `**2. The plugin.**`)
 * @param lang the fence's language
 * @returns the block's text
 */
function blockAfter(marker: string, lang: string): string {
  const at = README.indexOf(marker);
  assert.ok(at >= 0, `README has no "${marker}"`);
  const open = README.indexOf("```" + lang + "\n", at);
  assert.ok(open >= 0, `no ${lang} block after "${marker}"`);
  const start = open + lang.length + 4;
  return README.slice(start, README.indexOf("\n```", start) + 1);
}

/**
 * The path the README says a block is saved under: the first `` `<folder>....ts` `` after a
 * marker.
 */
function pathAfter(marker: string, folder = "plugins/"): string {
  const rest = README.slice(README.indexOf(marker));
  const found = new RegExp("`(" + folder + "[\\w/]+\\.ts)`").exec(rest);
  assert.ok(found?.[1] !== undefined, `no path after "${marker}"`);
  return found[1];
}

async function deno(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: r.code, output: text.decode(r.stdout) + text.decode(r.stderr) };
}

Deno.test("the README's plugin walkthrough type-checks, passes its test and loads", async () => {
  const plugin = blockAfter("**2. The plugin.**", "ts");
  const pluginPath = pathAfter("**2. The plugin.**");
  const test = blockAfter("**4. Test it**", "ts");
  const testFile = pathAfter("**4. Test it**", "tests/plugins/");
  assert.equal(pluginPath, "plugins/least_recently_used.ts");
  assert.equal(testFile, "tests/plugins/least_recently_used_test.ts");

  const dir = await Deno.makeTempDir({ prefix: "llm-balance-walkthrough-" });
  try {
    await Deno.mkdir(`${dir}/plugins`);
    await Deno.mkdir(`${dir}/tests/plugins`, { recursive: true });
    await Deno.symlink(`${ROOT}src`, `${dir}/src`);
    await Deno.symlink(`${ROOT}tests/helpers`, `${dir}/tests/helpers`);
    await Deno.writeTextFile(`${dir}/${pluginPath}`, plugin);
    await Deno.writeTextFile(`${dir}/${testFile}`, test);

    // this repository's compiler settings and lock file, which must not change
    const config = ["--config", `${ROOT}deno.json`, "--frozen"];
    const checked = await deno(["check", ...config, pluginPath, testFile], dir);
    assert.equal(checked.code, 0, checked.output);
    const ran = await deno(["test", "-A", ...config, "tests/plugins/"], dir);
    assert.equal(ran.code, 0, ran.output);
    assert.match(ran.output, /least_recently_used picks the key idle the longest \.\.\. ok/);

    // step 3: the config snippet loads the plugin, and check lists it
    const yaml = blockAfter("**3. Load it.**", "yaml");
    const cfg = await tempConfig(
      `upstreams:\n  modelscope: { base_url: "http://127.0.0.1:9/v1", keys: [sk-walkthrough-0001] }\n${yaml}`,
    );
    try {
      await Deno.symlink(`${dir}/plugins`, `${cfg.dir}/plugins`);
      const r = await runCli(["check", "--config", cfg.path]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /plugins\/least_recently_used\.ts: strategy:least_recently_used/);
      assert.match(r.stdout, /least_recently_used over 1 key/);
    } finally {
      await cfg.remove();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
