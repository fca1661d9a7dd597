/**
 * @module
 * The last state changes, for the dashboard: rests, ejections, restorations, spent and out of
 * quota, operator actions, probe verdicts, shared state up and down. Fed by a listener on the
 * logger (the health board and the leases log each change once, with the key's mask), kept in a
 * ring of the last 50; the per-request lines are left out. Every text kept is redacted.
 */

import type { DashboardEvent } from "./dashboard_types.ts";
import type { LogFields, LogListener } from "../logger.ts";

/** How many events are kept. */
export const EVENTS_KEPT = 50;

/** Lines written for single requests or attempts, not for a change of state. */
const PER_REQUEST: ReadonlySet<string> = new Set([
  "request",
  "upstream attempt failed",
  "upstream broke mid-response",
  // per request too, and a client can cause them at will: they would push state changes out
  "a key was masked in a response to a client",
  "strategy failed; fell back to round_robin",
  "strategy done() hook failed",
]);

/** Options of {@linkcode EventLog}. */
export interface EventLogOptions {
  /** Wall-clock time, epoch ms. @default Date.now */
  now?: () => number;
  /** Removes known secrets from a text (the logger's `redact`). @default none */
  redact?: (text: string) => string;
  /** How many events are kept. @default 50 */
  size?: number;
}

/** The last state changes, newest first. */
export class EventLog {
  readonly #now: () => number;
  readonly #redact: (text: string) => string;
  readonly #size: number;
  /** Oldest first; at most `size`. */
  #events: DashboardEvent[] = [];

  /** @param options clock, redaction and size */
  constructor(options: EventLogOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#redact = options.redact ?? ((t) => t);
    this.#size = options.size ?? EVENTS_KEPT;
  }

  /** The listener to give the logger's `listen`. */
  readonly listener: LogListener = (level, msg, fields) => this.add(level, msg, fields);

  /**
   * Keeps one logged line as an event, unless it is about a single request.
   * @param level the line's level
   * @param msg its message
   * @param fields its fields: `upstream` and `key` (a mask) name the key; `reason`, `for_ms`,
   *   `model`, `last_error` and `error` add to the message
   */
  add(level: DashboardEvent["level"], msg: string, fields?: LogFields): void {
    if (PER_REQUEST.has(msg)) return;
    const text = (v: unknown) => typeof v === "string" && v !== "" ? this.#redact(v) : null;
    const event: DashboardEvent = {
      at_ms: this.#now(),
      level,
      message: this.#redact(describe(msg, fields)),
      upstream: text(fields?.upstream),
      key: text(fields?.key),
    };
    this.#events.push(event);
    if (this.#events.length > this.#size) this.#events.shift();
  }

  /** @returns the events kept, newest first (copies) */
  recent(): DashboardEvent[] {
    const out: DashboardEvent[] = [];
    for (let i = this.#events.length - 1; i >= 0; i--) out.push({ ...this.#events[i]! });
    return out;
  }
}

/** The message with what its fields add: `candidate ejected for 30 s (last error: server)`. */
function describe(msg: string, fields: LogFields | undefined): string {
  if (fields === undefined) return msg;
  let out = msg;
  const { reason, for_ms: forMs, model, last_error: lastError, error } = fields;
  // `key resting: <why>` already says its reason (the field is a code)
  if (typeof reason === "string" && reason !== "" && !msg.includes(":")) out += `: ${reason}`;
  if (typeof model === "string" && model !== "") out += ` (model ${model})`;
  if (typeof forMs === "number") out += ` for ${Math.round(forMs / 1000)} s`;
  if (typeof lastError === "string" && lastError !== "" && msg.includes("ejected")) {
    out += ` (last error: ${lastError})`;
  }
  if (typeof error === "string" && error !== "") out += `: ${error}`;
  return out;
}
