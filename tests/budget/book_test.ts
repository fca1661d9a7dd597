/**
 * @module
 * Tests of the budget book (`src/budget/book.ts`): counting requests and tokens per day, minute
 * and model; spending a key or a model until its window rolls; what providers' headers teach;
 * exhaustion; concurrency; the views stats show; and daily windows in zones with offsets and DST.
 */

import assert from "node:assert/strict";
import { allowsModel, atCapacity, Budgets, modelReturnsAt } from "../../src/budget/book.ts";
import { budgetViews, shareLeft } from "../../src/budget/views.ts";
import { MAX_MODELS, OTHER_MODELS } from "../../src/budget/models.ts";
import { learnedBudgets } from "../../src/budget/headers.ts";
import { dayStart, nextReset } from "../../src/budget/reset.ts";
import type { QuotaConfig } from "../../src/config/types.ts";
import { isAvailable } from "../../src/health/availability.ts";
import { type FakeCandidate, makeCandidates } from "../helpers/candidates.ts";

const MINUTE = 60_000;
const HOUR = 3_600_000;
/** Wednesday 2026-06-10 12:00:00 UTC: the UTC day runs from 00:00 that day to 00:00 the next. */
const NOW = Date.UTC(2026, 5, 10, 12, 0, 0);
const DAY_START = Date.UTC(2026, 5, 10);
const DAY_END = Date.UTC(2026, 5, 11);
const M = "Qwen/Qwen3-32B";

/** One key with these budgets (UTC, reset at 00:00 unless said). */
function key(quota: Partial<QuotaConfig> = {}): FakeCandidate {
  return makeCandidates([{ quota: { timeZone: "UTC", ...quota } }])[0]!;
}

/** A book that counts how often it told of a change. */
function book(): { budgets: Budgets; changes: () => number } {
  let n = 0;
  const budgets = new Budgets({ onChange: () => n++ });
  return { budgets, changes: () => n };
}

/** Headers of a ModelScope answer. */
function modelScope(account: [number, number], model?: [number, number]): Headers {
  const h = new Headers({
    "modelscope-ratelimit-requests-remaining": String(account[0]),
    "modelscope-ratelimit-requests-limit": String(account[1]),
  });
  if (model !== undefined) {
    h.set("modelscope-ratelimit-model-requests-remaining", String(model[0]));
    h.set("modelscope-ratelimit-model-requests-limit", String(model[1]));
  }
  return h;
}

function learned(headers: Headers, now = NOW) {
  const l = learnedBudgets(headers, now);
  assert.ok(l !== undefined, "the headers are read");
  return l;
}

// --- take: counting and spending ---

Deno.test("Budgets.take() counts a request against the day, the minute and the model", () => {
  const { budgets, changes } = book();
  const c = key();
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 1000);
  budgets.take(c, "other", NOW + 2000);
  budgets.take(c, undefined, NOW + 3000);
  const b = c.state.budget;
  assert.equal(b.dayStart, DAY_START);
  assert.equal(b.dayEnd, DAY_END);
  assert.equal(b.dayRequests, 4);
  assert.equal(b.minuteStart, NOW);
  assert.equal(b.minuteRequests, 4);
  assert.deepEqual(b.modelRequests, { [M]: 2, other: 1 });
  assert.equal(b.spentUntil, 0);
  assert.equal(changes(), 0, "no budget filled: nothing changed for the pools");
});

Deno.test("Budgets.take() spends a key at its daily limit until the next daily reset", () => {
  const { budgets, changes } = book();
  const c = key({ requestsPerDay: 3 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + MINUTE);
  assert.equal(c.state.budget.spentUntil, 0);
  assert.equal(changes(), 0);
  budgets.take(c, M, NOW + 2 * MINUTE);
  const b = c.state.budget;
  assert.equal(b.spentUntil, nextReset(NOW, { hour: 0, minute: 0 }, "UTC"));
  assert.equal(b.spentUntil, DAY_END);
  assert.equal(b.spentReason, "day");
  assert.equal(changes(), 1, "the pools were told once");
  assert.equal(isAvailable(c.state, DAY_END - 1), false);
  assert.equal(isAvailable(c.state, DAY_END), true, "back at the reset itself");
});

Deno.test("Budgets.take() spends a key at its minute limit until its minute window ends", () => {
  const { budgets, changes } = book();
  const c = key({ requestsPerMinute: 2 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 59_999);
  const b = c.state.budget;
  assert.equal(b.spentUntil, NOW + MINUTE);
  assert.equal(b.spentReason, "minute");
  assert.equal(changes(), 1);
  assert.equal(isAvailable(c.state, NOW + MINUTE - 1), false);
  assert.equal(isAvailable(c.state, NOW + MINUTE), true);
});

Deno.test("Budgets.take() keeps the longer spend when a day and a minute fill together", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 2, requestsPerMinute: 2 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 1000);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.equal(c.state.budget.spentReason, "day");
});

