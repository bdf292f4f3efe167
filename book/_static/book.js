// Site script for "LLM from scratch" (loaded by _config.yml: html_js_files).
// A table wider than the screen scrolls inside its box: mark the side(s) that
// hide more of it, so that book.css fades that edge out as a cue to scroll.
(function () {
  function mark(box) {
    const hidden = box.scrollWidth - box.clientWidth;
    box.classList.toggle("scroll-more-right", hidden > 1 && box.scrollLeft < hidden - 1);
    box.classList.toggle("scroll-more-left", hidden > 1 && box.scrollLeft > 1);
  }
  function markAll() {
    document.querySelectorAll(".pst-scrollable-table-container").forEach(mark);
  }
  document.addEventListener("DOMContentLoaded", () => {
    markAll();
    document.querySelectorAll(".pst-scrollable-table-container").forEach((box) => {
      box.addEventListener("scroll", () => mark(box), { passive: true });
    });
  });
  window.addEventListener("load", markAll);
  window.addEventListener("resize", markAll);
})();
