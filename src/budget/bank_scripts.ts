/**
 * @module
 * The Lua scripts of the shared budget bank (`bank.ts`). Every count lives in Redis under the
 * key's prefix (`<prefix>b:<id>:`): `d:<day start>` (requests `r`, tokens `t`, per model
 * `m:<model>`), `m:<minute start>` (`r`, `t`) and `gen` (grows with each operator reset). A day
 * is chosen by Redis's clock among four boundaries the instance sends (the days around its own
 * now, by the key's zone and reset time). A script that consumes and reaches Redis after its
 * caller gave up (a deadline in Redis's time, 0 for none) does nothing: nobody would know.
 */

import { script } from "../shared/link.ts";

/** How long a day's counts are kept after the day ends. */
const DAY_TTL_MS = 86_400_000;

/** How long a minute's counts are kept, in ms. */
const MINUTE_TTL_MS = 120_000;

/** Reads Redis's clock: sets `now` (epoch ms) and `ms` (the start of its minute). */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = math.floor(now / 60000) * 60000`;

/** Picks the day that holds `now` among ARGV[a+1..a+4]: sets `ds`, `de`. */
const PICK_DAY = (a: number | string) => `
local ds, de = tonumber(ARGV[${a} + 2]), tonumber(ARGV[${a} + 3])
for i = ${a} + 1, ${a} + 3 do
  local a, b = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if now >= a and now < b then ds, de = a, b end
end`;

/** Reads Redis's clock and picks the day among ARGV[a+1..a+4]: `now`, `ms`, `ds`, `de`. */
const DAY = (a: number) => NOW + PICK_DAY(a);

/** Returns `late` when Redis's now is past the deadline in ARGV[a] (0: none). */
const DEADLINE = (a: number, late: string) => `
local deadline = tonumber(ARGV[${a}])
if deadline > 0 and now > deadline then return ${late} end`;

/** Reads the epoch in the key `key` (a Lua expression), or sets it from ARGV[a]: sets `epoch`. */
const EPOCH_OF = (key: string, a: number) => `
local epoch = redis.call('GET', ${key})
if not epoch then
  epoch = ARGV[${a}]
  redis.call('SET', ${key}, epoch)
end`;

const ADD_FLOORED = `
local function add(k, f, by)
  if by == 0 then return end
  if redis.call('HINCRBY', k, f, by) < 0 then redis.call('HSET', k, f, 0) end
end`;

/**
 * Takes up to `want` requests for one key and model from every window's limits, at most an
 * eighth of what is left of the tightest.
 * KEYS: the key's prefix, `<prefix>epoch`. ARGV: four day boundaries; limits (requests per day,
 * per model per day, per minute, tokens per day, per minute); the model ("" for none); want;
 * deadline; an epoch id to set when there is none; the epoch the caller knows ("" for none).
 * Returns: granted, why refused ("late" past the deadline, "epoch" when the caller's epoch is
 * not Redis's: it must add back what it spent first), day start, day end, minute start, Redis now, the counts after (day requests,
 * model requests, minute requests, day tokens, minute tokens), the key's generation, the epoch.
 */
export const TAKE = script(`${DAY(0)}${EPOCH_OF("KEYS[2]", 13)}
local gen = redis.call('GET', KEYS[1] .. 'gen') or '0'
${DEADLINE(12, "{0, 'late', ds, de, 0, now, 0, 0, 0, 0, 0, gen, epoch}")}
-- data the caller did not know (Redis lost its data): it adds back what it spent first
if ARGV[14] ~= '' and ARGV[14] ~= epoch then
  return {0, 'epoch', ds, de, 0, now, 0, 0, 0, 0, 0, gen, epoch}
end
local dk = KEYS[1] .. 'd:' .. ds
local mk = KEYS[1] .. 'm:' .. ms
local rpd, mrpd, rpm = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local tpd, tpm = tonumber(ARGV[8]), tonumber(ARGV[9])
local model, want = ARGV[10], tonumber(ARGV[11])
local d = redis.call('HMGET', dk, 'r', 't', 'm:' .. model)
local n = redis.call('HMGET', mk, 'r', 't')
local dr, dt, mr = tonumber(d[1] or '0'), tonumber(d[2] or '0'), 0
if model ~= '' then mr = tonumber(d[3] or '0') end
local nr, nt = tonumber(n[1] or '0'), tonumber(n[2] or '0')
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
  redis.call('PEXPIRE', mk, ${MINUTE_TTL_MS})
end
return {grant, why, ds, de, ms, now, dr, mr, nr, dt, nt, gen, epoch}`);

/**
 * Gives back what a grant did not use, to the windows it was taken in, unless the key was reset
 * since (its generation changed). KEYS[1]: the key's prefix. ARGV: day start, minute start,
 * model ("" for none), requests, generation, deadline. Never below 0.
 */
export const GIVE_BACK = script(`${ADD_FLOORED}${NOW}${DEADLINE(6, "0")}
if (redis.call('GET', KEYS[1] .. 'gen') or '0') ~= ARGV[5] then return 0 end
local dk = KEYS[1] .. 'd:' .. ARGV[1]
local mk = KEYS[1] .. 'm:' .. ARGV[2]
local n = -tonumber(ARGV[4])
if redis.call('EXISTS', dk) == 1 then
  add(dk, 'r', n)
  if ARGV[3] ~= '' then add(dk, 'm:' .. ARGV[3], n) end
