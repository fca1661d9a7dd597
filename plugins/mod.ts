/**
 * @module
 * Every built-in plugin, imported statically so `deno compile` embeds them all.
 */

import roundRobin from "./strategies/round_robin.ts";
import random from "./strategies/random.ts";
import weighted from "./strategies/weighted.ts";
import leastConnections from "./strategies/least_connections.ts";
import quotaAware from "./strategies/quota_aware.ts";
import p2c from "./strategies/p2c.ts";
import httpProbe from "./probes/http.ts";
import requestLog from "./middleware/request_log.ts";
import cors from "./middleware/cors.ts";
import endpoints from "./middleware/endpoints.ts";
import dashboard from "./middleware/dashboard.ts";
import clientAuth from "./middleware/client_auth.ts";
import rateLimit from "./middleware/rate_limit.ts";
import models from "./middleware/models.ts";
import proxy from "./middleware/proxy.ts";

/** The built-in plugins, registered at start. */
export const builtins = [
  roundRobin,
  random,
  weighted,
  leastConnections,
  quotaAware,
  p2c,
  httpProbe,
  requestLog,
  cors,
  endpoints,
  dashboard,
  clientAuth,
  rateLimit,
  models,
  proxy,
] as const;
