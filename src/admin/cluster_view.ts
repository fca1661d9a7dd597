/**
 * @module
 * What every instance sharing a Redis sees alike: the cluster's budget counts, read from Redis
 * when `/stats` or `/metrics` is asked (one script call per key with a configured budget, all
 * sent at once), and how Redis is. Shown beside each instance's own counters: `cluster_budgets`
 * in `/stats`, `llm_balance_cluster_budget_*` in `/metrics` (the same series on every instance:
 * aggregate them with `max`, never `sum`; per-instance series sum across instances).
 */

import type { Candidate } from "../plugin.ts";
import type { Cluster, ClusterStatus } from "../shared/cluster.ts";
import { readModel } from "../budget/models.ts";

/** One budget of one key, cluster-wide. */
export interface ClusterBudget {
  limit: number;
  used: number;
  remaining: number;
}

/** The cluster's picture at one moment. */
export interface ClusterSnapshot {
  status: ClusterStatus;
  /** Per key id, per budget name (`requests_per_day`, `model_requests_per_day:<model>`, …). */
  budgets: Map<string, Record<string, ClusterBudget>>;
}

function budget(limit: number, used: number): ClusterBudget {
  return { limit, used, remaining: Math.max(0, limit - used) };
}

/**
 * Reads the cluster's budget counts of keys from Redis.
 * @param cluster the shared state
 * @param candidates the keys
 * @returns the snapshot (without budgets when Redis is down)
 */
export async function clusterSnapshot(
  cluster: Cluster,
  candidates: Iterable<Candidate>,
): Promise<ClusterSnapshot> {
  const budgets = new Map<string, Record<string, ClusterBudget>>();
  const reads: Promise<void>[] = [];
  for (const c of candidates) {
    reads.push(
      cluster.bank.cluster(c).then((read) => {
        if (read === undefined) return;
        const q = c.quota;
        const { counts, models } = read;
        const out: Record<string, ClusterBudget> = {};
        if (q.requestsPerDay > 0) {
          out.requests_per_day = budget(q.requestsPerDay, counts.dayRequests);
        }
        if (q.modelRequestsPerDay > 0) {
          for (const m of Object.keys(models).sort()) {
            out[`model_requests_per_day:${m}`] = budget(
              q.modelRequestsPerDay,
              readModel(models, m) ?? 0,
            );
          }
        }
        if (q.tokensPerDay > 0) out.tokens_per_day = budget(q.tokensPerDay, counts.dayTokens);
        if (q.requestsPerMinute > 0) {
          out.requests_per_minute = budget(q.requestsPerMinute, counts.minuteRequests);
        }
        if (q.tokensPerMinute > 0) {
          out.tokens_per_minute = budget(q.tokensPerMinute, counts.minuteTokens);
        }
        budgets.set(c.id, out);
      }),
    );
  }
  await Promise.all(reads);
  return { status: cluster.status(), budgets };
}
