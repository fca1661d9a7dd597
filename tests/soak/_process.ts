/**
 * @module
 * Samples a process's resident memory and open files from /proc (Linux) on a timer, keeping
 * the peak, so the soak can tell a flat process from one that leaks.
 */

import { vmMb } from "../bench/_proc.ts";

/** One reading of a process. */
export interface ProcessSample {
  /** Resident memory in MB (NaN when it cannot be read). */
  rssMb: number;
  /** Entries of /proc/PID/fd (NaN when it cannot be read). */
  fds: number;
}

/**
 * Reads a process's RSS and open files now.
 * @param pid the process
 * @returns the reading; NaN fields when /proc has no such process
 */
export function sampleProcess(pid: number): ProcessSample {
  let rssMb = NaN;
  let fds = NaN;
  try {
    rssMb = vmMb(pid, "VmRSS");
  } catch {
    // gone, or not Linux
  }
  try {
    fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  } catch {
    // gone, or not Linux
  }
  return { rssMb, fds };
}

/** Samples a process on a timer and keeps the peaks. */
export class Sampler {
  readonly #pid: number;
  readonly #timer: ReturnType<typeof setInterval>;
  /** Highest RSS seen, in MB. */
  peakRssMb = 0;
  /** Most open files seen. */
  peakFds = 0;
  /** Every sample: seconds since the sampler started, RSS in MB, open files. */
  readonly series: [number, number, number][] = [];
  readonly #startedAt = performance.now();

  /**
   * Starts sampling.
   * @param pid the process
   * @param everyMs the interval @default 1000
   */
  constructor(pid: number, everyMs = 1000) {
    this.#pid = pid;
    this.#timer = setInterval(() => this.sample(), everyMs);
  }

  /**
   * Takes one sample now (also counted in the peaks).
   * @returns the reading
   */
  sample(): ProcessSample {
    const s = sampleProcess(this.#pid);
    if (s.rssMb > this.peakRssMb) this.peakRssMb = s.rssMb;
    if (s.fds > this.peakFds) this.peakFds = s.fds;
    const t = (performance.now() - this.#startedAt) / 1000;
    this.series.push([Math.round(t * 10) / 10, Math.round(s.rssMb * 10) / 10, s.fds]);
    return s;
  }

  /** Stops the timer. */
  stop(): void {
    clearInterval(this.#timer);
  }
}
