/* mlflow-green comparison view: plain JavaScript, no dependency, no build step.
 *
 * Every value that comes from the server (run names, experiment names, metric keys, tags...)
 * is inserted with textContent, setAttribute or createTextNode, never parsed as HTML.
 * URLs are relative to /<static-prefix>/green/, so the page works under any --static-prefix.
 */
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAX_ROWS = 1000;
  const PLOT = { width: 760, height: 340, left: 70, right: 24, top: 18, bottom: 52 };

  const state = {
    tab: "runs",
    experiments: [],
    experimentNames: new Map(),
    selected: new Set(),
    runData: null,
    runSort: { key: "rank", dir: "ascending" },
    runToken: 0,
    models: null,
    model: "",
    modelData: null,
    modelSort: { key: "rank", dir: "ascending" },
    modelToken: 0,
    metricKeys: [],
    metricsToken: 0,
  };

  // --- DOM helpers ---------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  /* Control, format (bidi overrides and isolates, zero-width) and line/paragraph separator
   * characters in names could reorder or hide what the page shows: every text shown is passed
   * through visible(), which writes each as an escape (\u202e, \n), as mlflow_green.text.visible
   * does for the CLI. Values sent back to the server (option values, hrefs) stay untouched. */
  const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;
  const SHORT_ESCAPES = { "\n": "\\n", "\t": "\\t", "\r": "\\r" };
  const SHOWN_ATTRS = new Set(["title", "aria-label", "label", "placeholder", "alt"]);

  function visible(text) {
    return String(text).replace(HIDDEN, (c) => {
      if (SHORT_ESCAPES[c]) return SHORT_ESCAPES[c];
      const code = c.codePointAt(0);
      return code > 0xffff ? "\\U" + code.toString(16).padStart(8, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
  }

  /** An element; attrs.text sets textContent, other attrs go through setAttribute. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(typeof child === "string" ? visible(child) : child); // strings become text nodes
    }
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = Array.isArray(text) ? text.map(visible).join("\n") : visible(text); // an array: lines
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = visible(value);
      else node.setAttribute(key, value === true ? "" : SHOWN_ATTRS.has(key) ? visible(value) : String(value));
    }
  }

  function clear(node, keep) {
    for (const child of Array.from(node.childNodes)) {
      if (!keep || !keep(child)) node.removeChild(child);
    }
  }

  function setStatus(id, message, isError) {
    const node = $(id);
    node.textContent = visible(message);
    node.classList.toggle("error", Boolean(isError));
  }

  // --- API -----------------------------------------------------------------------------------

  async function api(path, params) {
    const query = params && String(params) ? "?" + params.toString() : "";
    const response = await fetch("api/" + path + query, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      throw new Error(body && body.error ? body.error : "HTTP " + response.status + " from api/" + path);
    }
    return body;
  }

  // --- formatting ----------------------------------------------------------------------------

  function isNum(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  // One voice: static/format.js (window.GreenFormat) writes figures as mlflow_green.formatting does.
  const F = window.GreenFormat;

  function fmtNumber(x, digits) {
    return F.number(x, digits || 4);
  }

  const fmtEnergy = F.energyKwh;
  const fmtMass = F.emissionsKg;
  const fmtPerKwh = F.ratio;

  // --- links into the MLflow UI (relative: ../ is the MLflow UI under the same prefix) ---------

  function runHref(row) {
    return "../#/experiments/" + encodeURIComponent(row.experiment_id) + "/runs/" + encodeURIComponent(row.run_id);
  }

  function versionHref(row) {
    return "../#/models/" + encodeURIComponent(row.model_name) + "/versions/" + encodeURIComponent(row.model_version);
  }

  function runLink(row) {
    if (!row.run_id) return el("span", { class: "muted", text: row.run_name });
    return el("a", { href: runHref(row), class: "run-link", title: "Open run " + row.run_id + " in MLflow", text: row.run_name });
  }

  function versionLink(row, short) {
    if (!row.model_name || !row.model_version) return "—";
    const text = (short ? "" : row.model_name + " ") + "v" + row.model_version;
    return el("a", { href: versionHref(row), class: "version-link", title: row.model_name + " version " + row.model_version, text });
  }

  // --- columns -------------------------------------------------------------------------------

  function qualityCell(row) {
    if (!isNum(row.quality)) return "—";
    return el("span", { title: row.quality_metric ? row.quality_metric + " = " + row.quality : String(row.quality) },
      fmtNumber(row.quality, 4));
  }

  function energyCell(row) {
    const span = el("span", { title: isNum(row.energy_kwh) ? row.energy_kwh + " kWh" : null }, fmtEnergy(row.energy_kwh));
    if (row.estimated) span.append(" ", el("abbr", { class: "badge estimated", title: "estimated energy (green.estimated=true)", text: "est." }));
    return span;
  }

  function perPredictionCell(row) {
    const j = row.energy_per_prediction_j;
    const title = isNum(j) ? j + " J per prediction" + (row.inference_batch_size ? " at batch size " + row.inference_batch_size : "") : null;
    const span = el("span", { title }, F.energyJ(j));
    if (row.estimated && isNum(j)) span.append(" ", el("abbr", { class: "badge estimated", title: "estimated inference energy (green.inference_estimated=true)", text: "est." }));
    return span;
  }

  function msCell(x) {
    return isNum(x) ? F.significant(x, 3) + " ms" : "—";
  }

  function paretoCell(row) {
    return row.pareto ? el("span", { class: "badge pareto", title: "on the Pareto frontier", text: "frontier" }) : "";
  }

  function aliasesCell(row) {
    const aliases = row.model_aliases || [];
    if (!aliases.length) return "—";
    const span = el("span");
    for (const alias of aliases) span.append(el("span", { class: "badge alias", text: "@" + alias }), " ");
    return span;
  }

  function gateCell(row) {
    if (!row.gate) return "—";
    const kind = row.gate === "passed" ? "passed" : row.gate === "failed" ? "failed" : "other";
    return el("span", { class: "badge gate-" + kind, text: row.gate });
  }

  /** Columns of one ranking mode (data.by): training (quality per kWh) or inference (per J/prediction). */
  const TRAINING_COLUMNS = [
    { key: "energy_kwh", mode: "training", label: "Energy", numeric: true, value: (r) => r.energy_kwh, cell: energyCell },
    { key: "emissions_kg", mode: "training", label: "Emissions", numeric: true, value: (r) => r.emissions_kg, cell: (r) => fmtMass(r.emissions_kg) },
    { key: "accuracy_per_kwh", mode: "training", label: "Quality per kWh", numeric: true, first: "descending", value: (r) => r.accuracy_per_kwh, cell: (r) => fmtPerKwh(r.accuracy_per_kwh) },
  ];

  const INFERENCE_COLUMNS = [
    { key: "energy_per_prediction_j", mode: "inference", label: "J/prediction", numeric: true, value: (r) => r.energy_per_prediction_j, cell: perPredictionCell },
    { key: "accuracy_per_j", mode: "inference", label: "Quality per J/prediction", numeric: true, first: "descending", value: (r) => r.accuracy_per_j, cell: (r) => fmtPerKwh(r.accuracy_per_j) },
    { key: "latency_ms", mode: "inference", label: "Latency p50", numeric: true, value: (r) => r.latency_ms, cell: (r) => msCell(r.latency_ms) },
    { key: "latency_p95_ms", mode: "inference", label: "p95", numeric: true, value: (r) => r.latency_p95_ms, cell: (r) => msCell(r.latency_p95_ms) },
    { key: "throughput_per_s", mode: "inference", label: "Predictions/s", numeric: true, first: "descending", value: (r) => r.throughput_per_s, cell: (r) => fmtPerKwh(r.throughput_per_s) },
    { key: "inference_batch_size", mode: "inference", label: "Batch", numeric: true, value: (r) => r.inference_batch_size, cell: (r) => (r.inference_batch_size == null ? "—" : String(r.inference_batch_size)) },
  ];

  const RUN_COLUMNS = [
    { key: "rank", label: "Rank", numeric: true, value: (r) => r.rank, cell: (r) => (r.rank == null ? "—" : String(r.rank)) },
    { key: "run_name", label: "Run", value: (r) => r.run_name.toLowerCase(), cell: runLink },
    { key: "experiment", label: "Experiment", show: (rows, data) => data.experiments.length > 1, value: (r) => experimentName(r.experiment_id).toLowerCase(), cell: (r) => experimentName(r.experiment_id) },
    { key: "quality", label: "Quality", numeric: true, first: "descending", value: (r) => r.quality, cell: qualityCell },
    ...TRAINING_COLUMNS,
    ...INFERENCE_COLUMNS,
    { key: "pareto", label: "Pareto", first: "descending", value: (r) => (r.rank == null ? null : r.pareto ? 1 : 0), cell: paretoCell },
    { key: "compression", label: "Compression", value: (r) => r.compression.summary || null, cell: (r) => r.compression.summary || "—" },
    { key: "model", label: "Registered", show: (rows) => rows.some((r) => r.model_name), value: (r) => (r.model_name ? r.model_name.toLowerCase() + " " + String(r.model_version).padStart(8, "0") : null), cell: (r) => versionLink(r, false) },
    { key: "reason", label: "Not ranked because", show: (rows) => rows.some((r) => r.rank == null), value: (r) => r.reason, cell: (r) => r.reason || "" },
  ];

  const MODEL_COLUMNS = [
    { key: "model_version", label: "Version", numeric: true, first: "descending", value: (r) => Number(r.model_version), cell: (r) => versionLink(r, true) },
    { key: "aliases", label: "Aliases", value: (r) => (r.model_aliases.length ? r.model_aliases.join(",") : null), cell: aliasesCell },
    { key: "run_name", label: "Run", value: (r) => r.run_name.toLowerCase(), cell: runLink },
    { key: "quality", label: "Quality", numeric: true, first: "descending", value: (r) => r.quality, cell: qualityCell },
    ...TRAINING_COLUMNS,
    ...INFERENCE_COLUMNS,
    { key: "rank", label: "Rank", numeric: true, value: (r) => r.rank, cell: (r) => (r.rank == null ? "—" : String(r.rank)) },
    { key: "pareto", label: "Pareto", first: "descending", value: (r) => (r.rank == null ? null : r.pareto ? 1 : 0), cell: paretoCell },
    { key: "gate", label: "Gate", value: (r) => r.gate, cell: gateCell },
    { key: "gate_reasons", label: "Gate reasons", value: (r) => r.gate_reasons, cell: (r) => r.gate_reasons || "—" },
    { key: "reason", label: "Not ranked because", show: (rows) => rows.some((r) => r.rank == null), value: (r) => r.reason, cell: (r) => r.reason || "" },
  ];

  function experimentName(id) {
    return state.experimentNames.get(String(id)) || String(id);
  }

  // --- sortable table ------------------------------------------------------------------------

  function sortRows(rows, columns, sort) {
    const column = columns.find((c) => c.key === sort.key) || columns.find((c) => c.key === "rank") || columns[0];
    const dir = sort.dir === "descending" ? -1 : 1;
    return rows
      .map((row, index) => ({ row, index, value: column.value(row) }))
      .sort((a, b) => {
        const missingA = a.value === null || a.value === undefined || (typeof a.value === "number" && !Number.isFinite(a.value));
        const missingB = b.value === null || b.value === undefined || (typeof b.value === "number" && !Number.isFinite(b.value));
        if (missingA || missingB) return missingA === missingB ? a.index - b.index : missingA ? 1 : -1;
        if (a.value < b.value) return -dir;
        if (a.value > b.value) return dir;
        return a.index - b.index;
      })
      .map((item) => item.row);
  }

  /** Render a sortable table of the columns that apply to these rows (``show``). */
  function renderTable(table, allColumns, data, sort, onSort) {
    const rows = data ? data.rows : [];
    const by = data && data.by === "inference" ? "inference" : "training";
    const columns = allColumns.filter((c) => (!c.mode || c.mode === by) && (!c.show || (data && c.show(rows, data))));
    const thead = table.tHead;
    const tbody = table.tBodies[0];
    clear(thead);
    clear(tbody);
    const headRow = el("tr");
    for (const column of columns) {
      const th = el("th", { scope: "col", "data-key": column.key, class: column.numeric ? "num" : null });
      if (column.key === sort.key) th.setAttribute("aria-sort", sort.dir);
      const arrow = column.key === sort.key ? (sort.dir === "ascending" ? " ▲" : " ▼") : "";
      const button = el("button", { type: "button", class: "sort", title: "Sort by " + column.label }, column.label,
        el("span", { class: "arrow", "aria-hidden": "true", text: arrow }));
      button.addEventListener("click", () => {
        const dir = column.key === sort.key
          ? (sort.dir === "ascending" ? "descending" : "ascending")
          : (column.first || "ascending");
        onSort({ key: column.key, dir });
      });
      th.append(button);
      headRow.append(th);
    }
    thead.append(headRow);
    const ordered = sortRows(rows, columns, sort);
    const fragment = document.createDocumentFragment();
    for (const row of ordered.slice(0, MAX_ROWS)) {
      const tr = el("tr", {
        "data-run-id": row.run_id || null,
        "data-version": row.model_version || null,
        class: [row.rank == null ? "unranked" : "ranked", row.pareto ? "on-front" : null].filter(Boolean).join(" "),
      });
      for (const column of columns) {
        const content = column.cell(row);
        tr.append(el("td", { class: column.numeric ? "num" : null, "data-key": column.key }, content));
      }
      fragment.append(tr);
    }
    tbody.append(fragment);
    return ordered.length;
  }

  // --- scatter plot --------------------------------------------------------------------------

  function niceStep(span, count) {
    const raw = span / Math.max(count, 1);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    return (unit >= 5 ? 10 : unit >= 2 ? 5 : unit >= 1 ? 2 : 1) * power;
  }

  function linearTicks(lo, hi, count) {
    const step = niceStep(hi - lo, count);
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function logTicks(lo, hi) {
    const ticks = [];
    const first = Math.floor(Math.log10(lo));
    const last = Math.ceil(Math.log10(hi));
    const mantissas = last - first <= 2 ? [1, 2, 5] : [1];
    for (let e = first; e <= last; e++) {
      for (const m of mantissas) {
        const v = m * Math.pow(10, e);
        if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
      }
    }
    return ticks;
  }

  /** What the x axis shows: training energy, or inference energy per prediction. */
  const AXES = {
    training: { cost: (r) => r.energy_kwh, fmt: (x) => fmtEnergy(x), label: "Energy", per: (r) => fmtPerKwh(r.accuracy_per_kwh) + " per kWh", key: "green/energy_kwh" },
    inference: { cost: (r) => r.energy_per_prediction_j, fmt: (x) => F.energyJ(x), label: "Energy per prediction", per: (r) => fmtPerKwh(r.accuracy_per_j) + " per J/prediction", key: "green/inference_energy_per_prediction_j" },
  };

  /** Quality against energy (or J/prediction), the Pareto frontier as a step line; rows === null: nothing loaded yet. */
  function drawPlot(svg, rows, hrefFor, labelFor, by) {
    clear(svg, (child) => child.nodeName === "title");
    if (rows === null) return;
    const axis = AXES[by === "inference" ? "inference" : "training"];
    const cost = axis.cost;
    const points = rows.filter((r) => isNum(r.quality) && isNum(cost(r)) && cost(r) > 0);
    const { width, height, left, right, top, bottom } = PLOT;
    const innerW = width - left - right;
    const innerH = height - top - bottom;
    if (!points.length) {
      svg.append(svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" },
        "Nothing to plot: no run here has both " + axis.key + " and its quality metric."));
      return;
    }
    const energies = points.map((p) => cost(p));
    const qualities = points.map((p) => p.quality);
    let eLo = Math.min(...energies);
    let eHi = Math.max(...energies);
    const logScale = eHi / eLo > 10;
    let qLo = Math.min(...qualities);
    let qHi = Math.max(...qualities);
    if (qHi === qLo) {
      const pad = Math.abs(qHi) * 0.05 || 0.05;
      qLo -= pad;
      qHi += pad;
    } else {
      const pad = (qHi - qLo) * 0.08;
      qLo -= pad;
      qHi += pad;
    }
    if (logScale) {
      eLo /= 1.25;
      eHi *= 1.25;
    } else if (eHi === eLo) {
      eLo *= 0.9;
      eHi *= 1.1;
    } else {
      const pad = (eHi - eLo) * 0.08;
      eLo = Math.max(eLo - pad, eLo / 2);
      eHi += pad;
    }
    const x = (kwh) => left + (logScale
      ? (Math.log(kwh) - Math.log(eLo)) / (Math.log(eHi) - Math.log(eLo))
      : (kwh - eLo) / (eHi - eLo)) * innerW;
    const y = (q) => top + (1 - (q - qLo) / (qHi - qLo)) * innerH;

    const grid = svgEl("g", { class: "grid" });
    for (const t of linearTicks(qLo, qHi, 5)) {
      grid.append(svgEl("line", { x1: left, x2: left + innerW, y1: y(t), y2: y(t) }));
      grid.append(svgEl("text", { x: left - 8, y: y(t) + 4, "text-anchor": "end", class: "tick" }, fmtNumber(t, 4)));
    }
    const xTicks = logScale ? logTicks(eLo, eHi) : linearTicks(eLo, eHi, 6);
    for (const t of xTicks) {
      grid.append(svgEl("line", { x1: x(t), x2: x(t), y1: top, y2: top + innerH }));
      grid.append(svgEl("text", { x: x(t), y: top + innerH + 18, "text-anchor": "middle", class: "tick" }, axis.fmt(t)));
    }
    svg.append(grid);
    svg.append(svgEl("rect", { x: left, y: top, width: innerW, height: innerH, class: "frame" }));

    const metrics = Array.from(new Set(points.map((p) => p.quality_metric).filter(Boolean)));
    svg.append(svgEl("text", { x: left + innerW / 2, y: height - 10, "text-anchor": "middle", class: "axis-label" },
      axis.label + (logScale ? " (log scale)" : "") + " — lower is better"));
    svg.append(svgEl("text", {
      x: 16, y: top + innerH / 2, "text-anchor": "middle", class: "axis-label",
      transform: "rotate(-90 16 " + (top + innerH / 2) + ")",
    }, (metrics.length === 1 ? metrics[0] : "quality (mixed metrics)") + " — higher is better"));

    const front = points.filter((p) => p.pareto).sort((a, b) => cost(a) - cost(b) || b.quality - a.quality);
    if (front.length) {
      let d = "M" + x(cost(front[0])).toFixed(1) + "," + y(front[0].quality).toFixed(1);
      for (const p of front.slice(1)) d += "H" + x(cost(p)).toFixed(1) + "V" + y(p.quality).toFixed(1);
      svg.append(svgEl("path", { d, class: "frontier" }));
    }
    const dots = svgEl("g", { class: "dots" });
    for (const p of points.slice().sort((a, b) => Number(a.pareto) - Number(b.pareto))) {
      const classes = ["dot", p.pareto ? "pareto" : "", p.estimated ? "estimated" : ""].filter(Boolean).join(" ");
      const circle = svgEl("circle", { cx: x(cost(p)).toFixed(1), cy: y(p.quality).toFixed(1), r: p.pareto ? 6 : 4.5, class: classes });
      circle.append(svgEl("title", {}, [labelFor(p), (p.quality_metric || "quality") + " " + fmtNumber(p.quality, 4)
        + " · " + axis.fmt(cost(p)) + (by === "inference" ? " per prediction" : "") + " · " + axis.per(p)
        + (p.estimated ? " · estimated" : "") + (p.pareto ? " · Pareto frontier" : "")]));
      const href = hrefFor(p);
      if (href) {
        const link = svgEl("a", { href, class: "dot-link" });
        link.append(circle);
        dots.append(link);
      } else {
        dots.append(circle);
      }
    }
    svg.append(dots);
  }

  // --- runs tab ------------------------------------------------------------------------------

  function renderExperiments() {
    const list = $("experiment-list");
    clear(list);
    if (!state.experiments.length) {
      list.append(el("span", { class: "muted", text: "No experiment on this tracking server yet." }));
      return;
    }
    for (const experiment of state.experiments) {
      const box = el("input", { type: "checkbox", value: experiment.id, "data-name": experiment.name });
      box.checked = state.selected.has(experiment.id);
      box.addEventListener("change", () => {
        if (box.checked) state.selected.add(experiment.id);
        else state.selected.delete(experiment.id);
        loadRuns();
      });
      list.append(el("label", { class: "check", title: "id " + experiment.id }, box, " ", experiment.name));
    }
  }

  async function loadExperiments(params) {
    try {
      const body = await api("experiments");
      state.experiments = body.experiments;
      state.experimentNames = new Map(body.experiments.map((e) => [String(e.id), e.name]));
      const wanted = (params.get("experiment_ids") || "").split(",").filter(Boolean);
      for (const id of wanted) if (state.experimentNames.has(id)) state.selected.add(id);
      if (!wanted.length && state.experiments.length) state.selected.add(state.experiments[0].id);
      renderExperiments();
    } catch (err) {
      setStatus("run-status", "Could not list experiments: " + err.message, true);
    }
  }

  /** Metric keys the chosen experiments logged: suggestions for the quality-metric inputs. */
  async function loadMetricKeys() {
    const token = ++state.metricsToken;
    if (!state.selected.size) return;
    const params = new URLSearchParams({ experiment_ids: Array.from(state.selected).join(",") });
    try {
      const body = await api("metrics", params);
      if (token !== state.metricsToken) return;
      state.metricKeys = body.metrics;
      const list = $("metric-options");
      clear(list);
      for (const key of body.metrics) list.append(el("option", { value: key }));
    } catch (err) {
      state.metricKeys = [];
    }
  }

  /** Inference: which batch size the figures are at, and a warning when the rows differ. */
  function byNote(data) {
    if (data.by !== "inference") return "";
    const sizes = data.batch_sizes || [];
    if (sizes.length > 1) return " · WARNING: measured at different batch sizes (" + sizes.join(", ") + "): not comparable";
    return sizes.length ? " · J/prediction at batch size " + sizes[0] : "";
  }

  function metricHint(data) {
    const missing = data.rows.some((r) => r.reason && r.reason.startsWith("no quality metric"));
    if (data.counts.ranked || !missing) return "";
    const known = state.metricKeys.slice(0, 5).join(", ");
    return " · No run has that quality metric logged: type one in Quality metric" + (known ? " (logged here: " + known + ")" : "") + ".";
  }

  async function loadRuns() {
    updateUrl();
    const metricsLoaded = loadMetricKeys(); // in parallel with the ranking
    const token = ++state.runToken;
    if (!state.selected.size) {
      state.runData = null;
      renderRuns();
      setStatus("run-status", "Choose one or more experiments.");
      return;
    }
    const params = new URLSearchParams();
    params.set("experiment_ids", Array.from(state.selected).join(","));
    const metric = $("metric").value.trim();
    const filter = $("filter").value.trim();
    if (metric) params.set("metric", metric);
    if (filter) params.set("filter", filter);
    params.set("measured_only", $("measured-only").checked ? "true" : "false");
    if (state.by === "inference") params.set("by", "inference");
    setStatus("run-status", "Ranking…");
    try {
      const data = await api("rank", params);
      await metricsLoaded;
      if (token !== state.runToken) return;
      state.runData = data;
      renderRuns();
      const c = data.counts;
      setStatus("run-status", F.count(c.ranked) + " ranked, " + F.count(c.unranked) + " not ranked, " + F.count(c.pareto) + " on the Pareto frontier"
        + (data.metric ? " · quality metric " + data.metric : " · quality metric: each run's green.quality_metric")
        + (data.measured_only ? " · measured only" : "") + byNote(data) + metricHint(data));
    } catch (err) {
      if (token !== state.runToken) return;
      state.runData = null;
      renderRuns();
      setStatus("run-status", err.message, true);
    }
  }

  function renderRuns() {
    const rows = state.runData ? state.runData.rows : [];
    const total = renderTable($("runs-table"), RUN_COLUMNS, state.runData, state.runSort, (sort) => {
      state.runSort = sort;
      renderRuns();
    });
    drawPlot($("run-plot"), state.runData ? rows : null, (r) => (r.run_id ? runHref(r) : null), (r) => r.run_name + " (" + experimentName(r.experiment_id) + ")", state.runData ? state.runData.by : state.by);
    $("run-more").textContent = total > MAX_ROWS ? "Showing the first " + F.count(MAX_ROWS) + " of " + F.count(total) + " rows in this order; narrow them with a filter." : "";
  }

  // --- models tab ----------------------------------------------------------------------------

  async function loadModels() {
    if (state.models !== null) return;
    state.models = [];
    try {
      const body = await api("models");
      state.models = body.models;
    } catch (err) {
      setStatus("model-status", "Could not list registered models: " + err.message, true);
      return;
    }
    const select = $("model-select");
    clear(select);
    if (!state.models.length) {
      select.append(el("option", { value: "", text: "no registered model" }));
      setStatus("model-status", "No registered model on this server yet.");
      return;
    }
    for (const model of state.models) {
      const aliases = Object.keys(model.aliases || {});
      select.append(el("option", { value: model.name, text: model.name + (aliases.length ? "  (@" + aliases.join(", @") + ")" : "") }));
    }
    if (state.model && state.models.some((m) => m.name === state.model)) select.value = state.model;
    state.model = select.value;
    loadModel();
  }

  async function loadModel() {
    updateUrl();
    const token = ++state.modelToken;
    if (!state.model) return;
    const params = new URLSearchParams();
    const metric = $("model-metric").value.trim();
    if (metric) params.set("metric", metric);
    params.set("measured_only", $("model-measured-only").checked ? "true" : "false");
    if (state.by === "inference") params.set("by", "inference");
    setStatus("model-status", "Ranking…");
    try {
      const data = await api("models/" + encodeURIComponent(state.model) + "/rank", params);
      if (token !== state.modelToken) return;
      state.modelData = data;
      renderModel();
      const c = data.counts;
      setStatus("model-status", F.plural(c.rows, "version") + ", " + F.count(c.ranked) + " ranked, " + F.count(c.pareto) + " on the Pareto frontier" + byNote(data));
    } catch (err) {
      if (token !== state.modelToken) return;
      state.modelData = null;
      renderModel();
      setStatus("model-status", err.message, true);
    }
  }

  function renderModel() {
    const rows = state.modelData ? state.modelData.rows : [];
    renderTable($("models-table"), MODEL_COLUMNS, state.modelData, state.modelSort, (sort) => {
      state.modelSort = sort;
      renderModel();
    });
    drawPlot($("model-plot"), state.modelData ? rows : null, (r) => (r.model_version ? versionHref(r) : null), (r) => "v" + r.model_version + " · " + r.run_name, state.modelData ? state.modelData.by : state.by);
  }

  // --- Training / Inference switch -----------------------------------------------------------

  const BY_TEXT = {
    training: { title: "Accuracy per kWh", runs: "Runs ranked by quality per kWh of training (ties share a rank)", models: "Model versions: training energy, quality per kWh and gate status" },
    inference: { title: "Accuracy per joule per prediction", runs: "Runs ranked by quality per joule per prediction (inference, ties share a rank)", models: "Model versions: inference energy per prediction, latency and gate status" },
  };

  /** Rank by training energy or by inference energy per prediction; both tabs follow. */
  function setBy(by, reload) {
    state.by = by === "inference" ? "inference" : "training";
    for (const input of document.querySelectorAll("input[name=by]")) input.checked = input.value === state.by;
    const text = BY_TEXT[state.by];
    $("page-title").textContent = text.title;
    document.title = text.title + " · mlflow-green";
    $("runs-table").caption.textContent = text.runs;
    $("models-table").caption.textContent = text.models;
    if (!reload) return;
    loadRuns();
    if (state.models !== null) loadModel();
  }

  // --- tabs and URL state --------------------------------------------------------------------

  function showTab(tab) {
    state.tab = tab;
    for (const name of ["runs", "models"]) {
      const active = name === tab;
      const button = $("tab-" + name);
      button.setAttribute("aria-selected", String(active));
      button.tabIndex = active ? 0 : -1;
      $("panel-" + name).hidden = !active;
    }
    if (tab === "models") loadModels();
    updateUrl();
  }

  function updateUrl() {
    const params = new URLSearchParams();
    if (state.tab === "models") params.set("tab", "models");
    if (state.selected.size) params.set("experiment_ids", Array.from(state.selected).join(","));
    const metric = $(state.tab === "models" ? "model-metric" : "metric").value.trim();
    const filter = $("filter").value.trim();
    if (metric) params.set("metric", metric);
    if (filter) params.set("filter", filter);
    if ($(state.tab === "models" ? "model-measured-only" : "measured-only").checked) params.set("measured_only", "true");
    if (state.model) params.set("model", state.model);
    if (state.by === "inference") params.set("by", "inference");
    const query = params.toString();
    history.replaceState(null, "", query ? "?" + query : window.location.pathname);
  }

  async function init() {
    const params = new URLSearchParams(window.location.search);
    const measuredOnly = ["1", "true", "yes"].includes((params.get("measured_only") || "").toLowerCase());
    $("metric").value = $("model-metric").value = params.get("metric") || "";
    $("filter").value = params.get("filter") || "";
    $("measured-only").checked = $("model-measured-only").checked = measuredOnly;
    state.model = params.get("model") || "";
    setBy(params.get("by"), false);
    for (const input of document.querySelectorAll("input[name=by]")) {
      input.addEventListener("change", () => {
        if (input.checked) setBy(input.value, true);
      });
    }

    for (const name of ["runs", "models"]) {
      $("tab-" + name).addEventListener("click", () => showTab(name));
      $("tab-" + name).addEventListener("keydown", (event) => {
        if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          const other = name === "runs" ? "models" : "runs";
          showTab(other);
          $("tab-" + other).focus();
        }
      });
    }
    $("run-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      loadRuns();
    });
    $("measured-only").addEventListener("change", loadRuns);
    $("model-controls").addEventListener("submit", (event) => {
      event.preventDefault();
      loadModel();
    });
    $("model-select").addEventListener("change", () => {
      state.model = $("model-select").value;
      loadModel();
    });
    $("model-measured-only").addEventListener("change", loadModel);

    renderRuns();
    renderModel();
    if (params.get("tab") === "models") showTab("models");
    await loadExperiments(params);
    await loadRuns();
    document.body.setAttribute("data-ready", "true");
  }

  document.addEventListener("DOMContentLoaded", init);
})();
