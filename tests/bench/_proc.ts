/**
 * @module
 * Process handling of `deno task bench`: starting the processes under test (pinned to a core,
 * stderr to a log file, open-file limit raised to the hard limit, base URL read from the first
 * stdout line), stopping every one of them whatever happens, and reading their CPU time and
 * memory from /proc.
 */

/** An error whose message is shown as is. */
export class BenchError extends Error {}

/**
 * Throws a {@link BenchError}.
 * @param message what went wrong, for the user
 */
export function fail(message: string): never {
  throw new BenchError(message);
}

/** A process the bench started. */
export interface Started {
  name: string;
  pid: number;
  /** Its base URL, from the first line of its stdout. */
  url: string;
  child: Deno.ChildProcess;
  /** File its stderr goes to. */
  log: string;
}

/** A system the load generator is pointed at. */
export interface Target {
  name: string;
  url: string;
  /** The server process whose CPU and memory are measured. */
  pid: number;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

/**
 * CPU time (user + system) of a process, in seconds.
 * @param pid the process
 */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * A `Vm*` line of /proc/<pid>/status, in MB.
 * @param pid the process
 * @param field `VmHWM` (peak RSS) or `VmRSS`
 */
export function vmMb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return match ? Number(match[1]) / 1024 : NaN;
}

/**
 * The hard limit on open files (RLIMIT_NOFILE) of this process, which the processes it starts
 * inherit. Deno raises its own soft limit to it at start, and {@linkcode Processes.start} raises
 * the soft limit of what it starts; only a privileged process can raise the hard limit itself.
 * @returns the limit, or Infinity when unlimited or unknown
 */
export function openFilesLimit(): number {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
    const hard = line?.trim().split(/\s+/)[4];
    const n = Number(hard);
    return hard === undefined || !Number.isFinite(n) ? Infinity : n;
  } catch {
    return Infinity;
  }
}

/**
 * Resets the peak RSS (VmHWM) of a process so the next reading covers what follows.
 * @param pid the process
 */
export function resetPeak(pid: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // Older kernels or no permission: VmHWM then covers the whole life of the process.
  }
}

/** Starts and, whatever happens, stops the processes of the bench. */
export class Processes {
  readonly #started = new Set<Started>();
  readonly #dir: string;
  readonly #pin: boolean;
  readonly #cwd: string;

  /**
   * @param options `dir`: folder of the log files; `pin`: pin to cores with `taskset`;
   *   `cwd`: working folder of the processes
   */
  constructor(options: { dir: string; pin: boolean; cwd: string }) {
    this.#dir = options.dir;
    this.#pin = options.pin;
    this.#cwd = options.cwd;
  }

  /** `taskset -c CORE` prefix, or nothing when not pinning. */
  pinned(core: number, cmd: string[]): string[] {
    return this.#pin ? ["taskset", "-c", String(core), ...cmd] : cmd;
  }

  /**
   * Starts `cmd` on `core` with stderr to a log file and the soft open-file limit raised to the
   * hard one (thousands of open streams need thousands of sockets), and waits for its base URL,
   * the first line of its stdout.
   */
  async start(name: string, core: number, cmd: string[]): Promise<Started> {
    const log = `${this.#dir}/${name}.log`;
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null; log="$1"; shift; exec "$@" 2>"$log"',
        "sh",
        log,
        ...this.pinned(core, cmd),
      ],
      cwd: this.#cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const started: Started = { name, pid: child.pid, url: "", child, log };
    this.#started.add(started);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    const deadline = Date.now() + 60_000;
    while (!out.includes("\n") && Date.now() < deadline) {
      const timeout = new Promise<"timeout">((r) =>
        setTimeout(r, deadline - Date.now(), "timeout")
      );
      const read = await Promise.race([reader.read(), timeout]);
      if (read === "timeout" || read.done) break;
      out += read.value;
    }
    const url = out.split("\n")[0]?.trim() ?? "";
    if (!/^https?:\/\/\S+$/.test(url)) {
      await this.stop(started);
      const tail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n").slice(-15);
      fail(
        `Cannot start ${name}: no base URL on its first stdout line (got ${
          JSON.stringify(out.slice(0, 200))
        })\n  command: ${cmd.join(" ")}\n  stderr tail:\n    ${tail.join("\n    ")}`,
      );
    }
    started.url = url.replace(/\/+$/, "");
    (async () => {
      while (!(await reader.read().catch(() => ({ done: true }))).done) { /* drain stdout */ }
    })();
    return started;
  }

  /** Stops one process: SIGTERM, then SIGKILL after 3 s. */
  async stop(started: Started): Promise<void> {
    if (!this.#started.delete(started)) return;
    const exited = started.child.status;
    try {
      started.child.kill("SIGTERM");
    } catch {
      return void await exited; // already gone
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          started.child.kill("SIGKILL");
        } catch { /* gone meanwhile */ }
        resolve();
      }, 3000);
    });
    await Promise.race([exited, killed]);
    clearTimeout(timer);
    await exited;
  }

  /** Stops every process still running. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#started].map((s) => this.stop(s)));
  }
}
