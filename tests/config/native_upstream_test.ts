/** @module Tests for src/config/native_upstream.ts. */

import assert from "node:assert/strict";
import { check } from "../../src/config/_schema.ts";
import { EMPTY_KEYS, toUpstream, upstreamSchema } from "../../src/config/native_upstream.ts";
import type { UpstreamConfig } from "../../src/config/types.ts";
import type { RawIssue } from "../../src/config/errors.ts";
import { NO_LIMITS } from "../helpers/quota.ts";

const BASE = { base_url: "https://api.example/v1/" };

function upstream(fields: Record<string, unknown>): UpstreamConfig {
  const result = check(upstreamSchema, { ...BASE, ...fields });
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return toUpstream("ms", result.value, 3);
}

function issues(fields: Record<string, unknown>): RawIssue[] {
  const result = check(upstreamSchema, { ...BASE, ...fields });
  assert.ok(!result.ok, "expected issues");
  return result.issues;
}

Deno.test("toUpstream() fills the defaults", () => {
  assert.deepEqual(upstream({}), {
    name: "ms",
    baseUrl: "https://api.example/v1",
    pathMode: "v1",
    auth: "bearer",
    keys: [],
    headers: {},
    forceHeaders: {},
    models: {},
    weight: 1,
    priority: 0,
    timeouts: { connectMs: 10_000, firstByteMs: 120_000, idleMs: 120_000, totalMs: 600_000 },
    maxFailures: 3,
    quota: NO_LIMITS,
  });
});

Deno.test("upstreamSchema splits a keys string on commas and whitespace", () => {
  assert.deepEqual(upstream({ keys: " k1,k2 ,, k3\tk4\n" }).keys, [
    { key: "k1" },
    { key: "k2" },
    { key: "k3" },
    { key: "k4" },
  ]);
});

Deno.test("upstreamSchema drops empty items of a key list that still holds a key", () => {
  assert.deepEqual(upstream({ keys: ["a", "", " "] }).keys, [{ key: "a" }]);
  // left out, or an explicit []: an upstream that takes no key (a local server)
  assert.deepEqual(upstream({}).keys, []);
  assert.deepEqual(upstream({ keys: [] }).keys, []);
});

Deno.test("upstreamSchema refuses a key list that is set but holds no key", () => {
  for (const keys of ["", " , ", ["", " "]]) {
    assert.deepEqual(issues({ keys }), [{ path: ["keys"], message: EMPTY_KEYS }], String(keys));
  }
  assert.deepEqual(issues({ key: " " }), [{
    path: ["key"],
    message: "must not be empty, or be left out for an upstream that takes no key",
  }]);
});

Deno.test("upstreamSchema reads key mappings with name, weight and priority", () => {
  assert.deepEqual(upstream({ keys: [{ key: "a", name: "main", weight: 2, priority: 1 }] }).keys, [
    { key: "a", name: "main", weight: 2, priority: 1 },
  ]);
  assert.deepEqual(issues({ keys: [{ key: "", weight: -1 }] }), [
    { path: ["keys", 0, "key"], message: "must not be empty" },
    { path: ["keys", 0, "weight"], message: "must be >= 0" },
  ]);
  assert.deepEqual(issues({ keys: [3] }), [
    { path: ["keys", 0], message: 'must be a key or a mapping with "key"' },
  ]);
});

Deno.test("upstreamSchema refuses duplicate keys without printing them", () => {
  assert.deepEqual(issues({ keys: ["secret-a", "secret-b", "secret-a"] }), [
    { path: ["keys", 2], message: "duplicate key (same as [0])" },
  ]);
  const split = issues({ keys: "secret-a,secret-a" });
  assert.deepEqual(split, [{ path: ["keys", 1], message: "duplicate key (same as [0])" }]);
});

Deno.test("upstreamSchema accepts key as a shorthand, but not with keys", () => {
  assert.deepEqual(upstream({ key: " sk-1 " }).keys, [{ key: "sk-1" }]);
  assert.deepEqual(issues({ key: "sk-1", keys: ["sk-2"] }), [
    { path: ["key"], message: 'use either "key" or "keys", not both' },
  ]);
});

Deno.test("upstreamSchema reads timeout as total seconds or as a mapping", () => {
  assert.deepEqual(upstream({ timeout: 1.5 }).timeouts, {
    connectMs: 10_000,
    firstByteMs: 1_500,
    idleMs: 1_500,
    totalMs: 1_500,
  });
  assert.deepEqual(upstream({ timeout: { idle: 0, first_byte: 30 } }).timeouts, {
    connectMs: 10_000,
    firstByteMs: 30_000,
    idleMs: 0,
    totalMs: 600_000,
  });
  assert.deepEqual(issues({ timeout: { connect: -1 } }), [
    { path: ["timeout", "connect"], message: "must be >= 0" },
  ]);
  assert.deepEqual(issues({ timeout: { conect: 1 } }), [
    { path: ["timeout", "conect"], message: 'unknown field (did you mean "connect"?)' },
  ]);
  assert.match(issues({ timeout: "soon" })[0]?.message ?? "", /number of seconds or a mapping/);
});

