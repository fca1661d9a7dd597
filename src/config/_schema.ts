/**
 * @module
 * Private helpers shared by the config formats: zod building blocks with readable messages,
 * zod issues turned into `RawIssue`s, and the context a format normalizer receives.
 */

import { z } from "zod";
import type { PathSegment, RawIssue } from "./errors.ts";

/** What a format normalizer needs besides the tree. */
export interface NormalizeContext {
  /** The file path or label, copied to `Config.source`. */
  source: string;
  /** Folder relative plugin paths are resolved against. */
  baseDir: string;
  /**
   * Keys of the mapping at a path in file order (plain objects list integer-like keys first).
   * @default the object's own key order
   */
  keyOrder?: (path: PathSegment[]) => string[] | undefined;
}

/** A normalizer's result: the value, or every problem found. */
export type Checked<T> = { ok: true; value: T } | { ok: false; issues: RawIssue[] };

/** A number written as a string, as the loader reads it (the JSON Schema says the same). */
export const NUMERIC = /^\s*-?(\d+(\.\d*)?|\.\d+)\s*$/;

/** Numbers written as strings (typically `${PORT}`) are read as numbers. */
function toNumber(value: unknown): unknown {
  return typeof value === "string" && NUMERIC.test(value) ? Number(value) : value;
}

/** `"true"` and `"false"` (typically from `${VAR}`) are read as booleans. */
function toBoolean(value: unknown): unknown {
  if (value === "true") return true;
  if (value === "false") return false;
  return value;
}

/** A finite number (numeric strings accepted). */
export function num(): z.ZodType<number> {
  return z.preprocess(toNumber, z.number());
}

/**
 * A number of at least `min` (numeric strings accepted).
 *
 * @param min smallest allowed value
 * @param exclusive whether `min` itself is refused
 * @default exclusive false
 */
export function atLeast(min: number, exclusive = false): z.ZodType<number> {
  const base = z.number();
  return z.preprocess(
    toNumber,
    exclusive ? base.gt(min, `must be > ${min}`) : base.gte(min, `must be >= ${min}`),
  );
}

/**
 * An integer in `[min, max]` (numeric strings accepted), with the message
 * `must be an integer from <min> to <max>` (or `must be an integer >= <min>` without `max`).
 */
export function intRange(min: number, max?: number): z.ZodType<number> {
  const message = max === undefined
    ? `must be an integer >= ${min}`
    : `must be an integer from ${min} to ${max}`;
  const base = z.int({ error: message }).gte(min, message);
  return z.preprocess(toNumber, max === undefined ? base : base.lte(max, message));
}

/** A boolean (`"true"`/`"false"` strings accepted). */
export function bool(): z.ZodType<boolean> {
  return z.preprocess(toBoolean, z.boolean());
}

/**
 * A duration in seconds, possibly fractional, turned into whole milliseconds.
 *
 * @param positive whether 0 is refused
 * @default positive false
 */
export function seconds(positive = false): z.ZodType<number, unknown> {
  return atLeast(0, positive).transform((s) => Math.round(s * 1000));
}

/**
 * A duration in seconds from `min` to `max` (numeric strings accepted), turned into whole
 * milliseconds, with the message `must be a number of seconds from <min> to <max>`.
 */
export function secondsRange(min: number, max: number): z.ZodType<number, unknown> {
  const message = `must be a number of seconds from ${min} to ${max}`;
  return z.preprocess(toNumber, z.number({ error: message }).gte(min, message).lte(max, message))
    .transform((s) => Math.round(s * 1000));
}

/** A non-empty string. */
export function text(): z.ZodType<string> {
  return z.string().min(1, "must not be empty");
}

/** Whether `value` parses as an absolute http or https URL (with no whitespace inside). */
export function isHttpUrl(value: string): boolean {
  if (/\s/.test(value) || !URL.canParse(value)) return false;
  const { protocol } = new URL(value);
  return protocol === "http:" || protocol === "https:";
}

/** An http(s) URL with its trailing slashes removed. */
export function httpUrl(): z.ZodType<string, unknown> {
  return z.string().trim().refine(isHttpUrl, "must be an http or https URL").transform((url) =>
    url.replace(/\/+$/, "")
  );
}

/** Edit distance counting a swap of two neighbours as one edit. */
function editDistance(a: string, b: string): number {
  let beforePrevious: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (beforePrevious[j - 2] ?? 0) + 1);
      }
      current[j] = best;
    }
    [beforePrevious, previous] = [previous, current];
  }
  return previous[b.length] ?? 0;
}

/**
 * The message for an unknown field, suggesting the closest known one.
 *
 * @param name the unknown field
 * @param known the fields allowed there
 */
export function unknownField(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3));
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance <= bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best === undefined ? "unknown field" : `unknown field (did you mean "${best}"?)`;
}

const TYPE_NAMES: Record<string, string> = {
  array: "a list",
  object: "a mapping",
  record: "a mapping",
  int: "an integer",
  number: "a number",
  boolean: "true or false",
  string: "a string",
};

