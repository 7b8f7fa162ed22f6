/* The agent form: only the chosen voice architecture's sections and notes, and in each choice
   of model or voice only the chosen service's values. No build step, no library: without this
   script every section shows, marked with the architectures it is for, and the server decides
   which fields count. */
"use strict";
(function () {
  const OTHER = "__other__";

  function valueOf(name) {
    const field = document.getElementById("id_" + name);
    return field ? field.value : "";
  }

  function showModes() {
    const provider = valueOf("provider");
    document.querySelectorAll("fieldset.va-mode").forEach(function (fieldset) {
      fieldset.hidden = !fieldset.classList.contains("va-mode-" + provider);
    });
    document.querySelectorAll("[data-controller][data-when]").forEach(function (note) {
      note.hidden = note.dataset.when.split(" ").indexOf(valueOf(note.dataset.controller)) < 0;
    });
    // A reply handler answers instead of the LLM: its prompt rows go, unless one is written.
    const llm = !valueOf("reply_handler") || valueOf("reply_prompt").trim() !== "";
    [".field-reply_prompt", ".field-reply_provider"].forEach(function (row) {
      document.querySelectorAll(".form-row" + row).forEach(function (element) {
        element.hidden = !llm;
      });
    });
  }

  /* One model or voice choice: its service's group, "Default (…)" and the "Other…" box.
     ``cause`` is "service" when its service was changed (a value left in another service's
     group is dropped), "picked" when the person chose in it (the box gets the focus). */
  function showChoice(box, cause) {
    const select = box.querySelector("select");
    const service = valueOf(box.dataset.controller);
    let group = null;
    select.querySelectorAll("optgroup").forEach(function (optgroup) {
      const mine = optgroup.dataset.group === service;
      optgroup.hidden = !mine;
      optgroup.disabled = !mine;
      if (mine) {
        group = optgroup;
      }
    });
    const selected = select.options[select.selectedIndex];
    if (cause === "service" && selected && selected.parentElement.tagName === "OPTGROUP" &&
        selected.parentElement !== group) {
      select.value = "";
    }
    const blank = select.querySelector('option[value=""]');
    const fallback = group ? group.dataset.default : "";
    blank.textContent = blank.dataset.label + (fallback ? " (" + fallback + ")" : "");
    const other = box.querySelector(".va-other");
    other.hidden = select.value !== OTHER;
    if (other.hidden) {
      other.querySelector("input").value = "";
    } else if (cause === "picked") {
      other.querySelector("input").focus();
    }
  }

  function showAll(changedField) {
    showModes();
    document.querySelectorAll(".va-service-choice").forEach(function (box) {
      showChoice(box, box.dataset.controller === changedField ? "service" : null);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("va-js");
    showAll(null);
    document.addEventListener("change", function (event) {
      const field = event.target;
      const box = field.closest(".va-service-choice");
      if (box && field.tagName === "SELECT") {
        showChoice(box, "picked");
      } else if (field.id && field.id.startsWith("id_")) {
        showAll(field.id.slice(3));
      }
    });
  });
})();
