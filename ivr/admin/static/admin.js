// Ask before destructive buttons (forms marked data-confirm); without JavaScript they just work.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Live views (data-refresh-seconds) reload their part of the page, unless the admin is using it.
const refreshing = document.querySelector("[data-refresh-seconds]");
if (refreshing) {
  const id = refreshing.id;
  window.setInterval(async () => {
    const current = document.getElementById(id);
    if (!current || current.contains(document.activeElement)) return;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById(id);
      if (fresh) current.replaceWith(fresh);
    } catch (error) {
      // Offline for a moment: the next tick tries again.
    }
  }, Number(refreshing.dataset.refreshSeconds) * 1000);
}
