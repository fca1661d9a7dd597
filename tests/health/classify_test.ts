import assert from "node:assert/strict";
import {
  type AttemptClass,
  classifyFailure,
  classifyStatus,
  isFailure,
  isQuotaBody,
  isRetryable,
} from "../../src/health/classify.ts";

const OPENAI_QUOTA = JSON.stringify({
  error: {
    message: "You exceeded your current quota, please check your plan and billing details.",
    type: "insufficient_quota",
    param: null,
    code: "insufficient_quota",
  },
});
const OPENAI_TPM = JSON.stringify({
  error: {
    message:
      "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000. " +
      "Please try again in 2s. You can increase your rate limit by adding a payment method at " +
      "https://platform.openai.com/account/billing.",
    type: "tokens",
    code: "rate_limit_exceeded",
  },
});
const GEMINI_PER_MINUTE = JSON.stringify([{
  error: {
    code: 429,
    message: "Quota exceeded for quota metric 'Generate Content API requests per minute'",
    status: "RESOURCE_EXHAUSTED",
  },
}]);

Deno.test("classifyStatus() maps each status family to its class", () => {
  const cases: [number, AttemptClass][] = [
    [200, "ok"],
    [204, "ok"],
    [302, "ok"],
    [400, "bad_request"],
    [404, "bad_request"],
    [413, "bad_request"],
    [422, "bad_request"],
    [401, "auth"],
    [403, "auth"],
    [402, "quota"],
    [408, "timeout"],
    [429, "rate_limited"],
    [500, "server"],
    [502, "server"],
    [503, "server"],
    [504, "server"],
  ];
  for (const [status, cls] of cases) assert.equal(classifyStatus(status), cls, `HTTP ${status}`);
});

Deno.test("classifyStatus() tells an exhausted quota from a rate limit by the 429 body", () => {
  assert.equal(classifyStatus(429, OPENAI_QUOTA), "quota");
  assert.equal(classifyStatus(429, OPENAI_TPM), "rate_limited");
  assert.equal(classifyStatus(429, GEMINI_PER_MINUTE), "rate_limited");
  assert.equal(classifyStatus(429, '{"error":{"message":"Too many requests"}}'), "rate_limited");
  assert.equal(classifyStatus(429, ""), "rate_limited");
});

Deno.test("isQuotaBody() reads structured codes first, then the wording", () => {
  assert.equal(isQuotaBody('{"error":{"code":"insufficient_quota","message":"x"}}'), true);
  assert.equal(isQuotaBody('{"error":{"type":"billing_hard_limit_reached"}}'), true);
  assert.equal(isQuotaBody('{"code":"quota_exceeded"}'), true);
  assert.equal(isQuotaBody("Your account balance is insufficient: 余额不足"), true);
  assert.equal(isQuotaBody("You are out of quota for this month"), true);
  assert.equal(isQuotaBody("rate limit exceeded, check your billing"), false);
  assert.equal(isQuotaBody("not json at all {"), false);
  assert.equal(isQuotaBody("[1, 2]"), false);
});

Deno.test("classifyFailure() blames the client first, then our timers, then the network", () => {
  assert.equal(classifyFailure({ clientAborted: true, timedOut: true }), "client_abort");
  assert.equal(classifyFailure({ clientAborted: false, timedOut: true }), "timeout");
  assert.equal(classifyFailure({ clientAborted: false, timedOut: false }), "connect");
  assert.equal(
    classifyFailure({ clientAborted: false, timedOut: false, midBody: true }),
    "server",
  );
  assert.equal(
    classifyFailure({ clientAborted: true, timedOut: false, midBody: true }),
    "client_abort",
  );
});

Deno.test("isRetryable() allows key and server failures, never other 4xx or a client abort", () => {
  const retryable: AttemptClass[] = [
    "rate_limited",
    "quota",
    "auth",
    "server",
    "connect",
    "timeout",
  ];
  const final: AttemptClass[] = ["ok", "client_abort", "bad_request"];
  for (const c of retryable) assert.equal(isRetryable(c), true, c);
  for (const c of final) assert.equal(isRetryable(c), false, c);
});

Deno.test("isFailure() counts only server, network and timeout classes towards ejection", () => {
  const all: AttemptClass[] = [
    "ok",
    "client_abort",
    "bad_request",
    "auth",
    "quota",
    "rate_limited",
    "server",
    "connect",
    "timeout",
  ];
  assert.deepEqual(all.filter(isFailure), ["server", "connect", "timeout"]);
});
