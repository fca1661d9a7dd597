/**
 * @module
 * Tests of the response head of the upstream HTTP/1.1 client
 * (src/proxy/http1/response_head.ts): finding the head's end however the bytes are split,
 * parsing under limits, refusing what could split or smuggle a response, never quoting the
 * upstream's bytes in an error, and the body framing (RFC 9112 §4, §5, §6.3).
 */

import assert from "node:assert/strict";
import { UpstreamProtocolError } from "../../../src/proxy/http1/errors.ts";
import {
  checkPartialHead,
  framingOf,
  headEnd,
  parseHead,
  type ResponseHead,
} from "../../../src/proxy/http1/response_head.ts";

const enc = new TextEncoder();
const LIMITS = { maxFields: 100 };

/** Parses a head written as text (one byte per character), CRLF line ends added. */
function parse(lines: string[], limits = LIMITS): ResponseHead {
  return parseHead(latin1(lines.map((l) => l + "\r\n").join("") + "\r\n"), limits);
}

/** Bytes of a string, one per character. */
function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** Asserts that parsing refuses the lines with an error matching `message`. */
function refuses(lines: string[], message: RegExp, what = lines.join(" | ")): void {
  assert.throws(() => parse(lines), (err: unknown) => {
    assert.ok(err instanceof UpstreamProtocolError, what);
    assert.match(err.message, message, what);
    return true;
  });
}

/** Where the client's loop finds the end when the bytes arrive cut at `cuts`. */
function endInPieces(bytes: Uint8Array, cuts: number[]): number {
  // as the client reads: resume the scan two bytes before what was already scanned
  let scanned = 0;
  for (const end of [...cuts, bytes.length]) {
    const at = headEnd(bytes, scanned, end);
    if (at >= 0) return at;
    scanned = Math.max(0, end - 2);
  }
  return -1;
}

Deno.test("headEnd() finds the empty line after CRLF and bare-LF line ends", () => {
  const cases: [string, string][] = [
    ["CRLF", "HTTP/1.1 200 OK\r\na: b\r\n\r\n"],
    ["bare LF", "HTTP/1.1 200 OK\na: b\n\n"],
    ["LF then CRLF", "HTTP/1.1 200 OK\r\na: b\n\r\n"],
    ["CRLF then LF", "HTTP/1.1 200 OK\r\na: b\r\n\n"],
    ["no fields, CRLF", "HTTP/1.1 204 No Content\r\n\r\n"],
    ["no fields, LF", "HTTP/1.1 204 No Content\n\n"],
  ];
  for (const [what, head] of cases) {
    for (const rest of ["", "body", "\r\n", "\n\n", "HTTP/1.1 200 OK\r\n\r\n"]) {
      const bytes = enc.encode(head + rest);
      assert.equal(
        headEnd(bytes, 0, bytes.length),
        head.length,
        `${what} + ${JSON.stringify(rest)}`,
      );
    }
  }
});

Deno.test("headEnd() gives -1 until the empty line is complete", () => {
  const cases = [
    "",
    "HTTP/1.1 200 OK",
    "HTTP/1.1 200 OK\r\n",
    "HTTP/1.1 200 OK\r\na: b\r\n",
    "HTTP/1.1 200 OK\r\na: b\r\n\r",
    "HTTP/1.1 200 OK\r\na: b\r\r\n",
    "HTTP/1.1 200 OK\r\na: b\r\n\r\r\n",
    "HTTP/1.1 200 OK\na: b\n",
    "HTTP/1.1 200 OK\na: b\n\r",
  ];
  for (const text of cases) {
    const bytes = enc.encode(text);
    assert.equal(headEnd(bytes, 0, bytes.length), -1, JSON.stringify(text));
  }
});

