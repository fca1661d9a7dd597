/**
 * @module
 * The middleware engine: `compose(middleware)` runs an onion. Each middleware does its work
 * before `await next()`, after it, and cleanup in `finally`; calling `next()` twice throws.
 */

/** Calls the rest of the chain. */
export type Next = () => Promise<void>;

/**
 * One step of the chain.
 * @typeParam C the request context type
 */
export type Middleware<C> = (ctx: C, next: Next) => Promise<void> | void;

/**
 * Composes middleware into one function.
 * @param middleware run in order; the last one usually produces the response
 * @returns a function running the whole chain for one context
 * @throws {TypeError} when a middleware calls `next()` more than once
 */
export function compose<C>(middleware: readonly Middleware<C>[]): (ctx: C) => Promise<void> {
  const chain = middleware.slice();
  return function composed(ctx: C): Promise<void> {
    let index = -1;
    function dispatch(i: number): Promise<void> {
      if (i <= index) return Promise.reject(new TypeError("next() called multiple times"));
      index = i;
      const mw = chain[i];
      if (mw === undefined) return Promise.resolve();
      try {
        return Promise.resolve(mw(ctx, () => dispatch(i + 1)));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return dispatch(0);
  };
}
