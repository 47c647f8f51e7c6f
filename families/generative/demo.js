// The generative family's demo panel: a seeded grid of samples (POST /generative/sample, with an
// optional class for a conditional champion and DDIM steps for a diffusion one) and a
// drawing / upload box whose 28x28 image the autoencoder reconstructs and scores
// (POST /generative/reconstruct). White on black, like Fashion-MNIST.
"use strict";
(() => {
  const { el, postJSON, showError, clearError, busy, b64png } = window.quartet;
  const SIDE = 28, CANVAS = 280, MAX_IMAGES = 64, MAX_STEPS = 1000;
  const CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

  /** A 28x28 grey image (rows of floats in [0, 1]) drawn on a canvas scaled `scale` times. */
  function imageCanvas(rows, testid, scale = 4) {
    const c = el("canvas", { testid, class: "pixel", width: SIDE, height: SIDE,
                             style: { width: `${SIDE * scale}px`, height: `${SIDE * scale}px`, border: "1px solid #d8dde6" } });
    const g = c.getContext("2d"), img = g.createImageData(SIDE, SIDE);
    rows.forEach((row, y) => row.forEach((v, x) => {
      const p = (y * SIDE + x) * 4, s = Math.round(255 * Math.max(0, Math.min(1, v)));
      img.data[p] = img.data[p + 1] = img.data[p + 2] = s; img.data[p + 3] = 255;
    }));
    g.putImageData(img, 0, 0);
    return c;
  }

  /** The drawing canvas, downsampled to 28x28 grey values in [0, 1]. */
  function toGrey(canvas, invert) {
    const small = document.createElement("canvas");
    small.width = small.height = SIDE;
    const g = small.getContext("2d");
    g.imageSmoothingEnabled = true; g.imageSmoothingQuality = "high";
    g.drawImage(canvas, 0, 0, SIDE, SIDE);
    const d = g.getImageData(0, 0, SIDE, SIDE).data;
    const rows = [];
    for (let y = 0; y < SIDE; y++) {
      const row = [];
      for (let x = 0; x < SIDE; x++) {
        const p = (y * SIDE + x) * 4;
        let v = (0.299 * d[p] + 0.587 * d[p + 1] + 0.114 * d[p + 2]) / 255;
        if (invert) v = 1 - v;
        row.push(Math.round(v * 1e4) / 1e4);
      }
      rows.push(row);
    }
    return rows;
  }

  function render(root, ctx) {
    const samplers = ctx.tasks.filter(t => !t.endsWith("-autoencoder"));
    const reconstructTask = ctx.tasks.find(t => t.endsWith("-autoencoder")) || ctx.tasks[0];

    // -- samples
    const sampleBox = el("div", {});
    const task = samplers.length > 1 ? el("select", { testid: "gen-task" }, samplers.map(t => el("option", { value: t }, t))) : null;
    const seed = el("input", { type: "number", testid: "gen-seed", min: 0, value: "0" });
    const n = el("input", { type: "number", testid: "gen-n", min: 1, max: MAX_IMAGES, value: "16" });
    const label = el("select", { testid: "gen-label" },
      [el("option", { value: "" }, "any (unconditional)"), ...CLASSES.map((c, k) => el("option", { value: String(k) }, `${k} ${c}`))]);
    const steps = el("input", { type: "number", testid: "gen-steps", min: 1, max: MAX_STEPS, placeholder: "model's", style: { width: "6em" } });
    const used = el("div", { class: "muted", testid: "gen-used" });
    const sample = el("button", { class: "primary", testid: "gen-run" }, "Sample");
    const grid = el("div", { testid: "gen-grid", style: { display: "grid", gridTemplateColumns: "repeat(8, 58px)", gap: "4px", marginTop: "8px" } });
    sampleBox.append(el("h3", {}, "Samples"),
      el("p", { class: "hint" }, "The generator's images for a seed (the same seed gives the same images). Click one to copy it into the drawing box. " +
                               "A class needs a conditional model; steps (DDIM) apply to a diffusion model and are ignored by the VAE and DCGAN."),
      el("div", { class: "row" }, task ? el("label", {}, "task", task) : null, el("label", {}, "seed", seed),
         el("label", {}, `images (1..${MAX_IMAGES})`, n), el("label", {}, "class", label),
         el("label", {}, `steps (1..${MAX_STEPS})`, steps), sample),
      grid, used);

    // -- draw / upload / reconstruct
    const reconBox = el("div", {});
    const pad = el("canvas", { testid: "gen-draw", width: CANVAS, height: CANVAS,
                               style: { background: "#000", touchAction: "none", cursor: "crosshair", border: "1px solid #d8dde6" } });
    const g = pad.getContext("2d");
    const clearPad = () => { g.fillStyle = "#000"; g.fillRect(0, 0, CANVAS, CANVAS); };
    clearPad();
    const clear = el("button", { class: "secondary", testid: "gen-clear" }, "Clear");
    const upload = el("input", { type: "file", testid: "gen-upload", accept: "image/*" });
    const invert = el("input", { type: "checkbox", testid: "gen-invert" });
    const brush = el("input", { type: "range", min: 6, max: 40, value: "22", testid: "gen-brush" });
    const reconstruct = el("button", { class: "primary", testid: "gen-reconstruct" }, "Reconstruct");
    const output = el("div", { class: "cols" });
    reconBox.append(el("h3", {}, `Reconstruction (${reconstructTask})`),
      el("p", { class: "hint" }, "Draw (white on black) or upload an image; it is scaled to 28x28 grey and the autoencoder reconstructs it. " +
                               "The anomaly score is the reconstruction's mean squared error: higher means less like Fashion-MNIST."),
      el("div", { class: "cols" },
        el("div", { style: { maxWidth: "430px" } }, pad,
           el("div", { class: "row", style: { marginTop: "6px" } }, clear, el("label", {}, "brush", brush),
              el("label", {}, "upload an image", upload),
              el("label", { class: "inline" }, invert, "invert (dark object on light)"), reconstruct)),
        output));

    root.replaceChildren(el("h2", {}, "Generative"), sampleBox, reconBox);

    // drawing with the pointer
    let drawing = false, last = null;
    const at = e => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * CANVAS / r.width, (e.clientY - r.top) * CANVAS / r.height]; };
    const stroke = to => {
      g.strokeStyle = "#fff"; g.fillStyle = "#fff"; g.lineCap = g.lineJoin = "round"; g.lineWidth = Number(brush.value);
      g.beginPath();
      if (last) { g.moveTo(...last); g.lineTo(...to); g.stroke(); }
      else { g.arc(to[0], to[1], g.lineWidth / 2, 0, 2 * Math.PI); g.fill(); }
      last = to;
    };
    pad.addEventListener("pointerdown", e => { drawing = true; last = null; pad.setPointerCapture(e.pointerId); stroke(at(e)); });
    pad.addEventListener("pointermove", e => { if (drawing) stroke(at(e)); });
    const end = () => { drawing = false; last = null; };
    pad.addEventListener("pointerup", end); pad.addEventListener("pointercancel", end);
    clear.addEventListener("click", () => { clearPad(); output.replaceChildren(); clearError(reconBox); });

    const drawImage = (src, revoke) => new Promise(resolve => {
      const img = new Image();
      img.onload = () => {
        clearPad();
        const s = Math.min(CANVAS / img.naturalWidth, CANVAS / img.naturalHeight);   // fit, centred
        const w = img.naturalWidth * s, h = img.naturalHeight * s;
        g.imageSmoothingEnabled = img.naturalWidth > SIDE;
        g.drawImage(img, (CANVAS - w) / 2, (CANVAS - h) / 2, w, h);
        if (revoke) URL.revokeObjectURL(src);
        resolve(true);
      };
      img.onerror = () => { showError(reconBox, { status: 0, body: { detail: "that file is not an image the browser can read" } }); resolve(false); };
      img.src = src;
    });
    upload.addEventListener("change", () => { if (upload.files && upload.files[0]) drawImage(URL.createObjectURL(upload.files[0]), true); });
    grid.addEventListener("click", e => { if (e.target.tagName === "IMG") { invert.checked = false; drawImage(e.target.src, false); } });

    sample.addEventListener("click", () => busy(sample, sampleBox, async () => {
      clearError(sampleBox);
      const body = { task: task ? task.value : samplers[0] || ctx.tasks[0], n: Number(n.value), seed: Number(seed.value) };
      if (label.value !== "") body.label = Number(label.value);
      if (steps.value !== "") body.steps = Number(steps.value);
      const res = await postJSON("/generative/sample", body);
      if (res.status !== 200) { showError(sampleBox, res); used.textContent = ""; return; }
      used.textContent = [res.body.label_name != null ? `class: ${res.body.label_name}` : "class: any",
                          res.body.steps != null ? `DDIM steps: ${res.body.steps}` : "one-pass generator (no steps)"].join(" · ");
      grid.replaceChildren(...res.body.images.map((b, i) => el("img", { src: b64png(b), class: "pixel", width: 56, height: 56,
        alt: `sample ${i}`, title: `seed ${seed.value}, image ${i} (model v${res.body.model_version ?? "?"})`,
        style: { background: "#000", cursor: "pointer" } })));
    }));

    reconstruct.addEventListener("click", () => busy(reconstruct, reconBox, async () => {
      clearError(reconBox);
      const input = toGrey(pad, invert.checked);
      const res = await postJSON("/generative/reconstruct", { task: reconstructTask, images: [input] });
      if (res.status !== 200) { showError(reconBox, res); return; }
      const score = res.body.anomaly_scores[0];
      output.replaceChildren(
        el("div", {}, el("div", { class: "muted" }, "input (28x28)"), imageCanvas(input, "gen-input")),
        el("div", {}, el("div", { class: "muted" }, `reconstruction (v${res.body.model_version ?? "?"})`),
           imageCanvas(res.body.reconstructions[0], "gen-reconstruction")),
        el("div", {}, el("div", { class: "muted" }, "anomaly score (MSE)"),
           el("div", { testid: "gen-score", class: "mono", style: { fontSize: "20px" } }, score.toPrecision(4))));
    }));
  }

  window.quartet.register("generative", { title: "Generative", render });
})();
