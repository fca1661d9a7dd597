/**
 * @module
 * Tests of {@linkcode RedisLink} against a real redis-server: the URL shown without its
 * password, a Redis that is not there yet, going down and coming back logged once each way,
 * commands refused while down, a script's own error leaving the link up, and a wrong password
 * that is never logged.
 */

import assert from "node:assert/strict";
import {
  type LinkLogger,
  redisDisplay,
  RedisDown,
  RedisLink,
  script,
} from "../../src/shared/link.ts";
import { hasRedis, randomPrefix, type RedisServer, withRedis } from "../helpers/redis.ts";
import { waitFor } from "../helpers/e2e.ts";

interface Line {
  level: "info" | "warn";
  msg: string;
  fields: Record<string, unknown> | undefined;
}

/** A logger that keeps every line. */
function recorder(): LinkLogger & { lines: Line[] } {
  const lines: Line[] = [];
  return {
    lines,
    info: (msg, fields) => void lines.push({ level: "info", msg, fields }),
    warn: (msg, fields) => void lines.push({ level: "warn", msg, fields }),
  };
}

/**
 * A fresh Redis and a link to it (not started yet) on a random prefix, logging to a recorder;
 * the link is closed and Redis stopped after `fn`.
 * @param options a password Redis requires; the link's URL (Redis's own by default)
 */
