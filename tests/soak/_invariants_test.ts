/**
 * @module
 * Tests of the soak's invariants: a clean run passes every check, and each kind of defect
 * (a lost request, a crossing, an unseen re-send, a token miscount, a leak) fails its own; so
 * do the defects of a `--redis` run (an outage logged twice, an answer that names Redis, cluster
 * counts off by what was given back while Redis was down).
 */

import assert from "node:assert/strict";

import { checkInvariants, type Figures, formatChecks, type RedisFigures } from "./_invariants.ts";

function clean(): Figures {
  const t = () => ({ prompt: 30, completion: 12, total: 42 });
  return {
    outcomes: {
      ok_json: 6,
      ok_stream: 2,
      error_status: 1,
      stream_error: 1,
      lost: 0,
      hang: 0,
      crossing: 0,
    },
    clientRequests: 10,
    proxyRequests: 10,
    examples: { lost: [], hang: [], crossing: [] },
    mixedRequests: [],
    arrivals: { total: 14, byUpstream: { u1: 8, u2: 6 }, late: 0, lateByUpstream: {} },
    attempts: { stats: 14, statsByUpstream: { u1: 8, u2: 6 }, metrics: 14, metricsByKey: 14 },
    resent: { count: 0, extra: 0, examples: [] },
    unseen: { count: 0, extra: 0, examples: [] },
    tokens: { upstream: t(), stats: t(), metrics: t(), metricsByKey: t(), client: t() },
    process: { warmRssMb: 80, endRssMb: 100, peakRssMb: 110, warmFds: 40, endFds: 45, peakFds: 60 },
  };
}

function redis(): RedisFigures {
  return {
    killed: true,
    lines: { down: 1, back: 1, unreachable: 0 },
    up: 1,
    downTotal: 1,
    mentions: [],
    whileDown: { answered: 40, ok: 35 },
    whole: {
      arrivals: 100,
      late: 2,
      attempts: 101,
      givenBack: 9,
      givenBackWhileDown: 4,
      tokens: 5000,
    },
    cluster: { requests: 92, tokens: 5000 },
    keysWithout: [],
    perKey: { requests: [], tokens: [] },
  };
}

function failing(f: Figures): string[] {
  return checkInvariants(f).filter((c) => !c.pass).map((c) => c.id);
}

Deno.test("checkInvariants passes a clean run", () => {
  assert.deepEqual(failing(clean()), []);
});

Deno.test("checkInvariants fails 1a on a lost request and 1c on a crossing", () => {
  const f = clean();
  f.outcomes.ok_json = 4;
  f.outcomes.lost = 1;
  f.outcomes.crossing = 1;
  f.examples.crossing.push("SOAK-c1-1-00000000 got SOAK-c2-1-00000000");
  assert.deepEqual(failing(f), ["1a", "1c"]);
});

Deno.test("checkInvariants fails 2a, 2b and 2c when the upstreams saw more than the proxy counted", () => {
  const f = clean();
  f.arrivals = { total: 15, byUpstream: { u1: 9, u2: 6 }, late: 0, lateByUpstream: {} };
  f.resent = { count: 1, extra: 1, examples: ["SOAK-c1-1-00000000: logged 1, saw 2"] };
  assert.deepEqual(failing(f), ["2a", "2b", "2c"]);
});

Deno.test("checkInvariants allows attempts that reached an upstream only after its idle close", () => {
  const f = clean();
  f.arrivals = { total: 13, byUpstream: { u1: 7, u2: 6 }, late: 2, lateByUpstream: { u1: 2 } };
  assert.deepEqual(failing(f), []);
  f.arrivals.lateByUpstream = { u2: 2 };
  assert.deepEqual(failing(f), ["2a"]);
});

Deno.test("checkInvariants fails 2a, 2b and 2d when the proxy counted attempts no upstream saw", () => {
  const f = clean();
  f.arrivals = { total: 13, byUpstream: { u1: 7, u2: 6 }, late: 0, lateByUpstream: {} };
  f.unseen = { count: 1, extra: 1, examples: ["SOAK-c1-1-00000000: logged 2, saw 1"] };
  assert.deepEqual(failing(f), ["2a", "2b", "2d"]);
});

