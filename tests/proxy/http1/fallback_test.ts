/**
 * @module
 * Tests of the policy that leaves requests to `fetch` and of the guard around it
 * (src/proxy/http1/fallback.ts): what a request asks for, origins switched for a while on an
 * injected clock and reported once, the environment read by `fetchPreferred` (in a
 * subprocess), and the guard's statuses, URL-free messages and abort reasons.
 */

import assert from "node:assert/strict";
import { UpstreamProtocolError } from "../../../src/proxy/http1/errors.ts";
import { FetchFallback, fetchPreferred } from "../../../src/proxy/http1/fallback.ts";
import { ManualClock } from "../../helpers/clock.ts";

const A = "http://a.example";
const B = "http://b.example:8080";
const MANUAL: RequestInit = { redirect: "manual" };

/** A manual clock whose `mono()` reads `startMs`, and a way to move it to a later reading. */
function clockAt(startMs: number) {
  const clock = new ManualClock(undefined, startMs);
  return { clock, to: (ms: number) => clock.advance(ms - clock.mono()) };
}

/** A fetch that answers with `answer` and records its calls. */
function fakeFetch(
  answer: (input: string | URL | Request, init?: RequestInit) => Promise<Response>,
) {
  const calls: [string | URL | Request, RequestInit | undefined][] = [];
  const fetch = ((input: string | URL | Request, init?: RequestInit) => {
    calls.push([input, init]);
    return answer(input, init);
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

/** A fallback whose fetch throws `err`. */
function throwing(err: unknown): FetchFallback {
  return new FetchFallback({ always: false, fetch: () => Promise.reject(err) });
}

/** A `Response` stand-in with a status `Response` refuses, and a body that records a cancel. */
function oddResponse(status: number) {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
  });
  const res = { status, body, headers: new Headers() } as unknown as Response;
  return { res, cancelled: () => cancelled };
}

/** Asserts the guard rejects with an UpstreamProtocolError whose message is `message`. */
async function rejectsWith(p: Promise<unknown>, message: string | RegExp, what = String(message)) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof UpstreamProtocolError, `${what}: ${err}`);
    if (typeof message === "string") assert.equal(err.message, message, what);
    else assert.match(err.message, message, what);
    return true;
  });
}

Deno.test("FetchFallback.takesRequest() leaves to fetch what the client does not take", () => {
  const fallback = new FetchFallback({ always: false });
  const cases: [string, unknown, RequestInit, boolean][] = [
    ["a string URL, manual redirects, no body", "http://h/", MANUAL, false],
    ["a null body", "http://h/", { ...MANUAL, body: null }, false],
    ["a text body", "http://h/", { ...MANUAL, body: "{}" }, false],
    ["an empty text body", "http://h/", { ...MANUAL, body: "" }, false],
    ["a byte body", "http://h/", { ...MANUAL, body: new Uint8Array([1]) }, false],
    ["any method", "http://h/", { ...MANUAL, method: "DELETE" }, false],
    ["followed redirects (the default)", "http://h/", {}, true],
    ["redirect: follow", "http://h/", { redirect: "follow" }, true],
    ["redirect: error", "http://h/", { redirect: "error" }, true],
    ["a URL object", new URL("http://h/"), MANUAL, true],
    ["a Request", new Request("http://h/"), MANUAL, true],
    ["an ArrayBuffer body", "http://h/", { ...MANUAL, body: new ArrayBuffer(1) }, true],
    ["a DataView body", "http://h/", { ...MANUAL, body: new DataView(new ArrayBuffer(1)) }, true],
    ["a Blob body", "http://h/", { ...MANUAL, body: new Blob(["x"]) }, true],
    ["a FormData body", "http://h/", { ...MANUAL, body: new FormData() }, true],
    ["a URLSearchParams body", "http://h/", { ...MANUAL, body: new URLSearchParams("a=1") }, true],
    ["a stream body", "http://h/", { ...MANUAL, body: new ReadableStream() }, true],
  ];
  for (const [what, input, init, expected] of cases) {
    assert.equal(fallback.takesRequest(input, init), expected, what);
  }
});

