/**
 * @module
 * Tests of the request head of the upstream HTTP/1.1 client
 * (src/proxy/http1/request_head.ts): the request line and its target, the fields the client
 * writes itself, `fetch`'s defaults, refusal of anything that could split the request, and the
 * message as bytes, one per character.
 */

import assert from "node:assert/strict";
import {
  type HeaderInit,
  requestHead,
  requestMessage,
} from "../../../src/proxy/http1/request_head.ts";

const dec = new TextDecoder();
const AGENT = `Deno/${Deno.version.deno}`;

/** The head's lines, without the request line and the final empty line. */
function fieldLines(head: string): string[] {
  assert.ok(head.endsWith("\r\n\r\n"), "the head ends with an empty line");
  return head.slice(0, -4).split("\r\n").slice(1);
}

/** The value of the one field named `name` in a head, or undefined; two such fields fail. */
function field(head: string, name: string): string | undefined {
  const found = fieldLines(head).filter((l) => l.startsWith(`${name}: `));
  assert.ok(found.length <= 1, `one ${name} field: ${found.join(" | ")}`);
  return found[0]?.slice(name.length + 2);
}

/** The request line's target. */
function target(url: string): string {
  const line = requestHead("h", url, "GET", undefined, -1).split("\r\n")[0]!;
  const m = /^GET (\S*) HTTP\/1\.1$/.exec(line);
  assert.ok(m !== null, `request line ${JSON.stringify(line)}`);
  return m[1]!;
}

Deno.test("requestHead() writes the request line, host, defaults and length in order", () => {
  const head = requestHead("api.example:8080", "http://api.example:8080/v1/chat?x=1", "POST", {
    "content-type": "application/json",
    authorization: "Bearer sk-1",
  }, 2);
  assert.equal(
    head,
    "POST /v1/chat?x=1 HTTP/1.1\r\n" +
      "host: api.example:8080\r\n" +
      "content-type: application/json\r\n" +
      "authorization: Bearer sk-1\r\n" +
      "accept: */*\r\n" +
      `user-agent: ${AGENT}\r\n` +
      "content-length: 2\r\n" +
      "\r\n",
  );
});

Deno.test("requestHead() takes the URL's path and query as the target, dropping a fragment", () => {
  const cases: [string, string][] = [
    ["http://h/", "/"],
    ["http://h", "/"],
    ["http://h:8080", "/"],
    ["http://h/v1/chat/completions", "/v1/chat/completions"],
    ["http://h:8080/a/b?c=d&e=f", "/a/b?c=d&e=f"],
    ["https://h/v1?", "/v1?"],
    ["http://h/p#frag", "/p"],
    ["http://h/p?q=1#frag", "/p?q=1"],
    ["http://h/p?q=1#frag?x=/y", "/p?q=1"],
    ["http://h/#", "/"],
    ["http://h#frag", "/"],
    ["http://[::1]:8443/v1/x", "/v1/x"],
    ["http://127.0.0.1:1/a%20b%2F", "/a%20b%2F"],
    ["http://h/a//b", "/a//b"],
    ["http://h/a:b@c", "/a:b@c"],
  ];
  for (const [url, expected] of cases) assert.equal(target(url), expected, url);
});

Deno.test("requestHead() keeps the query of a URL without a path", () => {
  // as fetch sends it: `http://h?x=1` is `http://h/?x=1`
  const cases: [string, string][] = [
    ["http://h?x=1", "/?x=1"],
    ["http://h:8080?next=/v1/y", "/?next=/v1/y"],
    ["http://h#a/b", "/"],
  ];
  for (const [url, expected] of cases) {
    const u = new URL(url);
    assert.equal(u.pathname + u.search, expected, `what fetch sends for ${url}`);
  }
  assert.deepEqual(cases.map(([url]) => [url, target(url)]), cases);
});

Deno.test("requestHead() percent-encodes a target that is not visible ASCII, as fetch does", () => {
  const cases: [string, string][] = [
    ["http://h/caf\u00e9", "/caf%C3%A9"],
    ["http://h/a b", "/a%20b"],
    ["http://h/p?q=\u00e9 x", "/p?q=%C3%A9%20x"],
    ["http://h/\u00e9#fr\u00e4g", "/%C3%A9"],
    ["http://h/\u{1f600}", "/%F0%9F%98%80"],
    ["http://h/a\u007fb", "/a%7Fb"],
  ];
  for (const [url, expected] of cases) assert.equal(target(url), expected, url);
});

Deno.test("requestHead() cannot be split by line ends or NUL in the URL", () => {
  for (const url of ["http://h/a\r\nx-injected: 1", "http://h/a\nx-injected: 1", "http://h/a\0b"]) {
    const head = requestHead("h", url, "GET", undefined, -1);
    const lines = fieldLines(head);
    assert.ok(!lines.some((l) => l.startsWith("x-injected")), JSON.stringify(head));
    assert.ok(!/[\0]/.test(head));
    assert.equal(head.split("\r\n")[0]!.split(" ").length, 3, JSON.stringify(head));
    assert.ok(!head.split("\r\n")[0]!.includes("\n"));
  }
});

