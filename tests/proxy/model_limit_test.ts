/** @module Tests of src/proxy/model_limit.ts: a limited client key's model, read strictly. */

import assert from "node:assert/strict";
import { limitedModel } from "../../src/proxy/model_limit.ts";
import { ProxyError } from "../../src/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const MODEL_CODE = "model_unverifiable";

function unverifiable(f: () => unknown, why: RegExp, what = ""): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ProxyError, `${what}: ${e}`);
    assert.equal(e.status, 403, what);
    assert.equal(e.type, "permission_error", what);
    assert.equal(e.code, MODEL_CODE, what);
    assert.match(e.message, why, what);
    return true;
  }, what);
}

function jsonModel(text: string): string | undefined {
  return limitedModel("application/json", enc.encode(text), text);
}

Deno.test("limitedModel() reads the one model of a well-formed JSON body", () => {
  assert.equal(jsonModel('{"model":"cheap","messages":[{"model":"x"}]}'), "cheap");
  assert.equal(jsonModel(String.raw`{"model":"cheap"}`), "cheap");
  assert.equal(jsonModel(String.raw`{"model":"cheap"}`), "cheap");
  assert.equal(limitedModel("application/json", null, undefined), undefined);
  assert.equal(limitedModel("application/json", new Uint8Array(0), undefined), undefined);
});

Deno.test("limitedModel() refuses a JSON body whose model some parser could read otherwise", () => {
  const cases: [string, RegExp][] = [
    ['{"Model":"expensive"}', /"Model" is not spelled "model"/],
    ['{"model":"cheap","MODEL":"expensive"}', /2 times \("model", "MODEL"\)/],
    ['{"model":"cheap","model":"expensive"}', /2 times/],
    ['{"model":"cheap","\uff4d\uff4f\uff44\uff45\uff4c":"expensive"}', /2 times/],
    ['{"messages":[]}', /no "model" field/],
    ['{"model":["cheap"]}', /not a string/],
    ['{"model":null}', /not a string/],
    ['{"model":"cheap"} {"model":"expensive"}', /not one well-formed JSON object/],
    ['{"model":"cheap","x":[1,}]}', /not one well-formed JSON object/],
    ['{"model":"cheap","x":[/* "model":"expensive" */]}', /not one well-formed JSON object/],
    ['{"model":"cheap","x":NaN}', /not one well-formed JSON object/],
  ];
  for (const [text, why] of cases) unverifiable(() => jsonModel(text), why, text);
});

Deno.test("limitedModel() refuses JSON that is not UTF-8", () => {
  const body = new Uint8Array([...enc.encode('{"model":"cheap","x":"'), 0xc0, ...enc.encode('"}')]);
  unverifiable(
    () => limitedModel("application/json", body, dec.decode(body)),
    /not one well-formed JSON object/,
  );
  // a real U+FFFD is fine
  assert.equal(jsonModel('{"model":"cheap","x":"\ufffd"}'), "cheap");
});

Deno.test("limitedModel() refuses bodies other than JSON and multipart forms", () => {
  for (
    const type of ["application/x-www-form-urlencoded", "application/octet-stream", "text/plain"]
  ) {
    unverifiable(
      () => limitedModel(type, enc.encode("model=cheap"), undefined),
      /only JSON and multipart\/form-data/,
      type,
    );
  }
});

/** A multipart body as `fetch` sends it, and its content type. */
async function form(fields: [string, string | Blob][]): Promise<[string, Uint8Array]> {
  const fd = new FormData();
  for (const [k, v] of fields) fd.append(k, v);
  const req = new Request("http://x/", { method: "POST", body: fd });
  return [req.headers.get("content-type")!, new Uint8Array(await req.arrayBuffer())];
}

const B = "xYz0123";
const TYPE = `multipart/form-data; boundary=${B}`;

/** A multipart body from raw parts (each its head lines and content), CRLF-framed. */
function raw(parts: string[], end = `--${B}--\r\n`): Uint8Array {
  return enc.encode(parts.map((p) => `--${B}\r\n${p}\r\n`).join("") + end);
}

const MODEL_PART = 'Content-Disposition: form-data; name="model"\r\n\r\ncheap';
const FILE_PART =
  'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF';

