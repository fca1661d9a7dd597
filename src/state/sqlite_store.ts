/**
 * @module
 * A {@linkcode StateStore} saved in a SQLite file (`node:sqlite`), so rests, ejections, budget
 * counters and usage survive restarts and crashes. Records live in memory; `changed()` only
 * marks an id dirty, and a timer writes the dirty records in one transaction every second. A
 * state file that is corrupt or of an unknown version is set aside, never a reason not to start.
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import { type Clock, systemClock } from "../clock.ts";
import { Logger } from "../logger.ts";
import {
  type CandidateState,
  emptyBudget,
  emptyState,
  recordIn,
  type StateStore,
} from "../state_store.ts";

/** Where {@linkcode SqliteStateStore} reports what it did with the file. */
export interface StateLogger {
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
}

/** Options of {@linkcode SqliteStateStore.open}. */
export interface SqliteStateOptions {
  /** Stamps `updated_at` and names a file set aside. @default systemClock */
  clock?: Clock;
  /** How often dirty records are written, in milliseconds. @default 1000 */
  flushMs?: number;
  /** @default a JSON-lines {@linkcode Logger} on stderr */
  logger?: StateLogger;
}

/** The schema version this module writes (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 1;

const SCHEMA = `CREATE TABLE IF NOT EXISTS candidates (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  updated_at INTEGER NOT NULL
)`;
const UPSERT = "INSERT INTO candidates (id, state, updated_at) VALUES (?, ?, ?) " +
  "ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";

/** SQLite failures that say nothing about the file's content: permissions, locks, disk, memory. */
const NOT_THE_FILE =
  /Requires \w+ access|permission denied|is locked|out of memory|readonly|disk I\/O error|disk is full|unable to open|authorization denied/i;

/** A candidate {@linkcode StateStore} persisted in a SQLite file. */
export class SqliteStateStore implements StateStore {
  readonly #path: string;
  readonly #db: DatabaseSync;
  readonly #upsert: StatementSync;
  readonly #clock: Clock;
  readonly #logger: StateLogger;
  readonly #records: Map<string, CandidateState>;
  readonly #dirty = new Set<string>();
  readonly #timer: ReturnType<typeof setInterval>;
  #failing = false;
  #closed = false;

  private constructor(
    path: string,
    opened: Opened,
    options: { clock: Clock; logger: StateLogger; flushMs: number },
  ) {
    this.#path = path;
    this.#db = opened.db;
    this.#upsert = opened.upsert;
    this.#records = opened.records;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#timer = setInterval(() => this.flush(), options.flushMs);
    Deno.unrefTimer(this.#timer);
  }

  /**
   * Opens (or creates) the state file and loads every record. A file that is not a SQLite
   * database, is corrupt, or has another schema version is renamed aside (`<path>.corrupt-<ms>`
   * or `<path>.v<N>-<ms>`, with its `-wal`/`-shm`), a warning says where, and a fresh file is used.
   * @param path the SQLite file; missing parent folders are created (mode 0o700)
   * @param options clock, flush interval and logger
   * @returns the open store, its flush timer running
   * @throws {Error} when the folder cannot be created or the file cannot be opened even fresh
   */
  static open(path: string, options: SqliteStateOptions = {}): SqliteStateStore {
    const clock = options.clock ?? systemClock;
    const logger = options.logger ?? new Logger();
    try {
      Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new Error(`Cannot create the state folder "${dirname(path)}": ${message(e)}`);
    }
    let opened = tryOpen(path, logger);
    if (!("db" in opened)) {
      const aside = `${path}.${opened.setAside}-${clock.now()}`;
      for (const suffix of ["", "-wal", "-shm"]) {
        try {
          Deno.renameSync(path + suffix, aside + suffix);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) {
            throw new Error(`Cannot set aside the state file "${path}${suffix}": ${message(e)}`);
          }
        }
      }
      logger.warn("state file set aside, starting with fresh state", {
        path,
        aside,
        reason: opened.reason,
      });
      opened = tryOpen(path, logger);
      if (!("db" in opened)) {
        throw new Error(`Cannot open the state file "${path}": ${opened.reason}`);
      }
    }
    const flushMs = options.flushMs ?? 1000;
    const store = new SqliteStateStore(path, opened, { clock, logger, flushMs });
    logger.info("state file opened", { path, records: opened.records.size });
    return store;
  }

  /** {@inheritDoc StateStore.record} */
  record(id: string): CandidateState {
    return recordIn(this.#records, id);
  }

  /** Marks the record dirty for the next flush: no I/O, no serialization. */
  changed(id: string): void {
    this.#dirty.add(id);
  }

  /** {@inheritDoc StateStore.entries} */
  entries(): IterableIterator<[string, CandidateState]> {
    return this.#records.entries();
  }

