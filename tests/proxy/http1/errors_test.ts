/**
 * @module
 * Tests of the upstream HTTP/1.1 client's errors (src/proxy/http1/errors.ts): the class
 * hierarchy callers classify by, and `failureName`, which names a transport failure without
 * quoting what it carried.
 */

import assert from "node:assert/strict";
import {
  ConnectTimeoutError,
  failureName,
  StaleConnectionError,
  UpstreamProtocolError,
} from "../../../src/proxy/http1/errors.ts";

const classes = [
  { Class: UpstreamProtocolError, name: "UpstreamProtocolError" },
  { Class: StaleConnectionError, name: "StaleConnectionError" },
  { Class: ConnectTimeoutError, name: "ConnectTimeoutError" },
];

Deno.test("UpstreamProtocolError and its subclasses are TypeErrors with their own names", () => {
  for (const { Class, name } of classes) {
    const err = new Class("upstream sent something odd");
    assert.ok(err instanceof Error, name);
    assert.ok(err instanceof TypeError, `${name} is a TypeError (as fetch's failures are)`);
    assert.ok(err instanceof UpstreamProtocolError, name);
    assert.equal(err.name, name);
    assert.equal(err.message, "upstream sent something odd");
    assert.equal(String(err), `${name}: upstream sent something odd`);
    assert.equal(typeof err.stack, "string");
  }
});

Deno.test("StaleConnectionError and ConnectTimeoutError are distinct branches", () => {
  const stale = new StaleConnectionError("stale");
  const timeout = new ConnectTimeoutError("timeout");
  assert.ok(!(stale instanceof ConnectTimeoutError));
  assert.ok(!(timeout instanceof StaleConnectionError));
  assert.ok(!(new UpstreamProtocolError("x") instanceof StaleConnectionError));
  assert.ok(!(new UpstreamProtocolError("x") instanceof ConnectTimeoutError));
  assert.ok(!(new TypeError("x") instanceof UpstreamProtocolError));
});

Deno.test("failureName() gives an OS code, else the error's own name", () => {
  const coded = (name: string, code: unknown, message = "secret http://h/?key=sk-1") => {
    const err = new Error(message);
    err.name = name;
    (err as Error & { code?: unknown }).code = code;
    return err;
  };
  const cases: [string, unknown, string][] = [
    ["an OS code", coded("ConnectionRefused", "ECONNREFUSED"), "ECONNREFUSED"],
    ["a code of upper case and underscores", coded("Error", "ERR_TLS_CERT"), "ERR_TLS_CERT"],
    ["a two-letter code", coded("Error", "AB"), "AB"],
    ["a 24-letter code", coded("Error", "A".repeat(24)), "A".repeat(24)],
    ["a 25-letter code: the name", coded("Oops", "A".repeat(25)), "Oops"],
    ["a one-letter code: the name", coded("Oops", "A"), "Oops"],
    ["a lower-case code: the name", coded("Oops", "econnreset"), "Oops"],
    ["a code with a digit: the name", coded("Oops", "E1"), "Oops"],
    ["a code with a URL: the name", coded("Oops", "http://h/"), "Oops"],
    ["a numeric code: the name", coded("Oops", 104), "Oops"],
    ["a Deno error", new Deno.errors.ConnectionReset("reset by http://h/"), "ConnectionReset"],
    ["Deno's Interrupted", new Deno.errors.Interrupted("x"), "Interrupted"],
    ["Deno's BadResource", new Deno.errors.BadResource("x"), "BadResource"],
    ["a RangeError", new RangeError("x"), "RangeError"],
    ["a plain Error", new Error("http://h/?key=sk-1"), "connection error"],
    ["a plain TypeError", new TypeError("http://h/?key=sk-1"), "connection error"],
    ["an Error without a name", coded("", undefined), "connection error"],
    ["an Error named Error with a bad code", coded("Error", "bad code"), "connection error"],
    ["a string", "ECONNRESET http://h/", "connection error"],
    ["an object with a code", { code: "ECONNRESET", name: "X" }, "connection error"],
    ["null", null, "connection error"],
    ["undefined", undefined, "connection error"],
  ];
  for (const [what, err, expected] of cases) {
    assert.equal(failureName(err), expected, what);
  }
});

Deno.test("failureName() never quotes the message", () => {
  const err = new Error("error sending request for url (http://h/?key=sk-secret-123)");
  err.name = "ConnectError";
  const name = failureName(err);
  assert.equal(name, "ConnectError");
  assert.ok(!name.includes("sk-secret-123"));
});