Deno.test("toUpstream() enables health checks with defaults suited to the path mode", () => {
  assert.deepEqual(upstream({ health_check: true }).healthCheck, {
    probe: "http",
    path: "/models",
    intervalMs: 30_000,
    timeoutMs: 5_000,
  });
  assert.deepEqual(upstream({ path_mode: "full", health_check: { interval: 10 } }).healthCheck, {
    probe: "http",
    path: "/v1/models",
    intervalMs: 10_000,
    timeoutMs: 5_000,
  });
  assert.deepEqual(
    upstream({ health_check: { path: "/health", timeout: 1, probe: "tcp" } }).healthCheck,
    { probe: "tcp", path: "/health", intervalMs: 30_000, timeoutMs: 1_000 },
  );
  assert.equal(upstream({ health_check: false }).healthCheck, undefined);
  assert.deepEqual(issues({ health_check: { path: "models", interval: 0 } }), [
    { path: ["health_check", "path"], message: 'must start with "/"' },
    { path: ["health_check", "interval"], message: "must be > 0" },
  ]);
});

Deno.test("upstreamSchema reads headers, turning numbers into strings", () => {
  assert.deepEqual(upstream({ headers: { "anthropic-version": "2023-06-01", "x-n": 1 } }).headers, {
    "anthropic-version": "2023-06-01",
    "x-n": "1",
  });
  assert.deepEqual(issues({ headers: { "bad header": "x" } }), [
    { path: ["headers", "bad header"], message: "must be a valid HTTP header name" },
  ]);
});

Deno.test("upstreamSchema keeps headers as defaults and force_headers apart", () => {
  const u = upstream({
    headers: { "Anthropic-Version": "2023-06-01" },
    force_headers: { "OpenAI-Organization": "org-ops", "x-n": 2 },
  });
  assert.deepEqual(u.headers, { "anthropic-version": "2023-06-01" });
  assert.deepEqual(u.forceHeaders, { "openai-organization": "org-ops", "x-n": "2" });
  assert.deepEqual(issues({ force_headers: { "bad header": "x" } }), [
    { path: ["force_headers", "bad header"], message: "must be a valid HTTP header name" },
  ]);
  assert.deepEqual(
    issues({ headers: { "x-team": "a" }, force_headers: { "X-Team": "b" } }),
    [{
      path: ["force_headers", "x-team"],
      message: '"x-team" is also in headers: keep it in one of them',
    }],
  );
});

Deno.test("upstreamSchema reads health_check.validates_key (default: the probe does not)", () => {
  assert.equal(upstream({ health_check: true }).healthCheck?.validatesKey, undefined);
  assert.equal(
    upstream({ health_check: { validates_key: false } }).healthCheck?.validatesKey,
    undefined,
  );
  assert.deepEqual(upstream({ health_check: { validates_key: "true" } }).healthCheck, {
    probe: "http",
    path: "/models",
    intervalMs: 30_000,
    timeoutMs: 5_000,
    validatesKey: true,
  });
  assert.deepEqual(issues({ health_check: { validates_key: "yes" } }), [
    { path: ["health_check", "validates_key"], message: "must be true or false" },
  ]);
});

Deno.test("upstreamSchema checks auth, path_mode, weight, priority and max_failures", () => {
  assert.deepEqual(
    issues({ auth: "basic", path_mode: "v2", weight: -1, priority: 0.5, max_failures: 0 }).map(
      (i) => `${i.path.join(".")}: ${i.message}`,
    ),
    [
      'path_mode: must be one of "v1", "full"',
      'auth: must be one of "bearer", "x-api-key", "api-key"',
      "weight: must be >= 0",
      "priority: must be an integer >= 0",
      "max_failures: must be an integer >= 1",
    ],
  );
});

Deno.test("toUpstream() uses the default max_failures it is given", () => {
  const result = check(upstreamSchema, BASE);
  assert.ok(result.ok);
  assert.equal(toUpstream("ms", result.value, 9).maxFailures, 9);
});

Deno.test("toUpstream() reads every quota field, the rest left at their defaults", () => {
  assert.deepEqual(
    upstream({
      quota: {
        requests_per_day: 2000,
        model_requests_per_day: 500,
        tokens_per_day: 1_000_000,
        requests_per_minute: 60,
        tokens_per_minute: 90_000,
        max_concurrency: 4,
        reset: "08:30",
        time_zone: "America/New_York",
      },
    }).quota,
    {
      requestsPerDay: 2000,
      modelRequestsPerDay: 500,
      tokensPerDay: 1_000_000,
      requestsPerMinute: 60,
      tokensPerMinute: 90_000,
      maxConcurrency: 4,
      reset: { hour: 8, minute: 30 },
      timeZone: "America/New_York",
    },
  );
  assert.deepEqual(upstream({ quota: { requests_per_day: "100" } }).quota, {
    ...NO_LIMITS,
    requestsPerDay: 100,
  });
  assert.deepEqual(upstream({ quota: {} }).quota, NO_LIMITS);
});

