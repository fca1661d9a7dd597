import assert from "node:assert/strict";
import { RateLimiter } from "../src/rate_limiter.ts";

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

Deno.test("RateLimiter.take() allows a full minute's requests at once, then refuses", () => {
  const c = clock();
  const limiter = new RateLimiter(c.now);
  for (let i = 0; i < 3; i++) {
    const d = limiter.take("k", 3);
    assert.equal(d.allowed, true);
    assert.equal(d.limit, 3);
    assert.equal(d.remaining, 2 - i);
    assert.equal(d.retryAfterMs, 0);
  }
  const refused = limiter.take("k", 3);
  assert.equal(refused.allowed, false);
  assert.equal(refused.remaining, 0);
  assert.equal(refused.retryAfterMs, 20_000);
  assert.equal(refused.resetMs, 60_000);
});

Deno.test("RateLimiter.take() refills continuously", () => {
  const c = clock();
  const limiter = new RateLimiter(c.now);
  for (let i = 0; i < 60; i++) assert.equal(limiter.take("k", 60).allowed, true);
  assert.equal(limiter.take("k", 60).allowed, false);
  c.t += 500;
  const early = limiter.take("k", 60);
  assert.equal(early.allowed, false);
  assert.equal(early.retryAfterMs, 500);
  c.t += 500;
  assert.equal(limiter.take("k", 60).allowed, true);
  assert.equal(limiter.take("k", 60).allowed, false);
  c.t += 3_600_000; // a long pause never grows the bucket beyond its capacity
  const after = limiter.take("k", 60);
  assert.equal(after.remaining, 59);
});

Deno.test("RateLimiter.take() keeps one bucket per client", () => {
  const limiter = new RateLimiter(clock().now);
  assert.equal(limiter.take("a", 1).allowed, true);
  assert.equal(limiter.take("a", 1).allowed, false);
  assert.equal(limiter.take("b", 1).allowed, true);
  assert.equal(limiter.size, 2);
});

Deno.test("RateLimiter.take() keeps the tokens left when the limit changes", () => {
  const limiter = new RateLimiter(clock().now);
  limiter.take("k", 2);
  limiter.take("k", 2);
  // a reload raising the limit does not hand out a fresh bucket
  const d = limiter.take("k", 100);
  assert.equal(d.allowed, false);
  assert.equal(d.limit, 100);
  const c = clock();
  const l2 = new RateLimiter(c.now);
  for (let i = 0; i < 5; i++) l2.take("k", 10);
  // lowering the limit caps what is left
  assert.equal(l2.take("k", 2).remaining, 1);
});

Deno.test("RateLimiter.take() gives nothing back when the clock goes backwards", () => {
  const c = clock();
  const limiter = new RateLimiter(c.now);
  limiter.take("k", 1);
  c.t -= 120_000;
  assert.equal(limiter.take("k", 1).allowed, false);
});
