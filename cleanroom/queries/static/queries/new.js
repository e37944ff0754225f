// New query page: choosing another dataset reloads the editor for it (was an inline
// onchange handler; the Content-Security-Policy allows no inline script).
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-reload-param]")) {
    select.addEventListener("change", () => {
      const param = select.dataset.reloadParam;
      window.location = "?" + param + "=" + encodeURIComponent(select.value);
    });
  }
});
