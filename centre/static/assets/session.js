// The console's session on every page: who is logged in (body data-role / data-may), the
// navigation bar, the CSRF token added to every unsafe fetch (so no page script has to know
// about it), open alerts, and the end of a live view reported for the audit trail.
"use strict";
(() => {
  const plainFetch = window.fetch.bind(window);
  const me = plainFetch("/api/me", {credentials: "same-origin", cache: "no-store"}).then(async (res) => {
    if (res.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
    return res.json();
  });
  window.yimenMe = me;
  window.fetch = async (input, init = {}) => {
    const method = (init.method || "GET").toUpperCase();
    if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
      const who = await me;
      init = {...init, headers: {...(init.headers || {}), "X-CSRF-Token": who.csrf}};
    }
    follow(input, method);
    const res = await plainFetch(input, {credentials: "same-origin", ...init});
    if (res.status === 401) location.href = "/login";
    return res;
  };
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const ROLE = {admin: "管理员", county: "县级", township: "乡镇", viewer: "只读"};

  function nav(who) {
    document.body.dataset.role = who.role;
    document.body.dataset.may = who.may.join(" ");
    const bar = document.createElement("nav");
    bar.id = "yimen-nav";
    bar.innerHTML = `<a href="/">监控</a><a href="/reports">报表</a>` +
      `<a href="/audit" class="admin-only">审计</a><a href="/users" class="admin-only">账户</a>` +
      `<span class="who" id="who" data-user="${esc(who.name)}">${esc(who.name)} · ${ROLE[who.role] || esc(who.role)}` +
      `${who.townships.length ? " · " + who.townships.map(esc).join(", ") : ""}</span>` +
      `<button type="button" id="logout">退出</button>`;
    const list = document.createElement("ul");
    list.id = "yimen-alerts";
    document.body.prepend(bar, list);
    document.getElementById("logout").addEventListener("click", async () => {
      await stopAll();
      await fetch("/api/logout", {method: "POST"});
      location.href = "/login";
    });
  }

  async function alerts() {
    try {
      const res = await plainFetch("/api/alerts", {credentials: "same-origin", cache: "no-store"});
      if (res.ok) {
        const who = await me;
        const doc = await res.json();
        document.getElementById("yimen-alerts").innerHTML = doc.alerts.map((a) =>
          `<li class="${a.acked ? "acked" : ""}" data-alert="${esc(a.id)}" data-rule="${esc(a.rule)}">` +
          `<b>${esc(a.title)}</b> <span>${esc(a.station)}</span> <span class="muted">${esc(a.text)}</span>` +
          (a.acked ? `<span class="muted">已确认: ${esc(a.acked.by)} ${new Date(a.acked.at * 1000).toLocaleTimeString("zh-CN", {hour12: false})}</span>`
            : who.may.includes("video") ? `<button type="button" class="ack" data-alert="${esc(a.id)}">确认</button>` : "") +
          `</li>`).join("");
      }
    } catch (e) { /* the next poll tries again */ }
    setTimeout(alerts, 3000);
  }
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button.ack");
    if (!b) return;
    b.disabled = true;
    await fetch(`/api/alerts/${encodeURIComponent(b.dataset.alert)}/ack`, {method: "POST"});
    alerts();
  });

  // Live views this page has open (seen in its own fetches): stopped when the person leaves or
  // logs out without pressing stop, so that the audit trail gets the seconds watched.
  const watching = new Set();
  const LIVE = /^(\/api\/station\/[^/]+\/live\/\d+)\/(start|stop)$/;
  function follow(input, method) {
    const m = method === "POST" && typeof input === "string" && input.match(LIVE);
    if (m) m[2] === "start" ? watching.add(m[1]) : watching.delete(m[1]);
  }
  const stopAll = (keepalive = false) => Promise.all([...watching].map((base) => {
    watching.delete(base);
    return fetch(`${base}/stop`, {method: "POST", keepalive});
  }));
  window.addEventListener("pagehide", () => stopAll(true));

  const ready = (fn) => document.readyState === "loading" ? document.addEventListener("DOMContentLoaded", fn) : fn();
  me.then((who) => ready(() => { nav(who); alerts(); }));
})();
