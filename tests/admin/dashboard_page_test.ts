import assert from "node:assert/strict";
import { DASHBOARD_HTML } from "../../src/admin/dashboard_page.ts";
import type { KeyState } from "../../src/admin/dashboard_types.ts";

/** The inline script of the page. */
function script(): string {
  const m = /<script>([\s\S]*)<\/script>/.exec(DASHBOARD_HTML);
  assert.ok(m, "the page has an inline script");
  return m[1]!;
}

Deno.test("DASHBOARD_HTML is one document that loads nothing from anywhere", () => {
  const html = DASHBOARD_HTML;
  assert.match(html, /^<!doctype html>/);
  assert.equal(html.match(/<script\b/g)?.length, 1, "one script");
  assert.equal(html.match(/<style\b/g)?.length, 1, "one style sheet");
  for (const remote of ["http://", "https://", "//cdn", "@import", "url("]) {
    assert.ok(!html.includes(remote), `no ${remote}`);
  }
  for (const tag of ["<link", "<img", "<iframe", "<object", "<embed", "<base", "<form"]) {
    assert.ok(!html.toLowerCase().includes(tag), `no ${tag}`);
  }
  const markup = html.replace(script(), "");
  assert.doesNotMatch(markup, /\s(src|href|srcset|action|background)\s*=/i, "no src or href");
  assert.doesNotMatch(script(), /\.(src|href|action)\s*=|"(src|href)"/, "none set by the script");
  assert.match(html, /connect-src 'self'/, "its own policy allows its origin only");
});

Deno.test("DASHBOARD_HTML puts data in the DOM as text only", () => {
  const js = script();
  for (
    const sink of [
      "innerHTML",
      "outerHTML",
      "insertAdjacentHTML",
      "document.write",
      "createContextualFragment",
      "DOMParser",
      "eval(",
      "new Function",
      "srcdoc",
    ]
  ) {
    assert.ok(!js.includes(sink), `no ${sink}`);
  }
  assert.match(js, /textContent/);
  assert.doesNotMatch(js, /`/, "no template strings (they would end the module's own)");
});

Deno.test("DASHBOARD_HTML stays lean", () => {
  const bytes = new TextEncoder().encode(DASHBOARD_HTML).length;
  assert.ok(bytes < 40_000, `${bytes} bytes`);
});

Deno.test("DASHBOARD_HTML's script is valid JavaScript", () => {
  // compiled, never run: a syntax error throws here
  const compile = globalThis.Function;
  assert.doesNotThrow(() => compile(script()));
});

Deno.test("DASHBOARD_HTML polls its data and posts actions as JSON, under its own path", () => {
  const js = script();
  assert.match(js, /BASE \+ "\/data"/);
  assert.match(js, /BASE \+ "\/actions\/" \+ kind \+ "\/" \+ encodeURIComponent\(id\)/);
  assert.match(js, /"content-type": "application\/json"/);
  assert.match(js, /body: "\{\}"/);
  assert.match(js, /window\.confirm\(/, "actions ask first");
  assert.match(js, /res\.status === 401/, "a 401 makes the browser ask again");
  assert.match(js, /disconnected, retrying/);
});

Deno.test("DASHBOARD_HTML names every key state", () => {
  const labels: Record<KeyState, string> = {
    serving: "serving",
    half_open: "half open",
    resting: "resting",
    rate_limited: "rate limited",
    spent: "spent",
    ejected: "ejected",
    auth_failed: "auth failed",
    unhealthy: "unhealthy",
    disabled: "disabled",
  };
  for (const [state, label] of Object.entries(labels)) {
    assert.ok(script().includes(`${state}: "${label}"`), state);
    assert.ok(DASHBOARD_HTML.includes(`.b-${state}`), `a badge colour for ${state}`);
  }
});
