/**
 * @module
 * End-to-end: the dashboard in a real Chromium (playwright-core, `/usr/bin/chromium`). Against a
 * running llm-balance with a scripted upstream and an admin key: no credentials, no figure; the
 * page lists every key by mask and state, a key answered 429 turns rate limited with a countdown
 * that ticks, counts and budgets change without a reload, the disable button (confirmed) takes a
 * key out, a phone-wide window has no horizontal overflow, a stopped server shows as
 * disconnected. Against a page served with fixture data: hostile strings stay text, countdowns
 * follow the server's clock, 500 keys are grouped and paged, a 401 reloads once. Screenshots go
 * to `tests/artifacts/`.
 */

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { DASHBOARD_HTML } from "../../src/admin/dashboard_page.ts";
import type {
  DashboardData,
  DashboardKey,
  DashboardPool,
  KeyState,
} from "../../src/admin/dashboard_types.ts";
import { artifactPath, CHROMIUM, hasChromium, launchChromium } from "../helpers/browser.ts";
import { chat, postJson, startScriptedUpstream } from "../helpers/e2e.ts";
import { startProxy, type TestProxy } from "../helpers/proxy.ts";

const ADMIN = "ad-dashboard-e2e-admin-key-00000000001";
const LIMITED = "sk-dashboard-e2e-upstream-key-000000001";
const STEADY = "sk-dashboard-e2e-upstream-key-000000002";
const SPARE = "sk-dashboard-e2e-upstream-key-000000003";
const OTHER = "sk-dashboard-e2e-upstream-key-000000004";
const WAIT = 10_000;

function browserTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name: hasChromium ? name : `${name} (ignored: no Chromium at ${CHROMIUM}; .ci/run installs it)`,
    ignore: !hasChromium,
    // playwright keeps its own pipes and timers to the browser process until it has exited
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

const COMPLETION = {
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "m",
  choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
};

/** An upstream that answers 429 (`retry-after: 30`) to the keys in `limited`, else a completion. */
function startUpstream(limited: Set<string>, latencyMs: number) {
  return startScriptedUpstream(async (req) => {
    const key = (req.headers.get("authorization") ?? "").replace(/^Bearer /, "");
    if (limited.has(key)) {
      return Response.json(
        { error: { message: "Rate limit reached", type: "rate_limit_error" } },
        { status: 429, headers: { "retry-after": "30" } },
      );
    }
    await new Promise((r) => setTimeout(r, latencyMs));
    return Response.json(COMPLETION);
  });
}

function config(baseUrl: string): string {
  return `
state: memory
auth: { admin_key: ${ADMIN} }
upstreams:
  a:
    base_url: "${baseUrl}"
    keys:
      - { key: ${LIMITED}, name: limited }
      - { key: ${STEADY}, name: steady }
      - { key: ${SPARE}, name: spare }
    quota: { requests_per_day: 1000 }
  b: { base_url: "${baseUrl}", keys: [{ key: ${OTHER}, name: other }] }
`;
}

async function dataOf(proxy: TestProxy): Promise<DashboardData> {
  const res = await fetch(`${proxy.url}/dashboard/data`, {
    headers: { authorization: `Bearer ${ADMIN}` },
    signal: AbortSignal.timeout(WAIT),
  });
  assert.equal(res.status, 200);
  return await res.json() as DashboardData;
}

function keyNamed(data: DashboardData, name: string): DashboardKey {
  const key = data.keys.find((k) => k.name === name);
  assert.ok(key, `key ${name}`);
  return key;
}

async function send(proxy: TestProxy, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await postJson(`${proxy.url}/v1/chat/completions`, chat("m"));
    await res.body?.cancel();
  }
}

const row = (page: Page, id: string) => page.locator(`.key[data-id="${id}"]`);

/** The number a key's cell shows (`requests`, `failures`, ...). */
async function figure(page: Page, id: string, cell: string): Promise<number> {
  return Number(await row(page, id).locator(`[data-l="${cell}"]`).textContent());
}

/** Seconds a countdown shows (`back in 27s`). */
async function countdown(page: Page, id: string): Promise<number> {
  const text = await row(page, id).locator(".cd").textContent() ?? "";
  const m = /^back in (\d+)s$/.exec(text);
  assert.ok(m, `a countdown in seconds, not "${text}"`);
  return Number(m[1]);
}

