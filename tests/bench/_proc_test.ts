/** @module Tests of the bench's process helpers (tests/bench/_proc.ts). */

import assert from "node:assert/strict";
import { openFilesLimit } from "./_proc.ts";

Deno.test({
  name: "openFilesLimit() reads the hard limit on open files, no less than the soft one",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const limit = openFilesLimit();
    assert.ok(limit > 0);
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"))!;
    const soft = Number(line.trim().split(/\s+/)[3]);
    assert.ok(!(limit < soft), `${limit} < ${soft}`);
  },
});
