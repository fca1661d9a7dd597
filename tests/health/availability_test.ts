import assert from "node:assert/strict";
import { isAvailable, returnsAt, statusOf } from "../../src/health/availability.ts";
import { type CandidateState, emptyState } from "../../src/state_store.ts";

const NOW = 1_000_000;

function state(fields: Partial<CandidateState> = {}): CandidateState {
  return { ...emptyState(), ...fields };
}

Deno.test("statusOf() reports each state, disabled and unhealthy first", () => {
  assert.equal(statusOf(state(), NOW), "healthy");
  assert.equal(statusOf(state({ disabled: true, restUntil: NOW + 1 }), NOW), "disabled");
  assert.equal(statusOf(state({ healthy: false, ejectedUntil: NOW + 1 }), NOW), "unhealthy");
  assert.equal(statusOf(state({ restUntil: NOW + 1, ejectedUntil: NOW + 9 }), NOW), "resting");
  assert.equal(statusOf(state({ ejectedUntil: NOW + 1 }), NOW), "ejected");
  assert.equal(statusOf(state({ ejectedUntil: NOW }), NOW), "half_open");
  assert.equal(statusOf(state({ ejectedUntil: NOW - 5, trialInFlight: true }), NOW), "half_open");
});

Deno.test("statusOf() lets a rest expire by time alone", () => {
  const s = state({ restUntil: NOW + 100, restReason: "rate_limited" });
  assert.equal(statusOf(s, NOW + 99), "resting");
  assert.equal(statusOf(s, NOW + 100), "healthy");
});

Deno.test("isAvailable() admits healthy candidates and one half-open trial", () => {
  assert.equal(isAvailable(state(), NOW), true);
  assert.equal(isAvailable(state({ disabled: true }), NOW), false);
  assert.equal(isAvailable(state({ healthy: false }), NOW), false);
  assert.equal(isAvailable(state({ restUntil: NOW + 1 }), NOW), false);
  assert.equal(isAvailable(state({ restUntil: NOW }), NOW), true);
  assert.equal(isAvailable(state({ ejectedUntil: NOW + 1 }), NOW), false);
  assert.equal(isAvailable(state({ ejectedUntil: NOW }), NOW), true);
  assert.equal(isAvailable(state({ ejectedUntil: NOW, trialInFlight: true }), NOW), false);
});

Deno.test("returnsAt() is now for an available candidate", () => {
  assert.equal(returnsAt(state(), NOW), NOW);
  assert.equal(returnsAt(state({ ejectedUntil: NOW - 1 }), NOW), NOW);
});

Deno.test("returnsAt() is the later of rest end and ejection end", () => {
  assert.equal(returnsAt(state({ restUntil: NOW + 50 }), NOW), NOW + 50);
  assert.equal(returnsAt(state({ ejectedUntil: NOW + 70 }), NOW), NOW + 70);
  assert.equal(returnsAt(state({ restUntil: NOW + 50, ejectedUntil: NOW + 70 }), NOW), NOW + 70);
  assert.equal(returnsAt(state({ restUntil: NOW + 90, ejectedUntil: NOW + 70 }), NOW), NOW + 90);
});

Deno.test("returnsAt() is Infinity when only a probe, a trial or an operator brings it back", () => {
  assert.equal(returnsAt(state({ disabled: true }), NOW), Infinity);
  assert.equal(returnsAt(state({ healthy: false, restUntil: NOW + 5 }), NOW), Infinity);
  assert.equal(returnsAt(state({ ejectedUntil: NOW - 1, trialInFlight: true }), NOW), Infinity);
});