Deno.test("Budgets.take() starts a new minute window a full minute after the last began", () => {
  const { budgets } = book();
  const c = key({ requestsPerMinute: 3 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 59_999);
  const b = c.state.budget;
  assert.equal(b.minuteStart, NOW);
  assert.equal(b.minuteRequests, 2);
  budgets.take(c, M, NOW + MINUTE);
  assert.equal(b.minuteStart, NOW + MINUTE, "the window starts at the first request after");
  assert.equal(b.minuteRequests, 1);
  assert.equal(b.dayRequests, 3, "the day goes on");
  assert.equal(b.spentUntil, 0);
});

Deno.test("Budgets.take() starts a new day: counters, yesterday's spends and learned go", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 2, modelRequestsPerDay: 5 });
  budgets.learn(c, M, learned(modelScope([100, 2000], [0, 200])), NOW);
  budgets.exhaust(c, "later", "model", DAY_END + HOUR, NOW);
  budgets.take(c, "x", NOW);
  budgets.take(c, "x", NOW + 1000);
  const b = c.state.budget;
  assert.equal(b.spentUntil, DAY_END);
  assert.equal(b.learned?.until, DAY_END);
  assert.equal(b.modelSpentUntil[M], DAY_END);
  assert.equal(allowsModel(c, M, NOW), false);

  budgets.take(c, "y", DAY_END);
  assert.equal(b.dayStart, DAY_END);
  assert.equal(b.dayEnd, DAY_END + 24 * HOUR);
  assert.equal(b.dayRequests, 1);
  assert.equal(b.dayTokens, 0);
  assert.deepEqual(b.modelRequests, { y: 1 });
  assert.equal(b.learned, null, "the provider's word on yesterday is over");
  assert.deepEqual(b.learnedModels, {});
  assert.deepEqual(
    b.modelSpentUntil,
    { later: DAY_END + HOUR },
    "a model spend reaching into today is kept, yesterday's goes",
  );
  assert.equal(allowsModel(c, M, DAY_END), true);
  assert.equal(allowsModel(c, "later", DAY_END), false);
});

Deno.test("Budgets.take() at the last millisecond of a day counts it in that day", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 10 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, DAY_END - 1);
  assert.equal(c.state.budget.dayRequests, 2);
  assert.equal(c.state.budget.dayEnd, DAY_END);
  budgets.take(c, M, DAY_END);
  assert.equal(c.state.budget.dayRequests, 1);
});

// --- per-model caps ---

Deno.test("allowsModel() refuses a model at its daily cap and no other, until the reset", () => {
  const { budgets, changes } = book();
  const c = key({ modelRequestsPerDay: 2 });
  budgets.take(c, M, NOW);
  assert.equal(allowsModel(c, M, NOW), true);
  budgets.take(c, M, NOW + 1000);
  assert.equal(allowsModel(c, M, NOW + 1000), false);
  assert.equal(allowsModel(c, "other", NOW + 1000), true);
  assert.equal(allowsModel(c, undefined, NOW + 1000), true, "a request without a model");
  assert.equal(c.state.budget.spentUntil, 0, "the key still serves other models");
  assert.equal(changes(), 0, "the snapshot holds keys usable for any model: nothing changed");
  assert.equal(allowsModel(c, M, DAY_END - 1), false);
  assert.equal(allowsModel(c, M, DAY_END), true, "the counts are yesterday's after the reset");
});

Deno.test("allowsModel() allows any model when no per-model cap is set", () => {
  const { budgets } = book();
  const c = key();
  for (let i = 0; i < 50; i++) budgets.take(c, M, NOW);
  assert.equal(allowsModel(c, M, NOW), true);
});

Deno.test("modelReturnsAt() tells when a spent model serves again", () => {
  const { budgets } = book();
  const c = key({ modelRequestsPerDay: 1 });
  assert.equal(modelReturnsAt(c, M, NOW), NOW, "never used: now");
  assert.equal(modelReturnsAt(c, undefined, NOW), NOW);
  budgets.take(c, M, NOW);
  assert.equal(modelReturnsAt(c, M, NOW), DAY_END, "its cap: the daily reset");
  assert.equal(modelReturnsAt(c, "other", NOW), NOW);
  budgets.exhaust(c, "other", "model", NOW + 5 * MINUTE, NOW);
  assert.equal(modelReturnsAt(c, "other", NOW), NOW + 5 * MINUTE, "a provider's reset");
  budgets.exhaust(c, M, "model", DAY_END + HOUR, NOW);
  assert.equal(modelReturnsAt(c, M, NOW), DAY_END + HOUR, "the later of spend and cap");
  assert.equal(modelReturnsAt(c, "other", NOW + 5 * MINUTE), NOW + 5 * MINUTE);
});

// --- learn: what providers' headers say ---

