// lab serve: keeps the live campaign table current from the server-sent event stream (EventSource).
// Served by lab itself (script-src 'self'); it only sets textContent and SVG attributes, never HTML.
"use strict";
(function () {
  const table = document.getElementById("live");
  if (!table || !window.EventSource) {
    return;
  }
  const POINTS = 120; // as lab/db/live.py CHART_POINTS
  const SPAN = 0.6; // the y axis shows at least 40 % of the top, as lab/report/svg.py FPS_SPAN
  const rows = new Map();
  for (const tr of table.querySelectorAll("tbody tr[data-run]")) {
    const svg = tr.querySelector("svg.spark");
    let series = [];
    try {
      series = JSON.parse(svg.getAttribute("data-series") || "[]");
    } catch (e) {
      series = [];
    }
    rows.set(tr.dataset.run, { tr: tr, svg: svg, series: series });
  }
  const connection = document.getElementById("connection");
  const status = document.getElementById("status");

  function cell(row, name, text) {
    const td = row.tr.querySelector("." + name);
    if (td && td.textContent !== text) {
      td.textContent = text;
    }
  }

  function fixed(value) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(1);
  }

  function draw(row) {
    const width = Number(row.svg.getAttribute("width"));
    const height = Number(row.svg.getAttribute("height"));
    const values = row.series.slice(-POINTS);
    const ys = values.filter(function (v) { return v !== null; });
    const top = ys.length ? Math.max.apply(null, ys) : 1;
    const low = Math.min(ys.length ? Math.min.apply(null, ys) : 0, SPAN * top); // as lab/serve/pages.py polyline
    const span = top - low || 1;
    const step = width / Math.max(1, values.length - 1);
    const points = [];
    values.forEach(function (v, i) {
      if (v !== null) {
        points.push((i * step).toFixed(1) + "," + (1 + (top - v) / span * (height - 2)).toFixed(1));
      }
    });
    row.svg.querySelector("polyline").setAttribute("points", points.join(" "));
  }

  function record(r) {
    const row = rows.get(String(r.run));
    if (!row) {
      return;
    }
    cell(row, "step", r.step || "–");
    if (r.step === "benchmark") {
      if (r.k) {
        cell(row, "run", r.n ? r.k + "/" + r.n : String(r.k));
      }
      if (r.fps !== null) {
        cell(row, "fps", fixed(r.fps));
      }
      if (r.temp !== null) {
        cell(row, "temp", fixed(r.temp));
      }
      row.series.push(r.fps);
      if (row.series.length > POINTS) {
        row.series.splice(0, row.series.length - POINTS);
      }
      draw(row);
    }
  }

  const source = new EventSource(table.dataset.events);
  source.addEventListener("open", function () {
    connection.textContent = "live";
  });
  source.addEventListener("error", function () {
    connection.textContent = "reconnecting…";
  });
  source.addEventListener("records", function (event) {
    JSON.parse(event.data).forEach(record);
  });
  source.addEventListener("state", function (event) {
    const state = JSON.parse(event.data);
    status.textContent = state.status;
    state.runs.forEach(function (r) {
      const row = rows.get(String(r.run));
      if (row) {
        cell(row, "phase", r.phase ? r.phase + " (" + r.phase_status + ")" : "–");
      }
    });
  });
  source.addEventListener("end", function () {
    // the campaign is over: its page is now the full report
    source.close();
    window.location.reload();
  });
})();
