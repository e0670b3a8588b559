// "Select all" for the bulk forms (dead letters, quarantine); everything else works without JS.
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => {
    for (const box of document.querySelectorAll("input.select")) box.checked = all.checked;
  });
});
