/**
 * @module
 * Tests of the routing scenarios' pieces (tests/bench/_routing.ts): the wrk script carrying
 * affinity values, and the note summing up a pool's affinity counts.
 */

import assert from "node:assert/strict";
import { affinityNote, affinityWrkScript, ROUTING_SIDES } from "./_routing.ts";
import { WRK_SCRIPT } from "./_load.ts";

Deno.test("affinityWrkScript() extends the bench script with a request() cycling values and fresh ones", () => {
  const script = affinityWrkScript({ values: 250, freshEvery: 4 });
  assert.ok(script.startsWith(WRK_SCRIPT), "the summary the bench parses is kept");
  assert.match(script, /^request = function\(\)$/m);
  assert.match(script, /sent % 4 == 0/);
  assert.match(script, /cycled % 250/);
  assert.match(script, /"prompt_cache_key":"%s"/);
  assert.match(affinityWrkScript(), /sent % 10 == 0[\s\S]*cycled % 1000/, "the defaults");
});

Deno.test("affinityNote() gives the shares of hits, new pins and moves, and the pins held", () => {
  const view = {
    load_balancers: {
      default: {
        affinity: { pins: 12345, requests: { hit: 900, new: 90, moved: 6, detour: 4 } },
      },
    },
  };
  assert.equal(
    affinityNote(view),
    "affinity: 90.0% hit, 9.0% new, 1.0% moved/detour; 12,345 pins",
  );
  assert.equal(affinityNote({ load_balancers: { default: { affinity: null } } }), undefined);
  assert.equal(affinityNote({}), undefined);
});

Deno.test("ROUTING_SIDES puts the baseline first and changes only the default pool", () => {
  assert.deepEqual(ROUTING_SIDES.affinity[0].pool, {});
  assert.deepEqual(ROUTING_SIDES.affinity[1].pool, { affinity: { by: ["prompt_cache_key"] } });
  assert.deepEqual(ROUTING_SIDES.p2c.map((s) => s.pool.strategy), ["round_robin", "p2c"]);
});
