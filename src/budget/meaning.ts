/**
 * @module
 * What an upstream's answer means for a key's budgets, beyond its status: a 429 is short-term
 * throttling or an exhausted quota (and then the model's or the whole key's), read from the
 * provider's budget headers before its wording; a 200 chat completion without choices is a
 * failure (ModelScope answers so under load), retried on another key.
 */

import type { AttemptClass } from "../health/classify.ts";
import { parseRetryAfter, retryAt } from "../health/retry_after.ts";

/** `Retry-After` alone (seconds or an HTTP date), as epoch ms. */
function retryAfterOnly(headers: Headers, now: number): number | undefined {
  const v = headers.get("retry-after");
  return v === null ? undefined : parseRetryAfter(v, now);
}
import type { ErrorAnswer } from "../proxy/attempt.ts";
import type { SpendScope } from "./book.ts";
import { emptyChoices, isExhaustionBody, type LearnedBudgets } from "./headers.ts";

/** What an error answer means: its class, a quota's scope, when the limit ends. */
export interface ErrorMeaning {
  cls: AttemptClass;
  /** For `quota`: the model's budget or the key's. */
  scope: SpendScope;
  /** When the provider says the limit ends, if it did (epoch ms). */
  resetAt: number | undefined;
}

/**
 * Reads a 429 (or 402) by what the provider's headers and body say.
 * - ModelScope's daily counts still showing calls left: throttling, whatever the body says;
 *   none left for the model while the account has some: the model's quota is exhausted; none
 *   left for the account: the key's.
 * - Short-window headers (OpenAI's, Anthropic's): a rate limit until their reset, unless the
 *   status and wording already said the quota or balance is gone (`insufficient_quota`).
 * - No headers: the body decides (ModelScope's "Request limit exceeded." is an exhaustion;
 *   with a model named, of that model, whose daily cap is the one hit first), else the class
 *   the status and wording gave.
 * @param cls the class from the status and wording (`rate_limited` or `quota`)
 * @param learned what the headers said, if anything
 * @param body the answer's body, as text
 * @param model the request's model
 * @param modelscope whether the upstream is ModelScope (whose `insufficient_quota` 429 is a
 *   short-term limit, as PROVIDERS.md records)
 * @returns the class and scope
 */
export function quotaMeaning(
  cls: AttemptClass,
  learned: LearnedBudgets | undefined,
  body: string,
  model: string | undefined,
  modelscope = false,
): ErrorMeaning {
  if (learned?.daily === true) {
    // ModelScope's counts of today's calls: they tell exhaustion from throttling
    const account = learned.requests;
    const perModel = learned.modelRequests;
    if (account !== undefined && account.remaining <= 0) {
      return { cls: "quota", scope: "key", resetAt: account.resetAt };
    }
    if (perModel !== undefined && perModel.remaining <= 0) {
      return {
        cls: "quota",
        scope: model === undefined ? "key" : "model",
        resetAt: perModel.resetAt,
      };
    }
    if (account !== undefined || perModel !== undefined) {
      return { cls: "rate_limited", scope: "key", resetAt: undefined };
    }
  } else if (learned !== undefined) {
    // a short window (OpenAI's, Anthropic's minute): a rate limit, unless the body says the
    // quota or balance itself is gone (OpenAI's insufficient_quota)
    if (cls === "quota") return { cls, scope: "key", resetAt: undefined };
    // the window that ran out says when it ends
    const tokens = learned.tokens;
    const empty = tokens !== undefined && tokens.remaining <= 0 ? tokens : learned.requests;
    return {
      cls: "rate_limited",
      scope: "key",
      resetAt: empty?.resetAt ?? learned.requests?.resetAt ?? tokens?.resetAt,
    };
  }
  if (isExhaustionBody(body)) {
    return { cls: "quota", scope: model === undefined ? "key" : "model", resetAt: undefined };
  }
  // ModelScope's `insufficient_quota` 429 is cleared by a short back-off: a rate limit there
  if (cls === "quota" && modelscope) {
    return { cls: "rate_limited", scope: "key", resetAt: undefined };
  }
  return { cls, scope: "key", resetAt: undefined };
}

const decoder = new TextDecoder();

/**
 * What an upstream's error answer means: a 429 or 402 read by {@linkcode quotaMeaning}; and when
 * the limit ends, by `Retry-After` first, else the provider's reset header.
 * @param answer the error answer (its class from the status and wording)
 * @param learned what its headers said of the key's budgets
 * @param model the request's model
 * @param now epoch ms
 * @param modelscope whether the upstream is ModelScope
 * @returns the class, the scope of a quota, and the reset time when one was said
 */
export function errorMeaning(
  answer: ErrorAnswer,
  learned: LearnedBudgets | undefined,
  model: string | undefined,
  now: number,
  modelscope = false,
): ErrorMeaning {
  const headers = answer.response.headers;
  const status = answer.response.status;
  if (status !== 429 && status !== 402) {
    return { cls: answer.cls, scope: "key", resetAt: retryAt(headers, now) };
  }
  const m = quotaMeaning(answer.cls, learned, decoder.decode(answer.body), model, modelscope);
  // an exhausted quota ends when the provider says in Retry-After, not when a short window's
  // reset header would (OpenAI's per-minute reset says nothing of a spent balance)
  const after = m.cls === "quota" ? retryAfterOnly(headers, now) : retryAt(headers, now);
  return after === undefined ? m : { ...m, resetAt: after };
}

/**
 * Whether a successful answer is in truth a failure: a chat completion whose `choices` is null
 * or empty (ModelScope under load), which no client can use.
 * @param path the request's path
 * @param body the answer's whole body, when it was read
 */
export function emptyAnswer(path: string, body: Uint8Array | undefined): boolean {
  return body !== undefined && body.length > 0 &&
    (path.endsWith("/chat/completions") || path.endsWith("/chat/completions/")) &&
    emptyChoices(body);
}
