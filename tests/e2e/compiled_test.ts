/**
 * @module
 * The compiled binary (`deno compile` with the flags of `deno task compile`): `version`,
 * `check` of a config naming the example plugin by a path that does not exist next to it (the
 * binary's baked-in copy serves), and `serve --port 0` forwarding to a mock upstream. `deno
 * compile` needs a Deno runtime (`denort`) for the host: `DENORT_BIN`, or one already
 * downloaded into DENO_DIR. Without one the test is reported as ignored, and says why.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { COMPILE_FLAGS } from "../../tools/compile_all.ts";
import { runCli, startServe, tempConfig } from "../helpers/cli.ts";
import denoJson from "../../deno.json" with { type: "json" };

const ROOT = new URL("../../", import.meta.url).pathname;

/** Whether `deno compile` can get a runtime without downloading one. */
async function runtimeAvailable(): Promise<boolean> {
  if (Deno.env.get("DENORT_BIN")) return true;
  try {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
    const zip = `${denoDir}/dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;
    return (await Deno.stat(zip)).isFile;
  } catch {
    return false;
  }
}

const available = await runtimeAvailable();
if (!available) {
  console.log(
    "compiled_test: skipped: deno compile needs a Deno runtime download (set DENORT_BIN)",
  );
}

Deno.test({
  name: "the compiled binary runs version, check with a baked-in plugin, and serve",
  ignore: !available,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "llm-balance-compiled-" });
    await using mock = await startMockUpstream();
    try {
      const bin = `${dir}/llm-balance${Deno.build.os === "windows" ? ".exe" : ""}`;
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["compile", ...COMPILE_FLAGS, "--output", bin, "main.ts"],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(built.success, new TextDecoder().decode(built.stderr));

      const version = await runCli(["version"], { binary: bin });
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout.trim(), denoJson.version);

      // ./plugins/examples/quota_aware.ts does not exist next to this config: the binary's copy serves.
      const cfg = await tempConfig(`log: { format: json }
upstreams:
  mock: { base_url: ${mock.baseUrl}, keys: [sk-compiled-key-aaaa-0001] }
pools:
  default: { strategy: daily_quota, upstreams: [mock] }
plugins: [./plugins/examples/quota_aware.ts]
`);
      try {
        const check = await runCli(["check", "--config", cfg.path], { binary: bin });
        assert.equal(check.code, 0, check.stderr);
        assert.match(check.stdout, /daily_quota over 1 key/);

        await using served = await startServe(["serve", "--config", cfg.path, "--port", "0"], {
          binary: bin,
        });
        const res = await fetch(`${served.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
        });
        assert.equal(res.status, 200);
        assert.equal((await res.json()).object, "chat.completion");
        assert.equal(mock.requests.length, 1);
        assert.equal((await served.close()).code, 0);
      } finally {
        await cfg.remove();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
