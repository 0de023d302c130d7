// Denoise: the schedule plot's cursor follows a running sampler in the page. The server sends
// the plot once per run, with the timesteps that sampler visits; from then on each streamed
// step text ("DDIM, 50 steps, η = 0 — step 12/50, t = 779 · 0.40 s so far") moves the cursor
// line and rewrites its label here, with Plotly.relayout: one line redrawn instead of a new
// figure per step (~0.2 s of the browser's time each). ᾱ_t and SNR for the label come from the
// figure (layout.meta). Loaded into the page's <head> by playground.app.denoise.
(() => {
  const PLOT_BOX = "#denoise-reverse-plot";
  const PLOT = `${PLOT_BOX} .js-plotly-plot`;
  const INFOS = ["#denoise-ddim-info", "#denoise-ddpm-info"];
  const RUNNING = "so far"; // the last words of a step text (sampler_stream.RUNNING)
  const STEP = /^\s*([^,—]+)[^—]*— step \d+\/\d+, t = (\d+)/;
  const DONE = /^\s*([^,—:]+)[^—:]*: [\d.]+ s of sampling/;
  const VISITED = "timesteps visited"; // the dots' trace (sampler_stream)

  // Python's "{:.3g}", as schedule_plot writes the label on the server (the exponent is the
  // rounded number's: 999.7 is "1e+03")
  function threeDigits(x) {
    const rounded = Number(x.toPrecision(3));
    if (rounded === 0) return "0";
    const exponent = Math.floor(Math.log10(Math.abs(rounded)));
    if (exponent < -4 || exponent >= 3) {
      const [mantissa, power] = rounded.toExponential(2).split("e");
      const digits = String(Math.abs(Number(power))).padStart(2, "0");
      return `${String(Number(mantissa))}e${power[0] === "-" ? "-" : "+"}${digits}`;
    }
    return String(rounded);
  }

  // Where the text of a sampler column puts the cursor: a running step's t; a finished run's
  // last step (the lowest timestep it visited: the figure's dots, or 0 for DDPM's every step).
  function stepOf(info, plot) {
    const text = info.innerText.trim();
    const running = text.endsWith(RUNNING) && STEP.exec(text);
    if (running) return { label: running[1].trim(), t: Number(running[2]) };
    const done = DONE.exec(text);
    if (!done) return null;
    const visited = (plot._fullData || []).find((trace) => trace.name === VISITED);
    const t = visited ? Math.min(...Array.from(visited.x)) : 0;
    return { label: done[1].trim(), t };
  }

  function follow(info) {
    const plot = document.querySelector(PLOT);
    const Plotly = window.Plotly;
    if (!plot || !Plotly || !plot.layout) return;
    const step = stepOf(info, plot);
    const meta = plot.layout.meta || {};
    const abar = meta.alphas_cumprod, snr = meta.snr;
    const shapes = plot.layout.shapes || [];
    if (!step || !abar || !snr || !shapes.length || step.t >= abar.length) return;
    // the figure of this sampler's run (Run both: DDPM's figure ignores DDIM's finished text)
    const label = ((plot.layout.annotations || [])[0] || {}).text || "";
    if (!String(label).startsWith(`${step.label}:`) || shapes[0].x0 === step.t) return;
    const a = abar[step.t];
    Plotly.relayout(plot, {
      "shapes[0].x0": step.t, "shapes[0].x1": step.t, "annotations[0].x": step.t,
      "annotations[0].text": `${step.label}: t = ${step.t}, ᾱ = ${a.toFixed(3)}, ` +
                             `SNR = ${threeDigits(snr[step.t])}`,
      "annotations[0].xanchor": step.t < abar.length / 2 ? "left" : "right",
    });
  }

  // Followed once per animation frame: the column whose text changed, or both when the plot
  // itself was redrawn (a run's figure may be drawn after its first step texts arrived)
  const due = new Set();
  function followDue() {
    for (const info of due) {
      try { follow(info); } catch (err) { console.warn("schedule cursor:", err); }
    }
    due.clear();
  }
  new MutationObserver((records) => {
    for (const record of records) {
      const node = record.target.nodeType === Node.ELEMENT_NODE
        ? record.target : record.target.parentElement;
      if (!node || !node.closest) continue;
      const info = node.closest(INFOS.join(","));
      const infos = info ? [info]
        : node.closest(PLOT_BOX) ? INFOS.map((s) => document.querySelector(s)).filter(Boolean)
        : [];
      if (!infos.length) continue;
      if (!due.size) requestAnimationFrame(followDue);
      infos.forEach((i) => due.add(i));
    }
  }).observe(document.documentElement, { childList: true, subtree: true, characterData: true });
})();
