/**
 * @module
 * `llm-balance status`: the dashboard's picture in a terminal. Reads `GET <url>/dashboard/data`
 * (see `src/admin/dashboard_types.ts`) with the admin key and prints a header, one line per pool,
 * the keys grouped by pool (state, countdown, counts, budgets) and the last events; `--json`
 * prints the data itself, `--watch` redraws until SIGINT or SIGTERM. Exit 0 when every pool can
 * serve, 1 when some cannot or when the state cannot be read (unreachable, refused, bad answer).
 * This file holds the command and the `--watch` loop; the reading is in `status_read.ts`, the
 * drawing in `status_view.ts`.
 */

import type { DashboardPool } from "../admin/dashboard_types.ts";
import type { Config } from "../config/types.ts";
import { say } from "./_io.ts";
import { readDashboard, statusUrl } from "./status_read.ts";
import { formatStatus, shown } from "./status_view.ts";

/** Re-exported for the command line: the config `status` takes its URL and admin key from. */
export { optionalConfig } from "./status_read.ts";

/** What `status` shows and where it reads it. */
export interface StatusOptions {
  /** The loaded config: its `server.host`/`server.port` and admin key; undefined without one. */
  config?: Config | undefined;
  /** `--url`: the llm-balance to read. @default from the config, else `http://127.0.0.1:8080` */
  url?: string | undefined;
  /** `--json`: print the data as received. @default false */
  json?: boolean | undefined;
  /** `--watch`: redraw until SIGINT or SIGTERM. @default false */
  watch?: boolean | undefined;
  /** `--interval S`: seconds between frames of `--watch`. @default 2 */
  intervalS?: number | undefined;
  /** `--all`: list every key, even in pools of many keys. @default false */
  all?: boolean | undefined;
}

/** Where `status` reads and writes; every field defaults to the real thing. */
export interface StatusIo {
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Reads environment variables (`LLM_BALANCE_ADMIN_KEY`, `NO_COLOR`). @default Deno.env.get */
  env?: (name: string) => string | undefined;
  /** Wall-clock epoch ms (frame pacing and the separator's time). @default Date.now */
  now?: () => number;
  /** Waits between frames; resolves early when `signal` aborts. @default a timer */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Writes to stdout as is. @default a synchronous write to Deno.stdout */
  write?: (text: string) => void;
  /** Writes a message line to stderr. @default say */
  say?: (text: string) => void;
  /** Whether stdout is a terminal (colors, clearing). @default Deno.stdout.isTerminal() */
  isTerminal?: boolean;
  /** Width to fit. @default the terminal's width on a terminal, else 100 */
  columns?: number;
  /** Stops `--watch`. @default aborts on SIGINT or SIGTERM */
  signal?: AbortSignal;
  /** The longest wait for an answer, in ms. @default 10000 */
  timeoutMs?: number;
}

/** Moves home and clears the screen and the scrollback: the start of a frame on a terminal. */
const CLEAR = "\x1b[H\x1b[2J\x1b[3J";

function writeStdout(text: string): void {
  const bytes = new TextEncoder().encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** An abort signal raised by SIGINT or SIGTERM, and what removes the listeners. */
function onSignals(): { signal: AbortSignal; remove: () => void } {
  const ctl = new AbortController();
  const stop = () => ctl.abort();
  const added: Deno.Signal[] = [];
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, stop);
      added.push(sig);
    } catch {
      // not on this platform (SIGTERM on Windows)
    }
  }
  return {
    signal: ctl.signal,
    remove: () => added.forEach((sig) => Deno.removeSignalListener(sig, stop)),
  };
}

/**
 * Runs `status`: reads the dashboard data once (or every `intervalS` with `watch`) and prints it.
 * The admin key is `LLM_BALANCE_ADMIN_KEY`, else the config's; it is only ever sent, never shown.
 * @param options the config, the URL, `--json`, `--watch`, `--interval`, `--all`
 * @param io injected fetch, clock, environment, writers, terminal, stop signal
 * @returns 0 when every pool can serve, 1 when some cannot or the state cannot be read (the
 *   last frame's answer with `watch`), 2 for a bad `--url` or `--interval`
 */
