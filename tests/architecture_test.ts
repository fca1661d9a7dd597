/**
 * @module Tests of the source tree's shape: the relative imports of main.ts, src/, plugins/ and
 * tools/ form no cycle, core stays out of plugins/ (but for the commands that hand over the
 * built-in plugins) and tools/, and plugins never reach the app or the runtime.
 */

import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SCANNED = ["main.ts", "src", "plugins", "tools"];

/**
 * Static imports and re-exports, type-only ones included: `import x from "s"`,
 * `import type { A } from "s"`, `import * as m from "s"`, `export { a } from "s"`,
 * `export type * from "s"`. The clause between the keyword and `from` holds only names, braces,
 * commas, `*` and whitespace, so the pattern cannot run across code or comments.
 */
const FROM = /^[ \t]*(?:import|export)\s+(?:type\s+)?[\w$*{},\s]*?\s*from\s*(["'])([^"'\n]+)\1/gm;
/** `import "s"` for its side effects. */
const BARE = /^[ \t]*import\s*(["'])([^"'\n]+)\1/gm;
/** `import("s")` with a literal specifier. */
const DYNAMIC = /\bimport\(\s*(["'])([^"'\n]+)\1\s*\)/g;

/** Every relative specifier a module's text imports or re-exports from. */
function relativeSpecifiers(text: string): string[] {
  const out: string[] = [];
  for (const pattern of [FROM, BARE, DYNAMIC]) {
    for (const m of text.matchAll(pattern)) {
      const specifier = m[2]!;
      if (specifier.startsWith("./") || specifier.startsWith("../")) out.push(specifier);
    }
  }
  return out;
}

async function* tsFiles(path: string): AsyncGenerator<string> {
  const info = await Deno.stat(join(ROOT, path));
  if (info.isFile) {
    if (path.endsWith(".ts")) yield path;
    return;
  }
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(ROOT, path))) names.push(entry.name);
  for (const name of names.sort()) yield* tsFiles(join(path, name));
}

/** The import graph: each scanned file (relative to the repository) to the files it imports. */
async function importGraph(): Promise<Map<string, Set<string>>> {
  const graph = new Map<string, Set<string>>();
  for (const top of SCANNED) {
    for await (const file of tsFiles(top)) {
      const text = await Deno.readTextFile(join(ROOT, file));
      const targets = new Set<string>();
      for (const specifier of relativeSpecifiers(text)) {
        targets.add(normalize(join(dirname(file), specifier)));
      }
      graph.set(file, targets);
    }
  }
  return graph;
}

const graph = await importGraph();

/** The strongly connected components of more than one file, or of one file importing itself. */
function cycles(g: Map<string, Set<string>>): string[][] {
  // Tarjan's algorithm
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  function connect(v: string): void {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop()!;; w = stack.pop()!) {
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || g.get(v)?.has(v)) found.push(component.sort());
  }
  for (const v of g.keys()) if (!index.has(v)) connect(v);
  return found;
}

/** One cycle through a component's first file, as `a -> b -> a`, to name in a message. */
function cyclePath(g: Map<string, Set<string>>, component: readonly string[]): string {
  const members = new Set(component);
  const start = component[0]!;
  const seen = new Set<string>();
  function walk(v: string, path: string[]): string[] | undefined {
    for (const w of g.get(v) ?? []) {
      if (w === start) return [...path, w];
      if (!members.has(w) || seen.has(w)) continue;
      seen.add(w);
      const found = walk(w, [...path, w]);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  return (walk(start, [start]) ?? component).join(" -> ");
}

/** The imports `from` (a file under `under`) makes of files `to` accepts, as `a -> b` lines. */
function edges(
  under: string,
  to: (target: string) => boolean,
  exempt: (file: string) => boolean = () => false,
): string[] {
  const out: string[] = [];
  for (const [file, targets] of graph) {
    if (!file.startsWith(under) || exempt(file)) continue;
    for (const target of targets) if (to(target)) out.push(`${file} -> ${target}`);
  }
  return out.sort();
}

Deno.test("the import scanner finds value, type-only, multi-line and re-export imports", () => {
  const text = [
    '/** import { fake } from "./in_a_comment.ts"; */',
    'import { a } from "./a.ts";',
    'import type { B } from "../b.ts";',
    "import {",
    "  type C,",
    "  d as e,",
    "} from './c.ts';",
    'import * as f from "./f.ts";',
    'import g, { h } from "./g.ts";',
    'export { i } from "./i.ts";',
    'export type { J } from "./j.ts";',
    'export * from "./k.ts";',
    'import "./side_effect.ts";',
    'const l = await import("./l.ts");',
    'import { z } from "zod";',
    'import { join } from "node:path";',
    'const s = "import { m } from ./m.ts";',
  ].join("\n");
  assert.deepEqual(relativeSpecifiers(text).sort(), [
    "../b.ts",
    "./a.ts",
    "./c.ts",
    "./f.ts",
    "./g.ts",
    "./i.ts",
    "./j.ts",
    "./k.ts",
    "./l.ts",
    "./side_effect.ts",
  ]);
});

Deno.test("the import graph of main.ts, src/, plugins/ and tools/ holds the files and edges expected", () => {
  // guards the other tests against a scan that finds nothing
  for (const file of ["main.ts", "src/compose.ts", "src/proxy/inbound.ts", "plugins/mod.ts"]) {
    assert.ok(graph.has(file), `${file} was not scanned`);
  }
  assert.ok(graph.size > 50, `only ${graph.size} files scanned`);
  const inbound = graph.get("src/proxy/inbound.ts")!;
  assert.ok(inbound.has("src/errors.ts"), "value import not found");
  assert.ok(inbound.has("src/plugin.ts"), "type-only import not found");
  assert.ok(inbound.has("src/config/types.ts"), "type-only import from a parent folder not found");
  // the rules below see real edges: plugins use the plugin API, commands hand over plugins
  assert.ok(edges("plugins/", (target) => target === "src/plugin.ts").length > 0);
  assert.ok(edges("src/commands/", (target) => target.startsWith("plugins/")).length > 0);
  for (const file of graph.keys()) {
    assert.ok(
      !file.startsWith("tests/") && !file.includes("node_modules"),
      `${file} should not be scanned`,
    );
  }
});

Deno.test("the import graph of main.ts, src/, plugins/ and tools/ has no cycle", () => {
  const found = cycles(graph);
  assert.deepEqual(
    found.map((c) => cyclePath(graph, c)),
    [],
    `import cycles:\n${
      found.map((c) => `  ${c.join(", ")}\n    e.g. ${cyclePath(graph, c)}`)
        .join("\n")
    }`,
  );
});

Deno.test("cycles() finds a cycle and a file importing itself", () => {
  const g = new Map<string, Set<string>>([
    ["a.ts", new Set(["b.ts"])],
    ["b.ts", new Set(["c.ts"])],
    ["c.ts", new Set(["a.ts", "d.ts"])],
    ["d.ts", new Set(["d.ts"])],
    ["e.ts", new Set(["a.ts"])],
  ]);
  const found = cycles(g);
  assert.deepEqual(found.map((c) => c.join(",")).sort(), ["a.ts,b.ts,c.ts", "d.ts"]);
  assert.equal(cyclePath(g, ["a.ts", "b.ts", "c.ts"]), "a.ts -> b.ts -> c.ts -> a.ts");
  assert.deepEqual(cycles(new Map([["x.ts", new Set(["y.ts"])], ["y.ts", new Set()]])), []);
});

Deno.test("src/ imports nothing under plugins/ but in src/commands/", () => {
  const bad = edges(
    "src/",
    (target) => target.startsWith("plugins/"),
    (file) => file.startsWith("src/commands/"),
  );
  assert.deepEqual(bad, [], `core files importing plugins:\n  ${bad.join("\n  ")}`);
});

Deno.test("src/ imports nothing under tools/", () => {
  const bad = edges("src/", (target) => target.startsWith("tools/"));
  assert.deepEqual(bad, [], `core files importing tools:\n  ${bad.join("\n  ")}`);
});

/** The chain of imports by which `from` reaches a file `to` accepts, or undefined. */
function reaches(from: string, to: (target: string) => boolean): string[] | undefined {
  const parent = new Map<string, string>([[from, ""]]);
  const queue = [from];
  for (let v = queue.shift(); v !== undefined; v = queue.shift()) {
    for (const w of graph.get(v) ?? []) {
      if (parent.has(w)) continue;
      parent.set(w, v);
      if (to(w)) {
        const chain = [w];
        for (let p = v; p !== ""; p = parent.get(p)!) chain.unshift(p);
        return chain;
      }
      queue.push(w);
    }
  }
  return undefined;
}

Deno.test("plugins/ imports neither src/app.ts nor src/runtime.ts, directly or through another file", () => {
  const forbidden = (target: string) => target === "src/app.ts" || target === "src/runtime.ts";
  const bad: string[] = [];
  for (const file of graph.keys()) {
    if (!file.startsWith("plugins/")) continue;
    const chain = reaches(file, forbidden);
    if (chain !== undefined) bad.push(chain.join(" -> "));
  }
  assert.deepEqual(bad, [], `plugins reaching past the plugin API:\n  ${bad.join("\n  ")}`);
});

Deno.test("reaches() names the chain of imports to a file", () => {
  assert.deepEqual(reaches("src/proxy/inbound.ts", (t) => t === "src/proxy/json_scan.ts"), [
    "src/proxy/inbound.ts",
    "src/proxy/json_scan.ts",
  ]);
  assert.equal(reaches("src/compose.ts", (t) => t === "src/app.ts"), undefined);
});
