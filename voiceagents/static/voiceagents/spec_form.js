"use strict";
// Credential and phone number forms: show only the section of the chosen vendor (or carrier).
// Without JavaScript every section stays visible, each titled with its vendor; either way the
// server validates and stores only the chosen one's fields.
(function () {
  function showChosen(select) {
    const chosen = select.dataset.specSelect + "-" + select.value;
    for (const section of select.form.querySelectorAll("fieldset." + select.dataset.specSelect)) {
      const hidden = !section.classList.contains(chosen);
      section.hidden = hidden;
      // The admin's stylesheet gives fieldsets a display of their own, which beats [hidden].
      section.style.display = hidden ? "none" : "";
    }
    // Notes listing every vendor (what each one's secret is): keep the chosen one's.
    for (const note of select.form.querySelectorAll(
      "[data-spec-notes='" + select.dataset.specSelect + "'] > li"
    )) {
      note.hidden = !note.classList.contains(chosen);
    }
  }

  function start() {
    for (const select of document.querySelectorAll("select[data-spec-select]")) {
      showChosen(select);
      select.addEventListener("change", () => showChosen(select));
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
