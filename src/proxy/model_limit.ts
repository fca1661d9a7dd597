/**
 * @module
 * The model a request names, read for a client key limited to some models so that no
 * upstream can read another one: JSON bodies strictly (one `model`, no look-alike spelling),
 * `multipart/form-data` bodies by RFC 7578 strictly; anything else cannot be checked and is
 * refused.
 */

import { ProxyError } from "../errors.ts";
import { fieldsNamedLike, fold, stringOf } from "./json_scan.ts";

const encoder = new TextEncoder();
const MULTIPART_FORM = /^multipart\/form-data[ \t]*(?:;|$)/i;
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
/** One header line of a part: a name, a colon, a value (no folding, no bare CR or LF). */
const HEADER_LINE = new RegExp(`^(${TOKEN}):[ \\t]*(.*?)[ \\t]*$`);
/** One `; name=value` parameter: a token, or a quoted string without quotes or escapes. */
const PARAM = new RegExp(
  `;[ \\t]*(${TOKEN})[ \\t]*=[ \\t]*(?:"([^"\\\\]*)"|(${TOKEN}))[ \\t]*`,
  "y",
);
const FORM_DATA = /^form-data[ \t]*/i;
const PLAIN_TEXT = /^text\/plain[ \t]*(?:;[ \t]*charset="?(?:utf-8|us-ascii)"?[ \t]*)?$/i;
/** Part heads as UTF-8, so look-alike names (`ｍｏｄｅｌ`) fold as in JSON. */
const utf8 = new TextDecoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function unverifiable(why: string): ProxyError {
  return new ProxyError(
    `This client key may use only some models, so the request must name its model unambiguously: ${why}`,
    { status: 403, type: "permission_error", code: "model_unverifiable" },
  );
}

/** A client's name or value quoted in a message, cut short. */
function quote(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);
}

/**
 * The model a request names, read so that no upstream can read another one: the check of a
 * client key limited to some models. A JSON body must be one well-formed JSON object (UTF-8)
 * naming its model in exactly one top-level field, spelled `model` and holding a string: no
 * second `model`, no `Model` or `MODEL` or escaped or compatibility spelling beside or instead
 * of it (JSON parsers differ on repeated names, and some match names case-insensitively). A
 * `multipart/form-data` body (audio transcriptions, image edits) must name it in exactly one
 * plain form field `model`, framed by RFC 7578 strictly (CRLF line ends, no preamble, no
 * epilogue, its boundary nowhere else, no header folding, no escapes or encoded names). Any
 * other body names no model that can be checked.
 * @param contentType the request's content type
 * @param body the request body
 * @param text the body as text, when it was recognised as JSON
 * @returns the model, or undefined for a request without a body (it uses no model)
 * @throws {ProxyError} 403 `model_unverifiable`, saying why, when the model cannot be determined
 */
export function limitedModel(
  contentType: string | null,
  body: Uint8Array | null,
  text: string | undefined,
): string | undefined {
  if (body === null || body.length === 0) return undefined;
  if (contentType !== null && MULTIPART_FORM.test(contentType)) return formModel(contentType, body);
  if (text === undefined) {
    throw unverifiable("only JSON and multipart/form-data bodies name a model that can be checked");
  }
  const fields = fieldsNamedLike(text, "model");
  if (fields === undefined || !wellFormed(text, body)) {
    throw unverifiable("the body is not one well-formed JSON object");
  }
  if (fields.length === 0) throw unverifiable('the body has no "model" field');
  if (fields.length > 1) {
    throw unverifiable(
      `the body names its model ${fields.length} times (${
        fields.map((f) => quote(f.name)).join(", ")
      })`,
    );
  }
  const field = fields[0]!;
  if (!field.exact) throw unverifiable(`the field ${quote(field.name)} is not spelled "model"`);
  const model = stringOf(field.span);
  if (model === undefined) throw unverifiable('"model" is not a string');
  return model;
}