function shapeKeys(inst: unknown): string[] {
  const def = (inst as { _zod?: { def?: { shape?: unknown } } } | undefined)?._zod?.def;
  const shape = def?.shape;
  return shape !== null && typeof shape === "object" ? Object.keys(shape) : [];
}

/** Separates the per-key messages of one `unrecognized_keys` issue. */
const KEY_SEPARATOR = "\u0000";

const errorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return "is required";
      return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    case "too_small":
      if (issue.origin === "array") return `must list at least ${issue.minimum}`;
      if (issue.origin === "string") return "must not be empty";
      return `must be ${issue.inclusive ? ">=" : ">"} ${issue.minimum}`;
    case "too_big":
      return `must be ${issue.inclusive ? "<=" : "<"} ${issue.maximum}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => `"${String(v)}"`).join(", ")}`;
    case "unrecognized_keys": {
      const known = shapeKeys(issue.inst);
      return issue.keys.map((key) => unknownField(key, known)).join(KEY_SEPARATOR);
    }
    case "invalid_union":
      return "has the wrong type";
    case "invalid_key":
      return issue.issues[0]?.message;
    default:
      return undefined;
  }
};

/**
 * Parses `input` with `schema`, turning zod's issues into `RawIssue`s with readable messages.
 *
 * @param schema the zod schema
 * @param input the tree to check
 * @returns the parsed value, or every issue found
 */
export function check<T>(schema: z.ZodType<T, unknown>, input: unknown): Checked<T> {
  const result = schema.safeParse(input, { error: errorMap });
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, issues: result.error.issues.flatMap((issue) => toRawIssues(issue, [])) };
}

/** Whether a union branch failed only because the value has another type. */
function wrongType(branch: readonly z.core.$ZodIssue[]): boolean {
  return branch.every((issue) => issue.code === "invalid_type" && issue.path.length === 0);
}

function toRawIssues(issue: z.core.$ZodIssue, prefix: PathSegment[]): RawIssue[] {
  const path = [
    ...prefix,
    ...issue.path.filter((s): s is PathSegment => typeof s === "string" || typeof s === "number"),
  ];
  if (issue.code === "unrecognized_keys") {
    const messages = issue.message.split(KEY_SEPARATOR);
    return issue.keys.map((key, i) => ({
      path: [...path, key],
      message: messages[i] ?? "unknown field",
    }));
  }
  if (issue.code === "invalid_union") {
    // When the value has the type of exactly one branch, that branch's issues say what is wrong.
    const matching = issue.errors.filter((branch) => !wrongType(branch));
    const [only] = matching;
    if (matching.length === 1 && only !== undefined) {
      return only.flatMap((inner) => toRawIssues(inner, path));
    }
  }
  return [{ path, message: issue.message }];
}

/**
 * The entries of a mapping in file order.
 *
 * @param record the parsed mapping
 * @param path where it sits in the tree
 * @param context supplies the file order
 */
export function entriesInOrder<V>(
  record: Record<string, V>,
  path: PathSegment[],
  context: NormalizeContext,
): [string, V][] {
  const entries = Object.entries(record);
  const order = context.keyOrder?.(path);
  if (order === undefined) return entries;
  const rank = (key: string) => {
    const i = order.indexOf(key);
    return i < 0 ? order.length : i;
  };
  return entries.sort(([a], [b]) => rank(a) - rank(b));
}

/**
 * Finds repeated values; empty strings are skipped.
 *
 * @param values the list to scan
 * @returns for each repeat, its index and the index of its first occurrence
 */
export function duplicates(values: readonly string[]): { index: number; first: number }[] {
  const seen = new Map<string, number>();
  const found: { index: number; first: number }[] = [];
  values.forEach((value, index) => {
    if (value === "") return;
    const first = seen.get(value);
    if (first === undefined) seen.set(value, index);
    else found.push({ index, first });
  });
  return found;
}

const LIST_SEPARATOR = /[\s,]+/;

/** Splits `"a, b c"` into `["a", "b", "c"]`, dropping empty parts. */
export function splitList(value: string): string[] {
  return value.split(LIST_SEPARATOR).filter((part) => part !== "");
}

/**
 * Splits a key list written as one string (typically `${VAR}`) like {@linkcode splitList}; a
 * string that holds no key gives one empty key, so that the list counts as set but empty (an
 * error), unlike an explicit `[]`.
 *
 * @param value e.g. `"k1, k2"`, or `""` from a variable set but empty
 * @returns the keys, or `[""]`
 */
export function splitKeyList(value: string): string[] {
  const keys = splitList(value);
  return keys.length > 0 ? keys : [""];
}

/**
 * Reports each repeated value by index only, so secrets never appear in messages.
 *
 * @param values the list, in file order
 * @param ctx the zod refinement context of the list
 * @param what what the values are, e.g. `key`
 */
export function reportDuplicates(values: string[], ctx: z.RefinementCtx, what: string): void {
  for (const { index, first } of duplicates(values)) {
    ctx.addIssue({
      code: "custom",
      message: `duplicate ${what} (same as [${first}])`,
      path: [index],
    });
  }
}
