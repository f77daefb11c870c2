// heartbeatd: live dashboard rows, copy buttons, confirmations. No framework; the pages work
// without it (forms post, links link), this only adds to them.
"use strict";

const POLL_MS = 3000;

// The title and a screen reader hear about changes in how many checks are down, not every
// refresh of the table (announcing 1,000 rows every few seconds would drown everything else).
let lastDown = null;
function announce(down) {
  document.title = (down ? `(${down} down) ` : "") + document.title.replace(/^\(\d+ down\) /, "");
  if (lastDown !== null && down !== lastDown) {
    document.getElementById("live-status").textContent =
      down ? `${down} check${down === 1 ? " is" : "s are"} down` : "No checks are down";
  }
  lastDown = down;
}

function pollRows(tbody) {
  const url = new URL(window.location.href);
  url.searchParams.set("partial", "rows");
  let busy = false;
  const refresh = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok && !response.redirected) {
        tbody.innerHTML = await response.text();
        announce(Number(response.headers.get("X-Down-Count") || 0));
      }
    } catch (e) {
      // The daemon is restarting or the network is down: keep the rows, try again later.
    } finally {
      busy = false;
    }
  };
  setInterval(refresh, POLL_MS);
}

function copyButtons() {
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const text = source.value !== undefined ? source.value : source.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (e) {
        if (source.select) source.select();
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

function confirmations() {
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.form.addEventListener("submit", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
}

const live = document.querySelector("tbody[data-live]");
if (live) pollRows(live);
copyButtons();
confirmations();
