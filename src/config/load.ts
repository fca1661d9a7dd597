/**
 * @module
 * Reads a config file in any accepted format (native, Seed A JSON, Seed B YAML), substitutes
 * `${VAR}` references and returns the normalized `Config`, or throws one `ConfigError` listing
 * every problem with its line.
 */

import { dirname, resolve } from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document, Node } from "yaml";
import type { Checked, NormalizeContext } from "./_schema.ts";
import {
  ConfigError,
  type ConfigIssue,
  formatPath,
  type PathSegment,
  type RawIssue,
} from "./errors.ts";
import { emptyVariables, type EnvLookup, substituteEnv } from "./env.ts";
import { normalizeNative } from "./native.ts";
import { normalizeModelscopeBalanceJson } from "./modelscope_balance_json.ts";
import { normalizeOneApiYaml } from "./one_api_yaml.ts";
import type { Config } from "./types.ts";

/** Options of `parseConfigText`. */
export interface ParseOptions {
  /** Reads environment variables for `${VAR}`. @default (name) => Deno.env.get(name) */
  env?: EnvLookup;
}

/** Options of `loadConfig`. */
export interface LoadOptions extends ParseOptions {
  /** Reads the file. @default Deno.readTextFile */
  readTextFile?: (path: string) => Promise<string>;
}

const SEED_A_FIELDS = ["api_keys", "target_url", "server_port"];

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * Tells which format a parsed file is in: a JSON file with `api_keys`, `target_url` or
 * `server_port` is Seed A; a file with top-level `models` and no `upstreams` is Seed B; anything
 * else is native.
 *
 * @param tree the parsed file
 * @param json whether the file is JSON (a `.json` name, or text starting with `{`)
 */
export function detectFormat(tree: unknown, json: boolean): Config["format"] {
  if (!isRecord(tree)) return "native";
  if (json && SEED_A_FIELDS.some((field) => field in tree)) return "seed-a";
  if ("models" in tree && !("upstreams" in tree)) return "seed-b";
  return "native";
}

/** Removes mapping entries whose value is null (`key:` with nothing after it means unset). */
function dropNulls(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(dropNulls);
  if (!isRecord(node)) return node;
  return Object.fromEntries(
    Object.entries(node).filter(([, v]) => v !== null).map(([k, v]) => [k, dropNulls(v)]),
  );
}

/** Follows `path` through the document; returns the deepest node found and its line. */
function locate(doc: Document, counter: LineCounter, path: readonly PathSegment[]) {
  const lineAt = (node: unknown) => {
    const range = (node as Node | null)?.range;
    return range ? counter.linePos(range[0]).line : undefined;
  };
  let node: unknown = doc.contents;
  let line = lineAt(node);
  let depth = 0;
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(doc);
    let next: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) =>
        String(isScalar(p.key) ? p.key.value : p.key) === String(segment)
      );
      if (pair === undefined) break;
      line = lineAt(pair.key) ?? line;
      next = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      next = node.items[segment];
      if (next === undefined) break;
      line = lineAt(next) ?? line;
    } else break;
    node = next;
    depth++;
  }
  if (isAlias(node)) node = node.resolve(doc);
  return { node, line, complete: depth === path.length };
}

function keyOrder(doc: Document, counter: LineCounter) {
  return (path: PathSegment[]): string[] | undefined => {
    const { node, complete } = locate(doc, counter, path);
    if (!complete || !isMap(node)) return undefined;
    return node.items.map((p) => String(isScalar(p.key) ? p.key.value : p.key));
  };
}

function startsWith(path: readonly PathSegment[], prefix: readonly PathSegment[]): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => s === path[i]);
}

function parseMessage(message: string, json: boolean): string {
  const text = message.replace(/ at line \d+, column \d+:[\s\S]*$/, "").trim();
  return `invalid ${json ? "JSON" : "YAML"}: ${text.charAt(0).toLowerCase()}${text.slice(1)}`;
}

/**
 * JSON's own syntax error, when it names a position (messages quoting the text are not used:
 * the text may hold secrets).
 */
function jsonSyntaxError(text: string): ConfigIssue[] | undefined {
  try {
    JSON.parse(text);
  } catch (error) {
    const found = /^(.*) in JSON at position \d+ \(line (\d+) column \d+\)$/.exec(
      error instanceof Error ? error.message : "",
    );
    if (found?.[1] !== undefined && found[2] !== undefined) {
      const message = `${found[1].charAt(0).toLowerCase()}${found[1].slice(1)}`;
      return [{ path: "", message: `invalid JSON: ${message}`, line: Number(found[2]) }];
    }
  }
  return undefined;
}

