// fluxwatch live pages: follow the push channel (/events/stream) and redraw the page's live parts on each frame
// and event, without reloading; show a hovered or focused patch's figures; scrub a patch's frames.
"use strict";

function redraw() {
  // Fetch this page again and swap its main content and header: one request per frame or event, no API polling.
  fetch(location.href, { headers: { Accept: "text/html" } })
    .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
    .then((text) => {
      const fresh = new DOMParser().parseFromString(text, "text/html");
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.patch : null;
      for (const id of ["disk", "patch", "age"]) {
        const old = document.getElementById(id), now = fresh.getElementById(id);
        if (old && now) old.replaceWith(now);
      }
      document.querySelector("header .state").replaceWith(fresh.querySelector("header .state"));
      wire();
      if (focused) {
        const again = document.querySelector(`.patch[data-patch="${focused}"]`);
        if (again) again.focus();
      }
      document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
    })
    .catch(() => {});
}

function follow() {
  const status = document.getElementById("connection");
  const source = new EventSource("/events/stream");
  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(redraw, 200); };
  source.onopen = () => { status.textContent = "live"; status.className = "connection live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "connection"; };
  source.addEventListener("frame", soon);
  source.addEventListener("alert", (message) => {
    const event = JSON.parse(message.data);
    const page = document.getElementById("patch");
    if (!page || page.dataset.patch === event.patch_id) soon();
    document.body.dataset.lastEvent = event.event_id;
  });
}

function wire() {
  const focus = document.getElementById("focus");
  for (const patch of document.querySelectorAll(".patch")) {
    const show = () => { if (focus) focus.textContent = patch.getAttribute("aria-label"); };
    patch.addEventListener("mouseenter", show);
    patch.addEventListener("focus", show);
  }
  const scrubber = document.getElementById("scrubber"), cutout = document.getElementById("cutout");
  if (scrubber && cutout) {
    const columns = Number(cutout.dataset.columns), px = Number(cutout.dataset.pixels), scale = 270 / px;
    cutout.style.backgroundSize = `${columns * px * scale}px auto`;
    const label = document.getElementById("frame-label"), days = Number(scrubber.dataset.cadenceDays);
    const show = () => {
      const k = Number(scrubber.value), row = Math.floor(k / columns), col = k % columns;
      cutout.style.backgroundPosition = `${-col * px * scale}px ${-row * px * scale}px`;
      label.textContent = `frame ${k} (day ${(k * days).toFixed(2)})`;
    };
    scrubber.addEventListener("input", show);
    show();
  }
}

wire();
if (document.body.dataset.live === "1") follow();
