// Conveyor dashboard: live refresh, the throughput chart and small form helpers.
// Loaded as a file (the Content-Security-Policy forbids inline script). Server HTML is swapped
// in with DOMParser + importNode: it is already escaped, and parsed scripts never run.
"use strict";
(function () {
  const LIVE_KEY = "conveyor.live";
  const main = () => document.getElementById("live");

  function liveOn() {
    return window.localStorage.getItem(LIVE_KEY) !== "off";
  }

  function showToggle() {
    const button = document.getElementById("live-toggle");
    if (button) {
      button.setAttribute("aria-pressed", liveOn() ? "true" : "false");
      button.textContent = liveOn() ? "Live" : "Paused";
    }
  }

  function userIsBusy(region) {
    if (document.hidden) return true;
    if (region.querySelector("input[type=checkbox]:checked")) return true;
    const active = document.activeElement;
    return !!active && region.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  async function refresh() {
    const region = main();
    if (!region || !region.dataset.refreshMs || !liveOn() || userIsBusy(region)) return;
    let response;
    try {
      response = await fetch(window.location.href, {
        credentials: "same-origin", redirect: "manual", headers: { Accept: "text/html" },
      });
    } catch (err) {
      return;
    }
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("live");
    if (!fresh || userIsBusy(region)) return;
    region.replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
    drawChart();
  }

  function drawSeries(ctx, points, key, color, box, top) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = box.left + (box.width * i) / Math.max(1, points.length - 1);
      const y = box.top + box.height - (box.height * p[key]) / top;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  async function drawChart() {
    const canvas = document.getElementById("throughput");
    if (!canvas) return;
    let data;
    try {
      const response = await fetch(canvas.dataset.src, { credentials: "same-origin" });
      if (!response.ok) return;
      data = await response.json();
    } catch (err) {
      return;
    }
    const points = data.points || [];
    const ctx = canvas.getContext("2d");
    const box = { left: 48, top: 10, width: canvas.width - 58, height: canvas.height - 30 };
    const peak = Math.max(1, ...points.map((p) => Math.max(p.processed_per_s, p.failed_per_s)));
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#666";
    ctx.font = "12px sans-serif";
    ctx.strokeStyle = "#ddd";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = box.top + (box.height * i) / 4;
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.left + box.width, y);
      ctx.stroke();
      ctx.fillText((peak * (1 - i / 4)).toFixed(1), 4, y + 4);
    }
    ctx.fillText(points.length ? `last ${points.length} samples, ${data.interval_s}s apart` : "waiting for samples", box.left, canvas.height - 6);
    drawSeries(ctx, points, "processed_per_s", "#2b7a4b", box, peak);
    drawSeries(ctx, points, "failed_per_s", "#c0392b", box, peak);
  }

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-confirm], [data-needs-selection], #live-toggle");
    if (!target) return;
    if (target.id === "live-toggle") {
      window.localStorage.setItem(LIVE_KEY, liveOn() ? "off" : "on");
      showToggle();
      return;
    }
    if (target.hasAttribute("data-needs-selection") && target.form &&
        !target.form.querySelector("input[name=job_id]:checked")) {
      event.preventDefault();
      return;
    }
    if (target.dataset.confirm && !window.confirm(target.dataset.confirm)) event.preventDefault();
  });

  document.addEventListener("change", (event) => {
    if (!event.target.matches("[data-select-all]")) return;
    const form = event.target.form;
    form.querySelectorAll("input[name=job_id]").forEach((box) => {
      box.checked = event.target.checked;
    });
  });

  const url = new URL(window.location.href);
  if (url.searchParams.has("done")) {
    url.searchParams.delete("done");
    url.searchParams.delete("n");
    window.history.replaceState(null, "", url.pathname + url.search);
  }
  showToggle();
  drawChart();
  const region = main();
  if (region && region.dataset.refreshMs) {
    window.setInterval(refresh, Number(region.dataset.refreshMs));
  }
})();
