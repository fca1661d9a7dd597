/**
 * @module
 * A {@linkcode StateStore} whose shared part lives in Redis, for instances that serve the same
 * keys: operator disables, probe verdicts, ejections, rests and budget spends. Records stay in
 * local memory (or in the store it wraps) and are read synchronously as always; a change to a
 * shared field is written to the key's Redis hash and pushed to every instance on the prefix's
 * channel in one script (so writes and messages come in one order), and applied by every
 * instance within a round trip. In-flight counts, counters and latency stay per instance.
 *
 * Fields are last-writer-wins in Redis's order: an instance that changed a field and has not
 * yet heard its own message back ignores others' older messages for that field (its own comes
 * later and wins everywhere). While Redis is down the instance serves on its local view and
 * remembers what it changed; when Redis comes back it writes those fields, then reads every
 * key's hash (what others changed meanwhile).
 */

import type { CandidateState, StateStore } from "../state_store.ts";
import { EVENTS, hashReply, type RedisLink, script } from "../shared/link.ts";

/** One field of a record's shared part, as it is stored in Redis. */
type Fields = Map<string, string>;

/** Writes fields into a key's hash and pushes them to every instance, in one step. */
const WRITE = script(`
for i = 1, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PUBLISH', KEYS[2], ARGV[#ARGV])
return 1`);

/** How long an own write may take to come back on the channel before it counts as lost. */
const PENDING_MS = 2_000;

/** The shared fields of a record nothing happened to. */
const DEFAULTS: ReadonlyMap<string, string> = new Map([
  ["d", "0"],
  ["h", "1|"],
  ["e", "0|0"],
  ["r", "0|"],
  ["s", "0|"],
]);

/** Model spends are kept under `m:<model>`. */
const MODEL = "m:";

/**
 * A record's shared part as fields: `d` disabled, `h` probe verdict, `e` ejection, `r` rest,
 * `s` spent for every model, `m:<model>` spent for one model.
 * @param s the record
 * @param now epoch ms (model spends over before now are left out)
 */
export function sharedFields(s: Readonly<CandidateState>, now: number): Fields {
  const f: Fields = new Map();
  f.set("d", s.disabled ? "1" : "0");
  f.set("h", `${s.healthy ? 1 : 0}|${s.unhealthyReason}`);
  f.set("e", `${s.ejectedUntil}|${s.ejections}`);
  f.set("r", `${s.restUntil}|${s.restReason}`);
  const b = s.budget;
  f.set("s", `${b.spentUntil}|${b.spentReason}`);
  for (const [m, until] of Object.entries(b.modelSpentUntil)) {
    if (until > now) f.set(MODEL + m, String(until));
  }
  return f;
}

function split(v: string): [number, string] {
  const bar = v.indexOf("|");
  const n = Number(bar < 0 ? v : v.slice(0, bar));
  return [Number.isFinite(n) ? n : 0, bar < 0 ? "" : v.slice(bar + 1)];
}

/**
 * Sets one shared field of a record from its stored value.
 * @returns whether the record changed
 */
