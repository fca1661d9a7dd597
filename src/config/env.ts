/**
 * @module
 * `${VAR}` and `${VAR:-default}` substitution over a parsed config tree (string values only),
 * and which references came out empty (to explain the problems they cause).
 */

import type { PathSegment, RawIssue } from "./errors.ts";

/** Reads one environment variable; `undefined` when it is not set. */
export type EnvLookup = (name: string) => string | undefined;

/** The substituted tree and the problems found on the way. */
export interface SubstituteResult {
  /** A copy of the tree with every reference replaced. */
  value: unknown;
  /** Missing variables and malformed references, with the path of the string holding them. */
  issues: RawIssue[];
}

const REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

/**
 * Expands the references in one string.
 * `${NAME}` is the variable's value (an error when it is not set; an empty value is kept);
 * `${NAME:-default}` is the value, or `default` when the variable is unset or empty;
 * `$${...}` is a literal `${...}`. A default cannot contain `}`.
 *
 * @param text the string to expand
 * @param env where variables are read
 * @returns the expanded string and the problems found (each a message without a path)
 */
export function expandEnv(text: string, env: EnvLookup): { value: string; problems: string[] } {
  const problems: string[] = [];
  let value = "";
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf("$", i);
    if (dollar < 0) {
      value += text.slice(i);
      break;
    }
    value += text.slice(i, dollar);
    if (text.startsWith("$${", dollar)) {
      value += "${";
      i = dollar + 3;
      continue;
    }
    if (!text.startsWith("${", dollar)) {
      value += "$";
      i = dollar + 1;
      continue;
    }
    const close = text.indexOf("}", dollar + 2);
    const match = close < 0 ? null : REFERENCE.exec(text.slice(dollar + 2, close));
    if (match === null || match[1] === undefined) {
      const shown = close < 0 ? text.slice(dollar) : text.slice(dollar, close + 1);
      problems.push(
        `invalid environment reference "${shown}" (write "$\${" for a literal "\${")`,
      );
      value += shown;
      i = close < 0 ? text.length : close + 1;
      continue;
    }
    const [, name, fallback] = match;
    const found = env(name);
    if (fallback !== undefined && (found === undefined || found === "")) value += fallback;
    else if (found !== undefined) value += found;
    else problems.push(`environment variable "${name}" is not set`);
    i = close + 1;
  }
  return { value, problems };
}

/**
 * The variables a string refers to without a default that are set but empty: where an empty
 * value most likely is a mistake (`keys: ${MODELSCOPE_KEYS}` with `MODELSCOPE_KEYS=`).
 *
 * @param text the string as written in the file
 * @param env where variables are read
 * @returns their names, in order of appearance, each once
 */
export function emptyVariables(text: string, env: EnvLookup): string[] {
  const names: string[] = [];
  for (const m of text.matchAll(/\$?\$\{([A-Za-z_][A-Za-z0-9_]*)(:-)?[^}]*\}/g)) {
    const [whole, name, fallback] = m;
    if (whole.startsWith("$$") || fallback !== undefined || name === undefined) continue;
    if (env(name) === "" && !names.includes(name)) names.push(name);
  }
  return names;
}

function walk(node: unknown, path: PathSegment[], env: EnvLookup, issues: RawIssue[]): unknown {
  if (typeof node === "string") {
    const { value, problems } = expandEnv(node, env);
    for (const message of problems) issues.push({ path: [...path], message });
    return value;
  }
  if (Array.isArray(node)) return node.map((item, i) => walk(item, [...path, i], env, issues));
  if (node !== null && typeof node === "object") {
    return Object.fromEntries(
      Object.entries(node).map(([key, item]) => [key, walk(item, [...path, key], env, issues)]),
    );
  }
  return node;
}

/**
 * Replaces `${VAR}` references in every string value of a parsed tree (mapping keys are left
 * alone). Runs after parsing, so a value can never change the file's structure.
 *
 * @param tree the parsed config (plain objects, arrays and scalars)
 * @param env where variables are read
 * @returns the new tree and one issue per missing variable or malformed reference, e.g.
 *   `upstreams.ms.keys[0]: environment variable "MODELSCOPE_KEY_1" is not set`
 */
export function substituteEnv(tree: unknown, env: EnvLookup): SubstituteResult {
  const issues: RawIssue[] = [];
  const value = walk(tree, [], env, issues);
  return { value, issues };
}
