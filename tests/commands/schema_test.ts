/** @module Tests for src/commands/schema.ts: the committed config.schema.json is never stale. */

import assert from "node:assert/strict";
import { schemaText } from "../../src/commands/schema.ts";
import { builtins } from "../../plugins/mod.ts";

const COMMITTED = new URL("../../config.schema.json", import.meta.url);

Deno.test("schemaText() equals the committed config.schema.json", async () => {
  const committed = await Deno.readTextFile(COMMITTED);
  assert.ok(
    committed === schemaText(),
    "config.schema.json is stale: regenerate it with " +
      "`deno run -A main.ts schema > config.schema.json`",
  );
});

Deno.test("schemaText() is pretty JSON ending with one newline", () => {
  const text = schemaText();
  assert.ok(text.endsWith("}\n"));
  assert.equal(text, JSON.stringify(JSON.parse(text), null, 2) + "\n");
});

Deno.test("schemaText() offers every built-in strategy and probe", () => {
  const text = schemaText();
  for (const plugin of builtins) {
    if (plugin.kind === "middleware") continue;
    assert.ok(text.includes(`"${plugin.name}"`), `${plugin.kind} ${plugin.name}`);
  }
});
