/**
 * @module
 * Tests of the command output helpers.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/mod.ts";
import { describeError, errorReport, isLoopbackHost } from "../../src/commands/_io.ts";

Deno.test("describeError() gives every config problem its field path and line", () => {
  const one = new ConfigError("x.yaml", [{
    path: "upstreams.a.weight",
    message: "must be >= 0",
    line: 5,
  }]);
  assert.equal(
    describeError(one),
    'Cannot load config "x.yaml": upstreams.a.weight (line 5): must be >= 0',
  );
  const many = new ConfigError("x.yaml", [
    { path: "", message: "invalid YAML: bad", line: 2 },
    { path: "pools.default.strategy", message: 'unknown strategy "x"' },
    { path: "", message: "file not found" },
  ]);
  assert.equal(
    describeError(many),
    'Cannot load config "x.yaml": 3 problems\n  line 2: invalid YAML: bad\n' +
      '  pools.default.strategy: unknown strategy "x"\n  file not found',
  );
  assert.equal(describeError(new Error("Cannot listen")), "Cannot listen");
  assert.equal(describeError("odd"), "odd");
  assert.equal(
    describeError(new Error("needs an option"), "Cannot start"),
    "Cannot start: needs an option",
  );
  assert.equal(describeError(new Error("Cannot start: x"), "Cannot start"), "Cannot start: x");
});

Deno.test("isLoopbackHost() tells loopback addresses apart", () => {
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) {
    assert.ok(isLoopbackHost(host), host);
  }
  for (const host of ["0.0.0.0", "::", "192.168.1.2", "example.com"]) {
    assert.ok(!isLoopbackHost(host), host);
  }
});

Deno.test("errorReport() gives every config problem as JSON, with its path and line", () => {
  const err = new ConfigError("x.yaml", [
    { path: "upstreams.ms.keys", message: "must list at least one key", line: 4 },
    { path: "", message: "file not found" },
  ]);
  assert.deepEqual(errorReport(err), {
    valid: false,
    source: "x.yaml",
    errors: [
      { path: "upstreams.ms.keys", line: 4, message: "must list at least one key" },
      { path: "", message: "file not found" },
    ],
  });
  assert.deepEqual(errorReport(new Error("Cannot load plugin"), "y.yaml"), {
    valid: false,
    source: "y.yaml",
    errors: [{ path: "", message: "Cannot load plugin" }],
  });
  assert.deepEqual(errorReport("odd"), {
    valid: false,
    source: null,
    errors: [{ path: "", message: "odd" }],
  });
});
