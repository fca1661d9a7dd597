/**
 * @module
 * What redaction costs: `deno bench -A tests/bench/redact_bench.ts`. A log line written with
 * fields (the whole line scanned), the per-request line (only its outside values scanned), an
 * error body with an escaped key, and, for the decision not to scan successful answers, a
 * typical chat completion body and an upstream's response headers. With 3 keys and with 10,000.
 * `REDACT_SRC=/other/src` measures another copy of `src/` (e.g. the code before a change).
 */

import type { Logger as LoggerType } from "../../src/logger.ts";

const src = Deno.env.get("REDACT_SRC") ?? new URL("../../src", import.meta.url).href;
const { Logger } = (await import(`${src}/logger.ts`)) as {
  Logger: typeof LoggerType;
};

/** A logger knowing `n` keys shaped like OpenAI's (`sk-proj-` and 40 random characters). */
function loggerWith(n: number): LoggerType {
  const log = new Logger({ sink: () => {}, now: () => 0 });
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let seed = 1;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % alphabet.length;
  const secrets = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    let key = "sk-proj-";
    for (let j = 0; j < 40; j++) key += alphabet[next()];
    secrets.set(key, `sk-p...${key.slice(-4)}`);
  }
  log.setSecrets(secrets);
  return log;
}

const small = loggerWith(3);
const large = loggerWith(10_000);
const chatBody = JSON.stringify({
  id: "chatcmpl-abc123",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-4o-mini-2024-07-18",
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: "The quick brown fox jumps over the lazy dog. ".repeat(30),
    },
    finish_reason: "stop",
  }],
  usage: { prompt_tokens: 12, completion_tokens: 300, total_tokens: 312 },
});
const escapedBody = JSON.stringify({
  error: { message: "Incorrect API key provided: sk\\/proj-\\u0030000abcdefabcdef0123", code: 401 },
});
const headerValues = [
  "application/json",
  "req_0123456789abcdef0123456789abcdef",
  "org-abcdefghijklmnopqrstuvwx",
  "2024-06-01",
  "1234",
  "10000",
  "9999",
  "2000000",
  "1999000",
  "6ms",
  "30ms",
  "chatcmpl-abc123",
  "nosniff",
  "max-age=31536000; includeSubDomains; preload",
  "8f3b2c1d0e9a7b6c-SJC",
  'h3=":443"; ma=86400',
];

for (const [name, log] of [["3 keys", small], ["10,000 keys", large]] as const) {
  Deno.bench(`log line with fields, ${name}`, { group: `line ${name}` }, () => {
    log.info("upstream attempt failed", {
      request_id: "0193f1c2-7a3b-7c4d-8e5f-6a7b8c9d0e1f",
      upstream: "openai",
      key: "sk-p...wxyz",
      attempt: 1,
      max_attempts: 3,
      class: "server",
      status: 500,
      consecutive_failures: 1,
    });
  });
  Deno.bench(`request line (outside values only), ${name}`, { group: `line ${name}` }, () => {
    log.scrubbedRecord({
      time: log.timeText(),
      level: "info",
      msg: "request",
      request_id: "0193f1c2-7a3b-7c4d-8e5f-6a7b8c9d0e1f",
      method: "POST",
      path: log.redact("/v1/chat/completions"),
      model: log.redact("gpt-4o-mini"),
      upstream: "openai",
      key: "sk-p...wxyz",
      status: 200,
      duration_ms: 12.34,
    });
  });
  Deno.bench(`error body with an escaped key, ${name}`, { group: `body ${name}` }, () => {
    log.redact(escapedBody);
  });
  Deno.bench(`chat completion body (${chatBody.length} chars), ${name}`, {
    group: `body ${name}`,
  }, () => {
    log.redact(chatBody);
  });
  Deno.bench(`${headerValues.length} response header values, ${name}`, {
    group: `body ${name}`,
  }, () => {
    for (const v of headerValues) log.redact(v);
  });
}
