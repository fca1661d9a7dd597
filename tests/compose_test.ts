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
