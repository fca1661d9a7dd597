/**
 * @module
 * The dashboard page served at `GET /dashboard`: one self-contained HTML document (CSS and
 * JavaScript inline, nothing loaded from anywhere else) that polls `GET /dashboard/data` (a
 * `DashboardData`, see `dashboard_types.ts`) every 2 s and shows the pools, every key with its
 * state, countdown and budgets, a sparkline of the last 15 minutes and the last state changes,
 * with operator actions behind a confirmation. Every value from the data reaches the DOM as text
 * (`textContent`, attribute values), never as markup.
 */

const CSS = String.raw`
:root{--bg:#f5f6f8;--fg:#1c2128;--mu:#5b6775;--card:#fff;--bd:#d9dee4;--ok:#1a7f37;--warn:#9a6700;
--bad:#cf222e;--off:#6e7781;--acc:#0969da;--half:#08767f;--spent:#8250df;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mu:#8d96a0;--card:#161b22;
--bd:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--off:#8b949e;--acc:#4493f8;--half:#39c5cf;
--spent:#a371f7}}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);
color:var(--fg);font-variant-numeric:tabular-nums}
h1{font-size:16px;margin:0}h2{font-size:15px;margin:0}h3{font-size:14px;margin:0}
button{font:inherit;color:inherit;background:var(--card);border:1px solid var(--bd);border-radius:6px;
padding:2px 8px;cursor:pointer}
button:hover{border-color:var(--acc)}
.mu{color:var(--mu)}.sub{font-size:12px;color:var(--mu);overflow-wrap:anywhere}
header{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;gap:6px 12px;align-items:center;
padding:8px 16px;background:var(--card);border-bottom:1px solid var(--bd)}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;
border:1px solid currentColor}
.good{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}
#conn{margin-left:auto}
main{max-width:1500px;margin:0 auto;padding:12px 16px 40px}
body.stale main{opacity:.55}
.card{background:var(--card);border:1px solid var(--bd);border-radius:8px;padding:10px 12px;min-width:0}
#top{display:grid;align-items:start;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px;margin-bottom:16px}
.th{display:flex;flex-wrap:wrap;justify-content:space-between;gap:4px 12px;margin-bottom:6px}
#spark{display:block;width:100%;height:110px}
#sb{stroke:var(--bd);vector-effect:non-scaling-stroke}#sr{fill:var(--acc)}#se{fill:var(--bad)}
.legend{font-size:12px;color:var(--mu)}.legend b{display:inline-block;width:10px;height:3px;
vertical-align:middle;margin:0 4px 0 8px}
#ev{list-style:none;margin:0;padding:0;max-height:240px;overflow:auto}
#ev li{display:flex;flex-wrap:wrap;gap:0 8px;padding:3px 0;border-top:1px solid var(--bd);
overflow-wrap:anywhere}
#ev li:first-child{border-top:0}#ev .msg{flex-basis:100%}#ev .lv-warn .msg{color:var(--warn)}#ev .lv-error .msg{color:var(--bad)}
.link{border:0;background:none;color:var(--acc);padding:2px 0}
.sec{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;margin:16px 0 8px}
#pools{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:10px}
.pool .ph{display:flex;justify-content:space-between;gap:8px;overflow-wrap:anywhere}
.p-bad{border-color:var(--bad)}.p-warn{border-color:var(--warn)}
.big{font-size:22px;margin:2px 0}.p-bad .big b{color:var(--bad)}
dl{display:grid;grid-template-columns:auto 1fr;gap:1px 10px;margin:0;font-size:13px}
dt{color:var(--mu)}dd{margin:0;text-align:right;white-space:nowrap}.err{color:var(--bad)}
#q{flex:1 1 220px;max-width:420px;font:inherit;padding:5px 8px;border:1px solid var(--bd);
border-radius:6px;background:var(--card);color:inherit}
.grp{background:var(--card);border:1px solid var(--bd);border-radius:8px;margin-bottom:10px;
overflow:hidden}
.gh{display:flex;flex-wrap:wrap;align-items:center;gap:6px 12px;padding:6px 10px}
.tog{border:0;background:none;padding:2px 0;font-weight:600;overflow-wrap:anywhere;text-align:left}
.caret{display:inline-block;width:14px}.gact{margin-left:auto;display:flex;gap:6px;flex-wrap:wrap}
.more{margin:6px 10px 8px}
.key{display:grid;gap:4px 10px;padding:7px 10px;border-top:1px solid var(--bd);align-items:start;
grid-template-columns:minmax(9rem,1.2fr) minmax(9rem,1.3fr) repeat(3,minmax(3.5rem,.45fr))
minmax(4rem,.5fr) minmax(7rem,.8fr) minmax(2.5rem,.3fr) minmax(13rem,2fr) 8.5rem}
.key>*{min-width:0}
.kh{font-size:12px;color:var(--mu);border:0;padding-bottom:0}
.nopins .pins{display:none}
.nopins .key{grid-template-columns:minmax(9rem,1.2fr) minmax(9rem,1.3fr) repeat(3,minmax(3.5rem,.45fr))
minmax(4rem,.5fr) minmax(7rem,.8fr) minmax(13rem,2fr) 8.5rem}
.n{text-align:right}
.mask{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-weight:600;
overflow-wrap:anywhere}
.name{margin-left:6px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 7px;border-radius:999px;font-size:12px;font-weight:600;
color:var(--c);background:color-mix(in srgb,var(--c) 15%,transparent);margin-right:6px}
.b-serving{--c:var(--ok)}.b-half_open{--c:var(--half)}.b-resting,.b-rate_limited{--c:var(--warn)}
.b-spent{--c:var(--spent)}.b-ejected,.b-auth_failed,.b-unhealthy,.b-unknown{--c:var(--bad)}
.b-disabled{--c:var(--off)}
.cd{font-size:12px;font-weight:600}
.bb{margin-bottom:4px}.bl{display:flex;justify-content:space-between;gap:6px;font-size:12px}
.bl span:first-child{overflow-wrap:anywhere}.bl span+span{white-space:nowrap}
.bt{display:flex;align-items:center;gap:8px}.bt .sub{white-space:nowrap;min-width:8.5em;text-align:right}
.track{flex:1;height:6px;border-radius:3px;background:color-mix(in srgb,var(--mu) 22%,transparent);overflow:hidden}
.track i{display:block;height:100%;background:var(--ok)}.hi .track i{background:var(--warn)}
.full .track i{background:var(--bad)}
.act{display:flex;flex-wrap:wrap;gap:6px;justify-content:flex-end}
#toast{position:fixed;left:50%;bottom:16px;transform:translateX(-50%);max-width:min(92vw,560px);
background:var(--fg);color:var(--bg);padding:8px 14px;border-radius:8px;z-index:3;
overflow-wrap:anywhere}
#toast.bad{background:var(--bad);color:#fff}
@media (max-width:1100px){
.kh{display:none}
.key,.nopins .key{grid-template-columns:repeat(6,minmax(0,1fr))}
.who,.st{grid-column:span 3}.bud{grid-column:span 4}.act{grid-column:span 2;align-self:end}
.n{text-align:left}
.n::before{content:attr(data-l);display:block;font-size:11px;color:var(--mu)}
}
@media (max-width:640px){
header{padding:8px 10px}main{padding:10px 10px 40px}
#top{grid-template-columns:minmax(0,1fr)}
.key,.nopins .key{grid-template-columns:repeat(4,minmax(0,1fr))}
.who,.st,.bud,.act{grid-column:1/-1}.lat{grid-column:span 2}
.act{justify-content:flex-start}.gact{margin-left:0}
}
`;

