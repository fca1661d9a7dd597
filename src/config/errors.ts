/**
 * @module
 * `ConfigError`, the one error every config problem becomes, and the issue paths it reports.
 */

/** One problem found in a config file. */
export interface ConfigIssue {
  /** Where, e.g. `upstreams.modelscope.keys[1]`; empty for the file as a whole. */
  path: string;
  /** What is wrong, e.g. `must be >= 0`. */
  message: string;
  /** 1-based line of the offending node, when known. */
  line?: number;
}

/** One step of a path into the parsed config tree: a mapping key or a list index. */
export type PathSegment = string | number;

/** An issue whose path is still a list of segments (before lines are looked up). */
export interface RawIssue {
  /** Where, outermost segment first; empty for the file as a whole. */
  path: PathSegment[];
  /** What is wrong. */
  message: string;
  /** Known line, for issues found while parsing. */
  line?: number;
}

/**
 * Joins path segments the way issues show them: `models.gpt-4.upstreams[1].weight`.
 *
 * @param segments mapping keys and list indexes, outermost first
 * @returns the dotted path, or `""` for the root
 */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = "";
  for (const segment of segments) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? segment : `.${segment}`;
  }
  return out;
}

function describe(issue: ConfigIssue): string {
  const where = issue.path === ""
    ? (issue.line === undefined ? "" : `line ${issue.line}`)
    : issue.line === undefined
    ? issue.path
    : `${issue.path} (line ${issue.line})`;
  return where === "" ? issue.message : `${where}: ${issue.message}`;
}

function render(source: string, issues: readonly ConfigIssue[]): string {
  const head = `Cannot load config "${source}"`;
  const [only] = issues;
  if (issues.length === 1 && only !== undefined) return `${head}: ${describe(only)}`;
  return [`${head}: ${issues.length} problems`, ...issues.map((i) => `  ${describe(i)}`)].join(
    "\n",
  );
}

/**
 * A config file that cannot be loaded: missing, unparsable or invalid. Its message lists every
 * problem found, one per line when there are several:
 * `Cannot load config "x.yaml": upstreams.ms.weight: must be >= 0`.
 */
export class ConfigError extends Error {
  /** Always `"ConfigError"`. */
  override name = "ConfigError";
  /** The file (or label) that failed to load. */
  readonly source: string;
  /** Every problem found, in file order where known. */
  readonly issues: ConfigIssue[];

  /**
   * Builds the error and its message from the issues.
   *
   * @param source the file path or label shown in the message
   * @param issues at least one problem
   */
  constructor(source: string, issues: ConfigIssue[]) {
    super(render(source, issues));
    this.source = source;
    this.issues = issues;
  }
}
