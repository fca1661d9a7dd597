import assert from "node:assert/strict";
import {
  errorBody,
  errorResponse,
  ProxyError,
  setRetryHeaders,
  upstreamErrorBody,
} from "../src/errors.ts";

Deno.test("errorResponse() renders a ProxyError in OpenAI's shape", async () => {
  const res = errorResponse(
    new ProxyError("No key", {
      status: 503,
      type: "service_unavailable",
      code: "no_upstream_available",
      headers: { "retry-after": "7" },
    }),
    "req-1",
  );
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("retry-after"), "7");
  assert.equal(res.headers.get("x-request-id"), "req-1");
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.deepEqual(await res.json(), {
    error: {
      message: "No key",
      type: "service_unavailable",
      code: "no_upstream_available",
      param: null,
    },
  });
});

Deno.test("errorResponse() hides the details of unexpected errors", async () => {
  const res = errorResponse(new Error("secret internal detail sk-123"));
  assert.equal(res.status, 500);
  const text = await res.text();
  assert.ok(!text.includes("secret"));
  assert.equal(JSON.parse(text).error.code, "internal_error");
  // says when to retry, and that an SDK retrying at once would not help
  assert.equal(res.headers.get("retry-after"), "1");
  assert.equal(res.headers.get("x-should-retry"), "false");
});

Deno.test("errorResponse() renders a ProxyError's retry advice as headers", () => {
  const res = errorResponse(
    new ProxyError("busy", { status: 429, retry: { afterSeconds: 12.2, retry: true } }),
  );
  assert.equal(res.headers.get("retry-after"), "13");
  assert.equal(res.headers.get("x-should-retry"), "true");
  void res.body?.cancel();
});

Deno.test("errorResponse() gives every 5xx a Retry-After, and a 4xx none it was not given", () => {
  const own = errorResponse(new ProxyError("x", { status: 503 }));
  assert.equal(own.headers.get("retry-after"), "1");
  assert.equal(own.headers.get("x-should-retry"), null);
  const kept = errorResponse(new ProxyError("x", { status: 503, headers: { "retry-after": "9" } }));
  assert.equal(kept.headers.get("retry-after"), "9");
  const client = errorResponse(new ProxyError("x", { status: 400 }));
  assert.equal(client.headers.get("retry-after"), null);
});

Deno.test("setRetryHeaders() replaces an upstream's advice, retry-after-ms included", () => {
  const h = new Headers({ "retry-after": "30", "retry-after-ms": "5", "x-should-retry": "true" });
  setRetryHeaders(h, { afterSeconds: 0, retry: false });
  assert.equal(h.get("retry-after"), "1");
  assert.equal(h.get("retry-after-ms"), null);
  assert.equal(h.get("x-should-retry"), "false");
  setRetryHeaders(h, { afterSeconds: 4 });
  assert.equal(h.get("retry-after"), "4");
  assert.equal(h.get("x-should-retry"), null);
});

const encode = (t: string) => new TextEncoder().encode(t);
const answer = { status: 400, statusText: "Bad Request", upstream: "gw" };

Deno.test("upstreamErrorBody() keeps a JSON body with an error member byte for byte", () => {
  for (const text of ['{"error":{"message":"no"}}', '{ "error" : "model not found" }']) {
    const body = encode(text);
    const out = upstreamErrorBody(body, answer);
    assert.equal(out.changed, false);
    assert.equal(out.body, body);
  }
});

Deno.test("upstreamErrorBody() adds an error member to a JSON object without one", () => {
  const text = '{"status":"failure","message":"Invalid config passed","n":1.50}  ';
  const out = upstreamErrorBody(encode(text), answer);
  assert.equal(out.changed, true);
  // every byte of the upstream's body is still there
  assert.ok(
    String(out.body).startsWith('{"status":"failure","message":"Invalid config passed","n":1.50,'),
  );
  const json = JSON.parse(String(out.body));
  assert.deepEqual(json.error, {
    message: "Invalid config passed",
    type: "invalid_request_error",
    code: "upstream_400",
    param: null,
  });
  // a useless error member is outdone: readers take the last member of a name
  const flagged = upstreamErrorBody(encode('{"error":true,"msg":"quota gone"}'), answer);
  assert.equal(JSON.parse(String(flagged.body)).error.message, "quota gone");
  // no known field: the JSON itself is quoted
  const bare = upstreamErrorBody(encode('{"code":17}'), { ...answer, status: 503, statusText: "" });
  const err = JSON.parse(String(bare.body)).error;
  assert.equal(err.message, 'Upstream "gw" answered HTTP 503: {"code":17}');
  assert.equal(err.type, "upstream_error");
  assert.equal(
    JSON.parse(String(upstreamErrorBody(encode("{}"), answer).body)).error.code,
    "upstream_400",
  );
});

Deno.test("upstreamErrorBody() wraps text, HTML, other JSON and nothing, quoting them", () => {
  const message = (text: string, status = 400, statusText = "") =>
    JSON.parse(String(upstreamErrorBody(encode(text), { status, statusText, upstream: "gw" }).body))
      .error.message;
  assert.equal(
    message("Invalid config passed\n"),
    'Upstream "gw" answered HTTP 400: Invalid config passed',
  );
  assert.equal(
    message(
      "<html><head><style>p{}</style></head><body><h1>502 Bad Gateway</h1>\n<hr>nginx</body></html>",
      502,
    ),
    'Upstream "gw" answered HTTP 502: 502 Bad Gateway nginx',
  );
  assert.equal(message('"just a string"'), "just a string");
  assert.equal(message('["a"]'), 'Upstream "gw" answered HTTP 400: ["a"]');
  assert.equal(
    message("", 502, "Bad Gateway"),
    'Upstream "gw" answered HTTP 502 Bad Gateway with no body',
  );
  assert.equal(message("x".repeat(600)).length, 'Upstream "gw" answered HTTP 400: '.length + 501);
  assert.equal(message("{oops"), 'Upstream "gw" answered HTTP 400: {oops');
});

Deno.test("errorBody() is valid JSON with the four fields", () => {
  const body = JSON.parse(errorBody("m", "server_error", null));
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
});