export function applyField(s: CandidateState, field: string, value: string): boolean {
  if (field.startsWith(MODEL)) {
    const m = field.slice(MODEL.length);
    const until = Number(value);
    const map = s.budget.modelSpentUntil;
    if (!Number.isFinite(until) || until <= 0) {
      if (!Object.hasOwn(map, m)) return false;
      delete map[m];
      return true;
    }
    if (map[m] === until) return false;
    // own keys only: a model named __proto__ stays data
    Object.defineProperty(map, m, {
      value: until,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    return true;
  }
  const [n, text] = split(value);
  switch (field) {
    case "d": {
      const d = value === "1";
      if (s.disabled === d) return false;
      s.disabled = d;
      return true;
    }
    case "h": {
      const ok = n === 1;
      if (s.healthy === ok && s.unhealthyReason === text) return false;
      s.healthy = ok;
      s.unhealthyReason = ok ? "" : text;
      return true;
    }
    case "e": {
      const times = Number(text) || 0;
      if (s.ejectedUntil === n && s.ejections === times) return false;
      s.ejectedUntil = n;
      s.ejections = times;
      if (n === 0 && !s.trialInFlight) s.halfOpen = false;
      return true;
    }
    case "r": {
      const why = text === "rate_limited" || text === "quota" || text === "auth" ? text : "";
      if (s.restUntil === n && s.restReason === why) return false;
      s.restUntil = n;
      s.restReason = why;
      return true;
    }
    case "s": {
      if (s.budget.spentUntil === n && s.budget.spentReason === text) return false;
      s.budget.spentUntil = n;
      s.budget.spentReason = text;
      return true;
    }
    default:
      return false;
  }
}

/** A message on the channel: who wrote, which key, which fields. */
interface Message {
  /** The writing instance. */
  i: string;
  /** The key's stable id. */
  k: string;
  /** The fields written. */
  f: Record<string, string>;
}

function parse(text: string): Message | undefined {
  try {
    const m = JSON.parse(text) as unknown;
    if (typeof m !== "object" || m === null) return undefined;
    const { i, k, f } = m as Record<string, unknown>;
    if (typeof i !== "string" || typeof k !== "string") return undefined;
    if (typeof f !== "object" || f === null) return undefined;
    const fields: Record<string, string> = {};
    for (const [name, v] of Object.entries(f)) if (typeof v === "string") fields[name] = v;
    return { i, k, f: fields };
  } catch {
    return undefined;
  }
}

/** Options of {@linkcode RedisStateStore}. */
export interface RedisStateOptions {
  /** The shared Redis. */
  link: RedisLink;
  /** Where records live locally (a file keeps this instance's view across restarts). */
  local: StateStore;
  /** Names this instance in its messages (so it knows its own). */
  instance: string;
  /** @default Date.now */
  now?: () => number;
}

/** Listens to changes other instances made to a record. */
export type RemoteListener = (id: string) => void;

/** Candidate state shared through Redis. */
export class RedisStateStore implements StateStore {
  readonly #link: RedisLink;
  readonly #local: StateStore;
  readonly #instance: string;
  readonly #now: () => number;
  /** What each record's shared fields were when last written or heard. */
  readonly #known = new Map<string, Fields>();
  /** The shared fields' plain values at the last `changed()`, per id. */
  readonly #seen = new Map<string, Seen>();
  /**
   * Own writes not yet heard back, per `id\nfield`: how many, and when the last was sent
   * (`performance.now()`). One not heard back within {@linkcode PENDING_MS} was lost with the
   * subscriber's connection: it no longer holds back others' writes.
   */
  readonly #pending = new Map<string, { n: number; at: number }>();
  /** Fields changed while Redis was down, per id: written when it comes back. */
  readonly #unsent = new Map<string, Set<string>>();
  readonly #dirty = new Set<string>();
  readonly #listeners: RemoteListener[] = [];
  #flushing = false;
  #closed = false;

  /** @param options the link, the local store, this instance's name and the clock */
  constructor(options: RedisStateOptions) {
    this.#link = options.link;
    this.#local = options.local;
    this.#instance = options.instance;
    this.#now = options.now ?? Date.now;
    options.link.onChange((up) => {
      if (up) void this.#reconcile();
    });
    // messages published while the subscriber was away are lost: read every record again
    options.link.onResubscribed(() => {
      if (this.#link.up) void this.#load([...this.#known.keys()]);
    });
  }

  /**
   * Subscribes to the channel and reads the shared state of every record known so far (when
   * Redis is up now; otherwise when it comes up).
   */
  async start(): Promise<void> {
    await this.#link.subscribe(EVENTS, (text) => this.#heard(text));
    if (this.#link.up) await this.#reconcile();
  }

  /**
   * Listens to records changed by other instances (so pools rebuild and waiters wake).
   * @param listener told the id of each record changed
   */
  onRemote(listener: RemoteListener): void {
    this.#listeners.push(listener);
  }

  /** {@inheritDoc StateStore.record} */
  record(id: string): CandidateState {
    const known = this.#known.has(id);
    const rec = this.#local.record(id);
    if (!known) {
      this.#known.set(id, sharedFields(rec, this.#now()));
      if (this.#link.up) void this.#load([id]);
    }
    return rec;
  }

  /** {@inheritDoc StateStore.changed} */
  changed(id: string): void {
    this.#local.changed(id);
    const known = this.#known.get(id);
    if (known === undefined) return;
    // the hot path (every attempt's start and end): plain comparisons, nothing allocated
    const s = this.#local.record(id);
    let seen = this.#seen.get(id);
    if (seen === undefined) this.#seen.set(id, seen = new Seen());
    if (seen.matches(s)) return;
    seen.take(s);
    if (same(s, known, this.#now())) return;
    this.#dirty.add(id);
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** {@inheritDoc StateStore.entries} */
  entries(): IterableIterator<[string, CandidateState]> {
    return this.#local.entries();
  }

  /** Closes the local store (the link is closed by its owner). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#flush();
    await this.#local.close();
  }

  /** Writes what changed since the last write, one script per record. */
  #flush(): void {
    this.#flushing = false;
    const now = this.#now();
    for (const id of this.#dirty) {
      const known = this.#known.get(id)!;
      const current = sharedFields(this.#local.record(id), now);
      const changed = new Map<string, string>();
      for (const [field, v] of current) if (known.get(field) !== v) changed.set(field, v);
      for (const field of known.keys()) {
        // a model spend that an operator cleared (not one that ended by itself)
        if (!current.has(field) && field.startsWith(MODEL) && Number(known.get(field)) > now) {
          changed.set(field, "0");
        }
      }
      this.#known.set(id, current);
      if (changed.size > 0) this.#send(id, changed);
    }
    this.#dirty.clear();
  }

  #send(id: string, fields: Map<string, string>): void {
    if (!this.#link.up) {
      this.#later(id, fields.keys());
      return;
    }
    const args: string[] = [];
    const f: Record<string, string> = {};
    for (const [name, v] of fields) {
      args.push(name, v);
      f[name] = v;
      const p = `${id}\n${name}`;
      const pending = this.#pending.get(p);
      if (pending === undefined) this.#pending.set(p, { n: 1, at: performance.now() });
      else {
        pending.n++;
        pending.at = performance.now();
      }
    }
    args.push(JSON.stringify({ i: this.#instance, k: id, f } satisfies Message));
    const link = this.#link;
    link.run(WRITE, [keyOf(link, id), link.prefix + EVENTS], args).catch(() => {
      // not written: nothing will come back; sent again when Redis is back
      for (const name of fields.keys()) this.#settle(`${id}\n${name}`);
      this.#later(id, fields.keys());
    });
  }

  /** Remembers fields to write when Redis is back. */
  #later(id: string, names: Iterable<string>): void {
    let unsent = this.#unsent.get(id);
    if (unsent === undefined) this.#unsent.set(id, unsent = new Set());
    for (const name of names) unsent.add(name);
  }

  #settle(p: string): number {
    const pending = this.#pending.get(p);
    if (pending === undefined) return 0;
    if (--pending.n <= 0) this.#pending.delete(p);
    return pending.n;
  }

  /** Whether an own write of a field is still on its way (not lost). */
  #inFlight(p: string): boolean {
    const pending = this.#pending.get(p);
    if (pending === undefined) return false;
    if (performance.now() - pending.at < PENDING_MS) return true;
    this.#pending.delete(p);
    return false;
  }

  #heard(text: string): void {
    const m = parse(text);
    if (m === undefined) return;
    const known = this.#known.get(m.k);
    if (known === undefined) return; // a key this instance does not serve
    const own = m.i === this.#instance;
    const changed = this.#apply(m.k, known, Object.entries(m.f), own);
    if (changed) this.#told(m.k);
  }

  /**
   * Applies fields heard or read to a record.
   * @param own whether they are this instance's own writes coming back
   * @returns whether the record changed
   */
  #apply(
    id: string,
    known: Fields,
    fields: Iterable<[string, string]>,
    own: boolean,
  ): boolean {
    const s = this.#local.record(id);
    let changed = false;
    for (const [name, v] of fields) {
      const p = `${id}\n${name}`;
      if (own) {
        // a later own write of this field is on its way: it wins; else this one stands
        if (this.#settle(p) > 0) continue;
      } else if (this.#inFlight(p) || this.#unsent.get(id)?.has(name) === true) {
        // an own write of this field comes after this one in Redis's order
        continue;
      }
      if (applyField(s, name, v)) changed = true;
      known.set(name, v);
    }
    if (changed) {
      this.#local.changed(id);
      // what was heard is the baseline now: a local change back to the old value is a change
      this.#seen.get(id)?.take(s);
    }
    return changed;
  }

  #told(id: string): void {
    for (const l of this.#listeners) {
      try {
        l(id);
      } catch { /* a listener's failure is its own */ }
    }
  }

  /** Redis is (back) up: writes what changed meanwhile, then reads every record's hash. */
  async #reconcile(): Promise<void> {
    const unsent = [...this.#unsent];
    this.#unsent.clear();
    const now = this.#now();
    for (const [id, names] of unsent) {
      const current = sharedFields(this.#local.record(id), now);
      const fields = new Map<string, string>();
      for (const name of names) fields.set(name, current.get(name) ?? "0");
      this.#send(id, fields);
    }
    await this.#load([...this.#known.keys()]);
  }

  /** Reads the hashes of records and applies what others wrote. */
  async #load(ids: string[]): Promise<void> {
    const link = this.#link;
    await Promise.all(ids.map(async (id) => {
      let reply: unknown;
      try {
        reply = await link.command(["HGETALL", keyOf(link, id)]);
      } catch {
        return; // down again: read when it comes back
      }
      const known = this.#known.get(id);
      if (known === undefined || this.#closed) return;
      const fields = hashReply(reply);
      if (this.#apply(id, known, fields, false)) this.#told(id);
      // a Redis that lost its data (restarted without saving): what this instance knows goes
      // back, so instances that start later learn it
      const stored = new Set(fields.map(([name]) => name));
      const current = sharedFields(this.#local.record(id), this.#now());
      const missing = new Map<string, string>();
      for (const [name, v] of current) {
        if (!stored.has(name) && v !== DEFAULTS.get(name)) missing.set(name, v);
      }
      if (missing.size > 0) this.#send(id, missing);
    }));
  }
}

/** A record's shared fields as plain values, to tell cheaply that none changed. */
class Seen {
  disabled = false;
  healthy = true;
  unhealthyReason = "";
  ejectedUntil = 0;
  ejections = 0;
  restUntil = 0;
  restReason = "";
  spentUntil = 0;
  spentReason = "";
  models = 0;
  modelSum = 0;
  /** Not yet taken: the first comparison fails. */
  fresh = true;

  matches(s: Readonly<CandidateState>): boolean {
    const b = s.budget;
    if (
      this.fresh || this.disabled !== s.disabled || this.healthy !== s.healthy ||
      this.unhealthyReason !== s.unhealthyReason || this.ejectedUntil !== s.ejectedUntil ||
      this.ejections !== s.ejections || this.restUntil !== s.restUntil ||
      this.restReason !== s.restReason || this.spentUntil !== b.spentUntil ||
      this.spentReason !== b.spentReason
    ) return false;
    let models = 0;
    let sum = 0;
    for (const m in b.modelSpentUntil) {
      models++;
      sum += b.modelSpentUntil[m]!;
    }
    return models === this.models && sum === this.modelSum;
  }

  take(s: Readonly<CandidateState>): void {
    const b = s.budget;
    this.fresh = false;
    this.disabled = s.disabled;
    this.healthy = s.healthy;
    this.unhealthyReason = s.unhealthyReason;
    this.ejectedUntil = s.ejectedUntil;
    this.ejections = s.ejections;
    this.restUntil = s.restUntil;
    this.restReason = s.restReason;
    this.spentUntil = b.spentUntil;
    this.spentReason = b.spentReason;
    let models = 0;
    let sum = 0;
    for (const m in b.modelSpentUntil) {
      models++;
      sum += b.modelSpentUntil[m]!;
    }
    this.models = models;
    this.modelSum = sum;
  }
}

/** Whether a record's shared fields are still what was last written or heard. */
function same(s: Readonly<CandidateState>, known: Fields, now: number): boolean {
  const b = s.budget;
  if (known.get("d") !== (s.disabled ? "1" : "0")) return false;
  if (!eq(known.get("e"), s.ejectedUntil, String(s.ejections))) return false;
  if (!eq(known.get("r"), s.restUntil, s.restReason)) return false;
  if (!eq(known.get("s"), b.spentUntil, b.spentReason)) return false;
  if (!eq(known.get("h"), s.healthy ? 1 : 0, s.unhealthyReason)) return false;
  let models = 0;
  for (const m in b.modelSpentUntil) {
    const until = b.modelSpentUntil[m]!;
    if (until <= now) continue;
    models++;
    if (known.get(MODEL + m) !== String(until)) return false;
  }
  let knownModels = 0;
  for (const [field, v] of known) {
    if (field.startsWith(MODEL) && Number(v) > now) knownModels++;
  }
  return models === knownModels;
}

function eq(known: string | undefined, n: number, text: string): boolean {
  if (known === undefined) return false;
  const bar = known.indexOf("|");
  return known.length === bar + 1 + text.length && known.endsWith(text) &&
    Number(known.slice(0, bar)) === n;
}

/** The Redis hash of a key's shared state. */
function keyOf(link: RedisLink, id: string): string {
  return `${link.prefix}key:${id}`;
}
