/**
 * @module
 * Runs llm-balance as a subprocess for end-to-end CLI tests: `runCli` for commands that exit
 * (`check`, `probe`, `version`), `startServe` for a server (waits for its URL line, collects its
 * JSON log lines from stderr, sends signals, waits for the exit). Works with `deno run main.ts`
 * or a compiled binary.
 */

const decoder = new TextDecoder();

/** `main.ts` of this repository. */
export const MAIN: string = new URL("../../main.ts", import.meta.url).pathname;

/** What a finished command printed and returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode runCli} and {@linkcode startServe}. */
export interface CliOptions {
  /** Extra environment variables. @default {} */
  env?: Record<string, string>;
  /** A compiled binary to run instead of `deno run -A main.ts`. */
  binary?: string;
  /** Kill the process after this long. @default 30000 */
  timeoutMs?: number;
}

/**
 * A state folder of this test process's own: serve keeps its state file under
 * `$XDG_STATE_HOME/llm-balance/`, never in the user's home during tests.
 */
export const TEST_STATE_HOME: string = Deno.makeTempDirSync({ prefix: "llm-balance-state-" });
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(TEST_STATE_HOME, { recursive: true });
  } catch {
    // already gone
  }
});

function command(args: readonly string[], options: CliOptions): Deno.Command {
  const [cmd, full] = options.binary === undefined
    ? [Deno.execPath(), ["run", "-A", MAIN, ...args]]
    : [options.binary, [...args]];
  return new Deno.Command(cmd, {
    args: full,
    env: { NO_COLOR: "1", XDG_STATE_HOME: TEST_STATE_HOME, ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * Runs a command to its end.
 * @param args the arguments after the program name
 * @param options environment, binary, time limit
 * @returns exit code, stdout and stderr
 */
export async function runCli(
  args: readonly string[],
  options: CliOptions = {},
): Promise<CliResult> {
  const child = command(args, options).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  try {
    const out = await child.output();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** A running `serve` subprocess. */
export interface ServeProcess extends AsyncDisposable {
  /** The base URL from its first stdout line. */
  readonly url: string;
  readonly child: Deno.ChildProcess;
  /** Every stderr line so far. */
  readonly lines: string[];
  /** The stderr lines that are JSON log records. */
  logs(): Record<string, unknown>[];
  /**
   * Waits for a log record.
   * @param match tells the record sought
   * @param timeoutMs the longest wait @default 10000
   * @throws {Error} on timeout, with the lines so far
   */
  waitForLog(
    match: (r: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Resolves with the exit status. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Sends SIGTERM (if still running) and waits for the exit; SIGKILL after 15 s. */
  close(): Promise<Deno.CommandStatus>;
}

async function pump(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf !== "") onLine(buf);
}

/**
 * Starts `serve` and waits for its URL line.
 * @param args the arguments after the program name (e.g. `["serve", "--config", path]`)
 * @param options environment, binary, time limit to start
 * @returns the running server process
 * @throws {Error} when it exits or stays silent before printing its URL
 */
export async function startServe(
  args: readonly string[],
  options: CliOptions = {},
): Promise<ServeProcess> {
  const child = command(args, options).spawn();
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  const stderrDone = pump(child.stderr, (l) => {
    lines.push(l);
    notify();
  });
  let resolveUrl!: (url: string | undefined) => void;
  const urlLine = new Promise<string | undefined>((r) => resolveUrl = r);
  const stdoutDone = pump(child.stdout, (l) => resolveUrl(l.trim())).then(() =>
    resolveUrl(undefined)
  );
  let exitedYet = false;
  const exited = Promise.all([child.status, stderrDone, stdoutDone]).then(([s]) => {
    exitedYet = true;
    notify();
    return s;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const url = await Promise.race([
    urlLine,
    new Promise<undefined>((r) =>
      timer = setTimeout(() => r(undefined), options.timeoutMs ?? 30_000)
    ),
  ]);
  clearTimeout(timer);
  const close = async () => {
    if (!exitedYet) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    const kill = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 15_000);
    try {
      return await exited;
    } finally {
      clearTimeout(kill);
    }
  };
  if (url === undefined || !url.startsWith("http")) {
    await close();
    throw new Error(
      `serve did not print its URL (got ${JSON.stringify(url)}):\n${lines.join("\n")}`,
    );
  }
  const logs = () => {
    const out: Record<string, unknown>[] = [];
    for (const l of lines) {
      if (!l.startsWith("{")) continue;
      try {
        out.push(JSON.parse(l));
      } catch {
        // not a log record
      }
    }
    return out;
  };
  const waitForLog = (match: (r: Record<string, unknown>) => boolean, timeoutMs = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = logs().find(match);
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (exitedYet) {
          done();
          reject(new Error(`serve exited before the log line came:\n${lines.join("\n")}`));
        }
      };
      const t = setTimeout(() => {
        done();
        reject(new Error(`No such log line within ${timeoutMs} ms:\n${lines.join("\n")}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return {
    url,
    child,
    lines,
    logs,
    waitForLog,
    exited,
    close,
    [Symbol.asyncDispose]: async () => void await close(),
  };
}

/**
 * Writes a config file into a fresh temporary folder.
 * @param text the file's content
 * @param name the file name @default "config.yaml"
 * @returns the file's path and a function that removes the folder
 */
export async function tempConfig(
  text: string,
  name = "config.yaml",
): Promise<{ path: string; dir: string; remove: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "llm-balance-test-" });
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return { path, dir, remove: () => Deno.remove(dir, { recursive: true }) };
}
