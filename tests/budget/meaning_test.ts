/**
 * @module
 * Tests of what an upstream's answer means for a key's budgets (`src/budget/meaning.ts`): a 429
 * or 402 read by the provider's headers before its wording (throttling, or a model's or a key's
 * quota exhausted), and a 200 chat completion without choices.
 */

import assert from "node:assert/strict";
import {
  emptyAnswer,
  type ErrorMeaning,
  errorMeaning,
  quotaMeaning,
} from "../../src/budget/meaning.ts";
import { learnedBudgets } from "../../src/budget/headers.ts";
import type { AttemptClass } from "../../src/health/classify.ts";
import type { ErrorAnswer } from "../../src/proxy/attempt.ts";

const NOW = Date.UTC(2026, 2, 8, 7, 0, 0);
const MODEL = "Qwen/Qwen3-32B";

/** ModelScope's exhaustion body. */
const EXHAUSTED = JSON.stringify({
  errors: { message: "Request limit exceeded.", request_id: "r" },
});
/** OpenAI's billing body. */
const INSUFFICIENT = JSON.stringify({
  error: {
    message: "You exceeded your current quota, please check your plan and billing details.",
    type: "insufficient_quota",
    code: "insufficient_quota",
  },
});
const THROTTLED = JSON.stringify({
  error: {
    message: "Rate limit reached for requests",
    type: "requests",
    code: "rate_limit_exceeded",
  },
});

function modelScope(account: number | undefined, model: number | undefined): Headers {
  const h = new Headers();
  if (account !== undefined) {
    h.set("modelscope-ratelimit-requests-limit", "2000");
    h.set("modelscope-ratelimit-requests-remaining", String(account));
  }
  if (model !== undefined) {
    // ModelScope is recognised by its account header; a model count comes with it
    if (account === undefined) h.set("modelscope-ratelimit-requests-remaining", "junk");
    h.set("modelscope-ratelimit-model-requests-limit", "200");
    h.set("modelscope-ratelimit-model-requests-remaining", String(model));
  }
  return h;
}

function openAi(requests: number, tokens: number): Headers {
  return new Headers({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": String(requests),
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": String(tokens),
    "x-ratelimit-reset-tokens": "6m0s",
  });
}

