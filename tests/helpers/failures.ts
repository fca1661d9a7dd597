/**
 * @module
 * Shared pieces of the failure-handling end-to-end tests: two well-known keys, the official
 * SDK pointed at a proxy (no SDK retries, so the proxy's own behaviour shows), and /stats.
 */

import assert from "node:assert/strict";
import OpenAI from "openai";
import type { MockUpstream } from "../../tools/mock_upstream.ts";
import type { TestProxy } from "./proxy.ts";

/** The key of upstream `a`. */
export const KEY_A = "sk-aaaa-000000000001";
/** The key of upstream `b`. */
export const KEY_B = "sk-bbbb-000000000002";
/** How `KEY_A` shows in stats and logs. */
export const MASK_A = "sk-a...0001";
/** A minimal chat. */
export const MESSAGES = [{ role: "user" as const, content: "hi" }];

/**
 * The official SDK against a proxy, with its own retries off.
 * @param proxy the proxy
 */
export function sdk(proxy: TestProxy): OpenAI {
  return new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "client-key", maxRetries: 0 });
}

/**
 * Config text: upstream `a` then `b`, one key each, in a default round_robin pool.
 * @param extra more YAML appended
 */
export function twoUpstreams(a: MockUpstream, b: MockUpstream, extra = ""): string {
  return `
upstreams:
  a: { base_url: "${a.baseUrl}", keys: [${KEY_A}] }
  b: { base_url: "${b.baseUrl}", keys: [${KEY_B}] }
${extra}`;
}

/**
 * Reads /stats.
 * @returns per masked key
 */
export async function stats(proxy: TestProxy): Promise<Record<string, Record<string, unknown>>> {
  const res = await fetch(`${proxy.url}/stats`);
  assert.equal(res.status, 200);
  return await res.json();
}
