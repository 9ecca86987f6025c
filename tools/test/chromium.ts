/**
 * Headless Chromium for browser tests, driven over the Chrome DevTools Protocol (CDP) with
 * Deno's own WebSocket: no browser-automation package to download.
 *
 * {@link findChromium} locates Debian's `chromium` and, as root, installs it with apt when
 * it is missing (announcing it: it takes a while the first time). Without it (not root,
 * apt failing) it returns the reason, and tests skip with that message.
 *
 * {@link launchChromium} starts the browser on a throwaway profile, {@link Browser.newPage}
 * attaches to a tab that records console errors, uncaught exceptions and failed loads (CSP
 * violations included) in {@link Page.problems}.
 *
 * @module
 */

/** Where Debian puts the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

async function apt(args: string[]): Promise<boolean> {
  const res = await new Deno.Command("apt-get", {
    args,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "null",
    stderr: "piped",
  }).output().catch(() => null);
  return res?.success ?? false;
}

/** The browser's path, installed if needed and allowed; or why there is none. */
export async function findChromium(
  log: (line: string) => void = (l) => console.log(l),
): Promise<{ path: string } | { skip: string }> {
  const env = Deno.env.get("CONVEYOR_CHROMIUM");
  if (env) {
    return (await exists(env))
      ? { path: env }
      : { skip: `CONVEYOR_CHROMIUM=${env} does not exist` };
  }
  if (await exists(CHROMIUM_PATH)) return { path: CHROMIUM_PATH };
  const root = Deno.uid?.() === 0;
  if (!root) {
    return {
      skip: "chromium is not installed and we are not root: run `sudo apt-get install -y chromium`",
    };
  }
  log("[browser] installing Debian's chromium with apt (first run only, about a minute)…");
  if (!(await apt(["install", "-y", "chromium"]))) {
    log("[browser] apt-get install failed; refreshing the package lists and trying again…");
    await apt(["update"]);
    await apt(["install", "-y", "chromium"]);
  }
  if (await exists(CHROMIUM_PATH)) {
    log("[browser] chromium installed");
    return { path: CHROMIUM_PATH };
  }
  return { skip: "apt-get install -y chromium failed (no network or no package lists?)" };
}

type Listener = (params: Record<string, unknown>) => void;