Deno.test("headEnd() looks only in [from, end)", () => {
  const bytes = enc.encode("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 204 X\r\n\r\n");
  assert.equal(headEnd(bytes, 0, bytes.length), 19);
  assert.equal(headEnd(bytes, 19, bytes.length), bytes.length, "from skips the first head");
  assert.equal(headEnd(bytes, 0, 18), -1, "end cuts the empty line");
  assert.equal(headEnd(bytes, 0, 19), 19);
  assert.equal(headEnd(bytes, 19, 30), -1);
  // bytes past `end` are stale: a line end there does not count
  const stale = enc.encode("HTTP/1.1 200 OK\r\n\r\n");
  assert.equal(headEnd(stale, 0, 17), -1);
  assert.equal(headEnd(stale, 0, 0), -1);
});

Deno.test("headEnd() finds the end however the head is split in two", () => {
  const heads = [
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\nhi",
    "HTTP/1.1 200 OK\ncontent-length: 2\nx-a: b\n\nhi",
    "HTTP/1.1 200 OK\r\ncontent-length: 2\nx-a: b\r\n\nhi",
    "HTTP/1.1 200 OK\ncontent-length: 2\r\nx-a: b\n\r\nhi",
  ];
  for (const text of heads) {
    const bytes = enc.encode(text);
    const whole = headEnd(bytes, 0, bytes.length);
    assert.equal(whole, text.length - 2, JSON.stringify(text));
    for (let cut = 0; cut <= bytes.length; cut++) {
      // the first part alone ends the head only when it holds the whole empty line
      assert.equal(headEnd(bytes, 0, cut), cut >= whole ? whole : -1, `cut ${cut}`);
      assert.equal(endInPieces(bytes, [cut]), whole, `resumed at cut ${cut}`);
    }
  }
});

Deno.test("headEnd() finds the end when the head arrives one byte at a time", () => {
  for (const text of ["HTTP/1.1 200 OK\r\na: b\r\n\r\nrest", "HTTP/1.1 200 OK\na: b\n\nrest"]) {
    const bytes = enc.encode(text);
    const cuts = Array.from({ length: bytes.length }, (_, i) => i);
    assert.equal(endInPieces(bytes, cuts), text.length - 4, JSON.stringify(text));
  }
});

Deno.test("parseHead() reads the status, reason, version and fields", () => {
  const head = parse(["HTTP/1.1 200 OK", "Content-Type: application/json", "X-Id:  abc  "]);
  assert.deepEqual(head, {
    status: 200,
    statusText: "OK",
    fields: ["content-type", "application/json", "x-id", "abc"],
    length: undefined,
    chunked: false,
    keepAlive: true,
    keepAliveSeconds: undefined,
  });
});

Deno.test("parseHead() takes bare-LF line ends and a head without its empty line", () => {
  const lf = parseHead(enc.encode("HTTP/1.1 201 Created\nx: 1\ncontent-length: 3\n\n"), LIMITS);
  assert.equal(lf.status, 201);
  assert.equal(lf.statusText, "Created");
  assert.deepEqual(lf.fields, ["x", "1", "content-length", "3"]);
  assert.equal(lf.length, 3);
  const bare = parseHead(enc.encode("HTTP/1.1 200 OK\r\nx: 1"), LIMITS);
  assert.deepEqual(bare.fields, ["x", "1"]);
});

Deno.test("parseHead() takes every status from 100 to 599", () => {
  for (let status = 100; status <= 599; status++) {
    const head = parse([`HTTP/1.1 ${status} X`]);
    assert.equal(head.status, status);
  }
});

Deno.test("parseHead() refuses statuses outside 100-599", () => {
  for (const status of ["000", "001", "099", "600", "700", "999"]) {
    refuses([`HTTP/1.1 ${status} X`], /invalid status/, status);
  }
});

Deno.test("parseHead() refuses a malformed status line", () => {
  const cases = [
    "",
    "HTTP/1.1",
    "HTTP/1.1 ",
    "HTTP/1.1 20 OK",
    "HTTP/1.1 2000 OK",
    "HTTP/1.1 20x OK",
    "HTTP/1.1 -20 OK",
    "HTTP/1.1 200OK",
    "HTTP/1.1  200 OK",
    "HTTP/1.1\t200 OK",
    " HTTP/1.1 200 OK",
    "http/1.1 200 OK",
    "HTTP/1.2 200 OK",
    "HTTP/2 200 OK",
    "HTTP/2.0 200 OK",
    "HTTP/0.9 200 OK",
    "HTTP/11 200 OK",
    "ICY 200 OK",
    "HTTP/1.1 200 O\rK",
    "HTTP/1.1 200 O\0K",
    "x-a: b",
  ];
  for (const line of cases) refuses([line], /malformed status line/, JSON.stringify(line));
});