end
if redis.call('EXISTS', mk) == 1 then add(mk, 'r', n) end
return 1`);

/**
 * Adds what an instance spent while Redis was down to the windows that hold Redis's now (or,
 * negative, takes off a request given back; never below 0).
 * KEYS[1]: the key's prefix. ARGV: four day boundaries, the model ("" for none), requests,
 * tokens, deadline.
 */
export const REPAY = script(`${DAY(0)}${ADD_FLOORED}
${DEADLINE(8, "0")}
local dk = KEYS[1] .. 'd:' .. ds
local mk = KEYS[1] .. 'm:' .. ms
local n, tok = tonumber(ARGV[6]), tonumber(ARGV[7])
add(dk, 'r', n)
if ARGV[5] ~= '' then add(dk, 'm:' .. ARGV[5], n) end
add(mk, 'r', n)
add(dk, 't', tok)
add(mk, 't', tok)
redis.call('PEXPIREAT', dk, de + ${DAY_TTL_MS})
redis.call('PEXPIRE', mk, ${MINUTE_TTL_MS})
return 1`);

/**
 * Adds back what an instance had spent of a key's day and minute in a Redis that lost its data,
 * when Redis's day (minute) is still that day (minute): every instance adds its own, together
 * the counts. KEYS[1]: the key's prefix. ARGV: four day boundaries, the day, the minute, the
 * deadline, how many day pairs, the day's field and count pairs (`r`, `t`, `m:<model>`), then
 * the minute's (`r`, `t`).
 */
export const RESTORE = script(`${DAY(0)}
${DEADLINE(7, "0")}
local dk = KEYS[1] .. 'd:' .. ds
local mk = KEYS[1] .. 'm:' .. ms
local nd = tonumber(ARGV[8])
if ds == tonumber(ARGV[5]) then
  for i = 9, 8 + 2 * nd, 2 do redis.call('HINCRBY', dk, ARGV[i], tonumber(ARGV[i + 1])) end
  redis.call('PEXPIREAT', dk, de + ${DAY_TTL_MS})
end
if ms == tonumber(ARGV[6]) then
  for i = 9 + 2 * nd, #ARGV - 1, 2 do redis.call('HINCRBY', mk, ARGV[i], tonumber(ARGV[i + 1])) end
  redis.call('PEXPIRE', mk, ${MINUTE_TTL_MS})
end
return 1`);

/**
 * Adds tokens to the windows that hold Redis's now, for many keys at once. KEYS: the keys'
 * prefixes, then `<prefix>epoch`. ARGV[1]: the deadline; ARGV[2]: an epoch id to set when there
 * is none; then seven per key: four day boundaries, tokens per day, per minute, the tokens.
 * Returns, per key, why it is full ("" when not), its day end, the minute start and its day
 * start; then Redis's now and the epoch ({"late", now} past the deadline).
 */
export const TOKENS = script(`${NOW}${DEADLINE(1, "{'late', now}")}
${EPOCH_OF("KEYS[#KEYS]", 2)}
local out = {}
for k = 1, #KEYS - 1 do
  local a0 = 2 + (k - 1) * 7${PICK_DAY("a0")}
  local dk = KEYS[k] .. 'd:' .. ds
  local mk = KEYS[k] .. 'm:' .. ms
  local n = tonumber(ARGV[a0 + 7])
  local dt = redis.call('HINCRBY', dk, 't', n)
  redis.call('PEXPIREAT', dk, de + ${DAY_TTL_MS})
  local nt = redis.call('HINCRBY', mk, 't', n)
  redis.call('PEXPIRE', mk, ${MINUTE_TTL_MS})
  local why = ''
  if tonumber(ARGV[a0 + 5]) > 0 and dt >= tonumber(ARGV[a0 + 5]) then why = 'day_tokens'
  elseif tonumber(ARGV[a0 + 6]) > 0 and nt >= tonumber(ARGV[a0 + 6]) then why = 'minute_tokens' end
  out[#out + 1] = why
  out[#out + 1] = de
  out[#out + 1] = ms
  out[#out + 1] = ds
end
out[#out + 1] = now
out[#out + 1] = epoch
return out`);

/** Reads a key's counts in the windows that hold Redis's now. KEYS[1]: the key's prefix. */
export const READ = script(`${DAY(0)}
return {redis.call('HGETALL', KEYS[1] .. 'd:' .. ds), redis.call('HGETALL', KEYS[1] .. 'm:' .. ms)}`);

/**
 * Names the data Redis holds: an id set when the prefix is first used, gone when Redis loses
 * its data (a restart without persistence). KEYS[1]: `<prefix>epoch`. ARGV[1]: an id to set
 * when there is none. Returns the id in force and Redis's now.
 */
export const EPOCH = script(`${NOW}${EPOCH_OF("KEYS[1]", 1)}
return {epoch, now}`);
