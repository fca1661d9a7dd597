/**
 * @module
 * Where commands write: output for machines (the URL line, summaries, tables, JSON) goes to
 * stdout, messages for humans to stderr. Both writes are synchronous, so nothing is lost when
 * the process exits right after.
 */

import { ConfigError, type ConfigIssue } from "../config/errors.ts";
import { stderrSink } from "../logger.ts";

const encoder = new TextEncoder();

/**
 * Writes a line to stdout.
 * @param text the line (a newline is added)
 */
export function out(text: string): void {
  const bytes = encoder.encode(text + "\n");
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/**
 * Writes a message for humans to stderr.
 * @param text the message (a newline is added)
 */
export function say(text: string): void {
  stderrSink(text);
}

/**
 * Whether an address is a loopback one (reachable from this machine only).
 * @param host a bind address
 */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1" || host === "[::1]";
}

/**
 * Renders an error for people. A `ConfigError` lists each problem with its field path and line:
 * `Cannot load config "x.yaml": upstreams.a.weight (line 5): must be >= 0`, one problem per
 * line when there are several.
 * Another error keeps its message, prefixed with `action` unless it already says what failed
 * (starts with "Cannot"), as errors thrown by plugins may not.
 * @param err what was thrown
 * @param action what failed, e.g. `Cannot start with config "x.yaml"`
 * @returns the message
 */
export function describeError(err: unknown, action?: string): string {
  if (!(err instanceof ConfigError)) {
    const message = err instanceof Error ? err.message : String(err);
    return action === undefined || message.startsWith("Cannot ")
      ? message
      : `${action}: ${message}`;
  }
  const head = `Cannot load config "${err.source}"`;
  const each = err.issues.map((i) => {
    const where = i.path === ""
      ? (i.line === undefined ? "" : `line ${i.line}`)
      : i.line === undefined
      ? i.path
      : `${i.path} (line ${i.line})`;
    return where === "" ? i.message : `${where}: ${i.message}`;
  });
  if (each.length === 1) return `${head}: ${each[0]}`;
  return [`${head}: ${each.length} problems`, ...each.map((e) => `  ${e}`)].join("\n");
}

/** What `check --json` and `probe --json` print on stdout when the config cannot be used. */
export interface ErrorReport {
  valid: false;
  /** The config file, when known. */
  source: string | null;
  /** Every problem: field path (`""` for the file or the command line), line, message. */
  errors: ConfigIssue[];
}

/**
 * Turns an error into the JSON report of {@linkcode ErrorReport}.
 * @param err what was thrown: a `ConfigError` gives every problem with its path and line
 * @param source the config file, when the error does not say
 * @returns the report (pass it to `JSON.stringify`)
 */
export function errorReport(err: unknown, source?: string): ErrorReport {
  if (err instanceof ConfigError) {
    return {
      valid: false,
      source: err.source,
      errors: err.issues.map((i) => ({
        path: i.path,
        ...(i.line === undefined ? {} : { line: i.line }),
        message: i.message,
      })),
    };
  }
  return {
    valid: false,
    source: source ?? null,
    errors: [{ path: "", message: err instanceof Error ? err.message : String(err) }],
  };
}

/**
 * Reports a config that cannot be used: the message for people on stderr and, with `json`,
 * the {@linkcode ErrorReport} on stdout (so a program reading stdout always gets JSON).
 * @param err what was thrown
 * @param options whether to print JSON, what failed (see {@linkcode describeError}), the file
 */
export function reportFailure(
  err: unknown,
  options: { json: boolean; action?: string | undefined; source?: string | undefined },
): void {
  say(describeError(err, options.action));
  if (options.json) out(JSON.stringify(errorReport(err, options.source), null, 2));
}