Deno.test("parseHead() keeps a reason phrase Response takes and drops any other", () => {
  const cases: [string, string][] = [
    ["HTTP/1.1 200", ""],
    ["HTTP/1.1 200 ", ""],
    ["HTTP/1.1 200 OK", "OK"],
    ["HTTP/1.1 404 Not  Found ", "Not  Found "],
    ["HTTP/1.1 200 tab\there", "tab\there"],
    ["HTTP/1.1 200 caf\u00e9", "caf\u00e9"],
    ["HTTP/1.1 200 \u00ff\u0080", "\u00ff\u0080"],
    ["HTTP/1.1 200 bell\x07", ""],
    ["HTTP/1.1 200 del\x7f", ""],
    ["HTTP/1.1 200 esc\x1b[31m", ""],
  ];
  for (const [line, reason] of cases) {
    assert.equal(parse([line]).statusText, reason, JSON.stringify(line));
  }
});

Deno.test("parseHead() decodes field bytes one character per byte", () => {
  // "café" in ISO-8859-1, then in UTF-8 (as fetch gives them: one character per byte)
  const head = parseHead(
    Uint8Array.from([
      ...enc.encode("HTTP/1.1 200 OK\r\nx-latin: caf"),
      0xe9,
      ...enc.encode("\r\nx-utf8: caf"),
      0xc3,
      0xa9,
      ...enc.encode("\r\n\r\n"),
    ]),
    LIMITS,
  );
  assert.deepEqual(head.fields, ["x-latin", "caf\u00e9", "x-utf8", "caf\u00c3\u00a9"]);
  // a head of more than 4096 non-ASCII bytes
  const long = "\u00e9".repeat(10_000);
  assert.deepEqual(parse(["HTTP/1.1 200 OK", `x-long: ${long}`]).fields, ["x-long", long]);
});

Deno.test("parseHead() keeps a value's last byte when it is 0xA0 (UTF-8 à, Р, Š end so)", () => {
  // "МИР" in UTF-8 ends with D0 A0; only HTTP whitespace (SP, HTAB) is trimmed from a value
  const mir = [0xd0, 0x9c, 0xd0, 0x98, 0xd0, 0xa0];
  const head = parseHead(
    Uint8Array.from([...enc.encode("HTTP/1.1 200 OK\r\nx-title: "), ...mir, 13, 10, 13, 10]),
    LIMITS,
  );
  assert.deepEqual(head.fields, ["x-title", String.fromCharCode(...mir)]);
});

Deno.test("parseHead() trims spaces and tabs around a value and keeps those inside", () => {
  const head = parse(["HTTP/1.1 200 OK", "a:b", "b: \t x  y \t ", "c:", "d:   "]);
  assert.deepEqual(head.fields, ["a", "b", "b", "x  y", "c", "", "d", ""]);
});

Deno.test("parseHead() lower-cases names and keeps repeated fields in order", () => {
  const head = parse(["HTTP/1.1 200 OK", "Set-Cookie: a=1", "X-A: 1", "SET-COOKIE: b=2"]);
  assert.deepEqual(head.fields, ["set-cookie", "a=1", "x-a", "1", "set-cookie", "b=2"]);
});

Deno.test("parseHead() takes 100 fields and refuses 101", () => {
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `x-f${i}: ${i}`);
  const head = parse(["HTTP/1.1 200 OK", ...fields(100)]);
  assert.equal(head.fields.length, 200);
  assert.equal(head.fields[199], "99");
  refuses(["HTTP/1.1 200 OK", ...fields(101)], /more than 100 fields/, "101 fields");
  // the limit is the caller's
  assert.equal(parse(["HTTP/1.1 200 OK", ...fields(3)], { maxFields: 3 }).fields.length, 6);
  assert.throws(
    () => parse(["HTTP/1.1 200 OK", ...fields(4)], { maxFields: 3 }),
    /more than 3 fields/,
  );
});

