/**
 * @module
 * The plugin registry: strategies, probes and middleware registered by unique name. Built-ins
 * come from `plugins/mod.ts`; a config may add modules by path.
 */

import type { MiddlewarePlugin } from "./context.ts";
import type { ProbePlugin, StrategyPlugin } from "./plugin.ts";

/** Any plugin the registry holds. */
export type AnyPlugin = StrategyPlugin | ProbePlugin | MiddlewarePlugin;

/** Plugins by kind and name. */
export class Registry {
  #strategies = new Map<string, StrategyPlugin>();
  #probes = new Map<string, ProbePlugin>();
  #middleware = new Map<string, MiddlewarePlugin>();

  /**
   * Registers plugins.
   * @param plugins the plugins to add
   * @throws {TypeError} when a value is not a plugin or its name is already taken for its kind
   */
  register(...plugins: unknown[]): void {
    for (const p of plugins) {
      const plugin = asPlugin(p);
      const map: Map<string, AnyPlugin> = plugin.kind === "strategy"
        ? this.#strategies
        : plugin.kind === "probe"
        ? this.#probes
        : this.#middleware;
      if (map.has(plugin.name)) {
        throw new TypeError(`Cannot register plugin: ${plugin.kind} "${plugin.name}" is already registered`);
      }
      map.set(plugin.name, plugin);
    }
  }

  /** @returns the strategy plugin of that name, or undefined */
  strategy(name: string): StrategyPlugin | undefined {
    return this.#strategies.get(name);
  }

  /** @returns the probe plugin of that name, or undefined */
  probe(name: string): ProbePlugin | undefined {
    return this.#probes.get(name);
  }

  /** @returns the middleware plugin of that name, or undefined */
  middleware(name: string): MiddlewarePlugin | undefined {
    return this.#middleware.get(name);
  }

  /** @returns the registered names of one kind, sorted */
  names(kind: AnyPlugin["kind"]): string[] {
    const map = kind === "strategy"
      ? this.#strategies
      : kind === "probe"
      ? this.#probes
      : this.#middleware;
    return [...map.keys()].sort();
  }

  /** @returns a copy of this registry (plugins loaded by a config go into the copy) */
  clone(): Registry {
    const r = new Registry();
    r.register(...this.#strategies.values(), ...this.#probes.values(), ...this.#middleware.values());
    return r;
  }
}

function asPlugin(p: unknown): AnyPlugin {
  if (typeof p !== "object" || p === null) {
    throw new TypeError("Cannot register plugin: not an object");
  }
  const o = p as Record<string, unknown>;
  const name = o.name;
  if (typeof name !== "string" || name === "") {
    throw new TypeError("Cannot register plugin: it needs a non-empty string `name`");
  }
  if (o.kind === "strategy" || o.kind === "middleware") {
    if (typeof o.create !== "function") {
      throw new TypeError(`Cannot register plugin "${name}": a ${o.kind} needs a create() function`);
    }
  } else if (o.kind === "probe") {
    if (typeof o.probe !== "function") {
      throw new TypeError(`Cannot register plugin "${name}": a probe needs a probe() function`);
    }
  } else {
    throw new TypeError(
      `Cannot register plugin "${name}": kind must be "strategy", "probe" or "middleware"`,
    );
  }
  return p as AnyPlugin;
}

/**
 * Imports a plugin module and returns its plugins: its default export (a plugin or an array of
 * plugins) and a named export `plugins` (an array).
 * @param path absolute path or URL of the module
 * @returns the plugins it exports
 * @throws {Error} when the module cannot be imported or exports no plugin
 */
export async function importPlugins(path: string): Promise<unknown[]> {
  const url = /^(file|https?):/i.test(path)
    ? path
    : new URL(`file://${path.startsWith("/") ? "" : "/"}${path.replaceAll("\\", "/")}`).href;
  let mod: Record<string, unknown>;
  try {
    mod = await import(url);
  } catch (err) {
    throw new Error(
      `Cannot load plugin "${path}": ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const out: unknown[] = [];
  const add = (v: unknown) => Array.isArray(v) ? out.push(...v) : v !== undefined && out.push(v);
  add(mod.default);
  add(mod.plugins);
  if (out.length === 0) {
    throw new Error(`Cannot load plugin "${path}": it exports no plugin (default or \`plugins\`)`);
  }
  return out;
}