Deno.test("FetchFallback.takesRequest() leaves everything to fetch when always is set", () => {
  const fallback = new FetchFallback({ always: true });
  assert.equal(fallback.always, true);
  assert.equal(fallback.takesRequest("http://h/", MANUAL), true);
  assert.equal(fallback.takesRequest("http://h/", { ...MANUAL, body: "x" }), true);
  assert.equal(new FetchFallback({ always: false }).always, false);
});

Deno.test("FetchFallback.switchOrigin() hands an origin to fetch for the hold time", () => {
  const { clock, to } = clockAt(1_000);
  const switches: [string, string, number][] = [];
  const fallback = new FetchFallback({
    always: false,
    holdMs: 500,
    clock,
    onSwitch: (origin, reason, forMs) => switches.push([origin, reason, forMs]),
  });
  assert.equal(fallback.takesOrigin(A), false);
  fallback.switchOrigin(A, "connect failed (ECONNREFUSED)");
  assert.deepEqual(switches, [[A, "connect failed (ECONNREFUSED)", 500]]);
  assert.equal(fallback.takesOrigin(A), true);
  assert.equal(fallback.takesOrigin(B), false, "only that origin");
  to(1_499);
  assert.equal(fallback.takesOrigin(A), true, "until the hold ends");
  to(1_500);
  assert.equal(fallback.takesOrigin(A), false, "then back to the client");
  assert.equal(fallback.takesOrigin(A), false);
});

Deno.test("FetchFallback.switchOrigin() reports each switch once", () => {
  const { clock, to } = clockAt(0);
  const switches: string[] = [];
  const fallback = new FetchFallback({
    always: false,
    holdMs: 100,
    clock,
    onSwitch: (origin, reason) => switches.push(`${origin} ${reason}`),
  });
  fallback.switchOrigin(A, "first");
  to(50);
  fallback.switchOrigin(A, "again while switched");
  fallback.switchOrigin(B, "another origin");
  assert.deepEqual(switches, [`${A} first`, `${B} another origin`]);
  to(99);
  assert.equal(fallback.takesOrigin(A), true, "a repeated switch does not extend the hold");
  to(100);
  fallback.switchOrigin(A, "after the hold");
  assert.deepEqual(switches.at(-1), `${A} after the hold`);
  assert.equal(switches.length, 3);
  to(199);
  assert.equal(fallback.takesOrigin(A), true, "the new hold runs from the new switch");
});

Deno.test("FetchFallback holds an origin 60 s by default and needs no onSwitch", () => {
  const { clock, to } = clockAt(0);
  const fallback = new FetchFallback({ always: false, clock });
  fallback.switchOrigin(A, "connect failed");
  to(59_999);
  assert.equal(fallback.takesOrigin(A), true);
  to(60_000);
  assert.equal(fallback.takesOrigin(A), false);
});

Deno.test("FetchFallback holds an origin on the monotonic clock, whatever the wall clock does", () => {
  const clock = new ManualClock();
  const fallback = new FetchFallback({ always: false, holdMs: 500, clock });
  fallback.switchOrigin(A, "connect failed");
  clock.set(clock.now() + 3_600_000);
  assert.equal(fallback.takesOrigin(A), true, "a wall-clock jump does not end the hold");
  clock.advance(500);
  assert.equal(fallback.takesOrigin(A), false);
});

Deno.test("FetchFallback.fetch() passes the request and fetch's answer through", async () => {
  const res = new Response("ok", { status: 201 });
  const { fetch, calls } = fakeFetch(() => Promise.resolve(res));
  const fallback = new FetchFallback({ always: false, fetch });
  const init: RequestInit = { method: "POST", body: "{}" };
  assert.equal(await fallback.fetch("http://h/v1", init), res);
  assert.deepEqual(calls, [["http://h/v1", init]]);
  await res.body?.cancel();
});

Deno.test("FetchFallback.fetch() passes every status from 100 to 599 but 101", async () => {
  for (const status of [100, 102, 103, 199, 200, 204, 304, 404, 500, 599]) {
    const { res } = oddResponse(status);
    const fallback = new FetchFallback({ always: false, fetch: () => Promise.resolve(res) });
    assert.equal(await fallback.fetch("http://h/", {}), res, String(status));
    await res.body?.cancel();
  }
});