Deno.test("parseHead() refuses malformed field lines", () => {
  const cases: [string, RegExp][] = [
    ["no colon", /malformed header line/],
    [": no name", /malformed header line/],
    [":", /malformed header line/],
    [" folded: line", /malformed header name/],
    ["\tfolded: line", /malformed header name/],
    [" obs-fold continuation", /malformed header line/],
    ["\tobs-fold continuation", /malformed header line/],
    ["space before : colon", /malformed header name/],
    ["x-a : b", /malformed header name/],
    ["x a: b", /malformed header name/],
    ["x(a): b", /malformed header name/],
    ['x"a: b', /malformed header name/],
    ["x@a: b", /malformed header name/],
    ["x\u00e9: b", /malformed header name/],
    ["x\0a: b", /malformed header name/],
    ["x\ra: b", /malformed header name/],
  ];
  for (const [line, message] of cases) {
    refuses(["HTTP/1.1 200 OK", "x-ok: 1", line], message, JSON.stringify(line));
  }
});

Deno.test("parseHead() refuses an obs-fold after a field", () => {
  refuses(["HTTP/1.1 200 OK", "x-a: b", " continued"], /malformed header line/);
  refuses(["HTTP/1.1 200 OK", "x-a: b", "\tcontinued: c"], /malformed header name/);
});

Deno.test("parseHead() refuses a value holding NUL or CR", () => {
  const cases = ["a\0b", "\0", "a\rb", "a\r b", " a\rb ", "a\r\rb", "a\0"];
  for (const value of cases) {
    refuses(["HTTP/1.1 200 OK", `x-a: ${value}`], /invalid.*value/, JSON.stringify(value));
  }
  // a CR before the line's LF is its line end
  assert.deepEqual(parse(["HTTP/1.1 200 OK", "x-a: b"]).fields, ["x-a", "b"]);
});

Deno.test("parseHead() never passes a bare CR on in a value", () => {
  // RFC 9112 §2.2: refused, or taken as a space (then trimmed at a value's edge)
  for (const value of ["\ra", "a\r", " \r a"]) {
    try {
      const head = parse(["HTTP/1.1 200 OK", `x-a: ${value}`]);
      assert.ok(!head.fields[1]!.includes("\r"), JSON.stringify(value));
    } catch (err) {
      assert.ok(err instanceof UpstreamProtocolError, JSON.stringify(value));
    }
  }
});

Deno.test("parseHead() accepts visible, obs-text and tab bytes in values", () => {
  const value = "a\tb ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}\u0080\u00ff";
  assert.deepEqual(parse(["HTTP/1.1 200 OK", `x-a: ${value}`]).fields, ["x-a", value]);
});

Deno.test("parseHead() never quotes the upstream's bytes in its errors", () => {
  const secret = "sk-secret-123";
  const cases = [
    [`HTTP/1.1 200 ${secret}\0`],
    [`HTTP/1.1 600 ${secret}`],
    [`${secret} 200 OK`],
    ["HTTP/1.1 200 OK", `x-key ${secret}`],
    ["HTTP/1.1 200 OK", `x-key: ${secret}\0`],
    ["HTTP/1.1 200 OK", `x-key: ${secret}\rinjected: 1`],
    ["HTTP/1.1 200 OK", ` ${secret}: folded`],
    ["HTTP/1.1 200 OK", `${secret} : spaced`],
    ["HTTP/1.1 200 OK", `content-length: ${secret}`],
    ["HTTP/1.1 200 OK", `transfer-encoding: ${secret}`],
  ];
  for (const lines of cases) {
    assert.throws(() => parse(lines), (err: unknown) => {
      assert.ok(err instanceof UpstreamProtocolError);
      assert.ok(!err.message.includes(secret), `"${err.message}" quotes the upstream`);
      assert.ok(!err.message.includes("sk-"), `"${err.message}" quotes the upstream`);
      return true;
    });
  }
});