export async function status(options: StatusOptions, io: StatusIo = {}): Promise<number> {
  const env = io.env ?? ((n: string) => Deno.env.get(n));
  const write = io.write ?? writeStdout;
  const tell = io.say ?? say;
  const now = io.now ?? Date.now;
  const tty = io.isTerminal ?? Deno.stdout.isTerminal();
  const url = statusUrl(options);
  if (!/^https?:\/\/[^/]/i.test(url) || !URL.canParse(url)) {
    tell(`llm-balance: --url must be an http:// or https:// URL, got "${shown(url)}"`);
    return 2;
  }
  const intervalMs = (options.intervalS ?? 2) * 1000;
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
    tell(`llm-balance: --interval must be a number of seconds above 0, got "${options.intervalS}"`);
    return 2;
  }
  const envKey = env("LLM_BALANCE_ADMIN_KEY")?.trim();
  // the config's own key goes only to the instance that config describes: a --url naming
  // another address gets only LLM_BALANCE_ADMIN_KEY
  const ownUrl = options.config === undefined ? undefined : statusUrl({ config: options.config });
  const configKey = options.config !== undefined && sameOrigin(url, ownUrl)
    ? options.config.adminKey ?? options.config.clientKeys[0]?.key
    : undefined;
  const adminKey = envKey !== undefined && envKey !== "" ? envKey : configKey;
  const noColor = env("NO_COLOR");
  const color = tty && (noColor === undefined || noColor === "");
  let columns = io.columns ?? 100;
  if (io.columns === undefined && tty) {
    try {
      columns = Math.min(200, Math.max(60, Deno.consoleSize().columns));
    } catch {
      // not a console after all
    }
  }
  const watch = options.watch ?? false;
  const stopper = io.signal === undefined && watch ? onSignals() : undefined;
  const signal = io.signal ?? stopper?.signal;
  const sleep = io.sleep ?? sleepFor;

  const frame = async (first: boolean): Promise<number | undefined> => {
    const read = await readDashboard(url, {
      adminKey,
      ...(io.fetch === undefined ? {} : { fetch: io.fetch }),
      ...(signal === undefined ? {} : { signal }),
      ...(io.timeoutMs === undefined ? {} : { timeoutMs: io.timeoutMs }),
    });
    if (!read.ok && signal?.aborted) return undefined;
    if (watch && !options.json) {
      if (tty) write(CLEAR);
      else if (!first) write(`--- ${new Date(now()).toISOString()}\n`);
    }
    if (!read.ok) {
      tell(`llm-balance: ${read.message}`);
      return 1;
    }
    const { data } = read;
    if (options.json) write(JSON.stringify(read.raw, null, watch ? undefined : 2) + "\n");
    else write(formatStatus(data, { url, color, columns, all: options.all ?? false }));
    if (watch && tty && !options.json) {
      write(`\nevery ${intervalMs / 1000} s; Ctrl-C to stop\n`);
    }
    if (!data.ok && !watch) {
      const stuck = data.pools.filter((p: DashboardPool) => p.usable === 0);
      tell(`llm-balance: ${stuck.length} of ${data.pools.length} pool(s) cannot serve`);
    }
    return data.ok ? 0 : 1;
  };

  try {
    if (!watch) return (await frame(true)) ?? 1;
    let code = 1;
    for (let first = true; signal?.aborted !== true; first = false) {
      const started = now();
      const result = await frame(first);
      if (result === undefined) break;
      code = result;
      await sleep(Math.max(0, intervalMs - (now() - started)), signal!);
    }
    return code;
  } finally {
    stopper?.remove();
  }
}

/** Whether two URLs name the same scheme, host and port. */
function sameOrigin(a: string, b: string | undefined): boolean {
  if (b === undefined || !URL.canParse(a) || !URL.canParse(b)) return false;
  return new URL(a).origin === new URL(b).origin;
}