Deno.test("quotaMeaning() reads a 429 by the provider's headers before its wording", () => {
  const cases: {
    name: string;
    cls: AttemptClass;
    headers: Headers;
    body: string;
    model: string | undefined;
    want: ErrorMeaning;
  }[] = [
    {
      name: "ModelScope throttling: calls left, whatever the body says",
      cls: "rate_limited",
      headers: modelScope(1500, 150),
      body: EXHAUSTED,
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: undefined },
    },
    {
      name: "ModelScope throttling, classed quota by its wording",
      cls: "quota",
      headers: modelScope(1500, 150),
      body: INSUFFICIENT,
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: undefined },
    },
    {
      name: "ModelScope model exhausted, the account has calls left",
      cls: "rate_limited",
      headers: modelScope(1500, 0),
      body: EXHAUSTED,
      model: MODEL,
      want: { cls: "quota", scope: "model", resetAt: undefined },
    },
    {
      name: "ModelScope model exhausted, request without a model",
      cls: "rate_limited",
      headers: modelScope(1500, 0),
      body: EXHAUSTED,
      model: undefined,
      want: { cls: "quota", scope: "key", resetAt: undefined },
    },
    {
      name: "ModelScope model count alone, exhausted",
      cls: "rate_limited",
      headers: modelScope(undefined, 0),
      body: "{}",
      model: MODEL,
      want: { cls: "quota", scope: "model", resetAt: undefined },
    },
    {
      name: "ModelScope account exhausted",
      cls: "rate_limited",
      headers: modelScope(0, 150),
      body: EXHAUSTED,
      model: MODEL,
      want: { cls: "quota", scope: "key", resetAt: undefined },
    },
    {
      name: "ModelScope account and model exhausted: the key",
      cls: "rate_limited",
      headers: modelScope(0, 0),
      body: "",
      model: MODEL,
      want: { cls: "quota", scope: "key", resetAt: undefined },
    },
    {
      name: "no headers, ModelScope's exhaustion body: the model",
      cls: "rate_limited",
      headers: new Headers(),
      body: EXHAUSTED,
      model: MODEL,
      want: { cls: "quota", scope: "model", resetAt: undefined },
    },
    {
      name: "no headers, exhaustion body in an OpenAI-style error, any case",
      cls: "rate_limited",
      headers: new Headers(),
      body: '{"error":{"message":"REQUEST LIMIT EXCEEDED"}}',
      model: MODEL,
      want: { cls: "quota", scope: "model", resetAt: undefined },
    },
    {
      name: "no headers, exhaustion body, no model: the key",
      cls: "rate_limited",
      headers: new Headers(),
      body: EXHAUSTED,
      model: undefined,
      want: { cls: "quota", scope: "key", resetAt: undefined },
    },
    {
      name: "no headers, insufficient_quota classed quota: the key",
      cls: "quota",
      headers: new Headers(),
      body: INSUFFICIENT,
      model: MODEL,
      want: { cls: "quota", scope: "key", resetAt: undefined },
    },
    {
      name: "no headers, throttling body: the class given",
      cls: "rate_limited",
      headers: new Headers(),
      body: THROTTLED,
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: undefined },
    },
    {
      name: "no headers, body not JSON: the class given",
      cls: "rate_limited",
      headers: new Headers(),
      body: "Request limit exceeded.",
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: undefined },
    },
    {
      name: "the phrase outside an error member is no exhaustion",
      cls: "rate_limited",
      headers: new Headers(),
      body: '{"message":"Request limit exceeded.","detail":{"error":"x"}}',
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: undefined },
    },
    {
      name: "OpenAI requests used up: throttling until the requests' reset",
      cls: "rate_limited",
      headers: openAi(0, 1000),
      body: THROTTLED,
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: NOW + 1000 },
    },
    {
      name: "OpenAI short window, even with ModelScope's exhaustion wording",
      cls: "rate_limited",
      headers: openAi(0, 1000),
      body: EXHAUSTED,
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: NOW + 1000 },
    },
    {
      name: "OpenAI short window, the wording said the quota is gone",
      cls: "quota",
      headers: openAi(5, 1000),
      body: INSUFFICIENT,
      model: MODEL,
      want: { cls: "quota", scope: "key", resetAt: undefined },
    },
    {
      name: "OpenAI tokens alone: throttling until the tokens' reset",
      cls: "rate_limited",
      headers: new Headers({
        "x-ratelimit-remaining-requests": "junk",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
      }),
      body: EXHAUSTED,
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: NOW + 360_000 },
    },
    {
      name: "Anthropic requests used up: throttling until the requests' reset",
      cls: "rate_limited",
      headers: new Headers({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-03-08T07:00:10Z",
      }),
      body: "{}",
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: NOW + 10_000 },
    },
    {
      name: "Anthropic tokens alone: throttling until the tokens' reset",
      cls: "rate_limited",
      headers: new Headers({
        "anthropic-ratelimit-requests-remaining": "junk",
        "anthropic-ratelimit-tokens-limit": "38000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2026-03-08T07:00:30Z",
      }),
      body: "{}",
      model: MODEL,
      want: { cls: "rate_limited", scope: "key", resetAt: NOW + 30_000 },
    },
  ];
  for (const t of cases) {
    const learned = learnedBudgets(t.headers, NOW);
    assert.deepEqual(quotaMeaning(t.cls, learned, t.body, t.model), t.want, t.name);
  }
});

Deno.test("quotaMeaning() without anything read keeps the class it was given", () => {
  assert.deepEqual(quotaMeaning("quota", undefined, "", MODEL), {
    cls: "quota",
    scope: "key",
    resetAt: undefined,
  });
  assert.deepEqual(quotaMeaning("rate_limited", undefined, "", undefined), {
    cls: "rate_limited",
    scope: "key",
    resetAt: undefined,
  });
});

Deno.test("quotaMeaning() reads ModelScope's insufficient_quota as a short rate limit", () => {
  assert.deepEqual(quotaMeaning("quota", undefined, INSUFFICIENT, MODEL, true), {
    cls: "rate_limited",
    scope: "key",
    resetAt: undefined,
  });
  assert.deepEqual(
    quotaMeaning("quota", undefined, INSUFFICIENT, MODEL, false),
    { cls: "quota", scope: "key", resetAt: undefined },
    "elsewhere the quota is gone",
  );
  assert.deepEqual(
    quotaMeaning("rate_limited", undefined, EXHAUSTED, MODEL, true),
    { cls: "quota", scope: "model", resetAt: undefined },
    "ModelScope's exhaustion body is still an exhaustion",
  );
  assert.deepEqual(
    quotaMeaning("quota", learnedBudgets(modelScope(0, 10), NOW), INSUFFICIENT, MODEL, true),
    { cls: "quota", scope: "key", resetAt: undefined },
    "its headers saying no calls left win",
  );
});

