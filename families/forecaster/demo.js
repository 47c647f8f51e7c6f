// The forecaster's demo panel: a test window of the champion's task, its forecast and the
// conformal intervals, drawn as SVG. Calls POST /forecaster/example and POST /forecaster/predict.
"use strict";
(() => {
  const { el, postJSON, showError, clearError, busy } = window.quartet;
  const W = 860, H = 320, M = { l: 64, r: 16, t: 14, b: 30 };

  const fmt = v => Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toPrecision(3);

  function pathD(points) {
    return points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  }

  /** The chart: history (the window's target column), the actual continuation, the forecast, bands. */
  function chart(example, forecast, intervals) {
    const history = example.series.map(row => Array.isArray(row) ? row[0] : row);
    const h = forecast ? forecast.length : 0;
    const actual = example.actual || [];
    const steps = Math.max(actual.length, h);
    const bands = (intervals || []).slice().sort((a, b) => b.level - a.level);   // widest first
    const all = [...history, ...actual, ...(forecast || []), ...bands.flatMap(b => [...b.lower[0], ...b.upper[0]])]
      .filter(Number.isFinite);
    let lo = Math.min(...all), hi = Math.max(...all);
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.06; lo -= pad; hi += pad;
    const n = history.length;
    const x = i => M.l + (i + n - 1) / Math.max(1, n - 1 + steps) * (W - M.l - M.r);   // i: steps after the window's last
    const y = v => M.t + (hi - v) / (hi - lo) * (H - M.t - M.b);
    const svg = el("svg", { testid: "fc-chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
                            "aria-label": "forecast chart" });
    const digits = Math.max(0, Math.min(6, 1 - Math.floor(Math.log10((hi - lo) / 4))));
    for (let k = 0; k <= 4; k++) {   // y grid
      const v = lo + (hi - lo) * k / 4;
      svg.append(el("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), stroke: "#eceef2" }),
                 el("text", { x: M.l - 6, y: y(v) + 4, "text-anchor": "end" }, (Math.abs(v) < 1e-12 ? 0 : v).toFixed(digits)));
    }
    svg.append(el("line", { x1: x(0), x2: x(0), y1: M.t, y2: H - M.b, stroke: "#c5cad3", "stroke-dasharray": "3 3" }),
               el("text", { x: x(0), y: H - 10, "text-anchor": "middle" }, "now"),
               el("text", { x: x(-(n - 1)), y: H - 10 }, `t-${n - 1}`),
               el("text", { x: x(steps), y: H - 10, "text-anchor": "end" }, `t+${steps}`));
    const colors = { 0.95: "#c7d7fe", 0.8: "#98b2f8" };
    bands.forEach((b, k) => {
      const lower = b.lower[0], upper = b.upper[0];
      const pts = [...upper.map((v, i) => [x(i + 1), y(v)]), ...lower.map((v, i) => [x(i + 1), y(v)]).reverse()];
      const cls = `band-${Math.round(b.level * 100)}`;
      svg.append(el("path", { class: cls, d: `${pathD(pts)} Z`, fill: colors[b.level] || (k ? "#98b2f8" : "#c7d7fe"),
                              "fill-opacity": 0.7, stroke: "none", dataset: { level: b.level, points: lower.length } },
                    el("title", {}, `${Math.round(b.level * 100)}% prediction interval`)));
    });
    svg.append(el("path", { class: "history", d: pathD(history.map((v, i) => [x(i - n + 1), y(v)])), fill: "none",
                            stroke: "#1d2330", "stroke-width": 1.6, dataset: { points: history.length } }));
    if (actual.length) {
      svg.append(el("path", { class: "actual", d: pathD([[x(0), y(history[n - 1])], ...actual.map((v, i) => [x(i + 1), y(v)])]),
                              fill: "none", stroke: "#067647", "stroke-width": 1.6, "stroke-dasharray": "5 3",
                              dataset: { points: actual.length } }));
    }
    if (forecast) {
      svg.append(el("path", { class: "forecast", d: pathD(forecast.map((v, i) => [x(i + 1), y(v)])), fill: "none",
                              stroke: "#d92d20", "stroke-width": 2, dataset: { points: forecast.length } }));
      forecast.forEach((v, i) => svg.append(el("circle", { class: "forecast-point", cx: x(i + 1), cy: y(v), r: 2.5, fill: "#d92d20" })));
    }
    const legend = [["history", "#1d2330"], ["actual", "#067647"], ...(forecast ? [["forecast", "#d92d20"]] : []),
                    ...bands.map(b => [`${Math.round(b.level * 100)}% interval`, colors[b.level] || "#98b2f8"])];
    legend.forEach(([name, c], i) => {
      const lx = M.l + 10 + i * 110;
      svg.append(el("rect", { x: lx, y: M.t + 2, width: 14, height: 4, fill: c }),
                 el("text", { x: lx + 18, y: M.t + 8 }, name));
    });
    return svg;
  }

  function render(root, ctx) {
    const task = el("select", { testid: "fc-task" }, ctx.tasks.map(t => el("option", { value: t }, t)));
    const index = el("input", { type: "number", testid: "fc-example", min: 0, value: "0", step: 1 });
    const count = el("span", { class: "muted" }, "");
    const horizon = el("input", { type: "range", testid: "fc-horizon", min: 1, max: 1, value: "1" });
    const hLabel = el("span", { class: "mono" }, "1");
    const run = el("button", { class: "primary", testid: "fc-run" }, "Forecast");
    const summary = el("p", { testid: "fc-summary", class: "muted" }, "");
    const plot = el("div", {});
    root.replaceChildren(
      el("h2", {}, "Forecaster"),
      el("p", { class: "hint" }, "A window of the task's test split, the champion's forecast of what follows, and its conformal 80% / 95% intervals."),
      el("div", { class: "row" },
        el("label", {}, "task", task),
        el("label", {}, el("span", {}, "test window ", count), index),
        el("label", {}, el("span", {}, "horizon ", hLabel), horizon),
        run),
      plot, summary);

    let example = null;   // the loaded example (its task and index)

    async function loadExample() {
      const res = await postJSON("/forecaster/example", { task: task.value, index: Number(index.value) || 0 });
      if (res.status !== 200) { showError(root, res); return false; }
      example = res.body;
      index.max = String(Math.max(0, example.count - 1));
      count.textContent = `(0..${example.count - 1})`;
      const keep = example.task === horizon.dataset.task ? Math.min(Number(horizon.value), example.horizon) : example.horizon;
      horizon.max = String(example.horizon);
      horizon.value = String(keep);
      horizon.dataset.task = example.task;
      hLabel.textContent = horizon.value;
      return true;
    }

    function draw(forecast, intervals) {
      plot.replaceChildren(chart(example, forecast, intervals));
      const names = example.feature_names || [];
      const parts = [`${example.task} v${example.model_version ?? "?"}`, `test window ${example.index} of ${example.count}${example.origin ? ` (origin ${example.origin})` : ""}`,
                     `${example.series.length} steps of ${names.join(", ") || "the target"}`];
      if (forecast) {
        const n = Math.min(forecast.length, example.actual.length);
        const mae = forecast.slice(0, n).reduce((s, v, i) => s + Math.abs(v - example.actual[i]), 0) / Math.max(1, n);
        parts.push(`horizon ${forecast.length}`, `MAE vs actual ${fmt(mae)}`);
        if (intervals) {
          for (const b of intervals) {
            const inside = example.actual.slice(0, n).filter((v, i) => v >= b.lower[0][i] && v <= b.upper[0][i]).length;
            parts.push(`${Math.round(b.level * 100)}% interval covers ${inside}/${n}`);
          }
        }
      } else {
        parts.push(`press Forecast`);
      }
      summary.textContent = parts.join(" · ");
    }

    async function forecast() {
      const h = Number(horizon.value);
      const univariate = example.series.every(row => !Array.isArray(row) || row.length === 1);
      const window = univariate ? example.series.map(row => Array.isArray(row) ? row[0] : row) : example.series;
      const body = { task: example.task, series: [window], horizon: h };
      // the known-ahead features of every trained day, whatever the horizon asked (the model reads them all)
      if (example.future) body.future = [example.future];
      if (example.interval_levels && example.interval_levels.length) body.intervals = example.interval_levels;
      const res = await postJSON("/forecaster/predict", body);
      if (res.status !== 200) { showError(root, res); return; }
      const intervals = res.body.intervals ? res.body.intervals.map(b => ({ level: b.level, lower: b.lower, upper: b.upper })) : null;
      draw(res.body.forecast[0], intervals);
    }

    horizon.addEventListener("input", () => { hLabel.textContent = horizon.value; });
    run.addEventListener("click", () => busy(run, root, async () => {
      clearError(root);
      const stale = !example || example.task !== task.value || example.index !== (Number(index.value) || 0);
      if (stale && !(await loadExample())) return;
      await forecast();
    }));

    // The only request a panel makes unasked: the first test window, so the chart is not empty.
    busy(run, root, async () => { if (await loadExample()) draw(null, null); });
  }

  window.quartet.register("forecaster", { title: "Forecaster", render });
})();