Deno.test("Budgets.learn() spends a model ModelScope says has none left until the day ends", () => {
  const { budgets, changes } = book();
  const c = key({ timeZone: "UTC" });
  budgets.learn(c, M, learned(modelScope([1500, 2000], [0, 200])), NOW);
  const b = c.state.budget;
  assert.equal(b.modelSpentUntil[M], DAY_END);
  assert.equal(allowsModel(c, M, NOW), false);
  assert.equal(allowsModel(c, "other", NOW), true);
  assert.equal(b.spentUntil, 0, "the account has calls left: the key serves other models");
  assert.equal(changes(), 0);
  assert.deepEqual(b.learnedModels[M], { remaining: 0, limit: 200, until: DAY_END });
  assert.deepEqual(b.learned, { remaining: 1500, limit: 2000, until: DAY_END });
});

Deno.test("Budgets.learn() spends the key when ModelScope says the account has none left", () => {
  const { budgets, changes } = book();
  const c = key();
  budgets.learn(c, M, learned(modelScope([0, 2000], [150, 200])), NOW);
  const b = c.state.budget;
  assert.equal(b.spentUntil, DAY_END);
  assert.equal(b.spentReason, "provider");
  assert.equal(changes(), 1);
  assert.equal(b.modelSpentUntil[M], undefined, "the model had calls left");
});

Deno.test("Budgets.learn() ignores a model count when the request named no model", () => {
  const { budgets } = book();
  const c = key();
  budgets.learn(c, undefined, learned(modelScope([10, 2000], [0, 200])), NOW);
  assert.deepEqual(c.state.budget.learnedModels, {});
  assert.deepEqual(c.state.budget.modelSpentUntil, {});
});

Deno.test("Budgets.take() spends the key on the Nth request after the provider said N left", () => {
  const { budgets, changes } = book();
  const c = key();
  budgets.learn(c, M, learned(modelScope([3, 2000])), NOW);
  budgets.take(c, M, NOW + 1);
  budgets.take(c, M, NOW + 2);
  assert.equal(c.state.budget.spentUntil, 0);
  assert.equal(changes(), 0);
  budgets.take(c, M, NOW + 3);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.equal(c.state.budget.spentReason, "provider");
  assert.equal(changes(), 1);
});

Deno.test("Budgets.take() spends a model on the Nth request after the provider said N left", () => {
  const { budgets } = book();
  const c = key();
  budgets.learn(c, M, learned(modelScope([1000, 2000], [2, 200])), NOW);
  budgets.take(c, M, NOW + 1);
  budgets.take(c, "other", NOW + 2);
  assert.equal(allowsModel(c, M, NOW + 2), true);
  budgets.take(c, M, NOW + 3);
  assert.equal(allowsModel(c, M, NOW + 3), false);
  assert.equal(c.state.budget.modelSpentUntil[M], DAY_END);
  assert.equal(c.state.budget.spentUntil, 0);
});

Deno.test("Budgets.learn() keeps no short window's count: it only spends a key at 0", () => {
  const { budgets } = book();
  const c = key();
  const h = new Headers({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "1",
    "x-ratelimit-reset-requests": "10s",
  });
  budgets.learn(c, M, learned(h), NOW);
  budgets.take(c, M, NOW + 10_000);
  assert.equal(c.state.budget.spentUntil, 0, "the provider's window rolled: its count is stale");
  assert.equal(c.state.budget.learned, null, "a minute's count is not a daily budget");
});

Deno.test("budgetViews() shows the lower of the counted and the learned remaining", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 100 });
  for (let i = 0; i < 10; i++) budgets.take(c, M, NOW);
  budgets.learn(c, M, learned(modelScope([50, 2000])), NOW);
  assert.deepEqual(budgetViews(c, NOW).requests_per_day, {
    limit: 100,
    used: 10,
    remaining: 50,
    learned: true,
    resetsAt: DAY_END,
  });
  budgets.learn(c, M, learned(modelScope([95, 2000])), NOW);
  assert.equal(budgetViews(c, NOW).requests_per_day?.remaining, 90, "the counted is lower");
});

Deno.test("Budgets.learn() spends a key until OpenAI's short window resets when none is left", () => {
  const { budgets, changes } = book();
  const c = key();
  const h = new Headers({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "20s",
  });
  budgets.learn(c, M, learned(h), NOW);
  assert.equal(c.state.budget.spentUntil, NOW + 20_000);
  assert.equal(c.state.budget.spentReason, "provider");
  assert.equal(changes(), 1);
  assert.equal(isAvailable(c.state, NOW + 20_000), true);
});

Deno.test("Budgets.learn() spends a key a minute when OpenAI sends no reset", () => {
  const { budgets } = book();
  const c = key();
  const h = new Headers({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
  });
  budgets.learn(c, M, learned(h), NOW);
  assert.equal(c.state.budget.spentUntil, NOW + MINUTE);
});

Deno.test("Budgets.learn() spends a key until its token window resets when none is left", () => {
  const { budgets } = book();
  const c = key();
  const h = new Headers({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "6m0s",
  });
  budgets.learn(c, M, learned(h), NOW);
  assert.equal(c.state.budget.spentUntil, NOW + 6 * MINUTE);
  assert.equal(c.state.budget.spentReason, "provider");
});

