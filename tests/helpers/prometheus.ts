/**
 * @module
 * A strict little parser of the Prometheus text exposition format (version 0.0.4), for tests:
 * it throws on anything a Prometheus server would reject, and checks histograms for cumulative
 * buckets ending in `+Inf` equal to `_count`.
 */

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition. */
export interface Exposition {
  /** Metric family name → type (counter, gauge, histogram, summary, untyped). */
  types: Map<string, string>;
  samples: Sample[];
  /**
   * Sums the samples of a name whose labels include `match`.
   * @returns the sum (0 when none match)
   */
  sum(name: string, match?: Record<string, string>): number;
  /** Every sample of a name whose labels include `match`. */
  find(name: string, match?: Record<string, string>): Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw new Error(`line ${line}: bad value "${text}"`);
  }
  return Number(text);
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`line ${line}: bad labels "${text}"`);
    const name = text.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name "${name}"`);
    if (name in labels) throw new Error(`line ${line}: duplicate label "${name}"`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label value must be quoted`);
    let j = eq + 2;
    let value = "";
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else throw new Error(`line ${line}: bad escape "\\${next}"`);
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`line ${line}: unterminated label value`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (i < text.length) throw new Error(`line ${line}: expected "," in labels`);
  }
  return labels;
}

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === "histogram" || (t === "summary" && suffix !== "_bucket")) return base;
    }
  }
  return undefined;
}

function includes(labels: Record<string, string>, match: Record<string, string>): boolean {
  for (const k in match) if (labels[k] !== match[k]) return false;
  return true;
}

function checkHistograms(types: Map<string, string>, samples: Sample[]): void {
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const series = new Map<string, { buckets: [number, number][]; count?: number }>();
    const keyOf = (l: Record<string, string>) =>
      JSON.stringify(Object.entries(l).filter(([k]) => k !== "le").sort());
    for (const s of samples) {
      if (s.name === `${family}_bucket`) {
        const le = s.labels.le;
        if (le === undefined) throw new Error(`${family}_bucket without "le"`);
        const key = keyOf(s.labels);
        const entry = series.get(key) ?? { buckets: [] };
        entry.buckets.push([parseValue(le, 0), s.value]);
        series.set(key, entry);
      } else if (s.name === `${family}_count`) {
        const key = keyOf(s.labels);
        const entry = series.get(key) ?? { buckets: [] };
        entry.count = s.value;
        series.set(key, entry);
      }
    }
    for (const [key, { buckets, count }] of series) {
      const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < sorted.length; i++) {
        if (sorted[i]![1] < sorted[i - 1]![1]) {
          throw new Error(`${family}${key}: buckets are not cumulative`);
        }
      }
      const inf = sorted.at(-1);
      if (inf === undefined || inf[0] !== Infinity) {
        throw new Error(`${family}${key}: no +Inf bucket`);
      }
      if (inf[1] !== count) {
        throw new Error(`${family}${key}: +Inf bucket ${inf[1]} != count ${count}`);
      }
    }
  }
}

/**
 * Parses a Prometheus text exposition.
 * @param text the exposition
 * @returns its types and samples, with lookup helpers
 * @throws {Error} naming the line on any syntax or consistency error
 */
export function parsePrometheus(text: string): Exposition {
  if (!text.endsWith("\n")) throw new Error("exposition must end with a line feed");
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const seenSamples = new Set<string>();
  const samples: Sample[] = [];
  const lines = text.split("\n");
  lines.pop();
  for (const [index, raw] of lines.entries()) {
    const n = index + 1;
    if (raw.trim() === "") continue;
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (m === null) continue; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`line ${n}: bad metric name "${name}"`);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) throw new Error(`line ${n}: bad type "${rest}"`);
        if (types.has(name)) throw new Error(`line ${n}: second TYPE for "${name}"`);
        if (samples.some((s) => familyOf(s.name, new Map([[name, rest]])) === name)) {
          throw new Error(`line ${n}: TYPE of "${name}" after its samples`);
        }
        types.set(name, rest);
      } else {
        if (helped.has(name)) throw new Error(`line ${n}: second HELP for "${name}"`);
        helped.add(name);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/.exec(raw);
    if (m === null) throw new Error(`line ${n}: cannot parse "${raw}"`);
    const name = m[1]!;
    const labels = m[3] === undefined ? {} : parseLabels(m[3], n);
    const value = parseValue(m[4]!, n);
    if (familyOf(name, types) === undefined && types.size > 0 && !types.has(name)) {
      throw new Error(`line ${n}: sample "${name}" has no TYPE`);
    }
    const id = name + JSON.stringify(Object.entries(labels).sort());
    if (seenSamples.has(id)) throw new Error(`line ${n}: duplicate series ${id}`);
    seenSamples.add(id);
    samples.push({ name, labels, value });
  }
  checkHistograms(types, samples);
  const find = (name: string, match: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && includes(s.labels, match));
  return {
    types,
    samples,
    find,
    sum: (name, match) => find(name, match).reduce((a, s) => a + s.value, 0),
  };
}