Deno.test("requestHead() takes any token as the method and refuses anything else", () => {
  for (const method of ["GET", "POST", "PATCH", "M-SEARCH", "custom!#$%&'*+.^_`|~1"]) {
    assert.ok(requestHead("h", "http://h/", method, undefined, -1).startsWith(`${method} / `));
  }
  for (const method of ["", "GE T", "GET\r\n", "GET\n", "G(ET)", "G\u00e9T", "GET\0", "G:T"]) {
    assert.throws(
      () => requestHead("h", "http://h/", method, undefined, -1),
      (err: unknown) => err instanceof TypeError && err.message === "Invalid method",
      JSON.stringify(method),
    );
  }
});

Deno.test("requestHead() drops the fields the client writes itself", () => {
  const own = [
    ["Host", "evil.example"],
    ["Content-Length", "999"],
    ["Transfer-Encoding", "chunked"],
    ["Connection", "close"],
    ["Keep-Alive", "timeout=1"],
    ["Upgrade", "websocket"],
    ["TE", "trailers"],
    ["Expect", "100-continue"],
  ] as [string, string][];
  const forms = {
    array: [...own, ["x-kept", "1"]] as [string, string][],
    record: Object.fromEntries([...own, ["x-kept", "1"]]),
    headers: new Headers([...own, ["x-kept", "1"]]),
    "upper-case array": own.map(([k, v]) => [k.toUpperCase(), v] as [string, string]),
  };
  for (const [form, headers] of Object.entries(forms)) {
    const head = requestHead("api.example", "http://api.example/p", "POST", headers, 3);
    assert.equal(field(head, "host"), "api.example", form);
    assert.equal(field(head, "content-length"), "3", form);
    for (
      const name of ["transfer-encoding", "connection", "keep-alive", "upgrade", "te", "expect"]
    ) {
      assert.equal(field(head, name), undefined, `${form}: ${name}`);
    }
    assert.ok(!head.includes("evil"), form);
    assert.ok(!head.includes("999"), form);
  }
});

Deno.test("requestHead() drops its own fields before checking them, so they never split it", () => {
  const head = requestHead("h", "http://h/", "GET", { connection: "close\r\nx-injected: 1" }, -1);
  assert.ok(!head.includes("x-injected"));
});

Deno.test("requestHead() sends accept and user-agent as fetch does when the caller has none", () => {
  const cases: [string, HeaderInit | undefined, string, string][] = [
    ["none", undefined, "*/*", AGENT],
    ["empty", {}, "*/*", AGENT],
    ["accept", { Accept: "text/event-stream" }, "text/event-stream", AGENT],
    ["user-agent", { "USER-AGENT": "my-app/1" }, "*/*", "my-app/1"],
    ["both", [["accept", "application/json"], ["user-agent", "x"]], "application/json", "x"],
  ];
  for (const [what, headers, accept, agent] of cases) {
    for (const form of [headers, headers === undefined ? undefined : new Headers(headers)]) {
      const head = requestHead("h", "http://h/", "GET", form, -1);
      assert.equal(field(head, "accept"), accept, what);
      assert.equal(field(head, "user-agent"), agent, what);
    }
  }
});

Deno.test("requestHead() writes the caller's fields lower-cased, trimmed, in order", () => {
  const array: [string, string][] = [["X-B", " 2 "], ["x-a", "1"], ["X-A", "\t3"]];
  assert.deepEqual(
    fieldLines(requestHead("h", "http://h/", "GET", array, -1)).slice(1, 4),
    ["x-b: 2", "x-a: 1", "x-a: 3"],
  );
  const record = { "X-Title": "  My App  ", "x-empty": "" };
  assert.deepEqual(
    fieldLines(requestHead("h", "http://h/", "GET", record, -1)).slice(1, 3),
    ["x-title: My App", "x-empty: "],
  );
  // Headers combine repeated names and sort them
  const headers = new Headers([["x-b", "2"], ["x-a", "1"], ["x-a", "3"]]);
  assert.deepEqual(
    fieldLines(requestHead("h", "http://h/", "GET", headers, -1)).slice(1, 3),
    ["x-a: 1, 3", "x-b: 2"],
  );
});

Deno.test("requestHead() keeps a value's last byte when it is 0xA0 (UTF-8 à, Р, Š end so)", () => {
  // "МИР" as Deno.serve hands it on: the characters of its UTF-8 bytes, ending in D0 A0
  const mir = String.fromCharCode(0xd0, 0x9c, 0xd0, 0x98, 0xd0, 0xa0);
  for (const headers of [{ "x-title": mir }, new Headers({ "x-title": mir })]) {
    const head = requestHead("h", "http://h/", "GET", headers, -1);
    assert.equal(field(head, "x-title"), mir);
  }
});