Deno.test("FetchFallback.fetch() refuses a 101", async () => {
  const fallback = new FetchFallback({
    always: false,
    fetch: () => Promise.resolve(new Response(null, { status: 101 })),
  });
  await rejectsWith(
    fallback.fetch("http://h/", {}),
    "upstream answered with an invalid status (101)",
  );
});

Deno.test("FetchFallback.fetch() refuses a status outside 100-599 and cancels its body", async () => {
  for (const status of [0, 1, 99, 600, 999, 1000]) {
    const { res, cancelled } = oddResponse(status);
    const fallback = new FetchFallback({ always: false, fetch: () => Promise.resolve(res) });
    await rejectsWith(
      fallback.fetch("http://h/", {}),
      `upstream answered with an invalid status (${status})`,
    );
    await Promise.resolve();
    assert.equal(cancelled(), true, `${status}: body cancelled`);
  }
});

Deno.test("FetchFallback.fetch() turns fetch's RangeError for a status into a clean error", async () => {
  const err = new RangeError(
    "The status provided (600) is outside the range [200, 599] for url (http://h/?key=sk-1)",
  );
  await rejectsWith(
    throwing(err).fetch("http://h/?key=sk-1", {}),
    "upstream answered with an invalid status",
  );
});

Deno.test("FetchFallback.fetch() takes the URL out of fetch's errors", async () => {
  const cases: [unknown, string][] = [
    [
      new TypeError(
        "error sending request for url (http://127.0.0.1:9/v1/chat?key=sk-secret-123): " +
          "client error (Connect): tcp connect error: Connection refused (os error 111)",
      ),
      "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
    ],
    [
      new TypeError("error sending request for URL (https://h.example/x): dns error"),
      "error sending request: dns error",
    ],
    [
      new Error("cannot reach https://user:pw@h.example:8443/x?key=sk-secret-123 now"),
      "cannot reach (upstream) now",
    ],
    [
      new Error('redirect to "http://h/next?key=sk-secret-123" refused'),
      'redirect to "(upstream)" refused',
    ],
    [new Error("tried http://a/1 and HTTPS://b/2."), "tried (upstream) and (upstream)"],
    [new Error("a\n\n  b\t c"), "a b c"],
    [new Error(""), "upstream request failed"],
    [new Error("   "), "upstream request failed"],
    [new Error("http://h/only-a-url"), "(upstream)"],
    ["a thrown string with http://h/?key=sk-secret-123", "a thrown string with (upstream)"],
    [42, "42"],
  ];
  for (const [err, message] of cases) {
    await rejectsWith(throwing(err).fetch("http://h/", {}), message, String(err));
  }
});

Deno.test("FetchFallback.fetch() keeps at most 200 characters of fetch's message", async () => {
  await assert.rejects(throwing(new Error("x".repeat(500))).fetch("http://h/", {}), (err) => {
    assert.ok(err instanceof UpstreamProtocolError);
    assert.equal(err.message, "x".repeat(200));
    return true;
  });
});

Deno.test("FetchFallback.fetch() takes out a URL holding parentheses", async () => {
  // Deno's format; a path or query may hold ")" (it is not percent-encoded)
  const err = new TypeError(
    "error sending request for url (http://127.0.0.1:9/v1/models/(a)?key=sk-secret-123): " +
      "client error (Connect)",
  );
  await assert.rejects(
    throwing(err).fetch("http://127.0.0.1:9/v1/models/(a)?key=sk-secret-123", {}),
    (e) => {
      assert.ok(e instanceof UpstreamProtocolError);
      assert.ok(!e.message.includes("sk-secret-123"), `"${e.message}" holds the URL's query`);
      return true;
    },
  );
});

