/**
 * @module
 * The middleware engine: `compose(middleware, onError)` runs an onion. Each middleware does its
 * work before `await next()`, after it, and cleanup in `finally`; calling `next()` twice throws.
 * As in Hono, an error is turned into the response where it is thrown: the error handler sets
 * the context's response, and the middleware outside carry on as if the step had answered, so
 * they only ever decorate a response and never need to catch.
 */

/** Calls the rest of the chain. */
export type Next = () => Promise<void>;

/**
 * One step of the chain.
 * @typeParam C the request context type
 */
export type Middleware<C> = (ctx: C, next: Next) => Promise<void> | void;

/**
 * Turns an error thrown by a step into the context's response.
 * @typeParam C the request context type
 */
export type ErrorHandler<C> = (err: unknown, ctx: C) => Promise<void> | void;

const done = Promise.resolve();

/**
 * Composes middleware into one function.
 * @param middleware run in order; the last one usually produces the response
 * @param onError turns an error thrown by a step into the response, right where it was thrown
 *   (the steps outside see a response, not an error); without it errors propagate to the caller
 * @returns a function running the whole chain for one context; it rejects only when there is
 *   no error handler or the handler itself throws
 * @throws {TypeError} (as a rejection) when a middleware calls `next()` more than once
 */
export function compose<C>(
  middleware: readonly Middleware<C>[],
  onError?: ErrorHandler<C>,
): (ctx: C) => Promise<void> {
  const chain = middleware.slice();
  return function composed(ctx: C): Promise<void> {
    let index = -1;
    function handle(err: unknown): Promise<void> {
      if (onError === undefined) return Promise.reject(err);
      try {
        return Promise.resolve(onError(err, ctx));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    function dispatch(i: number): Promise<void> {
      if (i <= index) return handle(new TypeError("next() called multiple times"));
      index = i;
      const mw = chain[i];
      if (mw === undefined) return done;
      // the promise of the rest of the chain: its errors were handled one step in already
      let inner: Promise<void> | undefined;
      try {
        const r = mw(ctx, () => inner = dispatch(i + 1));
        if (r === undefined) return done;
        // a step that returns `next()` as it is adds no promise of its own
        if (onError === undefined || r === inner) return Promise.resolve(r);
        return Promise.resolve(r).then(undefined, handle);
      } catch (err) {
        return handle(err);
      }
    }
    return dispatch(0);
  };
}
