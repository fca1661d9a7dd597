/** @module Tests for src/config/errors.ts. */

import assert from "node:assert/strict";
import { ConfigError, formatPath } from "../../src/config/errors.ts";

Deno.test("formatPath() joins keys with dots and indexes with brackets", () => {
  assert.equal(
    formatPath(["models", "gpt-4", "upstreams", 1, "weight"]),
    "models.gpt-4.upstreams[1].weight",
  );
  assert.equal(formatPath(["api_keys", 0]), "api_keys[0]");
  assert.equal(formatPath([]), "");
});

Deno.test("ConfigError renders one issue on one line", () => {
  const error = new ConfigError("x.yaml", [
    { path: "upstreams.ms.weight", message: "must be >= 0", line: 4 },
  ]);
  assert.equal(
    error.message,
    'Cannot load config "x.yaml": upstreams.ms.weight (line 4): must be >= 0',
  );
  assert.equal(error.name, "ConfigError");
  assert.equal(error.source, "x.yaml");
  assert.ok(error instanceof Error);
});

Deno.test("ConfigError renders a file-level issue with its line", () => {
  assert.equal(
    new ConfigError("x.yaml", [{ path: "", message: "file not found" }]).message,
    'Cannot load config "x.yaml": file not found',
  );
  assert.equal(
    new ConfigError("x.yaml", [{ path: "", message: "invalid YAML: oops", line: 3 }]).message,
    'Cannot load config "x.yaml": line 3: invalid YAML: oops',
  );
});

Deno.test("ConfigError lists several issues, one indented line each", () => {
  const error = new ConfigError("x.yaml", [
    { path: "upstreams.ms.keys[1]", message: "must be a string", line: 5 },
    { path: "upstreams", message: "is required" },
    { path: "", message: "invalid YAML: oops", line: 9 },
  ]);
  assert.equal(
    error.message,
    [
      'Cannot load config "x.yaml": 3 problems',
      "  upstreams.ms.keys[1] (line 5): must be a string",
      "  upstreams: is required",
      "  line 9: invalid YAML: oops",
    ].join("\n"),
  );
  assert.equal(error.issues.length, 3);
});
