import assert from "node:assert/strict";
import { errorBody, errorResponse, ProxyError } from "../src/errors.ts";

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
});

Deno.test("errorBody() is valid JSON with the four fields", () => {
  const body = JSON.parse(errorBody("m", "server_error", null));
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
});
