/**
 * @module
 * End-to-end configuration mistakes: a key list set but empty (`MODELSCOPE_KEYS=`) stops
 * `serve` and `check` with exit 2 naming the field and the variable, in the native format and
 * both seeds; configured `headers` are defaults a client's own header overrides, while
 * `force_headers` replace the client's, on real requests to a real upstream.
 */

import assert from "node:assert/strict";
import { startMockUpstream } from "../../tools/mock_upstream.ts";
import { startProxy } from "../helpers/proxy.ts";
import { runCli, tempConfig } from "../helpers/cli.ts";
import { postJson } from "../helpers/e2e.ts";

Deno.test("serve and check refuse a key list set but empty, naming the field and the variable", async () => {
  const cases = [
    {
      name: "native",
      file: "config.yaml",
      text: "upstreams:\n  modelscope:\n    base_url: http://127.0.0.1:9/v1\n" +
        "    keys: ${MODELSCOPE_KEYS}\n",
      want:
        /upstreams\.modelscope\.keys \(line 4\): must list at least one key, .*\(\$MODELSCOPE_KEYS is set but empty\)/,
    },
    {
      name: "Seed A",
      file: "config.json",
      text: '{\n  "api_keys": "${MODELSCOPE_KEYS}",\n  "target_url": "http://127.0.0.1:9"\n}\n',
      want:
        /api_keys \(line 2\): must list at least one key \(\$MODELSCOPE_KEYS is set but empty\)/,
    },
    {
      name: "Seed B",
      file: "config.yaml",
      text: "models:\n  gpt-4:\n    api_base: http://127.0.0.1:9/v1\n" +
        '    api_key: "${MODELSCOPE_KEYS}"\n',
      want:
        /models\.gpt-4\.api_key \(line 4\): must not be empty \(\$MODELSCOPE_KEYS is set but empty\)/,
    },
  ];
  for (const c of cases) {
    const cfg = await tempConfig(c.text, c.file);
    try {
      const env = { MODELSCOPE_KEYS: "" };
      const [serve, check] = await Promise.all([
        runCli(["serve", "--config", cfg.path, "--port", "0"], { env, timeoutMs: 15_000 }),
        runCli(["check", "--config", cfg.path, "--json"], { env }),
      ]);
      assert.equal(serve.code, 2, `${c.name}: ${serve.stdout}${serve.stderr}`);
      assert.equal(serve.stdout, "", `${c.name}: no URL line, no server`);
      assert.match(serve.stderr, c.want, c.name);
      assert.doesNotMatch(serve.stderr, /no-key/, c.name);
      assert.equal(check.code, 2, c.name);
      const report = JSON.parse(check.stdout);
      assert.equal(report.valid, false, c.name);
      assert.equal(report.errors.length, 1, c.name);
      // with keys, the same file is valid
      const ok = await runCli(["check", "--config", cfg.path], {
        env: { MODELSCOPE_KEYS: "ms-key-one,ms-key-two" },
      });
      assert.equal(ok.code, 0, `${c.name}: ${ok.stderr}`);
    } finally {
      await cfg.remove();
    }
  }
});

Deno.test("configured headers are defaults a client overrides; force_headers replace the client's", async () => {
  await using mock = await startMockUpstream();
  await using proxy = await startProxy(`
upstreams:
  claude:
    base_url: "${mock.baseUrl}"
    auth: x-api-key
    keys: [sk-ant-headers-e2e-000000000001]
    headers:
      anthropic-version: "2023-06-01"
      anthropic-beta: config-beta
    force_headers:
      x-team: ops
`);
  const body = { model: "claude", max_tokens: 5, messages: [{ role: "user", content: "hi" }] };
  // an SDK that sends a newer anthropic-version, and tries to set the forced header
  const sdk = await postJson(`${proxy.url}/v1/messages`, body, {
    "anthropic-version": "2024-10-22",
    "x-team": "client-team",
  });
  assert.equal(sdk.status, 200);
  await sdk.body?.cancel();
  // a bare client that sends none of them
  const bare = await postJson(`${proxy.url}/v1/messages`, body);
  assert.equal(bare.status, 200);
  await bare.body?.cancel();
  const [fromSdk, fromBare] = mock.requests.map((r) => r.headers);
  assert.equal(fromSdk?.["anthropic-version"], "2024-10-22", "the client's own version is kept");
  assert.equal(fromSdk?.["anthropic-beta"], "config-beta");
  assert.equal(fromSdk?.["x-team"], "ops", "a forced header replaces the client's");
  assert.equal(fromBare?.["anthropic-version"], "2023-06-01", "the config's fills in");
  assert.equal(fromBare?.["x-team"], "ops");
  assert.equal(fromBare?.["x-api-key"], "sk-ant-headers-e2e-000000000001");
  assert.equal(Object.keys(fromBare ?? {}).some((k) => k.startsWith("!")), false);
});
