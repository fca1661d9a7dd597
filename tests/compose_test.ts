/** @module Tests of src/compose.ts: the onion, next() called twice, and the error handler. */

import assert from "node:assert/strict";
import { compose, type Middleware } from "../src/compose.ts";

Deno.test("compose() runs middleware as an onion", async () => {
  const order: string[] = [];
  const mw = (name: string): Middleware<string[]> => async (_ctx, next) => {
    order.push(`${name}:before`);
    try {
      await next();
    } finally {
      order.push(`${name}:after`);
    }
  };
  await compose([mw("a"), mw("b"), mw("c")])([]);
  assert.deepEqual(order, ["a:before", "b:before", "c:before", "c:after", "b:after", "a:after"]);
});

Deno.test("compose() rejects a second call of next()", async () => {
  const twice: Middleware<unknown> = async (_ctx, next) => {
    await next();
    await next();
  };
  await assert.rejects(() => compose([twice])({}), /next\(\) called multiple times/);
});

Deno.test("compose() turns a synchronous throw into a rejection the outer layer can catch", async () => {
  let caught: unknown;
  const outer: Middleware<unknown> = async (_ctx, next) => {
    try {
      await next();
    } catch (err) {
      caught = err;
    }
  };
  const thrower: Middleware<unknown> = () => {
    throw new Error("boom");
  };
  await compose([outer, thrower])({});
  assert.equal((caught as Error).message, "boom");
});

Deno.test("compose() with a middleware that does not call next() stops the chain", async () => {
  let reached = false;
  await compose<unknown>([() => {}, () => {
    reached = true;
  }])({});
  assert.equal(reached, false);
});

/** A context the error handler answers into. */
interface Ctx {
  res: Response | undefined;
  seen: (Response | undefined)[];
}

function newCtx(): Ctx {
  return { res: undefined, seen: [] };
}

/** An error handler that records its calls and answers 500 with the error's message. */
function recordingHandler(): {
  calls: [unknown, Ctx][];
  onError: (err: unknown, ctx: Ctx) => void;
} {
  const calls: [unknown, Ctx][] = [];
  return {
    calls,
    onError(err, ctx) {
      calls.push([err, ctx]);
      ctx.res = new Response(err instanceof Error ? err.message : String(err), { status: 500 });
    },
  };
}

/** An outer step that only decorates: it records the response it sees after `next()`. */
const decorate: Middleware<Ctx> = async (ctx, next) => {
  await next();
  ctx.seen.push(ctx.res);
  ctx.res?.headers.set("x-decorated", "yes");
};

Deno.test("compose() with onError turns a synchronous throw of the innermost step into ctx.res", async () => {
  const { calls, onError } = recordingHandler();
  const boom = new Error("boom");
  const ctx = newCtx();
  await compose<Ctx>([decorate, () => {
    throw boom;
  }], onError)(ctx);
  assert.equal(calls.length, 1);
  assert.equal(calls[0]?.[0], boom);
  assert.equal(calls[0]?.[1], ctx);
  assert.equal(ctx.res?.status, 500);
  assert.equal(await ctx.res?.text(), "boom");
  // the outer step's after-part ran and saw the handler's response
  assert.equal(ctx.seen.length, 1);
  assert.equal(ctx.seen[0], ctx.res);
  assert.equal(ctx.res?.headers.get("x-decorated"), "yes");
});

Deno.test("compose() with onError turns an asynchronous throw of the innermost step into ctx.res", async () => {
  const { calls, onError } = recordingHandler();
  const boom = new Error("async boom");
  const ctx = newCtx();
  const order: string[] = [];
  const outer: Middleware<Ctx> = async (ctx, next) => {
    order.push("outer:before");
    await next();
    order.push(`outer:after:${ctx.res?.status}`);
  };
  const inner: Middleware<Ctx> = async () => {
    order.push("inner");
    await Promise.resolve();
    throw boom;
  };
  await compose<Ctx>([outer, decorate, inner], onError)(ctx);
  assert.deepEqual(calls, [[boom, ctx]]);
  assert.deepEqual(order, ["outer:before", "inner", "outer:after:500"]);
  assert.deepEqual(ctx.seen, [ctx.res]);
  assert.equal(ctx.res?.headers.get("x-decorated"), "yes");
  assert.equal(await ctx.res?.text(), "async boom");
});

Deno.test("compose() with onError handles an error thrown in an outer step's after-part", async () => {
  const { calls, onError } = recordingHandler();
  const late = new Error("after next");
  const ctx = newCtx();
  const throwsAfter: Middleware<Ctx> = async (ctx, next) => {
    await next();
    ctx.seen.push(ctx.res);
    throw late;
  };
  const answer: Middleware<Ctx> = (ctx) => {
    ctx.res = new Response("ok");
  };
  await compose<Ctx>([decorate, throwsAfter, answer], onError)(ctx);
  assert.deepEqual(calls, [[late, ctx]]);
  assert.equal(ctx.seen.length, 2);
  // throwsAfter saw the answer, decorate saw the handler's response that replaced it
  assert.equal(await ctx.seen[0]?.text(), "ok");
  assert.equal(ctx.seen[1], ctx.res);
  assert.equal(ctx.res?.status, 500);
  assert.equal(await ctx.res?.text(), "after next");
});

