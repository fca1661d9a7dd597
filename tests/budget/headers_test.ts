/** @module Tests of reading key budgets from provider headers and of the ModelScope body checks. */

import assert from "node:assert/strict";
import { emptyChoices, isExhaustionBody, learnedBudgets } from "../../src/budget/headers.ts";

const NOW = Date.UTC(2026, 2, 8, 7, 0, 0);

const MODELSCOPE = {
  "modelscope-ratelimit-requests-limit": "2000",
  "modelscope-ratelimit-requests-remaining": "1987",
  "modelscope-ratelimit-model-requests-limit": "200",
  "modelscope-ratelimit-model-requests-remaining": "188",
};

const OPENAI = {
  "x-ratelimit-limit-requests": "60",
  "x-ratelimit-remaining-requests": "59",
  "x-ratelimit-reset-requests": "1s",
  "x-ratelimit-limit-tokens": "150000",
  "x-ratelimit-remaining-tokens": "149984",
  "x-ratelimit-reset-tokens": "6m0s",
};

const ANTHROPIC = {
  "anthropic-ratelimit-requests-limit": "50",
  "anthropic-ratelimit-requests-remaining": "49",
  "anthropic-ratelimit-requests-reset": "2026-03-08T07:00:01Z",
  "anthropic-ratelimit-tokens-limit": "38000",
  "anthropic-ratelimit-tokens-remaining": "36900",
  "anthropic-ratelimit-tokens-reset": "2026-03-08T07:00:02Z",
  "anthropic-ratelimit-input-tokens-limit": "30000",
  "anthropic-ratelimit-input-tokens-remaining": "29000",
  "anthropic-ratelimit-input-tokens-reset": "2026-03-08T07:00:02Z",
  "anthropic-ratelimit-output-tokens-limit": "8000",
  "anthropic-ratelimit-output-tokens-remaining": "7900",
  "anthropic-ratelimit-output-tokens-reset": "2026-03-08T07:00:06.5Z",
};

/** What an answer without rate-limit headers carries. */
const PLAIN = {
  "content-type": "application/json",
  "date": "Sun, 08 Mar 2026 07:00:00 GMT",
  "server": "nginx",
  "x-request-id": "req_123",
  "cache-control": "no-cache",
};

/** Headers that count how often they are read. */
class CountingHeaders extends Headers {
  reads = 0;
  override get(name: string): string | null {
    this.reads++;
    return super.get(name);
  }
}

Deno.test("learnedBudgets() reads ModelScope's daily counts for the account and the model", () => {
  assert.deepEqual(learnedBudgets(new Headers({ ...PLAIN, ...MODELSCOPE }), NOW), {
    source: "modelscope",
    daily: true,
    requests: { remaining: 1987, limit: 2000, resetAt: undefined },
    modelRequests: { remaining: 188, limit: 200, resetAt: undefined },
  });
});

Deno.test("learnedBudgets() reads OpenAI's request and token windows, reset from now", () => {
  assert.deepEqual(learnedBudgets(new Headers({ ...PLAIN, ...OPENAI }), NOW), {
    source: "openai",
    daily: false,
    requests: { remaining: 59, limit: 60, resetAt: NOW + 1000 },
    tokens: { remaining: 149984, limit: 150000, resetAt: NOW + 360_000 },
  });
});