Deno.test("FetchFallback.fetch() throws the signal's reason when the request was aborted", async () => {
  const reason = new Error("client went away");
  const cases: unknown[] = [
    new DOMException("The signal has been aborted", "AbortError"),
    new TypeError("error sending request for url (http://h/)"),
    new RangeError("status"),
  ];
  for (const thrown of cases) {
    const controller = new AbortController();
    const fallback = new FetchFallback({
      always: false,
      fetch: () => {
        controller.abort(reason);
        return Promise.reject(thrown);
      },
    });
    await assert.rejects(
      fallback.fetch("http://h/", { signal: controller.signal }),
      (err) => err === reason,
    );
  }
  // a signal not aborted changes nothing
  const live = new AbortController();
  await rejectsWith(
    throwing(new TypeError("boom")).fetch("http://h/", { signal: live.signal }),
    "boom",
  );
});

Deno.test("FetchFallback.fetch() through Deno's fetch fails cleanly, without the URL", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const fallback = new FetchFallback({ always: false });
  const url = `http://127.0.0.1:${port}/v1/chat?key=sk-secret-123`;
  await assert.rejects(fallback.fetch(url, {}), (err) => {
    assert.ok(err instanceof UpstreamProtocolError);
    assert.ok(!err.message.includes("sk-secret-123"), err.message);
    assert.ok(!err.message.includes(String(port)), err.message);
    return true;
  });
});

Deno.test("fetchPreferred() reads the proxy variables and LLM_BALANCE_HTTP_CLIENT", async () => {
  // in a subprocess: the environment is the whole process's, shared with other test files
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/env_probe.ts`;
    const module = new URL("../../../src/proxy/http1/fallback.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { fetchPreferred } from ${JSON.stringify(module)};
const names = ["LLM_BALANCE_HTTP_CLIENT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
  "http_proxy", "https_proxy", "all_proxy"];
const cases = [
  [],
  [["LLM_BALANCE_HTTP_CLIENT", "fetch"]],
  [["LLM_BALANCE_HTTP_CLIENT", "http1"]],
  [["LLM_BALANCE_HTTP_CLIENT", "FETCH"]],
  [["HTTP_PROXY", "http://proxy:3128"]],
  [["HTTPS_PROXY", "http://proxy:3128"]],
  [["ALL_PROXY", "socks5://proxy:1080"]],
  [["http_proxy", "http://proxy:3128"]],
  [["https_proxy", "http://proxy:3128"]],
  [["all_proxy", "socks5://proxy:1080"]],
  [["HTTP_PROXY", ""]],
  [["NO_PROXY", "*"]],
];
let permitted = true;
try { Deno.env.get("HOME"); } catch { permitted = false; }
const out = [];
for (const set of permitted ? cases : [[]]) {
  if (permitted) for (const n of names) Deno.env.delete(n);
  for (const [k, v] of set) Deno.env.set(k, v);
  out.push([set.map(([k, v]) => k + "=" + v).join(" "), fetchPreferred()]);
}
console.log(JSON.stringify(out));
`,
    );
    const run = async (permissions: string[]) => {
      const env = Deno.env.toObject();
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-config", "--no-lock", ...permissions, script],
        cwd: dir,
        env: { ...env, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      return JSON.parse(new TextDecoder().decode(out.stdout)) as [string, boolean][];
    };
    assert.deepEqual(await run(["--allow-env"]), [
      ["", false],
      ["LLM_BALANCE_HTTP_CLIENT=fetch", true],
      ["LLM_BALANCE_HTTP_CLIENT=http1", false],
      ["LLM_BALANCE_HTTP_CLIENT=FETCH", false],
      ["HTTP_PROXY=http://proxy:3128", true],
      ["HTTPS_PROXY=http://proxy:3128", true],
      ["ALL_PROXY=socks5://proxy:1080", true],
      ["http_proxy=http://proxy:3128", true],
      ["https_proxy=http://proxy:3128", true],
      ["all_proxy=socks5://proxy:1080", true],
      ["HTTP_PROXY=", false],
      ["NO_PROXY=*", false],
    ]);
    // without permission to read the environment a proxy could be set: fetch decides
    assert.deepEqual(await run(["--deny-env"]), [["", true]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FetchFallback defaults always to fetchPreferred()", () => {
  assert.equal(new FetchFallback().always, fetchPreferred());
});
