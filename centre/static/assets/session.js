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

  // Live views this page opened: reported as stopped when the person stops, leaves or logs out.
  const watching = new Map();
  function stop(key, keepalive) {
    const [sid, win] = key.split("\n");
    watching.delete(key);
    renderWatching();
    return fetch(`/api/station/${encodeURIComponent(sid)}/live-view/stop?window=${encodeURIComponent(win)}`,
      {method: "POST", keepalive});
  }
  const stopAll = (keepalive = false) => Promise.all([...watching.keys()].map((k) => stop(k, keepalive)));
  function renderWatching() {
    let bar = document.getElementById("watching");
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "watching";
      bar.className = "card no-print";
      document.body.append(bar);
    }
    bar.style.display = watching.size ? "block" : "none";
    bar.innerHTML = [...watching.keys()].map((k) => {
      const [sid, win] = k.split("\n");
      return `实时画面 ${esc(sid)} 窗口 ${esc(win)} <button type="button" class="stop-live" data-key="${esc(k)}">停止观看</button>`;
    }).join("<br>");
  }
  document.addEventListener("click", (e) => {
    const live = e.target.closest("button.live");
    if (live) {
      const sid = live.dataset.station || decodeURIComponent(location.hash.slice(1));
      if (sid) { watching.set(`${sid}\n${live.dataset.window || ""}`, Date.now()); renderWatching(); }
    }
    const end = e.target.closest("button.stop-live");
    if (end) stop(end.dataset.key, false);
  }, true);
  window.addEventListener("pagehide", () => stopAll(true));

  const ready = (fn) => document.readyState === "loading" ? document.addEventListener("DOMContentLoaded", fn) : fn();
  me.then((who) => ready(() => { nav(who); alerts(); }));
})();