Deno.test("compose() with onError calls the handler once per error, with the error and the context", async () => {
  const { calls, onError } = recordingHandler();
  const first = new Error("first");
  const second = new Error("second");
  const ctx = newCtx();
  const throwsAfter: Middleware<Ctx> = async (_ctx, next) => {
    await next();
    throw second;
  };
  const passes: Middleware<Ctx> = async (_ctx, next) => {
    await next();
  };
  await compose<Ctx>([passes, throwsAfter, passes, () => {
    throw first;
  }], onError)(ctx);
  assert.equal(calls.length, 2);
  assert.equal(calls[0]?.[0], first);
  assert.equal(calls[0]?.[1], ctx);
  assert.equal(calls[1]?.[0], second);
  assert.equal(calls[1]?.[1], ctx);
  assert.equal(await ctx.res?.text(), "second");
});

Deno.test("compose() with onError runs a step that returns next() directly", async () => {
  const { calls, onError } = recordingHandler();
  const passThrough: Middleware<Ctx> = (_ctx, next) => next();
  const ok = newCtx();
  await compose<Ctx>([decorate, passThrough, (ctx) => {
    ctx.res = new Response("answer");
  }], onError)(ok);
  assert.equal(calls.length, 0);
  assert.equal(await ok.res?.text(), "answer");
  assert.equal(ok.res?.headers.get("x-decorated"), "yes");

  const boom = new Error("behind a pass-through");
  const failed = newCtx();
  await compose<Ctx>([decorate, passThrough, passThrough, () => {
    throw boom;
  }], onError)(failed);
  assert.deepEqual(calls, [[boom, failed]]);
  assert.deepEqual(failed.seen, [failed.res]);
  assert.equal(failed.res?.status, 500);
});

Deno.test("compose() without onError still rejects with the thrown error", async () => {
  const boom = new Error("unhandled");
  const ctx = newCtx();
  const passThrough: Middleware<Ctx> = (_ctx, next) => next();
  const sync = compose<Ctx>([decorate, passThrough, () => {
    throw boom;
  }]);
  await assert.rejects(() => sync(ctx), (err) => err === boom);
  const later = compose<Ctx>([decorate, async () => {
    await Promise.resolve();
    throw boom;
  }]);
  await assert.rejects(() => later(ctx), (err) => err === boom);
  // no response was made up, and decorate's after-part never ran
  assert.equal(ctx.res, undefined);
  assert.deepEqual(ctx.seen, []);
});

Deno.test("compose() rejects when onError itself throws", async () => {
  const broken = new Error("handler broke");
  const thrower: Middleware<Ctx> = () => {
    throw new Error("step broke");
  };
  const syncHandler = () => {
    throw broken;
  };
  await assert.rejects(() => compose<Ctx>([thrower], syncHandler)(newCtx()), (e) => e === broken);
  const asyncHandler = async () => {
    await Promise.resolve();
    throw broken;
  };
  await assert.rejects(
    () => compose<Ctx>([decorate, thrower], asyncHandler)(newCtx()),
    (e) => e === broken,
  );
  // steps that return next() as it is do not hand the handler's own error back to it
  let calls = 0;
  const countingHandler = () => {
    calls++;
    throw broken;
  };
  const passThrough: Middleware<Ctx> = (_ctx, next) => next();
  await assert.rejects(
    () => compose<Ctx>([passThrough, passThrough, thrower], countingHandler)(newCtx()),
    (e) => e === broken,
  );
  assert.equal(calls, 1);
});

Deno.test("compose() with onError hands a second call of next() to the handler as a TypeError", async () => {
  const { calls, onError } = recordingHandler();
  const ctx = newCtx();
  let innerRuns = 0;
  let carriedOn = false;
  const twice: Middleware<Ctx> = async (_ctx, next) => {
    await next();
    await next();
    carriedOn = true;
  };
  await compose<Ctx>([decorate, twice, () => {
    innerRuns++;
  }], onError)(ctx);
  assert.equal(innerRuns, 1);
  // the second next() answered through the handler, so the step went on as after a response
  assert.equal(carriedOn, true);
  assert.equal(calls.length, 1);
  assert.ok(calls[0]?.[0] instanceof TypeError);
  assert.match((calls[0]?.[0] as TypeError).message, /next\(\) called multiple times/);
  assert.equal(calls[0]?.[1], ctx);
  assert.equal(ctx.res?.status, 500);
  assert.deepEqual(ctx.seen, [ctx.res]);
});
