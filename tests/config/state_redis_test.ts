/**
 * @module
 * The native `state.redis` settings (issue 18): a Redis URL, its prefix and whether it is
 * required become `config.state.redis`; bad URLs and an empty prefix are refused without the
 * URL being repeated (it may hold a password); `llm-balance check` shows the URL without its
 * password.
 */

import assert from "node:assert/strict";
import { runCli, tempConfig } from "../helpers/cli.ts";
import { configParser } from "../helpers/config.ts";

const { parse, issuesOf, errorOf } = configParser(() => undefined);

const MINIMAL = "upstreams:\n  ms:\n    base_url: https://api.example/v1\n";
const PASSWORD = "s3cr3t-Pa55word";
const URL_WITH_PASSWORD = `redis://:${PASSWORD}@127.0.0.1:6379/0`;

Deno.test("state.redis: a URL alone shares state through Redis with a memory view and defaults", () => {
  const config = parse(`${MINIMAL}state: { redis: "redis://:pw@127.0.0.1:6379/0" }\n`);
  assert.deepEqual(config.state, {
    kind: "memory",
    redis: { url: "redis://:pw@127.0.0.1:6379/0", prefix: "llm-balance:", required: false },
  });
});

Deno.test("state.redis: with a path the local view is a file; prefix and redis_required are read", () => {
  const config = parse(
    `${MINIMAL}state:\n  path: state/keys.db\n  redis: redis://10.0.0.5:6380/2\n` +
      `  prefix: "prod:"\n  redis_required: true\n`,
  );
  assert.deepEqual(config.state, {
    kind: "file",
    path: "/etc/llm-balance/state/keys.db",
    redis: { url: "redis://10.0.0.5:6380/2", prefix: "prod:", required: true },
  });
  const required = parse(`${MINIMAL}state: { redis: "redis://h", redis_required: true }\n`);
  assert.equal(required.state.redis?.required, true);
  assert.equal(required.state.kind, "memory");
});

Deno.test("state.redis: TLS (rediss://), a user name, no port and no database are accepted", () => {
  for (
    const url of [
      "rediss://:pw@redis.example.com:6380/0",
      "redis://user:pw@redis.example.com",
      "redis://127.0.0.1:6379",
      "redis://localhost/",
      "redis://localhost/15",
    ]
  ) {
    assert.equal(parse(`${MINIMAL}state: { redis: "${url}" }\n`).state.redis?.url, url, url);
  }
});

Deno.test("state.redis: without redis there is no shared state", () => {
  assert.equal(parse(`${MINIMAL}state: memory\n`).state.redis, undefined);
  assert.equal(parse(`${MINIMAL}state: { path: a.db }\n`).state.redis, undefined);
  assert.equal(parse(MINIMAL).state.redis, undefined);
});

Deno.test("state.redis: bad URLs are refused naming state.redis, never repeating the URL", () => {
  const bad = [
    `http://:${PASSWORD}@x`,
    "redis://",
    `not a url ${PASSWORD}`,
    `redis://:${PASSWORD}@h/notadb`,
    `https://${PASSWORD}.example.com`,
  ];
  for (const url of bad) {
    const text = `${MINIMAL}state: { redis: ${JSON.stringify(url)} }\n`;
    const issues = issuesOf(text);
    assert.deepEqual(issues.map((i) => i.path), ["state.redis"], url);
    assert.equal(issues[0]?.line, 4, url);
    const message = errorOf(text);
    // "redis://" alone is part of what the message says is expected
    if (url !== "redis://") assert.ok(!message.includes(url), `${url} in ${message}`);
    assert.ok(!message.includes(PASSWORD), `the password in ${message}`);
    assert.match(message, /redis:\/\//, "says what is expected");
  }
  // not a string
  assert.deepEqual(issuesOf(`${MINIMAL}state: { redis: 6379 }\n`).map((i) => i.path), [
    "state.redis",
  ]);
});

Deno.test("state.redis: an empty prefix is refused; an unknown state field is named", () => {
  assert.deepEqual(issuesOf(`${MINIMAL}state: { redis: "redis://h", prefix: "" }\n`), [
    { path: "state.prefix", message: "must not be empty", line: 4 },
  ]);
  assert.deepEqual(
    issuesOf(`${MINIMAL}state: { redis: "redis://h", redis_requird: true }\n`).map((i) => i.path),
    ["state.redis_requird"],
  );
  assert.deepEqual(
    issuesOf(`${MINIMAL}state: { redis: "redis://h", redis_required: maybe }\n`).map((i) => i.path),
    ["state.redis_required"],
  );
});

function checkConfig(url: string): string {
  return `upstreams:
  ms:
    base_url: https://api.example/v1
    keys: [sk-check-key-0001]
state:
  redis: "${url}"
  prefix: "team-a:"
  redis_required: true
`;
}

Deno.test("llm-balance check shows the Redis URL with *** for its password, in text and JSON", async () => {
  const cfg = await tempConfig(checkConfig(URL_WITH_PASSWORD));
  try {
    const [text, json] = await Promise.all([
      runCli(["check", "--config", cfg.path]),
      runCli(["check", "--config", cfg.path, "--json"]),
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(json.code, 0, json.stderr);
    for (const r of [text, json]) {
      assert.ok(!r.stdout.includes(PASSWORD), `password in stdout:\n${r.stdout}`);
      assert.ok(!r.stderr.includes(PASSWORD), `password in stderr:\n${r.stderr}`);
    }
    assert.match(text.stdout, /state: .*redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/0/);
    assert.match(text.stdout, /team-a:/);
    const summary = JSON.parse(json.stdout) as { state?: unknown };
    assert.equal(typeof summary.state, "string");
    assert.match(String(summary.state), /redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/0/);
    assert.match(String(summary.state), /required/);
  } finally {
    await cfg.remove();
  }
});

Deno.test("llm-balance check hides a user name and password, and never echoes a bad URL", async () => {
  const good = await tempConfig(checkConfig(`rediss://admin:${PASSWORD}@redis.example.com:6380/1`));
  const bad = await tempConfig(checkConfig(`redis://:${PASSWORD}@h/notadb`));
  try {
    const [ok, refused, refusedJson] = await Promise.all([
      runCli(["check", "--config", good.path]),
      runCli(["check", "--config", bad.path]),
      runCli(["check", "--config", bad.path, "--json"]),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /rediss:\/\/\*\*\*:\*\*\*@redis\.example\.com:6380\/1/);
    assert.ok(!ok.stdout.includes("admin:"), ok.stdout);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /state\.redis/);
    for (const r of [ok, refused, refusedJson]) {
      assert.ok(!(r.stdout + r.stderr).includes(PASSWORD), `password in:\n${r.stdout}${r.stderr}`);
    }
  } finally {
    await good.remove();
    await bad.remove();
  }
});