Deno.test("Budgets.learn() spends a key until Anthropic's reset date when none is left", () => {
  const { budgets } = book();
  const c = key();
  const h = new Headers({
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "0",
    "anthropic-ratelimit-requests-reset": "2026-06-10T12:00:30Z",
  });
  budgets.learn(c, M, learned(h), NOW);
  assert.equal(c.state.budget.spentUntil, NOW + 30_000);
});

// --- exhaust ---

Deno.test("Budgets.exhaust() spends one model until the daily reset, the key serving others", () => {
  const { budgets, changes } = book();
  const c = key();
  const until = budgets.exhaust(c, M, "model", undefined, NOW);
  assert.equal(until, DAY_END);
  assert.equal(c.state.budget.modelSpentUntil[M], DAY_END);
  assert.equal(c.state.budget.spentUntil, 0);
  assert.equal(allowsModel(c, M, NOW), false);
  assert.equal(allowsModel(c, "other", NOW), true);
  assert.equal(changes(), 0);
});

Deno.test("Budgets.exhaust() spends the whole key until the daily reset", () => {
  const { budgets, changes } = book();
  const c = key();
  assert.equal(budgets.exhaust(c, M, "key", undefined, NOW), DAY_END);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.equal(c.state.budget.spentReason, "exhausted");
  assert.equal(changes(), 1);
  budgets.exhaust(c, M, "key", undefined, NOW + 1000);
  assert.equal(changes(), 1, "already spent as long: nothing changed");
});

Deno.test("Budgets.exhaust() spends the key when a model-scoped exhaustion names no model", () => {
  const { budgets } = book();
  const c = key();
  budgets.exhaust(c, undefined, "model", undefined, NOW);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.deepEqual(c.state.budget.modelSpentUntil, {});
});

Deno.test("Budgets.exhaust() keeps the provider's reset time when it is in the future", () => {
  const { budgets } = book();
  const c = key();
  assert.equal(budgets.exhaust(c, M, "model", NOW + 90_000, NOW), NOW + 90_000);
  assert.equal(c.state.budget.modelSpentUntil[M], NOW + 90_000);
  assert.equal(budgets.exhaust(c, M, "key", DAY_END + HOUR, NOW), DAY_END + HOUR);
  assert.equal(c.state.budget.spentUntil, DAY_END + HOUR, "past the daily reset if it says so");
});

Deno.test("Budgets.exhaust() ignores a provider's reset time that is not in the future", () => {
  const { budgets } = book();
  const c = key();
  assert.equal(budgets.exhaust(c, M, "key", NOW, NOW), DAY_END);
  assert.equal(budgets.exhaust(c, M, "model", NOW - 5000, NOW), DAY_END);
});

Deno.test("Budgets.configure() caps an exhaustion without a reset time at quota_rest", () => {
  const { budgets } = book();
  const c = key();
  budgets.configure(10 * MINUTE);
  assert.equal(budgets.exhaust(c, M, "model", undefined, NOW), NOW + 10 * MINUTE);
  assert.equal(c.state.budget.modelSpentUntil[M], NOW + 10 * MINUTE);
  assert.equal(budgets.exhaust(c, M, "key", undefined, NOW), NOW + 10 * MINUTE);
  assert.equal(c.state.budget.spentUntil, NOW + 10 * MINUTE);
  // a rest longer than what is left of the day ends at the reset
  budgets.configure(48 * HOUR);
  const d = key();
  assert.equal(budgets.exhaust(d, M, "key", undefined, NOW), DAY_END);
  // a provider's reset time wins over the cap
  budgets.configure(MINUTE);
  const e = key();
  assert.equal(budgets.exhaust(e, M, "key", NOW + HOUR, NOW), NOW + HOUR);
  // 0: until the daily reset again
  budgets.configure(0);
  assert.equal(budgets.exhaust(key(), M, "key", undefined, NOW), DAY_END);
});

// --- refund ---

