// Draws the dashboard's charts with the vendored uPlot; data comes from a JSON block.
(function () {
  "use strict";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

  function draw() {
    const block = document.getElementById("chart-data");
    if (!block || typeof uPlot === "undefined") return;
    const data = JSON.parse(block.textContent);
    for (const chart of data.charts) {
      const el = document.querySelector('[data-chart="' + chart.id + '"]');
      if (!el) continue;
      const scale = chart.unit === "%" ? 100 : 1;
      const series = [{}].concat(chart.series.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
      })));
      const values = [data.times].concat(chart.series.map(
        (s) => s.values.map((v) => (v === null ? null : v * scale))));
      if (chart.series.length === 0) {
        el.textContent = "No requests in this window.";
        el.classList.add("muted");
        continue;
      }
      const opts = {
        width: Math.max(el.clientWidth, 280), height: 180, series: series,
        axes: [{}, { size: 60 }], legend: { show: true }, cursor: { drag: { x: false, y: false } },
      };
      el.textContent = "";
      new uPlot(opts, values, el);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    for (const select of document.querySelectorAll("select[data-autosubmit]")) {
      select.addEventListener("change", () => select.form.submit());
    }
    draw();
  });
})();
