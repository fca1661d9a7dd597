/**
 * @module
 * `deno task compile` without network access: the build stops with the same plain explanation
 * `deno task compile:all` gives (no runtime download, set DENORT_BIN), exit 1, and no binary.
 * The download is made to fail through a proxy that refuses connections; when a Deno runtime
 * is already at hand (DENORT_BIN, or one downloaded before) the build would succeed, so the
 * test is reported as ignored.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Whether `deno compile` could build without downloading a runtime. */
async function runtimeAtHand(): Promise<boolean> {
  if (Deno.env.get("DENORT_BIN")) return true;
  try {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
    const zip = `${denoDir}/dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;
    return (await Deno.stat(zip)).isFile;
  } catch {
    return false;
  }
}

Deno.test({
  name: "deno task compile explains plainly that the runtime could not be downloaded",
  ignore: await runtimeAtHand(),
  async fn() {
    // a closed port: connections to the "proxy" are refused, so no download can work
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const proxy = `http://127.0.0.1:${listener.addr.port}`;
    listener.close();
    const env = { NO_COLOR: "1", HTTPS_PROXY: proxy, HTTP_PROXY: proxy, NO_PROXY: "" };
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile"],
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        "Cannot build llm-balance: deno compile could not download the Deno runtime for " +
          `${Deno.build.target} \\(no internet access\\?\\)\\. Build where the download works, ` +
          `or set DENORT_BIN to a denort binary of Deno ${
            Deno.version.deno.replaceAll(".", "\\.")
          }`,
      ),
    );
    assert.doesNotMatch(stderr, /Stack backtrace|Caused by/, "deno's own trace is not shown");
    await assert.rejects(Deno.stat(`${ROOT}llm-balance`), Deno.errors.NotFound);
  },
});
