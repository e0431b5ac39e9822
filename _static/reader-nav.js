/* The book's sidebar toggles, bound to every button (offline, no CDN).
 *
 * pydata-sphinx-theme 0.17.1 (pinned by sphinx-book-theme 1.3.0) binds its
 * drawer handler to the FIRST `.primary-toggle` / `.secondary-toggle` in the
 * page, a header button that is hidden at most widths, so the visible ☰ and ☷
 * did nothing below 992 px and ☰ did not hide the sidebar on a desktop
 * (pydata/pydata-sphinx-theme#2451, executablebooks/sphinx-book-theme#988).
 *
 * One capture-phase listener on the document handles a click on any toggle
 * before the themes' own listeners see it:
 *   - ☰ at >= 992 px hides / shows the chapter sidebar in place;
 *   - ☰ below 992 px, and ☷ at any width, open the theme's drawer (<dialog>):
 *     the sidebar's nodes move into it, as the theme does; the theme's own
 *     close handlers (backdrop click, Escape) move them back.
 */
(function () {
  "use strict";
  var PAIRS = {
    "primary-toggle": ["pst-primary-sidebar", "pst-primary-sidebar-modal"],
    "secondary-toggle": ["pst-secondary-sidebar", "pst-secondary-sidebar-modal"],
  };

  function move(from, to) {
    Array.from(from.childNodes).forEach(function (n) { to.appendChild(n); });
    Array.from(from.classList).forEach(function (c) {
      from.classList.remove(c);
      to.classList.add(c);
    });
  }

  function openDrawer(sidebar, dialog) {
    if (dialog.open) return;
    move(sidebar, dialog);
    if (!dialog.dataset.readerBound) {
      dialog.dataset.readerBound = "1";
      // the theme binds these only when it found its first toggle; bind our own
      // once, guarded so nodes move back exactly once per close
      dialog.addEventListener("close", function () {
        if (dialog.childNodes.length) move(dialog, sidebar);
      });
      dialog.addEventListener("click", function (e) {
        if (e.target === dialog) {
          var r = dialog.getBoundingClientRect();
          var inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
          if (!inside) dialog.close();
        }
      });
    }
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".primary-toggle, .secondary-toggle");
    if (!button) return;
    var kind = button.classList.contains("primary-toggle") ? "primary-toggle" : "secondary-toggle";
    var sidebar = document.getElementById(PAIRS[kind][0]);
    var dialog = document.getElementById(PAIRS[kind][1]);
    if (!sidebar || !dialog) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    button.blur();
    var wide = window.matchMedia("(min-width: 992px)").matches;
    if (kind === "primary-toggle" && wide) {
      sidebar.classList.toggle("pst-sidebar-hidden");
    } else {
      openDrawer(sidebar, dialog);
    }
  }, true);
})();