Deno.test("Budgets.refund() gives back the day, minute and model counts of a request", () => {
  const { budgets, changes } = book();
  const c = key({ requestsPerDay: 10, requestsPerMinute: 10, modelRequestsPerDay: 10 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 1000);
  budgets.refund(c, M, NOW, NOW + 2000);
  const b = c.state.budget;
  assert.equal(b.dayRequests, 1);
  assert.equal(b.minuteRequests, 1);
  assert.deepEqual(b.modelRequests, { [M]: 1 });
  assert.equal(changes(), 0, "nothing was spent: nothing changed");
});

Deno.test("Budgets.refund() opens a key again that the refunded request had spent", () => {
  const { budgets, changes } = book();
  const c = key({ requestsPerDay: 2 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 1000);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.equal(changes(), 1);
  budgets.refund(c, M, NOW, NOW + 2000);
  assert.equal(c.state.budget.spentUntil, 0);
  assert.equal(c.state.budget.spentReason, "");
  assert.equal(changes(), 2);
  assert.equal(isAvailable(c.state, NOW + 2000), true);
});

Deno.test("Budgets.refund() opens a key again that its minute limit had spent", () => {
  const { budgets } = book();
  const c = key({ requestsPerMinute: 1 });
  budgets.take(c, M, NOW);
  assert.equal(c.state.budget.spentUntil, NOW + MINUTE);
  budgets.refund(c, M, NOW, NOW + 5000);
  assert.equal(c.state.budget.spentUntil, 0);
  assert.equal(c.state.budget.minuteRequests, 0);
});

Deno.test("Budgets.refund() leaves a model the provider's count spent as the provider said", () => {
  const { budgets } = book();
  const c = key();
  budgets.learn(c, M, learned(modelScope([100, 2000], [1, 200])), NOW);
  budgets.take(c, M, NOW + 1);
  assert.equal(allowsModel(c, M, NOW + 1), false);
  budgets.refund(c, M, NOW + 1, NOW + 2);
  // the provider's next answer says how many are left; until then the proxy stays careful
  assert.equal(allowsModel(c, M, NOW + 2), false);
  assert.equal(c.state.budget.learnedModels[M]?.remaining, 0);
  assert.equal(c.state.budget.learned?.remaining, 99);
});

Deno.test("Budgets.refund() leaves a key the provider's count spent as the provider said", () => {
  const { budgets, changes } = book();
  const c = key();
  budgets.learn(c, M, learned(modelScope([1, 2000])), NOW);
  budgets.take(c, M, NOW + 1);
  assert.equal(c.state.budget.spentReason, "provider");
  budgets.refund(c, M, NOW + 1, NOW + 2);
  assert.equal(c.state.budget.spentReason, "provider");
  assert.equal(changes(), 1);
});

Deno.test("Budgets.refund() keeps a key spent when another of its budgets is still full", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 2, tokensPerDay: 100 });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 1);
  budgets.settle(c, { promptTokens: 60, completionTokens: 40, totalTokens: 100 }, NOW + 2);
  budgets.refund(c, M, NOW + 1, NOW + 3);
  assert.equal(c.state.budget.dayRequests, 1);
  assert.equal(c.state.budget.spentUntil, DAY_END, "the day's tokens are still used up");
});

Deno.test("Budgets.refund() gives back nothing of a minute window that has rolled since", () => {
  const { budgets } = book();
  const c = key();
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 61_000);
  budgets.refund(c, M, NOW, NOW + 62_000);
  assert.equal(c.state.budget.minuteRequests, 1, "the new minute keeps its request");
  assert.equal(c.state.budget.dayRequests, 1);
});

Deno.test("Budgets.refund() keeps an exhaustion the provider said", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 10 });
  budgets.take(c, M, NOW);
  budgets.exhaust(c, M, "key", undefined, NOW);
  budgets.refund(c, M, NOW, NOW + 1);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.equal(c.state.budget.spentReason, "exhausted");
});

Deno.test("Budgets.refund() does nothing once the day that took the request is over", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 1 });
  budgets.take(c, M, NOW);
  budgets.refund(c, M, NOW, DAY_END);
  assert.equal(c.state.budget.dayRequests, 1, "the old day's count is left as it was");
  assert.equal(c.state.budget.spentUntil, DAY_END);
});

Deno.test("Budgets.refund() never counts below zero", () => {
  const { budgets } = book();
  const c = key();
  budgets.take(c, M, NOW);
  budgets.refund(c, M, NOW, NOW + 1);
  budgets.refund(c, M, NOW, NOW + 2);
  budgets.refund(c, "never", NOW, NOW + 3);
  const b = c.state.budget;
  assert.deepEqual([b.dayRequests, b.minuteRequests, b.modelRequests[M]], [0, 0, 0]);
  assert.equal(b.modelRequests.never, undefined);
});

// --- settle: tokens and concurrency ---

Deno.test("Budgets.settle() spends a key at its daily token limit until the reset", () => {
  const { budgets, changes } = book();
  const c = key({ tokensPerDay: 1000 });
  const usage = (totalTokens: number) => ({ promptTokens: 0, completionTokens: 0, totalTokens });
  budgets.take(c, M, NOW);
  budgets.settle(c, usage(600), NOW + 1000);
  assert.equal(c.state.budget.dayTokens, 600);
  assert.equal(c.state.budget.spentUntil, 0);
  budgets.settle(c, usage(400), NOW + 2000);
  assert.equal(c.state.budget.spentUntil, DAY_END);
  assert.equal(c.state.budget.spentReason, "day_tokens");
  assert.equal(changes(), 1);
});

