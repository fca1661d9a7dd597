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
 * seen); what was spent meanwhile is added to Redis when it comes back.
 */

import type { Candidate } from "../plugin.ts";
import type { QuotaConfig } from "../config/types.ts";
import { type RedisLink, script } from "../shared/link.ts";
import { dayStart, nextReset } from "./reset.ts";

const DAY_TTL_MS = 86_400_000;
/** The largest batch of requests an instance takes at once. */
const MAX_BATCH = 100;
/** Longest wait of a request for its key's grant while others take what Redis grants. */
const WAIT_MS = 5_000;

/**
 * Takes up to ARGV[11] requests for one key and model from every window's limits, unless Redis's
 * now is past ARGV[12] (when not 0).
 * KEYS[1]: the key's prefix. ARGV: four day boundaries, limits (requests per day, per model per
 * day, per minute, tokens per day, per minute), the model ("" for none), the requests wanted,
 * the deadline (Redis's epoch ms, 0 for none).
 * Returns: granted, why refused, day start, day end, minute start, Redis now, and the windows'
 * counts after (day requests, model requests, minute requests, day tokens, minute tokens).
 */
const TAKE = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ds, de = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, 3 do
  local a, b = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if now >= a and now < b then ds, de = a, b end
end
local dk = KEYS[1] .. 'd:' .. ds
local ms = math.floor(now / 60000) * 60000
local mk = KEYS[1] .. 'm:' .. ms
local rpd, mrpd, rpm = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tpd, tpm = tonumber(ARGV[8]), tonumber(ARGV[9])
local model, want = ARGV[10], tonumber(ARGV[11])
-- a call that waited past the instance's patience (Redis was paused) grants nothing: nobody
-- would use it
local deadline = tonumber(ARGV[12])
if deadline > 0 and now > deadline then return {0, 'late', ds, de, 0, now, 0, 0, 0, 0, 0} end
local dr = tonumber(redis.call('HGET', dk, 'r') or '0')
local dt = tonumber(redis.call('HGET', dk, 't') or '0')
local mr = 0
if model ~= '' then mr = tonumber(redis.call('HGET', dk, 'm:' .. model) or '0') end
local nr = tonumber(redis.call('HGET', mk, 'r') or '0')
local nt = tonumber(redis.call('HGET', mk, 't') or '0')
local grant, why = want, ''
local function cap(limit, used, reason)
  if limit <= 0 then return end
  local left = limit - used
  if left <= 0 then
    grant = 0
    if why == '' then why = reason end
  else
    local most = math.max(1, math.floor(left / 8))
    if most < grant then grant = most end
  end
end
cap(rpd, dr, 'day')
if model ~= '' then cap(mrpd, mr, 'model') end
cap(rpm, nr, 'minute')
cap(tpd, dt, 'day_tokens')
cap(tpm, nt, 'minute_tokens')
if grant > 0 then
  dr = redis.call('HINCRBY', dk, 'r', grant)
  if model ~= '' then mr = redis.call('HINCRBY', dk, 'm:' .. model, grant) end
  redis.call('PEXPIREAT', dk, de + ${DAY_TTL_MS})
  nr = redis.call('HINCRBY', mk, 'r', grant)
  redis.call('PEXPIRE', mk, 120000)
end
return {grant, why, ds, de, ms, now, dr, mr, nr, dt, nt}`);

/**
 * Adds to (or, negative, gives back to) the windows a grant was taken in. KEYS[1]: the key's
 * prefix. ARGV: day start, minute start, model ("" for none), requests, tokens. Never below 0.
 */
const ADD = script(`
local dk = KEYS[1] .. 'd:' .. ARGV[1]
local mk = KEYS[1] .. 'm:' .. ARGV[2]
local n, tok = tonumber(ARGV[4]), tonumber(ARGV[5])
local function add(k, f, by)
  if by == 0 then return end
  local v = redis.call('HINCRBY', k, f, by)
  if v < 0 then redis.call('HSET', k, f, 0) end