Deno.test("parseHead() does not quote a field name in a refused value's error", () => {
  // a key cut by a stray line end leaves its tail where a name goes: a name is upstream bytes
  const secret = "sk-secret-123";
  assert.throws(
    () => parse(["HTTP/1.1 200 OK", "authorization: Bearer", `${secret}: \0`]),
    (err: unknown) => {
      assert.ok(err instanceof UpstreamProtocolError);
      assert.match(err.message, /invalid.*value/);
      assert.ok(!err.message.includes(secret), `"${err.message}" quotes the upstream`);
      return true;
    },
  );
});

Deno.test("parseHead() reads Content-Length, a list of the same value included", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["5", 5],
    ["005", 5],
    [" 7 ", 7],
    ["5, 5", 5],
    ["5,5", 5],
    ["5 , 5 ,5", 5],
    ["999999999999999", 999_999_999_999_999],
  ];
  for (const [value, length] of cases) {
    const head = parse(["HTTP/1.1 200 OK", `Content-Length: ${value}`]);
    assert.equal(head.length, length, JSON.stringify(value));
    assert.equal(head.chunked, false);
    assert.deepEqual(head.fields, ["content-length", value.trim()]);
  }
});

Deno.test("parseHead() refuses an invalid Content-Length", () => {
  const cases = [
    "",
    " ",
    "-1",
    "+5",
    "1e3",
    "0x10",
    "5.0",
    "5 5",
    "five",
    "5,",
    ",5",
    "5,,5",
    "1234567890123456",
    "\u0665",
  ];
  for (const value of cases) {
    refuses(
      ["HTTP/1.1 200 OK", `Content-Length: ${value}`],
      /invalid content-length/,
      JSON.stringify(value),
    );
  }
});

Deno.test("parseHead() refuses conflicting Content-Length values and fields", () => {
  refuses(["HTTP/1.1 200 OK", "Content-Length: 5, 6"], /conflicting content-length values/);
  refuses(["HTTP/1.1 200 OK", "Content-Length: 5, 5, 50"], /conflicting content-length values/);
  refuses(
    ["HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 6"],
    /conflicting content-length headers/,
  );
  refuses(
    ["HTTP/1.1 200 OK", "Content-Length: 5", "x: y", "content-length: 0"],
    /conflicting content-length headers/,
  );
  // the same value twice is one length
  const same = parse(["HTTP/1.1 200 OK", "Content-Length: 5", "content-length: 005"]);
  assert.equal(same.length, 5);
});

Deno.test("parseHead() takes Transfer-Encoding only as chunked alone (no coding it cannot decode)", () => {
  const ok = ["chunked", "Chunked", "CHUNKED", " chunked "];
  for (const value of ok) {
    const head = parse(["HTTP/1.1 200 OK", `Transfer-Encoding: ${value}`]);
    assert.equal(head.chunked, true, value);
    assert.equal(head.length, undefined, value);
    assert.equal(head.keepAlive, true, value);
  }
  const refused = [
    "gzip, chunked",
    "gzip,chunked",
    "gzip",
    "identity",
    "chunked, gzip",
    "chunked, chunked",
    "chunked,",
    ", chunked, gzip",
    "chunkedx",
    "",
  ];
  for (const value of refused) {
    refuses(
      ["HTTP/1.1 200 OK", `Transfer-Encoding: ${value}`],
      /unsupported transfer-encoding/,
      JSON.stringify(value),
    );
  }
});