Deno.test("emptyAnswer() tells a chat completion whose choices are null or empty", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  const chat = "/v1/chat/completions";
  const cases: { path: string; body: Uint8Array | undefined; want: boolean; name: string }[] = [
    { name: "empty array", path: chat, body: bytes('{"id":"x","choices":[]}'), want: true },
    { name: "spaced array", path: chat, body: bytes('{"choices": [ \n ] }\n'), want: true },
    { name: "null", path: chat, body: bytes('{"choices":null,"usage":{}}'), want: true },
    { name: "raw path mode", path: "/chat/completions", body: bytes('{"choices":[]}'), want: true },
    {
      name: "a choice",
      path: chat,
      body: bytes('{"choices":[{"index":0,"message":{"content":"hi"}}]}'),
      want: false,
    },
    { name: "nested empty choices", path: chat, body: bytes('{"x":{"choices":[]}}'), want: false },
    { name: "no choices", path: chat, body: bytes('{"id":"x"}'), want: false },
    { name: "cut off", path: chat, body: bytes('{"choices":[],"usage":{"a":'), want: false },
    { name: "not JSON", path: chat, body: bytes("choices: []"), want: false },
    { name: "a stream", path: chat, body: bytes('data: {"choices":[]}\n\n'), want: false },
    { name: "not read", path: chat, body: undefined, want: false },
    { name: "empty body", path: chat, body: new Uint8Array(0), want: false },
    { name: "completions", path: "/v1/completions", body: bytes('{"choices":[]}'), want: false },
    { name: "embeddings", path: "/v1/embeddings", body: bytes('{"choices":[]}'), want: false },
    {
      name: "a path that only contains it",
      path: "/v1/chat/completions/abc",
      body: bytes('{"choices":[]}'),
      want: false,
    },
  ];
  for (const t of cases) assert.equal(emptyAnswer(t.path, t.body), t.want, t.name);
});

/** An error answer as an attempt returns it. */
function answer(
  status: number,
  cls: AttemptClass,
  headers: Record<string, string>,
  body = "{}",
): ErrorAnswer {
  return {
    kind: "error_response",
    cls,
    response: new Response(null, { status, headers }),
    body: new TextEncoder().encode(body),
  };
}

Deno.test("errorMeaning() reads a 429 or 402 by quotaMeaning() and its body", () => {
  const h = modelScope(1500, 0);
  const learned = learnedBudgets(h, NOW);
  assert.deepEqual(
    errorMeaning(answer(429, "rate_limited", {}, EXHAUSTED), learned, MODEL, NOW),
    { cls: "quota", scope: "model", resetAt: undefined },
  );
  assert.deepEqual(
    errorMeaning(answer(402, "quota", {}, EXHAUSTED), undefined, undefined, NOW),
    { cls: "quota", scope: "key", resetAt: undefined },
  );
  assert.deepEqual(
    errorMeaning(answer(429, "rate_limited", {}, THROTTLED), undefined, MODEL, NOW),
    { cls: "rate_limited", scope: "key", resetAt: undefined },
  );
});

Deno.test("errorMeaning() takes Retry-After over the provider's reset", () => {
  const headers = {
    "retry-after": "7",
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1s",
  };
  const learned = learnedBudgets(new Headers(headers), NOW);
  assert.deepEqual(
    errorMeaning(answer(429, "rate_limited", headers, THROTTLED), learned, MODEL, NOW),
    { cls: "rate_limited", scope: "key", resetAt: NOW + 7000 },
  );
  const noRetryAfter = { ...headers, "retry-after": "soon" };
  assert.deepEqual(
    errorMeaning(answer(429, "rate_limited", noRetryAfter, THROTTLED), learned, MODEL, NOW),
    { cls: "rate_limited", scope: "key", resetAt: NOW + 1000 },
    "an unreadable Retry-After leaves the provider's reset",
  );
});

Deno.test("errorMeaning() tells quotaMeaning() the upstream is ModelScope", () => {
  const a = answer(429, "quota", {}, INSUFFICIENT);
  assert.equal(errorMeaning(a, undefined, MODEL, NOW, true).cls, "rate_limited");
  assert.equal(errorMeaning(a, undefined, MODEL, NOW).cls, "quota");
});

Deno.test("errorMeaning() keeps the class of other statuses, with their Retry-After", () => {
  const learned = learnedBudgets(modelScope(0, 0), NOW);
  assert.deepEqual(
    errorMeaning(answer(503, "server", { "retry-after": "2" }, EXHAUSTED), learned, MODEL, NOW),
    { cls: "server", scope: "key", resetAt: NOW + 2000 },
    "a 503 is not read for quota, whatever its headers and body say",
  );
  assert.deepEqual(
    errorMeaning(answer(401, "auth", {}), undefined, MODEL, NOW),
    { cls: "auth", scope: "key", resetAt: undefined },
  );
});
