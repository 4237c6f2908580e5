(() => {
  // 1-5 score and submit; g / b pick the first / second label; c focuses the comment.
  document.addEventListener("keydown", (event) => {
    const form = document.getElementById("review-form");
    if (!form || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.matches("textarea, input[type=text]")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (/^[1-5]$/.test(event.key)) {
      form.querySelector("input[name=score]").value = event.key;
      form.requestSubmit();
    } else if (event.key === "c") {
      event.preventDefault();
      form.querySelector("textarea[name=comment]").focus();
    } else if (event.key === "g" || event.key === "b") {
      const buttons = form.querySelectorAll("[data-label]");
      const pick = buttons[event.key === "g" ? 0 : 1];
      if (pick) { form.querySelector("input[name=label]").value = pick.dataset.label; pick.setAttribute("aria-pressed", "true"); }
    }
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-label]");
    if (button) document.querySelector("#review-form input[name=label]").value = button.dataset.label;
  });
})();
