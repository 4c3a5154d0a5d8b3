// sddkit web page: upload a file to /v1/score and show the result. No external resources.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const fmt = (x, digits) => (typeof x === "number" && isFinite(x) ? x.toFixed(digits) : String(x));
  // a probability rounded to 0.000 or 1.000 read as "impossible" or "certain" (a score of -10 is 4.5e-5, not 0): one
  // that rounds to either end is shown as a bound
  function fmtProbability(p) {
    const shown = fmt(p, 3);
    return shown === "0.000" ? "< 0.001" : shown === "1.000" ? "> 0.999" : shown;
  }

  // An error is tied to the file chooser (its aria-describedby): a screen reader says it with the control, which is
  // marked invalid unless the message is only a note ("Scoring one file at a time").
  function setError(message, invalid = true) {
    const el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
    if (message && invalid) $("file").setAttribute("aria-invalid", "true");
    else $("file").removeAttribute("aria-invalid");
  }

  function row(dl, key, value) {
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dl.append(dt, dd);
  }

  // a mixture's expert names (from /v1/model), to label its per-expert weights; empty for a single detector
  let expertNames = [];
  // the service's upload limit in MB (from /v1/model): a larger file is refused before it is sent, not
  // after the browser has uploaded all of it only to get a 413
  let maxUploadMb = null;

  // a front-end's frequency band where it has one: two experts of one front-end on different bands read alike
  const band = (p) => (Array.isArray(p.band_hz) ? " (" + p.band_hz[0] + "-" + p.band_hz[1] + " Hz)" : "");

  function describeComponents(c) {
    if (!c) return "?";
    if (c.experts) {
      const ex = c.experts.map((e) => (e.name ? e.name + ": " : "") + e.frontend + band(e) + "+" + e.backend);
      return "mixture of [" + ex.join(", ") + "] with gate " + c.gate;
    }
    return c.frontend + band(c) + " + " + c.backend;
  }

  // the map itself says whether scores are calibrated: a hand-set a, b carries no prior
  const isUncalibrated = (cal) => cal.a == null || (cal.a === 1 && cal.b === 0);

  function describeCalibration(cal) {
    if (isUncalibrated(cal)) return "none (raw scores)";
    const fitted = cal.prior == null ? "" : " (fitted at prior " + cal.prior + ")";
    return "a=" + fmt(cal.a, 3) + ", b=" + fmt(cal.b, 3) + fitted;
  }

  // An ONNX export whose model directory was recalibrated or retrained since it was exported scores as that model
  // did at export (GET /v1/model's source_changed says what changed and how to export it again): sdd serve printed
  // it in the operator's terminal only, and the page showed the model as if all was well. Nothing when null.
  function showStale(changed) {
    const stale = typeof changed === "string" ? changed.trim() : "";
    $("model-warning").textContent = stale ? "Warning: stale export. " + stale : "";
    $("model-warning").hidden = !stale;
  }

  async function loadModel() {
    try {
      const res = await get("v1/model");
      // a proxy's HTML error page is no JSON: its status is named, not a parser's "Unexpected token '<'"
      const m = await res.json().catch(() => null);
      if (!res.ok) throw responseError(res, m);
      if (!m || typeof m !== "object" || !m.limits) {
        const type = res.headers.get("content-type") || "no content type";
        throw new Error("unexpected answer: HTTP " + res.status + " with " + type + ", not a model description");
      }
      const dl = document.createElement("dl");
      dl.className = "model";
      row(dl, "name", m.name);
      expertNames = ((m.components && m.components.experts) || []).map((e, i) => e.name || "expert " + i);
      row(dl, "architecture", describeComponents(m.components));
      row(dl, "parameters", m.num_parameters != null ? m.num_parameters.toLocaleString() : "?");
      row(dl, "window", fmt(m.window_s, 2) + " s, hop " + fmt(m.hop_samples / m.sample_rate, 2) + " s, " + m.aggregation);
      row(dl, "calibration", describeCalibration(m.calibration || {}));
      // a model fresh from `sdd train` scores raw logit differences: no LLR, and their sigmoid no posterior
      const raw = isUncalibrated(m.calibration || {});
      $("score-label").textContent = raw ? "Score (raw, not calibrated)" : "Score (calibrated LLR)";
      $("probability-label").textContent = raw ? "Sigmoid of the raw score" : "Probability of bona fide (prior 0.5)";
      row(dl, "threshold", fmt(m.threshold, 3));
      row(dl, "limits", m.limits.max_upload_mb + " MB, " + m.limits.max_duration_s + " s");
      if (typeof m.limits.max_upload_mb === "number" && m.limits.max_upload_mb > 0) maxUploadMb = m.limits.max_upload_mb;
      $("model-info").replaceChildren(dl);
      showStale(m.source_changed);
    } catch (err) {
      $("model-info").textContent = "could not load the model description: " + err.message;
    }
  }

  // The plot's text alternative: a role="img" hides its marks and their tooltips from a screen reader, which read only
  // "window scores over time", the same for every file. It says what the plot shows, in words.
  // (the scores' own range: the plot's axis also spans the threshold)
  function describeWindows(windows, threshold, end) {
    let above = 0, lo = Infinity, hi = -Infinity;
    for (const w of windows) {
      if (w.score >= threshold) above += 1;
      lo = Math.min(lo, w.score); hi = Math.max(hi, w.score);
    }
    return "window scores over time: " + windows.length.toLocaleString() + " windows over " + fmt(end, 2) +
      " s, scores from " + fmt(lo, 3) + " to " + fmt(hi, 3) + "; " + above.toLocaleString() +
      " at or above the threshold " + fmt(threshold, 3) + " (bona fide), " + (windows.length - above).toLocaleString() +
      " below it (spoof)";
  }

  // The plot stretches its 600-unit-wide drawing to the page's width (preserveAspectRatio="none"), and its labels with
  // it: on a 360 px phone "threshold 0.00" was squeezed to half its width, at 1000 px stretched. Each label is scaled
  // back about its anchor to the rendered aspect, again whenever the plot's size changes (shown, resized, rotated).
  function unsquashLabels() {
    const svg = $("windows-plot");
    const box = svg.viewBox.baseVal;
    if (!svg.clientWidth || !svg.clientHeight || !box || !box.width) return;
    const stretch = (svg.clientWidth / box.width) / (svg.clientHeight / box.height);
    for (const t of svg.querySelectorAll("text")) {
      const x = t.getAttribute("x"), y = t.getAttribute("y");
      // a label longer than the plot is wide (the note on a long file's bars, on a phone) is narrowed to fit
      const fit = (box.width - 16) / Math.max(t.getBBox().width, 1);
      t.setAttribute("transform", `translate(${x} ${y}) scale(${Math.min(1 / stretch, fit)} 1) translate(${-x} ${-y})`);
    }
  }
  if (typeof ResizeObserver === "function") new ResizeObserver(unsquashLabels).observe($("windows-plot"));

  function plotWindows(windows, threshold) {
    const svg = $("windows-plot");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    svg.setAttribute("aria-label", "window scores over time: no windows");
    if (!windows.length) return;
    const W = 600, H = 140, pad = 8;
    // folded, not spread into Math.max(...): over ~120k windows (a long file at a short hop) a spread call
    // overflows the stack, and the scored file's result was replaced by "Maximum call stack size exceeded"
    const t0 = 0, t1 = windows.reduce((m, w) => Math.max(m, w.end_s), 0);
    let lo = threshold, hi = threshold;
    for (const w of windows) { lo = Math.min(lo, w.score); hi = Math.max(hi, w.score); }
    if (hi - lo < 1e-6) { lo -= 1; hi += 1; }
    const x = (t) => pad + ((t - t0) / (t1 - t0 || 1)) * (W - 2 * pad);
    const y = (s) => H - pad - ((s - lo) / (hi - lo)) * (H - 2 * pad);
    const thr = document.createElementNS(ns, "line");
    thr.setAttribute("x1", x(t0)); thr.setAttribute("x2", x(t1));
    thr.setAttribute("y1", y(threshold)); thr.setAttribute("y2", y(threshold));
    // the threshold is what the marks are read against: #999 had 2.85:1 on the plot's white, under WCAG's 3:1 for
    // graphics
    thr.setAttribute("stroke", "#6b7480"); thr.setAttribute("stroke-dasharray", "4 3");
    svg.append(thr);
    const label = (text, xPos, yPos, anchor) => {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", xPos); t.setAttribute("y", yPos); t.setAttribute("text-anchor", anchor);
      t.setAttribute("font-size", "10"); t.setAttribute("fill", "#6b7480");
      // a white halo keeps the text legible over the marks beneath it
      t.setAttribute("stroke", "#fff"); t.setAttribute("stroke-width", "3"); t.setAttribute("paint-order", "stroke");
      t.textContent = text;
      svg.append(t);
    };
    const mark = (x1, x2, y1, y2, above, width, tip, cap) => {
      const seg = document.createElementNS(ns, "line");
      seg.setAttribute("x1", x1); seg.setAttribute("x2", x2);
      seg.setAttribute("y1", y1); seg.setAttribute("y2", y2);
      seg.setAttribute("stroke", above ? "#1f7a3a" : "#b3261e");
      seg.setAttribute("stroke-width", width);
      if (cap) seg.setAttribute("stroke-linecap", cap);
      const title = document.createElementNS(ns, "title");
      title.textContent = tip;
      seg.append(title);
      svg.append(seg);
    };
    const columns = W - 2 * pad;
    if (windows.length <= columns) {
      for (const w of windows) {
        mark(x(w.start_s), x(w.end_s), y(w.score), y(w.score), w.score >= threshold, 3,
             fmt(w.start_s, 2) + "-" + fmt(w.end_s, 2) + " s: " + fmt(w.score, 3));
      }
    } else {
      // more windows than the plot has columns (a long file at a short hop: 2000 s at 10 ms is 200k windows): one
      // bar per column from its lowest to its highest window score, split at the threshold. A line per window drew
      // 200k SVG elements with tooltips, took the browser many seconds, and showed no more than this does
      const bins = Array.from({ length: columns }, () => ({ n: 0, lo: Infinity, hi: -Infinity, t0: Infinity, t1: -Infinity }));
      for (const w of windows) {
        const b = bins[Math.min(columns - 1, Math.max(0, Math.floor(((w.start_s + w.end_s) / 2 - t0) / (t1 - t0 || 1) * columns)))];
        b.n += 1;
        b.lo = Math.min(b.lo, w.score); b.hi = Math.max(b.hi, w.score);
        b.t0 = Math.min(b.t0, w.start_s); b.t1 = Math.max(b.t1, w.end_s);
      }
      bins.forEach((b, i) => {
        if (!b.n) return;
        const cx = pad + i + 0.5;
        const tip = fmt(b.t0, 2) + "-" + fmt(b.t1, 2) + " s: " + b.n + " windows, scores " + fmt(b.lo, 3) + " to " + fmt(b.hi, 3);
        // a bar of one score (lo == hi) still shows: square caps draw a zero-length line as a dot
        if (b.hi >= threshold) mark(cx, cx, y(Math.max(b.lo, threshold)), y(b.hi), true, 1, tip, "square");
        if (b.lo < threshold) mark(cx, cx, y(b.lo), y(Math.min(b.hi, threshold)), false, 1, tip, "square");
      });
    }
    svg.setAttribute("aria-label", describeWindows(windows, threshold, t1));
    // the labels last, over the marks
    label("threshold " + fmt(threshold, 2), W - pad, y(threshold) - 3, "end");
    label(fmt(hi, 2), pad, pad + 8, "start");
    label(fmt(lo, 2), pad, H - pad - 2, "start");
    if (windows.length > columns) {
      label(windows.length.toLocaleString() + " windows: each bar spans a column's lowest to highest", W - pad, pad + 8, "end");
    }
    unsquashLabels();
  }

  // the mixture's own statistics under readable titles (the raw key stays in the heading's title and data-name)
  const WEIGHT_TITLES = { gate_weights: "Gate weights", expert_scores: "Expert scores (log-odds)" };

  function showWeights(weights) {
    const box = $("weights");
    box.replaceChildren();
    const names = Object.keys(weights || {});
    $("weights-block").hidden = names.length === 0;
    for (const name of names) {
      const values = weights[name];
      // bars only for weights on the simplex (gate weights, expert use); other statistics as numbers
      const sum = values.reduce((a, b) => a + b, 0);
      // expert_scores are log-odds, never weights, however their values fall (0.3 and 0.7 drew bars)
      const isSimplex =
        name !== "expert_scores" && values.every((v) => v >= 0 && v <= 1) && Math.abs(sum - 1) < 1e-3;
      // a mixture's own statistics have one value per expert; "expert<k>/<stat>" is expert k's own statistic (a
      // MoLEx expert's use of its LoRA experts), whose values were labelled with the mixture's expert names
      const perExpert = name === "gate_weights" || name === "expert_scores";
      const inner = /^expert(\d+)\/(.+)$/.exec(name);
      const stat = inner ? inner[2] : name;
      const h = document.createElement("h4");
      h.textContent = inner ? (expertNames[+inner[1]] || "expert " + inner[1]) + ": " + stat : WEIGHT_TITLES[name] || name;
      h.title = name;
      h.dataset.name = name;
      box.append(h);
      values.forEach((v, i) => {
        const r = document.createElement("div");
        r.className = "bar-row";
        r.dataset.name = name;
        const label = document.createElement("span");
        if (perExpert && expertNames.length === values.length) label.textContent = expertNames[i];
        else if (perExpert) label.textContent = "expert " + i;
        else label.textContent = (stat.startsWith("molex_") ? "LoRA expert" : stat) + " " + i;
        const bar = document.createElement("div");
        bar.className = "bar";
        const fill = document.createElement("span");
        fill.style.width = 100 * v + "%";
        bar.append(fill);
        bar.hidden = !isSimplex;
        const val = document.createElement("span");
        val.className = "weight-value";
        val.textContent = fmt(v, 3);
        r.append(label, bar, val);
        box.append(r);
      });
    }
  }

  // shown under the name the user chose: a browser sends a name's " (and line breaks) percent-encoded, and the
  // service echoes what it got, so "take "2".wav" came back as "take %222%22.wav"
  function showResult(r, name) {
    const shown = name || r.filename;
    $("filename").textContent = shown ? "(" + shown + ")" : "";
    const d = $("decision");
    d.textContent = r.decision === "bonafide" ? "bona fide" : "spoof";
    d.className = "decision " + r.decision;
    d.dataset.decision = r.decision;
    $("score").textContent = fmt(r.score, 3);
    $("probability").textContent = fmtProbability(r.probability);
    $("threshold").textContent = fmt(r.threshold, 3);
    $("duration").textContent = fmt(r.duration_s, 2) + " s";
    $("n-windows").textContent = String(r.n_windows);
    plotWindows(r.windows || [], r.threshold);
    showWeights(r.weights);
    $("result").hidden = false;
  }

  // an error answer: the service's {"error": {type, message}}, else the HTTP status (a proxy's HTML 502, say;
  // HTTP/2 has no status text, so the code is always named)
  function responseError(res, data) {
    const e = (data && data.error) || {};
    const status = "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
    return new Error((e.type ? e.type + ": " : "") + (e.message || status));
  }

  // a 200 that is not a score (a login page or a proxy's HTML in front of the service) must not be shown
  // as a "spoof" verdict with an undefined score
  function isScoreResult(data) {
    return !!data && typeof data.score === "number" && typeof data.decision === "string";
  }

  async function request(url, init) {
    try {
      return await fetch(url, init);
    } catch (err) {  // no answer at all: the service is down or unreachable
      const e = new Error("could not reach the service (" + err.message + "); is it still running?");
      e.unreachable = true;
      throw e;
    }
  }
  const get = (url) => request(url);
  const post = (body) => request("v1/score", { method: "POST", body });

  // A chosen file that was changed, moved or deleted since (re-exported from an editor, say) can no longer be read:
  // its upload failed as "Failed to fetch", and the page said the service was down.
  async function readable(file) {
    try {
      await file.slice(0, 1).arrayBuffer();
      return true;
    } catch (err) {
      return false;
    }
  }
  const unreadable = (file) =>
    "could not read " + file.name + ": it was changed, moved or deleted after it was chosen; choose it again";

  // a size over the limit in as many decimals as it takes to differ from it: not "20.0 MB, over the limit of 20 MB"
  function megabytesOver(size, limitMb) {
    const mb = size / (1024 * 1024);
    let digits = Math.max(1, (String(limitMb).split(".")[1] || "").length);
    while (digits < 6 && Number(mb.toFixed(digits)) <= limitMb) digits += 1;
    return mb.toFixed(digits);
  }

  // The service names the file as the browser sent it, with a name's " and line breaks percent-encoded: an error
  // read "audio_decode_error: take %222%22.wav: ...". Named as the user chose it, as the result's heading is.
  function namedAsChosen(message, name) {
    const sent = name.replace(/"/g, "%22").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
    return sent === name ? message : message.split(sent).join(name);
  }

  let busy = false;  // a file is being scored

  async function onSubmit(ev) {
    ev.preventDefault();
    if (busy) return;
    setError("");
    $("status").textContent = "";
    const file = $("file").files[0];
    // Focus goes to the file chooser when the file is at fault (none chosen, too large, unreadable, refused by the
    // service): its next step is to choose another, and the chooser's description says why. A second Enter with no
    // file chosen set the same alert text again, which a screen reader did not repeat: on focus it is said again.
    if (!file) { setError("Choose an audio file first."); $("file").focus(); return; }
    if (maxUploadMb != null && file.size > Math.floor(maxUploadMb * 1024 * 1024)) {
      $("result").hidden = true;
      setError("payload_too_large: " + file.name + " is " + megabytesOver(file.size, maxUploadMb) +
        " MB, over the service's limit of " + maxUploadMb + " MB");
      $("file").focus();
      return;
    }
    // Marked busy, not disabled: disabling the focused button dropped the keyboard focus to the top of the page, so
    // after Enter on "Score" the next Tab started over at the file chooser. Set before the first await: a second
    // click (or Enter) while this one is scoring is ignored.
    busy = true;
    $("submit").setAttribute("aria-disabled", "true");
    $("status").textContent = "scoring " + file.name + "\u2026";
    try {
      if (!(await readable(file))) throw Object.assign(new Error(unreadable(file)), { fileFault: true });
      const body = new FormData();
      body.append("file", file, file.name);
      const res = await post(body);
      const data = await res.json().catch(() => null);
      // a 4xx names the file (undecodable, too long, too large); a 5xx or a timeout is retried as it is
      if (!res.ok) {
        const e = responseError(res, data);
        e.fileFault = res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429;
        throw e;
      }
      if (!isScoreResult(data)) {
        const type = res.headers.get("content-type") || "no content type";
        throw new Error("unexpected answer from the service: HTTP " + res.status + " with " + type + ", not a score");
      }
      showResult(data, file.name);
      // the result card appears unannounced: the status line says the verdict, the score and the probability (under
      // the label the page shows for it: a raw score's sigmoid is no probability) to screen readers
      $("status").textContent = "done: " + $("decision").textContent + ", score " + fmt(data.score, 3) + "; " +
        $("probability-label").textContent.toLowerCase() + " " + $("probability").textContent;
    } catch (err) {
      $("result").hidden = true;
      $("status").textContent = "";
      // the browser fails the whole request ("Failed to fetch") when the file changed on disk during the upload
      const gone = err.unreachable && !(await readable(file));
      setError(gone ? unreadable(file) : namedAsChosen(err.message, file.name));
      if (gone || err.fileFault) $("file").focus();
    } finally {
      busy = false;
      $("submit").removeAttribute("aria-disabled");
    }
  }

  $("upload-form").addEventListener("submit", onSubmit);
  // A file dropped on the page is chosen for scoring: the browser's default opened the dropped file in place of the
  // page (leaving it, and its result), unless it fell exactly on the small file input.
  document.addEventListener("dragover", (ev) => ev.preventDefault());
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const files = ev.dataTransfer ? ev.dataTransfer.files : null;
    if (!files || !files.length) return;
    const one = new DataTransfer();  // the input takes one file: the first of several dropped
    one.items.add(files[0]);
    $("file").files = one.files;
    setError(files.length > 1 ? "Scoring one file at a time: " + files[0].name + " is chosen." : "", false);
    $("file").focus();
  });
  loadModel();
})();
