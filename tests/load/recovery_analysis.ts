/**
 * The arithmetic of `deno task recovery` (tests/load/recovery.ts), kept apart so it can be
 * tested without a stack: completions per kind per second around a fault, the pre-fault
 * rate, and how long after the fault's end each kind was back to a share of that rate; and
 * which HTTP answers a client may get.
 *
 * "Back" is judged on a sliding window (default 3 s), because workers settle in batches and
 * a kind at 2 jobs/s finishes 0, 2 or 4 jobs in a given second. The window starting at
 * second i after the fault's end is back when it finished at least `share` of what the
 * pre-fault rate gives in that window; the kind is back FOR GOOD from the first i from which
 * every later window of the observation period is back too (a kind that finishes a few jobs
 * left in hand and then stalls is not back). The time reported is that of the kind's first
 * completion in window i, since the fault's end.
 *
 * @module
 */

/** One finished job: its kind and when it finished (ms since the epoch). */
export interface Completion {
  kind: string;
  at: number;
}

/** Where a fault sits in time (ms since the epoch) and how the recovery is judged. */
export interface FaultWindow {
  /** The fault was injected. */
  start: number;
  /** The fault was over (the killed service serves again, the command returned). */
  end: number;
  /** Length of the pre-fault period the rate is taken from. */
  preMs: number;
  /** Length of the observation period after the fault's end. */
  postMs: number;
  /** Sliding window, s. Default 3. */
  windowS?: number;
  /** Share of the pre-fault rate that counts as back. Default 0.5. */
  share?: number;
}

/** How one kind went through a fault. */
export interface KindRecovery {
  kind: string;
  /** Jobs/s over the pre-fault period. */
  preRate: number;
  /** Jobs/s between the fault's start and end (null for an instant fault). */
  duringRate: number | null;
  /** Jobs/s over the observation period. */
  postRate: number;
  /** Seconds from the fault's end to the first completion of the first window that is back. */
  firstBackS: number | null;
  /** The same for the first window from which every window is back; null: not by the end. */
  backS: number | null;
  /** Completions per second from the fault's end, for the report. */
  perSecond: number[];
}

/** Completions of `kind` per 1-s bin from `from` (ms), `bins` bins. */
export function perSecond(done: Completion[], kind: string, from: number, bins: number): number[] {
  const out = new Array<number>(Math.max(0, bins)).fill(0);
  for (const c of done) {
    if (c.kind !== kind) continue;
    const i = Math.floor((c.at - from) / 1000);
    if (i >= 0 && i < out.length) out[i]!++;
  }
  return out;
}

/** Completions of `kind` in [from, to). */
export function countBetween(done: Completion[], kind: string, from: number, to: number): number {
  let n = 0;
  for (const c of done) if (c.kind === kind && c.at >= from && c.at < to) n++;
  return n;
}

/** How `kind` went through the fault `w`. */
export function recoveryOf(done: Completion[], kind: string, w: FaultWindow): KindRecovery {
  const win = w.windowS ?? 3;
  const share = w.share ?? 0.5;
  const preRate = countBetween(done, kind, w.start - w.preMs, w.start) / (w.preMs / 1000);
  const faultMs = w.end - w.start;
  const duringRate = faultMs >= 1000
    ? countBetween(done, kind, w.start, w.end) / (faultMs / 1000)
    : null;
  const bins = Math.floor(w.postMs / 1000);
  const ps = perSecond(done, kind, w.end, bins);
  const need = share * preRate * win;
  const back: boolean[] = [];
  for (let i = 0; i + win <= bins; i++) {
    let sum = 0;
    for (let j = i; j < i + win; j++) sum += ps[j]!;
    back.push(sum >= need);
  }
  // The first completion of the kind in window i, in seconds since the fault's end.
  const firstIn = (i: number) => {
    let t = Infinity;
    for (const c of done) {
      if (c.kind === kind && c.at >= w.end + i * 1000 && c.at < t) t = c.at;
    }
    return Number.isFinite(t) ? Math.round((t - w.end) / 100) / 10 : i;
  };
  const first = back.indexOf(true);
  let forGood: number | null = null;
  if (back.length && back[back.length - 1]) {
    forGood = back.length - 1;
    while (forGood > 0 && back[forGood - 1]) forGood--;
  }
  return {
    kind,
    preRate: round(preRate),
    duringRate: duringRate === null ? null : round(duringRate),
    postRate: round(ps.reduce((s, n) => s + n, 0) / Math.max(1, bins)),
    firstBackS: first < 0 ? null : firstIn(first),
    backS: forGood === null ? null : firstIn(forGood),
    perSecond: ps,
  };
}

/**
 * The kind of HTTP answer a client got, for the tally: the status; PostgREST's answer to a
 * request whose database connection broke mid-query (400 with an empty code) on its own;
 * "no answer" when the connection was refused or dropped (nothing listening: the gateway is
 * dead), with the error's first words.
 */
export function answerClass(status: number | "network", text: string): string {
  if (status === "network") {
    const m = /refused|reset|timed out|closed/i.exec(text);
    return `no answer (connection ${m ? m[0].toLowerCase() : "failed"})`;
  }
  if (status === 400 && /^\{"code":"",/.test(text)) return "400 (broken connection)";
  if (status >= 400 && status < 500) {
    try {
      const code = JSON.parse(text)?.code;
      if (typeof code === "string" && code) return `${status} ${code}`;
    } catch { /* not JSON */ }
  }
  return String(status);
}

/** The rule: a client may see 2xx, 4xx and 503, nothing else. */
export function allowedAnswer(cls: string): boolean {
  return /^(2|4)\d\d\b/.test(cls) || /^503\b/.test(cls);
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
