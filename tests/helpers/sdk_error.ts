/** @module The error an official OpenAI SDK call ends with, for end-to-end tests. */

import assert from "node:assert/strict";
import OpenAI from "openai";

/**
 * Awaits an SDK call that must fail with an API error.
 * @param p the call
 * @returns the SDK's `APIError` (status, headers, error body)
 * @throws {AssertionError} when it fails otherwise, or succeeds
 */
export async function apiError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, String(err));
    return err;
  }
  throw new Error("the call succeeded");
}