/**
 * Parses config text in any accepted format and normalizes it. Pure apart from reading
 * environment variables through `options.env`.
 *
 * @param text the file's content
 * @param source the file path (relative plugin paths are resolved against its folder) or a label
 * @param options where environment variables are read
 * @returns the normalized config
 * @throws {ConfigError} listing every problem, each with its path and line
 */
export function parseConfigText(text: string, source: string, options?: ParseOptions): Config {
  const env = options?.env ?? ((name: string) => Deno.env.get(name));
  const json = /\.json$/i.test(source) || text.trimStart().startsWith("{");
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, merge: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      (json ? jsonSyntaxError(text) : undefined) ?? doc.errors.map((e) => ({
        path: "",
        message: parseMessage(e.message, json),
        ...(e.linePos ? { line: e.linePos[0].line } : {}),
      })),
    );
  }
  let tree: unknown;
  try {
    tree = dropNulls(doc.toJS() ?? {});
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new ConfigError(source, [{ path: "", message: parseMessage(message, json) }]);
  }
  if (!isRecord(tree)) {
    throw new ConfigError(source, [{ path: "", message: "must be a mapping at the top level" }]);
  }
  const substituted = substituteEnv(tree, env);
  const context: NormalizeContext = {
    source,
    baseDir: dirname(resolve(source)),
    keyOrder: keyOrder(doc, counter),
  };
  const normalize = {
    "native": normalizeNative,
    "seed-a": normalizeModelscopeBalanceJson,
    "seed-b": normalizeOneApiYaml,
  }[detectFormat(tree, json)];
  const result: Checked<Config> = normalize(substituted.value, context);
  // A missing variable leaves a broken value behind: report the variable, not the value (nor
  // the list it left without items)
  const envPaths = substituted.issues.map((i) => i.path);
  const caused = (path: PathSegment[]) =>
    envPaths.some((p) =>
      startsWith(path, p) ||
      (p.length === path.length + 1 && startsWith(p, path) && Array.isArray(valueAt(tree, path)))
    );
  const issues: RawIssue[] = [
    ...substituted.issues,
    ...(result.ok ? [] : result.issues.filter((i) => !caused(i.path)))
      .map((i) => explainEmpty(i, tree, env)),
  ];
  if (issues.length === 0 && result.ok) return result.value;
  const located: ConfigIssue[] = issues.map((issue) => {
    const line = issue.line ?? locate(doc, counter, issue.path).line;
    return { path: formatPath(issue.path), message: issue.message, ...(line ? { line } : {}) };
  });
  const rank = (issue: ConfigIssue) => issue.line ?? Number.MAX_SAFE_INTEGER;
  located.sort((a, b) => rank(a) - rank(b));
  throw new ConfigError(source, located);
}

/** The value at `path` in a parsed tree, or undefined. */
function valueAt(tree: unknown, path: readonly PathSegment[]): unknown {
  let node = tree;
  for (const segment of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return node;
}

/**
 * Adds to a problem the variables its value came from that are set but empty, e.g.
 * `must list at least one key (MODELSCOPE_KEYS is set but empty)`.
 */
function explainEmpty(issue: RawIssue, tree: unknown, env: EnvLookup): RawIssue {
  const value = valueAt(tree, issue.path);
  const texts = typeof value === "string"
    ? [value]
    : Array.isArray(value)
    ? value.filter((v): v is string => typeof v === "string")
    : [];
  const names = [...new Set(texts.flatMap((t) => emptyVariables(t, env)))];
  if (names.length === 0) return issue;
  const which = names.map((n) => `$${n}`).join(", ");
  const verb = names.length === 1 ? "is" : "are";
  return { ...issue, message: `${issue.message} (${which} ${verb} set but empty)` };
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound ||
    (error as { code?: unknown } | null)?.code === "ENOENT";
}

/**
 * Reads and parses a config file. A missing file is an error, never a silent fallback.
 *
 * @param path the file to read
 * @param options where the file and environment variables are read
 * @returns the normalized config
 * @throws {ConfigError} `Cannot load config "x.yaml": file not found`, or every problem found
 */
export async function loadConfig(path: string, options?: LoadOptions): Promise<Config> {
  const read = options?.readTextFile ?? ((p: string) => Deno.readTextFile(p));
  let text: string;
  try {
    text = await read(path);
  } catch (error) {
    const message = isNotFound(error)
      ? "file not found"
      : `cannot read file: ${error instanceof Error ? error.message : String(error)}`;
    throw new ConfigError(path, [{ path: "", message }]);
  }
  return parseConfigText(text, path, options);
}
