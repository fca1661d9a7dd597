/**
 * @module
 * Budgets shared by instances through Redis: the counters of each key's windows (today's
 * requests, per model, this minute's, tokens) live in Redis and are taken in one Lua script on
 * Redis's clock, which checks every limit and consumes atomically, so the instances together
 * never spend more than a limit. Each instance takes requests in small batches (a grant) and
 * spends them locally without a round trip; a grant running low is topped up in the background,
 * and one that is empty makes the request wait for one script call. Batches shrink as a budget
 * runs out (at most an eighth of what is left), so near the end every request asks Redis.
 * Grants an instance does not use within a second, or that outlive their window, are given back.
 * Tokens are known only when an attempt ends: they are added every 100 ms, and a token budget
 * found full takes the key out everywhere.
 *
 * Which daily window a call falls in is Redis's choice: the instance sends the boundaries of the
 * days around its own now (its zone and reset time, DST included) and the script picks the one
 * that holds Redis's time.
 *
 * While Redis is down the book counts on its own (its counters mirror the cluster's as last
 * seen); what was spent meanwhile is added to Redis when it comes back. A Redis that lost its
 * data (its epoch changed) gets back from every instance what that instance had spent of the
 * day: together, the day's counts.
 */

/**
 * What became of a request that had to ask Redis: granted from Redis, counted here alone and
 * owed to Redis (it was down), or refused (the cluster's budget is spent).
 */
export type Reservation = "granted" | "owed" | "refused";

import type { Candidate } from "../plugin.ts";
import type { QuotaConfig } from "../config/types.ts";
import { EVENTS, hashReply, type RedisLink } from "../shared/link.ts";
import { EPOCH, GIVE_BACK, READ, REPAY, RESTORE, TAKE, TOKENS } from "./bank_scripts.ts";
import { dayStart, nextReset } from "./reset.ts";

/** The largest batch of requests an instance takes at once. */
const MAX_BATCH = 100;
/** Longest wait of a request for its key's grant while others take what Redis grants. */
const WAIT_MS = 5_000;

/** What a grant's reply said of the windows' counts (the whole cluster's). */
export interface ClusterCounts {
  dayRequests: number;
  modelRequests: number;
  minuteRequests: number;
  dayTokens: number;
  minuteTokens: number;
}

/** What the bank tells the book. */
export interface BankEvents {
  /**
   * Redis refused a key (for a model, with `why` "model"): it is out until `until` (local epoch ms).
   */
  refused(c: Candidate, model: string | undefined, why: string, until: number): void;
  /**
   * The cluster's counts as a grant found them, less what this instance still holds: the book's
   * counters mirror them (what it counts on while Redis is down).
   */
  counts(c: Candidate, model: string | undefined, counts: ClusterCounts): void;
}

/** Requests taken from Redis for one key and model, spent locally. */
interface Grant {
  c: Candidate;
  /** The model's slot, "" when the key has no per-model limit. */
  readonly model: string;
  left: number;
  /** The last batch's size: a top-up starts when half of it is spent. */
  batch: number;
  /** The windows it was taken in (Redis's day start and minute start). */
  day: number;
  minute: number;
  /** Local epoch ms when its windows end. */
  expires: number;
  /** Local epoch ms of its last use. */
  lastUsed: number;
  /** Requests waiting for a top-up. */
  waiting: number;
  refill: Promise<TopUp> | undefined;
  /** Why Redis refused the last top-up ("" when it did not). */
  refused: string;
  /** The key's generation in Redis when it was taken (an operator's reset makes a new one). */
  gen: string;
  /** The epoch of the Redis data it was taken from. */
  epoch: string;
}

/** Where a count belongs: the Redis data (epoch), Redis's day start and minute start. */
interface Window {
  epoch: string;
  day: number;
  minute: number;
}

/** What this instance has spent of a key's day and minute in the Redis data of one epoch. */
interface Own extends Window {
  c: Candidate;
  requests: number;
  tokens: number;
  models: Map<string, number>;
  minuteRequests: number;
  minuteTokens: number;
}

/** How a top-up ended: granted, refused, Redis's data changed (asked again), or nothing usable. */
type TopUp = "granted" | "refused" | "epoch" | "failed";