Deno.test("Budgets.settle() spends a key at its minute token limit until the minute ends", () => {
  const { budgets } = book();
  const c = key({ tokensPerMinute: 500 });
  const usage = (totalTokens: number) => ({ promptTokens: 0, completionTokens: 0, totalTokens });
  budgets.take(c, M, NOW);
  budgets.settle(c, usage(499), NOW + 10_000);
  assert.equal(c.state.budget.spentUntil, 0);
  budgets.settle(c, usage(1), NOW + 20_000);
  assert.equal(c.state.budget.spentUntil, NOW + MINUTE);
  assert.equal(c.state.budget.spentReason, "minute_tokens");
  // tokens after the window count in the next one
  budgets.settle(c, usage(100), NOW + MINUTE);
  assert.equal(c.state.budget.minuteTokens, 100);
  assert.equal(c.state.budget.minuteStart, NOW + MINUTE);
});

Deno.test("Budgets.settle() counts nothing without usage or with zero tokens", () => {
  const { budgets, changes } = book();
  const c = key({ tokensPerDay: 1 });
  budgets.settle(c, undefined, NOW);
  budgets.settle(c, { promptTokens: 0, completionTokens: 0, totalTokens: 0 }, NOW);
  assert.equal(c.state.budget.dayTokens, 0);
  assert.equal(c.state.budget.spentUntil, 0);
  assert.equal(changes(), 0);
});

Deno.test("Budgets.take() and settle() leave pools alone at the concurrency cap", () => {
  // a full key stays in a pool's snapshot (a pick passes over it): no rebuild per request
  const { budgets, changes } = book();
  const c = key({ maxConcurrency: 2 });
  // the board counts the attempt in flight before the book takes it
  c.state.inFlight = 1;
  budgets.take(c, M, NOW);
  assert.equal(atCapacity(c), false);
  c.state.inFlight = 2;
  budgets.take(c, M, NOW);
  assert.equal(atCapacity(c), true);
  // the board counted the attempt out of flight before the book settles it
  c.state.inFlight = 1;
  budgets.settle(c, undefined, NOW);
  assert.equal(atCapacity(c), false);
  assert.equal(changes(), 0);
});

Deno.test("atCapacity() is false without a concurrency cap", () => {
  const c = key({ maxConcurrency: 0 });
  c.state.inFlight = 1000;
  assert.equal(atCapacity(c), false);
  const d = key({ maxConcurrency: 1 });
  assert.equal(atCapacity(d), false);
  d.state.inFlight = 1;
  assert.equal(atCapacity(d), true);
});

// --- bounds and reset ---

Deno.test("Budgets.take() counts at most MAX_MODELS distinct models a day", () => {
  const { budgets } = book();
  const c = key({ modelRequestsPerDay: 10 });
  for (let i = 0; i < MAX_MODELS + 20; i++) budgets.take(c, `model-${i}`, NOW);
  const counted = c.state.budget.modelRequests;
  assert.equal(Object.keys(counted).length, MAX_MODELS + 1, "the rest share one entry");
  assert.equal(counted[`model-${MAX_MODELS}`], undefined);
  assert.equal(counted[OTHER_MODELS], 20, "models beyond the bound still count, together");
  budgets.take(c, "model-0", NOW);
  assert.equal(counted["model-0"], 2, "a model already counted goes on counting");
  assert.equal(c.state.budget.dayRequests, MAX_MODELS + 21, "every request counts for the day");
  budgets.take(c, "fresh", DAY_END);
  assert.deepEqual(c.state.budget.modelRequests, { fresh: 1 }, "a new day counts anew");
});

Deno.test("Budgets.reset() clears spends, counters and learned counts", () => {
  const { budgets, changes } = book();
  const c = key({ requestsPerDay: 1 });
  budgets.learn(c, M, learned(modelScope([5, 2000], [0, 200])), NOW);
  budgets.take(c, M, NOW);
  budgets.exhaust(c, "other", "model", undefined, NOW);
  budgets.settle(c, { promptTokens: 1, completionTokens: 2, totalTokens: 3 }, NOW);
  const before = changes();
  budgets.reset(c);
  assert.equal(changes(), before + 1);
  const b = c.state.budget;
  assert.deepEqual(
    {
      spentUntil: b.spentUntil,
      spentReason: b.spentReason,
      modelSpentUntil: b.modelSpentUntil,
      learned: b.learned,
      learnedModels: b.learnedModels,
      dayRequests: b.dayRequests,
      dayTokens: b.dayTokens,
      modelRequests: b.modelRequests,
      minuteRequests: b.minuteRequests,
      minuteTokens: b.minuteTokens,
    },
    {
      spentUntil: 0,
      spentReason: "",
      modelSpentUntil: {},
      learned: null,
      learnedModels: {},
      dayRequests: 0,
      dayTokens: 0,
      modelRequests: {},
      minuteRequests: 0,
      minuteTokens: 0,
    },
  );
  assert.equal(isAvailable(c.state, NOW), true);
  assert.equal(allowsModel(c, M, NOW), true);
});

// --- views ---