Deno.test("parseHead() drops Content-Length from a chunked head and ends the connection", () => {
  for (
    const lines of [
      ["HTTP/1.1 200 OK", "Content-Length: 10", "Transfer-Encoding: chunked", "x: 1"],
      ["HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "x: 1", "Content-Length: 10"],
      ["HTTP/1.1 200 OK", "content-length: 3", "content-length: 3", "transfer-encoding: chunked"],
    ]
  ) {
    const head = parse(lines);
    assert.equal(head.chunked, true);
    assert.equal(head.length, undefined);
    assert.equal(head.keepAlive, false, "framed both ways: not reused");
    assert.ok(!head.fields.includes("content-length"), head.fields.join());
    assert.equal(head.fields.filter((f) => f === "transfer-encoding").length, 1);
    assert.deepEqual(framingOf(head, "GET"), { kind: "chunked" });
  }
});

Deno.test("parseHead() decides keep-alive from the version and Connection", () => {
  const cases: [string, string[], boolean][] = [
    ["HTTP/1.1", [], true],
    ["HTTP/1.1", ["Connection: keep-alive"], true],
    ["HTTP/1.1", ["Connection: close"], false],
    ["HTTP/1.1", ["Connection: Close"], false],
    ["HTTP/1.1", ["Connection: CLOSE"], false],
    ["HTTP/1.1", ["Connection: upgrade, close"], false],
    ["HTTP/1.1", ["Connection: keep-alive, close"], false],
    ["HTTP/1.1", ["Connection: close", "Connection: keep-alive"], false],
    ["HTTP/1.1", ["Connection: keep-alive", "Connection: close"], false],
    ["HTTP/1.1", ["Connection: closed"], true],
    ["HTTP/1.1", ["Connection: x-close"], true],
    ["HTTP/1.0", [], false],
    ["HTTP/1.0", ["Connection: keep-alive"], true],
    ["HTTP/1.0", ["Connection: Keep-Alive"], true],
    ["HTTP/1.0", ["Connection: foo, keep-alive"], true],
    ["HTTP/1.0", ["Connection: close"], false],
    ["HTTP/1.0", ["Connection: keep-alive, close"], false],
    ["HTTP/1.0", ["Connection: keep-alive", "Connection: close"], false],
    ["HTTP/1.0", ["Connection: keep-alives"], false],
    ["HTTP/1.0", ["Keep-Alive: timeout=5"], false],
  ];
  for (const [version, fields, keepAlive] of cases) {
    const head = parse([`${version} 200 OK`, ...fields]);
    assert.equal(head.keepAlive, keepAlive, `${version} ${fields.join(" | ")}`);
  }
});

Deno.test("parseHead() lets close win over keep-alive in any order on HTTP/1.0", () => {
  // RFC 9112 §9.6: a close option ends the connection whatever else the head says
  const head = parse(["HTTP/1.0 200 OK", "Connection: close", "Connection: keep-alive"]);
  assert.equal(head.keepAlive, false);
});

Deno.test("parseHead() never lets an HTTP/1.0 chunked answer keep its connection", () => {
  // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is faulty framing, and its
  // connection is closed after it (the sender may hold back part of it)
  let head: ResponseHead;
  try {
    head = parse(["HTTP/1.0 200 OK", "Connection: keep-alive", "Transfer-Encoding: chunked"]);
  } catch (err) {
    assert.ok(err instanceof UpstreamProtocolError, "refusing it is as good");
    return;
  }
  assert.equal(head.keepAlive, false);
});

Deno.test("parseHead() reads the Keep-Alive timeout", () => {
  const cases: [string, number | undefined][] = [
    ["timeout=5", 5],
    ["timeout=5, max=100", 5],
    ["max=100, timeout=7", 7],
    ["max=100,timeout=8", 8],
    ["max=100; timeout=9", 9],
    ["TIMEOUT=3", 3],
    ["Timeout = 4", 4],
    ['timeout="6"', 6],
    ["timeout=0", 0],
    ["timeout=600", 600],
    ["timeout=5.9", 5],
    ["timeout=999999999", 999_999_999],
    ["timeout=", undefined],
    ["timeout=abc", undefined],
    ["timeout=-1", undefined],
    ["xtimeout=5", undefined],
    ["max=5", undefined],
    ["", undefined],
  ];
  for (const [value, seconds] of cases) {
    const head = parse(["HTTP/1.1 200 OK", `Keep-Alive: ${value}`]);
    assert.equal(head.keepAliveSeconds, seconds, JSON.stringify(value));
    assert.deepEqual(head.fields, ["keep-alive", value.trim()]);
  }
  assert.equal(parse(["HTTP/1.1 200 OK"]).keepAliveSeconds, undefined);
  assert.equal(parse(["HTTP/1.0 200 OK", "Keep-Alive: timeout=2"]).keepAliveSeconds, 2);
});

Deno.test("framingOf() frames no body for HEAD, 1xx, 204 and 304", () => {
  const chunked = parse(["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"]);
  const sized = parse(["HTTP/1.1 200 OK", "Content-Length: 10"]);
  const bare = parse(["HTTP/1.1 200 OK"]);
  for (const head of [chunked, sized, bare]) {
    assert.deepEqual(framingOf(head, "HEAD"), { kind: "none" });
  }
  for (const status of [100, 101, 102, 103, 150, 199, 204, 304]) {
    for (const extra of [[], ["Content-Length: 10"], ["Transfer-Encoding: chunked"]]) {
      const head = parse([`HTTP/1.1 ${status} X`, ...extra]);
      assert.deepEqual(framingOf(head, "GET"), { kind: "none" }, `${status} ${extra.join()}`);
      assert.deepEqual(framingOf(head, "POST"), { kind: "none" }, `${status} ${extra.join()}`);
    }
  }
});

Deno.test("framingOf() frames by chunks, then length, then the close", () => {
  const cases: [string[], ReturnType<typeof framingOf>][] = [
    [["Transfer-Encoding: chunked"], { kind: "chunked" }],
    [["Content-Length: 10", "Transfer-Encoding: chunked"], { kind: "chunked" }],
    [["Content-Length: 10"], { kind: "length", length: 10 }],
    [["Content-Length: 0"], { kind: "length", length: 0 }],
    [[], { kind: "close" }],
  ];
  for (const status of [200, 201, 203, 205, 206, 301, 302, 400, 404, 500, 599]) {
    for (const [fields, framing] of cases) {
      const head = parse([`HTTP/1.1 ${status} X`, ...fields]);
      for (const method of ["GET", "POST", "PUT", "DELETE", "OPTIONS"]) {
        assert.deepEqual(framingOf(head, method), framing, `${method} ${status} ${fields}`);
      }
    }
  }
  const v10 = parse(["HTTP/1.0 200 OK"]);
  assert.deepEqual(framingOf(v10, "GET"), { kind: "close" });
});

Deno.test("checkPartialHead() refuses what is already wrong in a head still arriving", () => {
  const cases: [string, RegExp][] = [
    ["SPDY/9 200", /status line/],
    ["sk-live-SECRET garbage", /status line/],
    ["HTTP/1.1 200 OK\r\nx-key sk-live-SECRET\r\n", /header line/],
    ["HTTP/1.1 999 OK\r\n", /invalid status/],
    ["HTTP/1.1 200 OK\rx-key: sk-live-SECRET", /bare CR/],
    ["HTTP/1.1 200 OK\r\n" + "x-a: 1\r\n".repeat(101), /more than 100 fields/],
  ];
  for (const [text, message] of cases) {
    const state = { checked: 0, lines: 0 };
    assert.throws(
      () => checkPartialHead(enc.encode(text), state, { maxFields: 100 }),
      (err: unknown) =>
        err instanceof UpstreamProtocolError && message.test(err.message) &&
        !err.message.includes("SECRET"),
      JSON.stringify(text),
    );
  }
});

Deno.test("checkPartialHead() accepts a good head arriving a byte at a time, reading each line once", () => {
  const text = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\nx-b: 2\r\n";
  const state = { checked: 0, lines: 0 };
  for (let n = 1; n <= text.length; n++) {
    checkPartialHead(enc.encode(text.slice(0, n)), state, { maxFields: 100 });
  }
  assert.deepEqual(state, { checked: text.length, lines: 3 });
  // a prefix of "HTTP/" is not refused
  checkPartialHead(enc.encode("HT"), { checked: 0, lines: 0 }, { maxFields: 100 });
});