/** Options of {@linkcode BudgetBank}. */
export interface BudgetBankOptions {
  link: RedisLink;
  /** @default Date.now */
  now?: () => number;
  /** Unused grants go back after this long. @default 1000 */
  idleMs?: number;
}

/** Whether a key's configured budgets count requests (so requests are taken from Redis). */
function countsRequests(q: Readonly<QuotaConfig>): boolean {
  return q.requestsPerDay > 0 || q.modelRequestsPerDay > 0 || q.requestsPerMinute > 0;
}

/** Whether a key has any configured budget. */
export function hasLimits(q: Readonly<QuotaConfig>): boolean {
  return countsRequests(q) || q.tokensPerDay > 0 || q.tokensPerMinute > 0;
}

/**
 * The batch a key asks for: a hundredth of its smallest request limit, 1 to 100 (the script
 * grants at most an eighth of what is left, so batches shrink near the end).
 */
function batchFor(q: Readonly<QuotaConfig>): number {
  let least = Infinity;
  for (const n of [q.requestsPerDay, q.modelRequestsPerDay, q.requestsPerMinute]) {
    if (n > 0 && n < least) least = n;
  }
  return Number.isFinite(least) ? Math.max(1, Math.min(MAX_BATCH, Math.floor(least / 100))) : 1;
}

/** Budgets shared through Redis. */
export class BudgetBank {
  readonly #link: RedisLink;
  readonly #now: () => number;
  readonly #idleMs: number;
  #events: BankEvents | undefined;
  readonly #grants = new Map<string, Grant>();
  /** This instance's clock less Redis's, as last seen (undefined before the first reply). */
  #skew: number | undefined;
  /** Day boundaries per reset time and zone (see `#days`). */
  readonly #dayCache = new Map<string, readonly number[]>();
  /** Tokens not yet added, per key. */
  readonly #tokens = new Map<string, { c: Candidate; n: number }>();
  /** The id of the data Redis held when last seen (see {@linkcode EPOCH}). */
  #epoch: string | undefined;
  /** What this instance spent of each key's day, in the current epoch's data. */
  readonly #own = new Map<string, Own>();
  /** Each key's cluster counts as its last grant found them: a share while down is cut from them. */
  readonly #last = new Map<
    string,
    { day: number; requests: number; models: Map<string, number> }
  >();
  /** Instances sharing this Redis and prefix, as last counted (subscribers of the channel). */
  #instances = 1;
  #counted = 0;
  /** Spends whose adding back to a Redis that lost its data failed: tried again when up. */
  #unrestored: Own[] = [];
  /** Requests spent while Redis was down, per key and model: added when it is back. */
  readonly #owed = new Map<string, { c: Candidate; model: string; n: number; tokens: number }>();
  readonly #timer: ReturnType<typeof setInterval>;
  #closed = false;

