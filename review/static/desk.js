// fluxwatch review desk: plays the patch video from its sprite, keeps the scrubber, the frame time and the
// flux-curve cursor in step, and maps the keys to the page's forms. Plain JavaScript, no build step.
(function () {
  "use strict";
  const canvas = document.getElementById("video");
  if (!canvas) return; // the other pages have no player

  const d = canvas.dataset;
  const columns = +d.columns, frames = +d.frames, px = +d.pixels, fps = +d.fps;
  const start = Date.parse(d.start + "Z"), cadenceMs = +d.cadenceMin * 60000;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const scrubber = document.getElementById("scrubber");
  const index = document.getElementById("frame-index");
  const when = document.getElementById("frame-time");
  const playButton = document.getElementById("play");
  const cursor = document.getElementById("cursor");
  const sprite = new Image();
  let frame = 0, timer = null;

  function show(k) {
    frame = ((k % frames) + frames) % frames;
    const c = frame % columns, r = Math.floor(frame / columns);
    ctx.drawImage(sprite, c * px, r * px, px, px, 0, 0, canvas.width, canvas.height);
    scrubber.value = frame;
    index.textContent = frame;
    when.textContent = new Date(start + frame * cadenceMs).toISOString().slice(0, 16).replace("T", " ") + " UTC";
    if (cursor) {
      const x0 = +cursor.dataset.x0, x1 = +cursor.dataset.x1;
      cursor.style.left = (100 * (x0 + (x1 - x0) * frame / Math.max(frames - 1, 1))) + "%";
    }
  }
  function play() {
    if (timer === null) timer = setInterval(() => show(frame + 1), 1000 / fps);
    playButton.textContent = "pause";
  }
  function pause() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    playButton.textContent = "play";
  }
  sprite.onload = () => { show(0); play(); };
  sprite.src = d.sprite;
  playButton.addEventListener("click", () => (timer === null ? play() : pause()));
  scrubber.addEventListener("input", () => { pause(); show(+scrubber.value); });

  let sent = false; // one decision per page: a held key must not answer the next item too
  function click(id) {
    if (sent) return;
    sent = true;
    document.getElementById(id).click();
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target instanceof HTMLInputElement && ev.target.type !== "range") return; // typing a name
    if (ev.target === scrubber && ev.key.startsWith("Arrow")) return; // the scrubber's own arrows
    const actions = {
      e: () => click("answer-emergence"),
      n: () => click("answer-non-emergence"),
      u: () => click("answer-unsure"),
      z: () => click("undo"),
      Backspace: () => click("undo"),
      j: () => { if (!sent) { sent = true; window.location.href = document.getElementById("next").href; } },
      ArrowRight: () => actions.j(),
      " ": () => (timer === null ? play() : pause()),
      ",": () => { pause(); show(frame - 1); },
      ".": () => { pause(); show(frame + 1); },
    };
    const act = actions[ev.key];
    if (act) {
      ev.preventDefault();
      act();
    }
  });
})();