/** How far the page reaches past the window's right edge, in CSS pixels. */
function overflow(page: Page): Promise<number> {
  return page.evaluate(`(() => {
    let right = document.documentElement.scrollWidth;
    for (const e of document.querySelectorAll("body *")) {
      right = Math.max(right, e.getBoundingClientRect().right);
    }
    return right - document.documentElement.clientWidth;
  })()`);
}

/**
 * Polls `cond` from the test (the page's policy forbids the eval that `waitForFunction` needs).
 * @throws Error when `cond` is still false after `ms`
 */
async function until(cond: () => Promise<boolean>, what: string, ms = WAIT): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the page shows `n` key rows. */
function rowsShown(page: Page, n: number): Promise<void> {
  return until(async () => await page.locator(".key[data-id]").count() === n, `${n} key rows`);
}

/** Waits until the element of `selector` has the text `text`. */
function textIs(page: Page, selector: string, text: string): Promise<void> {
  return until(
    async () => await page.locator(selector).textContent() === text,
    `"${text}" in ${selector}`,
  );
}

browserTest(
  "dashboard: without credentials the browser is asked for them and sees no key or figure",
  async () => {
    await using upstream = startUpstream(new Set(), 0);
    await using proxy = await startProxy(config(upstream.baseUrl), { level: "info" });
    await send(proxy, 4);
    const masks = (await dataOf(proxy)).keys.map((k) => k.mask);
    const browser = await launchChromium();
    try {
      for (const httpCredentials of [undefined, { username: "admin", password: "wrong-key" }]) {
        const context = await browser.newContext(httpCredentials ? { httpCredentials } : {});
        context.setDefaultTimeout(WAIT);
        const page = await context.newPage();
        const answers: Response[] = [];
        page.on("response", (r) => {
          if (new URL(r.url()).pathname === "/dashboard") {
            answers.push(new Response(null, { status: r.status(), headers: r.headers() }));
          }
        });
        // headless, nobody answers the browser's prompt: it shows the 401, or gives up on the page
        const res = await page.goto(`${proxy.url}/dashboard`).catch((e: Error) => {
          assert.match(e.message, /ERR_INVALID_AUTH_CREDENTIALS/);
          return null;
        });
        if (res) assert.equal(res.status(), 401);
        assert.ok(answers.length >= 1);
        for (const answer of answers) {
          assert.equal(answer.status, 401);
          assert.match(answer.headers.get("www-authenticate") ?? "", /^Basic realm="llm-balance"/);
        }
        // the browser may still be moving to its own error page: read once it has settled
        let shown = "";
        await until(async () => {
          shown = await page.content().catch(() => "");
          return shown !== "";
        }, "the page's content");
        const data = await context.request.get(`${proxy.url}/dashboard/data`);
        assert.equal(data.status(), 401);
        const seen = shown + (await data.text());
        for (const mask of masks) assert.ok(!seen.includes(mask), `no ${mask}`);
        assert.doesNotMatch(seen, /"requests"|keys usable/);
        assert.ok(!shown.includes("data-id="), "no key row");
        await context.close();
      }
    } finally {
      await browser.close();
    }
  },
);