function wellFormed(text: string, body: Uint8Array): boolean {
  try {
    // a replacement character may stand for bytes that are not UTF-8
    if (text.includes("\uFFFD")) strictUtf8.decode(body);
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The `model` field of a multipart/form-data body, read strictly (see limitedModel). */
function formModel(contentType: string, body: Uint8Array): string {
  const boundary = boundaryOf(contentType);
  if (boundary === undefined) {
    throw unverifiable("the multipart content type needs exactly one plain boundary");
  }
  const parts = splitParts(body, encoder.encode(`--${boundary}`));
  if (parts === undefined) throw unverifiable("the multipart body is not framed strictly");
  let model: string | undefined;
  for (const [start, end] of parts) {
    const headEnd = indexOf(body, CRLFCRLF, start, end);
    if (headEnd < 0) throw unverifiable("a part of the multipart body has no header end");
    const part = partHead(utf8.decode(body.subarray(start, headEnd)));
    if (part === undefined) throw unverifiable("a part of the multipart body has a malformed head");
    if (part.name === "model" && part.file) throw unverifiable('the form field "model" is a file');
    const plain = part.name === "model";
    if (!plain && (part.name.includes("=?") || fold(percentDecoded(part.name)) === "model")) {
      throw unverifiable(`the form field ${quote(part.name)} is not spelled "model"`);
    }
    if (!plain) continue;
    if (model !== undefined) throw unverifiable('the form names "model" more than once');
    if (part.encoded || (part.type !== undefined && !PLAIN_TEXT.test(part.type))) {
      throw unverifiable('the form field "model" is not plain text');
    }
    try {
      model = strictUtf8.decode(body.subarray(headEnd + 4, end));
    } catch {
      throw unverifiable('the form field "model" is not UTF-8');
    }
  }
  if (model === undefined) throw unverifiable('the form has no "model" field');
  if (model === "") throw unverifiable('the form field "model" is empty');
  return model;
}

function boundaryOf(contentType: string): string | undefined {
  const semicolon = contentType.indexOf(";");
  if (semicolon < 0) return undefined;
  const params = contentType.slice(semicolon);
  let boundary: string | undefined;
  PARAM.lastIndex = 0;
  for (let m; PARAM.lastIndex < params.length && (m = PARAM.exec(params)) !== null;) {
    if (!m[1]!.toLowerCase().startsWith("boundary")) continue;
    if (boundary !== undefined || m[1]!.toLowerCase() !== "boundary") return undefined;
    boundary = m[2] ?? m[3];
  }
  if (PARAM.lastIndex !== params.length) return undefined;
  // RFC 2046: 1 to 70 of these characters, not ending in a space
  return boundary !== undefined && /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/
      .test(boundary)
    ? boundary
    : undefined;
}

const CRLFCRLF = [13, 10, 13, 10];

/**
 * The parts of a multipart body as [start, end) byte ranges, when every occurrence of the
 * delimiter is a delimiter line: the first at the very start, each other after a CRLF, each
 * followed by a CRLF, the last by `--` and nothing but an optional CRLF.
 */
function splitParts(body: Uint8Array, delim: Uint8Array): [number, number][] | undefined {
  if (indexOf(body, delim, 0, body.length) !== 0) return undefined;
  const parts: [number, number][] = [];
  for (let at = 0;;) {
    const after = at + delim.length;
    if (body[after] === 45 && body[after + 1] === 45) {
      const rest = body.length - after - 2;
      const ok = rest === 0 || (rest === 2 && body[after + 2] === 13 && body[after + 3] === 10);
      return ok && parts.length > 0 ? parts : undefined;
    }
    if (body[after] !== 13 || body[after + 1] !== 10) return undefined;
    const next = indexOf(body, delim, after + 2, body.length);
    if (next < after + 4 || body[next - 2] !== 13 || body[next - 1] !== 10) return undefined;
    parts.push([after + 2, next - 2]);
    at = next;
  }
}

/** Where `seq` first occurs in `bytes[from, to)`, or -1. */
function indexOf(bytes: Uint8Array, seq: ArrayLike<number>, from: number, to: number): number {
  const first = seq[0]!;
  for (let i = bytes.indexOf(first, from); i >= 0 && i + seq.length <= to;) {
    let j = 1;
    while (j < seq.length && bytes[i + j] === seq[j]) j++;
    if (j === seq.length) return i;
    i = bytes.indexOf(first, i + 1);
  }
  return -1;
}

interface PartHead {
  name: string;
  /** Whether it has a file name (then no parser takes it for a plain field). */
  file: boolean;
  /** Whether it has a Content-Transfer-Encoding. */
  encoded: boolean;
  type: string | undefined;
}

/** Reads a part's header lines; undefined when any is malformed or ambiguous. */
function partHead(head: string): PartHead | undefined {
  let disposition: string | undefined;
  let type: string | undefined;
  let encoded = false;
  for (const line of head.split("\r\n")) {
    const m = HEADER_LINE.exec(line);
    if (m === null) return undefined;
    const field = m[1]!.toLowerCase();
    if (field === "content-disposition") {
      if (disposition !== undefined) return undefined;
      disposition = m[2]!;
    } else if (field === "content-type") {
      if (type !== undefined) return undefined;
      type = m[2]!;
    } else if (field === "content-transfer-encoding") encoded = true;
  }
  if (disposition === undefined) return undefined;
  const kind = FORM_DATA.exec(disposition);
  if (kind === null) return undefined;
  const params = disposition.slice(kind[0].length);
  const seen = new Map<string, string>();
  PARAM.lastIndex = 0;
  for (let m; PARAM.lastIndex < params.length && (m = PARAM.exec(params)) !== null;) {
    const key = m[1]!.toLowerCase();
    if (seen.has(key) || (key !== "name" && key !== "filename" && key !== "filename*")) {
      return undefined;
    }
    seen.set(key, m[2] ?? m[3]!);
  }
  const name = seen.get("name");
  if (PARAM.lastIndex !== params.length || name === undefined) return undefined;
  return { name, file: seen.size > 1, encoded, type };
}

function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