Deno.test("learnedBudgets() reads Anthropic's windows, tokens from the one with fewest left", () => {
  assert.deepEqual(learnedBudgets(new Headers({ ...PLAIN, ...ANTHROPIC }), NOW), {
    source: "anthropic",
    daily: false,
    requests: { remaining: 49, limit: 50, resetAt: Date.UTC(2026, 2, 8, 7, 0, 1) },
    tokens: { remaining: 7900, limit: 8000, resetAt: Date.UTC(2026, 2, 8, 7, 0, 6, 500) },
  });
  // the combined token budget when it is the smallest
  const h = new Headers({ ...ANTHROPIC, "anthropic-ratelimit-tokens-remaining": "12" });
  assert.deepEqual(learnedBudgets(h, NOW)?.tokens, {
    remaining: 12,
    limit: 38000,
    resetAt: Date.UTC(2026, 2, 8, 7, 0, 2),
  });
  // a reset with an offset
  const offset = new Headers({
    ...ANTHROPIC,
    "anthropic-ratelimit-requests-reset": "2026-03-08T15:00:01+08:00",
  });
  assert.equal(learnedBudgets(offset, NOW)?.requests?.resetAt, Date.UTC(2026, 2, 8, 7, 0, 1));
});

Deno.test("learnedBudgets() reads an exhausted budget as zero remaining", () => {
  const h = new Headers({
    ...MODELSCOPE,
    "modelscope-ratelimit-model-requests-remaining": "0",
  });
  assert.deepEqual(learnedBudgets(h, NOW)?.modelRequests, {
    remaining: 0,
    limit: 200,
    resetAt: undefined,
  });
  const o = new Headers({ ...OPENAI, "x-ratelimit-remaining-requests": "0" });
  assert.equal(learnedBudgets(o, NOW)?.requests?.remaining, 0);
});

Deno.test("learnedBudgets() returns undefined when no known header is present", () => {
  assert.equal(learnedBudgets(new Headers(), NOW), undefined);
  assert.equal(learnedBudgets(new Headers(PLAIN), NOW), undefined);
  // other providers' headers of similar names
  const others = new Headers({
    "x-ratelimit-remaining": "10",
    "x-ratelimit-limit": "20",
    "ratelimit-remaining": "5",
    "x-ratelimit-remaining-tokens-minute": "1000",
    "retry-after": "3",
  });
  assert.equal(learnedBudgets(others, NOW), undefined);
});

Deno.test("learnedBudgets() reads three headers when none is present", () => {
  const h = new CountingHeaders(PLAIN);
  assert.equal(learnedBudgets(h, NOW), undefined);
  assert.equal(h.reads, 3);
});

Deno.test("learnedBudgets() needs each provider's request count header to read its set", () => {
  const { "x-ratelimit-remaining-requests": _r, ...tokensOnly } = OPENAI;
  assert.equal(learnedBudgets(new Headers(tokensOnly), NOW), undefined);
  const { "modelscope-ratelimit-requests-remaining": _m, ...modelOnly } = MODELSCOPE;
  assert.equal(learnedBudgets(new Headers(modelOnly), NOW), undefined);
});

Deno.test("learnedBudgets() reads partial sets", () => {
  assert.deepEqual(
    learnedBudgets(
      new Headers({
        "modelscope-ratelimit-requests-limit": "2000",
        "modelscope-ratelimit-requests-remaining": "3",
      }),
      NOW,
    ),
    {
      source: "modelscope",
      daily: true,
      requests: { remaining: 3, limit: 2000, resetAt: undefined },
    },
  );
  // requests without a reset; tokens without a limit are left out
  assert.deepEqual(
    learnedBudgets(
      new Headers({
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "20ms",
      }),
      NOW,
    ),
    {
      source: "openai",
      daily: false,
      requests: { remaining: 499, limit: 500, resetAt: undefined },
    },
  );
  // the account count without its limit, the model count whole
  assert.deepEqual(
    learnedBudgets(
      new Headers({
        "modelscope-ratelimit-requests-remaining": "1500",
        "modelscope-ratelimit-model-requests-limit": "200",
        "modelscope-ratelimit-model-requests-remaining": "7",
      }),
      NOW,
    ),
    {
      source: "modelscope",
      daily: true,
      modelRequests: { remaining: 7, limit: 200, resetAt: undefined },
    },
  );
  // Anthropic with requests and input tokens only
  assert.deepEqual(
    learnedBudgets(
      new Headers({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "50",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "30000",
      }),
      NOW,
    ),
    {
      source: "anthropic",
      daily: false,
      requests: { remaining: 50, limit: 50, resetAt: undefined },
      tokens: { remaining: 30000, limit: 30000, resetAt: undefined },
    },
  );
});