  /**
   * Writes every dirty record in one transaction. A failure is logged (once until writes work
   * again) and the records stay dirty for the next flush; it never throws.
   * @returns how many records were written
   */
  flush(): number {
    if (this.#closed || this.#dirty.size === 0) return 0;
    const now = this.#clock.now();
    let written = 0;
    try {
      this.#db.exec("BEGIN");
      for (const id of this.#dirty) {
        const rec = this.#records.get(id);
        if (rec === undefined) continue;
        this.#upsert.run(id, JSON.stringify(rec), now);
        written++;
      }
      this.#db.exec("COMMIT");
    } catch (e) {
      try {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      } catch { /* the failed commit already ended it */ }
      if (!this.#failing) {
        this.#failing = true;
        this.#logger.warn("cannot save state, retrying at the next flush", {
          path: this.#path,
          records: this.#dirty.size,
          error: message(e),
        });
      }
      return 0;
    }
    this.#dirty.clear();
    if (this.#failing) {
      this.#failing = false;
      this.#logger.info("state saved again", { path: this.#path, records: written });
    }
    return written;
  }

  /** Flushes, stops the timer and closes the file; later calls do nothing. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.flush();
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      this.#db.close();
    } catch (e) {
      this.#logger.warn("cannot close the state file", { path: this.#path, error: message(e) });
    }
    return Promise.resolve();
  }
}

/** An open, current database with its records loaded. */
interface Opened {
  db: DatabaseSync;
  upsert: StatementSync;
  records: Map<string, CandidateState>;
}

/** Why the file must be set aside: its suffix (`corrupt` or `v<N>`) and what was wrong. */
interface Unusable {
  setAside: string;
  reason: string;
}

/**
 * Opens, checks, migrates and loads the file.
 * @throws {Error} for failures that are not the file's content (permissions, locks, disk)
 */
function tryOpen(path: string, logger: StateLogger): Opened | Unusable {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path);
    const check = db.prepare("PRAGMA quick_check").all().map((r) => String(r.quick_check));
    if (check.join() !== "ok") {
      db.close();
      return { setAside: "corrupt", reason: `quick_check: ${check.slice(0, 3).join("; ")}` };
    }
    const version = Number(db.prepare("PRAGMA user_version").get()?.user_version);
    if (version !== 0 && version !== SCHEMA_VERSION) {
      db.close();
      return { setAside: `v${version}`, reason: `schema version ${version}, expected 1` };
    }
    // wait for another process's write at start-up only: a flush must never block on one
    db.exec("PRAGMA busy_timeout = 2000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL");
    // writes even when the schema is there: a read-only file fails here, not at every flush
    db.exec(`BEGIN; ${SCHEMA}; PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT`);
    const upsert = db.prepare(UPSERT);
    const records = new Map<string, CandidateState>();
    for (const row of db.prepare("SELECT id, state FROM candidates").all()) {
      const id = String(row.id);
      records.set(id, revive(id, row.state, path, logger));
    }
    db.exec("PRAGMA busy_timeout = 0");
    return { db, upsert, records };
  } catch (e) {
    try {
      if (db?.isOpen) db.close();
    } catch { /* closing is best effort here */ }
    if (NOT_THE_FILE.test(message(e))) {
      throw new Error(`Cannot open the state file "${path}": ${message(e)}`);
    }
    return { setAside: "corrupt", reason: message(e) };
  }
}

/**
 * A saved record over today's defaults: fields added since get their default, fields of the
 * wrong type are reset, and the volatile ones (`inFlight`, `trialInFlight`) start clear.
 */
function revive(id: string, text: unknown, path: string, logger: StateLogger): CandidateState {
  let saved: unknown;
  let error = "not a JSON object";
  try {
    saved = JSON.parse(String(text));
  } catch (e) {
    error = message(e);
  }
  if (!isObject(saved)) {
    logger.warn("cannot read a saved state record, starting it empty", { path, id, error });
    return emptyState();
  }
  const wrong: string[] = [];
  const { budget, ...fields } = saved;
  const state = mergeOver(emptyState(), fields, wrong, "");
  state.budget = mergeOver(emptyBudget(), isObject(budget) ? budget : {}, wrong, "budget.");
  if (budget !== undefined && !isObject(budget)) wrong.push("budget");
  if (wrong.length > 0) {
    logger.warn("saved state fields of the wrong type were reset", { path, id, fields: wrong });
  }
  state.inFlight = 0;
  state.trialInFlight = false;
  return state;
}

/** `defaults` with each of its fields that `saved` holds with the same kind of value. */
function mergeOver<T extends object>(
  defaults: T,
  saved: Record<string, unknown>,
  wrong: string[],
  prefix: string,
): T {
  const out: Record<string, unknown> = Object.fromEntries(Object.entries(defaults));
  for (const [key, fallback] of Object.entries(defaults)) {
    if (!Object.hasOwn(saved, key)) continue;
    const value = saved[key];
    if (kind(value) === kind(fallback) || (fallback === null && isObject(value))) out[key] = value;
    else wrong.push(prefix + key);
  }
  return out as T;
}

function kind(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return kind(v) === "object";
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