Deno.test("budgetViews() names every configured budget with its numbers", () => {
  const { budgets } = book();
  const c = key({
    requestsPerDay: 100,
    modelRequestsPerDay: 10,
    tokensPerDay: 1000,
    requestsPerMinute: 5,
    tokensPerMinute: 500,
    maxConcurrency: 2,
  });
  budgets.take(c, M, NOW);
  budgets.take(c, M, NOW + 1000);
  budgets.take(c, "other", NOW + 2000);
  budgets.settle(c, { promptTokens: 100, completionTokens: 200, totalTokens: 300 }, NOW + 3000);
  c.state.inFlight = 1;
  assert.deepEqual(budgetViews(c, NOW + 10_000), {
    requests_per_day: { limit: 100, used: 3, remaining: 97, learned: false, resetsAt: DAY_END },
    [`model_requests_per_day:${M}`]: {
      limit: 10,
      used: 2,
      remaining: 8,
      learned: false,
      resetsAt: DAY_END,
    },
    "model_requests_per_day:other": {
      limit: 10,
      used: 1,
      remaining: 9,
      learned: false,
      resetsAt: DAY_END,
    },
    tokens_per_day: { limit: 1000, used: 300, remaining: 700, learned: false, resetsAt: DAY_END },
    requests_per_minute: {
      limit: 5,
      used: 3,
      remaining: 2,
      learned: false,
      resetsAt: NOW + MINUTE,
    },
    tokens_per_minute: {
      limit: 500,
      used: 300,
      remaining: 200,
      learned: false,
      resetsAt: NOW + MINUTE,
    },
    max_concurrency: { limit: 2, used: 1, remaining: 1, learned: false, resetsAt: 0 },
  });
});

Deno.test("budgetViews() shows fresh windows once the day and the minute are over", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 100, modelRequestsPerDay: 10, requestsPerMinute: 5 });
  budgets.take(c, M, NOW);
  const later = DAY_END + HOUR;
  assert.deepEqual(budgetViews(c, later), {
    requests_per_day: {
      limit: 100,
      used: 0,
      remaining: 100,
      learned: false,
      resetsAt: DAY_END + 24 * HOUR,
    },
    requests_per_minute: {
      limit: 5,
      used: 0,
      remaining: 5,
      learned: false,
      resetsAt: later + MINUTE,
    },
  });
});

Deno.test("budgetViews() shows learned budgets where none is configured", () => {
  const { budgets } = book();
  const c = key();
  assert.deepEqual(budgetViews(c, NOW), {}, "no budget at all");
  budgets.take(c, M, NOW);
  budgets.learn(c, M, learned(modelScope([1987, 2000], [188, 200])), NOW);
  assert.deepEqual(budgetViews(c, NOW), {
    requests_per_day: { limit: 2000, used: 1, remaining: 1987, learned: true, resetsAt: DAY_END },
    [`model_requests_per_day:${M}`]: {
      limit: 200,
      used: 1,
      remaining: 188,
      learned: true,
      resetsAt: DAY_END,
    },
  });
  assert.deepEqual(budgetViews(c, DAY_END), {}, "the provider's word is over with its day");
});

Deno.test("budgetViews() never shows a negative remaining", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 2 });
  for (let i = 0; i < 5; i++) budgets.take(c, M, NOW);
  budgets.learn(c, M, learned(modelScope([0, 2000])), NOW);
  budgets.take(c, M, NOW);
  const v = budgetViews(c, NOW).requests_per_day;
  assert.equal(v?.used, 6);
  assert.equal(v?.remaining, 0);
});

Deno.test("shareLeft() is the share left of a key's tightest budget", () => {
  const cases: {
    name: string;
    quota: Partial<QuotaConfig>;
    takes: number;
    tokens?: number;
    account?: [number, number];
    model?: [number, number];
    at?: number;
    ask?: string | undefined;
    want: number;
  }[] = [
    { name: "no budget", quota: {}, takes: 3, want: 1 },
    { name: "day requests", quota: { requestsPerDay: 10 }, takes: 4, want: 0.6 },
    {
      name: "model cap is tighter",
      quota: { requestsPerDay: 10, modelRequestsPerDay: 5 },
      takes: 4,
      want: 0.2,
    },
    {
      name: "model cap of another model is not counted",
      quota: { requestsPerDay: 10, modelRequestsPerDay: 5 },
      takes: 4,
      ask: "other",
      want: 0.6,
    },
    {
      name: "model cap without a model",
      quota: { modelRequestsPerDay: 5 },
      takes: 4,
      ask: undefined,
      want: 1,
    },
    { name: "tokens", quota: { tokensPerDay: 1000 }, takes: 1, tokens: 750, want: 0.25 },
    { name: "learned account", quota: {}, takes: 0, account: [1, 100], want: 0.01 },
    {
      name: "learned model",
      quota: {},
      takes: 0,
      account: [90, 100],
      model: [10, 200],
      want: 0.05,
    },
    { name: "learned with no limit said", quota: {}, takes: 0, account: [5, 0], want: 1 },
    { name: "spent past zero", quota: { requestsPerDay: 2 }, takes: 5, want: 0 },
    {
      name: "a new day",
      quota: { requestsPerDay: 10 },
      takes: 9,
      account: [1, 100],
      at: DAY_END,
      want: 1,
    },
  ];
  for (const t of cases) {
    const { budgets } = book();
    const c = key(t.quota);
    for (let i = 0; i < t.takes; i++) budgets.take(c, M, NOW);
    if (t.tokens !== undefined) {
      budgets.settle(c, { promptTokens: 0, completionTokens: 0, totalTokens: t.tokens }, NOW);
    }
    if (t.account !== undefined) budgets.learn(c, M, learned(modelScope(t.account, t.model)), NOW);
    const ask = "ask" in t ? t.ask : M;
    assert.equal(shareLeft(c, ask, t.at ?? NOW), t.want, t.name);
  }
});