end
local exists = redis.call('EXISTS', dk) == 1
add(dk, 'r', n)
if ARGV[3] ~= '' then add(dk, 'm:' .. ARGV[3], n) end
add(dk, 't', tok)
if not exists then redis.call('PEXPIRE', dk, ${2 * DAY_TTL_MS}) end
if redis.call('EXISTS', mk) == 1 or n > 0 or tok > 0 then
  add(mk, 'r', n)
  add(mk, 't', tok)
  redis.call('PEXPIRE', mk, 120000)
end
return 1`);

/**
 * Adds what an instance spent while Redis was down to the windows that hold Redis's now (or,
 * negative, takes off a request given back; never below 0).
 * KEYS[1]: the key's prefix. ARGV: four day boundaries, the model ("" for none), requests,
 * tokens.
 */
const REPAY = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ds, de = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, 3 do
  local a, b = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if now >= a and now < b then ds, de = a, b end
end
local dk = KEYS[1] .. 'd:' .. ds
local mk = KEYS[1] .. 'm:' .. (math.floor(now / 60000) * 60000)
local n, tok = tonumber(ARGV[6]), tonumber(ARGV[7])
local function add(k, f, by)
  if redis.call('HINCRBY', k, f, by) < 0 then redis.call('HSET', k, f, 0) end
end
if n ~= 0 then
  add(dk, 'r', n)
  if ARGV[5] ~= '' then add(dk, 'm:' .. ARGV[5], n) end
  add(mk, 'r', n)
end
if tok > 0 then
  redis.call('HINCRBY', dk, 't', tok)
  redis.call('HINCRBY', mk, 't', tok)
end
redis.call('PEXPIREAT', dk, de + ${DAY_TTL_MS})
redis.call('PEXPIRE', mk, 120000)
return 1`);

/**
 * Adds tokens to the windows that hold Redis's now, for many keys at once. KEYS: the keys'
 * prefixes. ARGV, seven per key: four day boundaries, tokens per day, per minute, the tokens.
 * Returns, per key, why it is full ("" when not), its day end and the minute start; then
 * Redis's now.
 */