Deno.test("learnedBudgets() leaves out a budget whose numbers are malformed", () => {
  const bad = [
    "",
    "abc",
    "-1",
    "+5",
    "1e3",
    "0x10",
    "1_000",
    "5, 6",
    "1 000",
    "NaN",
    "Infinity",
    "12abc",
    "9".repeat(400),
  ];
  for (const value of bad) {
    const h = new Headers({
      ...MODELSCOPE,
      "modelscope-ratelimit-model-requests-remaining": value,
    });
    const got = learnedBudgets(h, NOW);
    assert.equal(got?.modelRequests, undefined, JSON.stringify(value));
    assert.equal(got?.requests?.remaining, 1987, JSON.stringify(value));
    const l = new Headers({ ...OPENAI, "x-ratelimit-limit-tokens": value });
    assert.equal(learnedBudgets(l, NOW)?.tokens, undefined, JSON.stringify(value));
    assert.equal(learnedBudgets(l, NOW)?.requests?.limit, 60, JSON.stringify(value));
  }
  // a decimal count is a number still
  const d = new Headers({ ...MODELSCOPE, "modelscope-ratelimit-model-requests-remaining": "99.5" });
  assert.equal(learnedBudgets(d, NOW)?.modelRequests?.remaining, 99.5);
});

Deno.test("learnedBudgets() keeps a budget whose reset is malformed, without its reset", () => {
  for (const value of ["soon", "-1s", "1x", "", "1s2", "Infinity"]) {
    const h = new Headers({ ...OPENAI, "x-ratelimit-reset-requests": value });
    assert.deepEqual(
      learnedBudgets(h, NOW)?.requests,
      { remaining: 59, limit: 60, resetAt: undefined },
      JSON.stringify(value),
    );
  }
  const dates = [
    "tomorrow",
    "2026-03-08",
    "2026-03-08 07:00:01",
    "2026-03-08T07:00:01",
    "2026-13-40T07:00:01Z",
    "Sun, 08 Mar 2026 07:00:01 GMT",
    "1772953201",
  ];
  for (const value of dates) {
    const h = new Headers({ ...ANTHROPIC, "anthropic-ratelimit-requests-reset": value });
    assert.deepEqual(
      learnedBudgets(h, NOW)?.requests,
      { remaining: 49, limit: 50, resetAt: undefined },
      value,
    );
  }
  const lower = new Headers({
    ...ANTHROPIC,
    "anthropic-ratelimit-requests-reset": "2026-03-08t07:00:01z",
  });
  assert.equal(learnedBudgets(lower, NOW)?.requests?.resetAt, Date.UTC(2026, 2, 8, 7, 0, 1));
});

Deno.test("learnedBudgets() returns undefined when a provider's headers are all malformed", () => {
  const h = new Headers({
    "modelscope-ratelimit-requests-limit": "lots",
    "modelscope-ratelimit-requests-remaining": "some",
    "modelscope-ratelimit-model-requests-remaining": "-3",
  });
  assert.equal(learnedBudgets(h, NOW), undefined);
});

Deno.test("learnedBudgets() reads ModelScope first, then OpenAI, then Anthropic", () => {
  const all = new Headers({ ...ANTHROPIC, ...OPENAI, ...MODELSCOPE });
  assert.equal(learnedBudgets(all, NOW)?.source, "modelscope");
  assert.equal(learnedBudgets(new Headers({ ...ANTHROPIC, ...OPENAI }), NOW)?.source, "openai");
  // a set that cannot be read gives way to the next
  const broken = new Headers({
    ...OPENAI,
    "modelscope-ratelimit-requests-remaining": "n/a",
  });
  assert.equal(learnedBudgets(broken, NOW)?.source, "openai");
});

