// Denoise: the schedule plot's cursor follows a running sampler in the page. The server sends
// the plot once per run, with the timesteps that sampler visits; from then on each streamed
// step text ("DDIM, 50 steps, η = 0 — step 12/50, t = 779 · 0.40 s so far") moves the cursor
// line and rewrites its label here, with Plotly.relayout: one line redrawn instead of a new
// figure per step (~0.2 s of the browser's time each). ᾱ_t for the label comes from the
// figure (layout.meta.alphas_cumprod). Loaded into the page's <head> by playground.app.denoise.
(() => {
  const PLOT = "#denoise-reverse-plot .js-plotly-plot";
  const INFOS = ["#denoise-ddim-info", "#denoise-ddpm-info"];
  const RUNNING = "so far"; // the last words of a step text (sampler_stream.RUNNING)
  const STEP = /^\s*([^,—]+)[^—]*— step \d+\/\d+, t = (\d+)/;
  const DONE = /^\s*([^,—:]+)[^—:]*: [\d.]+ s of sampling/;
  const VISITED = "timesteps visited"; // the dots' trace (sampler_stream)

  // Python's "{:.3g}", as schedule_plot writes the label on the server
  function threeDigits(x) {
    if (x === 0) return "0";
    const exponent = Math.floor(Math.log10(Math.abs(x)));
    if (exponent < -4 || exponent >= 3) {
      const [mantissa, power] = x.toExponential(2).split("e");
      const digits = String(Math.abs(Number(power))).padStart(2, "0");
      return `${String(Number(mantissa))}e${power[0] === "-" ? "-" : "+"}${digits}`;
    }
    return String(Number(x.toPrecision(3)));
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
    const abar = plot.layout.meta && plot.layout.meta.alphas_cumprod;
    const shapes = plot.layout.shapes || [];
    if (!step || !abar || !shapes.length || step.t >= abar.length) return;
    // the figure of this sampler's run (Run both: DDPM's figure ignores DDIM's finished text)
    const label = ((plot.layout.annotations || [])[0] || {}).text || "";
    if (!String(label).startsWith(`${step.label}:`) || shapes[0].x0 === step.t) return;
    const a = abar[step.t];
    Plotly.relayout(plot, {
      "shapes[0].x0": step.t, "shapes[0].x1": step.t, "annotations[0].x": step.t,
      "annotations[0].text": `${step.label}: t = ${step.t}, ᾱ = ${a.toFixed(3)}, ` +
                             `SNR = ${threeDigits(a / (1 - a))}`,
      "annotations[0].xanchor": step.t < abar.length / 2 ? "left" : "right",
    });
  }

  // the column whose text changed last, followed once per animation frame
  let changed = null;
  new MutationObserver((records) => {
    for (const record of records) {
      const node = record.target.nodeType === Node.ELEMENT_NODE
        ? record.target : record.target.parentElement;
      const info = node && node.closest && node.closest(INFOS.join(","));
      if (!info) continue;
      if (changed === null) requestAnimationFrame(() => { follow(changed); changed = null; });
      changed = info;
    }
  }).observe(document.documentElement, { childList: true, subtree: true, characterData: true });
})();