const TOKENS = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = math.floor(now / 60000) * 60000
local out = {}
for k = 1, #KEYS do
  local a0 = (k - 1) * 7
  local ds, de = tonumber(ARGV[a0 + 2]), tonumber(ARGV[a0 + 3])
  for i = 1, 3 do
    local a, b = tonumber(ARGV[a0 + i]), tonumber(ARGV[a0 + i + 1])
    if now >= a and now < b then ds, de = a, b end
  end
  local dk = KEYS[k] .. 'd:' .. ds
  local mk = KEYS[k] .. 'm:' .. ms
  local n = tonumber(ARGV[a0 + 7])
  local dt = redis.call('HINCRBY', dk, 't', n)
  redis.call('PEXPIREAT', dk, de + ${DAY_TTL_MS})
  local nt = redis.call('HINCRBY', mk, 't', n)
  redis.call('PEXPIRE', mk, 120000)
  local why = ''
  if tonumber(ARGV[a0 + 5]) > 0 and dt >= tonumber(ARGV[a0 + 5]) then why = 'day_tokens'
  elseif tonumber(ARGV[a0 + 6]) > 0 and nt >= tonumber(ARGV[a0 + 6]) then why = 'minute_tokens' end
  out[#out + 1] = why
  out[#out + 1] = de
  out[#out + 1] = ms
end
out[#out + 1] = now
return out`);

/** Reads a key's counts in the windows that hold Redis's now. KEYS[1]: the key's prefix. */
const READ = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ds = tonumber(ARGV[2])
for i = 1, 3 do
  if now >= tonumber(ARGV[i]) and now < tonumber(ARGV[i + 1]) then ds = tonumber(ARGV[i]) end
end
local ms = math.floor(now / 60000) * 60000
return {redis.call('HGETALL', KEYS[1] .. 'd:' .. ds), redis.call('HGETALL', KEYS[1] .. 'm:' .. ms)}`);

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
  refill: Promise<void> | undefined;
  /** Why Redis refused the last top-up ("" when it did not). */
  refused: string;
}

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
      if (up) this.#repay();
      else this.#drop();
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
   * @returns true when the grant had it; otherwise a promise of one script call: true when
   *   Redis granted it (or is down: the book decides alone), false when Redis refused it (the
   *   book was told why)
   */
  take(c: Candidate, model: string | undefined): true | Promise<boolean> {
    const q = c.quota;
    if (!countsRequests(q)) return true;
    const m = model !== undefined && q.modelRequestsPerDay > 0 ? model : "";
    const g = this.#grant(c, m);
    const now = this.#now();
    if (g.left > 0 && now < g.expires) {
      g.left--;
      g.lastUsed = now;
      if (g.left * 2 <= g.batch && g.refill === undefined) void this.#topUp(g);
      return true;
    }
    return this.#wait(g);
  }

  async #wait(g: Grant): Promise<boolean> {
    g.waiting++;
    try {
      // each round either grants (others waiting may take it first) or refuses: it ends
      const until = this.#now() + WAIT_MS;
      while (this.#now() < until) {
        const now = this.#now();
        if (g.left > 0 && now < g.expires) {
          g.left--;
          g.lastUsed = now;
          return true;
        }
        if (!this.#link.up) {
          // down while it waited: the book decides alone, and Redis is told when it is back
          this.owe(g.c, g.model === "" ? undefined : g.model);
          return true;
        }
        await (g.refill ?? this.#topUp(g));
        if (g.refused !== "" && (g.left <= 0 || this.#now() >= g.expires)) return false;
      }
      // so many waited that the grants went to others all this time: not this key
      return false;
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
    if (g !== undefined && this.#now() < g.expires) g.left++;
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
    const m = model !== undefined && q.modelRequestsPerDay > 0 ? model : "";
    const k = c.id + "\n" + m;
    const o = this.#owed.get(k);
    if (o === undefined) this.#owed.set(k, { c, model: m, n: 1, tokens: 0 });
    else o.n++;
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
    if (!this.#link.up) return;
    const args = [...this.#days(c).map(String), m, "-1", "0"];
    this.#link.run(REPAY, [this.#base(c)], args).catch(() => {});
  }

  /**
   * Clears a key's counters in Redis (an operator's reset) and the grants held here.
   * @param c the key
   */
  async reset(c: Candidate): Promise<void> {
    for (const [k, g] of this.#grants) if (g.c.id === c.id) this.#grants.delete(k);
    this.#tokens.delete(c.id);
    for (const [k, o] of this.#owed) if (o.c.id === c.id) this.#owed.delete(k);
    const base = this.#base(c);
    const match = base.replace(/[*?[\]\\]/g, "\\$&") + "*";
    try {
      // SCAN, not KEYS: a shared Redis may hold many keys, and KEYS blocks it while it looks
      let cursor = "0";
      for (let rounds = 0; rounds < 10_000; rounds++) {
        const reply = await this.#link.command(["SCAN", cursor, "MATCH", match, "COUNT", "1000"]);
        if (!Array.isArray(reply) || reply.length < 2) break;
        cursor = String(reply[0]);
        const keys = Array.isArray(reply[1]) ? reply[1].map(String) : [];
        if (keys.length > 0) await this.#link.command(["DEL", ...keys]);
        if (cursor === "0") break;
      }
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
    const [b0, b1, b2, b3] = this.#days(c);
    try {
      const reply = await this.#link.run(READ, [this.#base(c)], [b0, b1, b2, b3].map(String));
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

  /** Gives back every grant, adds pending tokens, and stops. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    const sends: Promise<unknown>[] = [];
    for (const g of this.#grants.values()) sends.push(this.#return(g));
    sends.push(...this.#flushTokens());
    await Promise.allSettled(sends);
  }

  #grant(c: Candidate, model: string): Grant {
    const k = c.id + "\n" + model;
    let g = this.#grants.get(k);
    if (g !== undefined && g.c !== c) {
      // the same key after a reload: what it holds stays with it (its limits may have changed)
      g.c = c;
      g.batch = batchFor(c.quota);
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
      };
      this.#grants.set(k, g);
    }
    return g;
  }

  #base(c: Candidate): string {
    return `${this.#link.prefix}b:${c.id}:`;
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
  #topUp(g: Grant): Promise<void> {
    const run = async () => {
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
        // past the link's command timeout the caller has given up: Redis's clock, by the skew
        // last seen
        String(this.#skew === undefined ? 0 : this.#now() + this.#link.timeoutMs - this.#skew),
      ];
      let reply: unknown;
      try {
        reply = await this.#link.run(TAKE, [this.#base(c)], args);
      } catch {
        return; // down or slow: the book decides alone meanwhile
      }
      if (!Array.isArray(reply) || reply.length < 11 || this.#closed) return;
      // too late by Redis's clock (a skew misjudged): nothing granted, nothing refused
      if (reply[1] === "late") return;
      const [granted, , ds, de, ms, redisNow, dr, mr, nr, dt, nt] = reply.map((v, i) =>
        i === 1 ? 0 : Number(v)
      ) as number[];
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
      }
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

  /** Gives a grant's unused requests back to the windows they were taken in. */
  #return(g: Grant): Promise<unknown> {
    const n = g.left;
    if (n <= 0 || g.day === 0) return Promise.resolve();
    g.left = 0;
    const args = [String(g.day), String(g.minute), g.model, String(-n), "0"];
    return this.#link.run(ADD, [this.#base(g.c)], args).catch(() => {});
  }

  /** Adds every key's pending tokens in one script call. */
  #flushTokens(): Promise<unknown>[] {
    if (!this.#link.up || this.#tokens.size === 0) return [];
    const pending = [...this.#tokens.values()];
    this.#tokens.clear();
    const keys: string[] = [];
    const args: string[] = [];
    for (const { c, n } of pending) {
      const q = c.quota;
      keys.push(this.#base(c));
      for (const b of this.#days(c)) args.push(String(b));
      args.push(String(q.tokensPerDay), String(q.tokensPerMinute), String(n));
    }
    return [
      this.#link.run(TOKENS, keys, args).then((reply) => {
        if (!Array.isArray(reply) || reply.length !== pending.length * 3 + 1) return;
        const skew = this.#now() - Number(reply[reply.length - 1]);
        pending.forEach(({ c }, i) => {
          const why = String(reply[i * 3]);
          if (why === "") return;
          const until = why === "minute_tokens"
            ? Number(reply[i * 3 + 2]) + 60_000 + skew
            : Number(reply[i * 3 + 1]) + skew;
          this.#events?.refused(c, undefined, why, until);
        });
      }, () => {
        // not added: owed until Redis is back
        for (const { c, n } of pending) {
          const k = c.id + "\n";
          const o = this.#owed.get(k);
          if (o === undefined) this.#owed.set(k, { c, model: "", n: 0, tokens: n });
          else o.tokens += n;
        }
      }),
    ];
  }

  #tick(): void {
    if (this.#closed) return;
    void this.#flushTokens();
    const now = this.#now();
    for (const [k, g] of this.#grants) {
      if (g.waiting > 0 || g.refill !== undefined) continue;
      if (g.left > 0 && (now >= g.expires || now - g.lastUsed >= this.#idleMs)) {
        void this.#return(g);
      }
      // a grant of a key no longer served (a reload) is forgotten once it is empty and idle
      if (g.left === 0 && now - g.lastUsed >= 60_000) this.#grants.delete(k);
    }
  }

  /** Redis went down: grants stay usable until their windows end (they were taken). */
  #drop(): void {}

  /** Redis is back: adds what was spent meanwhile. */
  #repay(): void {
    const owed = [...this.#owed.values()];
    this.#owed.clear();
    for (const o of owed) {
      // Redis's clock picks the day, as for every other count
      const args = [...this.#days(o.c).map(String), o.model, String(o.n), String(o.tokens)];
      this.#link.run(REPAY, [this.#base(o.c)], args).catch(() => {
        const k = o.c.id + "\n" + o.model;
        const again = this.#owed.get(k);
        if (again === undefined) this.#owed.set(k, o);
        else {
          again.n += o.n;
          again.tokens += o.tokens;
        }
      });
    }
  }
}

function pairs(reply: unknown): Map<string, number> {
  const out = new Map<string, number>();
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), Number(reply[i + 1]));
  } else if (reply !== null && typeof reply === "object") {
    for (const [k, v] of Object.entries(reply)) out.set(k, Number(v));
  }
  return out;
}