async function withLink(
  options: { password?: string; url?: (redis: RedisServer) => string },
  fn: (ctx: { redis: RedisServer; link: RedisLink; log: { lines: Line[] } }) => Promise<void>,
): Promise<void> {
  await withRedis(options, async (redis) => {
    const log = recorder();
    const url = options.url?.(redis) ?? redis.url;
    const link = new RedisLink({ url, prefix: randomPrefix(), logger: log });
    try {
      await fn({ redis, link, log });
    } finally {
      await link.close();
    }
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const downs = (lines: Line[]) => lines.filter((l) => /Redis is down/.test(l.msg));
const backs = (lines: Line[]) => lines.filter((l) => /Redis is back/.test(l.msg));
const unreachable = (lines: Line[]) => lines.filter((l) => /cannot be reached/.test(l.msg));

const PING = script("return redis.call('PING')");

Deno.test("redisDisplay() hides the user and the password, and never echoes what it cannot parse", () => {
  assert.equal(redisDisplay("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
  assert.equal(redisDisplay("redis://:hunter22@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
  assert.equal(
    redisDisplay("rediss://admin:hunter22@redis.example.com:6380/2"),
    "rediss://***:***@redis.example.com:6380/2",
  );
  assert.equal(redisDisplay("redis://admin@h:6379"), "redis://***@h:6379");
  const encoded = redisDisplay("redis://:p%40ss%2Fw0rd@h:6379/0");
  assert.ok(!encoded.includes("p%40ss") && !encoded.includes("p@ss"), encoded);
  for (const bad of ["", "not a url hunter22", "://hunter22@", "redis://:hunter22@[::bad"]) {
    const shown = redisDisplay(bad);
    assert.ok(!shown.includes("hunter22"), shown);
    assert.match(shown, /unparsable/);
  }
});

Deno.test({
  name: "link: started before Redis is there, it warns once and comes up (one 'back') when it is",
  ignore: !hasRedis,
  fn: () =>
    withLink({}, async ({ redis, link, log }) => {
      await redis.kill(); // its port: nothing listens there now
      const t0 = performance.now();
      assert.equal(await link.start(300), false);
      assert.ok(performance.now() - t0 < 1500, "start() gave up within its wait");
      assert.equal(link.up, false);
      assert.equal(unreachable(log.lines).length, 1);
      assert.equal(log.lines.length, 1, JSON.stringify(log.lines));
      assert.equal(log.lines[0]?.level, "warn");
      await assert.rejects(link.run(PING, [], []), RedisDown);
      await sleep(400); // failed reconnections meanwhile are not logged
      assert.equal(log.lines.length, 1, JSON.stringify(log.lines));
      await redis.restart();
      await waitFor(() => link.up, "the link up", 5000);
      assert.equal(backs(log.lines).length, 1);
      assert.equal(backs(log.lines)[0]?.level, "info");
      assert.equal(downs(log.lines).length, 0);
      assert.equal(await link.run(PING, [], []), "PONG");
    }),
});

Deno.test({
  name: "link: a kill logs exactly one 'down', a restart exactly one 'back'",
  ignore: !hasRedis,
  fn: () =>
    withLink({}, async ({ redis, link, log }) => {
      const changes: boolean[] = [];
      link.onChange((up) => changes.push(up));
      assert.equal(await link.start(), true);
      assert.equal(log.lines.length, 0, "coming up the first time is not news");
      assert.equal(link.downs, 0);
      assert.equal(await link.run(PING, [], []), "PONG");
      await redis.kill();
      await waitFor(() => !link.up, "the link down", 5000);
      await assert.rejects(link.run(PING, [], []), RedisDown);
      await assert.rejects(link.command(["PING"]), RedisDown);
      await sleep(500); // node-redis fails to reconnect several times meanwhile
      assert.equal(downs(log.lines).length, 1, JSON.stringify(log.lines));
      assert.equal(downs(log.lines)[0]?.level, "warn");
      assert.equal(link.downs, 1);
      await redis.restart();
      await waitFor(() => link.up, "the link back", 5000);
      await sleep(100);
      assert.equal(backs(log.lines).length, 1, JSON.stringify(log.lines));
      assert.equal(downs(log.lines).length, 1);
      assert.equal(log.lines.length, 2, JSON.stringify(log.lines));
      assert.deepEqual(changes, [true, false, true]);
      // a script Redis lost with its data is sent again in full
      assert.equal(await link.run(PING, [], []), "PONG");
      assert.equal(await link.command(["PING"]), "PONG");
    }),
});

Deno.test({
  name: "link: a script's own error rejects without taking the link down",
  ignore: !hasRedis,
  fn: () =>
    withLink({}, async ({ link, log }) => {
      assert.equal(await link.start(), true);
      const boom = script("return redis.error_reply('boom: a bug in the script')");
      await assert.rejects(link.run(boom, [], []), /boom/);
      const wrongType = script(
        "redis.call('SET', KEYS[1], 'x'); return redis.call('HGET', KEYS[1], 'f')",
      );
      await assert.rejects(link.run(wrongType, [`${link.prefix}k`], []));
      await assert.rejects(link.command(["NOSUCHCOMMAND"]));
      assert.equal(link.up, true);
      assert.equal(link.downs, 0);
      assert.equal(log.lines.length, 0, JSON.stringify(log.lines));
      assert.equal(await link.run(PING, [], []), "PONG");
      const echo = script("return {KEYS[1], ARGV[1]}");
      assert.deepEqual(await link.run(echo, ["a"], ["b"]), ["a", "b"]);
    }),
});

Deno.test({
  name: "link: with a wrong password it never comes up, and no line logged holds the password",
  ignore: !hasRedis,
  fn: async () => {
    const wrong = "wr0ng-Pa55word";
    await withLink({
      password: "the-right-one-42",
      url: (redis) => `redis://:${wrong}@127.0.0.1:${redis.port}/0`,
    }, async ({ redis, link, log }) => {
      assert.equal(await link.start(500), false);
      await sleep(700);
      assert.equal(link.up, false);
      await assert.rejects(link.run(PING, [], []), RedisDown);
      assert.ok(log.lines.length >= 1, "it said Redis cannot be reached");
      assert.equal(backs(log.lines).length, 0);
      for (const l of log.lines) {
        const text = l.msg + JSON.stringify(l.fields ?? {});
        assert.ok(!text.includes(wrong), `password logged: ${text}`);
      }
      assert.ok(!link.display.includes(wrong), link.display);
      assert.equal(link.display, `redis://:***@127.0.0.1:${redis.port}/0`);
      assert.equal(link.redact(`AUTH failed for ${wrong} (${wrong})`), "AUTH failed for *** (***)");
    });
  },
});

Deno.test({
  name: "link: redact() removes the password as written and URL-decoded",
  ignore: !hasRedis,
  fn: () =>
    withLink({ password: "p@ss/w0rd" }, async ({ redis, link }) => {
      assert.match(redis.url, /p%40ss%2Fw0rd/);
      assert.equal(await link.start(), true, "the encoded password is the server's");
      assert.equal(link.redact("x p@ss/w0rd y p%40ss%2Fw0rd z"), "x *** y *** z");
      assert.equal(link.redact("nothing secret"), "nothing secret");
      assert.ok(!link.display.includes("w0rd"), link.display);
    }),
});
