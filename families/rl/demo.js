// The RL family's demo panel: the champion plays one seeded episode server-side
// (POST /rl/episode) and the page shows its frames (an animated GIF) and its return.
"use strict";
(() => {
  const { el, postJSON, showError, clearError, busy } = window.quartet;

  function render(root, ctx) {
    const task = el("select", { testid: "rl-task" }, ctx.tasks.map(t => el("option", { value: t }, t)));
    const seed = el("input", { type: "number", testid: "rl-seed", min: 0, value: "0" });
    const steps = el("input", { type: "number", testid: "rl-steps", min: 1, max: 1000, value: "500" });
    const run = el("button", { class: "primary", testid: "rl-run" }, "Play");
    const result = el("div", {});
    root.replaceChildren(el("h2", {}, "Reinforcement learning"),
      el("p", { class: "hint" }, "The champion agent plays one episode of the environment from a seed, acting greedily; the server renders its frames. Atari (Breakout): the full game, the return is the game score, one step is 4 frames."),
      el("div", { class: "row" }, el("label", {}, "environment", task), el("label", {}, "seed", seed),
         el("label", {}, "max steps (1..1000)", steps), run),
      result);

    run.addEventListener("click", () => busy(run, root, async () => {
      clearError(root);
      const res = await postJSON("/rl/episode", { task: task.value, seed: Number(seed.value), max_steps: Number(steps.value) });
      if (res.status !== 200) { showError(root, res); return; }
      const ep = res.body;
      const ending = ep.terminated ? "terminated" : ep.truncated ? "truncated (time limit or max steps)" : "stopped";
      result.replaceChildren(
        el("div", { class: "cols" },
          el("img", { testid: "rl-episode", src: `data:image/gif;base64,${ep.gif}`, alt: `${ep.task} episode, seed ${ep.seed}`,
                      style: { border: "1px solid #d8dde6", maxWidth: "600px", minWidth: "320px", imageRendering: "pixelated" } }),
          el("div", {},
            el("div", { class: "muted" }, "return"),
            el("div", { testid: "rl-return", class: "mono", style: { fontSize: "22px" } }, String(ep.total_reward)),
            el("p", { testid: "rl-summary", class: "muted" },
              `${ep.task} v${ep.model_version ?? "?"} · seed ${ep.seed} · ${ep.steps} steps · ${ending}`))));
    }));
  }

  window.quartet.register("rl", { title: "RL", render });
})();