  /** @param options the link, the clock and how long unused grants are kept */
  constructor(options: BudgetBankOptions) {
    this.#link = options.link;
    this.#now = options.now ?? Date.now;
    this.#idleMs = options.idleMs ?? 1000;
    this.#timer = setInterval(() => this.#tick(), 100);
    Deno.unrefTimer(this.#timer);
    options.link.onChange((up) => {
      if (up) void this.#repay();
    });
  }

  /**
   * Says where refusals and counts go (the book).
   * @param events the book's handlers
   */
  attach(events: BankEvents): void {
    this.#events = events;
  }

  /** Whether Redis decides budgets now. */
  get up(): boolean {
    return this.#link.up;
  }

  /**
   * Whether a key's budgets are shared (it has a configured limit and Redis is up).
   * @param c the key
   */
  covers(c: Candidate): boolean {
    return this.#link.up && hasLimits(c.quota);
  }

  /**
   * Takes one request for a key from its grant.
   * @param c the key (one that {@linkcode covers})
   * @param model the model's slot in the key's budget, undefined when the request names none
   * @returns true when the grant had it; otherwise a promise of one script call: `granted`,
   *   `owed` (Redis is down: the book decides alone, Redis is told when back), or `refused`
   *   (the book was told why)
   */
  take(c: Candidate, model: string | undefined): true | Promise<Reservation> {
    const q = c.quota;
    if (!countsRequests(q)) return true;
    const m = model !== undefined && q.modelRequestsPerDay > 0 ? model : "";
    const g = this.#grant(c, m);
    const now = this.#now();
    if (g.left > 0 && now < g.expires && g.epoch === this.#epoch) {
      g.left--;
      g.lastUsed = now;
      if (g.left * 2 <= g.batch && g.refill === undefined) void this.#topUp(g);
      return true;
    }
    return this.#wait(g);
  }

  async #wait(g: Grant): Promise<Reservation> {
    g.waiting++;
    try {
      // each round either grants (others waiting may take it first) or refuses: it ends
      const until = this.#now() + WAIT_MS;
      while (this.#now() < until) {
        const now = this.#now();
        if (g.left > 0 && now < g.expires && g.epoch === this.#epoch) {
          g.left--;
          g.lastUsed = now;
          return "granted";
        }
        if (!this.#link.up) {
          // down while it waited: the book decides alone, and Redis is told when it is back
          this.owe(g.c, g.model === "" ? undefined : g.model);
          return "owed";
        }
        const topUp = await (g.refill ?? this.#topUp(g));
        if (topUp === "failed") {
          // Redis answered nothing usable (too late, an error): the book decides alone rather
          // than ask again at once
          this.owe(g.c, g.model === "" ? undefined : g.model);
          return "owed";
        }
        if (g.refused !== "" && (g.left <= 0 || this.#now() >= g.expires)) return "refused";
      }
      // so many waited that the grants went to others all this time: not this key
      return "refused";
    } finally {
      g.waiting--;
    }
  }

  /**
   * Gives back a request an attempt took without using the provider's quota.
   * @param c the key
   * @param model the model's slot, as it was taken
   */
  giveBack(c: Candidate, model: string | undefined): void {
    const q = c.quota;
    if (!countsRequests(q)) return;
    const m = model !== undefined && q.modelRequestsPerDay > 0 ? model : "";
    const g = this.#grants.get(c.id + "\n" + m);
    // kept in the grant: the next request spends it, or it goes back to Redis when unused
    if (g !== undefined && this.#now() < g.expires && g.epoch === this.#epoch) {
      g.left++;
      return;
    }
    // its grant is gone (void, expired): taken off Redis's count directly
    this.#takeOff(c, m);
  }

  /** Takes one request off a key's count in Redis now, or when it is back. */
  #takeOff(c: Candidate, model: string): void {
    if (!this.#link.up) {
      this.#addOwed(c, model, -1, 0);
      return;
    }
    const args = [...this.#days(c).map(String), model, "-1", "0", this.#deadline()];
    const at = this.#nowWindow(c);
    this.#link.run(REPAY, [this.#base(c)], args).then(
      () => this.#spent(c, at, -1, 0, model),
      () => {},
    );
  }

  /**
   * Counts an attempt's tokens (added to Redis within 100 ms, every key's in one call) when the
   * key has a token budget.
   * @param c the key
   * @param tokens the attempt's tokens
   */
  tokens(c: Candidate, tokens: number): void {
    const q = c.quota;
    // only token budgets need them in Redis
    if (tokens <= 0 || (q.tokensPerDay <= 0 && q.tokensPerMinute <= 0)) return;
    const t = this.#tokens.get(c.id);
    if (t === undefined) this.#tokens.set(c.id, { c, n: tokens });
    else t.n += tokens;
  }

  /**
   * Counts a request spent while Redis was down (added when it is back).
   * @param c the key
   * @param model the model's slot
   */
  owe(c: Candidate, model: string | undefined): void {
    const q = c.quota;
    if (!countsRequests(q)) return;
    this.#addOwed(c, model !== undefined && q.modelRequestsPerDay > 0 ? model : "", 1, 0);
  }

  /** Counts what Redis is owed for a key and model slot: requests (negative: given back), tokens. */
  #addOwed(c: Candidate, model: string, n: number, tokens: number): void {
    const k = c.id + "\n" + model;
    const o = this.#owed.get(k);
    if (o === undefined) this.#owed.set(k, { c, model, n, tokens });
    else {
      o.n += n;
      o.tokens += tokens;
    }
  }

  /**
   * Whether a key may spend one more request while Redis is down: this instance's share of what
   * was left when it last asked (what is left divided by the instances sharing Redis, plus what
   * it still holds), per day and per model, so that the instances together stay near the limit
   * instead of each spending all that was left.
   * @param c the key
   * @param model the model's slot
   */
  mayOwe(c: Candidate, model: string | undefined): boolean {
    const q = c.quota;
    if (!countsRequests(q)) return true;
    const m = model !== undefined && q.modelRequestsPerDay > 0 ? model : "";
    const n = Math.max(1, this.#instances);
    const last = this.#last.get(c.id);
    const today = last !== undefined && last.day === this.#days(c)[1];
    let held = 0;
    let heldModel = 0;
    for (const g of this.#grants.values()) {
      if (g.c.id !== c.id) continue;
      held += g.left;
      if (g.model === m) heldModel += g.left;
    }
    let owed = 0;
    let owedModel = 0;
    for (const o of this.#owed.values()) {
      if (o.c.id !== c.id) continue;
      owed += o.n;
      if (o.model === m) owedModel += o.n;
    }
    const share = (limit: number, used: number, mine: number) =>
      mine + Math.floor(Math.max(0, limit - used) / n);
    if (q.requestsPerDay > 0) {
      if (owed >= share(q.requestsPerDay, today ? last.requests : 0, held)) return false;
    }
    if (m !== "" && q.modelRequestsPerDay > 0) {
      const used = today ? last.models.get(m) ?? 0 : 0;
      if (owedModel >= share(q.modelRequestsPerDay, used, heldModel)) return false;
    }
    return true;
  }

  /**
   * Gives back a request counted with {@linkcode owe} that never used the provider's quota:
   * not owed any more, or (Redis came back and was told already) taken off Redis's count.
   * @param c the key
   * @param model the model's slot
   */
  unowe(c: Candidate, model: string | undefined): void {
    const q = c.quota;
    if (!countsRequests(q)) return;
    const m = model !== undefined && q.modelRequestsPerDay > 0 ? model : "";
    const o = this.#owed.get(c.id + "\n" + m);
    if (o !== undefined && o.n > 0) {
      o.n--;
      return;
    }
    // told to Redis already
    this.#takeOff(c, m);
  }

  /**
   * Clears a key's counters in Redis (an operator's reset) and the grants held here.
   * @param c the key
   */
  async reset(c: Candidate): Promise<void> {
    for (const [k, g] of this.#grants) if (g.c.id === c.id) this.#grants.delete(k);
    this.#tokens.delete(c.id);
    for (const [k, o] of this.#owed) if (o.c.id === c.id) this.#owed.delete(k);
    this.#own.delete(c.id);
    const base = this.#base(c);
    const match = base.replace(/[*?[\]\\]/g, "\\$&") + "*";
    try {
      // SCAN, not KEYS: a shared Redis may hold many keys, and KEYS blocks it while it looks
      let cursor = "0";
      for (let rounds = 0; rounds < 10_000; rounds++) {
        const reply = await this.#link.command(["SCAN", cursor, "MATCH", match, "COUNT", "1000"]);
        if (!Array.isArray(reply) || reply.length < 2) break;
        cursor = String(reply[0]);
        const keys = Array.isArray(reply[1])
          ? reply[1].map(String).filter((k) => k !== base + "gen")
          : [];
        if (keys.length > 0) await this.#link.command(["DEL", ...keys]);
        if (cursor === "0") break;
      }
      // grants other instances hold are of the old generation: they give nothing back to the
      // new counts
      await this.#link.command(["INCR", base + "gen"]);
    } catch { /* down: the operator's reset is local only */ }
  }

  /**
   * Reads a key's counts in Redis's current windows (for /stats and /metrics).
   * @param c the key
   * @returns the cluster's counts, per model too; undefined when Redis cannot say
   */
  async cluster(
    c: Candidate,
  ): Promise<{ counts: ClusterCounts; models: Record<string, number> } | undefined> {
    if (!this.#link.up || !hasLimits(c.quota)) return undefined;
    try {
      const reply = await this.#link.run(READ, [this.#base(c)], this.#days(c).map(String));
      if (!Array.isArray(reply)) return undefined;
      const day = pairs(reply[0]);
      const minute = pairs(reply[1]);
      const models: Record<string, number> = {};
      for (const [k, v] of day) if (k.startsWith("m:")) models[k.slice(2)] = v;
      return {
        counts: {
          dayRequests: day.get("r") ?? 0,
          modelRequests: 0,
          minuteRequests: minute.get("r") ?? 0,
          dayTokens: day.get("t") ?? 0,
          minuteTokens: minute.get("t") ?? 0,
        },
        models,
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Gives back every grant, adds pending tokens and what was spent while Redis was down (when
   * it is up now: otherwise that is lost with this instance), and stops.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    const sends: Promise<unknown>[] = [];
    for (const g of this.#grants.values()) sends.push(this.#return(g));
    sends.push(...this.#flushTokens());
    if (this.#link.up) sends.push(...this.#repayOwed());
    await Promise.allSettled(sends);
  }

  #grant(c: Candidate, model: string): Grant {
    const k = c.id + "\n" + model;
    let g = this.#grants.get(k);
    if (g !== undefined && g.c !== c) {
      // the same key after a reload: what it holds stays with it, unless its limits changed
      // (a lower limit must hold from the next request on)
      const was = g.c.quota;
      const q = c.quota;
      const same = was.requestsPerDay === q.requestsPerDay &&
        was.modelRequestsPerDay === q.modelRequestsPerDay &&
        was.requestsPerMinute === q.requestsPerMinute && was.tokensPerDay === q.tokensPerDay &&
        was.tokensPerMinute === q.tokensPerMinute && was.timeZone === q.timeZone &&
        was.reset.hour === q.reset.hour && was.reset.minute === q.reset.minute;
      if (!same) void this.#return(g);
      g.c = c;
      g.batch = batchFor(q);
    }
    if (g === undefined) {
      g = {
        c,
        model,
        left: 0,
        batch: batchFor(c.quota),
        day: 0,
        minute: 0,
        expires: 0,
        lastUsed: 0,
        waiting: 0,
        refill: undefined,
        refused: "",
        gen: "0",
        epoch: "",
      };
      this.#grants.set(k, g);
    }
    return g;
  }

  #base(c: Candidate): string {
    return `${this.#link.prefix}b:${c.id}:`;
  }

  /**
   * When a script that consumes must not run any more, in Redis's time: once the link's command
   * timeout has passed its caller has given up (and counts alone, or will send it again). "0"
   * (none) before the first reply told the skew.
   */
  #deadline(): string {
    const skew = this.#skew;
    return skew === undefined ? "0" : String(this.#now() + this.#link.timeoutMs - skew);
  }

  /**
   * The four day boundaries around now, by the key's zone and reset time (computed once per
   * zone and reset time and day: the zone's rules are not cheap to apply).
   */
  #days(c: Candidate): readonly number[] {
    const q = c.quota;
    const now = this.#now();
    const k = `${q.reset.hour}:${q.reset.minute}|${q.timeZone}`;
    const cached = this.#dayCache.get(k);
    if (cached !== undefined && now >= cached[1]! && now < cached[2]!) return cached;
    const b1 = dayStart(now, q.reset, q.timeZone);
    const b2 = nextReset(now, q.reset, q.timeZone);
    const days = [
      dayStart(b1 - 1, q.reset, q.timeZone),
      b1,
      b2,
      nextReset(b2, q.reset, q.timeZone),
    ];
    this.#dayCache.set(k, days);
    return days;
  }

  /** Asks Redis for a batch for a grant; one call at a time per grant. */
  #topUp(g: Grant): Promise<TopUp> {
    const run = async (): Promise<TopUp> => {
      const c = g.c;
      const q = c.quota;
      const want = Math.min(MAX_BATCH, Math.max(batchFor(q), g.waiting));
      const days = this.#days(c);
      const args = [
        ...days.map(String),
        String(q.requestsPerDay),
        String(q.modelRequestsPerDay),
        String(q.requestsPerMinute),
        String(q.tokensPerDay),
        String(q.tokensPerMinute),
        g.model,
        String(want),
        this.#deadline(),
        crypto.randomUUID(),
        this.#epoch ?? "",
      ];
      let reply: unknown;
      try {
        reply = await this.#link.run(TAKE, [this.#base(c), this.#link.prefix + "epoch"], args);
      } catch {
        return "failed"; // down or slow: the book decides alone meanwhile
      }
      if (!Array.isArray(reply) || reply.length < 13 || this.#closed) return "failed";
      this.#epochIs(String(reply[12]));
      // too late by Redis's clock (a skew misjudged), or data this instance had not seen (what
      // it spent is on its way back first): nothing granted, nothing refused
      if (reply[1] === "late") return "failed";
      if (reply[1] === "epoch") return "epoch";
      const [granted, , ds, de, ms, redisNow, dr, mr, nr, dt, nt] = reply.map((v, i) =>
        i === 1 || i >= 11 ? 0 : Number(v)
      ) as number[];
      const gen = String(reply[11]);
      if (g.gen !== gen || g.epoch !== this.#epoch) {
        // an operator reset the key since the grant was taken, or Redis lost its data: what
        // is left of it is void (and no longer this instance's spend)
        this.#void(g);
        g.gen = gen;
        g.epoch = this.#epoch ?? "";
      }
      if (granted! > 0) {
        this.#spent(c, { epoch: this.#epoch ?? "", day: ds!, minute: ms! }, granted!, 0, g.model);
      }
      let last = this.#last.get(c.id);
      if (last === undefined || last.day !== ds) {
        this.#last.set(c.id, last = { day: ds!, requests: 0, models: new Map() });
      }
      last.requests = dr!;
      if (g.model !== "") last.models.set(g.model, mr!);
      const reason = String(reply[1]);
      const local = this.#now();
      const skew = local - redisNow!;
      this.#skew = skew;
      const dayEnd = de! + skew;
      const minuteEnd = ms! + 60_000 + skew;
      const expires = q.requestsPerMinute > 0 ? Math.min(dayEnd, minuteEnd) : dayEnd;
      if (g.left > 0 && (g.day !== ds || (q.requestsPerMinute > 0 && g.minute !== ms))) {
        // what is left of an older window's grant goes back
        void this.#return({ ...g });
        g.left = 0;
      }
      if (granted! > 0) {
        g.left += granted!;
        g.batch = granted!;
        g.day = ds!;
        g.minute = ms!;
        g.expires = expires;
        g.lastUsed = local;
      }
      g.refused = granted! > 0 ? "" : reason;
      const held = this.#held(c.id);
      this.#events?.counts(c, g.model === "" ? undefined : g.model, {
        dayRequests: Math.max(0, dr! - held),
        modelRequests: Math.max(0, mr! - g.left),
        minuteRequests: Math.max(0, nr! - held),
        dayTokens: dt!,
        minuteTokens: nt!,
      });
      if (granted! <= 0) {
        const until = reason === "minute" || reason === "minute_tokens" ? minuteEnd : dayEnd;
        this.#events?.refused(c, reason === "model" ? g.model : undefined, reason, until);
        return "refused";
      }
      return "granted";
    };
    const p = run().finally(() => {
      if (g.refill === p) g.refill = undefined;
    });
    g.refill = p;
    return p;
  }

  /** Requests this instance holds for a key, every model's grant together. */
  #held(id: string): number {
    let n = 0;
    for (const g of this.#grants.values()) if (g.c.id === id) n += g.left;
    return n;
  }

  /** The window of now, as this instance can tell it (the day by its own clock). */
  #nowWindow(c: Candidate): Window {
    const now = this.#now() - (this.#skew ?? 0);
    return {
      epoch: this.#epoch ?? "",
      day: this.#days(c)[1]!,
      minute: Math.floor(now / 60_000) * 60_000,
    };
  }

  /**
   * Counts what this instance spent of a key's day and minute in the current epoch's data (a
   * count of data Redis has lost since, or of an older day or minute, is left out).
   */
  #spent(
    c: Candidate,
    at: Window,
    requests: number,
    tokens: number,
    model: string,
    modelRequests = requests,
  ): void {
    if (at.epoch !== (this.#epoch ?? "")) return;
    let own = this.#own.get(c.id);
    if (own !== undefined && (own.epoch !== at.epoch || own.day < at.day)) own = undefined;
    if (own === undefined) {
      own = {
        c,
        ...at,
        requests: 0,
        tokens: 0,
        models: new Map(),
        minuteRequests: 0,
        minuteTokens: 0,
      };
      this.#own.set(c.id, own);
    }
    if (at.day < own.day) return;
    own.c = c;
    own.requests += requests;
    own.tokens += tokens;
    if (model !== "") own.models.set(model, (own.models.get(model) ?? 0) + modelRequests);
    if (at.minute > own.minute) {
      own.minute = at.minute;
      own.minuteRequests = 0;
      own.minuteTokens = 0;
    }
    if (at.minute === own.minute) {
      own.minuteRequests += requests;
      own.minuteTokens += tokens;
    }
  }

  /** Drops what is left of a grant (it is void): it is no longer this instance's spend. */
  #void(g: Grant): void {
    if (g.left > 0) this.#spent(g.c, grantWindow(g), -g.left, 0, g.model);
    g.left = 0;
  }

  /**
   * Takes in the epoch a reply named. A new one means Redis lost its data (it restarted
   * without persistence): every grant held is void, and what this instance had spent of each
   * key's day is added back (each instance adds its own: together, the day's counts).
   */
  #epochIs(epoch: string): void {
    const was = this.#epoch;
    if (was === epoch) return;
    // grants of the lost data are void: first, while their spends still count as current
    for (const g of this.#grants.values()) if (g.epoch === was) this.#void(g);
    this.#epoch = epoch;
    if (was === undefined) return;
    const own = [...this.#own.values()].filter((o) => o.epoch === was);
    for (const o of own) this.#own.delete(o.c.id);
    this.#restore(own);
  }

  /** Adds spends back to a Redis that lost them; those it could not are tried again. */
  #restore(own: Own[]): void {
    const epoch = this.#epoch ?? "";
    for (const o of own) {
      const day: string[] = [];
      if (o.requests > 0) day.push("r", String(o.requests));
      if (o.tokens > 0) day.push("t", String(o.tokens));
      for (const [m, n] of o.models) if (n > 0) day.push("m:" + m, String(n));
      const minute: string[] = [];
      if (o.minuteRequests > 0) minute.push("r", String(o.minuteRequests));
      if (o.minuteTokens > 0) minute.push("t", String(o.minuteTokens));
      if (day.length === 0 && minute.length === 0) continue;
      const args = [
        ...this.#days(o.c).map(String),
        String(o.day),
        String(o.minute),
        this.#deadline(),
        String(day.length / 2),
        ...day,
        ...minute,
      ];
      this.#link.run(RESTORE, [this.#base(o.c)], args).then(() => {
        // in the new data now: added back again should it be lost too
        const at = { epoch, day: o.day, minute: o.minute };
        this.#spent(o.c, at, o.requests, o.tokens, "");
        for (const [m, n] of o.models) this.#spent(o.c, at, 0, 0, m, n);
      }, () => this.#unrestored.push(o));
    }
  }

  /** Gives a grant's unused requests back to the windows they were taken in. */
  #return(g: Grant): Promise<unknown> {
    const n = g.left;
    if (n <= 0 || g.day === 0) return Promise.resolve();
    g.left = 0;
    // taken from data Redis has lost since: nothing to give back to
    if (g.epoch !== this.#epoch) return Promise.resolve();
    const args = [String(g.day), String(g.minute), g.model, String(n), g.gen, this.#deadline()];
    const c = g.c;
    const model = g.model;
    const at = grantWindow(g);
    return this.#link.run(GIVE_BACK, [this.#base(c)], args).then(
      () => this.#spent(c, at, -n, 0, model),
      // Redis still counts them: taken off when it is back
      () => this.#addOwed(c, model, -n, 0),
    );
  }

  /** Adds every key's pending tokens in one script call. */
  #flushTokens(): Promise<unknown>[] {
    if (!this.#link.up || this.#tokens.size === 0) return [];
    const pending = [...this.#tokens.values()];
    this.#tokens.clear();
    const keys: string[] = [];
    const args: string[] = [this.#deadline(), crypto.randomUUID()];
    for (const { c, n } of pending) {
      const q = c.quota;
      keys.push(this.#base(c));
      for (const b of this.#days(c)) args.push(String(b));
      args.push(String(q.tokensPerDay), String(q.tokensPerMinute), String(n));
    }
    const owe = () => {
      for (const { c, n } of pending) this.#addOwed(c, "", 0, n);
    };
    return [
      this.#link.run(TOKENS, [...keys, this.#link.prefix + "epoch"], args).then((reply) => {
        if (!Array.isArray(reply)) return;
        if (reply[0] === "late") {
          // Redis added nothing (its caller had given up, but here it is): owed
          this.#skew = this.#now() - Number(reply[1]);
          owe();
          return;
        }
        if (reply.length !== pending.length * 4 + 2) return;
        const skew = this.#now() - Number(reply[reply.length - 2]);
        this.#skew = skew;
        this.#epochIs(String(reply[reply.length - 1]));
        pending.forEach(({ c, n }, i) => {
          const [why, de, ms, ds] = reply.slice(i * 4, i * 4 + 4) as unknown[];
          this.#spent(
            c,
            { epoch: this.#epoch ?? "", day: Number(ds), minute: Number(ms) },
            0,
            n,
            "",
          );
          if (why === "" || why === undefined) return;
          const until = why === "minute_tokens" ? Number(ms) + 60_000 + skew : Number(de) + skew;
          this.#events?.refused(c, undefined, String(why), until);
        });
      }, owe),
    ];
  }

  /** Counts the instances sharing this Redis and prefix: the subscribers of its channel. */
  async #countInstances(): Promise<void> {
    this.#counted = this.#now();
    try {
      const channel = this.#link.prefix + EVENTS;
      const reply = await this.#link.command(["PUBSUB", "NUMSUB", channel]);
      const n = Array.isArray(reply) ? Number(reply[1]) : NaN;
      if (Number.isInteger(n) && n > 0) this.#instances = n;
    } catch { /* down: the last count stands */ }
  }

  #tick(): void {
    if (this.#closed) return;
    void this.#flushTokens();
    const now = this.#now();
    if (this.#link.up && now - this.#counted >= 1_000) void this.#countInstances();
    for (const [k, g] of this.#grants) {
      if (g.waiting > 0 || g.refill !== undefined) continue;
      if (g.left > 0 && (now >= g.expires || now - g.lastUsed >= this.#idleMs)) {
        void this.#return(g);
      }
      // a grant of a key no longer served (a reload) is forgotten once it is empty and idle
      if (g.left === 0 && now - g.lastUsed >= 60_000) this.#grants.delete(k);
    }
  }

  /**
   * Redis is (back) up: its epoch says whether it lost its data (then what this instance had
   * spent of the day goes back); then what was spent while it was down is added.
   */
  async #repay(): Promise<void> {
    try {
      const reply = await this.#link.run(EPOCH, [this.#link.prefix + "epoch"], [
        crypto.randomUUID(),
      ]);
      if (!Array.isArray(reply) || reply.length < 2) return;
      this.#skew = this.#now() - Number(reply[1]);
      this.#epochIs(String(reply[0]));
    } catch {
      return; // down again: when it is back
    }
    const unrestored = this.#unrestored;
    this.#unrestored = [];
    this.#restore(unrestored);
    void this.#repayOwed();
    void this.#countInstances();
  }

  /** Adds what was spent while Redis was down (on Redis's clock), one call per key and model. */
  #repayOwed(): Promise<unknown>[] {
    const owed = [...this.#owed.values()];
    this.#owed.clear();
    return owed.map((o) => {
      const args = [
        ...this.#days(o.c).map(String),
        o.model,
        String(o.n),
        String(o.tokens),
        this.#deadline(),
      ];
      const at = this.#nowWindow(o.c);
      return this.#link.run(REPAY, [this.#base(o.c)], args).then(() => {
        this.#spent(o.c, at, o.n, o.tokens, o.model);
      }, () => this.#addOwed(o.c, o.model, o.n, o.tokens));
    });
  }
}

/** A hash's counts from an HGETALL reply. */
function pairs(reply: unknown): Map<string, number> {
  return new Map(hashReply(reply).map(([k, v]) => [k, Number(v)]));
}

/** The window a grant was taken in. */
function grantWindow(g: Grant): Window {
  return { epoch: g.epoch, day: g.day, minute: g.minute };
}
