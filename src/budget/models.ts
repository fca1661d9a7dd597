/**
 * @module
 * Per-model budget entries, bounded: a key counts the models its upstream is really sent (the
 * upstream's `models` mapping applied), each under its own name while there is room, every
 * other one in one shared overflow entry that still counts against the caps. A client naming
 * ever new (or enormous) models cannot grow a key's record, or the state file, without bound,
 * nor slip past a per-model cap.
 */

import type { Candidate } from "../plugin.ts";

/** Models kept under their own name per key and map. */
export const MAX_MODELS = 100;
/** Longest model name kept under its own name. */
export const MAX_MODEL_NAME = 200;
/** The shared entry of every model beyond {@linkcode MAX_MODELS} or too long to keep. */
export const OTHER_MODELS = "\u0000other";

/**
 * The model a key's upstream is sent for a client's model (its `models` mapping).
 * @param c the key
 * @param model the client's model
 * @returns the upstream's name for it, or the client's when unmapped
 */
export function upstreamModel(c: Candidate, model: string | undefined): string | undefined {
  if (model === undefined) return undefined;
  const map = c.upstream.config.models;
  return Object.hasOwn(map, model) ? map[model] : model;
}

/**
 * Reads a model's entry: its own, else the overflow entry (which holds every model that has no
 * entry of its own once there is one).
 * @param map a per-model map of a key's budget
 * @param model the model
 */
export function readModel<T>(map: Readonly<Record<string, T>>, model: string): T | undefined {
  if (Object.hasOwn(map, model)) return map[model];
  return Object.hasOwn(map, OTHER_MODELS) ? map[OTHER_MODELS] : undefined;
}

/**
 * Where a model's entry is written: its own name while the map has room and the name is sane,
 * else the overflow entry.
 * @param map a per-model map of a key's budget
 * @param model the model
 * @returns the entry's name
 */
export function modelSlot(map: Readonly<Record<string, unknown>>, model: string): string {
  if (Object.hasOwn(map, model)) return model;
  if (model === "__proto__" || model.length > MAX_MODEL_NAME) return OTHER_MODELS;
  if (Object.hasOwn(map, OTHER_MODELS) || Object.keys(map).length >= MAX_MODELS) {
    return OTHER_MODELS;
  }
  return model;
}
