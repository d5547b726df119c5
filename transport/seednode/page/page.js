// The seed node's web page: reads the JSON view (v1/providers,
// v1/ledger, v1/standing) and draws providers, jobs, work per provider,
// the ledger's head and its faults. Every figure goes into the page as
// text, never as markup: names and evidence come from providers and
// requesters, not from the seed node.
"use strict";

(function () {
  const PAGE = 1000; // entries per v1/ledger request, the seed node's maximum
  const RECENT = 5000; // the newest entries read for jobs and faults
  const MAX_PAGES = Math.ceil(RECENT / PAGE) + 1; // bound on v1/ledger requests
  const STANDING_MAX = 64; // providers whose standing is asked for
  const JOBS_SHOWN = 20;
  const FAULTS_SHOWN = 50;
  const SVG = "http://www.w3.org/2000/svg";

  // --- formatting -------------------------------------------------------

  function scaled(n, units, step) {
    n = Number(n) || 0;
    let i = 0;
    while (Math.abs(n) >= step && i < units.length - 1) {
      n /= step;
      i++;
    }
    const digits = i === 0 || Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
    return n.toFixed(digits) + " " + units[i];
  }
  const fmtFlops = (n) => scaled(n, ["FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"], 1000);
  const fmtBytes = (n) => scaled(n, ["B", "kB", "MB", "GB", "TB", "PB"], 1000);
  const fmtSpeed = (g) => (g > 0 ? (g >= 100 ? g.toFixed(0) : g.toFixed(1)) + " GFLOP/s" : "—");
  const fmtInt = (n) => (Number(n) || 0).toLocaleString("en-US");

  function fmtTime(s) {
    const d = new Date(s);
    if (!s || isNaN(d.getTime()) || d.getTime() <= 0) return "—";
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  }

  function fmtDuration(ms) {
    if (!(ms >= 0)) return "";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(Math.floor(s % 60)).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  const shortKey = (k) => (k ? k.slice(0, 10) + "…" : "—");
  const plural = (n, one, many) => fmtInt(n) + " " + (n === 1 ? one : many);

  // --- DOM helpers: text only ------------------------------------------

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const k of kids) {
      if (k === null || k === undefined) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fill(table, rows, cols, empty) {
    const body = document.querySelector(table + " tbody");
    body.replaceChildren();
    if (rows.length === 0) {
      body.append(el("tr", {}, el("td", { class: "empty", colspan: cols }, empty)));
      return;
    }
    for (const r of rows) body.append(r);
  }

  // --- fetching ---------------------------------------------------------

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(url + ": " + r.status + " " + r.statusText);
    return r.json();
  }

  // loadLedger reads the head and totals, then the newest RECENT entries
  // page by page, following "next"; null when the seed node keeps no
  // ledger.
  async function loadLedger() {
    let page;
    try {
      page = await getJSON("v1/ledger?from=1&limit=1");
    } catch (e) {
      return { error: e };
    }
    const headSeq = Number(page.head && page.head.seq) || 0;
    let from = Math.max(1, headSeq - RECENT + 1);
    const entries = [];
    for (let i = 0; i < MAX_PAGES && from > 0 && headSeq > 0; i++) {
      page = await getJSON("v1/ledger?from=" + from + "&limit=" + PAGE);
      entries.push(...(page.entries || []));
      const next = Number(page.next) || 0;
      from = next > from ? next : 0; // never ask twice for the same page
    }
    return { head: page.head || { seq: 0, hash: "" }, totals: page.totals || {}, entries, more: from > 0 };
  }

  async function loadStanding(key) {
    try {
      return await getJSON("v1/standing?key=" + encodeURIComponent(key));
    } catch (e) {
      return null;
    }
  }

  // --- the model --------------------------------------------------------

  const zeroWork = { flops: 0, bytes_in: 0, bytes_out: 0, steps: 0, micro_batches: 0, wall_ms: 0, receipts: 0, faults: 0 };

  // providers merges the registered providers with every provider the
  // ledger names: one registered now is online, any other offline.
  function providers(reg, ledger) {
    const byKey = new Map();
    for (const p of reg.providers || []) {
      const key = p.identity_key || p.id;
      byKey.set(key, { key, name: p.name || p.address, online: true, reg: p });
    }
    const seen = Object.keys((ledger.totals && ledger.totals.providers) || {});
    for (const e of ledger.entries || []) if (e.provider) seen.push(e.provider);
    for (const key of seen) {
      if (!byKey.has(key)) byKey.set(key, { key, name: "", online: false, reg: null });
    }
    const totals = (ledger.totals && ledger.totals.providers) || {};
    const list = [...byKey.values()];
    for (const p of list) p.work = Object.assign({}, zeroWork, totals[p.key] || {});
    list.sort((a, b) => b.online - a.online || b.work.flops - a.work.flops || a.key.localeCompare(b.key));
    return list;
  }

  const nameOf = (p) => p.name || "provider " + shortKey(p.key);

  // jobs groups receipts and faults by job, newest first.
  function jobs(entries, names) {
    const byJob = new Map();
    for (const e of entries) {
      const id = e.job || "(no job)";
      let j = byJob.get(id);
      if (!j) {
        j = { id, providers: new Set(), receipts: 0, faults: 0, flops: 0, bytesIn: 0, bytesOut: 0, start: Infinity, end: -Infinity };
        byJob.set(id, j);
      }
      if (e.provider) j.providers.add(e.provider);
      const t = Date.parse(e.time);
      if (e.kind === "fault") {
        j.faults++;
        if (!isNaN(t)) j.end = Math.max(j.end, t);
        continue;
      }
      j.receipts++;
      j.flops += Number(e.flops) || 0;
      j.bytesIn += Number(e.bytes_in) || 0;
      j.bytesOut += Number(e.bytes_out) || 0;
      const s = Date.parse(e.start), f = Date.parse(e.end);
      if (!isNaN(s)) j.start = Math.min(j.start, s);
      if (!isNaN(f)) j.end = Math.max(j.end, f);
      else if (!isNaN(t)) j.end = Math.max(j.end, t);
    }
    const list = [...byJob.values()];
    list.sort((a, b) => b.end - a.end || a.id.localeCompare(b.id));
    return list;
  }

  // reputation is the seed node's score and rank, or, from a seed node
  // without v1/standing, the share of the provider's records that are
  // receipts rather than faults.
  function reputation(p) {
    const s = p.standing && p.standing.provider;
    if (s && typeof s.score === "number") {
      return { text: s.score.toFixed(2), sub: s.rank ? "rank " + s.rank : "", title: "score from v1/standing" };
    }
    const n = p.work.receipts + p.work.faults;
    if (n === 0) return { text: "—", sub: "", title: "no records yet" };
    return { text: Math.round((100 * p.work.receipts) / n) + "%", sub: "reliable", title: "receipts ÷ (receipts + faults), from the ledger's totals" };
  }

  // --- drawing ----------------------------------------------------------

  function drawHead(ledger, list) {
    const dl = document.getElementById("head");
    dl.replaceChildren();
    const add = (k, v, cls) => dl.append(el("dt", {}, k), el("dd", cls ? { class: cls } : {}, v));
    if (ledger.error) {
      add("Ledger", "not available: " + ledger.error.message, "error");
      return;
    }
    add("Sequence", fmtInt(ledger.head.seq) + (ledger.more ? " (the newest " + fmtInt(ledger.entries.length) + " read)" : ""));
    add("Hash", ledger.head.hash || "— (empty ledger)", "mono head-hash");
    const total = list.reduce((a, p) => a + p.work.flops, 0);
    const requesters = Object.keys((ledger.totals && ledger.totals.requesters) || {}).length;
    add("Verified work", fmtFlops(total) + " by " + plural(list.filter((p) => p.work.receipts > 0).length, "provider", "providers") +
      " for " + plural(requesters, "requester", "requesters"));
  }

  function drawProviders(list) {
    fill("#providers", list.map((p) => {
      const r = p.reg;
      const st = p.standing && p.standing.provider;
      let status = el("span", { class: "badge offline" }, "offline");
      if (r) status = el("span", { class: "badge " + (r.health === "late" ? "late" : "online") }, r.health === "late" ? "late" : "online");
      const measured = r ? r.measured_gflops : 0, claimed = r ? r.machine.gflops : 0;
      const speedNote = [];
      if (measured > 0 && claimed > 0) speedNote.push(Math.round((100 * measured) / claimed) + "% of claim");
      const measuredCell = el("td", { class: "num" }, r ? fmtSpeed(measured) : "—");
      if (speedNote.length) measuredCell.append(el("span", { class: "sub" }, speedNote.join(" ")));
      if (r && r.unverified_speed) measuredCell.append(el("span", { class: "sub" }, el("span", { class: "badge unverified" }, "unverified")));
      const rep = reputation(p);
      const excluded = st && st.excluded_until ? st.excluded_until : "";
      const excludedNow = excluded && Date.parse(excluded) > Date.now();
      return el("tr", { "data-key": p.key, class: p.online ? "online" : "offline" },
        el("td", {}, el("span", { class: "name" }, nameOf(p)),
          r ? el("span", { class: "sub mono", title: p.key }, shortKey(p.key) + " · " + r.address) : el("span", { class: "sub", title: p.key }, "not registered now")),
        el("td", {}, status, r && r.sessions ? el("span", { class: "sub" }, r.sessions + (r.sessions === 1 ? " session" : " sessions")) : null),
        measuredCell,
        el("td", { class: "num" }, r ? fmtSpeed(claimed) : "—"),
        el("td", { class: "num" }, fmtFlops(p.work.flops), el("span", { class: "sub" }, fmtInt(p.work.steps) + " steps")),
        el("td", { class: "num" }, fmtInt(p.work.receipts)),
        el("td", { class: "num" }, p.work.faults ? el("span", { class: "badge fault" }, fmtInt(p.work.faults)) : "0"),
        el("td", { class: "num", title: rep.title }, rep.text, rep.sub ? el("span", { class: "sub" }, rep.sub) : null),
        el("td", {}, excluded ? el("span", { class: excludedNow ? "badge excluded" : "" }, fmtTime(excluded)) : "—",
          excluded && !excludedNow ? el("span", { class: "sub" }, "over") : null));
    }), 9, "No providers are registered and the ledger names none.");
  }

  // drawChart draws one horizontal bar per provider, its length the
  // provider's verified FLOPs.
  function drawChart(list) {
    const box = document.getElementById("chart");
    box.replaceChildren();
    if (list.length === 0) {
      box.append(el("p", { class: "sub" }, "No work recorded yet."));
      return;
    }
    const rows = [...list].sort((a, b) => b.work.flops - a.work.flops || a.key.localeCompare(b.key));
    const W = 960, labelW = 210, valueW = 130, rowH = 26, barH = 18, top = 6, legendH = 22;
    const barW = W - labelW - valueW;
    const max = Math.max(1, ...rows.map((p) => p.work.flops));
    const H = top + rows.length * rowH + legendH;
    const s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Verified FLOPs per provider" });
    s.append(svg("line", { class: "axis", x1: labelW, y1: top - 4, x2: labelW, y2: top + rows.length * rowH }));
    rows.forEach((p, i) => {
      const y = top + i * rowH;
      const w = p.work.flops > 0 ? Math.max(2, (barW * p.work.flops) / max) : 0;
      const name = nameOf(p);
      s.append(svg("text", { class: "label", x: labelW - 10, y: y + barH / 2 + 5, "text-anchor": "end" },
        name.length > 28 ? name.slice(0, 27) + "…" : name));
      const bar = svg("rect", { class: "bar " + (p.online ? "online" : "offline"), "data-key": p.key, x: labelW, y, width: w.toFixed(1), height: barH, rx: 3 });
      bar.append(svg("title", {}, name + ": " + fmtFlops(p.work.flops) + " in " + fmtInt(p.work.receipts) + " receipts"));
      s.append(bar);
      s.append(svg("text", { class: "value", x: labelW + w + 8, y: y + barH / 2 + 4 }, fmtFlops(p.work.flops)));
    });
    const ly = top + rows.length * rowH + 12;
    s.append(svg("rect", { class: "bar online", x: labelW, y: ly - 9, width: 12, height: 12, rx: 2 }));
    s.append(svg("text", { class: "legend", x: labelW + 18, y: ly + 1 }, "online"));
    s.append(svg("rect", { class: "bar offline", x: labelW + 80, y: ly - 9, width: 12, height: 12, rx: 2 }));
    s.append(svg("text", { class: "legend", x: labelW + 98, y: ly + 1 }, "offline"));
    box.append(s);
  }

  function drawJobs(entries, names) {
    const list = jobs(entries).slice(0, JOBS_SHOWN);
    fill("#jobs", list.map((j) => {
      const who = [...j.providers].map((k) => names.get(k) || "provider " + shortKey(k)).sort();
      const span = j.start !== Infinity && j.end !== -Infinity ? fmtTime(new Date(j.start).toISOString()) + " → " + fmtTime(new Date(j.end).toISOString()).slice(11) : j.end !== -Infinity ? fmtTime(new Date(j.end).toISOString()) : "—";
      return el("tr", { "data-job": j.id },
        el("td", { class: "mono" }, j.id),
        el("td", {}, who.join(", ")),
        el("td", { class: "num" }, fmtInt(j.receipts)),
        el("td", { class: "num" }, fmtFlops(j.flops)),
        el("td", { class: "num" }, fmtBytes(j.bytesIn) + " / " + fmtBytes(j.bytesOut)),
        el("td", {}, span, j.start !== Infinity && j.end !== -Infinity ? el("span", { class: "sub" }, fmtDuration(j.end - j.start)) : null),
        el("td", { class: "num" }, j.faults ? el("span", { class: "badge fault" }, fmtInt(j.faults)) : "0"));
    }), 7, "No jobs in the ledger yet.");
  }

  function drawFaults(entries, names) {
    const list = entries.filter((e) => e.kind === "fault").sort((a, b) => b.seq - a.seq).slice(0, FAULTS_SHOWN);
    fill("#faults", list.map((e) => {
      const ev = e.evidence || "";
      return el("tr", { "data-seq": e.seq },
        el("td", { class: "num" }, fmtInt(e.seq)),
        el("td", {}, fmtTime(e.time)),
        el("td", {}, names.get(e.provider) || "provider " + shortKey(e.provider)),
        el("td", {}, e.fault_kind || "—"),
        el("td", { class: "mono" }, e.job || "—"),
        el("td", { class: "mono", title: e.requester || "" }, shortKey(e.requester)),
        el("td", { class: "evidence", title: ev }, ev.length > 240 ? ev.slice(0, 239) + "…" : ev || "—"));
    }), 7, "No faults recorded.");
  }

  async function main() {
    const status = document.getElementById("status");
    try {
      const [reg, ledger] = await Promise.all([getJSON("v1/providers"), loadLedger()]);
      const led = ledger.error ? { totals: {}, entries: [] } : ledger;
      const list = providers(reg, led);
      await Promise.all(list.slice(0, STANDING_MAX).map(async (p) => { p.standing = await loadStanding(p.key); }));
      const names = new Map(list.map((p) => [p.key, nameOf(p)]));
      drawHead(ledger, list);
      drawProviders(list);
      drawChart(list);
      drawJobs(led.entries, names);
      drawFaults(led.entries, names);
      const online = list.filter((p) => p.online).length;
      status.textContent = plural(list.length, "provider", "providers") + " (" + online + " online, heartbeat TTL " +
        fmtDuration(reg.ttl_ms) + ") · " + plural(led.head ? led.head.seq : 0, "ledger entry", "ledger entries") +
        " · read " + fmtTime(new Date().toISOString());
      document.body.dataset.state = "ready";
    } catch (e) {
      status.textContent = "Could not read the seed node: " + e.message;
      status.className = "error";
      document.body.dataset.state = "error";
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
