// Latent map: click a point to see its face. gr.Plot has no click event, so this listens to
// plotly.js itself (Gradio's Plotly component sets window.Plotly): a click writes the point's
// face index into the "point index" box and presses "Show face"; the chosen point gets a ring,
// also when an index is typed. Hovering a point shows its face beside the mouse, cut from the
// sprite sheet of thumbnails the figure carries (layout.meta.thumbs: no request per hover).
// Loaded into the page's <head> by playground.app.latent_map.
(() => {
  const PLOT = "#latent-map-plot .js-plotly-plot";
  const INDEX = "#latent-map-index input";
  const BUTTON = "#latent-map-show-face";
  const MARK = "chosen face";
  const THUMB = "latent-map-thumb";
  const THUMB_SCALE = 2; // a 32-pixel tile shown at 64 pixels, as the faces are

  // Position of the face `index` on the map: the trace holding it (customdata = face index).
  // _fullData, not data: the figure arrives base64-encoded and plotly.js decodes it there.
  function locate(plot, index) {
    for (const trace of plot._fullData || []) {
      if (trace.name === MARK || !trace.customdata) continue;
      const i = Array.from(trace.customdata).indexOf(index);
      if (i >= 0) return [trace.x[i], trace.y[i]];
    }
    return null;
  }

  function mark(index) {
    const plot = document.querySelector(PLOT);
    const Plotly = window.Plotly;
    if (!plot || !Plotly || !plot.data) return;
    const at = plot.data.findIndex((trace) => trace.name === MARK);
    const where = Number.isInteger(index) ? locate(plot, index) : null;
    if (!where) {
      if (at >= 0) Plotly.deleteTraces(plot, at);
      return;
    }
    const [x, y] = where;
    if (at >= 0) {
      Plotly.restyle(plot, { x: [[x]], y: [[y]], customdata: [[index]] }, [at]);
    } else {
      Plotly.addTraces(plot, {
        type: "scattergl", x: [x], y: [y], customdata: [index], mode: "markers", name: MARK,
        marker: { size: 16, symbol: "circle-open", color: "black", line: { width: 3 } },
        hovertemplate: "face #%{customdata} (shown below)<extra></extra>",
      });
    }
  }

  function pick(index) {
    const box = document.querySelector(INDEX);
    const button = document.querySelector(BUTTON);
    if (!box || !button) return;
    box.value = String(index);
    box.dispatchEvent(new Event("input", { bubbles: true })); // Gradio reads the box on input
    button.click(); // marks the point too (the listener below)
  }

  function onClick(event) {
    const index = pointIndex(event);
    if (index !== null) pick(index);
  }

  function pointIndex(event) {
    const point = event && event.points && event.points[0];
    if (!point || point.customdata === undefined) return null;
    const index = Number(Array.isArray(point.customdata) ? point.customdata[0] : point.customdata);
    return Number.isInteger(index) ? index : null;
  }

  function thumbBox() {
    let box = document.getElementById(THUMB);
    if (!box) {
      box = document.createElement("div");
      box.id = THUMB;
      Object.assign(box.style, {
        position: "fixed", display: "none", pointerEvents: "none", zIndex: "1000",
        backgroundRepeat: "no-repeat", imageRendering: "pixelated",
        border: "2px solid white", boxShadow: "0 0 6px rgba(0, 0, 0, 0.6)",
      });
      document.body.appendChild(box);
    }
    return box;
  }

  function onHover(event) {
    const plot = document.querySelector(PLOT);
    const thumbs = plot && plot.layout && plot.layout.meta && plot.layout.meta.thumbs;
    const index = pointIndex(event);
    if (!thumbs || index === null || index < 0 || index >= thumbs.n) return;
    const box = thumbBox();
    const side = thumbs.tile * THUMB_SCALE;
    if (box.dataset.src !== String(thumbs.n) + thumbs.src.length) { // a new sheet: load it once
      box.style.backgroundImage = `url("${thumbs.src}")`;
      box.dataset.src = String(thumbs.n) + thumbs.src.length;
    }
    const row = Math.floor(index / thumbs.cols);
    const col = index % thumbs.cols;
    Object.assign(box.style, {
      width: `${side}px`, height: `${side}px`,
      backgroundSize: `${thumbs.cols * side}px auto`,
      backgroundPosition: `${-col * side}px ${-row * side}px`,
    });
    const mouse = event.event;
    const frame = plot.getBoundingClientRect();
    const x = mouse && mouse.clientX !== undefined ? mouse.clientX : frame.right - side - 20;
    const y = mouse && mouse.clientY !== undefined ? mouse.clientY : frame.top + 20;
    box.style.left = `${Math.min(x + 18, window.innerWidth - side - 8)}px`;
    box.style.top = `${Math.max(y - side - 18, 4)}px`;
    box.dataset.index = String(index);
    box.style.display = "block";
  }

  function onUnhover() {
    const box = document.getElementById(THUMB);
    if (box) box.style.display = "none";
  }

  // Once per plot element; again if a redraw dropped plotly.js's listeners.
  function hook(plot) {
    const handlers = { plotly_click: onClick, plotly_hover: onHover, plotly_unhover: onUnhover };
    for (const [name, handler] of Object.entries(handlers)) {
      const listening = plot._ev && plot._ev.listeners(name).includes(handler);
      if (!listening) plot.on(name, handler);
    }
  }

  const markTyped = () => {
    const box = document.querySelector(INDEX);
    if (box && box.value !== "") mark(Number(box.value));
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest && event.target.closest(BUTTON)) markTyped();
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.matches && event.target.matches(INDEX)) markTyped();
  }, true);

  // The plot's element appears when the tab is first drawn and is replaced when Gradio
  // re-mounts it: hook whichever is there now.
  new MutationObserver(() => {
    const plot = document.querySelector(PLOT);
    if (plot && typeof plot.on === "function") hook(plot);
  }).observe(document.documentElement, { childList: true, subtree: true });
})();
