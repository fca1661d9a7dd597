/** @module Tests for src/config/defaults.ts. */

import assert from "node:assert/strict";
import { baseConfig, DEFAULT_TIMEOUTS, defaultHealthCheck } from "../../src/config/defaults.ts";

Deno.test("DEFAULT_TIMEOUTS holds 10 s, 120 s, 120 s and 600 s and cannot change", () => {
  assert.deepEqual(DEFAULT_TIMEOUTS, {
    connectMs: 10_000,
    firstByteMs: 120_000,
    idleMs: 120_000,
    totalMs: 600_000,
  });
  assert.ok(Object.isFrozen(DEFAULT_TIMEOUTS));
});

Deno.test("defaultHealthCheck() probes over http every 30 s with a 5 s timeout", () => {
  assert.deepEqual(defaultHealthCheck(), {
    probe: "http",
    path: "/models",
    intervalMs: 30_000,
    timeoutMs: 5_000,
  });
  assert.equal(defaultHealthCheck("/v1/models").path, "/v1/models");
});

Deno.test("baseConfig() returns a fresh object each time", () => {
  const a = baseConfig("a", "native");
  const b = baseConfig("b", "seed-a");
  a.server.port = 1;
  a.server.cors.origins.push("x");
  assert.equal(b.server.port, 8080);
  assert.deepEqual(b.server.cors.origins, ["*"]);
  assert.equal(b.source, "b");
  assert.equal(b.format, "seed-a");
});