// --- daily windows in other zones ---

Deno.test("Budgets.take() resets an Asia/Shanghai day at 00:00 local, 16:00 UTC", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 2, timeZone: "Asia/Shanghai" });
  const localMidnight = Date.UTC(2026, 5, 10, 16, 0, 0);
  budgets.take(c, M, localMidnight - 1000);
  assert.equal(c.state.budget.dayStart, Date.UTC(2026, 5, 9, 16, 0, 0));
  assert.equal(c.state.budget.dayEnd, localMidnight);
  budgets.take(c, M, localMidnight - 1);
  assert.equal(c.state.budget.spentUntil, localMidnight);
  assert.equal(isAvailable(c.state, localMidnight - 1), false);
  assert.equal(isAvailable(c.state, localMidnight), true);
  budgets.take(c, M, localMidnight);
  assert.equal(c.state.budget.dayRequests, 1);
  assert.equal(c.state.budget.dayStart, localMidnight);
  assert.equal(c.state.budget.dayEnd, localMidnight + 24 * HOUR);
});

Deno.test("Budgets.take() uses a 23-hour day when New York springs forward", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 1, timeZone: "America/New_York" });
  // 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT
  const start = Date.UTC(2026, 2, 8, 5, 0, 0); // 00:00 EST
  const end = Date.UTC(2026, 2, 9, 4, 0, 0); // 00:00 EDT
  budgets.take(c, M, Date.UTC(2026, 2, 8, 12, 0, 0));
  const b = c.state.budget;
  assert.equal(b.dayStart, start);
  assert.equal(b.dayEnd, end);
  assert.equal(end - start, 23 * HOUR);
  assert.equal(b.spentUntil, end);
  budgets.take(c, M, end);
  assert.equal(b.dayRequests, 1);
  assert.equal(b.dayEnd, Date.UTC(2026, 2, 10, 4, 0, 0));
});

Deno.test("Budgets.take() uses a 25-hour day when New York falls back", () => {
  const { budgets } = book();
  const c = key({ requestsPerDay: 1, timeZone: "America/New_York" });
  // 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST
  budgets.take(c, M, Date.UTC(2026, 10, 1, 12, 0, 0));
  const b = c.state.budget;
  assert.equal(b.dayStart, Date.UTC(2026, 10, 1, 4, 0, 0));
  assert.equal(b.dayEnd, Date.UTC(2026, 10, 2, 5, 0, 0));
  assert.equal(b.spentUntil, b.dayEnd);
});

Deno.test("Budgets.take() resets at a skipped local time when the clocks leave the gap", () => {
  const { budgets } = book();
  const reset = { hour: 2, minute: 30 };
  const c = key({ requestsPerDay: 1, timeZone: "America/New_York", reset });
  // 02:30 does not exist on 2026-03-08: the reset happens at 03:00 EDT, 07:00 UTC
  budgets.take(c, M, Date.UTC(2026, 2, 8, 6, 0, 0)); // 01:00 EST
  assert.equal(c.state.budget.spentUntil, Date.UTC(2026, 2, 8, 7, 0, 0));
  assert.equal(
    c.state.budget.dayEnd,
    nextReset(Date.UTC(2026, 2, 8, 6), reset, "America/New_York"),
  );
  assert.equal(
    c.state.budget.dayStart,
    dayStart(Date.UTC(2026, 2, 8, 6), reset, "America/New_York"),
  );
});

Deno.test("Budgets logs a key spent by its own budget once per spell", () => {
  const lines: Record<string, unknown>[] = [];
  const logger = {
    info: (msg: string, fields?: Record<string, unknown>) => lines.push({ msg, ...fields }),
  };
  const budgets = new Budgets({ onChange: () => {}, logger });
  const [c] = makeCandidates([{ quota: { requestsPerDay: 2 } }]);
  const now = Date.UTC(2026, 11, 7, 12);
  for (let i = 0; i < 4; i++) budgets.take(c!, undefined, now + i);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.msg, "key spent its budget until its reset");
  assert.equal(lines[0]!.reason, "spent its daily requests");
  assert.equal(lines[0]!.until, new Date(Date.UTC(2026, 11, 8)).toISOString());
  assert.equal(lines[0]!.key, c!.mask);
});