Deno.test("toUpstream() resets ModelScope keys at midnight Beijing time unless told otherwise", () => {
  const ms = { base_url: "https://api-inference.modelscope.cn/v1" };
  assert.deepEqual(upstream(ms).quota, { ...NO_LIMITS, timeZone: "Asia/Shanghai" });
  assert.equal(upstream({ base_url: "https://ModelScope.cn/v1" }).quota.timeZone, "Asia/Shanghai");
  assert.equal(upstream({ base_url: "https://notmodelscope.cn/v1" }).quota.timeZone, "UTC");
  assert.deepEqual(upstream({ ...ms, quota: { requests_per_day: 2000 } }).quota, {
    ...NO_LIMITS,
    requestsPerDay: 2000,
    timeZone: "Asia/Shanghai",
  });
  assert.equal(upstream({ ...ms, quota: { time_zone: "UTC" } }).quota.timeZone, "UTC");
});

Deno.test("upstreamSchema keeps only the quota fields a key sets", () => {
  const u = upstream({
    keys: [
      "plain",
      { key: "big", quota: { requests_per_day: 5000, max_concurrency: 2 } },
      { key: "late", name: "late", quota: { reset: "06:00", time_zone: "Asia/Tokyo" } },
      { key: "empty", quota: {} },
    ],
  });
  assert.deepEqual(u.keys, [
    { key: "plain" },
    { key: "big", quota: { requestsPerDay: 5000, maxConcurrency: 2 } },
    { key: "late", name: "late", quota: { reset: { hour: 6, minute: 0 }, timeZone: "Asia/Tokyo" } },
    { key: "empty", quota: {} },
  ]);
});

Deno.test("upstreamSchema lets a key's quota override the upstream's field by field", () => {
  const u = upstream({
    quota: { requests_per_day: 2000, requests_per_minute: 30, reset: "08:00" },
    keys: [{ key: "k", quota: { requests_per_day: 500, time_zone: "Europe/Berlin" } }],
  });
  // as the runtime builds a key's budgets
  const kc = u.keys[0]!;
  assert.deepEqual({ ...u.quota, ...kc.quota }, {
    ...NO_LIMITS,
    requestsPerDay: 500,
    requestsPerMinute: 30,
    reset: { hour: 8, minute: 0 },
    timeZone: "Europe/Berlin",
  });
});

Deno.test("upstreamSchema refuses a reset that is not HH:MM from 00:00 to 23:59", () => {
  const message = 'must be a local time "HH:MM", e.g. "00:00"';
  for (const reset of ["24:00", "7:5", "noon", "12:60", ""]) {
    assert.deepEqual(issues({ quota: { reset } }), [{ path: ["quota", "reset"], message }], reset);
  }
  assert.deepEqual(issues({ keys: [{ key: "k", quota: { reset: "24:00" } }] }), [
    { path: ["keys", 0, "quota", "reset"], message },
  ]);
  assert.deepEqual(upstream({ quota: { reset: "23:59" } }).quota.reset, { hour: 23, minute: 59 });
});

Deno.test("upstreamSchema refuses an unknown time zone, quoting it", () => {
  const message = 'unknown time zone "Mars/Olympus" (an IANA name, e.g. Asia/Shanghai)';
  assert.deepEqual(issues({ quota: { time_zone: "Mars/Olympus" } }), [
    { path: ["quota", "time_zone"], message },
  ]);
  assert.deepEqual(issues({ keys: ["a", { key: "b", quota: { time_zone: "Mars/Olympus" } }] }), [
    { path: ["keys", 1, "quota", "time_zone"], message },
  ]);
});

Deno.test("upstreamSchema refuses negative and fractional limits, naming each field", () => {
  assert.deepEqual(
    issues({
      quota: {
        requests_per_day: -1,
        model_requests_per_day: -1,
        tokens_per_day: -1,
        requests_per_minute: 1.5,
        tokens_per_minute: -1,
        max_concurrency: -1,
      },
    }).map((i) => `${i.path.join(".")}: ${i.message}`),
    [
      "quota.requests_per_day: must be an integer >= 0",
      "quota.model_requests_per_day: must be an integer >= 0",
      "quota.tokens_per_day: must be an integer >= 0",
      "quota.requests_per_minute: must be an integer >= 0",
      "quota.tokens_per_minute: must be an integer >= 0",
      "quota.max_concurrency: must be an integer >= 0",
    ],
  );
  assert.deepEqual(issues({ keys: [{ key: "k", quota: { max_concurrency: -2 } }] }), [
    { path: ["keys", 0, "quota", "max_concurrency"], message: "must be an integer >= 0" },
  ]);
});

Deno.test("upstreamSchema refuses unknown quota fields", () => {
  assert.deepEqual(issues({ quota: { requests_per_hour: 10 } }).map((i) => i.path), [
    ["quota", "requests_per_hour"],
  ]);
  assert.match(
    issues({ keys: [{ key: "k", quota: { requests_per_dya: 1 } }] })[0]?.message ?? "",
    /unknown field \(did you mean "requests_per_day"\?\)/,
  );
});
