/**
 * @module
 * Operator actions on candidates, behind `/admin`: list the keys, disable, enable or reset one
 * key (by its stable id or its mask, never the key itself) or every key of an upstream.
 */

import type { Runtime } from "../runtime.ts";
import type { StatsSource } from "./source.ts";
import { ProxyError } from "../errors.ts";
import type { Candidate } from "../plugin.ts";
import { candidateView } from "./stats.ts";

/** What an admin action can do to a candidate. */
export type AdminAction = "disable" | "enable" | "reset";

const ACTIONS: ReadonlySet<string> = new Set<AdminAction>(["disable", "enable", "reset"]);

/** The body of an answered admin request. */
export type AdminResult =
  | { keys: Record<string, unknown>[] }
  | { ok: true; action: AdminAction; keys: Record<string, unknown>[] };

function notFound(message: string): ProxyError {
  return new ProxyError(message, { status: 404, type: "not_found_error", code: "not_found" });
}

/**
 * Runs one admin request.
 * @param app the application (health board, clock)
 * @param rt the runtime whose candidates are meant
 * @param method the HTTP method
 * @param parts the decoded path segments after `/admin`, e.g. `["keys", "<id>", "disable"]`
 * @returns the body to answer with: `GET keys` lists every candidate; `POST keys/{id|mask}/
 * {action}` and `POST upstreams/{name}/{action}` act and list the candidates acted on
 * @throws {ProxyError} 404 for an unknown endpoint, key or upstream, 400 for an unknown action
 */
export function adminAction(
  app: StatsSource,
  rt: Runtime,
  method: string,
  parts: readonly string[],
): AdminResult {
  const [what, id, action, ...extra] = parts;
  const all = [...rt.candidates.values()];
  if (method === "GET" && what === "keys" && id === undefined) {
    return { keys: all.map((c) => candidateView(app, c)) };
  }
  const known = what === "keys" || what === "upstreams";
  if (
    method !== "POST" || !known || id === undefined || action === undefined || extra.length > 0
  ) {
    throw notFound(
      "Unknown admin endpoint (GET /admin/keys, POST /admin/keys/{id}/{action}, " +
        "POST /admin/upstreams/{name}/{action})",
    );
  }
  if (!ACTIONS.has(action)) {
    throw new ProxyError(`Unknown admin action "${action}" (disable, enable, reset)`, {
      status: 400,
      type: "invalid_request_error",
      code: "unknown_action",
    });
  }
  const targets: Candidate[] = what === "keys"
    ? all.filter((c) => c.id === id || c.mask === id)
    : all.filter((c) => c.upstream.name === id);
  if (targets.length === 0) throw notFound(`No ${what === "keys" ? "key" : "upstream"} "${id}"`);
  for (const c of targets) {
    if (action === "disable") app.board.setDisabled(c, true);
    else if (action === "enable") app.board.setDisabled(c, false);
    else {
      app.board.reset(c);
      app.budgets.reset(c);
    }
  }
  if (action !== "disable") app.wake();
  return {
    ok: true,
    action: action as AdminAction,
    keys: targets.map((c) => candidateView(app, c)),
  };
}
