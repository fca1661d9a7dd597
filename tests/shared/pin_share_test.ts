/**
 * @module
 * Tests of pins told between instances, over a real Redis.
 */

import assert from "node:assert/strict";
import { RedisLink } from "../../src/shared/link.ts";
import { PINS, SharedPins } from "../../src/shared/pin_share.ts";
import { hasRedis, randomPrefix, withRedis } from "../helpers/redis.ts";

const quiet = { info: () => {}, warn: () => {} };

Deno.test({
  name: "SharedPins tells every instance, its own included, in Redis's order; ignores junk",
  ignore: !hasRedis,
  fn: () =>
    withRedis(async (redis) => {
      const prefix = randomPrefix();
      const links = [0, 1].map(() => new RedisLink({ url: redis.url, prefix, logger: quiet }));
      try {
        const heard: [string, number, string, string][][] = [[], []];
        const pins = links.map((link, i) => {
          const p = new SharedPins(link);
          p.listen((pool, hash, id, kind) => heard[i]!.push([pool, hash, id, kind]));
          return p;
        });
        await Promise.all(links.map((l) => l.start()));
        await Promise.all(pins.map((p) => p.start()));
        pins[0]!.publish("*", 12345, "up:aaa", "new");
        pins[1]!.publish("gpt-4o", 2 ** 52, "up:bbb", "moved");
        // junk on the channel is ignored
        await links[0]!.command(["PUBLISH", prefix + PINS, "not json"]);
        await links[0]!.command(["PUBLISH", prefix + PINS, '["*", 1.5, "x", "n"]']);
        await links[0]!.command(["PUBLISH", prefix + PINS, '["*", 1, "x"]']);
        await links[0]!.command(["PUBLISH", prefix + PINS, `["*", 1, "${"x".repeat(2000)}", "n"]`]);
        const deadline = Date.now() + 3000;
        while ((heard[0]!.length < 2 || heard[1]!.length < 2) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(heard[0]!.length, 2);
        assert.deepEqual(heard[0], heard[1], "both heard the same, in the same order");
        assert.deepEqual(
          new Set(heard[0]!.map((m) => `${m[2]} ${m[3]}`)),
          new Set(["up:aaa new", "up:bbb moved"]),
        );
        // the junk after them never arrives as a pin
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(heard[0]!.length, 2);
      } finally {
        await Promise.all(links.map((l) => l.close()));
      }
    }),
});