const SCRIPT = String.raw`
(function () {
"use strict";
var BASE = location.pathname.replace(/\/+$/, "");
var POLL = 2000, PAGE = 50, EVENTS = 8;
var LABEL = { serving: "serving", half_open: "half open", resting: "resting",
  rate_limited: "rate limited", spent: "spent", ejected: "ejected", auth_failed: "auth failed",
  unhealthy: "unhealthy", disabled: "disabled" };
var BUDGET = { requests_per_day: "requests/day", model_requests_per_day: "requests/day",
  tokens_per_day: "tokens/day", requests_per_minute: "requests/min",
  tokens_per_minute: "tokens/min", max_concurrency: "in flight" };
var data = null, got = 0, skew = 0, timer = 0, fails = 0, allEvents = false, tk = [];
var opened = new Map(), shown = new Map(), rows = new Map(), groups = new Map();

function $(id) { return document.getElementById(id); }
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = String(text);
  return e;
}
function setText(e, t) {
  t = t == null ? "" : String(t);
  if (e.textContent !== t) e.textContent = t;
}
function now() { return Date.now() + skew; }
function pad(n) { return (n < 10 ? "0" : "") + n; }
function dur(ms) {
  var s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return s + "s";
  var m = Math.floor(s / 60);
  if (m < 60) return m + "m " + pad(s % 60) + "s";
  var h = Math.floor(m / 60);
  if (h < 48) return h + "h " + pad(m % 60) + "m";
  return Math.floor(h / 24) + "d " + (h % 24) + "h";
}
function num(n) {
  if (n == null || !isFinite(n)) return "–";
  var a = Math.abs(n);
  if (a < 10000) return String(Math.round(n));
  if (a < 1e6) return (n / 1e3).toFixed(a < 1e5 ? 1 : 0) + "k";
  if (a < 1e9) return (n / 1e6).toFixed(a < 1e8 ? 1 : 0) + "M";
  return (n / 1e9).toFixed(1) + "G";
}
function rate(x) {
  if (x == null || !isFinite(x)) return "–";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}
function ms(x) {
  if (x == null || !isFinite(x)) return "–";
  return x >= 10000 ? (x / 1000).toFixed(1) + "s" : String(Math.round(x));
}
function place(parent, child, i) {
  if (parent.children[i] !== child) parent.insertBefore(child, parent.children[i] || null);
}
function trim(parent, n) { while (parent.children.length > n) parent.lastElementChild.remove(); }
function stateOf(k) { return Object.prototype.hasOwnProperty.call(LABEL, k.state) ? k.state : "unknown"; }
function who(k) { return k.mask + (k.name ? " (" + k.name + ")" : ""); }

var toastTimer = 0;
function toast(text, bad) {
  var t = $("toast");
  setText(t, text);
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(function () { t.hidden = true; }, bad ? 8000 : 4000);
}

function conn(ok, why) {
  var c = $("conn");
  setText(c, ok ? "live" : "disconnected, retrying");
  c.className = "pill " + (ok ? "good" : "bad");
  c.title = ok ? "updated every 2 s" : why;
  document.body.classList.toggle("stale", !ok && data != null);
  if (!data) setText($("msg"), ok ? "" : "Disconnected, retrying… (" + why + ")");
}
function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(load, ms);
}
function lost(why) {
  fails++;
  conn(false, why);
  schedule(fails < 5 ? POLL : 5000);
}
function reauth() {
  var last = 0;
  try { last = Number(sessionStorage.getItem("llm-balance-reauth")) || 0; } catch (_) { /* none */ }
  if (Date.now() - last > 15000) {
    try { sessionStorage.setItem("llm-balance-reauth", String(Date.now())); } catch (_) { /* none */ }
    location.reload();
  } else {
    clearTimeout(timer);
    conn(false, "credentials refused");
    setText($("conn"), "signed out: reload the page");
  }
}
function load() {
  clearTimeout(timer);
  // a server that stops answering (paused, a proxy holding the connection) is lost after 8 s
  var ctl = typeof AbortController === "function" ? new AbortController() : null;
  var limit = setTimeout(function () { if (ctl) ctl.abort(); }, 8000);
  fetch(BASE + "/data", { cache: "no-store", credentials: "same-origin",
    headers: { accept: "application/json" }, signal: ctl ? ctl.signal : undefined })
    .finally(function () { clearTimeout(limit); })
    .then(function (res) {
      if (res.status === 401) return reauth();
      if (!res.ok) return lost("HTTP " + res.status);
      return res.json().then(function (d) {
        if (!d || !Array.isArray(d.keys) || !Array.isArray(d.pools)) return lost("unexpected data");
        fails = 0;
        data = d;
        got = Date.now();
        skew = typeof d.now_ms === "number" ? d.now_ms - got : 0;
        conn(true);
        render();
        schedule(document.hidden ? 10000 : POLL);
      });
    })
    .catch(function (e) {
      lost(e && e.name === "AbortError" ? "no answer for 8 s" :
        e && e.message ? e.message : "network error");
    });
}

function act(kind, id, action, what) {
  var verb = action.charAt(0).toUpperCase() + action.slice(1);
  var why = action === "disable" ? "It takes no requests until enabled." :
    action === "reset" ? "This clears its health state and budgets." : "It takes requests again.";
  if (!window.confirm(verb + " " + what + "? " + why)) return;
  fetch(BASE + "/actions/" + kind + "/" + encodeURIComponent(id) + "/" + action, {
    method: "POST", credentials: "same-origin", body: "{}",
    headers: { "content-type": "application/json", accept: "application/json" },
  }).then(function (res) {
    if (res.status === 401) return reauth();
    return res.text().then(function (t) {
      if (res.ok) return toast(verb + "d " + what);
      var m = "HTTP " + res.status;
      try { m = JSON.parse(t).error.message || m; } catch (_) { /* not JSON */ }
      toast("Could not " + action + " " + what + ": " + m, true);
    });
  }).catch(function (e) {
    toast("Could not " + action + " " + what + ": " + (e && e.message), true);
  }).then(load);
}
function button(text, onClick) {
  var b = el("button", "", text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function render() {
  var d = data;
  if (!d) return;
  tk = [];
  $("msg").hidden = true;
  $("top").hidden = false;
  $("ks").hidden = false;
  header(d);
  traffic(d);
  events(d);
  pools(d);
  keys(d);
  tick();
}

function header(d) {
  setText($("ver"), "v" + d.version);
  var ok = $("ok");
  setText(ok, d.ok ? "OK" : "NOT OK");
  ok.className = "pill " + (d.ok ? "good" : "bad");
  ok.title = d.ok ? "every pool has a usable key" : "a pool has no usable key";
  var r = $("redis");
  r.hidden = !d.redis;
  if (d.redis) {
    setText(r, "Redis " + (d.redis.up ? "up" : "down"));
    r.className = "pill " + (d.redis.up ? "good" : d.redis.required ? "bad" : "warn");
  }
  document.title = (d.ok ? "" : "NOT OK · ") + "llm-balance dashboard";
}

function traffic(d) {
  var s = d.series || {}, req = s.requests || [], err = s.errors || [];
  var n = req.length, max = 0, tr = 0, te = 0, i;
  for (i = 0; i < n; i++) {
    max = Math.max(max, req[i] || 0, err[i] || 0);
    tr += req[i] || 0;
    te += err[i] || 0;
  }
  // one column per bucket; errors drawn over requests
  var W = 300, H = 48, w = W / Math.max(n, 1), sy = (H - 2) / Math.max(1, max);
  function cols(a) {
    var p = "";
    for (var j = 0; j < n; j++) {
      var h = (a[j] || 0) * sy;
      if (h > 0) {
        p += "M" + (j * w).toFixed(2) + "," + H + "v-" + Math.max(h, 1).toFixed(2) + "h" +
          Math.max(w * 0.8, 0.5).toFixed(2) + "V" + H + "Z";
      }
    }
    return p || "M0,0";
  }
  $("sr").setAttribute("d", cols(req));
  $("se").setAttribute("d", cols(err));
  var rps = 0, eps = 0, serving = 0;
  d.pools.forEach(function (p) { rps += p.requests_per_s || 0; eps += p.errors_per_s || 0; });
  d.keys.forEach(function (k) { if (k.state === "serving") serving++; });
  var mins = Math.round((s.step_s || 60) * n / 60);
  setText($("tt"), "Traffic, last " + (mins || 15) + " min");
  setText($("tsum"), rate(rps) + " req/s · " + rate(eps) + " err/s · " + serving + " of " +
    d.keys.length + " keys serving");
  setText($("tnote"), tr ? num(tr) + " requests, " + num(te) + " errors; peak " + num(max) +
    " per " + (s.step_s || 60) + " s" : "no requests yet");
}

function events(d) {
  var ol = $("ev"), list = d.events || [];
  var n = allEvents ? list.length : Math.min(list.length, EVENTS);
  ol.replaceChildren();
  for (var i = 0; i < n; i++) {
    var e = list[i], lv = e.level === "warn" || e.level === "error" ? e.level : "info";
    var li = el("li", "lv-" + lv), at = new Date(e.at_ms);
    var t = el("time", "mu", pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds()));
    t.title = at.toLocaleString();
    li.append(t);
    var where = [e.upstream, e.key].filter(Boolean).join(" · ");
    if (where) li.append(el("span", "mu", where));
    li.append(el("span", "msg", e.message));
    ol.append(li);
  }
  if (!list.length) ol.append(el("li", "mu", "No state changes yet."));
  var more = $("evmore");
  more.hidden = list.length <= EVENTS;
  setText(more, allEvents ? "Show fewer" : "Show all " + list.length);
}

function kv(dl, k, v, cls) {
  dl.append(el("dt", "", k), el("dd", cls || "", v));
}
function pools(d) {
  var box = $("pools");
  box.replaceChildren();
  d.pools.forEach(function (p) {
    var c = el("div", "card pool" + (p.usable === 0 ? " p-bad" : p.usable < p.total ? " p-warn" : ""));
    c.setAttribute("data-pool", p.model);
    var h = el("div", "ph");
    h.append(el("h3", "", p.model), el("span", "mu", p.strategy));
    var big = el("div", "big");
    big.append(el("b", "", p.usable), el("span", "mu", " / " + p.total + " keys usable"));
    var dl = el("dl");
    kv(dl, "requests/s", rate(p.requests_per_s));
    kv(dl, "errors/s", rate(p.errors_per_s), p.errors_per_s > 0 ? "err" : "");
    kv(dl, "latency p50 / p95", ms(p.latency_p50_ms) + " / " + ms(p.latency_p95_ms) + " ms");
    kv(dl, "queue", num(p.queue), p.queue > 0 ? "warn" : "");
    var a = p.affinity;
    if (a) {
      var all = a.hit + a.new + a.moved + a.detour;
      kv(dl, "affinity pins", num(a.pins));
      kv(dl, "affinity hit rate", all ? Math.round(100 * a.hit / all) + "%" : "–");
    }
    c.append(h, big, dl);
    box.append(c);
  });
  if (!d.pools.length) box.append(el("p", "mu", "No pools."));
}

function hay(k) {
  return [k.mask, k.name || "", k.upstream, k.state, LABEL[stateOf(k)] || "", k.reason || "",
    (k.pools || []).join(" "), k.id].join(" ").toLowerCase();
}
function keys(d) {
  var q = $("q").value.trim().toLowerCase(), bad = $("bad").checked, filtering = q !== "" || bad;
  var by = new Map(), seen = new Set(), match = 0;
  d.keys.forEach(function (k) {
    seen.add(k.id);
    var g = by.get(k.upstream);
    if (!g) by.set(k.upstream, g = { all: [], vis: [] });
    g.all.push(k);
    if ((!bad || k.state !== "serving") && (!q || hay(k).indexOf(q) >= 0)) {
      g.vis.push(k);
      match++;
    }
  });
  rows.forEach(function (r, id) { if (!seen.has(id)) { r.el.remove(); rows.delete(id); } });
  groups.forEach(function (g, name) { if (!by.has(name)) { g.el.remove(); groups.delete(name); } });
  $("groups").classList.toggle("nopins", !d.pools.some(function (p) { return p.affinity; }) &&
    !d.keys.some(function (k) { return k.pins > 0; }));
  var box = $("groups"), gi = 0;
  by.forEach(function (g, name) {
    var G = group(name);
    place(box, G.el, gi++);
    G.el.hidden = filtering && !g.vis.length;
    var counts = {};
    g.all.forEach(function (k) { var l = LABEL[stateOf(k)] || k.state; counts[l] = (counts[l] || 0) + 1; });
    setText(G.sum, Object.keys(counts).map(function (l) { return counts[l] + " " + l; }).join(" · ") +
      (filtering ? " — " + g.vis.length + " shown" : ""));
    G.acts.hidden = !d.can_act;
    var open = opened.has(name) ? opened.get(name) : filtering || d.keys.length <= 100;
    G.body.hidden = !open;
    G.tog.setAttribute("aria-expanded", String(open));
    setText(G.caret, open ? "▾" : "▸");
    if (!open) return;
    var n = Math.min(g.vis.length, shown.get(name) || PAGE);
    for (var i = 0; i < n; i++) {
      var k = g.vis[i], r = rows.get(k.id) || row(k);
      update(r, k, d.can_act);
      place(G.rows, r.el, i);
    }
    trim(G.rows, n);
    G.more.hidden = g.vis.length <= n;
    setText(G.more, "Show " + Math.min(PAGE, g.vis.length - n) + " more (" + (g.vis.length - n) + " not shown)");
  });
  setText($("kcount"), filtering ? match + " of " + d.keys.length : String(d.keys.length));
  var none = $("none");
  none.hidden = match > 0;
  setText(none, d.keys.length ? "No key matches the filter." : "No keys configured.");
}
function group(name) {
  var G = groups.get(name);
  if (G) return G;
  G = { el: el("section", "grp") };
  G.el.setAttribute("data-upstream", name);
  var head = el("div", "gh");
  G.tog = el("button", "tog");
  G.tog.type = "button";
  G.caret = el("span", "caret");
  G.tog.append(G.caret, el("span", "", "upstream " + name));
  G.tog.addEventListener("click", function () {
    opened.set(name, G.body.hidden);
    render();
  });
  G.sum = el("span", "sub");
  G.acts = el("span", "gact");
  ["disable", "enable", "reset"].forEach(function (a) {
    G.acts.append(button(a.charAt(0).toUpperCase() + a.slice(1) + " all", function () {
      act("upstreams", name, a, "every key of upstream " + name);
    }));
  });
  head.append(G.tog, G.sum, G.acts);
  G.body = el("div", "gb");
  var kh = el("div", "key kh");
  ["key", "state", "in flight", "requests", "failures", "tokens", "latency p50/p95/ewma ms", "pins",
    "budgets", ""].forEach(function (t, i) {
    kh.append(el("div", i < 2 || i > 7 ? "" : i === 7 ? "n pins" : "n", t));
  });
  G.rows = el("div", "rows");
  G.more = button("", function () {
    shown.set(name, (shown.get(name) || PAGE) + PAGE);
    render();
  });
  G.more.className = "more";
  G.body.append(kh, G.rows, G.more);
  G.el.append(head, G.body);
  groups.set(name, G);
  return G;
}
function cell(r, field, label, cls) {
  var c = el("div", "n " + (cls || ""));
  c.setAttribute("data-l", label);
  r[field] = c;
  r.el.append(c);
}
function row(k) {
  var r = { el: el("div", "key"), key: k };
  var w = el("div", "who");
  r.mask = el("span", "mask");
  r.name = el("span", "name");
  r.sub = el("div", "sub");
  w.append(r.mask, r.name, r.sub);
  var s = el("div", "st");
  r.badge = el("span", "badge");
  r.cd = el("span", "cd");
  r.reason = el("div", "sub reason");
  s.append(r.badge, r.cd, r.reason);
  r.el.append(w, s);
  cell(r, "inf", "in flight");
  cell(r, "req", "requests");
  cell(r, "fail", "failures");
  cell(r, "tok", "tokens");
  cell(r, "lat", "latency p50/p95/ewma ms", "lat");
  cell(r, "pins", "pins", "pins");
  r.bud = el("div", "bud");
  r.act = el("div", "act");
  r.toggle = button("Disable", function () {
    act("keys", r.key.id, r.key.state === "disabled" ? "enable" : "disable", "key " + who(r.key));
  });
  r.reset = button("Reset", function () { act("keys", r.key.id, "reset", "key " + who(r.key)); });
  r.act.append(r.toggle, r.reset);
  r.el.append(r.bud, r.act);
  rows.set(k.id, r);
  return r;
}
function update(r, k, canAct) {
  r.key = k;
  var st = stateOf(k);
  r.el.setAttribute("data-id", k.id);
  r.el.setAttribute("data-state", st);
  setText(r.mask, k.mask);
  setText(r.name, k.name || "");
  var pl = (k.pools || []).filter(function (p) { return p !== "default"; });
  setText(r.sub, k.upstream + (pl.length ? " · " + pl.join(", ") : ""));
  setText(r.badge, LABEL[st] || k.state);
  r.badge.className = "badge b-" + st;
  setText(r.reason, k.reason && k.reason !== LABEL[st] ? k.reason : "");
  if (k.until_ms != null) tk.push([r.cd, k.until_ms, "back in "]);
  else setText(r.cd, "");
  setText(r.inf, num(k.in_flight));
  setText(r.req, num(k.requests));
  setText(r.fail, num(k.failures));
  r.fail.classList.toggle("err", k.failures > 0);
  setText(r.tok, num(k.prompt_tokens + k.completion_tokens));
  r.tok.title = "prompt " + k.prompt_tokens + ", completion " + k.completion_tokens;
  setText(r.lat, ms(k.latency_p50_ms) + " / " + ms(k.latency_p95_ms) + " / " + ms(k.latency_ewma_ms));
  setText(r.pins, num(k.pins));
  budgets(r.bud, k.budgets || [], k.more_models || 0);
  r.act.hidden = !canAct;
  setText(r.toggle, st === "disabled" ? "Enable" : "Disable");
}
function budgets(box, list, moreModels) {
  box.replaceChildren();
  var all = list.filter(function (b) { return b.model == null; });
  var per = list.filter(function (b) { return b.model != null; })
    .sort(function (a, b) { return fill(b) - fill(a); });
  all.concat(per.slice(0, 3)).forEach(function (b) { box.append(bar(b)); });
  var more = Math.max(0, per.length - 3) + moreModels;
  if (more > 0) box.append(el("div", "sub", "+" + more + " more models"));
}
function fill(b) {
  var lim = b.limit > 0 ? b.limit : b.used + b.remaining;
  if (!(lim > 0)) return 0;
  return Math.min(1, Math.max(0, b.used / lim, 1 - b.remaining / lim));
}
function bar(b) {
  var f = fill(b), w = el("div", "bb" + (f >= 1 ? " full" : f >= 0.8 ? " hi" : ""));
  w.setAttribute("data-budget", b.name);
  w.title = b.source === "provider" ? "as the provider last said" : "counted by llm-balance";
  var top = el("div", "bl");
  var name = BUDGET[b.name] || String(b.name).split("_").join(" ");
  top.append(el("span", "", b.model != null ? name + " · " + b.model : name),
    el("span", "mu", b.limit > 0 ? num(b.used) + " / " + num(b.limit) : num(b.remaining) + " left"));
  var line = el("div", "bt"), track = el("div", "track"), i = el("i");
  i.style.width = (f * 100).toFixed(1) + "%";
  track.append(i);
  line.append(track);
  if (b.resets_at_ms != null) {
    var rs = el("span", "sub");
    tk.push([rs, b.resets_at_ms, "resets in "]);
    line.append(rs);
  }
  w.append(top, line);
  return w;
}

function tick() {
  var t = now();
  // data older than 10 s (the poll is 2 s): whatever the requests say, the page is stale
  if (data && fails === 0 && Date.now() - got > (document.hidden ? 25000 : 10000)) {
    conn(false, "no fresh data");
  }
  tk.forEach(function (x) {
    var left = x[1] - t;
    setText(x[0], left > 0 ? x[2] + dur(left) : x[2] === "back in " ? "due back" : "resetting");
  });
  if (data) setText($("up"), "up " + dur(data.uptime_s * 1000 + Date.now() - got));
}

var debounce = 0;
$("q").addEventListener("input", function () {
  clearTimeout(debounce);
  debounce = setTimeout(render, 120);
});
$("bad").addEventListener("change", render);
$("evmore").addEventListener("click", function () {
  allEvents = !allEvents;
  render();
});
document.addEventListener("visibilitychange", function () { if (!document.hidden) load(); });
setInterval(tick, 1000);
load();
})();
`;