Deno.test("limitedModel() reads the model field of a multipart form as clients send it", async () => {
  const audio = new Blob([new Uint8Array(5000).map((_, i) => i % 256)], { type: "audio/wav" });
  const [type, body] = await form([["file", audio], ["model", "whisper-1"], ["language", "en"]]);
  assert.equal(limitedModel(type, body, undefined), "whisper-1");
  // curl and Python's requests: a quoted boundary, a final CRLF, a text/plain model part
  assert.equal(
    limitedModel(
      `multipart/form-data; boundary="${B}"`,
      raw([
        FILE_PART,
        'Content-Disposition: form-data; name="model"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncheap',
      ]),
      undefined,
    ),
    "cheap",
  );
  assert.equal(limitedModel(TYPE, raw([FILE_PART, MODEL_PART]), undefined), "cheap");
});

Deno.test("limitedModel() refuses a multipart form whose model some parser could read otherwise", () => {
  const named = (name: string) => MODEL_PART.replace('"model"', name);
  const withHeader = (h: string) => MODEL_PART.replace("\r\n\r\n", `\r\n${h}\r\n\r\n`);
  const cases: [string, Uint8Array, RegExp, string?][] = [
    ["no model", raw([FILE_PART]), /no "model" field/],
    ["twice", raw([MODEL_PART, MODEL_PART.replace("cheap", "dear")]), /"model" more than once/],
    ["Model", raw([named('"Model"')]), /"Model" is not spelled "model"/],
    ["model and MODEL", raw([MODEL_PART, named('"MODEL"')]), /"MODEL" is not spelled/],
    ["percent-encoded", raw([MODEL_PART, named('"%6Dodel"')]), /"%6Dodel" is not spelled/],
    ["full-width", raw([MODEL_PART, named('"\uff4d\uff4f\uff44\uff45\uff4c"')]), /is not spelled/],
    ["RFC 2047 name", raw([MODEL_PART, named('"=?utf-8?q?model?="')]), /is not spelled/],
    ["RFC 2231 name", raw([named("x; name*=utf-8''model")]), /malformed head/],
    ["escaped name", raw([named('"mod\\el"')]), /malformed head/],
    ["two names", raw([named('"x"; name="model"')]), /malformed head/],
    [
      "two dispositions",
      raw([`Content-Disposition: form-data; name="x"\r\n${MODEL_PART}`]),
      /malf/,
    ],
    ["folded header", raw([MODEL_PART.replace("; name", ";\r\n name")]), /malformed head/],
    ["model as a file", raw([named('"model"; filename="m"')]), /is a file/],
    ["encoded value", raw([withHeader("Content-Transfer-Encoding: base64")]), /not plain text/],
    ["binary value", raw([withHeader("Content-Type: application/octet-stream")]), /not plain/],
    ["empty model", raw([MODEL_PART.replace("cheap", "")]), /"model" is empty/],
    ["bare LF", enc.encode(`--${B}\n${MODEL_PART.replaceAll("\r\n", "\n")}\n--${B}--`), /framed/],
    ["preamble", enc.encode(`hello\r\n${dec.decode(raw([MODEL_PART]))}`), /framed/],
    ["epilogue", raw([MODEL_PART], `--${B}--\r\n--${B}\r\n${MODEL_PART}\r\n--${B}--`), /framed/],
    ["no close", raw([MODEL_PART], ""), /framed/],
    ["boundary inside", raw([MODEL_PART, `${FILE_PART} --${B}\r\nx`]), /framed/],
    ["padding", enc.encode(`--${B} \r\n${MODEL_PART}\r\n--${B}--`), /framed/],
    ["no boundary", raw([MODEL_PART]), /one plain boundary/, "multipart/form-data"],
    ["two boundaries", raw([MODEL_PART]), /one plain boundary/, `${TYPE}; boundary=other`],
    ["RFC 2231 boundary", raw([MODEL_PART]), /one plain boundary/, `${TYPE}; boundary*=x`],
  ];
  for (const [what, body, why, type = TYPE] of cases) {
    unverifiable(() => limitedModel(type, body, undefined), why, what);
  }
});

Deno.test("limitedModel() refuses a multipart model that is not UTF-8", () => {
  const head = enc.encode(`--${B}\r\nContent-Disposition: form-data; name="model"\r\n\r\n`);
  const body = new Uint8Array([...head, 0xff, ...enc.encode(`\r\n--${B}--`)]);
  unverifiable(() => limitedModel(TYPE, body, undefined), /not UTF-8/);
});

Deno.test("limitedModel() reads a multipart form by its content type, even one that says json", async () => {
  const [type, body] = await form([["model", "cheap"]]);
  const odd = type.replace(/boundary=.*/, `boundary=json${B}`);
  const text = dec.decode(body).replaceAll(type.split("boundary=")[1]!, `json${B}`);
  assert.equal(limitedModel(odd, enc.encode(text), text), "cheap");
});
