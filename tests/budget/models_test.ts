/** @module Tests of the bounded per-model budget entries (src/budget/models.ts). */

import assert from "node:assert/strict";
import {
  MAX_MODEL_NAME,
  MAX_MODELS,
  modelSlot,
  OTHER_MODELS,
  readModel,
  upstreamModel,
} from "../../src/budget/models.ts";
import { makeCandidates } from "../helpers/candidates.ts";

Deno.test("upstreamModel() applies the upstream's models mapping, own names only", () => {
  const [c] = makeCandidates(1);
  (c!.upstream.config as { models: Record<string, string> }).models = { "gpt-4o": "Qwen/Qwen3" };
  assert.equal(upstreamModel(c!, "gpt-4o"), "Qwen/Qwen3");
  assert.equal(upstreamModel(c!, "other"), "other");
  assert.equal(upstreamModel(c!, "constructor"), "constructor", "no inherited property");
  assert.equal(upstreamModel(c!, undefined), undefined);
});

Deno.test("modelSlot() keeps a model under its own name while there is room", () => {
  const map: Record<string, number> = {};
  assert.equal(modelSlot(map, "m"), "m");
  map.m = 1;
  assert.equal(modelSlot(map, "m"), "m");
});

Deno.test("modelSlot() puts long, hostile and surplus names in the one overflow entry", () => {
  const map: Record<string, number> = {};
  assert.equal(modelSlot(map, "x".repeat(MAX_MODEL_NAME + 1)), OTHER_MODELS);
  assert.equal(modelSlot(map, "__proto__"), OTHER_MODELS);
  for (let i = 0; i < MAX_MODELS; i++) map[`m${i}`] = 1;
  assert.equal(modelSlot(map, "new"), OTHER_MODELS);
  assert.equal(modelSlot(map, "m3"), "m3", "a counted model keeps its entry");
});

Deno.test("modelSlot() sends every new name to the overflow entry once it exists", () => {
  const map: Record<string, number> = { [OTHER_MODELS]: 4 };
  assert.equal(modelSlot(map, "short"), OTHER_MODELS);
});

Deno.test("readModel() reads a model's own entry, else the overflow entry", () => {
  const map: Record<string, number> = { a: 1 };
  assert.equal(readModel(map, "a"), 1);
  assert.equal(readModel(map, "b"), undefined);
  assert.equal(readModel(map, "toString"), undefined, "no inherited property");
  map[OTHER_MODELS] = 7;
  assert.equal(readModel(map, "b"), 7);
  assert.equal(readModel(map, "a"), 1);
});