/** The dashboard page: one HTML document with its CSS and JavaScript inline. */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>llm-balance dashboard</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>llm-balance</h1>
<span id="ver" class="mu"></span>
<span id="up" class="mu"></span>
<span id="ok" class="pill"></span>
<span id="redis" class="pill" hidden></span>
<span id="conn" class="pill" role="status">connecting…</span>
</header>
<main>
<p id="msg" class="mu">Loading…</p>
<section id="top" hidden>
<div class="card">
<div class="th"><h2 id="tt">Traffic, last 15 min</h2><span id="tsum" class="mu"></span></div>
<svg id="spark" viewBox="0 0 300 48" preserveAspectRatio="none" role="img" aria-label="requests and errors over the last 15 minutes"><path id="sb" d="M0,47.5H300"/><path id="sr"/><path id="se"/></svg>
<div class="legend"><b style="background:var(--acc)"></b>requests<b style="background:var(--bad)"></b>errors · <span id="tnote"></span></div>
</div>
<div class="card">
<div class="th"><h2>Last state changes</h2></div>
<ol id="ev"></ol>
<button id="evmore" class="link" type="button" hidden></button>
</div>
</section>
<div id="ks" hidden>
<div class="sec"><h2>Pools</h2></div>
<div id="pools"></div>
<div class="sec">
<h2>Keys <span id="kcount" class="mu"></span></h2>
<input id="q" type="search" placeholder="Filter: mask, name, upstream, state" aria-label="Filter keys" autocomplete="off">
<label><input id="bad" type="checkbox"> only keys not serving</label>
</div>
<div id="groups" class="nopins"></div>
<p id="none" class="mu" hidden></p>
</div>
</main>
<div id="toast" role="status" hidden></div>
<script>${SCRIPT}</script>
</body>
</html>
`;
