/**
 * @module
 * Structured logging: one line per event on stderr, JSON lines or human-readable. The only
 * module that writes to the console. Known secrets are redacted from every line as a last line
 * of defence (callers already log masks only).
 */

import { SecretScanner } from "./secrets.ts";
import type { LogLevel } from "./config/types.ts";

/** Fields of one log line. */
export type LogFields = Record<string, unknown>;

/**
 * A whole line as one flat record: `time` (from {@linkcode Logger.timeText}), `level` and
 * `msg` first, then the fields (members whose value is `undefined` are left out). Serialized in
 * one step, with no text joined: the form of the line written on every request.
 */
export interface LogRecord {
  time: string;
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Where finished lines go. */
export type LogSink = (line: string) => void;

/**
 * Told of every line logged at info, warn or error through {@linkcode Logger.info},
 * {@linkcode Logger.warn} or {@linkcode Logger.error}, whatever the level in force (not the
 * per-request line): the message and fields as given, before redaction, so a listener that
 * keeps text must pass it through {@linkcode Logger.redact}.
 */
export type LogListener = (
  level: "info" | "warn" | "error",
  msg: string,
  fields: LogFields | undefined,
) => void;

/** Options of {@linkcode Logger}. */
export interface LoggerOptions {
  /** @default "info" */
  level?: LogLevel;
  /** @default "json" */
  format?: "json" | "pretty";
  /** @default batched writes to stderr ({@linkcode batchedStderrSink}) */
  sink?: LogSink;
  /** @default Date.now */
  now?: () => number;
}

const encoder = new TextEncoder();
/** Shorter keys (test keys like `k1`) are not scrubbed from text. */
const MIN_SECRET_LENGTH = 6;
const BARE = /^[^\s"=]+$/;

/** Writes a line to stderr at once, synchronously (for messages before exiting). */
export function stderrSink(line: string): void {
  flushStderr();
  writeAll(encoder.encode(line + "\n"));
}

function writeAll(bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
}

/** Lines waiting for stderr, already encoded (`encodeInto` a reused buffer: no copy per line). */
const pending = new Uint8Array(64 * 1024);
let pendingSize = 0;
/** Flushes every {@linkcode FLUSH_MS} while lines come; stops at the first tick with none. */
let flusher: ReturnType<typeof setInterval> | undefined;
const FLUSH_MS = 10;

/** Writes every line {@linkcode batchedStderrSink} still holds; safe to call any time. */
export function flushStderr(): void {
  if (pendingSize === 0) return;
  const size = pendingSize;
  pendingSize = 0;
  writeAll(pending.subarray(0, size));
}

function tick(): void {
  if (pendingSize === 0) {
    clearInterval(flusher);
    flusher = undefined;
  } else flushStderr();
}

/**
 * Queues a line for stderr: lines written within 10 ms (or up to 64 KiB) go out in one
 * write, so a busy proxy does not pay a system call per request. One interval timer runs
 * while lines keep coming (not a timer per batch). Flushed on exit.
 */
export function batchedStderrSink(line: string): void {
  // at most 3 bytes per UTF-16 unit, and the newline: a line that may not fit is written after
  // what is queued
  const most = line.length * 3 + 1;
  if (most > pending.length - pendingSize) {
    flushStderr();
    if (most > pending.length) {
      writeAll(encoder.encode(line + "\n"));
      return;
    }
  }
  // the newline is written as a byte: `line + "\n"` would make a new string to flatten
  pendingSize += encoder.encodeInto(line, pending.subarray(pendingSize)).written;
  pending[pendingSize++] = 10;
  flusher ??= setInterval(tick, FLUSH_MS);
}

globalThis.addEventListener("unload", flushStderr);

/** A leveled structured logger. */
export class Logger {
  #min: number;
  #format: "json" | "pretty";
  #sink: LogSink;
  #now: () => number;
  #secrets: SecretScanner | undefined;
  #listeners: LogListener[] = [];

  /** @param options level, format, sink and clock */
  constructor(options: LoggerOptions = {}) {
    this.#min = LEVELS[options.level ?? "info"];
    this.#format = options.format ?? "json";
    this.#sink = options.sink ?? batchedStderrSink;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Sets the secrets to scrub from every line (replaced by their masks): whole, JSON-escaped,
   * URL-encoded, or any 12 characters of one in a row (see {@linkcode SecretScanner}); secrets
   * shorter than 6 characters are left alone.
   * @param secrets secret → mask
   */
  setSecrets(secrets: ReadonlyMap<string, string>): void {
    const masks = new Map<string, string>();
    for (const [key, mask] of secrets) {
      // a key this short is no secret worth hiding, and masking it would garble other words;
      // the scanner finds the others however escaped or encoded, and any 12 characters in a row
      if (key.length >= MIN_SECRET_LENGTH) masks.set(key, mask);
    }
    this.#secrets = masks.size === 0 ? undefined : new SecretScanner(masks);
  }
  /**
   * Changes the level at run time (hot reload).
   * @param level the new minimum level
   */
  setLevel(level: LogLevel): void {
    this.#min = LEVELS[level];
  }

  /**
   * Changes the line format at run time (hot reload).
   * @param format JSON lines or human-readable
   */
  setFormat(format: "json" | "pretty"): void {
    this.#format = format;
  }

  /** @returns whether lines of this level are written */
  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.#min;
  }

  /** Logs at debug level. */
  debug(msg: string, fields?: LogFields): void {
    if (LEVELS.debug >= this.#min) this.#write("debug", msg, fields);
  }

  /** Logs at info level. */
  info(msg: string, fields?: LogFields): void {
    if (this.#listeners.length > 0) this.#tell("info", msg, fields);
    if (LEVELS.info >= this.#min) this.#write("info", msg, fields);
  }

  /** Logs at warn level. */
  warn(msg: string, fields?: LogFields): void {
    if (this.#listeners.length > 0) this.#tell("warn", msg, fields);
    if (LEVELS.warn >= this.#min) this.#write("warn", msg, fields);
  }

  /** Logs at error level. */
  error(msg: string, fields?: LogFields): void {
    if (this.#listeners.length > 0) this.#tell("error", msg, fields);
    if (LEVELS.error >= this.#min) this.#write("error", msg, fields);
  }

  /**
   * Adds a listener told of every info, warn and error line (see {@linkcode LogListener}).
   * @param listener called synchronously; what it throws is ignored
   * @returns a function that removes it
   */
  listen(listener: LogListener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  #tell(level: "info" | "warn" | "error", msg: string, fields: LogFields | undefined): void {
    for (const l of this.#listeners) {
      try {
        l(level, msg, fields);
      } catch {
        // a listener never breaks logging
      }
    }
  }

  /**
   * Logs a line given as one record whose string values the caller has already passed through
   * {@linkcode Logger.redact} where they could hold outside text: the line is not scanned again
   * (the per-request line uses this; scanning only its few outside values costs a fraction).
   * @param record the whole line, its level and time included
   */
  scrubbedRecord(record: LogRecord): void {
    if (LEVELS[record.level] < this.#min) return;
    if (this.#format === "json") {
      this.#sink(JSON.stringify(record));
      return;
    }
    const { time: _time, level, msg, ...fields } = record;
    this.#write(level, msg, fields, true);
  }

  /**
   * Removes known secrets from a string.
   * @param text any text that might hold a key (error messages, URLs)
   * @returns the text with every known secret replaced by its mask
   */
  redact(text: string): string {
    return this.#secrets === undefined ? text : this.#secrets.redact(text);
  }

  #lastMs = -1;
  #lastIso = "";

  /** @returns the time as ISO text, as lines show it (computed once per millisecond) */
  timeText(): string {
    const ms = this.#now();
    if (ms !== this.#lastMs) {
      this.#lastMs = ms;
      this.#lastIso = new Date(ms).toISOString();
    }
    return this.#lastIso;
  }

  #write(
    level: LogLevel,
    msg: string,
    fields: LogFields | undefined,
    scrubbed = false,
  ): void {
    const time = this.timeText();
    let line: string;
    if (this.#format === "json") {
      // the fields are serialized as given (no copy, no replacer): errors become messages first
      let clean = fields;
      // a scrubbed line's fields are plain values (no errors to turn into messages)
      if (fields && !scrubbed) {
        for (const k in fields) {
          if (fields[k] instanceof Error) {
            clean = {};
            for (const j in fields) {
              const v = fields[j];
              clean[j] = v instanceof Error ? v.message : v;
            }
            break;
          }
        }
      }
      const head = `{"time":"${time}","level":"${level}","msg":${JSON.stringify(msg)}`;
      const rest = clean === undefined ? "{}" : JSON.stringify(clean);
      line = rest.length > 2 ? `${head},${rest.slice(1)}` : `${head}}`;
    } else {
      let rest = "";
      if (fields) {
        for (const k in fields) {
          const v = fields[k];
          if (v === undefined) continue;
          // bare words stay bare; anything with spaces, quotes or line breaks is quoted
          rest += ` ${k}=${
            typeof v === "string" && BARE.test(v) ? v : JSON.stringify(v, replacer)
          }`;
        }
      }
      line = `${time} ${level.toUpperCase().padEnd(5)} ${msg.replace(/[\r\n]+/g, " ")}${rest}`;
    }
    this.#sink(scrubbed ? line : this.redact(line));
  }
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return value.message;
  return value;
}

/**
 * Picks the output format: `auto` is pretty on a terminal, JSON otherwise.
 * @param format the configured format
 * @returns the concrete format
 */
export function resolveFormat(format: "auto" | "json" | "pretty"): "json" | "pretty" {
  if (format !== "auto") return format;
  try {
    return Deno.stderr.isTerminal() ? "pretty" : "json";
  } catch {
    return "json";
  }
}
