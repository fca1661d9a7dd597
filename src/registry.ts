/**
 * @module
 * The plugin registry: strategies, probes and middleware registered by unique name. Built-ins
 * come from `plugins/mod.ts`; a config adds modules by path or URL (`plugins:`), imported with
 * {@linkcode importPlugins}. In a compiled binary, a path under a `plugins/` folder that does not
 * exist on disk falls back to the copy baked into the binary (`deno compile --include plugins`).
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { MiddlewarePlugin, ProbePlugin, StrategyPlugin } from "./plugin.ts";

/** Any plugin the registry holds. */
export type AnyPlugin = StrategyPlugin | ProbePlugin | MiddlewarePlugin;

/**
 * A plugin that cannot be loaded or registered. Its message reads
 * `Cannot load plugin "x.ts": <detail>` or `Cannot register plugin: <detail>`.
 */
export class PluginError extends TypeError {
  /** Always `"PluginError"`. */
  override name = "PluginError";
  /** What went wrong, without the leading action (e.g. `strategy "x" is already registered`). */
  readonly detail: string;

  /**
   * @param action what failed, e.g. `Cannot load plugin "x.ts"`
   * @param detail what went wrong
   */
  constructor(action: string, detail: string) {
    super(`${action}: ${detail}`);
    this.detail = detail;
  }
}

/** Plugins by kind and name. */
export class Registry {
  #strategies = new Map<string, StrategyPlugin>();
  #probes = new Map<string, ProbePlugin>();
  #middleware = new Map<string, MiddlewarePlugin>();

  /**
   * Registers plugins, all or none: nothing is added when one of them is rejected.
   * @param plugins the plugins to add
   * @throws {PluginError} when a value is not a plugin or its name is already taken for its kind
   */
  register(...plugins: unknown[]): void {
    const checked = plugins.map(asPlugin);
    const seen = new Set<string>();
    for (const plugin of checked) {
      const id = `${plugin.kind} "${plugin.name}"`;
      if (this.#map(plugin.kind).has(plugin.name) || seen.has(id)) {
        throw new PluginError("Cannot register plugin", `${id} is already registered`);
      }
      seen.add(id);
    }
    for (const plugin of checked) this.#map(plugin.kind).set(plugin.name, plugin);
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
    return [...this.#map(kind).keys()].sort();
  }

  /** @returns a copy of this registry (plugins loaded by a config go into the copy) */
  clone(): Registry {
    const r = new Registry();
    r.register(
      ...this.#strategies.values(),
      ...this.#probes.values(),
      ...this.#middleware.values(),
    );
    return r;
  }

  #map(kind: AnyPlugin["kind"]): Map<string, AnyPlugin> {
    return kind === "strategy"
      ? this.#strategies
      : kind === "probe"
      ? this.#probes
      : this.#middleware;
  }
}

function asPlugin(p: unknown): AnyPlugin {
  const fail = (detail: string) => new PluginError("Cannot register plugin", detail);
  if (typeof p !== "object" || p === null) throw fail("not an object");
  const o = p as Record<string, unknown>;
  const name = o.name;
  if (typeof name !== "string" || name === "") throw fail("it needs a non-empty string `name`");
  if (o.kind === "strategy" || o.kind === "middleware") {
    if (typeof o.create !== "function") {
      throw fail(`"${name}" is a ${o.kind} without a create() function`);
    }
  } else if (o.kind === "probe") {
    if (typeof o.probe !== "function") {
      throw fail(`"${name}" is a probe without a probe() function`);
    }
  } else {
    throw fail(
      `"${name}" has kind ${JSON.stringify(o.kind)}; use "strategy", "probe" or "middleware"`,
    );
  }
  return p as AnyPlugin;
}

/**
 * Turns a plugin path into an import specifier: URLs and `npm:`-style specifiers are kept, file
 * paths (relative to the working directory, or absolute, Windows ones included) become `file:`
 * URLs.
 * @param path a path, URL or specifier
 * @returns the specifier to import
 */
export function pluginSpecifier(path: string): string {
  if (/^[a-z][a-z0-9+.-]+:/i.test(path)) return path;
  return pathToFileURL(resolve(path)).href;
}

/**
 * Where the compiled binary keeps its copy of a plugin: a path with a `plugins/` folder maps to
 * the same file under the `plugins/` folder baked in by `deno compile --include plugins`.
 * @param path a plugin path, e.g. `/etc/llm-balance/plugins/examples/quota_aware.ts`
 * @returns the baked-in module's URL, or undefined when the path has no `plugins/` folder
 */
export function bakedPluginUrl(path: string): string | undefined {
  const normalized = path.replaceAll("\\", "/");
  const at = normalized.lastIndexOf("plugins/");
  if (at < 0 || (at > 0 && normalized[at - 1] !== "/")) return undefined;
  const tail = normalized.slice(at + "plugins/".length);
  if (tail === "" || tail.split("/").includes("..")) return undefined;
  return new URL(`../plugins/${tail}`, import.meta.url).href;
}

/** Options of {@linkcode importPlugins}. */
export interface ImportPluginsOptions {
  /**
   * Fall back to the baked-in copy ({@linkcode bakedPluginUrl}) when the module is not found.
   * @default Deno.build.standalone (true in a compiled binary)
   */
  baked?: boolean;
}

/**
 * Imports a plugin module and returns its plugins: its default export (a plugin or an array of
 * plugins) and a named export `plugins` (an array).
 * @param path a file path (relative to the working directory, or absolute) or a URL
 * @param options whether to fall back to the binary's baked-in plugins
 * @returns the values it exports as plugins (checked when registered)
 * @throws {PluginError} when the module cannot be imported or exports no plugin
 */
export async function importPlugins(
  path: string,
  options: ImportPluginsOptions = {},
): Promise<unknown[]> {
  const fail = (detail: string) => new PluginError(`Cannot load plugin "${path}"`, detail);
  let mod: Record<string, unknown>;
  try {
    mod = await import(pluginSpecifier(path));
  } catch (err) {
    const useBaked = options.baked ?? Deno.build.standalone === true;
    const message = firstLine(err instanceof Error ? err.message : String(err));
    if (!useBaked || !/not found/i.test(message)) throw fail(message);
    const baked = bakedPluginUrl(path);
    try {
      if (baked === undefined) throw new Error("not baked in");
      mod = await import(baked);
    } catch {
      throw fail(
        `${message} (a compiled binary loads only the plugins/ folder it was built with: ` +
          "put the plugin under plugins/ and rebuild, or run from source)",
      );
    }
  }
  const out: unknown[] = [];
  const add = (v: unknown) => Array.isArray(v) ? out.push(...v) : v !== undefined && out.push(v);
  add(mod.default);
  add(mod.plugins);
  if (out.length === 0) throw fail("it exports no plugin (a default export or `plugins`)");
  return out;
}

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.trim();
}