Deno.test("checkInvariants fails 2a when the totals match but an upstream's do not", () => {
  const f = clean();
  f.attempts.statsByUpstream = { u1: 9, u2: 5 };
  assert.deepEqual(failing(f), ["2a"]);
});

Deno.test("checkInvariants fails 3a, 3b and 3c on a token miscount", () => {
  const f = clean();
  f.tokens.upstream = { prompt: 31, completion: 12, total: 43 };
  assert.deepEqual(failing(f), ["3a", "3b", "3c"]);
});

Deno.test("checkInvariants fails 4a and 4b beyond the flatness limits", () => {
  const f = clean();
  f.process.endRssMb = 80 * 1.5 + 24.1;
  f.process.endFds = 61;
  assert.deepEqual(failing(f), ["4a", "4b"]);
  f.process.endRssMb = NaN;
  assert.ok(failing(f).includes("4a"), "an unreadable process fails");
});

Deno.test("formatChecks prints PASS and FAIL lines with the details of failures", () => {
  const f = clean();
  f.outcomes.ok_json = 5;
  f.outcomes.lost = 1;
  f.examples.lost.push("SOAK-c1-1-00000000: fetch failed");
  const text = formatChecks(checkInvariants(f));
  assert.match(text, /^FAIL 1a no lost requests: 10 requests: 7 ok, 2 honest errors, 1 lost$/m);
  assert.match(text, /^ {7}SOAK-c1-1-00000000: fetch failed$/m);
  assert.match(text, /^PASS 2a /m);
});

Deno.test("checkInvariants checks a --redis run: clean, it passes 5a to 5e", () => {
  const f = clean();
  f.redis = redis();
  const ids = checkInvariants(f).map((c) => c.id);
  for (const id of ["5a", "5b", "5c", "5d", "5e"]) assert.ok(ids.includes(id), id);
  assert.deepEqual(failing(f), []);
  assert.ok(!checkInvariants(clean()).some((c) => c.id.startsWith("5")), "no 5x without Redis");
});

Deno.test("checkInvariants fails 5a and 5b on an outage seen twice, 5c on an answer naming Redis", () => {
  const f = clean();
  f.redis = { ...redis(), lines: { down: 2, back: 2, unreachable: 0 }, downTotal: 2 };
  assert.deepEqual(failing(f), ["5a", "5b"]);
  f.redis = { ...redis(), up: 0 };
  assert.deepEqual(failing(f), ["5b"]);
  f.redis = { ...redis(), mentions: ["answer: SOAK-c1-1-00000000 HTTP 503: Redis is down"] };
  assert.deepEqual(failing(f), ["5c"]);
  f.redis = { ...redis(), whileDown: { answered: 5, ok: 0 } };
  assert.deepEqual(failing(f), ["5c"], "nothing served while Redis was down");
});

Deno.test("checkInvariants fails 5d when the cluster counts what was given back, 5e on a token miscount", () => {
  const f = clean();
  f.redis = { ...redis(), cluster: { requests: 96, tokens: 5000 } };
  const text = formatChecks(checkInvariants(f));
  assert.deepEqual(failing(f), ["5d"]);
  assert.match(text, /^FAIL 5d .*cluster 96, expected 92 = 101 attempts .* difference 4$/m);
  f.redis = { ...redis(), whole: { ...redis().whole, arrivals: 98 } };
  assert.deepEqual(failing(f), ["5d"], "more attempts than arrivals and late ones");
  f.redis = { ...redis(), perKey: { requests: ["u1-k1: off by one"], tokens: [] } };
  assert.deepEqual(failing(f), ["5d"], "per key too");
  f.redis = { ...redis(), cluster: { requests: 92, tokens: 4999 } };
  assert.deepEqual(failing(f), ["5e"]);
  f.redis = { ...redis(), keysWithout: ["u2-k1"] };
  assert.deepEqual(failing(f), ["5d", "5e"]);
  f.redis = { ...redis(), killed: false };
  assert.deepEqual(failing(f), ["5a", "5d", "5e"]);
});