/** One CDP connection (a browser or a page target). */
export class CdpConnection {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; method: string }
  >();
  #listeners = new Map<string, Set<Listener>>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      if (typeof msg.id === "number") {
        const p = this.#pending.get(msg.id);
        if (!p) return;
        this.#pending.delete(msg.id);
        if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
        else p.resolve(msg.result);
      } else if (typeof msg.method === "string") {
        for (const l of this.#listeners.get(msg.method) ?? []) l(msg.params ?? {});
      }
    };
    ws.onclose = () => {
      for (const p of this.#pending.values()) p.reject(new Error(`${p.method}: connection closed`));
      this.#pending.clear();
    };
  }

  /** Opens a connection to a `ws://` debugger URL. */
  static open(url: string): Promise<CdpConnection> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(new CdpConnection(ws));
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
  }

  /** Sends a command and resolves with its result. */
  send<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown> = {},
  ): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, method });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Calls `fn` for every event `method`; returns the unsubscribe function. */
  on(method: string, fn: Listener): () => void {
    const set = this.#listeners.get(method) ?? new Set();
    set.add(fn);
    this.#listeners.set(method, set);
    return () => set.delete(fn);
  }

  /** Resolves with the next event `method` (or rejects after `ms`). */
  once(method: string, ms = 30_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${ms} ms waiting for ${method}`));
      }, ms);
      const off = this.on(method, (p) => {
        clearTimeout(timer);
        off();
        resolve(p);
      });
    });
  }

  /** Closes the socket. */
  close(): Promise<void> {
    if (this.#ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.#ws.addEventListener("close", () => resolve(), { once: true });
      this.#ws.close();
    });
  }
}

/** A tab: navigation, evaluation, screenshots, and the problems it reported. */
export class Page {
  /** Console errors, uncaught exceptions, failed loads and CSP violations, as text. */
  readonly problems: string[] = [];

  constructor(readonly cdp: CdpConnection) {
    cdp.on("Runtime.consoleAPICalled", (p) => {
      if (p.type === "error" || p.type === "assert") {
        const args = (p.args as Array<{ value?: unknown; description?: string }>) ?? [];
        this.problems.push(
          `console.${p.type}: ${args.map((a) => a.value ?? a.description).join(" ")}`,
        );
      }
    });
    cdp.on("Runtime.exceptionThrown", (p) => {
      const d = p.exceptionDetails as { text?: string; exception?: { description?: string } };
      this.problems.push(`exception: ${d?.exception?.description ?? d?.text}`);
    });
    cdp.on("Log.entryAdded", (p) => {
      const e = p.entry as { level: string; text: string; url?: string; source?: string };
      if (e.level === "error") {
        this.problems.push(`${e.source ?? "log"}: ${e.text} ${e.url ?? ""}`.trim());
      }
    });
  }

  /** Enables the domains the page listens to and sets the viewport. */
  async init(width = 1440, height = 900): Promise<void> {
    await this.cdp.send("Page.enable");
    await this.cdp.send("Runtime.enable");
    await this.cdp.send("Log.enable");
    await this.cdp.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
  }

  /** Navigates and waits for the load event; returns the HTTP status of the document. */
  async goto(url: string, ms = 30_000): Promise<number> {
    await this.cdp.send("Network.enable");
    let status = 0;
    const off = this.cdp.on("Network.responseReceived", (p) => {
      if (p.type === "Document") status = (p.response as { status: number }).status;
    });
    const loaded = this.cdp.once("Page.loadEventFired", ms);
    const nav = await this.cdp.send<{ errorText?: string }>("Page.navigate", { url });
    if (nav.errorText) throw new Error(`navigation to ${url} failed: ${nav.errorText}`);
    await loaded;
    off();
    return status;
  }

  /** Evaluates an expression in the page and returns its (JSON) value. */
  async evaluate<T>(expression: string): Promise<T> {
    const res = await this.cdp.send<{
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    }>("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (res.exceptionDetails) {
      throw new Error(
        `evaluate failed: ${
          res.exceptionDetails.exception?.description ?? res.exceptionDetails.text
        }`,
      );
    }
    return res.result.value as T;
  }

  /** A PNG of the whole page (beyond the viewport). */
  async screenshot(): Promise<Uint8Array> {
    const m = await this.cdp.send<{ cssContentSize: { width: number; height: number } }>(
      "Page.getLayoutMetrics",
    );
    const { data } = await this.cdp.send<{ data: string }>("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
      clip: {
        x: 0,
        y: 0,
        width: Math.ceil(m.cssContentSize.width),
        height: Math.ceil(m.cssContentSize.height),
        scale: 1,
      },
    });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }
}

/** A running headless browser; dispose to stop it and remove its profile. */
export class Browser implements AsyncDisposable {
  #pages: CdpConnection[] = [];

  constructor(
    readonly child: Deno.ChildProcess,
    readonly port: number,
    readonly profileDir: string,
  ) {}

  /** Opens a new tab and attaches to it. */
  async newPage(): Promise<Page> {
    const res = await fetch(`http://127.0.0.1:${this.port}/json/new?about:blank`, {
      method: "PUT",
    });
    const target = await res.json() as { webSocketDebuggerUrl: string };
    const cdp = await CdpConnection.open(target.webSocketDebuggerUrl);
    this.#pages.push(cdp);
    const page = new Page(cdp);
    await page.init();
    return page;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const p of this.#pages) await p.close().catch(() => {});
    try {
      this.child.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.child.status;
    await Deno.remove(this.profileDir, { recursive: true }).catch(() => {});
  }
}

/** Starts headless Chromium with a throwaway profile and a DevTools port of its choosing. */
export async function launchChromium(path: string): Promise<Browser> {
  const profileDir = await Deno.makeTempDir({ prefix: "conveyor-chromium-" });
  const child = new Deno.Command(path, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      `--user-data-dir=${profileDir}`,
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Chromium prints "DevTools listening on ws://127.0.0.1:<port>/devtools/browser/<id>".
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = Date.now() + 30_000;
  let port = 0;
  while (!port) {
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`chromium did not open its DevTools port:\n${seen.slice(-2000)}`);
    }
    const { value, done } = await reader.read();
    if (done) {
      throw new Error(`chromium exited before opening its DevTools port:\n${seen.slice(-2000)}`);
    }
    seen += value;
    const m = /DevTools listening on ws:\/\/[^:]+:(\d+)\//.exec(seen);
    if (m) port = Number(m[1]);
  }
  // Keep draining stderr so the browser never blocks on a full pipe.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
  return new Browser(child, port, profileDir);
}
