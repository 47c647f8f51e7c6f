// The translator's demo panel: a text, beam search, the n-best list and the attention heat-map
// (POST /translator/translate); for the char-RNN task (web-chars) a prompt and its continuation
// (POST /translator/generate).
"use strict";
(() => {
  const { el, postJSON, showError, clearError, busy } = window.quartet;
  const CHAR_TASK = "web-chars";
  const EXAMPLES = { dates: "April 22, 2019", "en-es": "In the beginning God created the heavens and the earth." };

  /** One rect per (output step, source token) cell; token labels on both axes. */
  function heatmap(attention, sourceTokens, outputTokens) {
    const rows = attention.length, cols = rows ? attention[0].length : 0;
    const src = sourceTokens && sourceTokens.length === cols ? sourceTokens : Array.from({ length: cols }, (_, j) => `#${j}`);
    const out = outputTokens && outputTokens.length === rows ? outputTokens : Array.from({ length: rows }, (_, i) => `#${i}`);
    const show = t => (t === " " ? "␣" : t.length > 12 ? `${t.slice(0, 11)}…` : t);
    const longest = a => Math.max(1, ...a.map(t => show(t).length));
    const cell = Math.max(10, Math.min(26, Math.floor(640 / Math.max(cols, rows, 1))));
    const left = 12 + 6.5 * longest(out), top = 12 + 6.5 * longest(src);
    const w = left + cols * cell + 8, h = top + rows * cell + 8;
    const svg = el("svg", { testid: "tr-attention", width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img",
                            "aria-label": "attention heat-map", dataset: { rows, cols } });
    src.forEach((t, j) => {
      const x = left + j * cell + cell / 2 + 4;
      svg.append(el("text", { class: "src-token", x, y: top - 6, transform: `rotate(-60 ${x} ${top - 6})` }, show(t)));
    });
    out.forEach((t, i) => svg.append(el("text", { class: "out-token", x: left - 6, y: top + i * cell + cell / 2 + 4,
                                                  "text-anchor": "end" }, show(t))));
    const top1 = Math.max(1e-9, ...attention.flat().map(a => Number(a) || 0));   // colours relative to the strongest cell
    attention.forEach((row, i) => row.forEach((a, j) => {
      const v = Math.max(0, Math.min(1, Number(a) || 0));
      const shade = Math.round(255 - 215 * (v / top1));
      svg.append(el("rect", { class: "cell", x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1,
                              fill: `rgb(${shade},${shade},255)`, dataset: { i, j, weight: v.toFixed(4) } },
                    el("title", {}, `${out[i]} ← ${src[j]}: ${v.toFixed(3)}`)));
    }));
    return svg;
  }

  function generatorPanel(ctx) {
    const box = el("div", { testid: "tr-generator" });
    const prompt = el("textarea", { testid: "tr-prompt", rows: 2 }, "The Lord said");
    const nChars = el("input", { type: "number", testid: "tr-nchars", min: 1, max: 2000, value: "200" });
    const temperature = el("input", { type: "number", testid: "tr-temperature", min: 0, max: 5, step: 0.1, value: "0.5" });
    const seed = el("input", { type: "number", testid: "tr-gen-seed", min: 0, value: "0" });
    const run = el("button", { class: "primary", testid: "tr-generate" }, "Generate");
    const output = el("pre", { testid: "tr-generated", class: "mono", style: { whiteSpace: "pre-wrap", maxWidth: "760px" } });
    box.append(el("h3", {}, `Character-level language model (${CHAR_TASK})`),
      el("p", { class: "hint" }, "The char-RNN continues a prompt, one character at a time (temperature 0: greedy)."),
      el("div", { class: "row" }, el("label", {}, "prompt", prompt)),
      el("div", { class: "row" }, el("label", {}, "characters", nChars), el("label", {}, "temperature", temperature),
         el("label", {}, "seed", seed), run),
      output);
    run.addEventListener("click", () => busy(run, box, async () => {
      clearError(box);
      const res = await postJSON("/translator/generate", { task: CHAR_TASK, prompt: prompt.value, n_chars: Number(nChars.value),
                                                            temperature: Number(temperature.value), seed: Number(seed.value) });
      if (res.status !== 200) { showError(box, res); return; }
      output.replaceChildren(el("span", { class: "muted" }, prompt.value), el("strong", {}, res.body.text));
      if (res.body.unknown_chars) output.append(el("div", { class: "muted" }, `(${res.body.unknown_chars} prompt characters unknown to the model)`));
    }));
    return box;
  }

  function render(root, ctx) {
    const tasks = ctx.tasks.filter(t => t !== CHAR_TASK);
    const main = el("div", {});
    root.replaceChildren(el("h2", {}, "Translator"), main);
    if (tasks.length) {
      const task = el("select", { testid: "tr-task" }, tasks.map(t => el("option", { value: t }, t)));
      const text = el("textarea", { testid: "tr-text", rows: 3 });
      text.value = EXAMPLES[tasks[0]] || "";
      let edited = false;
      text.addEventListener("input", () => { edited = true; });
      task.addEventListener("change", () => { if (!edited) text.value = EXAMPLES[task.value] || ""; });
      const beam = el("input", { type: "number", testid: "tr-beam", min: 1, max: 16, value: "4" });
      const nbest = el("input", { type: "number", testid: "tr-nbest", min: 1, max: 4, value: "3" });
      beam.addEventListener("input", () => { nbest.max = beam.value; });
      const run = el("button", { class: "primary", testid: "tr-run" }, "Translate");
      const result = el("div", {});
      main.append(
        el("p", { class: "hint" }, "Beam search over the champion's decoder: the n best hypotheses with their length-normalised log-probabilities, and where the best one attended."),
        el("div", { class: "row" }, el("label", {}, "task", task)),
        el("div", { class: "row" }, el("label", {}, "text", text)),
        el("div", { class: "row" }, el("label", {}, "beam width", beam), el("label", {}, "n-best", nbest), run),
        result);
      run.addEventListener("click", () => busy(run, main, async () => {
        clearError(main);
        const res = await postJSON("/translator/translate", { task: task.value, texts: [text.value], beam_width: Number(beam.value),
                                                               n_best: Number(nbest.value), return_attention: true });
        if (res.status !== 200) { showError(main, res); return; }
        const t = res.body.translations[0];
        const list = el("ol", { testid: "tr-nbest-list" }, t.n_best.map(hyp => el("li", {},
          el("span", { class: "hyp" }, hyp.text), " ",
          el("span", { class: "muted mono" }, `score ${hyp.score.toFixed(3)} · log-prob ${hyp.logprob.toFixed(3)}`))));
        result.replaceChildren(
          el("h3", {}, "Translation"), el("p", { testid: "tr-output", class: "mono" }, t.text),
          el("div", { class: "cols" },
            el("div", {}, el("h3", {}, `${t.n_best.length}-best (beam ${beam.value}, model v${res.body.model_version ?? "?"})`), list),
            t.attention && t.attention.length
              ? el("div", {}, el("h3", {}, "Attention of the best hypothesis (rows: output, columns: source)"),
                   heatmap(t.attention, t.source_tokens, t.output_tokens))
              : el("p", { class: "muted" }, "(this model returns no attention)")));
      }));
    }
    if (ctx.tasks.includes(CHAR_TASK)) root.append(generatorPanel(ctx));
  }

  window.quartet.register("translator", { title: "Translator", render });
})();