browserTest(
  "dashboard: every key, a 429's countdown, live counts and budgets, disable, phone width",
  async () => {
    const limited = new Set<string>();
    await using upstream = startUpstream(limited, 30);
    await using proxy = await startProxy(config(upstream.baseUrl), { level: "info" });
    const before = await dataOf(proxy);
    const browser = await launchChromium();
    try {
      const context = await browser.newContext({
        httpCredentials: { username: "admin", password: ADMIN },
        viewport: { width: 1366, height: 900 },
      });
      context.setDefaultTimeout(WAIT);
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      assert.equal((await page.goto(`${proxy.url}/dashboard`))?.status(), 200);

      // 1. no traffic yet: every key by mask, serving; budget bars for upstream a's keys
      await page.locator("#conn", { hasText: "live" }).waitFor();
      for (const k of before.keys) {
        await row(page, k.id).waitFor();
        assert.equal(await row(page, k.id).locator(".mask").textContent(), k.mask);
        assert.equal(await row(page, k.id).locator(".name").textContent(), k.name);
        assert.equal(await row(page, k.id).getAttribute("data-state"), "serving");
        assert.equal(await row(page, k.id).locator(".badge").textContent(), "serving");
        const bars = row(page, k.id).locator('[data-budget="requests_per_day"]');
        assert.equal(await bars.count(), k.upstream === "a" ? 1 : 0, k.mask);
      }
      const steady = keyNamed(before, "steady");
      const bar = row(page, steady.id).locator('[data-budget="requests_per_day"]');
      assert.equal(await bar.locator(".bl").textContent(), "requests/day0 / 1000");
      assert.match(await bar.locator(".bt").textContent() ?? "", /^resets in \d/);
      assert.equal(await page.locator("#ok").textContent(), "OK");
      assert.match(await page.locator("#tnote").textContent() ?? "", /no requests yet/);
      await page.screenshot({ path: artifactPath("dashboard_empty.png"), fullPage: true });

      // 2. a key answered 429 with retry-after: 30 turns rate limited, its countdown ticks down
      await page.evaluate("window.notReloaded = true");
      limited.add(LIMITED);
      await send(proxy, 4);
      const limitedKey = keyNamed(before, "limited");
      await page.locator(`.key[data-id="${limitedKey.id}"][data-state="rate_limited"]`).waitFor();
      assert.equal(await row(page, limitedKey.id).locator(".badge").textContent(), "rate limited");
      const first = await countdown(page, limitedKey.id);
      assert.ok(first <= 30 && first >= 20, `${first}s`);
      await page.waitForTimeout(2_500);
      const later = await countdown(page, limitedKey.id);
      assert.ok(later < first && later >= first - 4, `${first}s, then ${later}s`);

      // 3. counts and budgets follow the traffic without a reload
      const seen = await figure(page, steady.id, "requests");
      await send(proxy, 6);
      const now = keyNamed(await dataOf(proxy), "steady");
      assert.ok(now.requests > seen);
      await textIs(page, `.key[data-id="${steady.id}"] [data-l="requests"]`, String(now.requests));
      const used = now.budgets.find((b) => b.name === "requests_per_day")?.used;
      assert.ok(used !== undefined && used > 0);
      await textIs(page, `.key[data-id="${steady.id}"] [data-budget] .bl .mu`, `${used} / 1000`);
      assert.ok(await figure(page, limitedKey.id, "failures") >= 1);
      assert.equal(await page.evaluate(`"notReloaded" in window`), true, "no reload");

      // 4. under load: figures in flight, the sparkline, the event of the 429
      let loading = true;
      const workers = Array.from({ length: 4 }, async () => {
        while (loading) await send(proxy, 1);
      });
      try {
        await page.locator("#ev li", { hasText: limitedKey.mask }).first().waitFor();
        await until(
          async () => Number(await page.locator(".pool dd").first().textContent()) > 0,
          "requests per second",
        );
        await page.waitForTimeout(2_500);
        await page.screenshot({ path: artifactPath("dashboard_load.png"), fullPage: true });
      } finally {
        loading = false;
        await Promise.all(workers);
      }
      assert.doesNotMatch(await page.locator("#tnote").textContent() ?? "", /no requests/);

      // 5. disable: refused at the confirmation changes nothing; confirmed takes the key out
      const isDisabled = () =>
        [...proxy.app.rt.candidates.values()].find((c) => c.id === steady.id)?.state.disabled;
      const disable = row(page, steady.id).getByRole("button", { name: "Disable" });
      let asked = "";
      page.once("dialog", (d) => {
        asked = d.message();
        void d.dismiss();
      });
      await disable.click();
      await page.waitForTimeout(500);
      assert.ok(asked.startsWith(`Disable key ${steady.mask} (steady)?`), asked);
      assert.equal(isDisabled(), false);
      page.once("dialog", (d) => void d.accept());
      await disable.click();
      await page.locator(`.key[data-id="${steady.id}"][data-state="disabled"]`).waitFor();
      assert.equal(isDisabled(), true);
      assert.equal(keyNamed(await dataOf(proxy), "steady").state, "disabled");
      assert.equal(await row(page, steady.id).locator(".badge").textContent(), "disabled");
      await row(page, steady.id).getByRole("button", { name: "Enable" }).waitFor();
      await page.locator("#toast", { hasText: "Disabled key" }).waitFor();

      // 6. only the keys not serving, then a filter by mask
      await page.locator("#bad").check();
      await rowsShown(page, 2);
      await page.locator("#bad").uncheck();
      await page.locator("#q").fill(keyNamed(before, "other").mask);
      await rowsShown(page, 1);
      await page.locator("#q").fill("");

      // 7. a phone-wide window: no horizontal overflow
      const phone = await browser.newContext({
        httpCredentials: { username: "admin", password: ADMIN },
        viewport: { width: 390, height: 844 },
        isMobile: true,
        hasTouch: true,
      });
      phone.setDefaultTimeout(WAIT);
      const small = await phone.newPage();
      await small.goto(`${proxy.url}/dashboard`);
      await row(small, steady.id).waitFor();
      assert.ok(await overflow(small) <= 0, `${await overflow(small)} px too wide`);
      await small.screenshot({ path: artifactPath("dashboard_phone.png"), fullPage: true });
      await phone.close();

      // 8. the server goes away: the page says so and keeps what it showed
      await proxy.close();
      await page.locator("#conn", { hasText: "disconnected, retrying" }).waitFor();
      assert.equal(await row(page, steady.id).locator(".mask").textContent(), steady.mask);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  },
);

// ---- fixture data, served by a scripted server: what a running proxy cannot easily show ----

function fixtureKey(i: number, over: Partial<DashboardKey> = {}): DashboardKey {
  return {
    id: `up${i % 2}:${i.toString(16).padStart(13, "0")}`,
    mask: `sk-f...${String(i).padStart(4, "0")}`,
    name: null,
    upstream: `up${i % 2}`,
    pools: ["default"],
    state: "serving",
    reason: null,
    until_ms: null,
    in_flight: 0,
    requests: i,
    failures: 0,
    prompt_tokens: 0,
    completion_tokens: 0,
    latency_p50_ms: null,
    latency_p95_ms: null,
    latency_ewma_ms: null,
    pins: 0,
    budgets: [],
    more_models: 0,
    ...over,
  };
}

function fixture(keys: DashboardKey[], over: Partial<DashboardData> = {}): DashboardData {
  const pool: DashboardPool = {
    model: "default",
    strategy: "round_robin",
    usable: keys.filter((k) => k.state === "serving").length,
    total: keys.length,
    requests_per_s: 1.5,
    errors_per_s: 0,
    latency_p50_ms: 12,
    latency_p95_ms: 40,
    queue: 0,
    affinity: null,
    keys: keys.map((k) => k.id),
  };
  return {
    now_ms: Date.now(),
    version: "0.0.0-test",
    uptime_s: 65,
    ok: true,
    redis: null,
    pools: [pool],
    keys,
    series: { step_s: 10, requests: Array(90).fill(1), errors: Array(90).fill(0) },
    events: [],
    can_act: true,
    ...over,
  };
}

/** Serves the page and `answer()` as its data; counts the page loads. */
function startFixtureServer(answer: () => Response) {
  let pageLoads = 0;
  const server = startScriptedUpstream((req) => {
    if (req.path === "/dashboard") {
      pageLoads++;
      return new Response(DASHBOARD_HTML, { headers: { "content-type": "text/html" } });
    }
    if (req.path === "/dashboard/data") return answer();
    return new Response("not found", { status: 404 });
  });
  return Object.assign(server, { pageLoads: () => pageLoads });
}

const HOSTILE = `<img src=x onerror="window.pwned=1">`;

browserTest(
  "dashboard page: data with markup stays text, countdowns follow the server's clock",
  async () => {
    const serverNow = Date.now() + 3_600_000; // the server's clock is an hour ahead
    const keys = [
      fixtureKey(0, {
        mask: HOSTILE,
        name: "<b>bold</b>",
        upstream: `"><script>window.pwned=2</script>`,
        state: "rate_limited",
        reason: `<i>rate</i> limited by ${HOSTILE}`,
        until_ms: serverNow + 30_000,
        budgets: [{
          name: "model_requests_per_day",
          model: HOSTILE,
          used: 5,
          limit: 10,
          remaining: 5,
          source: "counted",
          resets_at_ms: serverNow + 90 * 60_000,
        }],
      }),
      fixtureKey(1, { state: "bogus<b>" as KeyState }),
    ];
    const data = fixture(keys, {
      now_ms: serverNow,
      events: [{
        at_ms: serverNow - 1000,
        level: "warn",
        message: `key resting: ${HOSTILE}`,
        upstream: HOSTILE,
        key: HOSTILE,
      }],
    });
    data.pools[0]!.model = HOSTILE;
    data.pools[0]!.strategy = HOSTILE;
    let mode: "ok" | "fail" = "ok";
    await using server = startFixtureServer(() =>
      mode === "ok" ? Response.json(data) : new Response("down", { status: 502 })
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      page.setDefaultTimeout(WAIT);
      await page.goto(`${server.origin}/dashboard`);
      const hostile = row(page, keys[0]!.id);
      await hostile.waitFor();
      assert.equal(await hostile.locator(".mask").textContent(), HOSTILE);
      assert.equal(await hostile.locator(".name").textContent(), "<b>bold</b>");
      assert.match(await hostile.locator(".reason").textContent() ?? "", /^<i>rate<\/i> limited/);
      assert.match(await page.locator("#ev").textContent() ?? "", /key resting: <img src=x/);
      assert.match(await page.locator(".pool h3").textContent() ?? "", /^<img src=x/);
      assert.equal(await page.evaluate(`"pwned" in window`), false);
      assert.equal(await page.locator("img").count(), 0);
      assert.equal(await page.locator("script").count(), 1, "the page's own");
      assert.equal(await page.locator("#groups b, #ev b, .reason i, .pool h3 *").count(), 0);
      assert.equal(await row(page, keys[1]!.id).getAttribute("data-state"), "unknown");
      // an hour of clock skew does not show in the countdowns
      assert.match(await hostile.locator(".cd").textContent() ?? "", /^back in (29|30)s$/);
      assert.match(await hostile.locator(".bb").textContent() ?? "", /resets in 1h (30|29)m/);

      mode = "fail";
      await page.locator("#conn", { hasText: "disconnected, retrying" }).waitFor();
      mode = "ok";
      await page.locator("#conn", { hasText: "live" }).waitFor();
    } finally {
      await browser.close();
    }
  },
);

browserTest(
  "dashboard page: 500 keys are grouped, paged and filtered; no buttons without can_act",
  async () => {
    const keys = Array.from(
      { length: 500 },
      (_, i) =>
        fixtureKey(i, i % 50 === 7 ? { state: "spent", reason: "spent its daily requests" } : {}),
    );
    await using server = startFixtureServer(() =>
      Response.json(fixture(keys, { can_act: false, ok: false }))
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.setDefaultTimeout(WAIT);
      const started = performance.now();
      await page.goto(`${server.origin}/dashboard`);
      await page.locator(".grp").nth(1).waitFor();
      const rows = () => page.locator(".key[data-id]").count();
      assert.equal(await rows(), 0, "groups start closed with this many keys");
      assert.equal(await page.locator(".grp .gh .sub").first().textContent(), "250 serving");
      assert.equal(
        await page.locator(".grp .gh .sub").nth(1).textContent(),
        "240 serving · 10 spent",
      );
      await page.locator(".grp .tog").first().click();
      await rowsShown(page, 50);
      await page.locator(".grp .more").first().click();
      await rowsShown(page, 100);
      assert.ok(performance.now() - started < 8_000, "renders in a few seconds");
      assert.equal(await page.locator(".act button:visible, .gact button:visible").count(), 0);
      assert.equal(await page.locator("#ok").textContent(), "NOT OK");

      await page.locator("#q").fill(keys[321]!.mask);
      await rowsShown(page, 1);
      await page.locator("#q").fill("");
      await page.locator("#bad").check();
      await rowsShown(page, 10);
      assert.equal(await page.locator('.key[data-state="spent"]').count(), 10);
    } finally {
      await browser.close();
    }
  },
);

browserTest(
  "dashboard page: a 401 for its data reloads the page once, to ask for credentials",
  async () => {
    await using server = startFixtureServer(() =>
      Response.json({ error: { message: "admin key required" } }, { status: 401 })
    );
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      page.setDefaultTimeout(WAIT);
      await page.goto(`${server.origin}/dashboard`);
      await page.locator("#conn", { hasText: "signed out" }).waitFor();
      assert.equal(server.pageLoads(), 2, "one reload, not a loop");
      await page.waitForTimeout(2_500);
      assert.equal(server.pageLoads(), 2);
    } finally {
      await browser.close();
    }
  },
);