Deno.test("requestHead() refuses invalid field names", () => {
  const names = ["", "x y", "x:y", "x\r\ny", "x\ny", "x\0", "caf\u00e9", "x(y)", "x/y", "x\ty"];
  for (const name of names) {
    assert.throws(
      () => requestHead("h", "http://h/", "GET", [[name, "v"]], -1),
      (err: unknown) => err instanceof TypeError && err.message.startsWith("Invalid header"),
      JSON.stringify(name),
    );
    assert.throws(
      () => requestHead("h", "http://h/", "GET", { [name]: "v" }, -1),
      TypeError,
      JSON.stringify(name),
    );
  }
});

Deno.test("requestHead() refuses values with CR, LF or NUL, never quoting them", () => {
  const values = ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\0b", "\r\n", "sk-secret-123\n"];
  for (const value of values) {
    for (const headers of [[["x-key", value]] as [string, string][], { "x-key": value }]) {
      assert.throws(
        () => requestHead("h", "http://h/", "POST", headers, 0),
        (err: unknown) => {
          assert.ok(err instanceof TypeError);
          assert.equal(err.message, "Invalid header: x-key");
          assert.ok(!err.message.includes("sk-secret"));
          return true;
        },
        JSON.stringify(value),
      );
    }
  }
  // a tab and bytes above 0x7f are values like any other
  const head = requestHead("h", "http://h/", "GET", [["x-a", "a\tb\u00e9\u00ff"]], -1);
  assert.equal(field(head, "x-a"), "a\tb\u00e9\u00ff");
});

Deno.test("requestHead() writes content-length for bodies, and 0 for POST and PUT without one, as fetch", () => {
  const cases: [string, number, string | undefined][] = [
    ["GET", -1, undefined],
    ["HEAD", -1, undefined],
    ["GET", 0, "0"],
    ["GET", 5, "5"],
    ["POST", -1, "0"],
    ["POST", 0, "0"],
    ["POST", 10, "10"],
    ["POST", 1_000_000, "1000000"],
    ["PUT", -1, "0"],
    ["PATCH", -1, undefined],
    ["DELETE", -1, undefined],
    ["OPTIONS", -1, undefined],
    ["post", -1, "0"],
    ["PUT", 3, "3"],
  ];
  for (const [method, length, expected] of cases) {
    const head = requestHead("h", "http://h/", method, undefined, length);
    assert.equal(field(head, "content-length"), expected, `${method} ${length}`);
  }
});

Deno.test("requestHead() writes the methods fetch normalizes in upper case, others as given", () => {
  for (
    const [given, sent] of [
      ["post", "POST"],
      ["Get", "GET"],
      ["delete", "DELETE"],
      [
        "patch",
        "patch",
      ],
      ["PATCH", "PATCH"],
      ["m-search", "m-search"],
    ]
  ) {
    const head = requestHead("h", "http://h/p", given!, undefined, -1);
    assert.equal(head.slice(0, head.indexOf(" ")), sent);
  }
});

Deno.test("requestMessage() writes an ASCII head as its bytes, then the body", () => {
  const head = requestHead("h", "http://h/p", "POST", { "x-a": "1" }, 5);
  const body = new TextEncoder().encode("hello");
  const message = requestMessage(head, body);
  assert.equal(message.length, head.length + 5);
  assert.equal(dec.decode(message), head + "hello");
  assert.deepEqual(requestMessage(head, null), new TextEncoder().encode(head));
  assert.equal(requestMessage(head, new Uint8Array(0)).length, head.length);
});

Deno.test("requestMessage() writes each character of the head as one byte", () => {
  // a client's UTF-8 "Café" arrives as the characters C3 A9 and leaves as those bytes
  const head = requestHead("h", "http://h/", "POST", { "x-name": "Caf\u00c3\u00a9 \u00e9" }, 2);
  const message = requestMessage(head, Uint8Array.from([0xff, 0x00]));
  assert.equal(message.length, head.length + 2);
  for (let i = 0; i < head.length; i++) {
    assert.equal(message[i], head.charCodeAt(i), `byte ${i}`);
  }
  assert.deepEqual([...message.subarray(head.length)], [0xff, 0x00], "the body follows");
  const value = message.subarray(head.indexOf("Caf"), head.indexOf("Caf") + 7);
  assert.deepEqual([...value], [0x43, 0x61, 0x66, 0xc3, 0xa9, 0x20, 0xe9]);
  assert.equal(new TextDecoder().decode(value.subarray(0, 5)), "Caf\u00e9");
});

Deno.test("requestMessage() refuses a character above U+00FF", () => {
  for (const c of ["\u0100", "\u20ac", "\u{1f600}", "\uffff", "\ud800"]) {
    const head = requestHead("h", "http://h/", "GET", { "x-a": `a${c}` }, -1);
    assert.throws(
      () => requestMessage(head, null),
      (err: unknown) =>
        err instanceof TypeError &&
        err.message === "Invalid header value: characters must be bytes",
      JSON.stringify(c),
    );
  }
  // U+00FF is a byte
  const head = requestHead("h", "http://h/", "GET", { "x-a": "\u00ff" }, -1);
  assert.equal(requestMessage(head, null)[head.indexOf("\u00ff")], 0xff);
});