Deno.test("learnedBudgets() reads header names in any letter case", () => {
  const h = new Headers({
    "Modelscope-Ratelimit-Requests-Limit": "2000",
    "MODELSCOPE-RATELIMIT-REQUESTS-REMAINING": "10",
  });
  assert.equal(learnedBudgets(h, NOW)?.requests?.remaining, 10);
});

Deno.test("isExhaustionBody() finds ModelScope's request limit message", () => {
  const bodies = [
    '{"errors":{"message":"Request limit exceeded.","request_id":"30da26a6-d7fc-4378-8545-15f489552584"}}',
    '{\n  "errors": {\n    "request_id": "599c88e7",\n    "message": "Request limit exceeded."\n  }\n}',
    '{"errors":{"message":"request limit exceeded"}}',
    '{"errors":{"message":"Request limit exceeded. Try again tomorrow."}}',
    '{"error":{"message":"Request limit exceeded.","type":"rate_limit"}}',
    '{"errors":{"message":"Request limit exc\\u0065eded."}}',
  ];
  for (const body of bodies) assert.equal(isExhaustionBody(body), true, body);
});

Deno.test("isExhaustionBody() is false for throttling and other errors", () => {
  const bodies = [
    // a short back-off clears ModelScope's insufficient_quota
    '{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}',
    '{"errors":{"message":"insufficient_quota","request_id":"x"}}',
    '{"error":{"message":"Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, Requested 1.","type":"requests","code":"rate_limit_exceeded"}}',
    '{"errors":{"message":"please bind your alibaba cloud account","request_id":"x"}}',
    '{"errors":{"message":"Model has no provider supported","request_id":"x"}}',
    '{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}',
    "Request limit exceeded.",
    '"Request limit exceeded."',
    '{"errors":"Request limit exceeded."}',
    '{"errors":[{"message":"Request limit exceeded."}]}',
    '{"detail":{"errors":{"message":"Request limit exceeded."}}}',
    '{"errors":{"message":42}}',
    '{"errors":{"detail":"Request limit exceeded."}}',
    "",
    "<html>429 Too Many Requests</html>",
  ];
  for (const body of bodies) assert.equal(isExhaustionBody(body), false, body);
});

Deno.test("emptyChoices() tells a completion whose choices are null or empty", () => {
  const table: [string, boolean][] = [
    ['{"id":"x","choices":null,"usage":{"prompt_tokens":0,"completion_tokens":0}}', true],
    ['{"id":"x","choices":[],"usage":{"total_tokens":0}}', true],
    ['{ "choices" : [ \n ] }', true],
    ['{"choices" : null}\n', true],
    ['{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}', false],
    ['{"choices":[null]}', false],
    ['{"choices":"null"}', false],
    ['{"choices":{}}', false],
    ['{"id":"x","usage":{}}', false],
    ['{"data":{"choices":null}}', false],
    ['[{"choices":null}]', false],
    ['{"choices":null', false],
    ['data: {"choices":[]}\n\n', false],
    ["null", false],
    ["", false],
    ["not json", false],
  ];
  for (const [body, want] of table) assert.equal(emptyChoices(body), want, body);
});

Deno.test("emptyChoices() reads bytes as it reads text", () => {
  const encoder = new TextEncoder();
  assert.equal(emptyChoices(encoder.encode('{"object":"chat.completion","choices":null}')), true);
  assert.equal(emptyChoices(encoder.encode('\ufeff{"choices":[]}')), true);
  assert.equal(emptyChoices(encoder.encode('{"choices":[{"index":0}]}')), false);
  assert.equal(emptyChoices(new Uint8Array()), false);
  assert.equal(emptyChoices(new Uint8Array([0xff, 0xfe, 0x7b])), false);
});
