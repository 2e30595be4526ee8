// The factory board's script: draws the metrics charts, and on a served page keeps the
// page current. The server sends a "change" event (server-sent events) whenever the ledger
// or a cell may have changed; the page then fetches its fragment again (server-rendered,
// escaped HTML) and swaps it in: no reload, scroll position kept. Read-only: it only GETs.
(function () {
  "use strict";
  var charts = [];
  var COLORS = ["#2563eb", "#b7791f", "#2f855a", "#6b46c1", "#c62828", "#0f766e"];

  function hours(s) { return s === null || s === undefined ? null : Math.round(s / 36) / 100; }
  function pct(r) { return r === null || r === undefined ? null : Math.round(r * 1000) / 10; }

  function chart(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas || !window.Chart) { return; }
    config.options = Object.assign({
      animation: false, responsive: true, maintainAspectRatio: false,
      plugins: { legend: { position: "bottom" } }
    }, config.options || {});
    charts.push(new window.Chart(canvas, config));
  }

  function drawCharts() {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var node = document.getElementById("metrics-data");
    if (!node) { return; }
    var m = JSON.parse(node.textContent);
    var weeks = m.throughput.per_week;
    chart("chart-throughput", { type: "bar", data: {
      labels: weeks.map(function (w) { return w.week; }),
      datasets: [
        { label: "published", data: weeks.map(function (w) { return w.published; }), backgroundColor: COLORS[0] },
        { label: "measured", data: weeks.map(function (w) { return w.measured; }), backgroundColor: COLORS[2] }
      ] }, options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
    var names = Object.keys(m.lead_time_s.stages);
    var dists = names.map(function (n) { return m.lead_time_s.stages[n]; });
    names.push("to published", "end to end");
    dists.push(m.lead_time_s.to_published, m.lead_time_s.end_to_end);
    chart("chart-lead", { type: "bar", data: { labels: names, datasets: [
      { label: "median", data: dists.map(function (d) { return hours(d.median); }), backgroundColor: COLORS[0] },
      { label: "p90", data: dists.map(function (d) { return hours(d.p90); }), backgroundColor: COLORS[1] }
    ] }, options: { scales: { y: { beginAtZero: true, title: { display: true, text: "hours" } } } } });
    var rates = [["first-pass yield", m.first_pass_yield.rate], ["rework", m.rework.rate],
      ["contract violations", m.contract_violations.rate], ["adoption", m.adoption.rate],
      ["self-play share", m.self_play.rate]];
    chart("chart-rates", { type: "bar", data: {
      labels: rates.map(function (r) { return r[0]; }),
      datasets: [{ label: "%", data: rates.map(function (r) { return pct(r[1]); }),
        backgroundColor: rates.map(function (_, i) { return COLORS[i % COLORS.length]; }) }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } },
        scales: { x: { min: 0, max: 100, title: { display: true, text: "%" } } } } });
    var lines = Object.keys(m.cost.per_line);
    chart("chart-cost", { type: "bar", data: { labels: lines, datasets: [
      { label: "USD", data: lines.map(function (l) { return m.cost.per_line[l].usd; }), backgroundColor: COLORS[3] }
    ] }, options: { plugins: { legend: { display: false },
      subtitle: { display: true, text: "per published artifact: " +
        (m.cost.per_published_usd === null ? "-" : "$" + m.cost.per_published_usd.toFixed(4)) } },
      scales: { y: { beginAtZero: true } } } });
  }

  function live() {
    var body = document.body;
    var url = body.getAttribute("data-fragment");
    var state = document.getElementById("live-state");
    if (body.getAttribute("data-live") !== "on" || !url || !window.EventSource) { return; }
    var busy = false, again = false;

    function version() {
      var node = document.querySelector("#live [data-version]");
      return node ? node.getAttribute("data-version") : null;
    }
    function say(text, cls) {
      if (state) { state.textContent = text; state.className = "live-state " + cls; }
    }
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      var query = url.indexOf("?") >= 0 ? "" : window.location.search;
      fetch(url + query, { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
        .then(function (html) {
          var main = document.getElementById("live");
          var x = window.scrollX, y = window.scrollY;
          main.innerHTML = html;  // server-rendered and escaped by jinja2
          drawCharts();
          window.scrollTo(x, y);
          say("live", "on");
        })
        .catch(function () { say("update failed, retrying", "off"); })
        .then(function () { busy = false; if (again) { again = false; refresh(); } });
    }
    var source = new EventSource("/events");
    source.addEventListener("change", function (ev) {
      if (ev.data !== version()) { refresh(); }
    });
    source.onopen = function () { say("live", "on"); };
    source.onerror = function () { say("reconnecting…", "off"); };
  }

  drawCharts();
  live();
})();
