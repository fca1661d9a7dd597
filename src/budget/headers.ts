/**
 * @module
 * What a provider's answer says about a key's budgets: the rate-limit headers of ModelScope
 * (daily calls for the account and for the model), OpenAI and Anthropic (short windows of
 * requests and tokens), read into one shape; and two body checks, ModelScope's "request limit
 * exceeded" 429 and the 200 whose `choices` is empty.
 */

import { parseDuration } from "../health/retry_after.ts";
import { findTopLevel, findTopLevelFields, stringOf } from "../proxy/json_scan.ts";

/** What is left of one budget in the provider's current window. */
export interface WindowBudget {
  /** Units (requests or tokens) left in the window. */
  remaining: number;
  /** Units the window allows in all. */
  limit: number;
  /** When the window resets, epoch ms; undefined when the provider does not say. */
  resetAt: number | undefined;
}

/** A key's budgets as one answer's headers describe them. */
export interface LearnedBudgets {
  /**
   * Requests left in the provider's window, all models together (ModelScope: today's calls;
   * OpenAI and Anthropic: the per-minute request window).
   */
  requests?: WindowBudget;
  /** Requests left for this model (ModelScope's per-model daily count). */
  modelRequests?: WindowBudget;
  /**
   * Tokens left in the provider's window (OpenAI's `x-ratelimit-*-tokens`; Anthropic's tokens,
   * input tokens and output tokens, whichever has the fewest left).
   */
  tokens?: WindowBudget;
  /** Which provider's headers these were. */
  source: "modelscope" | "openai" | "anthropic";
  /** Whether the window is a day (ModelScope) or short, per-minute style (the others). */
  daily: boolean;
}

const MS = "modelscope-ratelimit-";
const OPENAI = "x-ratelimit-";
const ANTHROPIC = "anthropic-ratelimit-";

/**
 * Reads a key's budgets from a provider's response headers. A provider is recognised by its
 * request count header (`modelscope-ratelimit-requests-remaining`,
 * `x-ratelimit-remaining-requests`, `anthropic-ratelimit-requests-remaining`), so an answer
 * without any costs three lookups; headers of the first provider recognised, in that order, are
 * read. A budget needs both its remaining and its limit as non-negative numbers; a malformed
 * value leaves the budget out, a malformed reset leaves only `resetAt` undefined. ModelScope
 * sends no reset: its windows are days, reset at a time the caller configures.
 * @param headers the response headers
 * @param now the current time, epoch ms (OpenAI's resets are durations from now)
 * @returns the budgets read, or undefined when no known header is present or none could be read
 */
export function learnedBudgets(headers: Headers, now: number): LearnedBudgets | undefined {
  const msRemaining = headers.get(`${MS}requests-remaining`);
  if (msRemaining !== null) {
    const found = modelScope(headers, msRemaining);
    if (found !== undefined) return found;
  }
  const openAiRemaining = headers.get(`${OPENAI}remaining-requests`);
  if (openAiRemaining !== null) {
    const found = openAi(headers, openAiRemaining, now);
    if (found !== undefined) return found;
  }
  const anthropicRemaining = headers.get(`${ANTHROPIC}requests-remaining`);
  if (anthropicRemaining !== null) return anthropic(headers, anthropicRemaining);
  return undefined;
}

function modelScope(headers: Headers, remaining: string): LearnedBudgets | undefined {
  const out: LearnedBudgets = { source: "modelscope", daily: true };
  const requests = budget(remaining, headers.get(`${MS}requests-limit`), undefined);
  if (requests !== undefined) out.requests = requests;
  const model = budget(
    headers.get(`${MS}model-requests-remaining`),
    headers.get(`${MS}model-requests-limit`),
    undefined,
  );
  if (model !== undefined) out.modelRequests = model;
  return requests === undefined && model === undefined ? undefined : out;
}

function openAi(headers: Headers, remaining: string, now: number): LearnedBudgets | undefined {
  const out: LearnedBudgets = { source: "openai", daily: false };
  const requests = budget(
    remaining,
    headers.get(`${OPENAI}limit-requests`),
    durationReset(headers.get(`${OPENAI}reset-requests`), now),
  );
  if (requests !== undefined) out.requests = requests;
  const tokens = budget(
    headers.get(`${OPENAI}remaining-tokens`),
    headers.get(`${OPENAI}limit-tokens`),
    durationReset(headers.get(`${OPENAI}reset-tokens`), now),
  );
  if (tokens !== undefined) out.tokens = tokens;
  return requests === undefined && tokens === undefined ? undefined : out;
}

function anthropic(headers: Headers, remaining: string): LearnedBudgets | undefined {
  const out: LearnedBudgets = { source: "anthropic", daily: false };
  const requests = budget(
    remaining,
    headers.get(`${ANTHROPIC}requests-limit`),
    dateReset(headers.get(`${ANTHROPIC}requests-reset`)),
  );
  if (requests !== undefined) out.requests = requests;
  let tokens: WindowBudget | undefined;
  for (const kind of ["tokens", "input-tokens", "output-tokens"]) {
    const b = budget(
      headers.get(`${ANTHROPIC}${kind}-remaining`),
      headers.get(`${ANTHROPIC}${kind}-limit`),
      dateReset(headers.get(`${ANTHROPIC}${kind}-reset`)),
    );
    if (b !== undefined && (tokens === undefined || b.remaining < tokens.remaining)) tokens = b;
  }
  if (tokens !== undefined) out.tokens = tokens;
  return requests === undefined && tokens === undefined ? undefined : out;
}

function budget(
  remaining: string | null,
  limit: string | null,
  resetAt: number | undefined,
): WindowBudget | undefined {
  const r = count(remaining);
  const l = count(limit);
  return r === undefined || l === undefined ? undefined : { remaining: r, limit: l, resetAt };
}

const COUNT = /^\s*\d+(\.\d+)?\s*$/;

/** A non-negative decimal number, or undefined (no sign, exponent, list or junk). */
function count(value: string | null): number | undefined {
  if (value === null || !COUNT.test(value)) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

function durationReset(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const ms = parseDuration(value);
  return ms === undefined ? undefined : now + ms;
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** An RFC 3339 date-time (`2026-03-08T07:00:30Z`), or undefined. */
function dateReset(value: string | null): number | undefined {
  if (value === null) return undefined;
  const v = value.trim().toUpperCase();
  if (!RFC3339.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

const EXHAUSTED = "request limit exceeded";

/**
 * Tells ModelScope's quota exhaustion 429 body, `{"errors":{"message":"Request limit
 * exceeded.","request_id":"..."}}` (any letter case; the OpenAI-style `error` member is read
 * too), from throttling and other errors such as `insufficient_quota`, which a short back-off
 * clears. ModelScope's headers say more where present: a 429 that still shows requests remaining
 * is throttling whatever its body says.
 * @param body the response body
 * @returns true when the body carries ModelScope's exhaustion message
 */
export function isExhaustionBody(body: string): boolean {
  const [errors, error] = findTopLevelFields(body, ["errors", "error"]);
  return hasExhaustedMessage(errors?.raw) || hasExhaustedMessage(error?.raw);
}

function hasExhaustedMessage(raw: string | undefined): boolean {
  if (raw === undefined || raw.charCodeAt(0) !== 123) return false;
  const message = stringOf(findTopLevel(raw, "message"));
  return message !== undefined && message.toLowerCase().includes(EXHAUSTED);
}

const decoder = new TextDecoder();
const EMPTY_ARRAY = /^\[\s*\]$/;
const MAYBE_EMPTY = /"choices"\s*:\s*(?:null|\[\s*\])/;

/**
 * Tells a chat completion whose top-level `choices` is `null` or `[]`: ModelScope's answer
 * under load, a 200 with nothing generated, which is a failed call. Reads only the top level in
 * one scan. Meant for whole JSON bodies, not event streams (whose last chunk may rightly carry
 * `"choices": []` with the usage).
 * @param body the response body, bytes or text
 * @returns true when `choices` is null or an empty array; false for other values, a missing
 *   `choices`, and text that is not a JSON object
 */
export function emptyChoices(body: Uint8Array | string): boolean {
  const text = typeof body === "string" ? body : decoder.decode(body);
  // most answers have choices: one native search rules them out before any parsing
  if (!MAYBE_EMPTY.test(text)) return false;
  // a cut-off body is not JSON, even if what came shows an empty `choices`
  let last = text.length - 1;
  while (last >= 0 && text.charCodeAt(last) <= 32) last--;
  if (text.charCodeAt(last) !== 125) return false;
  const choices = findTopLevelFields(text, ["choices"])[0];
  if (choices === undefined) return false;
  return choices.raw === "null" || EMPTY_ARRAY.test(choices.raw);
}
